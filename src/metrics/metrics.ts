import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ActivityStore, AuditStore, CredentialStore, ReplayStore, RevocationStore, SessionStore, Store, UserStore } from "../store/store.js";
import type { UpstreamObserver } from "../wechat/wechat-client.js";

// Prometheus metrics, each set in its own registry (never prom-client's global one), so a test or
// a second app in one process gets its own. Every label value comes from a bounded set the code
// itself names: RPC method names, Connect codes and ErrorInfo reasons, upstream API names and
// errcodes, configured appids, store operation names. Never a user id, a token or an errmsg.

/** 0.5 ms to 5 s: an RPC answered from memory up to one held up by a slow upstream. */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** One HTTP attempt to WeChat and the like: a few ms on a good day, up to the client's timeout. */
const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** One store call: microseconds in memory, milliseconds in MongoDB, seconds when it struggles. */
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** One finished RPC, as the outermost interceptor saw it. */
export interface RpcSample {
  /** The RPC's method name, e.g. "Login". */
  method: string;
  /** "ok" or the Connect code's name, e.g. "InvalidArgument" (as the interceptor logs it). */
  code: string;
  /** The ErrorInfo reason, e.g. "CODE_INVALID"; absent for successes. */
  reason?: string | undefined;
  seconds: number;
}

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const rpcRequests = new Counter({
    name: "identity_rpc_requests_total",
    help: "RPCs handled, by method, Connect code and ErrorInfo reason.",
    labelNames: ["method", "code", "reason"] as const,
    registers,
  });
  const rpcDuration = new Histogram({
    name: "identity_rpc_duration_seconds",
    help: "Time from the outermost interceptor's start to the answer or error.",
    labelNames: ["method", "code"] as const,
    buckets: RPC_BUCKETS,
    registers,
  });
  const upstreamRequests = new Counter({
    name: "identity_upstream_requests_total",
    help: "HTTP attempts to upstream APIs (retries included), by outcome: ok, the errcode, network, timeout, aborted, http_<status>, bad_response.",
    labelNames: ["api", "outcome"] as const,
    registers,
  });
  const upstreamDuration = new Histogram({
    name: "identity_upstream_duration_seconds",
    help: "Duration of one HTTP attempt to an upstream API.",
    labelNames: ["api"] as const,
    buckets: UPSTREAM_BUCKETS,
    registers,
  });
  const tokenRefreshes = new Counter({
    name: "identity_access_token_refreshes_total",
    help: "Platform access tokens this instance fetched (not read from the store).",
    labelNames: ["appid"] as const,
    registers,
  });
  const storeDuration = new Histogram({
    name: "identity_store_duration_seconds",
    help: "Duration of store calls, failed ones included.",
    labelNames: ["operation"] as const,
    buckets: STORE_BUCKETS,
    registers,
  });
  const storeErrors = new Counter({
    name: "identity_store_errors_total",
    help: "Store calls that rejected (conflicts and duplicates included).",
    labelNames: ["operation"] as const,
    registers,
  });

  const revocationWatchers = new Gauge({
    name: "identity_revocation_watchers",
    help: "WatchRevocations streams open on this instance.",
    registers,
  });
  const revocationEvents = new Counter({
    name: "identity_revocation_events_total",
    help: "Revocations this instance's feed read from the store and handed to its watchers (each once, however many watch).",
    registers,
  });

  /** For createWechatClient's `observe` option. */
  const observeUpstream: UpstreamObserver = (api, outcome, seconds) => {
    upstreamRequests.inc({ api, outcome });
    upstreamDuration.observe({ api }, seconds);
  };

  return {
    registry,

    /** One finished RPC; call once per RPC from the outermost interceptor. */
    recordRpc({ method, code, reason, seconds }: RpcSample): void {
      rpcRequests.inc({ method, code, reason: reason ?? "" });
      rpcDuration.observe({ method, code }, seconds);
    },

    observeUpstream,

    /** For createAccessTokenBroker's `onRefresh` option. */
    recordTokenRefresh(appid: string): void {
      tokenRefreshes.inc({ appid });
    },

    /** For the revocation feed's onWatchers. */
    setRevocationWatchers(count: number): void {
      revocationWatchers.set(count);
    },

    /** For the revocation feed's onEvents. */
    countRevocationEvents(count: number): void {
      revocationEvents.inc(count);
    },

    /** One store call; instrumentStore calls this for every method. */
    observeStore(operation: string, seconds: number, failed: boolean): void {
      storeDuration.observe({ operation }, seconds);
      if (failed) storeErrors.inc({ operation });
    },

    /** The text exposition for a /metrics route. */
    async render(): Promise<{ contentType: string; body: string }> {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

// Every method of each port, checked against the interface: a method added to a port and not
// here fails to compile instead of going untimed.
const USER_METHODS = { insert: true, get: true, findByKeys: true, replace: true, remove: true, count: true, countWithIdentityOf: true } satisfies Record<keyof UserStore, true>;
const SESSION_METHODS = { insert: true, get: true, rotate: true, promote: true, revoke: true, revokeAllForUser: true, revokeOldest: true, listForUser: true, removeForUser: true } satisfies Record<
  keyof SessionStore,
  true
>;
const REPLAY_METHODS = { remember: true, recall: true } satisfies Record<keyof ReplayStore, true>;
const CREDENTIAL_METHODS = { get: true, acquireLease: true, saveToken: true, expireToken: true } satisfies Record<keyof CredentialStore, true>;
// follow is no store call but a subscription (MongoDB's change stream): passed through untimed.
const AUDIT_METHODS = { append: true, list: true, anonymiseSubject: true } satisfies Record<keyof AuditStore, true>;
const ACTIVITY_METHODS = { record: true, daily: true } satisfies Record<keyof ActivityStore, true>;
const REVOCATION_METHODS = { append: true, since: true } satisfies Record<Exclude<keyof RevocationStore, "follow">, true>;

/**
 * The same store with every call of users, sessions, replays and credentials timed under
 * "<part>.<method>" (e.g. "users.get"), and every rejection counted as an error. Methods run
 * on the original objects (`this` is the wrapped part); init and close pass straight through.
 */
export function instrumentStore(store: Store, metrics: Pick<Metrics, "observeStore">): Store {
  return {
    users: timed<UserStore>(store.users, "users", USER_METHODS, metrics),
    sessions: timed<SessionStore>(store.sessions, "sessions", SESSION_METHODS, metrics),
    replays: timed<ReplayStore>(store.replays, "replays", REPLAY_METHODS, metrics),
    credentials: timed<CredentialStore>(store.credentials, "credentials", CREDENTIAL_METHODS, metrics),
    revocations: {
      ...timed<Omit<RevocationStore, "follow">>(store.revocations, "revocations", REVOCATION_METHODS, metrics),
      ...(store.revocations.follow ? { follow: store.revocations.follow.bind(store.revocations) } : {}),
    },
    audit: timed<AuditStore>(store.audit, "audit", AUDIT_METHODS, metrics),
    activity: timed<ActivityStore>(store.activity, "activity", ACTIVITY_METHODS, metrics),
    init: () => store.init(),
    close: () => store.close(),
  };
}

type AsyncMethod = (...args: unknown[]) => Promise<unknown>;

function timed<T extends object>(part: T, prefix: string, methods: Record<keyof T, true>, metrics: Pick<Metrics, "observeStore">): T {
  const wrapped: Partial<Record<keyof T, AsyncMethod>> = {};
  for (const name of Object.keys(methods) as (keyof T & string)[]) {
    const method = part[name] as AsyncMethod;
    const operation = `${prefix}.${name}`;
    wrapped[name] = async (...args) => {
      const started = performance.now();
      let failed = true;
      try {
        const result = await method.apply(part, args);
        failed = false;
        return result;
      } finally {
        metrics.observeStore(operation, (performance.now() - started) / 1000, failed);
      }
    };
  }
  // Each key of T has its wrapper, with the method's own parameters and result.
  return wrapped as T;
}
