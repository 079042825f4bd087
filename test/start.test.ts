// `npm start` as a newcomer runs it: the process, its banner, its copy-paste example, its refusals.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { generateSigningKey } from "../src/auth/access-tokens.js";

const ENTRY = ["--import", "tsx", "src/main.ts"];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
});

function start(env: Record<string, string>, command: [string, string[]] = [process.execPath, ENTRY]) {
  const child = spawn(command[0], command[1], { env: { ...process.env, PORT: "0", GRPC_PORT: "0", WECHAT_SIM_PORT: "0", HOST: "127.0.0.1", MONGODB_URI: "", ...env } });
  children.push(child);
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner in time:\n${output}`)), 20_000);
    child.stdout.on("data", () => {
      if (output.includes("Try it") || output.includes("ready (")) {
        clearTimeout(timer);
        setTimeout(() => resolve(output), 50);
      }
    });
    child.on("exit", (code) => reject(new Error(`exited ${code}:\n${output}`)));
  });
  return { child, ready, output: () => output };
}

function writeConfig(config: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), "identity-")), "config.json");
  writeFileSync(file, JSON.stringify(config));
  return file;
}

function runToExit(env: Record<string, string>) {
  return spawnSync(process.execPath, ENTRY, { env: { ...process.env, PORT: "0", GRPC_PORT: "0", WECHAT_SIM_PORT: "0", MONGODB_URI: "", NODE_ENV: "", ...env }, encoding: "utf8", timeout: 20_000 });
}

/** A config that would talk to the real WeChat API: a real app shape and a real signing key. */
async function realConfig(extra: object = {}) {
  const { privateJwk } = await generateSigningKey();
  return { apps: [{ id: "shop", platform: "wechat-miniprogram", appid: "wx00000000000000a1", secret: "s" }], signingKeys: [privateJwk], ...extra };
}

function expectOneLineRefusal(run: ReturnType<typeof runToExit>, field: RegExp) {
  expect(run.status).toBe(1);
  expect(run.stdout).toBe("");
  expect(run.stderr.trim().split("\n")).toHaveLength(1);
  expect(run.stderr).toMatch(field);
}

const refusesConnections = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });

// Each test starts a process (tsx compiles on the way): seconds on a busy machine, not milliseconds.
describe("npm start", { timeout: 30_000 }, () => {
  it("starts dev mode with no configuration, and its copy-paste example works as printed", async () => {
    const { ready } = start({});
    const banner = await ready;
    expect(banner).toMatch(/identity service ready \(dev mode: memory store, WeChat simulator\)/);
    // The indented block under "Try it"; log lines may follow it.
    const after = banner.slice(banner.indexOf("Try it")).split("\n").slice(1);
    const example = after
      .slice(
        0,
        after.findIndex((l) => !l.startsWith("  ")),
      )
      .map((l) => l.trim());
    expect(example).toHaveLength(3);
    const run = spawnSync("bash", ["-euo", "pipefail", "-c", example.join("\n")], { encoding: "utf8", timeout: 30_000 });
    expect(run.status, run.stderr).toBe(0);
    const checked = JSON.parse(run.stdout);
    expect(checked.user.id).toMatch(/^[0-9a-f]{24}$/);
    expect(checked.appId).toBe("demo");
  });

  it("stops on SIGTERM", async () => {
    const { child, ready } = start({});
    await ready;
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("refuses bad configuration with one line naming the field", () => {
    const file = writeConfig({ apps: [{ id: "demo", platform: "wechat-miniprogram", appid: "wx-nope", secret: "s" }] });
    const run = runToExit({ IDENTITY_CONFIG: file });
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(/^identity: invalid configuration: apps\[0\]\.appid: /);
  });

  it("refuses to talk to the real WeChat API without a configured signing key", () => {
    const file = writeConfig({ apps: [{ id: "demo", platform: "wechat-miniprogram", appid: "wx0000000000000001", secret: "s" }] });
    const run = runToExit({ IDENTITY_CONFIG: file, WECHAT_SIMULATOR: "" });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^identity: invalid configuration: signingKeys: /);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("runs a config file against the simulator with WECHAT_SIMULATOR=1", async () => {
    const file = writeConfig({ apps: [{ id: "shop", platform: "wechat-miniprogram", appid: "wx00000000000000a1", secret: "s" }] });
    const banner = await start({ IDENTITY_CONFIG: file, WECHAT_SIMULATOR: "1" }).ready;
    expect(banner).toMatch(/identity service ready \(memory store, WeChat simulator\)/);
    expect(banner).not.toContain("Try it");
  });

  it("stops node, ports and all, when the npm process `npm start` made is sent SIGTERM", async () => {
    const { child, ready, output } = start({}, ["npm", ["start"]]);
    await ready;
    // pino's lines carry the service's pid; the banner names the port.
    const pid = Number(/"pid":(\d+)/.exec(output())![1]);
    const port = Number(/JSON \/ Connect \(HTTP\/1\.1\)\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(output())![1]);
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      expect(pid).not.toBe(child.pid);
      expect(await refusesConnections(port)).toBe(false);
      const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      await expect.poll(alive, { timeout: 10_000 }).toBe(false);
      expect(await refusesConnections(port)).toBe(true);
    } finally {
      // Killing npm alone is what orphaned node before: never leave it running.
      if (alive()) process.kill(pid, "SIGKILL");
    }
    expect(output()).toMatch(/shutdown started/);
    expect(output()).toMatch(/shutdown finished/);
  });

  it("refuses NODE_ENV=production without IDENTITY_CONFIG rather than running dev mode", () => {
    expectOneLineRefusal(runToExit({ NODE_ENV: "production", IDENTITY_CONFIG: "" }), /^identity: invalid configuration: IDENTITY_CONFIG: /);
  });

  it('refuses a config file without MONGODB_URI unless it says "store": "memory", and warns when it does', async () => {
    expectOneLineRefusal(runToExit({ IDENTITY_CONFIG: writeConfig(await realConfig()) }), /^identity: invalid configuration: MONGODB_URI: /);
    const banner = await start({ IDENTITY_CONFIG: writeConfig(await realConfig({ store: "memory" })) }).ready;
    expect(banner).toMatch(/identity service ready \(memory store\)/);
    expect(banner).toMatch(/"level":40,.*"msg":"store: /);
  });

  it("names the signing key that cannot be imported", async () => {
    const config = await realConfig({ store: "memory" });
    const bad = { ...config.signingKeys[0], kid: "bad", x: "AAAA" };
    expectOneLineRefusal(runToExit({ IDENTITY_CONFIG: writeConfig({ ...config, signingKeys: [config.signingKeys[0], bad] }) }), /^identity: invalid configuration: signingKeys\[1\]: /);
  });

  it("writes clean JSON with the keygen command the README documents", () => {
    // The README's own line, run as printed but into a temporary directory.
    const documented = /^(npm run .*keygen) > key\.json/m.exec(readFileSync("README.md", "utf8"))?.[1];
    expect(documented).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), "identity-keygen-"));
    const run = spawnSync("bash", ["-euo", "pipefail", "-c", `${documented} > ${dir}/key.json && ${documented} api-key orders > ${dir}/api-key.json`], { encoding: "utf8", timeout: 30_000 });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, "key.json"), "utf8"))).toMatchObject({ kty: "EC", alg: "ES256", d: expect.any(String) });
    expect(JSON.parse(readFileSync(join(dir, "api-key.json"), "utf8")).configEntry.name).toBe("orders");
  });
});
