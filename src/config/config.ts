import { availableParallelism } from "node:os";
import { z } from "zod";

// The one reader of process.env (through main.ts) and of the IDENTITY_CONFIG file.
// Every problem is collected, so one start-up failure names all of them.

const APP_KEY = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const appCommon = {
  id: z.string().regex(APP_KEY, "must be 1-64 of a-z, 0-9, _ and -, starting with a letter or digit"),
  registration: z.enum(["auto", "explicit"]).default("auto"),
  default: z.boolean().optional(),
  legacyId: z.number().int().positive().optional(),
  defaultRoles: z.array(z.string().min(1)).default(["member"]),
};
const secret = z.string().min(1, "must not be empty");
const pem = (kind: string) => z.string().regex(new RegExp(`-----BEGIN ${kind}-----[\\s\\S]+-----END ${kind}-----`), `must be a PEM ${kind.toLowerCase()}`);

/** AdminService's roles, each allowing what the one before allows and more. */
export const OPERATOR_ROLES = ["viewer", "support", "admin"] as const;
export type OperatorRole = (typeof OPERATOR_ROLES)[number];

export const WECHAT_PLATFORMS = ["wechat-miniprogram", "wechat-official-account", "wechat-app", "wechat-website"] as const;

/**
 * WeChat's content-security check (msg_sec_check v2) on what users write: `nickname` on by
 * default for mini-programs (the only platform it serves); `review` says what a "review"
 * verdict (possibly not allowed) does.
 */
const contentCheckSchema = z.strictObject({
  nickname: z.enum(["on", "off"]).optional(),
  review: z.enum(["allow", "refuse"]).default("allow"),
});
export type ContentCheck = z.output<typeof contentCheckSchema>;

const appSchema = z.discriminatedUnion("platform", [
  z.strictObject({
    ...appCommon,
    platform: z.enum(WECHAT_PLATFORMS),
    appid: z.string().regex(/^wx[0-9a-f]{16}$/, "must be a WeChat appid: wx and 16 hex digits"),
    secret,
    contentCheck: contentCheckSchema.optional(),
  }),
  z.strictObject({ ...appCommon, platform: z.literal("qq-miniprogram"), appid: z.string().regex(/^\d{6,12}$/, "must be a QQ appid: digits"), secret }),
  z.strictObject({
    ...appCommon,
    platform: z.literal("alipay-miniprogram"),
    appid: z.string().regex(/^\d{16}$/, "must be an Alipay app_id: 16 digits"),
    /** The app's RSA2 private key, which signs requests to the gateway. */
    privateKey: pem("PRIVATE KEY"),
    /** Alipay's public key, which verifies the gateway's answers. */
    alipayPublicKey: pem("PUBLIC KEY"),
  }),
  z.strictObject({
    ...appCommon,
    platform: z.literal("apple"),
    /** The bundle id (native) or Services ID (web): the id token's audience. */
    appid: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,154}$/, "must be a bundle id or Services ID"),
  }),
]);

/** A configured app; a new field or platform is declared in appSchema alone. */
export type App = z.output<typeof appSchema>;
export type Platform = App["platform"];
/** An app as a config file may write it, defaults left out. */
export type AppInput = z.input<typeof appSchema>;

const jwkSchema = z
  .looseObject({
    kid: z.string().min(1, "must not be empty"),
    alg: z.enum(["ES256", "EdDSA"]),
    kty: z.string(),
    d: z.string().min(1, "must be a private key (d)"),
  })
  .transform((jwk) => jwk as Record<string, unknown> & { kid: string; alg: "ES256" | "EdDSA" });

/** Seed-compatible REST profiles (README "Seed-compatible routes"); each one is off unless named. */
const seedRoutesSchema = z.strictObject({
  smallapp: z.strictObject({}).optional(),
  passwordLogin: z.strictObject({}).optional(),
  applet: z.strictObject({}).optional(),
  multiPlatform: z
    .strictObject({
      path: z
        .string()
        .regex(/^(\/[A-Za-z0-9._~-]+)+$/, "must be a path like /module/iot/codeGetInfo")
        .default("/module/iot/codeGetInfo"),
      // Trusting an openid the client sends lets anyone sign in as anyone: off unless asked for (README).
      allowClientIdentity: z.boolean().default(false),
    })
    .optional(),
  openIdLogin: z.strictObject({}).optional(),
});
export type SeedRoutesConfig = z.output<typeof seedRoutesSchema>;

/** Every profile on, as dev mode runs them. */
export const ALL_SEED_ROUTES: SeedRoutesConfig = seedRoutesSchema.parse({ smallapp: {}, passwordLogin: {}, applet: {}, multiPlatform: {}, openIdLogin: {} });

/** An origin exactly as a browser sends it in `Origin`: scheme://host[:port], lower case, no path. */
const corsOrigin = z.string().superRefine((value, ctx) => {
  if (value.includes("*")) return void ctx.addIssue({ code: "custom", message: `"${value}": wildcards are not allowed, list each origin` });
  const origin = URL.canParse(value) ? new URL(value).origin : "null";
  if (!/^https?:\/\//.test(origin)) return void ctx.addIssue({ code: "custom", message: `"${value}" is not an http(s) origin like https://app.example.com` });
  if (origin !== value) ctx.addIssue({ code: "custom", message: `"${value}" must be written as browsers send it: "${origin}" (no path, default port, lower case)` });
});

/** CORS on the HTTP/1.1 listener, for login pages on other origins (docs/configuration.md); off unless given. */
const corsSchema = z.strictObject({
  origins: z.array(corsOrigin).min(1, "must list at least one origin"),
  /** Lets pages send cookies; the API needs none (tokens travel in authorization), so off by default. */
  credentials: z.boolean().default(false),
  /** How long a browser may cache a preflight answer (Chrome caps it at 2 h). */
  maxAgeSeconds: z.number().int().min(0).max(86_400).default(600),
});
export type CorsConfig = z.output<typeof corsSchema>;

const limitsSchema = z
  .strictObject({
    maxBodyBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(64 * 1024),
    /** Logins per client address per minute. */
    loginsPerAddress: z.number().int().min(1).default(600),
    /** Logins per app per minute, all addresses together. */
    loginsPerApp: z.number().int().min(1).default(30_000),
    /** GetPhone/BindPhone calls per user per minute (WeChat bills each phone code). */
    phoneCallsPerUser: z.number().int().min(1).default(20),
    /** Other signed-in calls per user per minute. */
    callsPerUser: z.number().int().min(1).default(600),
    /** Refresh calls per client address per minute (a token spray costs a store read each). */
    refreshesPerAddress: z.number().int().min(1).default(600),
    /** How long a client may take to send a request's headers (HTTP/1.1), or to open its first stream (h2c). */
    headersTimeoutMs: z.number().int().min(100).max(300_000).default(10_000),
    /** How long a client may take to send a whole request, body included (HTTP/1.1), or a stream's request (h2c). */
    requestTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
    /** How long an idle connection stays open (keep-alive on HTTP/1.1, session idle on h2c); above a load balancer's own idle timeout. */
    keepAliveTimeoutMs: z.number().int().min(100).max(600_000).default(72_000),
    /** Streams one h2c connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
    maxConcurrentStreams: z.number().int().min(1).max(10_000).default(100),
  })
  .refine((l) => l.headersTimeoutMs <= l.requestTimeoutMs, { path: ["headersTimeoutMs"], message: "must not be more than requestTimeoutMs" });

/** Every limit at its default: what the service runs with when nothing is configured. */
export const DEFAULT_LIMITS: Limits = limitsSchema.parse({});
export type Limits = z.output<typeof limitsSchema>;

const fileSchema = z
  .strictObject({
    apps: z.array(appSchema).min(1, "must list at least one app"),
    /** "memory": the embedded store, whose users die with the process; said outright, never by a missing MONGODB_URI. */
    store: z.literal("memory").optional(),
    issuer: z.string().min(1).default("identity"),
    signingKeys: z.array(jwkSchema).default([]),
    tokens: z
      .strictObject({
        accessTtlSeconds: z.number().int().min(60).max(86_400).default(7200),
        refreshTtlSeconds: z.number().int().min(300).max(31_536_000).default(2_592_000),
        refreshGraceSeconds: z.number().int().min(0).max(300).default(10),
        /** How long after its login a session may still be refreshed: refreshing cannot keep it forever. */
        sessionMaxAgeSeconds: z.number().int().min(300).max(157_680_000).default(7_776_000),
        /** Live sessions per user; a login beyond it ends the user's oldest session. */
        maxSessionsPerUser: z.number().int().min(1).max(1000).default(10),
      })
      .prefault({}),
    wechat: z
      .strictObject({
        timeoutMs: z.number().int().min(100).max(60_000).default(5000),
        retries: z.number().int().min(0).max(3).default(1),
        /** One call's attempts and waits together, so retries never run past it. */
        budgetMs: z.number().int().min(100).max(120_000).default(8000),
        /** Per WeChat API: this many failures in a row make its calls fail fast for coolDownMs (failures 0: never). */
        breaker: z
          .strictObject({
            failures: z.number().int().min(0).max(1000).default(5),
            coolDownMs: z.number().int().min(100).max(600_000).default(10_000),
          })
          .prefault({}),
      })
      .prefault({}),
    /**
     * Internal services: each presents its key in `x-api-key`; only the key's SHA-256 is configured.
     * A key with a `role` is an operator's (AdminService only); one without is a service's (IdentityService only).
     */
    internalCallers: z
      .array(
        z.strictObject({
          name: z.string().regex(APP_KEY, "must be 1-64 of a-z, 0-9, _ and -"),
          keySha256: z.string().regex(/^[0-9a-f]{64}$/, "must be the key's SHA-256 as 64 hex digits"),
          role: z.enum(OPERATOR_ROLES).optional(),
        }),
      )
      .default([]),
    /** How long the audit log keeps an event (a TTL index on MongoDB). */
    auditRetentionDays: z.number().int().min(1).max(3650).default(180),
    /** Proxies (addresses or CIDRs) whose X-Forwarded-For names the client. */
    trustProxy: z.array(z.string().regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, "must be an IP address or CIDR")).default([]),
    limits: limitsSchema.prefault({}),
    /** WatchRevocations' feed (docs/configuration.md): how fast a revocation on one instance reaches watchers of every other. */
    revocations: z
      .strictObject({
        /** How often each instance reads new revocations from the store while anyone watches (change streams, where the server has them, wake it sooner). */
        pollIntervalMs: z.number().int().min(20).max(10_000).default(250),
        /** The longest a watch stays silent (at most half of limits.keepAliveTimeoutMs, which would cut it); the watcher takes a stream silent for longer as broken. */
        heartbeatIntervalMs: z.number().int().min(100).max(60_000).default(5000),
      })
      .prefault({}),
    seedRoutes: seedRoutesSchema.default({}),
    cors: corsSchema.optional(),
  })
  .superRefine((file, ctx) => {
    const seen = new Map<string, number>();
    file.apps.forEach((app, i) => {
      for (const name of [app.id, app.appid]) {
        if (seen.has(name)) ctx.addIssue({ code: "custom", path: ["apps", i, name === app.id ? "id" : "appid"], message: `"${name}" is used by apps[${seen.get(name)}] too` });
        seen.set(name, i);
      }
    });
    file.apps.forEach((app, i) => {
      if ("contentCheck" in app && app.contentCheck?.nickname === "on" && app.platform !== "wechat-miniprogram") {
        ctx.addIssue({ code: "custom", path: ["apps", i, "contentCheck", "nickname"], message: "WeChat's content check serves mini-programs only" });
      }
    });
    if (file.apps.filter((a) => a.default).length > 1) ctx.addIssue({ code: "custom", path: ["apps"], message: "at most one app may be default" });
    const legacyIds = file.apps.map((a) => a.legacyId);
    legacyIds.forEach((id, i) => {
      if (id !== undefined && legacyIds.indexOf(id) !== i) ctx.addIssue({ code: "custom", path: ["apps", i, "legacyId"], message: `${id} is used by apps[${legacyIds.indexOf(id)}] too` });
    });
    const callerNames = file.internalCallers.map((c) => c.name);
    callerNames.forEach((name, i) => {
      if (callerNames.indexOf(name) !== i) ctx.addIssue({ code: "custom", path: ["internalCallers", i, "name"], message: `"${name}" is listed twice` });
    });
  });

export type ConfigFile = z.output<typeof fileSchema>;

/** A config file with only these apps and every default: what dev mode runs with. */
export function defaultConfigFile(apps: AppInput[]): ConfigFile {
  return fileSchema.parse({ apps });
}

export interface EnvConfig {
  host: string;
  port: number;
  grpcPort: number;
  mongodbUri?: string;
  mongodbDb: string;
  /** Overrides the WeChat API base URL (a proxy, say). */
  wechatApiBase?: string;
  /** WECHAT_SIMULATOR=1: start the simulator and point every WeChat call at it. */
  wechatSimulator: boolean;
  wechatSimPort: number;
  logLevel: string;
  /** The parsed IDENTITY_CONFIG file; null when the variable is unset. */
  file: ConfigFile | null;
  /** WORKERS: processes serving the listeners (node:cluster when above 1); `auto` is one per core. */
  workers: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join("; ")}`);
  }
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function loadConfig(env: Record<string, string | undefined>, readFile: (path: string) => string): EnvConfig {
  const problems: string[] = [];
  const port = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n > 65_535) problems.push(`${name}: "${raw}" is not a port number (0-65535)`);
    return n;
  };
  const config: EnvConfig = {
    // Dev mode (no config) serves only this machine: its demo app and throwaway key are no one else's business.
    host: env.HOST || (env.IDENTITY_CONFIG ? "0.0.0.0" : "127.0.0.1"),
    port: port("PORT", 8080),
    grpcPort: port("GRPC_PORT", 9090),
    mongodbDb: env.MONGODB_DB || "identity",
    wechatSimulator: false,
    wechatSimPort: port("WECHAT_SIM_PORT", 8090),
    logLevel: env.LOG_LEVEL || "info",
    file: null,
    workers: workersOf(env.WORKERS, problems),
  };
  if (env.MONGODB_URI) {
    if (/^mongodb(\+srv)?:\/\//.test(env.MONGODB_URI)) config.mongodbUri = env.MONGODB_URI;
    else problems.push("MONGODB_URI: must start with mongodb:// or mongodb+srv://");
  }
  if (env.WECHAT_API_BASE) {
    if (URL.canParse(env.WECHAT_API_BASE) && /^https?:/.test(env.WECHAT_API_BASE)) config.wechatApiBase = env.WECHAT_API_BASE;
    else problems.push(`WECHAT_API_BASE: "${env.WECHAT_API_BASE}" is not an http(s) URL`);
  }
  const sim = env.WECHAT_SIMULATOR ?? "";
  if (["1", "true"].includes(sim)) config.wechatSimulator = true;
  else if (!["", "0", "false"].includes(sim)) problems.push(`WECHAT_SIMULATOR: "${sim}" must be 1 or 0`);
  if (!LOG_LEVELS.includes(config.logLevel)) problems.push(`LOG_LEVEL: "${config.logLevel}" must be one of ${LOG_LEVELS.join(", ")}`);

  if (env.IDENTITY_CONFIG) config.file = parseConfigFile(env.IDENTITY_CONFIG, readFile, problems);
  else if (env.NODE_ENV === "production") problems.push("IDENTITY_CONFIG: required when NODE_ENV=production (without it the service runs dev mode: a demo app and a throwaway signing key)");
  if (config.workers > 1) {
    // Each worker is a process of its own: what lives in one process's memory would split in N.
    if (!config.mongodbUri) problems.push(`WORKERS: ${config.workers} workers need MONGODB_URI (on the embedded memory store each worker would have its own users and sessions)`);
    if (!env.IDENTITY_CONFIG || config.wechatSimulator) {
      problems.push("WORKERS: needs a config file with signingKeys and a real WeChat API (dev mode and WECHAT_SIMULATOR=1 keep the simulator's codes and a generated signing key in one process)");
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return config;
}

/** Unset or 1: one process. A count, or `auto` for one worker per core. */
function workersOf(raw: string | undefined, problems: string[]): number {
  if (raw === undefined || raw === "") return 1;
  if (raw === "auto") return availableParallelism();
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 256) {
    problems.push(`WORKERS: "${raw}" must be a number of processes (1-256) or auto`);
    return 1;
  }
  return n;
}

function parseConfigFile(path: string, readFile: (path: string) => string, problems: string[]): ConfigFile | null {
  let text: string;
  try {
    text = readFile(path);
  } catch {
    problems.push(`IDENTITY_CONFIG: cannot read ${path}`);
    return null;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    problems.push(`IDENTITY_CONFIG: ${path} is not JSON (${(e as Error).message})`);
    return null;
  }
  const parsed = fileSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) problems.push(`${formatPath(issue.path)}: ${issue.message}`);
  return null;
}

function formatPath(path: PropertyKey[]): string {
  if (path.length === 0) return "(config file)";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${String(p)}`)).join("");
}
