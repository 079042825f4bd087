// WORKERS=2 as an operator runs it: one process that forks two workers sharing both listeners on
// one MongoDB. Which worker served a call is read from the log line it wrote (its `worker` field).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import http from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../gen/identity/v1/identity_pb.js";
import { generateSigningKey } from "../src/auth/access-tokens.js";
import { createWechatSimulator, type WechatSimulator } from "../src/simulator/simulator.js";
import { DEMO_APPID, mintCode, SERVICE } from "./support/harness.js";

const ENTRY = ["--import", "tsx", "src/main.ts"];
const SECRET = "workers-secret";
const uri = process.env.MONGODB_URI;
if (!uri) process.stderr.write("workers: the WORKERS=2 run on MongoDB is skipped (set MONGODB_URI to run it)\n");

async function writeConfig(extra: object = {}): Promise<string> {
  const file = join(mkdtempSync(join(tmpdir(), "identity-workers-")), "config.json");
  const { privateJwk } = await generateSigningKey();
  writeFileSync(file, JSON.stringify({ apps: [{ id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: SECRET }], signingKeys: [privateJwk], ...extra }));
  return file;
}

const baseEnv = { PORT: "0", GRPC_PORT: "0", HOST: "127.0.0.1", NODE_ENV: "", WECHAT_SIMULATOR: "" };

describe("WORKERS refusals", () => {
  it("refuses WORKERS on the embedded memory store with one line", async () => {
    const file = await writeConfig({ store: "memory" });
    const run = spawnSync(process.execPath, ENTRY, { env: { ...process.env, ...baseEnv, MONGODB_URI: "", IDENTITY_CONFIG: file, WORKERS: "2" }, encoding: "utf8", timeout: 20_000 });
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr.trim().split("\n")).toEqual([
      "identity: invalid configuration: WORKERS: 2 workers need MONGODB_URI (on the embedded memory store each worker would have its own users and sessions)",
    ]);
  });
});

/** One JSON call on a connection of its own, so the primary's round-robin picks a worker for it. */
function call(base: string, method: string, body: unknown, token?: string): Promise<{ status: number; json: any }> {
  const payload = JSON.stringify(body);
  const headers = { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)), ...(token ? { authorization: `Bearer ${token}` } : {}) };
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/${SERVICE}/${method}`, { method: "POST", agent: false, headers }, (res) => {
      let text = "";
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(payload);
  });
}

describe.skipIf(!uri)("WORKERS=2 on MongoDB", { timeout: 60_000 }, () => {
  const db = `identity_workers_${Date.now().toString(36)}`;
  let sim: WechatSimulator;
  let file: string;
  let child: ChildProcess;
  let exited: Promise<number | null>;
  let httpUrl: string;
  let grpcUrl: string;
  let output = "";
  const lines = () =>
    output
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const rpcLines = () => lines().filter((l) => l.msg === "rpc");

  /** Runs one call and returns it with the worker (and pid) whose log line it produced. */
  async function servedBy<T>(run: () => Promise<T>): Promise<{ result: T; worker: number; pid: number }> {
    const before = rpcLines().length;
    const result = await run();
    for (let i = 0; i < 100 && rpcLines().length === before; i++) await sleep(20);
    const line = rpcLines()[before];
    if (!line) throw new Error(`no rpc log line for the call:\n${output.slice(-2000)}`);
    return { result, worker: line.worker as number, pid: line.pid as number };
  }

  const env = () => ({ ...process.env, ...baseEnv, WORKERS: "2", MONGODB_URI: uri!, MONGODB_DB: db, IDENTITY_CONFIG: file, WECHAT_API_BASE: sim.url, LOG_LEVEL: "info" });

  beforeAll(async () => {
    sim = createWechatSimulator({ apps: { [DEMO_APPID]: SECRET } });
    await sim.listen(0, "127.0.0.1");
    file = await writeConfig();
    child = spawn(process.execPath, ENTRY, { env: env() });
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    exited = new Promise((resolve) => child.once("exit", resolve));
    for (let i = 0; i < 400 && !output.includes("(node:cluster)"); i++) await sleep(50);
    expect(output).toContain("workers                    2 (node:cluster)");
    httpUrl = /JSON \/ Connect \(HTTP\/1\.1\)\s+(http:\S+)/.exec(output)![1]!;
    grpcUrl = /gRPC \/ Connect \(h2c\)\s+(http:\S+)/.exec(output)![1]!;
  });

  afterAll(async () => {
    child?.kill("SIGKILL");
    await sim?.close();
    const client = await MongoClient.connect(uri!);
    await client.db(db).dropDatabase();
    await client.close();
  });

  it("prints the banner once for the group", () => {
    expect(output.match(/identity service ready/g)).toHaveLength(1);
  });

  it("serves JSON and gRPC connections from two worker processes, and a login on one is good on the other", async () => {
    const code = (await mintCode(sim.url)).code;
    const login = await servedBy(() => call(httpUrl, "Login", { appId: "demo", code }));
    expect(login.result.status).toBe(200);
    const { accessToken, refreshToken } = login.result.json.tokens;

    // Round-robin over connections: within a few, one lands on the other worker.
    let other: Awaited<ReturnType<typeof servedBy<{ status: number; json: any }>>> | undefined;
    for (let i = 0; i < 8 && !other; i++) {
      const checked = await servedBy(() => call(httpUrl, "CheckLogin", {}, accessToken));
      expect(checked.result.status).toBe(200);
      expect(checked.result.json.user.id).toBe(login.result.json.user.id);
      if (checked.worker !== login.worker) other = checked;
    }
    expect(other, "every CheckLogin went to the worker that did the Login").toBeDefined();
    expect(other!.pid).not.toBe(login.pid);

    // Refresh on whichever worker; the new pair works on both.
    const refreshed = await servedBy(() => call(httpUrl, "Refresh", { refreshToken }));
    expect(refreshed.result.status).toBe(200);
    const seen = new Set<number>();
    for (let i = 0; i < 8 && seen.size < 2; i++) {
      const checked = await servedBy(() => call(httpUrl, "CheckLogin", {}, refreshed.result.json.tokens.accessToken));
      expect(checked.result.status).toBe(200);
      seen.add(checked.worker);
    }
    expect(seen.size).toBe(2);

    // gRPC: each transport is one h2c connection, and connections are what the primary spreads.
    const grpcWorkers = new Set<number>();
    for (let i = 0; i < 8 && grpcWorkers.size < 2; i++) {
      const client = createClient(IdentityService, createGrpcTransport({ baseUrl: grpcUrl }));
      const answered = await servedBy(() => client.checkLogin({}, { headers: { authorization: `Bearer ${refreshed.result.json.tokens.accessToken}` } }));
      expect(answered.result.user?.id).toBe(login.result.json.user.id);
      grpcWorkers.add(answered.worker);
    }
    expect(grpcWorkers.size).toBe(2);
  });

  it("reports /metrics summed over the workers", async () => {
    const okChecks = rpcLines().filter((l) => l.rpc === "CheckLogin" && l.code === "ok").length;
    const workers = new Set(rpcLines().map((l) => l.worker));
    expect(workers.size).toBe(2);
    const text = await (await fetch(`${httpUrl}/metrics`)).text();
    const counted = [...text.matchAll(/^identity_rpc_requests_total\{method="CheckLogin",code="ok"[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    expect(counted).toBe(okChecks);
  });

  it("starts another worker when one dies, and keeps serving", async () => {
    const victim = rpcLines().at(-1)!.pid as number;
    process.kill(victim, "SIGKILL");
    for (let i = 0; i < 200 && !output.includes('"msg":"worker died; starting another"'); i++) await sleep(50);
    const listening = () => lines().filter((l) => l.msg === "worker listening").length;
    for (let i = 0; i < 400 && listening() < 3; i++) await sleep(50);
    expect(listening()).toBe(3);
    const code = (await mintCode(sim.url)).code;
    const pids = new Set<number>();
    const login = await call(httpUrl, "Login", { appId: "demo", code });
    expect(login.status).toBe(200);
    for (let i = 0; i < 6; i++) pids.add((await servedBy(() => call(httpUrl, "CheckLogin", {}, login.json.tokens.accessToken))).pid);
    expect(pids.has(victim)).toBe(false);
    expect(pids.size).toBe(2);
  });

  it("drains every worker and exits 0 on SIGTERM", async () => {
    const pids = [...new Set(rpcLines().map((l) => l.pid as number))];
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(lines().filter((l) => l.msg === "shutdown finished").length).toBe(2);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });

  it("stops the whole group, exit 1, when a worker cannot start (port in use)", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const run = spawnSync(process.execPath, ENTRY, { env: { ...env(), PORT: String(port) }, encoding: "utf8", timeout: 30_000 });
      expect(run.status).toBe(1);
      expect(run.stderr).toMatch(/EADDRINUSE/);
      expect(run.stderr).toMatch(/identity: worker \d+ exited \(code 1\) before it listened; stopping all workers/);
    } finally {
      taken.close();
    }
  });
});
