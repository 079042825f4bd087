// `npm run bench`: the service's throughput and latency per RPC, against this machine's ceilings.
//
// The service runs in a child process (`node dist/src/main.js`, the compiled code production runs,
// which `npm run bench` builds first; the embedded store or MONGODB_URI; the WeChat simulator in a
// process of its own), so the load generator never shares its event loop. HTTP/1.1
// JSON is driven by autocannon; gRPC over h2c by ghz (a Go load generator, several connections;
// its rows are skipped when it is not installed); the half-rate latency check by a paced (open-loop) generator, since autocannon's rate
// limit sends each second's quota in a burst. Every figure is measured in this one run:
//
//   bare fastify JSON POST   another child: fastify with one JSON route, nothing else (the ceiling)
//   Health/Check             grpc.health.v1 on the same server stack: the trivial RPC
//   CheckLogin, GetUser      many distinct valid tokens, in rotation (JSON and gRPC)
//   Login                    returning users and new users, one pre-minted wx.login code a request
//   Refresh                  one unspent refresh token a request (each answer's token goes back in the pool)
//
// `--scale N` (100,000 by default, `--no-scale` skips it) runs everything again on a fresh service
// that first got N users and N sessions through the real Login path. `--smoke` is CI's: a second a
// scenario, few connections, no scale; it fails only on errors.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { dirname, join, relative } from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { generateSigningKey } from "../src/auth/access-tokens.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const APPID = "wx0000000000000001";
const APP_SECRET = "bench-secret";
const SERVICE = "/identity.v1.IdentityService";
const HEALTH_CHECK = "/grpc.health.v1.Health/Check";
const JSON_HEADERS = { "content-type": "application/json" };

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  smoke: boolean;
  duration: number;
  connections: number;
  grpcConcurrency: number;
  /** h2c connections ghz spreads its calls over. */
  grpcConnections: number;
  users: number;
  scale: number;
  out: string;
  /** Warm-up before each measured run: seconds, or for runs that spend codes, a request count. */
  warmupSeconds: number;
  warmupRequests: number;
  /** Only these scenario ids (`--only health-json,checklogin-json`); all when absent. */
  only?: string[];
  /** Write a CPU profile of each service process here (`--profile DIR`). */
  profileDir?: string;
}

const SCENARIO_IDS = [
  "bare",
  "health-json",
  "health-grpc",
  "checklogin-json",
  "checklogin-grpc",
  "getuser-json",
  "getuser-grpc",
  "login-returning",
  "login-new",
  "refresh-json",
  "checklogin-json-half",
  "health-json-half",
  "bare-half",
];

function onlyOf(list: string): string[] {
  const ids = list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = ids.filter((id) => !SCENARIO_IDS.includes(id));
  if (unknown.length) throw new Error(`--only: unknown scenario ${unknown.join(", ")} (known: ${SCENARIO_IDS.join(", ")})`);
  // The half-rate run is paced at half of what CheckLogin JSON reached.
  if (ids.some((id) => id.endsWith("-half")) && !ids.includes("checklogin-json")) ids.push("checklogin-json");
  return ids;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      smoke: { type: "boolean", default: false },
      duration: { type: "string" },
      connections: { type: "string" },
      users: { type: "string" },
      scale: { type: "string" },
      "no-scale": { type: "boolean", default: false },
      out: { type: "string" },
      only: { type: "string" },
      profile: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      `usage: node --import tsx scripts/bench.ts [--smoke] [--duration S] [--connections N] [--users N] [--scale N | --no-scale] [--out DIR] [--only ID,…]\nscenarios: ${SCENARIO_IDS.join(", ")}`,
    );
    process.exit(0);
  }
  const num = (name: string, raw: string | undefined, fallback: number, min: number) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name}: "${raw}" must be a number ≥ ${min}`);
    return n;
  };
  const smoke = values.smoke ?? false;
  const connections = num("connections", values.connections, smoke ? 10 : 50, 1);
  return {
    smoke,
    duration: num("duration", values.duration, smoke ? 1 : 10, 1),
    connections,
    grpcConcurrency: connections,
    grpcConnections: Math.min(10, connections),
    users: Math.max(connections, num("users", values.users, smoke ? 100 : 2000, 1)),
    scale: values["no-scale"] || smoke ? num("scale", values.scale, 0, 0) : num("scale", values.scale, 100_000, 0),
    out: values.out ?? (smoke ? mkdtempSync(join(os.tmpdir(), "identity-bench-")) : join(ROOT, "bench")),
    warmupSeconds: smoke ? 0 : 3,
    warmupRequests: smoke ? 200 : 3000,
    ...(values.only ? { only: onlyOf(values.only) } : {}),
    ...(values.profile ? { profileDir: values.profile } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Processes under test

export interface Child {
  proc: ChildProcess;
  pid: number;
  httpUrl: string;
  grpcUrl?: string;
  simUrl?: string;
  /** The last lines it printed, for a failure message. */
  output: string[];
}

/** Spawns `node <args>` and waits until its stdout matches every pattern. */
async function spawnChild(args: string[], env: NodeJS.ProcessEnv, patterns: Record<string, RegExp>): Promise<{ child: ChildProcess; found: Record<string, string>; output: string[] }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(...chunk.toString().split("\n").filter(Boolean));
    if (output.length > 50) output.splice(0, output.length - 50);
  };
  child.stderr!.on("data", keep);
  return new Promise((resolve, reject) => {
    const found: Record<string, string> = {};
    let seen = "";
    const timer = setTimeout(() => fail(new Error("did not start within 60 s")), 60_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${args.join(" ")}: ${e.message}\n${output.join("\n")}`));
    };
    child.once("exit", (code) => fail(new Error(`exited with ${code}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      keep(chunk);
      if (Object.keys(found).length === Object.keys(patterns).length) return;
      seen += chunk.toString();
      for (const [name, re] of Object.entries(patterns)) {
        const m = re.exec(seen);
        if (m?.[1]) found[name] = m[1];
      }
      if (Object.keys(found).length === Object.keys(patterns).length) {
        clearTimeout(timer);
        child.removeAllListeners("exit");
        resolve({ child, found, output });
      }
    });
  });
}

// Loaded into the service's process (with --expose-gc): on SIGUSR2 it collects garbage and prints
// the heap and RSS, so memory per user is measured on live objects, not on what GC left lying around.
const GC_HOOK = `data:text/javascript,process.on("SIGUSR2",()=>{globalThis.gc();globalThis.gc();const m=process.memoryUsage();console.log("bench-gc "+m.heapUsed+" "+m.rss)})`;

/** The service's config for load runs: the benchmark's app, a signing key, and limits out of the way. */
export async function writeBenchConfig(dir: string): Promise<string> {
  const configPath = join(dir, "identity.json");
  const limit = 100_000_000;
  writeFileSync(
    configPath,
    JSON.stringify({
      apps: [{ id: "demo", platform: "wechat-miniprogram", appid: APPID, secret: APP_SECRET }],
      // Required once the service talks to a WeChat it did not start itself.
      signingKeys: [(await generateSigningKey()).privateJwk],
      limits: { loginsPerAddress: limit, loginsPerApp: limit, refreshesPerAddress: limit, callsPerUser: limit, phoneCallsPerUser: limit },
      // Returning-user runs log the same users in many times; the cap would end the sessions whose tokens the other runs use.
      tokens: { maxSessionsPerUser: 1000 },
      // Without MONGODB_URI the run is on the embedded store, which a config must ask for by name.
      ...(process.env.MONGODB_URI ? {} : { store: "memory" }),
    }),
  );
  return configPath;
}

// The compiled service, as production runs it (no tsx in its process). `npm run bench` builds it first.
const SERVICE_ENTRY = "dist/src/main.js";

export async function startService(configPath: string, mongoDb: string | undefined, profileDir: string | undefined): Promise<Child> {
  if (!existsSync(join(ROOT, SERVICE_ENTRY))) throw new Error(`${SERVICE_ENTRY} is missing: run \`npm run build\` (npm run bench and soak do)`);
  // The simulator stands in for WeChat, which is not on the service's machine: give it its own
  // process, so Login's figures carry only the service's side of code2Session.
  const sim = await spawnChild(["--import", "tsx", "scripts/bench.ts", "--serve-sim"], process.env, { sim: /simulator listening on (http:\S+)/ });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: "0",
    GRPC_PORT: "0",
    LOG_LEVEL: "warn",
    IDENTITY_CONFIG: configPath,
    WECHAT_API_BASE: sim.found.sim!,
    ...(mongoDb ? { MONGODB_DB: mongoDb } : {}),
  };
  const profile = profileDir ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : [];
  const extra = process.env.BENCH_SERVICE_FLAGS?.split(" ").filter(Boolean) ?? [];
  try {
    const { child, found, output } = await spawnChild([...profile, ...extra, "--expose-gc", "--import", GC_HOOK, SERVICE_ENTRY], env, {
      http: /JSON \/ Connect \(HTTP\/1\.1\)\s+(http:\S+)/,
      grpc: /gRPC \/ Connect \(h2c\)\s+(http:\S+)/,
    });
    // The simulator goes with the service.
    child.once("exit", () => sim.child.kill("SIGTERM"));
    return { proc: child, pid: child.pid!, httpUrl: found.http!, grpcUrl: found.grpc!, simUrl: sim.found.sim!, output };
  } catch (e) {
    sim.child.kill("SIGTERM");
    throw e;
  }
}

/** `bench.ts --serve-sim`: the WeChat simulator alone, knowing the benchmark's app. */
async function serveSimulator(): Promise<void> {
  const { createWechatSimulator } = await import("../src/simulator/simulator.js");
  const simulator = createWechatSimulator({ apps: { [APPID]: APP_SECRET } });
  await simulator.listen(0, "127.0.0.1");
  console.log(`simulator listening on ${simulator.url}`);
  process.on("SIGTERM", () => void simulator.close().then(() => process.exit(0)));
}

/** Starts bare fastify in its own process, measures one scenario on it, and stops it. */
async function measureBare(meta: ScenarioMeta, run: (bare: Child, warm: boolean) => Promise<RunStats>, log: (s: string) => void): Promise<Scenario> {
  const { child, found, output } = await spawnChild(["--import", "tsx", "scripts/bench.ts", "--serve-bare"], process.env, { http: /bare fastify listening on (http:\S+)/ });
  const bare: Child = { proc: child, pid: child.pid!, httpUrl: found.http!, output };
  try {
    return await measure(bare, meta, (warm) => run(bare, warm), log);
  } finally {
    await stopChild(bare);
  }
}

/** `bench.ts --serve-bare`: fastify with one JSON POST route and nothing else. */
async function serveBare(): Promise<void> {
  const { fastify } = await import("fastify");
  const app = fastify({ logger: false });
  app.post("/bare", async () => ({ status: "SERVING" }));
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  console.log(`bare fastify listening on ${address}`);
  process.on("SIGTERM", () => void app.close().then(() => process.exit(0)));
}

export async function stopChild(child: Child): Promise<void> {
  if (child.proc.exitCode !== null) return;
  const exited = new Promise((resolve) => child.proc.once("exit", resolve));
  child.proc.kill("SIGTERM");
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Resident set size of a process, bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** A process's /proc stat fields after its name: [11] utime, [12] stime, [13] cutime, [14] cstime (ticks). */
function statOf(pid: number | "self"): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** CPU seconds a process and its live children have used (user + system): WORKERS' workers count. */
function cpuOf(pid: number): number {
  const fields = statOf(pid);
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number);
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS + children.reduce((sum, child) => sum + cpuOf(child), 0);
}

/** CPU seconds of this process's exited (and reaped) children: a ghz run once it has ended. */
function reapedChildrenCpu(): number {
  const fields = statOf("self");
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
}

/** Collects garbage in the service's process (see GC_HOOK), then reads its heap in use and RSS. */
export function collectGarbage(child: Child): Promise<{ heapUsed: number; rss: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.proc.stdout!.off("data", onData);
      reject(new Error("the service did not answer SIGUSR2 within 60 s"));
    }, 60_000);
    const onData = (chunk: Buffer) => {
      const m = /bench-gc (\d+) (\d+)/.exec(chunk.toString());
      if (!m) return;
      clearTimeout(timer);
      child.proc.stdout!.off("data", onData);
      resolve({ heapUsed: Number(m[1]), rss: Number(m[2]) });
    };
    child.proc.stdout!.on("data", onData);
    child.proc.kill("SIGUSR2");
  });
}

/** Gauges from the service's Prometheus metrics (heap, event-loop delay since the previous scrape). */
export async function gaugesOf(httpUrl: string): Promise<{ heapUsed: number; loopDelayP99: number; loopDelayMax: number }> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  const gauge = (name: string) => {
    const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, "m").exec(text);
    return m ? Number(m[1]) : NaN;
  };
  return { heapUsed: gauge("nodejs_heap_size_used_bytes"), loopDelayP99: gauge("nodejs_eventloop_lag_p99_seconds") * 1000, loopDelayMax: gauge("nodejs_eventloop_lag_max_seconds") * 1000 };
}

// ---------------------------------------------------------------------------------------------
// Load generators

interface RunStats {
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
  /** What the errors were: HTTP status, "socket", "timeout", "unexpected body", or a gRPC message. */
  errorKinds: Record<string, number>;
  /** CPU used by the process under test and by this load generator, as a share of one core. */
  serverCpu: number;
  clientCpu: number;
  note?: string;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function summarize(latencies: number[], seconds: number, errors: number, errorKinds: Record<string, number>, cpu: { server: number; client: number }): RunStats {
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    errors,
    errorKinds,
    serverCpu: cpu.server / seconds,
    clientCpu: cpu.client / seconds,
  };
}

function cpuMeter(pid: number) {
  const server0 = cpuOf(pid);
  const client0 = process.cpuUsage();
  return () => {
    const client = process.cpuUsage(client0);
    return { server: cpuOf(pid) - server0, client: (client.user + client.system) / 1e6 };
  };
}

interface HttpLoad {
  url: string;
  path: string;
  pid: number;
  connections: number;
  /** Run this long (s), or until `amount` answers. */
  duration?: number;
  amount?: number;
  headers?: Record<string, string>;
  body?: string;
  /** The next request's headers and body, when they change per request. */
  next?: () => { headers?: Record<string, string>; body?: string };
  /** Reads a 2xx answer; false counts it as an error ("unexpected body"). */
  onAnswer?: (body: string) => boolean;
  /** Set by `next` when its pool ran dry: the run is cut there. */
  exhausted?: boolean;
}

/** autocannon, with every answer's latency recorded at full precision (its own histogram keeps whole ms). */
export function runHttp(load: HttpLoad): Promise<RunStats> {
  const latencies: number[] = [];
  const errorKinds: Record<string, number> = {};
  const count = (kind: string) => {
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  };
  let unexpected = 0;
  const request: autocannon.Request = {
    method: "POST",
    path: load.path,
    headers: { ...JSON_HEADERS, ...load.headers },
    body: load.body ?? "{}",
  };
  if (load.next) {
    const next = load.next;
    request.setupRequest = (req) => {
      const n = next();
      return { ...req, headers: { ...req.headers, ...n.headers }, body: n.body ?? req.body ?? "{}" };
    };
  }
  if (load.onAnswer) {
    const onAnswer = load.onAnswer;
    request.onResponse = (status, body) => {
      if (status >= 200 && status < 300 && !onAnswer(body)) unexpected++;
    };
  }
  const meter = cpuMeter(load.pid);
  const started = performance.now();
  let cutAt: number | null = null;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: load.url,
        connections: load.amount ? Math.min(load.connections, load.amount) : load.connections,
        ...(load.amount ? { amount: load.amount, sampleInt: 100 } : { duration: load.duration ?? 10 }),
        timeout: 10,
        requests: [request],
      },
      (error, result) => {
        if (error) return reject(error);
        const cpu = meter();
        const seconds = cutAt === null ? result.duration : (cutAt - started) / 1000;
        if (result.errors) errorKinds["socket error"] = result.errors;
        if (result.timeouts) errorKinds.timeout = result.timeouts;
        if (unexpected) errorKinds["unexpected body"] = unexpected;
        const errors = Object.values(errorKinds).reduce((sum, n) => sum + n, 0);
        const stats = summarize(latencies, seconds, errors, errorKinds, cpu);
        if (cutAt !== null) stats.note = `pool ran dry after ${latencies.length} answers: measured up to there`;
        resolve(stats);
      },
    );
    // Only 2xx answers count as throughput and latency; the rest are errors. Answers after a cut are not counted.
    instance.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (cutAt !== null) return;
      if (load.exhausted) {
        cutAt = performance.now();
        instance.stop();
        return;
      }
      if (status >= 200 && status < 300) latencies.push(ms);
      else count(`HTTP ${status}`);
    });
  });
}

// ghz (github.com/bojand/ghz), from the Go module proxy at this version: .ci/run installs it the same way.
const GHZ_VERSION = "v0.120.0";
const GHZ_INSTALL = `GOBIN=~/.cache/identity-ci/gobin go install github.com/bojand/ghz/cmd/ghz@${GHZ_VERSION}`;

/** ghz on PATH, else where .ci/run installs it; undefined when neither has it. */
function findGhz(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), join(process.env.XDG_CACHE_HOME ?? join(os.homedir(), ".cache"), "identity-ci", "gobin")];
  return dirs.map((dir) => join(dir, "ghz")).find((path) => existsSync(path));
}

/** Descriptor sets for ghz, whose own .proto parser predates proto3 `optional`: the service's (imports included) and grpc.health.v1. */
function buildProtosets(dir: string): { identity: string; health: string } {
  const buf = join(ROOT, "node_modules", ".bin", "buf");
  const health = "node_modules/grpc-health-check/proto";
  const sets = { identity: join(dir, "identity.binpb"), health: join(dir, "health.binpb") };
  for (const args of [
    ["build", "proto", "-o", sets.identity, "--as-file-descriptor-set"],
    ["build", health, "--path", `${health}/health/v1/health.proto`, "-o", sets.health, "--as-file-descriptor-set"],
  ]) {
    const run = spawnSync(buf, args, { cwd: ROOT, encoding: "utf8" });
    if (run.status !== 0) throw new Error(`buf ${args.join(" ")}: ${run.stderr}`);
  }
  return sets;
}

interface GhzLoad {
  ghz: string;
  protoset: string;
  /** package.Service/Method */
  call: string;
  target: string;
  pid: number;
  connections: number;
  concurrency: number;
  duration?: number;
  amount?: number;
  /** Request messages: ghz sends them round-robin, one a call. */
  data?: unknown[];
  /** Call metadata, a Go template ghz fills per call (e.g. `{{.RequestNumber}}`). */
  metadata?: string;
  dir: string;
}

/** The part of ghz's JSON report read here (latencies in ns). */
interface GhzReport {
  endReason: string;
  total: number;
  statusCodeDistribution?: Record<string, number>;
  errorDistribution?: Record<string, number>;
  latencyDistribution?: Array<{ percentage: number; latency: number }> | null;
  slowest: number;
}

/** When ghz stops at its duration it cancels the calls in flight and lists them as errors: these, and no more than it had in flight. */
const CUT_AT_END = /use of closed network connection|code = Canceled|transport is closing|client connection is closing/;

/** One ghz run; its report turned into this benchmark's figures. */
async function runGhz(load: GhzLoad): Promise<RunStats> {
  const args = ["--insecure", "--protoset", load.protoset, "--call", load.call, "--connections", String(load.connections), "--concurrency", String(load.concurrency), "--format", "json"];
  args.push(...(load.amount ? ["--total", String(load.amount)] : ["--duration", `${load.duration ?? 10}s`]));
  if (load.data) {
    const dataFile = join(load.dir, "ghz-data.json");
    writeFileSync(dataFile, JSON.stringify(load.data));
    args.push("--data-file", dataFile);
  } else args.push("--data", "{}");
  if (load.metadata) args.push("--metadata", load.metadata);
  args.push(load.target);
  const server0 = cpuOf(load.pid);
  const client0 = reapedChildrenCpu();
  const child = spawn(load.ghz, args, { stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on("data", (chunk: Buffer) => out.push(chunk));
  child.stderr!.on("data", (chunk: Buffer) => err.push(chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", resolve);
  });
  // ghz echoes its arguments when it refuses them: the tokens stay out of the message.
  if (code !== 0 && !out.length)
    throw new Error(
      `ghz exited with ${code}: ${Buffer.concat(err)
        .toString()
        .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, "[token]")
        .slice(-2000)}`,
    );
  const report = JSON.parse(Buffer.concat(out).toString()) as GhzReport;
  const seconds = report.total / 1e9;
  const ok = report.statusCodeDistribution?.OK ?? 0;
  const errorKinds: Record<string, number> = {};
  let cut = 0;
  for (const [message, n] of Object.entries(report.errorDistribution ?? {})) {
    if (report.endReason === "timeout" && CUT_AT_END.test(message) && cut + n <= load.concurrency) cut += n;
    else errorKinds[message.slice(0, 120)] = (errorKinds[message.slice(0, 120)] ?? 0) + n;
  }
  const quantile = (p: number) => (report.latencyDistribution?.find((d) => d.percentage === p)?.latency ?? NaN) / 1e6;
  const stats: RunStats = {
    requests: ok,
    seconds,
    rps: ok / seconds,
    p50: quantile(50),
    p99: quantile(99),
    max: report.slowest / 1e6,
    errors: Object.values(errorKinds).reduce((sum, n) => sum + n, 0),
    errorKinds,
    serverCpu: (cpuOf(load.pid) - server0) / seconds,
    clientCpu: (reapedChildrenCpu() - client0) / seconds,
  };
  if (cut) stats.note = `${cut} calls in flight when ghz's duration ended were cancelled by ghz: not counted`;
  return stats;
}

/** One paced request: where it goes, and what it carries. */
export interface PacedRequest {
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** How one paced request ended: its HTTP status and body, or the network error; latency from when it was due. */
export type PacedResult<R extends PacedRequest = PacedRequest> = { request: R; latencyMs: number } & ({ status: number; body: string } | { error: string });

/**
 * Open-loop HTTP/1.1 load at a fixed rate (evenly spaced, whether or not answers are back), with
 * latency counted from when each request was due, so a stall is not hidden (no coordinated
 * omission). Resolves once every answer is in; one that never comes counts as an error after 10 s.
 */
export async function pace<R extends PacedRequest>(load: { url: string; agent: http.Agent; rate: number; total: number; next: () => R; onResult: (result: PacedResult<R>) => void }): Promise<void> {
  const { agent } = load;
  let sent = 0;
  let done = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const finish = (result: PacedResult<R>) => {
      load.onResult(result);
      if (++done === load.total) resolve();
    };
    const fire = (due: number) => {
      const request = load.next();
      const body = request.body ?? "{}";
      const headers = { ...JSON_HEADERS, "content-length": String(Buffer.byteLength(body)), ...request.headers };
      const req = http.request(new URL(request.path, load.url), { method: "POST", agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => finish({ request, latencyMs: performance.now() - due, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
      req.on("error", (e) => finish({ request, latencyMs: performance.now() - due, error: e.message }));
      req.end(body);
    };
    const tick = () => {
      const due = Math.min(load.total, Math.floor(((performance.now() - start) / 1000) * load.rate) + 1);
      while (sent < due) fire(start + (sent++ * 1000) / load.rate);
      if (sent < load.total) setTimeout(tick, 1);
    };
    tick();
  });
}

/** All CPUs' time in clock ticks, and the part stolen by the hypervisor (Linux /proc/stat). */
function machineTicks(): { total: number; steal: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: fields.reduce((sum, n) => sum + n, 0), steal: fields[7]! };
}

/** What `bench.ts --pace` reads on stdin: one paced run on one path, cycling through the header sets. */
interface PaceJob {
  url: string;
  path: string;
  rate: number;
  duration: number;
  connections: number;
  headerSets: Record<string, string>[];
  /** The server's pid, whose CPU is read around the measured window. */
  pid: number;
}

/** What `bench.ts --pace` prints: every answer's latency, the errors, and its own CPU and stalls. */
interface PaceReport {
  latencies: number[];
  errorKinds: Record<string, number>;
  seconds: number;
  cpuSeconds: number;
  serverCpuSeconds: number;
  /** The share of the machine's CPU time the hypervisor took from this VM during the run. */
  steal: number;
  lagP99: number;
  lagMax: number;
}

const PACE_WARMUP_SECONDS = 0.5;

/**
 * `bench.ts --pace`: the paced generator in a process of its own. In this process it shared the
 * event loop and heap with everything the benchmark keeps (tokens, latencies, autocannon), and
 * its own collections (up to 60 ms) were counted as the server's latency. It first paces for
 * PACE_WARMUP_SECONDS uncounted, so its JIT and connections are warm when the clock starts.
 */
async function paceJob(job: PaceJob): Promise<PaceReport> {
  let turn = 0;
  const next = () => ({ path: job.path, headers: job.headerSets[turn++ % job.headerSets.length] });
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.connections });
  await pace({ url: job.url, agent, rate: job.rate, total: Math.ceil(job.rate * PACE_WARMUP_SECONDS), next, onResult: () => {} });
  const latencies: number[] = [];
  const errorKinds: Record<string, number> = {};
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const cpu0 = process.cpuUsage();
  const server0 = cpuOf(job.pid);
  const machine0 = machineTicks();
  const start = performance.now();
  await pace({
    url: job.url,
    agent,
    rate: job.rate,
    total: Math.max(1, Math.floor(job.rate * job.duration)),
    next,
    onResult: (result) => {
      if ("status" in result && result.status === 200) return void latencies.push(result.latencyMs);
      const kind = "status" in result ? `HTTP ${result.status}` : result.error;
      errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
    },
  });
  const seconds = (performance.now() - start) / 1000;
  const serverCpuSeconds = cpuOf(job.pid) - server0;
  const machine = machineTicks();
  const steal = (machine.steal - machine0.steal) / (machine.total - machine0.total);
  lag.disable();
  agent.destroy();
  const cpu = process.cpuUsage(cpu0);
  return { latencies, errorKinds, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, serverCpuSeconds, steal, lagP99: lag.percentile(99) / 1e6, lagMax: lag.max / 1e6 };
}

/** Runs `paceJob` in a fresh child process. */
function paceInChild(job: PaceJob): Promise<PaceReport> {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/bench.ts", "--pace"], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on("data", (chunk: Buffer) => out.push(chunk));
  child.stderr!.on("data", (chunk: Buffer) => err.push(chunk));
  child.stdin!.end(JSON.stringify(job));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code === 0) return resolve(JSON.parse(Buffer.concat(out).toString()) as PaceReport);
      reject(new Error(`the paced generator exited with ${code}: ${Buffer.concat(err).toString().slice(-2000)}`));
    });
  });
}

/** A paced run on one path for `duration` seconds from its own process, summarized like the other runs. */
async function runPaced(load: Omit<PaceJob, "headerSets"> & { headerSets?: Record<string, string>[] }): Promise<RunStats> {
  const report = await paceInChild({ ...load, headerSets: load.headerSets ?? [{}] });
  const errors = Object.values(report.errorKinds).reduce((sum, n) => sum + n, 0);
  const stats = summarize(report.latencies, report.seconds, errors, report.errorKinds, { server: report.serverCpuSeconds, client: report.cpuSeconds });
  stats.note = `load generator's event-loop delay: p99 ${fmtMs(report.lagP99)} ms, max ${fmtMs(report.lagMax)} ms; steal ${(report.steal * 100).toFixed(1)}%`;
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Preparing users, codes and tokens through the service's own API

export interface Signed {
  access: string;
  refresh: string;
  openid: string;
}

/** Mints wx.login codes from the simulator: for these openids (returning users) or fresh ones. */
export async function mintCodes(child: Child, n: number, openids?: string[]): Promise<string[]> {
  const codes: string[] = [];
  let i = 0;
  const stats = await runHttp({
    url: child.simUrl!,
    path: "/sim/login-code",
    pid: child.pid,
    connections: 32,
    amount: n,
    next: () => ({ body: JSON.stringify(openids ? { appid: APPID, openid: openids[i++ % openids.length] } : { appid: APPID }) }),
    onAnswer: (body) => {
      const code = /"code":"([^"]+)"/.exec(body)?.[1];
      if (code) codes.push(code);
      return code !== undefined;
    },
  });
  if (stats.errors || codes.length < n) throw new Error(`minting ${n} codes: ${codes.length} minted, errors ${JSON.stringify(stats.errorKinds)}`);
  return codes;
}

/** Logs in with each code (many at once); returns the tokens when asked to keep them. */
export async function loginAll(child: Child, codes: string[], keep: boolean, connections = 64): Promise<{ signed: Signed[]; stats: RunStats }> {
  const signed: Signed[] = [];
  let i = 0;
  const stats = await runHttp({
    url: child.httpUrl,
    path: `${SERVICE}/Login`,
    pid: child.pid,
    connections,
    amount: codes.length,
    next: () => ({ body: JSON.stringify({ appId: "demo", code: codes[i++] }) }),
    onAnswer: (body) => {
      if (!keep) return body.includes('"accessToken"');
      const json = JSON.parse(body);
      signed.push({ access: json.tokens.accessToken, refresh: json.tokens.refreshToken, openid: json.openid });
      return Boolean(json.tokens?.accessToken);
    },
  });
  if (stats.errors) throw new Error(`logging in ${codes.length} users: errors ${JSON.stringify(stats.errorKinds)}`);
  return { signed, stats };
}

/**
 * Moves the simulator's clock past a code's 5-minute life. Only spent codes exist when this is
 * called, and the simulator sweeps expired codes on every mint by walking all of them: without
 * this, minting gets slower with every code still alive (100k seeded users took minutes).
 */
export async function expireSpentCodes(child: Child): Promise<void> {
  const res = await fetch(`${child.simUrl}/sim/clock`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ advanceMs: 301_000 }) });
  if (!res.ok) throw new Error(`simulator clock: ${res.status} ${await res.text()}`);
}

/** Creates `n` users and as many sessions through Login, in batches of freshly minted codes. */
async function seed(child: Child, n: number, log: (s: string) => void) {
  const started = performance.now();
  const openids: string[] = [];
  const batch = 5_000;
  let mintSeconds = 0;
  let loginSeconds = 0;
  for (let done = 0; done < n; done += batch) {
    const size = Math.min(batch, n - done);
    // Explicit openids, so the returning-user runs can draw from every seeded user.
    const ids = Array.from({ length: size }, (_, i) => `bench-${done + i}-${Math.random().toString(36).slice(2, 10)}`);
    const mintedAt = performance.now();
    const codes = await mintCodes(child, size, ids);
    mintSeconds += (performance.now() - mintedAt) / 1000;
    const { stats } = await loginAll(child, codes, false);
    loginSeconds += stats.seconds;
    openids.push(...ids);
    await expireSpentCodes(child);
    if ((done + size) % 20_000 === 0 || done + size === n) {
      log(`  seeded ${done + size}/${n} users (${((performance.now() - started) / 1000).toFixed(0)} s; Login at ${Math.round(stats.rps)}/s; RSS ${fmtMB(rssOf(child.pid))})`);
    }
  }
  // One more mint sweeps the last spent codes out of the simulator.
  await mintCodes(child, 1);
  return { openids, seconds: (performance.now() - started) / 1000, mintSeconds, loginSeconds };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Scenario extends RunStats {
  id: string;
  label: string;
  transport: string;
  generator: "autocannon" | "ghz" | "paced";
  /** Which trivial RPC this one is compared with: the same transport's Health/Check. */
  trivialId: string;
  rssBefore: number;
  rssAfter: number;
  /** The service's event-loop delay during the run (ms; from its /metrics), when it has one. */
  serverLoopDelayP99?: number;
  serverLoopDelayMax?: number;
}

interface Phase {
  name: string;
  storedUsers: number;
  storedSessions: number;
  scenarios: Scenario[];
  rssStart: number;
  rssEnd: number;
  seed?: {
    users: number;
    seconds: number;
    mintSeconds: number;
    loginSeconds: number;
    /** The service's RSS before seeding and right after (no GC forced), and after a full GC. */
    rssBefore: number;
    rssAfter: number;
    rssAfterGc: number;
    /** V8 heap in use after a full GC, before and after seeding. */
    heapBefore: number;
    heapAfter: number;
    /** Live heap and RSS (both after a full GC) added per seeded user with its session. */
    bytesPerUserHeap: number;
    bytesPerUserRss: number;
  };
}

/** How long a run goes: the warm-up (seconds, or in smoke a request count), else the measured duration. */
const timingOf = (opts: Options) => (warm: boolean) => (!warm ? { duration: opts.duration } : opts.warmupSeconds ? { duration: opts.warmupSeconds } : { amount: opts.warmupRequests });

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a scenario is, before it is measured. */
type ScenarioMeta = Omit<Scenario, keyof RunStats | "rssBefore" | "rssAfter" | "serverLoopDelayP99" | "serverLoopDelayMax">;

async function measure(child: Child, meta: ScenarioMeta, run: (warm: boolean) => Promise<RunStats>, log: (s: string) => void): Promise<Scenario> {
  const service = child.grpcUrl !== undefined;
  // Each scenario starts from a collected heap, so none pays for the garbage of the one before
  // (after seeding 100k users, the first scenario otherwise ran into old-generation collections).
  if (service) await collectGarbage(child);
  await run(true); // warm-up: JIT, connections, caches
  await pause(300);
  const rssBefore = rssOf(child.pid);
  if (service) await gaugesOf(child.httpUrl); // a scrape resets the event-loop delay histogram
  const stats = await run(false);
  const scenario: Scenario = { ...meta, ...stats, rssBefore, rssAfter: rssOf(child.pid) };
  if (service) {
    const { loopDelayP99, loopDelayMax } = await gaugesOf(child.httpUrl);
    Object.assign(scenario, { serverLoopDelayP99: loopDelayP99, serverLoopDelayMax: loopDelayMax });
  }
  const lag = service ? `  server loop delay p99 ${fmtMs(scenario.serverLoopDelayP99!)} max ${fmtMs(scenario.serverLoopDelayMax!)}` : "";
  log(`  ${meta.label.padEnd(34)} ${fmtInt(stats.rps).padStart(8)}/s  p50 ${fmtMs(stats.p50)}  p99 ${fmtMs(stats.p99)}  errors ${stats.errors}${lag}${stats.note ? `  (${stats.note})` : ""}`);
  await pause(300);
  return scenario;
}

/** ghz and its descriptor sets, or undefined: then the gRPC rows are skipped. */
interface GrpcLoadTool {
  ghz: string;
  protosets: { identity: string; health: string };
  dir: string;
}

/** How many distinct bearers the GetUser gRPC run's metadata template cycles through: ghz parses the template on every call. */
const GRPC_METADATA_TOKENS = 32;

async function runPhase(opts: Options, configPath: string, name: string, scale: number, bare: Scenario | undefined, grpcTool: GrpcLoadTool | undefined, log: (s: string) => void): Promise<Phase> {
  const mongoDb = process.env.MONGODB_URI ? `identity_bench_${Date.now()}` : undefined;
  const child = await startService(configPath, mongoDb, opts.profileDir);
  try {
    await pause(500);
    const rssStart = rssOf(child.pid);
    const phase: Phase = { name, storedUsers: 0, storedSessions: 0, scenarios: [], rssStart, rssEnd: NaN };
    let seededOpenids: string[] = [];
    if (scale) {
      log(`seeding ${scale} users and sessions through Login`);
      const before = await collectGarbage(child);
      const seeded = await seed(child, scale, log);
      const rssAfter = rssOf(child.pid);
      const after = await collectGarbage(child);
      seededOpenids = seeded.openids;
      phase.seed = {
        users: scale,
        seconds: seeded.seconds,
        mintSeconds: seeded.mintSeconds,
        loginSeconds: seeded.loginSeconds,
        rssBefore: rssStart,
        rssAfter,
        rssAfterGc: after.rss,
        heapBefore: before.heapUsed,
        heapAfter: after.heapUsed,
        bytesPerUserRss: (after.rss - before.rss) / scale,
        bytesPerUserHeap: (after.heapUsed - before.heapUsed) / scale,
      };
      log(
        `  ${scale} users in ${seeded.seconds.toFixed(0)} s; RSS ${fmtMB(rssStart)} → ${fmtMB(rssAfter)} (${fmtMB(after.rss)} after a full GC); live heap ${fmtMB(before.heapUsed)} → ${fmtMB(after.heapUsed)}`,
      );
    }

    log(`preparing ${opts.users} signed-in users`);
    const signed = (await loginAll(child, await mintCodes(child, opts.users), true)).signed;
    phase.storedUsers = scale + opts.users;
    phase.storedSessions = scale + opts.users;
    const bearers = signed.map((s) => `Bearer ${s.access}`);
    const returning = seededOpenids.length ? seededOpenids : signed.map((s) => s.openid);
    const refreshPool = signed.map((s) => s.refresh);
    const http1 = { url: child.httpUrl, pid: child.pid, connections: opts.connections };
    const scenarios = phase.scenarios;
    const timing = timingOf(opts);
    const add = async (meta: ScenarioMeta, run: (warm: boolean) => Promise<RunStats>) => {
      if (!opts.only || opts.only.includes(meta.id)) scenarios.push(await measure(child, meta, run, log));
    };
    if (bare) scenarios.push(bare);

    // Each gRPC row runs ghz against the h2c listener; without ghz there are none (no stand-in figure).
    const addGrpc = async (meta: Omit<ScenarioMeta, "transport" | "generator" | "trivialId">, load: Pick<GhzLoad, "call" | "data" | "metadata"> & { protoset: "identity" | "health" }) => {
      if (!grpcTool) return;
      const target = new URL(child.grpcUrl!).host;
      await add({ ...meta, transport: "h2c gRPC", generator: "ghz", trivialId: "health-grpc" }, (warm) =>
        runGhz({
          ...load,
          ghz: grpcTool.ghz,
          protoset: grpcTool.protosets[load.protoset],
          dir: grpcTool.dir,
          target,
          pid: child.pid,
          connections: opts.grpcConnections,
          concurrency: opts.grpcConcurrency,
          ...timing(warm),
        }),
      );
    };
    // Go raw strings (backquoted): ghz checks the metadata is JSON before it fills the template.
    const templateTokens = signed.slice(0, GRPC_METADATA_TOKENS).map((s) => `\`${s.access}\``);
    let rotation = 0;
    const nextBearer = () => ({ headers: { authorization: bearers[rotation++ % bearers.length]! } });

    await add({ id: "health-json", label: "Health/Check JSON (trivial RPC)", transport: "HTTP/1.1 Connect JSON", generator: "autocannon", trivialId: "health-json" }, (warm) =>
      runHttp({ ...http1, path: HEALTH_CHECK, ...timing(warm) }),
    );
    await addGrpc({ id: "health-grpc", label: "Health/Check gRPC (trivial RPC)" }, { protoset: "health", call: "grpc.health.v1.Health/Check" });
    await add({ id: "checklogin-json", label: "CheckLogin JSON", transport: "HTTP/1.1 Connect JSON", generator: "autocannon", trivialId: "health-json" }, (warm) =>
      runHttp({ ...http1, path: `${SERVICE}/CheckLogin`, next: nextBearer, ...timing(warm) }),
    );
    // Every signed-in user's token, one a call: in the request's access_token (a data file ghz sends
    // round-robin), since a metadata template listing them all would be parsed again on every call.
    await addGrpc({ id: "checklogin-grpc", label: "CheckLogin gRPC" }, { protoset: "identity", call: "identity.v1.IdentityService/CheckLogin", data: signed.map((s) => ({ accessToken: s.access })) });
    await add({ id: "getuser-json", label: "GetUser JSON", transport: "HTTP/1.1 Connect JSON", generator: "autocannon", trivialId: "health-json" }, (warm) =>
      runHttp({ ...http1, path: `${SERVICE}/GetUser`, next: nextBearer, ...timing(warm) }),
    );
    // GetUser reads the caller from the bearer: metadata, cycling through a few users' tokens.
    await addGrpc(
      { id: "getuser-grpc", label: "GetUser gRPC" },
      {
        protoset: "identity",
        call: "identity.v1.IdentityService/GetUser",
        metadata: `{"authorization":"Bearer {{ index (list ${templateTokens.join(" ")}) (mod .RequestNumber ${templateTokens.length}) }}"}`,
      },
    );

    // Login: one fresh code a request. The warm-up (a fixed count) tells the rate, which sizes the pool.
    const loginRun = (mint: (n: number) => Promise<string[]>, firstLogin: boolean) => {
      let estimate = 0;
      return async (warm: boolean) => {
        await expireSpentCodes(child);
        const n = warm ? opts.warmupRequests : Math.ceil(estimate * opts.duration * 1.5) + 4 * opts.connections;
        const codes = await mint(n);
        await pause(200);
        let i = 0;
        const load: HttpLoad = {
          ...http1,
          path: `${SERVICE}/Login`,
          next: () => {
            if (i >= codes.length) load.exhausted = true;
            return { body: JSON.stringify({ appId: "demo", code: codes[Math.min(i++, codes.length - 1)] }) };
          },
          onAnswer: (body) => body.includes(firstLogin ? '"firstLogin":true' : '"firstLogin":false'),
          ...(warm ? { amount: n } : { duration: opts.duration }),
        };
        const stats = await runHttp(load);
        if (warm) estimate = stats.rps;
        return stats;
      };
    };
    let pick = 0;
    await add(
      { id: "login-returning", label: "Login, returning user", transport: "HTTP/1.1 Connect JSON", generator: "autocannon", trivialId: "health-json" },
      loginRun(
        (n) =>
          mintCodes(
            child,
            n,
            Array.from({ length: n }, () => {
              pick = (pick + 7919) % returning.length;
              return returning[pick]!;
            }),
          ),
        false,
      ),
    );
    await add(
      { id: "login-new", label: "Login, new user", transport: "HTTP/1.1 Connect JSON", generator: "autocannon", trivialId: "health-json" },
      loginRun((n) => mintCodes(child, n), true),
    );

    // Refresh: every answer's new refresh token goes back into the pool; no token is sent twice.
    let head = 0;
    await add({ id: "refresh-json", label: "Refresh", transport: "HTTP/1.1 Connect JSON", generator: "autocannon", trivialId: "health-json" }, (warm) => {
      const load: HttpLoad = {
        ...http1,
        path: `${SERVICE}/Refresh`,
        next: () => {
          if (head >= refreshPool.length) load.exhausted = true;
          return { body: JSON.stringify({ refreshToken: refreshPool[Math.min(head++, refreshPool.length - 1)] }) };
        },
        onAnswer: (body) => {
          const token = /"refreshToken":"([^"]+)"/.exec(body)?.[1];
          if (token) refreshPool.push(token);
          return token !== undefined;
        },
        ...timing(warm),
      };
      return runHttp(load);
    });

    // p99 at half of CheckLogin JSON's maximum rate, paced evenly.
    const checkMax = scenarios.find((s) => s.id === "checklogin-json")?.rps ?? 0;
    const half = Math.max(1, Math.round(checkMax / 2));
    if (checkMax)
      await add({ id: "checklogin-json-half", label: `CheckLogin JSON at ${fmtInt(half)}/s (half)`, transport: "HTTP/1.1 Connect JSON", generator: "paced", trivialId: "health-json" }, (warm) =>
        runPaced({ ...http1, path: `${SERVICE}/CheckLogin`, rate: half, duration: warm ? 1 : opts.duration, headerSets: bearers.map((authorization) => ({ authorization })) }),
      );
    // The same paced load on the trivial RPC and on bare fastify: the p99 of Connect's own stack on
    // this server, and of a server that does nothing, on this machine with this generator.
    if (checkMax)
      await add({ id: "health-json-half", label: `Health/Check JSON at ${fmtInt(half)}/s`, transport: "HTTP/1.1 Connect JSON", generator: "paced", trivialId: "health-json" }, (warm) =>
        runPaced({ ...http1, path: HEALTH_CHECK, rate: half, duration: warm ? 1 : opts.duration }),
      );
    if (checkMax && (!opts.only || opts.only.includes("bare-half"))) {
      scenarios.push(
        await measureBare(
          { id: "bare-half", label: `bare fastify at ${fmtInt(half)}/s (floor)`, transport: "HTTP/1.1 JSON", generator: "paced", trivialId: "bare-half" },
          (bare, warm) => runPaced({ url: bare.httpUrl, path: "/bare", pid: bare.pid, connections: opts.connections, rate: half, duration: warm ? 1 : opts.duration }),
          log,
        ),
      );
    }
    phase.rssEnd = rssOf(child.pid);
    return phase;
  } finally {
    await stopChild(child);
    if (mongoDb) await dropDatabase(process.env.MONGODB_URI!, mongoDb).catch((e) => log(`could not drop ${mongoDb}: ${e}`));
  }
}

async function dropDatabase(uri: string, name: string): Promise<void> {
  const { MongoClient } = await import("mongodb");
  const client = await MongoClient.connect(uri, { serverSelectionTimeoutMS: 5000 });
  try {
    await client.db(name).dropDatabase();
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Report: table, JSON, SVG

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–");
const fmtMs = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : "–");
const fmtMB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

interface Report {
  generatedAt: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; node: string; platform: string };
  settings: {
    mode: "full" | "smoke";
    durationSeconds: number;
    connections: number;
    grpcConcurrency: number;
    signedInUsers: number;
    store: string;
    simulator: string;
    /** What made the gRPC rows: ghz and its version, or why there are none. */
    grpcGenerator: string;
    grpcConnections: number;
    /** WORKERS the service ran with (unset: 1). */
    workers: string;
  };
  ceilings: { bareFastify: number; trivialJson: number; trivialGrpc: number };
  phases: Phase[];
  /** packages/client's local verifier: scripts/bench-verifier.ts. */
  verifier?: import("./bench-verifier.js").VerifierReport;
  targets: Array<{ name: string; value: string; target: string; met: boolean }>;
  /** Per RPC, JSON (autocannon) against gRPC (ghz) in the first phase, when both ran. */
  transports: Array<{ rpc: string; jsonRps: number; grpcRps: number; jsonP99: number; grpcP99: number; grpcToJson: number }>;
  errors: number;
}

function transportsOf(phase: Phase): Report["transports"] {
  const pairs = [
    ["Health/Check", "health"],
    ["CheckLogin", "checklogin"],
    ["GetUser", "getuser"],
  ] as const;
  return pairs.flatMap(([rpc, id]) => {
    const json = phase.scenarios.find((s) => s.id === `${id}-json`);
    const grpc = phase.scenarios.find((s) => s.id === `${id}-grpc`);
    return json && grpc ? [{ rpc, jsonRps: json.rps, grpcRps: grpc.rps, jsonP99: json.p99, grpcP99: grpc.p99, grpcToJson: grpc.rps / json.rps }] : [];
  });
}

function ratioOf(scenario: Scenario, phase: Phase, what: "bare" | "trivial"): number | undefined {
  const other = phase.scenarios.find((s) => s.id === (what === "bare" ? "bare" : scenario.trivialId));
  return other && other !== scenario ? scenario.rps / other.rps : undefined;
}

function table(phase: Phase): string {
  const head = ["scenario", "req/s", "p50 ms", "p99 ms", "errors", "% bare", "% trivial", "server CPU", "loadgen CPU", "srv loop max ms"];
  const rows = phase.scenarios.map((s) => {
    // A paced run's rate is set, not reached: no ratio.
    const bare = s.generator === "paced" ? undefined : ratioOf(s, phase, "bare");
    const trivial = s.generator === "paced" ? undefined : ratioOf(s, phase, "trivial");
    return [
      s.label,
      fmtInt(s.rps),
      fmtMs(s.p50),
      fmtMs(s.p99),
      String(s.errors),
      bare === undefined ? "–" : `${Math.round(bare * 100)}%`,
      trivial === undefined ? "–" : `${Math.round(trivial * 100)}%`,
      `${Math.round(s.serverCpu * 100)}%`,
      `${Math.round(s.clientCpu * 100)}%`,
      s.serverLoopDelayMax === undefined ? "–" : fmtMs(s.serverLoopDelayMax),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function targetsOf(phases: Phase[]): Report["targets"] {
  const empty = phases[0]!;
  const get = (phase: Phase, id: string) => phase.scenarios.find((s) => s.id === id);
  const out: Report["targets"] = [];
  const ratioTarget = (id: string, min: number, name: string) => {
    const s = get(empty, id);
    const r = s && ratioOf(s, empty, "trivial");
    if (r !== undefined) out.push({ name, value: `${Math.round(r * 100)}%`, target: `≥ ${Math.round(min * 100)}% of Health/Check`, met: r >= min });
  };
  ratioTarget("checklogin-json", 0.8, "CheckLogin JSON");
  ratioTarget("login-returning", 0.4, "Login, returning user");
  ratioTarget("login-new", 0.3, "Login, new user");
  for (const phase of phases) {
    const half = get(phase, "checklogin-json-half");
    const trivial = get(phase, "health-json-half");
    const floor = get(phase, "bare-half");
    const context = [trivial && `Health/Check ${fmtMs(trivial.p99)} ms`, floor && `bare fastify ${fmtMs(floor.p99)} ms`].filter(Boolean).join(", ");
    if (half)
      out.push({ name: `CheckLogin JSON p99 at half rate (${phase.name})`, value: `${fmtMs(half.p99)} ms${context ? ` (at the same rate: ${context})` : ""}`, target: "< 10 ms", met: half.p99 < 10 });
  }
  const errors = phases.reduce((a, p) => a + p.scenarios.reduce((b, s) => b + s.errors, 0), 0);
  out.push({ name: "errors under load", value: String(errors), target: "0", met: errors === 0 });
  const scaled = phases[1];
  if (scaled) {
    for (const s of scaled.scenarios) {
      const base = get(empty, s.id);
      if (!base || s.generator === "paced" || s.id === "bare") continue;
      const r = s.rps / base.rps;
      out.push({ name: `${s.label} with ${scaled.name}`, value: `${Math.round(r * 100)}% of empty`, target: "≥ 85%", met: r >= 0.85 });
    }
    if (scaled.seed) {
      out.push({ name: "memory per 100k users + sessions (live heap after GC)", value: fmtMB(scaled.seed.bytesPerUserHeap * 100_000), target: "reported", met: true });
      out.push({ name: "memory per 100k users + sessions (RSS after GC)", value: fmtMB(scaled.seed.bytesPerUserRss * 100_000), target: "reported", met: true });
    }
  }
  return out;
}

/** A value label on a white backing (width estimated from the font size), so ceiling lines don't run through it. */
function valueLabel(x: number, y: number, text: string, size: number, fill: string): string {
  const width = text.length * size * 0.56 + 4;
  return `<rect x="${x - 2}" y="${y - size}" width="${width.toFixed(1)}" height="${size + 4}" fill="#fff" fill-opacity="0.9"/><text x="${x}" y="${y}" fill="${fill}" font-size="${size}">${esc(text)}</text>`;
}
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A horizontal bar chart of req/s per scenario, the two ceilings as vertical lines. */
function svgOf(report: Report): string {
  const [empty, scaled] = report.phases;
  const rows = empty!.scenarios;
  const W = 960;
  const left = 270;
  const right = 200;
  const plot = W - left - right;
  const rowH = scaled ? 34 : 26;
  const top = scaled ? 96 : 84;
  const H = top + rows.length * rowH + 56;
  const max = Math.max(...report.phases.flatMap((p) => p.scenarios.map((s) => s.rps)));
  const step = niceStep(max / 5);
  const axisMax = Math.ceil(max / step) * step;
  const x = (v: number) => left + (v / axisMax) * plot;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="16" y="22" font-size="15" font-weight="bold">identity service: requests per second (higher is better), p99 latency</text>`);
  const s = report.settings;
  const m = report.machine;
  parts.push(
    `<text x="16" y="40" fill="#555">${esc(`${m.cpus} cores (${m.cpuModel}), Node ${m.node}, ${s.store} store, WeChat simulator in its own process; ${s.connections} connections, ${s.durationSeconds} s a run`)}</text>`,
  );
  if (scaled) {
    parts.push(`<rect x="16" y="50" width="12" height="10" fill="#4c78a8"/><text x="32" y="59">${esc(empty!.name)}</text>`);
    parts.push(`<rect x="146" y="50" width="12" height="10" fill="#9ecae9"/><text x="162" y="59">${esc(`${scaled.name} stored`)}</text>`);
  }
  for (let v = 0; v <= axisMax + 1e-9; v += step) {
    parts.push(`<line x1="${x(v)}" y1="${top - 6}" x2="${x(v)}" y2="${top + rows.length * rowH}" stroke="#eee"/>`);
    parts.push(`<text x="${x(v)}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#555">${fmtInt(v)}</text>`);
  }
  const ceiling = (v: number, label: string, color: string, dy: number) => {
    if (!v) return;
    parts.push(`<line x1="${x(v)}" y1="${top - 10}" x2="${x(v)}" y2="${top + rows.length * rowH}" stroke="${color}" stroke-width="1.5" stroke-dasharray="5,3"/>`);
    parts.push(`<text x="${x(v)}" y="${top - 14 - dy}" text-anchor="middle" fill="${color}" font-size="11">${esc(label)}</text>`);
  };
  ceiling(report.ceilings.bareFastify, `bare fastify ${fmtInt(report.ceilings.bareFastify)}/s`, "#e45756", 0);
  ceiling(
    report.ceilings.trivialJson,
    `trivial RPC (JSON) ${fmtInt(report.ceilings.trivialJson)}/s`,
    "#f58518",
    Math.abs(x(report.ceilings.bareFastify) - x(report.ceilings.trivialJson)) < 160 ? 12 : 0,
  );
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="${left - 8}" y="${y + 14}" text-anchor="end">${esc(row.label)}</text>`);
    const barH = scaled ? 14 : 16;
    parts.push(
      `<rect x="${left}" y="${y + 2}" width="${Math.max(1, x(row.rps) - left)}" height="${barH}" fill="${row.id.startsWith("bare") ? "#e45756" : row.id.startsWith("health") ? "#f58518" : "#4c78a8"}"/>`,
    );
    parts.push(valueLabel(x(row.rps) + 6, y + 14, `${fmtInt(row.rps)}/s · p99 ${fmtMs(row.p99)} ms${row.errors ? ` · ${row.errors} errors` : ""}`, 12, "#333"));
    const other = scaled?.scenarios.find((s2) => s2.id === row.id);
    if (other && row.id !== "bare") {
      parts.push(`<rect x="${left}" y="${y + 18}" width="${Math.max(1, x(other.rps) - left)}" height="10" fill="#9ecae9"/>`);
      parts.push(valueLabel(x(other.rps) + 6, y + 28, `${fmtInt(other.rps)}/s · p99 ${fmtMs(other.p99)} ms`, 10, "#555"));
    }
  });
  parts.push(
    `<text x="16" y="${H - 12}" fill="#777" font-size="11">${esc(`${report.generatedAt.slice(0, 10)} · HTTP/1.1 rows: autocannon; gRPC rows: ${s.grpcGenerator ? `${s.grpcGenerator}, ${s.grpcConcurrency} calls over ${s.grpcConnections} h2c connections` : `a ${s.grpcConcurrency}-call loop over one h2c connection`}; paced rows: open-loop at half of CheckLogin JSON's rate in that phase`)}</text>`,
  );
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

function niceStep(raw: number): number {
  const pow = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  const started = performance.now();
  const log = (s: string) => console.log(s);
  const store = process.env.MONGODB_URI ? "MongoDB" : "embedded (memory)";
  log(
    `identity benchmark (${opts.smoke ? "smoke" : "full"}): ${opts.duration} s a scenario, ${opts.connections} connections, ${opts.users} signed-in users, ${store} store${opts.scale ? `, then ${opts.scale} stored users` : ""}`,
  );

  const tmp = mkdtempSync(join(os.tmpdir(), "identity-bench-config-"));
  const configPath = await writeBenchConfig(tmp);
  const ghz = findGhz();
  const grpcTool = ghz ? { ghz, protosets: buildProtosets(tmp), dir: tmp } : undefined;
  log(
    ghz
      ? `gRPC rows: ghz ${GHZ_VERSION} (${ghz}), ${opts.grpcConcurrency} calls in flight over ${opts.grpcConnections} connections`
      : `gRPC rows skipped: ghz is not on PATH or in ~/.cache/identity-ci/gobin (${GHZ_INSTALL})`,
  );

  try {
    let bare: Scenario | undefined;
    if (!opts.only || opts.only.includes("bare")) {
      log("bare fastify (the ceiling)");
      bare = await measureBare(
        { id: "bare", label: "bare fastify JSON POST", transport: "HTTP/1.1 JSON", generator: "autocannon", trivialId: "bare" },
        (child, warm) => runHttp({ url: child.httpUrl, path: "/bare", pid: child.pid, connections: opts.connections, ...timingOf(opts)(warm) }),
        log,
      );
    }

    const phases: Phase[] = [];
    log("empty store");
    phases.push(await runPhase(opts, configPath, "empty store", 0, bare, grpcTool, log));
    if (opts.scale) {
      const name = `${fmtInt(opts.scale)} users + sessions`;
      log(name);
      phases.push(await runPhase(opts, configPath, name, opts.scale, bare, grpcTool, log));
    }

    const empty = phases[0]!;
    const rpsOf = (id: string) => empty.scenarios.find((s) => s.id === id)?.rps ?? 0;
    const report: Report = {
      generatedAt: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model.trim() ?? "?",
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        node: process.versions.node,
        platform: `${os.platform()} ${os.release()}`,
      },
      settings: {
        mode: opts.smoke ? "smoke" : "full",
        durationSeconds: opts.duration,
        connections: opts.connections,
        grpcConcurrency: opts.grpcConcurrency,
        signedInUsers: opts.users,
        store,
        simulator: "in its own process (WECHAT_API_BASE), as WeChat is not on the service's machine; it shares the machine's two cores",
        grpcGenerator: ghz ? `ghz ${GHZ_VERSION}` : "none (ghz not installed): no gRPC rows",
        grpcConnections: opts.grpcConnections,
        workers: process.env.WORKERS || "1",
      },
      ceilings: { bareFastify: rpsOf("bare"), trivialJson: rpsOf("health-json"), trivialGrpc: rpsOf("health-grpc") },
      phases,
      targets: targetsOf(phases),
      transports: transportsOf(empty),
      errors: phases.reduce((a, p) => a + p.scenarios.reduce((b, s) => b + s.errors, 0), 0),
    };

    for (const phase of phases) {
      log(`\n== ${phase.name}: ${phase.storedUsers} users, ${phase.storedSessions} sessions stored before the runs; server RSS ${fmtMB(phase.rssStart)} at start, ${fmtMB(phase.rssEnd)} at the end`);
      if (phase.seed)
        log(
          `   seeding: ${phase.seed.users} users in ${phase.seed.seconds.toFixed(0)} s (minting codes ${phase.seed.mintSeconds.toFixed(0)} s, Login ${phase.seed.loginSeconds.toFixed(0)} s); per 100k users + sessions: live heap +${fmtMB(phase.seed.bytesPerUserHeap * 100_000)}, RSS +${fmtMB(phase.seed.bytesPerUserRss * 100_000)} (both after a full GC; RSS right after seeding, before GC: ${fmtMB(phase.seed.rssAfter)})`,
        );
      log(table(phase));
    }
    log("\n% trivial: against Health/Check on the same transport (JSON rows: HTTP/1.1 JSON; gRPC rows: h2c gRPC)");
    if (report.transports.length) {
      log(`\nJSON (autocannon, ${opts.connections} connections) vs gRPC (ghz, ${opts.grpcConcurrency} calls over ${opts.grpcConnections} connections), ${empty.name}`);
      for (const t of report.transports) {
        log(
          `  ${t.rpc.padEnd(13)} JSON ${fmtInt(t.jsonRps).padStart(7)}/s p99 ${fmtMs(t.jsonP99).padStart(5)} ms   gRPC ${fmtInt(t.grpcRps).padStart(7)}/s p99 ${fmtMs(t.grpcP99).padStart(5)} ms   gRPC/JSON ${Math.round(t.grpcToJson * 100)}%`,
        );
      }
    }
    log("\ntargets");
    for (const t of report.targets) log(`  ${t.met ? "met   " : "MISSED"}  ${t.name}: ${t.value} (target ${t.target})`);
    for (const phase of phases) {
      for (const s of phase.scenarios) {
        if (s.errors) log(`errors in ${s.label} (${phase.name}): ${JSON.stringify(s.errorKinds)}`);
      }
    }

    if (!opts.only) {
      log("\nlocal token verification (packages/client)");
      // Imported here: bench-verifier.ts imports from this file.
      report.verifier = await (await import("./bench-verifier.js")).benchVerifier({ smoke: opts.smoke, log });
      report.errors += report.verifier.errors;
    }

    mkdirSync(opts.out, { recursive: true });
    const jsonPath = join(opts.out, "latest.json");
    const svgPath = join(opts.out, "latest.svg");
    writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(svgPath, svgOf(report));
    const shown = (p: string) => (p.startsWith(ROOT) ? relative(ROOT, p) : p);
    log(`\nwrote ${shown(jsonPath)} and ${shown(svgPath)} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    if (report.errors) {
      log(`FAILED: ${report.errors} errors under load`);
      return 1;
    }
    return 0;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// Run only as a script: scripts/soak.ts imports the pieces above.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes("--serve-bare")) {
    await serveBare();
  } else if (process.argv[2] === "--pace") {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    process.stdout.write(JSON.stringify(await paceJob(JSON.parse(Buffer.concat(chunks).toString()) as PaceJob)));
  } else if (process.argv.includes("--serve-sim")) {
    await serveSimulator();
  } else if (process.argv[2] === "--render") {
    // Redraws the chart of a saved report: `bench.ts --render bench/latest.json` writes bench/latest.svg.
    const jsonPath = process.argv[3] ?? join(ROOT, "bench", "latest.json");
    writeFileSync(`${jsonPath.replace(/\.json$/, "")}.svg`, svgOf(JSON.parse(readFileSync(jsonPath, "utf8")) as Report));
  } else {
    process.exitCode = await main().catch((e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
      return 1;
    });
  }
}
