// The production face: internal callers with API keys, request limits, signing-key rotation, and a
// store that goes away and comes back.
import { createHash } from "node:crypto";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../src/auth/access-tokens.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { StoreUnavailableError, type Store } from "../src/store/store.js";
import { DEMO_APPID, login, mintCode, reasonOf, rpc, simPost, startHarness, type Harness } from "./support/harness.js";

const API_KEY = "test-internal-key-0123456789";
const app = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s" };
const internal = { "x-api-key": API_KEY };

describe("internal callers", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ apps: [app], internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }] });
  });
  afterAll(() => h.close());

  it("introspect any user's token, and must name it", async () => {
    const me = await login(h);
    const res = await rpc(h.httpUrl, "CheckLogin", { accessToken: me.access }, undefined, internal);
    expect(res.json.user.id).toBe(me.body.user.id);
    expect(reasonOf(await rpc(h.httpUrl, "CheckLogin", {}, undefined, internal))).toBe("FIELD_INVALID");
  });

  it("read any user by id; an unknown id is NOT_FOUND", async () => {
    const me = await login(h);
    expect((await rpc(h.httpUrl, "GetUser", { userId: me.body.user.id }, undefined, internal)).json.user.id).toBe(me.body.user.id);
    const missing = await rpc(h.httpUrl, "GetUser", { userId: "000000000000000000000000" }, undefined, internal);
    expect([missing.status, reasonOf(missing)]).toEqual([404, "USER_NOT_FOUND"]);
  });

  it("change roles and status, which shuts a user out and lets it back in", async () => {
    const me = await login(h);
    const id = me.body.user.id;
    const promoted = await rpc(h.httpUrl, "UpdateUser", { user: { id, roles: ["admin", "merchant"] }, updateMask: "roles" }, undefined, internal);
    expect(promoted.json.user.roles).toEqual(["admin", "merchant"]);
    await rpc(h.httpUrl, "UpdateUser", { user: { id, status: "USER_STATUS_DISABLED" }, updateMask: "status" }, undefined, internal);
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, me.access))).toBe("ACCOUNT_DISABLED");
    expect((await rpc(h.httpUrl, "GetUser", { userId: id }, undefined, internal)).json.user.status).toBe("USER_STATUS_DISABLED");
    await rpc(h.httpUrl, "UpdateUser", { user: { id, status: "USER_STATUS_ACTIVE" }, updateMask: "status" }, undefined, internal);
    expect((await rpc(h.httpUrl, "GetUser", {}, me.access)).status).toBe(200);
    const bad = await rpc(h.httpUrl, "UpdateUser", { user: { id, roles: ["no spaces"] }, updateMask: "roles" }, undefined, internal);
    expect(reasonOf(bad)).toBe("FIELD_INVALID");
  });

  it("are refused with a wrong key, and an end user gets none of their powers", async () => {
    const me = await login(h);
    const other = await login(h);
    const wrongKey = await rpc(h.httpUrl, "GetUser", { userId: me.body.user.id }, undefined, { "x-api-key": "guess" });
    expect([wrongKey.status, reasonOf(wrongKey)]).toEqual([401, "API_KEY_INVALID"]);
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", { userId: other.body.user.id }, me.access))).toBe("PERMISSION_DENIED");
    const escalate = await rpc(h.httpUrl, "UpdateUser", { user: { roles: ["admin"] }, updateMask: "roles" }, me.access);
    expect([escalate.status, reasonOf(escalate)]).toEqual([403, "FIELD_NOT_ALLOWED"]);
    const someoneElse = await rpc(h.httpUrl, "UpdateUser", { user: { id: other.body.user.id, nickname: "x" }, updateMask: "nickname" }, me.access);
    expect(reasonOf(someoneElse)).toBe("PERMISSION_DENIED");
  });
});

describe("request limits", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ apps: [app], limits: { loginsPerAddress: 3, phoneCallsPerUser: 2 } });
  });
  afterAll(() => h.close());

  it("limit logins per address and phone calls per user, with a retry hint", async () => {
    const me = await login(h);
    await login(h);
    await login(h);
    const { code } = await mintCode(h.sim);
    const res = await fetch(`${h.httpUrl}/identity.v1.IdentityService/Login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code }) });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);

    const phone = async () => {
      const { code: phoneCode } = (await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13800007777" })) as { code: string };
      return rpc(h.httpUrl, "GetPhone", { code: phoneCode }, me.access);
    };
    expect((await phone()).status).toBe(200);
    expect((await phone()).status).toBe(200);
    const limited = await phone();
    expect([limited.status, reasonOf(limited)]).toEqual([429, "RATE_LIMITED"]);
  });
});

describe("metrics", () => {
  it("counts RPCs by method, code and reason, WeChat calls by API and outcome, and store latency", async () => {
    const h = await startHarness();
    try {
      await login(h);
      await rpc(h.httpUrl, "Login", { appId: "demo", code: "bad" });
      const res = await fetch(`${h.httpUrl}/metrics`);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
      const text = await res.text();
      expect(text).toMatch(/identity_rpc_requests_total\{method="Login",code="ok",reason=""\} 1/);
      expect(text).toMatch(/identity_rpc_requests_total\{method="Login",code="InvalidArgument",reason="CODE_INVALID"\} 1/);
      expect(text).toMatch(/identity_upstream_requests_total\{api="jscode2session",outcome="40029"\} 1/);
      expect(text).toMatch(/identity_store_duration_seconds_count\{operation="users.findByKeys"\} [1-9]/);
      expect(text).not.toMatch(/accessToken|session_key|secret/);
    } finally {
      await h.close();
    }
  });
});

describe("behind a proxy", () => {
  it("takes the client address from X-Forwarded-For only when the proxy is trusted", async () => {
    const trusting = await startHarness({ apps: [app], trustProxy: ["127.0.0.1"], limits: { loginsPerAddress: 2 } });
    try {
      const from = async (address: string) =>
        (await rpc(trusting.httpUrl, "Login", { code: (await mintCode(trusting.sim)).code }, undefined, { "x-forwarded-for": address })).status;
      expect([await from("198.51.100.1"), await from("198.51.100.1"), await from("198.51.100.1")]).toEqual([200, 200, 429]);
      expect(await from("198.51.100.2")).toBe(200);
    } finally {
      await trusting.close();
    }
  });
});

describe("signing keys", () => {
  it("rotate: new tokens use the newest key, older tokens stay valid while their key is listed", async () => {
    const store = new MemoryStore();
    const [a, b] = await Promise.all([generateSigningKey(), generateSigningKey()]);
    const withKeys = (keys: object[]) => startHarness({ apps: [app], signingKeys: keys }, {}, store);

    const first = await withKeys([a.privateJwk]);
    const old = await login(first);
    await first.close();

    const second = await withKeys([b.privateJwk, a.privateJwk]);
    try {
      expect((await rpc(second.httpUrl, "CheckLogin", {}, old.access)).status).toBe(200);
      const fresh = await login(second);
      expect(decodeProtectedHeader(fresh.access).kid).toBe(b.privateJwk.kid);
      const jwks = (await (await fetch(`${second.httpUrl}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string; d?: string }> };
      expect(jwks.keys.map((k) => k.kid)).toEqual([b.privateJwk.kid, a.privateJwk.kid]);
      expect(jwks.keys.every((k) => k.d === undefined)).toBe(true);
    } finally {
      await second.close();
    }

    const third = await withKeys([b.privateJwk]);
    try {
      expect(reasonOf(await rpc(third.httpUrl, "CheckLogin", {}, old.access))).toBe("TOKEN_INVALID");
    } finally {
      await third.close();
    }
  });
});

describe("a store that goes away", () => {
  it("makes calls fail fast with UNAVAILABLE, and the service recovers when it returns", async () => {
    let down = false;
    const store = flakyStore(new MemoryStore(), () => down);
    const h = await startHarness(undefined, {}, store);
    try {
      const me = await login(h);
      down = true;
      const started = Date.now();
      const failing = await rpc(h.httpUrl, "GetUser", {}, me.access);
      expect([failing.status, reasonOf(failing)]).toEqual([503, "STORE_UNAVAILABLE"]);
      expect(Date.now() - started).toBeLessThan(1000);
      down = false;
      expect((await rpc(h.httpUrl, "GetUser", {}, me.access)).status).toBe(200);
    } finally {
      await h.close();
    }
  });
});

/** Every store call fails as an unreachable MongoDB's would while `isDown()`. */
function flakyStore(store: Store, isDown: () => boolean): Store {
  const guard = <T extends object>(part: T): T =>
    new Proxy(part, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => (isDown() ? Promise.reject(new StoreUnavailableError(new Error("connection refused"))) : value.apply(target, args));
      },
    });
  return { ...store, init: () => store.init(), close: () => store.close(), users: guard(store.users), sessions: guard(store.sessions), replays: guard(store.replays), credentials: guard(store.credentials) };
}

describe("an unreachable WeChat", () => {
  // The client sees UPSTREAM_UNAVAILABLE whatever the cause; the operator's log line names it.
  async function upstreamLogOf(wechatApiBase: string) {
    const { privateJwk } = await generateSigningKey();
    const h = await startHarness({ apps: [app], signingKeys: [privateJwk], store: "memory", wechat: { timeoutMs: 200, retries: 0 } }, { WECHAT_SIMULATOR: "0", WECHAT_API_BASE: wechatApiBase });
    try {
      const res = await rpc(h.httpUrl, "Login", { appId: "demo", code: "any-code" });
      expect([res.status, reasonOf(res)]).toEqual([503, "UPSTREAM_UNAVAILABLE"]);
      expect(res.text).not.toMatch(/ECONNREFUSED|ENOTFOUND|timeout/i);
      const line = h.logs.map((l) => JSON.parse(l)).find((l) => l.msg === "rpc" && l.rpc === "Login");
      return String(line?.upstream);
    } finally {
      await h.close();
    }
  }

  it("logs a refused connection, an unknown host and a timeout as what they are", { timeout: 20_000 }, async () => {
    const freed = createServer();
    await new Promise<void>((resolve) => freed.listen(0, "127.0.0.1", resolve));
    const refusedPort = (freed.address() as AddressInfo).port;
    await new Promise((resolve) => freed.close(resolve));
    expect(await upstreamLogOf(`http://127.0.0.1:${refusedPort}`)).toMatch(/jscode2session: unavailable \(ECONNREFUSED\)/);

    expect(await upstreamLogOf("http://wechat-api.invalid")).toMatch(/jscode2session: unavailable \((ENOTFOUND|EAI_AGAIN)\)/);

    // Accepts the connection and never answers.
    const held: Socket[] = [];
    const silent = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      expect(await upstreamLogOf(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`)).toMatch(/jscode2session: unavailable \(timeout\)/);
    } finally {
      held.forEach((socket) => socket.destroy());
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
