// Local token verification (packages/client's createTokenVerifier): checks per second and per CPU
// core, warm (every token seen before) and cold (each token's first check: the signature), and the
// revocation lag, from a Logout's answer on instance A to the verifier watching instance B refusing
// the token. The two instances run in a child process on one store (the embedded one, or
// MONGODB_URI); the verifier runs here, alone on its event loop.
//
// `npm run bench` runs it last and puts its figures in bench/latest.json under "verifier"; run
// alone (`node --import tsx scripts/bench-verifier.ts [--smoke]`) it updates only that key.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep, setImmediate as yieldToIo } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { createTokenVerifier, type TokenVerifier } from "../packages/client/src/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const API_KEY = "bench-verifier-internal-key-0123456789";
const ISSUER = "identity";
const READY_LINE = "bench-verifier pair ";

interface Instance {
  httpUrl: string;
  grpcUrl: string;
  sim: string;
}

export interface VerifierReport {
  settings: { tokens: number; warmSeconds: number; logouts: number; store: string; revocationPollMs: number; note: string };
  warm: Rate;
  cold: Rate;
  revocationLag: { samples: number; p50Ms: number; p99Ms: number; maxMs: number };
  targets: Array<{ name: string; value: string; target: string; met: boolean }>;
  errors: number;
}

interface Rate {
  checks: number;
  perSecond: number;
  /** Checks per CPU-second of this process: per core. */
  perCore: number;
}

/** The service's default revocation poll: what the lag is measured with. */
const REVOCATION_POLL_MS = 250;

/** `--serve-pair`: instances A and B on one store, each with the WeChat simulator; prints their URLs. */
async function servePair(): Promise<void> {
  const { generateSigningKey } = await import("../src/auth/access-tokens.js");
  const { MemoryStore } = await import("../src/store/memory-store.js");
  const { startHarness } = await import("../test/support/harness.js");
  const limit = 100_000_000;
  const file = {
    apps: [{ id: "demo", platform: "wechat-miniprogram", appid: "wx0000000000000001", secret: "s" }],
    signingKeys: [(await generateSigningKey()).privateJwk],
    internalCallers: [{ name: "bench", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
    limits: { loginsPerAddress: limit, loginsPerApp: limit, refreshesPerAddress: limit, callsPerUser: limit },
    tokens: { maxSessionsPerUser: 1000 },
    revocations: { pollIntervalMs: REVOCATION_POLL_MS },
  };
  const uri = process.env.MONGODB_URI;
  const env = { LOG_LEVEL: "warn", ...(uri ? { MONGODB_URI: uri, MONGODB_DB: `identity_bench_verifier_${Date.now().toString(36)}` } : {}) };
  const store = uri ? undefined : new MemoryStore();
  const [a, b] = [await startHarness(file, env, store), await startHarness(file, env, store)];
  const urls = (h: typeof a): Instance => ({ httpUrl: h.httpUrl, grpcUrl: h.grpcUrl, sim: h.sim });
  console.log(`${READY_LINE}${JSON.stringify({ a: urls(a), b: urls(b) })}`);
  process.once("SIGTERM", () => void Promise.all([a.close(), b.close()]).then(() => process.exit(0)));
}

async function startPair() {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/bench-verifier.ts", "--serve-pair"], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const urls = await new Promise<{ a: Instance; b: Instance }>((resolve, reject) => {
    let seen = "";
    child.once("exit", (code) => reject(new Error(`the instances exited with ${code}`)));
    child.stdout.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      const line = seen.split("\n").find((l) => l.startsWith(READY_LINE));
      if (line) resolve(JSON.parse(line.slice(READY_LINE.length)));
    });
  });
  child.removeAllListeners("exit");
  const stop = () => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", () => resolve()).kill("SIGTERM")));
  return { ...urls, stop };
}

async function post<T = unknown>(url: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Real logins on `at`, `concurrency` at a time: each an access token of its own user. */
async function loginMany(at: Instance, n: number, concurrency = 16): Promise<string[]> {
  const tokens: string[] = [];
  const one = async () => {
    const { code } = await post<{ code: string }>(`${at.sim}/sim/login-code`, { appid: "wx0000000000000001" });
    const answer = await post<{ tokens: { accessToken: string } }>(`${at.httpUrl}/identity.v1.IdentityService/Login`, { appId: "demo", code });
    tokens.push(answer.tokens.accessToken);
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < n) await one();
    }),
  );
  return tokens;
}

/** Checks every token in turn until `seconds` have passed (or once through, for seconds 0); counts refusals and fallbacks as errors. */
async function rateOf(v: TokenVerifier, tokens: string[], seconds: number): Promise<Rate & { errors: number }> {
  let errors = 0;
  let i = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const until = started + seconds * 1000;
  while (seconds ? performance.now() < until : i < tokens.length) {
    // A batch between clock reads, so reading the clock costs little of what is measured.
    for (const end = seconds ? i + 256 : Math.min(tokens.length, i + 256); i < end; i++) {
      const identity = await v.check(tokens[i % tokens.length]!).catch(() => null);
      // An answer with the user came from CheckLogin: the stream was not live.
      if (!identity || identity.user) errors++;
    }
  }
  const elapsed = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { checks: i, perSecond: i / elapsed, perCore: i / ((used.user + used.system) / 1e6), errors };
}

/** Logs `tokens` out on A, `concurrency` at a time, and times each until the verifier refuses it. */
async function lagsOf(v: TokenVerifier, a: Instance, tokens: string[], concurrency = 4): Promise<{ lags: number[]; errors: number }> {
  const lags: number[] = [];
  let errors = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < tokens.length; i = next++) {
        const token = tokens[i]!;
        // At a random point of the service's poll cycle: logging out right after the last refusal
        // would always land just after a poll, and measure the poll interval itself.
        await sleep(Math.random() * REVOCATION_POLL_MS);
        await post(`${a.httpUrl}/identity.v1.IdentityService/Logout`, {}, { authorization: `Bearer ${token}` });
        const answered = performance.now();
        for (;;) {
          const refused = await v.check(token).then(
            () => false,
            () => true,
          );
          if (refused) break;
          if (performance.now() - answered > 10_000) {
            errors++;
            break;
          }
          // The stream's messages arrive as I/O: let them in between checks.
          await yieldToIo();
        }
        lags.push(performance.now() - answered);
      }
    }),
  );
  return { lags, errors };
}

export async function benchVerifier({ smoke, log }: { smoke: boolean; log: (line: string) => void }): Promise<VerifierReport> {
  const settings = {
    tokens: smoke ? 200 : 5000,
    warmSeconds: smoke ? 0.5 : 5,
    logouts: smoke ? 10 : 200,
    store: process.env.MONGODB_URI ? "MongoDB" : "embedded (memory)",
    revocationPollMs: REVOCATION_POLL_MS,
    note: "one verifier in one process; the two instances in another; a machine of 2 cores shared with other work, so expect noise",
  };
  const pair = await startPair();
  const verifiers: TokenVerifier[] = [];
  const watchingB = async () => {
    const v = createTokenVerifier({ grpcUrl: pair.b.grpcUrl, httpUrl: pair.b.httpUrl, apiKey: API_KEY, issuer: ISSUER, cacheSize: settings.tokens * 2 });
    verifiers.push(v);
    await v.ready();
    return v;
  };
  try {
    const tokens = await loginMany(pair.a, settings.tokens + settings.logouts);
    const [measured, loggedOut] = [tokens.slice(0, settings.tokens), tokens.slice(settings.tokens)];
    const cold = await rateOf(await watchingB(), measured, 0);
    const v = await watchingB();
    await rateOf(v, measured, 0);
    const warm = await rateOf(v, measured, settings.warmSeconds);
    const { lags, errors: lagErrors } = await lagsOf(v, pair.a, loggedOut);
    // Nearest rank, as bench.ts's percentile (not imported: bench.ts imports this file while it runs).
    const sorted = Float64Array.from(lags).sort();
    const at = (p: number) => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
    const revocationLag = { samples: lags.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
    const report: VerifierReport = {
      settings,
      warm: { checks: warm.checks, perSecond: warm.perSecond, perCore: warm.perCore },
      cold: { checks: cold.checks, perSecond: cold.perSecond, perCore: cold.perCore },
      revocationLag,
      targets: [
        { name: "local verification per core (warm cache)", value: `${Math.round(warm.perCore).toLocaleString("en-US")}/s`, target: ">= 100,000/s", met: warm.perCore >= 100_000 },
        { name: "revocation lag p99, instance A to a verifier on B", value: `${revocationLag.p99Ms.toFixed(0)} ms`, target: "<= 2000 ms", met: revocationLag.p99Ms <= 2000 },
      ],
      errors: warm.errors + cold.errors + lagErrors,
    };
    log(tableOf(report));
    return report;
  } finally {
    await Promise.all(verifiers.map((v) => v.close()));
    await pair.stop();
  }
}

function tableOf(r: VerifierReport): string {
  const int = (n: number) => Math.round(n).toLocaleString("en-US");
  return [
    `local verification (${int(r.settings.tokens)} tokens from real logins; ${r.settings.store} store)`,
    `  warm: ${int(r.warm.perSecond)} checks/s, ${int(r.warm.perCore)} per CPU-second (${int(r.warm.checks)} checks)`,
    `  cold: ${int(r.cold.perSecond)} checks/s, ${int(r.cold.perCore)} per CPU-second (each token's first check)`,
    `  revocation lag A → verifier on B: p50 ${r.revocationLag.p50Ms.toFixed(0)} ms, p99 ${r.revocationLag.p99Ms.toFixed(0)} ms, max ${r.revocationLag.maxMs.toFixed(0)} ms (${r.revocationLag.samples} logouts; the service polls its store every ${r.settings.revocationPollMs} ms)`,
    ...r.targets.map((t) => `  ${t.met ? "met   " : "MISSED"}  ${t.name}: ${t.value} (target ${t.target})`),
    ...(r.errors ? [`  errors: ${r.errors}`] : []),
  ].join("\n");
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes("--serve-pair")) {
    await servePair();
  } else {
    const { values } = parseArgs({ options: { smoke: { type: "boolean", default: false } } });
    const report = await benchVerifier({ smoke: values.smoke ?? false, log: (line) => console.log(line) });
    if (!values.smoke) {
      // Alone, it updates its own key of the last full report.
      const path = join(ROOT, "bench", "latest.json");
      const latest = existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : {};
      writeFileSync(path, `${JSON.stringify({ ...latest, verifier: { generatedAt: new Date().toISOString(), ...report } }, null, 2)}\n`);
    }
    process.exitCode = report.errors ? 1 : 0;
  }
}
