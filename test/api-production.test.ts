// The production face on the wire: metrics, a proxy's client address, signing-key rotation, a store
// that goes away and comes back, an unreachable WeChat. (Internal callers and request limits are
// the service's: test/fast/users.test.ts.)
import { createServer, type AddressInfo, type Socket } from "node:net";
import { decodeProtectedHeader } from "jose";
import { describe, expect, it } from "vitest";
import { generateSigningKey } from "../src/auth/access-tokens.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { StoreUnavailableError, type Store } from "../src/store/store.js";
import { DEMO_APPID, login, mintCode, reasonOf, rpc, startHarness } from "./support/harness.js";

const app = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s" };

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
      const from = async (address: string) => (await rpc(trusting.httpUrl, "Login", { code: (await mintCode(trusting.sim)).code }, undefined, { "x-forwarded-for": address })).status;
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
  return {
    ...store,
    init: () => store.init(),
    close: () => store.close(),
    users: guard(store.users),
    sessions: guard(store.sessions),
    replays: guard(store.replays),
    credentials: guard(store.credentials),
  };
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
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
