// A FerretDB process of a test's own (the binary .ci/ferretdb.sh builds and caches), so the test
// can kill the store under load and start it again on the same port and data.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** Where .ci/ferretdb.sh caches the binary; keep the version in step with it. */
export const FERRETDB_BINARY = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "identity-ci", "ferretdb-v1.24.0", "ferretdb");

export interface OwnFerretDb {
  /** mongodb://127.0.0.1:PORT/ */
  uri: string;
  /** Kills the process (SIGKILL: no goodbye to the clients). */
  kill(): Promise<void>;
  /** Starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Kills it and removes its data. */
  dispose(): Promise<void>;
}

export function ferretDbAvailable(): boolean {
  return existsSync(FERRETDB_BINARY);
}

export async function startOwnFerretDb(): Promise<OwnFerretDb> {
  const dir = mkdtempSync(join(tmpdir(), "identity-ferretdb-"));
  let child: ChildProcess | undefined;
  let port = 0;

  async function start(): Promise<void> {
    const log = join(dir, `ferretdb-${Date.now()}.log`);
    const args = ["--handler=sqlite", `--sqlite-url=file:${dir}/`, `--state-dir=${dir}`, `--listen-addr=127.0.0.1:${port}`, "--debug-addr=-", "--telemetry=disable", "--log-format=text"];
    // Its log goes to a file: the line naming the port it got is how a port-0 start is read.
    const out = openSync(log, "w");
    child = spawn(FERRETDB_BINARY, args, { stdio: ["ignore", out, out] });
    closeSync(out);
    for (let i = 0; i < 300; i++) {
      const found = /Listening on TCP 127\.0\.0\.1:(\d+)/.exec(readFileSync(log, "utf8"));
      if (found) {
        port = Number(found[1]);
        return;
      }
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`ferretdb did not start: ${readFileSync(log, "utf8").slice(-2000)}`);
  }

  async function kill(): Promise<void> {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
  }

  await start();
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    kill,
    restart: start,
    async dispose() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
