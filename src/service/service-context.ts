import { create } from "@bufbuild/protobuf";
import { TokensSchema, type Tokens } from "../../gen/identity/v1/identity_pb.js";
import { AccountDisabledError, TokenError } from "../auth/errors.js";
import type { IssuedTokens, SessionLibrary } from "../auth/sessions.js";
import { DEFAULT_LIMITS, type App, type Limits, type OperatorRole } from "../config/config.js";
import type { ActivityStore, AuditStore, IdentityRecord, ReplayStore, SessionRecord, UserStore } from "../store/store.js";
import type { AccessTokenBroker } from "../wechat/access-token-broker.js";
import { createAccountLibrary, type PlatformProfile } from "./accounts.js";
import { createAccountLifecycle } from "./account-lifecycle.js";
import { createAuditWriter } from "./audit.js";
import { createContentCheck } from "./content-check.js";
import type { Logger } from "./interceptors.js";
import { createAttemptLimiter, type AttemptLimit } from "./attempt-limiter.js";
import { apiError, fieldInvalid } from "./errors.js";
import type { RevocationDeps } from "./revocation-rpcs.js";
import { createPlatformLogin, type PlatformClients, type PlatformSignIn } from "./platform-login.js";
import { createWechatData } from "./wechat-data.js";

// What every group of RPCs shares: the deps with their defaults, the rate limiters, and the
// helpers that turn a platform sign-in into identities, sessions and wire tokens.

export interface PasswordLimits {
  /** Failed sign-ins per username. */
  perAccount: AttemptLimit;
  /** Failed sign-ins per client address, whatever the username. */
  perAddress: AttemptLimit;
}

/** Requests per minute (see the config's `limits`). */
export type RateLimits = Pick<Limits, "loginsPerAddress" | "loginsPerApp" | "phoneCallsPerUser" | "callsPerUser" | "refreshesPerAddress">;

export interface InternalCaller {
  name: string;
  /** SHA-256 of the caller's key, hex. */
  keySha256: string;
  /** An operator's key (AdminService only); a service's key has none. */
  role?: OperatorRole;
}

export interface IdentityServiceDeps {
  apps: App[];
  internalCallers?: InternalCaller[];
  rateLimits?: RateLimits;
  users: UserStore;
  /** The audit log and the activity counts behind GetStats. */
  audit: AuditStore;
  activity: ActivityStore;
  sessions: SessionLibrary;
  replays: ReplayStore;
  platforms: PlatformClients;
  broker: AccessTokenBroker;
  /** WatchRevocations' feed and log. */
  revocations: RevocationDeps;
  passwordLimits?: PasswordLimits;
  /** For what a call's own logger cannot take (a call made without one). */
  log?: Logger;
  now?: () => number;
}

const MINUTE = 60_000;

const DEFAULT_PASSWORD_LIMITS: PasswordLimits = {
  perAccount: { max: 5, windowMs: 15 * 60_000 },
  perAddress: { max: 30, windowMs: 15 * 60_000 },
};

export type ServiceContext = ReturnType<typeof createServiceContext>;
type Limiter = ReturnType<typeof createAttemptLimiter>;

export function createServiceContext({
  apps,
  users,
  audit,
  activity,
  sessions,
  replays,
  platforms,
  broker,
  revocations,
  passwordLimits = DEFAULT_PASSWORD_LIMITS,
  internalCallers = [],
  rateLimits = DEFAULT_LIMITS,
  log,
  now = Date.now,
}: IdentityServiceDeps) {
  const rates = {
    loginAddress: createAttemptLimiter({ max: rateLimits.loginsPerAddress, windowMs: MINUTE }, now),
    loginApp: createAttemptLimiter({ max: rateLimits.loginsPerApp, windowMs: MINUTE }, now),
    phone: createAttemptLimiter({ max: rateLimits.phoneCallsPerUser, windowMs: MINUTE }, now),
    user: createAttemptLimiter({ max: rateLimits.callsPerUser, windowMs: MINUTE }, now),
    refreshAddress: createAttemptLimiter({ max: rateLimits.refreshesPerAddress, windowMs: MINUTE }, now),
  };
  const appsByName = new Map<string, App>();
  for (const app of apps) appsByName.set(app.id, app).set(app.appid, app);
  const accounts = createAccountLibrary({ users, now });
  const wechatData = createWechatData({ wechat: platforms.wechat, broker, replays, now });
  const lifecycle = createAccountLifecycle({ users, sessions, accounts, audit });
  const auditWriter = createAuditWriter({ audit, activity, now, ...(log ? { log } : {}) });
  const contentCheck = createContentCheck({ wechat: platforms.wechat, broker });

  /** The configured app of this key or platform appid, if any. */
  const appOf = (name: string): App | undefined => appsByName.get(name);

  /** The app a request names by its key or by its platform appid; the only one when it names none. */
  function resolveApp(name: string): App {
    if (!name) {
      if (apps.length === 1 && apps[0]) return apps[0];
      throw fieldInvalid("app_id", "required when more than one app is configured");
    }
    const app = appsByName.get(name);
    if (!app) throw apiError("APP_NOT_FOUND", `no app "${name.slice(0, 64)}" is configured`, { appId: name.slice(0, 64) });
    return app;
  }

  /** The WeChat mini-program a session was opened for: encrypted data and phone codes exist only there. */
  function wechatAppOf(session: SessionRecord): App & { secret: string } {
    const app = appsByName.get(session.appKey);
    // A session of an app no longer configured is over.
    if (!app) throw new TokenError("revoked");
    if (app.platform !== "wechat-miniprogram" || !app.secret) {
      throw apiError("PLATFORM_UNSUPPORTED", `this needs a WeChat mini-program session; "${app.id}" is ${app.platform}`);
    }
    return app;
  }

  /** Counts one request against `limiter`; RESOURCE_EXHAUSTED / RATE_LIMITED with a retry hint when over. */
  function limit(limiter: Limiter, key: string, message: string): void {
    const wait = limiter.take(key);
    if (wait) throw rateLimited(wait, message);
  }

  /** An identity as a user record holds it, bound now. */
  function identityRecord({ platform, appid, openid, unionid }: Pick<IdentityRecord, "platform" | "appid" | "openid" | "unionid">): IdentityRecord {
    return { platform, appid, openid, ...(unionid ? { unionid } : {}), createdAt: new Date(now()) };
  }

  function identityOf(session: SessionRecord, unionid = session.unionid): IdentityRecord {
    return identityRecord({ ...session, unionid });
  }

  function identityFrom(app: App, platform: PlatformSignIn): IdentityRecord {
    return identityRecord({ platform: app.platform, appid: app.appid, openid: platform.openid, unionid: platform.unionid });
  }

  function openSession(app: App, userId: string | null, identity: IdentityRecord, sessionKey: string | undefined, clientAddress: string, loginCode?: string) {
    return sessions.open(
      { appKey: app.id, userId, platform: identity.platform, appid: identity.appid, openid: identity.openid, unionid: identity.unionid, sessionKey, ...(clientAddress ? { clientAddress } : {}) },
      loginCode || undefined,
    );
  }

  /** A pending session's user, found or created from what the platform told us, and its first full tokens. */
  async function register(app: App, session: SessionRecord, identity: IdentityRecord, profile: PlatformProfile, extraKeys: string[] = []) {
    const found = await accounts.findOrCreate(identity, { create: true, defaultRoles: app.defaultRoles, profile, extraKeys });
    if (!found) throw apiError("INTERNAL", "internal error");
    if (found.user.status === "disabled") throw new AccountDisabledError();
    const { tokens } = await sessions.promote(session, found.user.id);
    return { ...found, tokens: tokensToWire(tokens) };
  }

  return {
    apps,
    users,
    audit,
    activity,
    lifecycle,
    auditWriter,
    contentCheck,
    appOf,
    sessions,
    replays,
    revocations,
    internalCallers,
    passwordLimits,
    now,
    rates,
    accounts,
    wechatData,
    signIn: createPlatformLogin(platforms),
    resolveApp,
    wechatAppOf,
    limit,
    identityRecord,
    identityOf,
    identityFrom,
    openSession,
    register,
  };
}

export function rateLimited(seconds: number, message: string) {
  return apiError("RATE_LIMITED", `${message}; retry in ${seconds} s`, { retryAfterSeconds: String(seconds) });
}

export function tokensToWire(tokens: IssuedTokens): Tokens {
  return create(TokensSchema, { ...tokens, tokenType: "Bearer" });
}
