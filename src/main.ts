// The composition root: the only reader of process.env and the only place that decides dev mode.
import cluster from "node:cluster";
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { pathToFileURL } from "node:url";
import type { FastifyInstance } from "fastify";
import { createAccessTokens, generateSigningKey, importSigningKey } from "./auth/access-tokens.js";
import { createSessionLibrary, revocationRetentionMs } from "./auth/sessions.js";
import { clusterMetrics, reportReady, runPrimary, type WorkerInfo } from "./cluster.js";
import { ALL_SEED_ROUTES, ConfigError, defaultConfigFile, loadConfig, WECHAT_PLATFORMS, type AppInput, type ConfigFile, type EnvConfig } from "./config/config.js";
import { createAlipayClient } from "./platforms/alipay-client.js";
import { createAppleVerifier } from "./platforms/apple-verifier.js";
import { buildGrpcServer, buildHttpServer } from "./server/servers.js";
import type { Readiness } from "./server/health.js";
import { createServices, type App, type IdentityServiceDeps } from "./service/identity-service.js";
import type { Logger } from "./service/interceptors.js";
import type { PlatformClients } from "./service/platform-login.js";
import { createRevocationFeed } from "./service/revocation-feed.js";
import { createWechatSimulator, type WechatSimulator } from "./simulator/simulator.js";
import { createMetrics, instrumentStore } from "./metrics/metrics.js";
import { MemoryStore } from "./store/memory-store.js";
import { MongoStore } from "./store/mongo-store.js";
import type { Store } from "./store/store.js";
import { describeError, describeRequest } from "./util/log-safety.js";
import { createAccessTokenBroker } from "./wechat/access-token-broker.js";
import { createWechatClient } from "./wechat/wechat-client.js";

const WECHAT_API = "https://api.weixin.qq.com";
const QQ_API = "https://api.q.qq.com";
const ALIPAY_GATEWAY = "https://openapi.alipay.com/gateway.do";
const APPLE_JWKS = "https://appleid.apple.com/auth/keys";

/** Dev mode's one app, answering to app id "demo" and to its appid. */
export const DEMO_APP = {
  id: "demo",
  platform: "wechat-miniprogram",
  appid: "wx0000000000000001",
  secret: "demo-secret",
} as const satisfies AppInput;

// Secrets that must never reach a log line, wherever they appear.
const REDACT = ["headers", "*.headers", "req.headers.authorization", "req.headers.cookie", "*.accessToken", "*.refreshToken", "*.sessionKey", "*.secret", "*.password"];

export interface AppOptions {
  /** Where log lines go (tests capture them); stdout by default. */
  logStream?: { write(line: string): void };
  now?: () => number;
  /** A store to use instead of the one the configuration names (tests reach into it). */
  store?: Store;
  /** The cluster worker's id when WORKERS runs several: on every log line, and /metrics asks the primary for the group's. */
  clusterWorker?: number;
}

export interface RunningApp {
  httpUrl: string;
  grpcUrl: string;
  /** The simulator's base URL when it runs. */
  simulatorUrl?: string;
  devMode: boolean;
  generatedKey: boolean;
  store: "memory" | "mongodb";
  close(): Promise<void>;
}

/** Builds everything the configuration asks for and starts listening. */
export async function startApp(env: EnvConfig, options: AppOptions = {}): Promise<RunningApp> {
  const devMode = env.file === null;
  const useSimulator = devMode || env.wechatSimulator;
  // The demo app also answers to seed 000's numeric app_id 1.
  const file = env.file ?? defaultConfigFile([{ ...DEMO_APP, legacyId: 1 }]);
  const seedRoutes = devMode ? ALL_SEED_ROUTES : file.seedRoutes;
  const apps: App[] = file.apps;

  // A real config on the embedded store: allowed when the file says so, or against the simulator (nothing real is stored); warned of once listening.
  const configOnMemory = !devMode && !env.mongodbUri && !options.store;
  const problems: string[] = [];
  if (!file.signingKeys.length && !useSimulator) problems.push("signingKeys: required when talking to the real WeChat API (print one with `npm run --silent keygen`)");
  if (file.store === "memory" && env.mongodbUri) problems.push('store: "memory" but MONGODB_URI is set; drop one of them');
  else if (configOnMemory && file.store !== "memory" && !env.wechatSimulator) {
    problems.push('MONGODB_URI: required with a config file (the embedded store loses every user on restart; set "store": "memory" in the file to run on it anyway)');
  }
  if (problems.length) throw new ConfigError(problems);

  const keys = file.signingKeys.length ? await importSigningKeys(file.signingKeys) : [(await generateSigningKey()).key];

  // Serializers replace fastify's: its `req` carries the URL with the query (a seed's ?token=).
  const serializers = { err: describeError, req: describeRequest };
  const base = options.clusterWorker === undefined ? {} : { base: { pid: process.pid, hostname: hostname(), worker: options.clusterWorker } };
  const logger = { level: env.logLevel, ...base, redact: { paths: REDACT, censor: "[redacted]" }, serializers, ...(options.logStream ? { stream: options.logStream } : {}) };
  const closers: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const closeOne of closers.reverse()) await closeOne().catch(() => undefined);
  };

  try {
    let simulator: WechatSimulator | undefined;
    if (useSimulator) {
      const appsOf = (platforms: string[], value: (app: App) => string | undefined) => Object.fromEntries(apps.filter((a) => platforms.includes(a.platform)).map((a) => [a.appid, value(a) ?? ""]));
      const secretOf = (a: App) => ("secret" in a ? a.secret : undefined);
      simulator = createWechatSimulator({
        apps: appsOf([...WECHAT_PLATFORMS], secretOf),
        qqApps: appsOf(["qq-miniprogram"], secretOf),
        // The simulated gateway checks each request with the app's public key, derived from its private key.
        alipayApps: appsOf(["alipay-miniprogram"], (a) => ("privateKey" in a ? createPublicKey(a.privateKey).export({ type: "spki", format: "pem" }).toString() : undefined)),
      });
      closers.push(() => simulator!.close());
      await simulator.listen(env.wechatSimPort, "127.0.0.1");
    }

    const metrics = createMetrics();
    // One clock for everything built here: tokens, sessions, the store's stored times and expiry checks, the broker, the service.
    const now = options.now ?? Date.now;
    const storeOptions = { now, auditRetentionDays: file.auditRetentionDays };
    const rawStore: Store = options.store ?? (env.mongodbUri ? await MongoStore.connect(env.mongodbUri, env.mongodbDb, storeOptions) : new MemoryStore(storeOptions));
    const store = instrumentStore(rawStore, metrics);
    closers.push(() => store.close());
    await store.init();

    const wechat = createWechatClient({ baseUrl: simulator?.url ?? env.wechatApiBase ?? WECHAT_API, ...file.wechat, observe: metrics.observeUpstream });
    const qq = createWechatClient({ baseUrl: simulator ? `${simulator.url}/qq` : QQ_API, ...file.wechat, observe: (api, outcome, seconds) => metrics.observeUpstream(`qq.${api}`, outcome, seconds) });
    closers.push(
      () => wechat.close(),
      () => qq.close(),
    );
    const platforms = {
      wechat,
      qq,
      alipay: createAlipayClient({ gatewayUrl: simulator ? `${simulator.url}/alipay/gateway.do` : ALIPAY_GATEWAY, timeoutMs: file.wechat.timeoutMs }),
      apple: createAppleVerifier({ jwksUrl: simulator ? `${simulator.url}/apple/auth/keys` : APPLE_JWKS }),
    };
    // Against the simulator, its gateway key is Alipay's.
    const serviceApps = simulator ? apps.map((a) => (a.platform === "alipay-miniprogram" ? { ...a, alipayPublicKey: simulator!.alipayPublicKeyPem } : a)) : apps;
    // The feed is built before the servers whose logger it writes to.
    let feedLog: Logger | undefined;
    const { accessTokens, deps: serviceDeps } = createServiceDeps({
      file,
      apps: serviceApps,
      store,
      platforms,
      keys,
      now,
      onTokenRefresh: metrics.recordTokenRefresh,
      log: { info: (obj, msg) => feedLog?.info(obj, msg), error: (obj, msg) => feedLog?.error(obj, msg) },
      observeFeed: metrics,
    });
    const { identity: service, admin } = createServices(serviceDeps);

    const deps = {
      service,
      admin,
      jwks: accessTokens.jwks,
      logger,
      maxBodyBytes: file.limits.maxBodyBytes,
      timeouts: { headersMs: file.limits.headersTimeoutMs, requestMs: file.limits.requestTimeoutMs, keepAliveMs: file.limits.keepAliveTimeoutMs },
      maxConcurrentStreams: file.limits.maxConcurrentStreams,
      shutdownTimeoutMs: 5000,
      ready: storeReadiness(rawStore),
      metrics: options.clusterWorker === undefined ? metrics : { ...metrics, render: clusterMetrics(metrics.registry) },
      trustProxy: file.trustProxy,
      seedRoutes,
      apps: file.apps,
      cors: file.cors,
    };
    const http = await buildHttpServer(deps);
    closers.push(() => http.close());
    const grpc = await buildGrpcServer(deps);
    closers.push(() => grpc.close());
    feedLog = http.log;
    await serviceDeps.revocations.feed.init();
    // Closed first (closers run last to first): open watches end at once instead of holding the servers' close.
    closers.push(() => serviceDeps.revocations.feed.close());
    const httpUrl = await listen(http, env.port, env.host);
    const grpcUrl = await listen(grpc, env.grpcPort, env.host);

    if (configOnMemory) http.log.warn("store: running on the embedded memory store; every user and session is lost when the process stops");
    return {
      httpUrl,
      grpcUrl,
      ...(simulator ? { simulatorUrl: simulator.url } : {}),
      devMode,
      generatedKey: !file.signingKeys.length,
      store: env.mongodbUri ? "mongodb" : "memory",
      close: async () => {
        const started = performance.now();
        http.log.info("shutdown started: refusing new connections, letting calls in flight finish");
        await close();
        http.log.info({ ms: Math.round(performance.now() - started) }, "shutdown finished");
      },
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The service's dependencies from the config, a store and the platform clients: what startApp and the fast test level both run. */
export function createServiceDeps({
  file,
  apps,
  store,
  platforms,
  keys,
  now,
  onTokenRefresh,
  log,
  observeFeed,
}: {
  file: ConfigFile;
  apps: App[];
  store: Pick<Store, "users" | "sessions" | "replays" | "credentials" | "revocations" | "audit" | "activity">;
  platforms: PlatformClients;
  keys: Awaited<ReturnType<typeof importSigningKey>>[];
  now: () => number;
  onTokenRefresh?: (appid: string) => void;
  log: Logger;
  observeFeed?: { setRevocationWatchers(count: number): void; countRevocationEvents(count: number): void };
}) {
  const accessTokens = createAccessTokens(keys, { issuer: file.issuer, ttlSeconds: file.tokens.accessTtlSeconds, now });
  const sessions = createSessionLibrary({ sessions: store.sessions, users: store.users, revocations: store.revocations, accessTokens, policy: file.tokens, now });
  const retentionMs = revocationRetentionMs(file.tokens);
  const pollMs = file.revocations.pollIntervalMs;
  // An h2c connection idle for keepAliveTimeoutMs is closed, and a quiet watch with it.
  const heartbeatMs = Math.min(file.revocations.heartbeatIntervalMs, Math.floor(file.limits.keepAliveTimeoutMs / 2));
  const feed = createRevocationFeed({
    revocations: store.revocations,
    now,
    retentionMs,
    pollMs,
    heartbeatMs,
    log,
    ...(observeFeed ? { onWatchers: observeFeed.setRevocationWatchers, onEvents: observeFeed.countRevocationEvents } : {}),
  });
  const broker = createAccessTokenBroker({ credentials: store.credentials, fetchToken: (app) => platforms.wechat.stableToken(app), now, onRefresh: onTokenRefresh });
  const deps: IdentityServiceDeps = {
    apps,
    internalCallers: file.internalCallers,
    rateLimits: file.limits,
    users: store.users,
    audit: store.audit,
    activity: store.activity,
    sessions,
    replays: store.replays,
    revocations: { feed, store: store.revocations, retentionMs, heartbeatMs },
    platforms,
    broker,
    log,
    now,
  };
  return { accessTokens, deps };
}

/** Imports every configured key, naming the entry that is not a usable private key. */
async function importSigningKeys(jwks: ConfigFile["signingKeys"]) {
  const problems: string[] = [];
  const keys = await Promise.all(
    jwks.map((jwk, i) =>
      importSigningKey(jwk).catch((e: unknown) => {
        problems.push(`signingKeys[${i}]: not a usable ${jwk.alg} private key (${e instanceof Error ? e.message : String(e)})`);
      }),
    ),
  );
  if (problems.length) throw new ConfigError(problems);
  return keys as Awaited<ReturnType<typeof importSigningKey>>[];
}

const READINESS_TIMEOUT_MS = 1000;

/**
 * Ready while the store answers within a second: its ping when it has one, else a read of a user
 * that does not exist. Callers arriving while a check runs share its answer, so probes and health
 * watches never pile up on a slow store.
 */
function storeReadiness(store: Store & { ping?: () => Promise<void> }): Readiness {
  const check = async () => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("store did not answer in time")), READINESS_TIMEOUT_MS);
    });
    try {
      await Promise.race([store.ping ? store.ping() : store.users.get("000000000000000000000000"), timeout]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  };
  let running: Promise<boolean> | undefined;
  return () => (running ??= check().finally(() => (running = undefined)));
}

async function listen(server: FastifyInstance, port: number, host: string): Promise<string> {
  await server.listen({ port, host });
  const address = server.server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  // A wildcard address is not something to paste into curl.
  return `http://${host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host}:${bound}`;
}

function banner(app: WorkerInfo & { simulatorUrl?: string }): string {
  const sim = app.simulatorUrl;
  const lines = [
    `identity service ready (${app.devMode ? "dev mode: " : ""}${app.store} store${sim ? ", WeChat simulator" : ""})`,
    `  JSON / Connect (HTTP/1.1)  ${app.httpUrl}`,
    `  gRPC / Connect (h2c)       ${app.grpcUrl}`,
    `  JWKS                       ${app.httpUrl}/.well-known/jwks.json`,
  ];
  if (sim) lines.push(`  WeChat simulator           ${sim}`);
  if (app.generatedKey) lines.push("  signing key: generated for this process (tokens die with it; configure signingKeys to keep them)");
  if (sim && app.devMode) {
    lines.push(
      "",
      "Try it (copy and paste):",
      `  CODE=$(curl -s -X POST ${sim}/sim/login-code -H 'content-type: application/json' -d '{"appid":"${DEMO_APP.appid}"}' | sed -E 's/.*"code":"([^"]+)".*/\\1/')`,
      `  TOKEN=$(curl -s -X POST ${app.httpUrl}/identity.v1.IdentityService/Login -H 'content-type: application/json' -d "{\\"appId\\":\\"demo\\",\\"code\\":\\"$CODE\\"}" | sed -E 's/.*"accessToken":"([^"]+)".*/\\1/')`,
      `  npx buf curl --schema proto --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $TOKEN" ${app.grpcUrl}/identity.v1.IdentityService/CheckLogin`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  let app: RunningApp;
  const worker = cluster.worker?.id;
  try {
    const env = loadConfig(process.env, (path) => readFileSync(path, "utf8"));
    if (env.workers > 1 && cluster.isPrimary) {
      process.exit(await runPrimary({ workers: env.workers, logLevel: env.logLevel, banner }));
    }
    app = await startApp(env, worker === undefined ? {} : { clusterWorker: worker });
  } catch (e) {
    const message = e instanceof ConfigError ? e.message : `cannot start: ${e instanceof Error ? e.message : String(e)}`;
    console.error(`identity: ${message}`);
    process.exit(1);
  }
  // A worker's banner is the primary's to print, once for the group.
  if (worker === undefined) console.log(banner(app));
  else reportReady(app);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void app.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
