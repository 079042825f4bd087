import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";
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
export function createMetrics() {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const registers = [registry];
    const rpcRequests = new Counter({
        name: "identity_rpc_requests_total",
        help: "RPCs handled, by method, Connect code and ErrorInfo reason.",
        labelNames: ["method", "code", "reason"],
        registers,
    });
    const rpcDuration = new Histogram({
        name: "identity_rpc_duration_seconds",
        help: "Time from the outermost interceptor's start to the answer or error.",
        labelNames: ["method", "code"],
        buckets: RPC_BUCKETS,
        registers,
    });
    const upstreamRequests = new Counter({
        name: "identity_upstream_requests_total",
        help: "HTTP attempts to upstream APIs (retries included), by outcome: ok, the errcode, network, timeout, aborted, http_<status>, bad_response.",
        labelNames: ["api", "outcome"],
        registers,
    });
    const upstreamDuration = new Histogram({
        name: "identity_upstream_duration_seconds",
        help: "Duration of one HTTP attempt to an upstream API.",
        labelNames: ["api"],
        buckets: UPSTREAM_BUCKETS,
        registers,
    });
    const tokenRefreshes = new Counter({
        name: "identity_access_token_refreshes_total",
        help: "Platform access tokens this instance fetched (not read from the store).",
        labelNames: ["appid"],
        registers,
    });
    const storeDuration = new Histogram({
        name: "identity_store_duration_seconds",
        help: "Duration of store calls, failed ones included.",
        labelNames: ["operation"],
        buckets: STORE_BUCKETS,
        registers,
    });
    const storeErrors = new Counter({
        name: "identity_store_errors_total",
        help: "Store calls that rejected (conflicts and duplicates included).",
        labelNames: ["operation"],
        registers,
    });
    /** For createWechatClient's `observe` option. */
    const observeUpstream = (api, outcome, seconds) => {
        upstreamRequests.inc({ api, outcome });
        upstreamDuration.observe({ api }, seconds);
    };
    return {
        registry,
        /** One finished RPC; call once per RPC from the outermost interceptor. */
        recordRpc({ method, code, reason, seconds }) {
            rpcRequests.inc({ method, code, reason: reason ?? "" });
            rpcDuration.observe({ method, code }, seconds);
        },
        observeUpstream,
        /** For createAccessTokenBroker's `onRefresh` option. */
        recordTokenRefresh(appid) {
            tokenRefreshes.inc({ appid });
        },
        /** One store call; instrumentStore calls this for every method. */
        observeStore(operation, seconds, failed) {
            storeDuration.observe({ operation }, seconds);
            if (failed)
                storeErrors.inc({ operation });
        },
        /** The text exposition for a /metrics route. */
        async render() {
            return { contentType: registry.contentType, body: await registry.metrics() };
        },
    };
}
// Every method of each port, checked against the interface: a method added to a port and not
// here fails to compile instead of going untimed.
const USER_METHODS = { insert: true, get: true, findByKeys: true, replace: true };
const SESSION_METHODS = { insert: true, get: true, rotate: true, promote: true, revoke: true, revokeAllForUser: true, revokeOldest: true };
const REPLAY_METHODS = { remember: true, recall: true };
const CREDENTIAL_METHODS = { get: true, acquireLease: true, saveToken: true, expireToken: true };
/**
 * The same store with every call of users, sessions, replays and credentials timed under
 * "<part>.<method>" (e.g. "users.get"), and every rejection counted as an error. Methods run
 * on the original objects (`this` is the wrapped part); init and close pass straight through.
 */
export function instrumentStore(store, metrics) {
    return {
        users: timed(store.users, "users", USER_METHODS, metrics),
        sessions: timed(store.sessions, "sessions", SESSION_METHODS, metrics),
        replays: timed(store.replays, "replays", REPLAY_METHODS, metrics),
        credentials: timed(store.credentials, "credentials", CREDENTIAL_METHODS, metrics),
        init: () => store.init(),
        close: () => store.close(),
    };
}
function timed(part, prefix, methods, metrics) {
    const wrapped = {};
    for (const name of Object.keys(methods)) {
        const method = part[name];
        const operation = `${prefix}.${name}`;
        wrapped[name] = async (...args) => {
            const started = performance.now();
            let failed = true;
            try {
                const result = await method.apply(part, args);
                failed = false;
                return result;
            }
            finally {
                metrics.observeStore(operation, (performance.now() - started) / 1000, failed);
            }
        };
    }
    // Each key of T has its wrapper, with the method's own parameters and result.
    return wrapped;
}
