// `npm run soak`: mixed traffic at half the measured maximum for ten minutes (not in CI). Passes
// when no answer was a 5xx, none was lost (a timeout or a dropped connection), and memory stayed flat: from the first minute (pools and caches warm)
// to the end, the live heap (after a full GC) grows by at most 10% plus what the sessions created
// meanwhile take (each Login stores one; SESSION_ALLOWANCE_BYTES is above the benchmark's measured
// cost of a user and a session).
//
// The mix, paced open-loop (requests go out on schedule whether or not answers are back):
//   60% CheckLogin, 20% GetUser (distinct tokens in rotation), 10% Refresh (each answer's token
//   goes back in the pool), 10% Login of returning users (codes minted ahead at the simulator).
// Options: --minutes M (10), --rate R (requests/s; default: half of a 5 s CheckLogin run), --out DIR.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  collectGarbage,
  loginAll,
  mintCodes,
  pace,
  percentile,
  rssOf,
  runHttp,
  startService,
  stopChild,
  writeBenchConfig,
  type Child,
  type PacedRequest,
  type PacedResult,
  type Signed,
} from "./bench.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SERVICE = "/identity.v1.IdentityService";
const SAMPLE_SECONDS = 10;
const SESSION_ALLOWANCE_BYTES = 4096;

interface Sample {
  atSeconds: number;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  status5xx: number;
  /** Requests that got no answer: a timeout or a connection error. */
  lost: number;
  otherErrors: number;
  /** "<RPC> <HTTP status> <reason>" (or "<RPC> <network error>") → count, for every request that got no 200. */
  errorKinds: Record<string, number>;
  rss: number;
}

type Kind = "CheckLogin" | "GetUser" | "Refresh" | "Login";
const MIX: Kind[] = [...Array<Kind>(6).fill("CheckLogin"), "GetUser", "GetUser", "Refresh", "Login"];

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { minutes: { type: "string", default: "10" }, rate: { type: "string" }, out: { type: "string" } } });
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) throw new Error(`--minutes: "${values.minutes}" must be a positive number`);
  const tmp = mkdtempSync(join(os.tmpdir(), "identity-soak-"));
  const child = await startService(await writeBenchConfig(tmp), process.env.MONGODB_URI ? `identity_soak_${Date.now()}` : undefined, undefined);
  try {
    const signed = (await loginAll(child, await mintCodes(child, 2000), true)).signed;
    let rate = Number(values.rate ?? NaN);
    if (!(rate > 0)) {
      let i = 0;
      const max = await runHttp({
        url: child.httpUrl,
        path: `${SERVICE}/CheckLogin`,
        pid: child.pid,
        connections: 50,
        duration: 5,
        next: () => ({ headers: { authorization: `Bearer ${signed[i++ % signed.length]!.access}` } }),
      });
      rate = Math.round(max.rps / 2);
      console.log(`CheckLogin maximum ${Math.round(max.rps)}/s: soaking at ${rate}/s`);
    }
    const samples = await soak(child, signed, rate, minutes, (s) =>
      console.log(
        `${String(s.atSeconds).padStart(4)} s  ${Math.round(s.rps)}/s  p50 ${s.p50.toFixed(1)} ms  p99 ${s.p99.toFixed(1)} ms  5xx ${s.status5xx}  lost ${s.lost}  other errors ${s.otherErrors}  RSS ${(s.rss / 1048576).toFixed(1)} MB${s.status5xx + s.lost + s.otherErrors ? `  ${JSON.stringify(s.errorKinds)}` : ""}`,
      ),
    );
    const { heapAfterWarmup, sessionsAfterWarmup } = samples;
    const end = await collectGarbage(child);
    const total5xx = samples.list.reduce((a, s) => a + s.status5xx, 0);
    const lost = samples.list.reduce((a, s) => a + s.lost, 0);
    const otherErrors = samples.list.reduce((a, s) => a + s.otherErrors, 0);
    const growth = end.heapUsed - heapAfterWarmup;
    const allowance = heapAfterWarmup * 0.1 + sessionsAfterWarmup * SESSION_ALLOWANCE_BYTES;
    const flat = growth <= allowance;
    const passed = total5xx === 0 && lost === 0 && flat;
    const report = {
      generatedAt: new Date().toISOString(),
      rate,
      minutes,
      total5xx,
      lost,
      otherErrors,
      heapAfterWarmup,
      heapAtEnd: end.heapUsed,
      rssAtEnd: end.rss,
      sessionsAfterWarmup,
      heapGrowthBytes: growth,
      allowanceBytes: allowance,
      samples: samples.list,
    };
    const out = values.out ?? join(ROOT, "bench");
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "soak.json"), `${JSON.stringify(report, null, 2)}\n`);
    const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;
    console.log(
      `\n5xx: ${total5xx}; lost: ${lost}; other errors: ${otherErrors}; live heap after the first minute ${mb(heapAfterWarmup)}, at the end ${mb(end.heapUsed)} (both after a full GC): +${mb(growth)} with ${sessionsAfterWarmup} sessions created meanwhile (allowed +${mb(allowance)})`,
    );
    console.log(`${passed ? "passed" : "FAILED"}: wrote ${join(out, "soak.json")}`);
    return passed ? 0 : 1;
  } finally {
    await stopChild(child);
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function soak(child: Child, signed: Signed[], rate: number, minutes: number, log: (s: Sample) => void): Promise<{ list: Sample[]; heapAfterWarmup: number; sessionsAfterWarmup: number }> {
  const refreshPool = signed.map((s) => s.refresh);
  const openids = signed.map((s) => s.openid);
  const codes: string[] = [];
  let minting: Promise<void> | null = null;
  const topUpCodes = () => {
    // Half a minute of logins left: mint another minute's worth (codes live five minutes).
    if (minting || codes.length > (rate / MIX.length) * 30) return;
    minting = mintCodes(child, Math.ceil((rate / MIX.length) * 60), openids)
      .then((fresh) => void codes.push(...fresh))
      .finally(() => (minting = null));
  };
  topUpCodes();
  await minting;

  const list: Sample[] = [];
  const emptyWindow = () => ({ latencies: [] as number[], status5xx: 0, lost: 0, otherErrors: 0, errorKinds: {} as Record<string, number> });
  let window = emptyWindow();
  // Measured once now, and again after the first minute when the run is that long.
  let heapAfterWarmup = (await collectGarbage(child)).heapUsed;
  let logins = 0;
  let loginsAtWarmup = 0;
  let tokenTurn = 0;
  const start = performance.now();

  type SoakRequest = PacedRequest & { kind: Kind; onAnswer?: (json: { tokens?: { refreshToken?: string } }) => void };
  const requestOf = (kind: Kind): SoakRequest => {
    const path = `${SERVICE}/${kind}`;
    const bearer = { authorization: `Bearer ${signed[tokenTurn++ % signed.length]!.access}` };
    if (kind === "CheckLogin" || kind === "GetUser") return { kind, path, headers: bearer };
    if (kind === "Refresh") {
      const token = refreshPool.shift();
      if (!token) return requestOf("CheckLogin");
      return { kind, path, body: JSON.stringify({ refreshToken: token }), onAnswer: (json) => void refreshPool.push(json.tokens?.refreshToken ?? token) };
    }
    const code = codes.shift();
    if (!code) return requestOf("CheckLogin");
    return { kind, path, body: JSON.stringify({ appId: "demo", code }), onAnswer: () => void logins++ };
  };

  let windowStartedAt = start;
  const takeSample = () => {
    const sorted = Float64Array.from(window.latencies).sort();
    const at = performance.now();
    const sample: Sample = {
      atSeconds: Math.round((at - start) / 1000),
      requests: sorted.length,
      rps: sorted.length / ((at - windowStartedAt) / 1000),
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      status5xx: window.status5xx,
      lost: window.lost,
      otherErrors: window.otherErrors,
      errorKinds: window.errorKinds,
      rss: rssOf(child.pid),
    };
    window = emptyWindow();
    windowStartedAt = at;
    list.push(sample);
    log(sample);
    return sample;
  };
  const sampler = setInterval(() => {
    takeSample();
    if (list.length === 60 / SAMPLE_SECONDS) {
      void collectGarbage(child)
        .then((m) => {
          heapAfterWarmup = m.heapUsed;
          loginsAtWarmup = logins;
        })
        .catch((e: unknown) => console.error(`heap after the first minute not measured: ${String(e)}; judged from the start`));
    }
  }, SAMPLE_SECONDS * 1000);

  let turn = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  await pace({
    url: child.httpUrl,
    agent,
    rate,
    total: Math.floor(rate * minutes * 60),
    next: () => {
      topUpCodes();
      return requestOf(MIX[turn++ % MIX.length]!);
    },
    onResult: (result: PacedResult<SoakRequest>) => {
      const { kind, onAnswer } = result.request;
      if ("status" in result && result.status === 200) {
        window.latencies.push(result.latencyMs);
        onAnswer?.(JSON.parse(result.body));
        return;
      }
      if (!("status" in result)) window.lost++;
      else if (result.status >= 500) window.status5xx++;
      else window.otherErrors++;
      const key = "status" in result ? `${kind} ${result.status} ${/"reason":"([A-Z_]+)"/.exec(result.body)?.[1] ?? ""}`.trim() : `${kind} ${result.error}`;
      window.errorKinds[key] = (window.errorKinds[key] ?? 0) + 1;
    },
  });
  agent.destroy();
  clearInterval(sampler);
  // The answers since the last tick count too.
  if (window.latencies.length || window.status5xx || window.lost || window.otherErrors) takeSample();
  return { list, heapAfterWarmup, sessionsAfterWarmup: logins - loginsAtWarmup };
}

process.exitCode = await main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  return 1;
});
