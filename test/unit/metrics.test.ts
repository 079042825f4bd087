// Metrics: recorded values come out in the exposition text; the store decorator times every call
// and counts rejections; the WeChat client and token broker report through their hooks.
import { createServer, type AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createMetrics, instrumentStore } from "../../src/metrics/metrics.js";
import { createWechatSimulator, type WechatSimulator } from "../../src/simulator/simulator.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { NotFoundError, VersionConflictError, type UserDraft } from "../../src/store/store.js";
import { createAccessTokenBroker } from "../../src/wechat/access-token-broker.js";
import { createWechatClient } from "../../src/wechat/wechat-client.js";
import { injectFault, mintCode } from "../support/harness.js";

/** The value of the sample `name` whose labels include `labels`; undefined when there is none. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return undefined;
}

describe("createMetrics", () => {
  it("renders recorded RPCs, upstream calls, token refreshes and store calls", async () => {
    const metrics = createMetrics();
    metrics.recordRpc({ method: "Login", code: "ok", seconds: 0.004 });
    metrics.recordRpc({ method: "Login", code: "ok", seconds: 0.02 });
    metrics.recordRpc({ method: "Login", code: "InvalidArgument", reason: "CODE_INVALID", seconds: 0.0007 });
    metrics.observeUpstream("jscode2session", "40029", 0.03);
    metrics.recordTokenRefresh("wx0000000000000001");
    metrics.observeStore("users.get", 0.0002, false);
    metrics.observeStore("users.get", 0.0003, true);

    const { contentType, body } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(body, "identity_rpc_requests_total", { method: "Login", code: "ok", reason: "" })).toBe(2);
    expect(sample(body, "identity_rpc_requests_total", { method: "Login", code: "InvalidArgument", reason: "CODE_INVALID" })).toBe(1);
    expect(sample(body, "identity_rpc_duration_seconds_count", { method: "Login", code: "ok" })).toBe(2);
    expect(sample(body, "identity_rpc_duration_seconds_bucket", { method: "Login", code: "ok", le: "0.005" })).toBe(1);
    expect(sample(body, "identity_rpc_duration_seconds_bucket", { method: "Login", code: "InvalidArgument", le: "0.001" })).toBe(1);
    expect(sample(body, "identity_rpc_duration_seconds_sum", { method: "Login", code: "ok" })).toBeCloseTo(0.024);
    expect(sample(body, "identity_upstream_requests_total", { api: "jscode2session", outcome: "40029" })).toBe(1);
    expect(sample(body, "identity_upstream_duration_seconds_count", { api: "jscode2session" })).toBe(1);
    expect(sample(body, "identity_access_token_refreshes_total", { appid: "wx0000000000000001" })).toBe(1);
    expect(sample(body, "identity_store_duration_seconds_count", { operation: "users.get" })).toBe(2);
    expect(sample(body, "identity_store_errors_total", { operation: "users.get" })).toBe(1);
    // The default process metrics, in this registry.
    expect(sample(body, "process_cpu_user_seconds_total")).toBeGreaterThanOrEqual(0);
    expect(body).toContain("# TYPE nodejs_eventloop_lag_seconds gauge");
  });

  it("keeps each instance's samples in its own registry", async () => {
    const one = createMetrics();
    const two = createMetrics();
    one.recordRpc({ method: "Refresh", code: "ok", seconds: 0.001 });
    expect(sample((await one.render()).body, "identity_rpc_requests_total", { method: "Refresh" })).toBe(1);
    expect(sample((await two.render()).body, "identity_rpc_requests_total", { method: "Refresh" })).toBeUndefined();
  });
});

describe("instrumentStore", () => {
  const draft = (): UserDraft => ({ roles: [], status: "active", identities: [], attributes: {}, createdAt: new Date(), updatedAt: new Date() });

  it("times every call under its operation and counts rejections as errors", async () => {
    const metrics = createMetrics();
    const store = instrumentStore(new MemoryStore(), metrics);
    await store.init();

    const user = await store.users.insert(draft());
    expect(await store.users.get(user.id)).toEqual(user);
    expect(await store.users.get("not-an-id")).toBeNull();
    await expect(store.users.replace({ ...user, version: user.version + 5 })).rejects.toBeInstanceOf(VersionConflictError);
    await expect(store.users.replace({ ...user, id: "0123456789abcdef01234567" })).rejects.toBeInstanceOf(NotFoundError);
    expect(await store.sessions.get("0123456789abcdef01234567")).toBeNull();
    // A method called unbound still runs on the original part.
    const { recall } = store.replays;
    expect(await recall("nothing")).toBeNull();
    await store.close();

    const { body } = await metrics.render();
    expect(sample(body, "identity_store_duration_seconds_count", { operation: "users.insert" })).toBe(1);
    expect(sample(body, "identity_store_duration_seconds_count", { operation: "users.get" })).toBe(2);
    expect(sample(body, "identity_store_duration_seconds_count", { operation: "users.replace" })).toBe(2);
    expect(sample(body, "identity_store_duration_seconds_count", { operation: "sessions.get" })).toBe(1);
    expect(sample(body, "identity_store_duration_seconds_count", { operation: "replays.recall" })).toBe(1);
    expect(sample(body, "identity_store_errors_total", { operation: "users.replace" })).toBe(2);
    expect(sample(body, "identity_store_errors_total", { operation: "users.get" })).toBeUndefined();
  });

  it("wraps every method of every part, and nothing else", () => {
    const store = instrumentStore(new MemoryStore(), createMetrics());
    expect(Object.keys(store.users).sort()).toEqual(["count", "countWithIdentityOf", "findByKeys", "get", "insert", "remove", "replace"]);
    expect(Object.keys(store.sessions).sort()).toEqual(["get", "insert", "listForUser", "promote", "removeForUser", "revoke", "revokeAllForUser", "revokeOldest", "rotate"]);
    expect(Object.keys(store.replays).sort()).toEqual(["recall", "remember"]);
    expect(Object.keys(store.credentials).sort()).toEqual(["acquireLease", "expireToken", "get", "saveToken"]);
    // The memory store has no change stream to follow.
    expect(Object.keys(store.revocations).sort()).toEqual(["append", "since"]);
    expect(Object.keys(store.audit).sort()).toEqual(["anonymiseSubject", "append", "list"]);
    expect(Object.keys(store.activity).sort()).toEqual(["daily", "record"]);
  });
});

describe("upstream hooks", () => {
  const app = { appid: "wx0000000000000001", secret: "s3cret" };
  let sim: WechatSimulator;

  beforeAll(async () => {
    sim = createWechatSimulator({ apps: { [app.appid]: app.secret } });
    await sim.listen(0, "127.0.0.1");
  });
  afterAll(() => sim.close());
  beforeEach(async () => {
    await fetch(`${sim.url}/sim/faults`, { method: "DELETE" });
  });

  /** A client whose observations land in `seen` (api:outcome) and in `metrics`. */
  function observed(baseUrl = sim.url) {
    const metrics = createMetrics();
    const seen: string[] = [];
    const client = createWechatClient({
      baseUrl,
      timeoutMs: 200,
      retries: 1,
      retryDelayMs: 1,
      observe: (api, outcome, seconds) => {
        expect(seconds).toBeGreaterThan(0);
        seen.push(`${api}:${outcome}`);
        metrics.observeUpstream(api, outcome, seconds);
      },
    });
    return { metrics, seen, client };
  }

  it("reports ok and WeChat's errcode once per attempt", async () => {
    const { metrics, seen, client } = observed();
    await client.code2Session(app, (await mintCode(sim.url)).code);
    await expect(client.code2Session(app, "unknown")).rejects.toMatchObject({ kind: "code_invalid", errcode: 40029 });
    expect(seen).toEqual(["jscode2session:ok", "jscode2session:40029"]);

    const { body } = await metrics.render();
    expect(sample(body, "identity_upstream_requests_total", { api: "jscode2session", outcome: "ok" })).toBe(1);
    expect(sample(body, "identity_upstream_requests_total", { api: "jscode2session", outcome: "40029" })).toBe(1);
    expect(sample(body, "identity_upstream_duration_seconds_count", { api: "jscode2session" })).toBe(2);
  });

  it("names HTTP statuses, timeouts, dropped connections and the caller's abort", async () => {
    const { seen, client } = observed();
    await injectFault(sim.url, { path: "/sns/jscode2session", status: 503 });
    await expect(client.code2Session(app, (await mintCode(sim.url)).code)).rejects.toMatchObject({ kind: "unavailable" });
    await injectFault(sim.url, { path: "/sns/jscode2session", delayMs: 600 });
    await expect(client.code2Session(app, (await mintCode(sim.url)).code)).rejects.toMatchObject({ kind: "unavailable" });
    await injectFault(sim.url, { path: "/sns/jscode2session", drop: true });
    await expect(client.code2Session(app, (await mintCode(sim.url)).code)).rejects.toMatchObject({ kind: "unavailable" });
    await injectFault(sim.url, { path: "/sns/jscode2session", delayMs: 600 });
    const code = (await mintCode(sim.url)).code;
    await expect(client.code2Session(app, code, AbortSignal.timeout(20))).rejects.toMatchObject({ kind: "unavailable" });
    expect(seen).toEqual(["jscode2session:http_503", "jscode2session:timeout", "jscode2session:network", "jscode2session:aborted"]);
  });

  it("reports each retry of a refused connection", async () => {
    // A port that was just free: port 1 would not do, fetch refuses it without trying ("bad port").
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const { seen, client } = observed(`http://127.0.0.1:${port}`);
    await expect(client.code2Session(app, "x")).rejects.toMatchObject({ kind: "unavailable" });
    expect(seen).toEqual(["jscode2session:network", "jscode2session:network"]);
  });

  it("counts the broker's token fetches, not its cache hits", async () => {
    const { metrics, seen, client } = observed();
    const broker = createAccessTokenBroker({
      credentials: new MemoryStore().credentials,
      fetchToken: (a, signal) => client.stableToken(a, signal),
      onRefresh: metrics.recordTokenRefresh,
    });
    await broker.token(app);
    await broker.token(app);
    expect(seen).toEqual(["stable_token:ok"]);
    expect(sample((await metrics.render()).body, "identity_access_token_refreshes_total", { appid: app.appid })).toBe(1);
  });
});
