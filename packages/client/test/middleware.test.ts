// The fastify hook and the Express middleware, each in a real app on port 0 in front of the real
// service: what a route sees on success, and the status, body and challenge of every refusal.
import { createHash } from "node:crypto";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import express from "express";
import Fastify from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, mintCode, startHarness, type Harness } from "../../../test/support/harness.js";
import { identityAuth as expressAuth } from "../src/express.js";
import { identityAuth as fastifyAuth } from "../src/fastify.js";
import { createCheckLogin, createIdentityClient, type IdentityAuthOptions, type IdentityClient, type TokenCheck, UserStatus, type VerifiedIdentity } from "../src/index.js";
import { closedPortUrl } from "./support.js";

const API_KEY = "middleware-test-key-0123456789abcdef";
let h: Harness;
let internal: IdentityClient;
let check: TokenCheck;
beforeAll(async () => {
  h = await startHarness({
    apps: [{ id: "shop", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s", registration: "auto" }],
    internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
  });
  internal = createIdentityClient({ baseUrl: h.grpcUrl, transport: "grpc", apiKey: API_KEY });
  check = createCheckLogin(internal);
});
afterAll(() => h?.close());

/** What both test apps answer on /me (required) and /maybe (optional). */
const view = (identity: VerifiedIdentity | undefined) =>
  identity ? { userId: identity.userId, sessionId: identity.sessionId, appId: identity.appId, nickname: identity.user?.nickname ?? null } : { guest: true };

type Serve = (options: IdentityAuthOptions) => Promise<{ url: string; close: () => Promise<void> }>;

const serveFastify: Serve = async (options) => {
  const app = Fastify();
  app.get("/me", { onRequest: fastifyAuth(options) }, async (request) => view(request.identity));
  // An optional route as a plugin-wide hook, the other way to install it.
  await app.register(async (scope) => {
    scope.addHook("onRequest", fastifyAuth({ ...options, optional: true }));
    scope.get("/maybe", async (request) => view(request.identity));
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: () => app.close() };
};

const serveExpress: Serve = async (options) => {
  const app = express();
  app.get("/me", expressAuth(options), (req, res) => void res.json(view(req.identity)));
  app.get("/maybe", expressAuth({ ...options, optional: true }), (req, res) => void res.json(view(req.identity)));
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

async function loginShop() {
  const { code } = await mintCode(h.sim);
  const res = await internal.login({ appId: "shop", credential: { case: "code", value: code } });
  return { userId: res.user!.id, access: res.tokens!.accessToken };
}

describe.each([
  ["fastify", serveFastify],
  ["Express", serveExpress],
] as const)("%s", (_name, serve) => {
  const running: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((close) => close()));
  });
  async function app(options: IdentityAuthOptions) {
    const served = await serve(options);
    running.push(served.close);
    return async (path: string, authorization?: string) => {
      const res = await fetch(`${served.url}${path}`, authorization ? { headers: { authorization } } : {});
      const text = await res.text();
      return { status: res.status, body: JSON.parse(text), text, challenge: res.headers.get("www-authenticate"), retryAfter: res.headers.get("retry-after"), type: res.headers.get("content-type") };
    };
  }

  it("puts the identity on the request, checked by API key or by the user's own bearer", async () => {
    const me = await loginShop();
    const user = createIdentityClient({ baseUrl: h.httpUrl, transport: "connect" });
    for (const get of [await app({ check }), await app({ check: createCheckLogin(user) })]) {
      const res = await get("/me", `Bearer ${me.access}`);
      expect(res.status, res.text).toBe(200);
      expect(res.body).toMatchObject({ userId: me.userId, appId: "shop", nickname: "" });
      expect(res.body.sessionId).toMatch(/\S/);
      // The scheme is case-insensitive (RFC 7235); the optional route too sees the identity.
      expect((await get("/maybe", `bearer ${me.access}`)).body).toEqual(res.body);
    }
  });

  it("answers 401 TOKEN_MISSING with a Bearer challenge without a token, and serves the optional route as a guest", async () => {
    const get = await app({ check });
    for (const authorization of [undefined, "Basic b3JkZXJzOnNlY3JldA==", "Bearer", "Bearer  "]) {
      const res = await get("/me", authorization);
      expect([res.status, res.body, res.challenge], String(authorization)).toEqual([401, { code: "unauthenticated", reason: "TOKEN_MISSING" }, 'Bearer realm="identity"']);
      expect(res.type).toMatch(/^application\/json/);
      expect((await get("/maybe", authorization)).body).toEqual({ guest: true });
    }
  });

  it("answers 401 with the reason for a bad or revoked token, on the optional route too, and never echoes it", async () => {
    const get = await app({ check });
    const bad = await get("/maybe", "Bearer not-a-token");
    expect([bad.status, bad.body, bad.challenge]).toEqual([401, { code: "unauthenticated", reason: "TOKEN_INVALID" }, 'Bearer realm="identity", error="invalid_token"']);
    const me = await loginShop();
    await internal.logout({}, { headers: { authorization: `Bearer ${me.access}` } });
    const revoked = await get("/me", `Bearer ${me.access}`);
    expect([revoked.status, revoked.body]).toEqual([401, { code: "unauthenticated", reason: "TOKEN_REVOKED" }]);
    expect(revoked.text).not.toContain(me.access);
  });

  it("answers 403 ACCOUNT_DISABLED for a disabled user", async () => {
    const get = await app({ check });
    const victim = await loginShop();
    await internal.updateUser({ user: { id: victim.userId, status: UserStatus.DISABLED }, updateMask: { paths: ["status"] } });
    const res = await get("/me", `Bearer ${victim.access}`);
    expect([res.status, res.body, res.challenge]).toEqual([403, { code: "permission_denied", reason: "ACCOUNT_DISABLED" }, null]);
  });

  it("answers 429 with retry-after when the user is over the service's per-user limit", async () => {
    const limited = await startHarness({
      apps: [{ id: "shop", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s", registration: "auto" }],
      limits: { callsPerUser: 2 },
    });
    try {
      const user = createIdentityClient({ baseUrl: limited.httpUrl, transport: "connect" });
      const { code } = await mintCode(limited.sim);
      const { tokens } = await user.login({ appId: "shop", credential: { case: "code", value: code } });
      const get = await app({ check: createCheckLogin(user) });
      const answers = [];
      for (let i = 0; i < 3; i++) answers.push(await get("/me", `Bearer ${tokens!.accessToken}`));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 429]);
      expect(answers[2]!.body).toEqual({ code: "resource_exhausted", reason: "RATE_LIMITED" });
      expect(Number(answers[2]!.retryAfter)).toBeGreaterThan(0);
    } finally {
      await limited.close();
    }
  });

  it("answers 503 when the service cannot be reached, and 500 for a wrong API key, telling onError of both", async () => {
    const me = await loginShop();
    const errors: unknown[] = [];
    const onError = (err: unknown) => void errors.push(err);
    const unreachable = await app({ check: createCheckLogin(createIdentityClient({ baseUrl: await closedPortUrl(), transport: "grpc" })), onError });
    const down = await unreachable("/me", `Bearer ${me.access}`);
    expect([down.status, down.body]).toEqual([503, { code: "unavailable" }]);
    const wrongKey = "not-the-orders-key-0123456789abcdef";
    const misconfigured = await app({ check: createCheckLogin(createIdentityClient({ baseUrl: h.grpcUrl, transport: "grpc", apiKey: wrongKey })), onError });
    const res = await misconfigured("/me", `Bearer ${me.access}`);
    expect([res.status, res.body]).toEqual([500, { code: "unauthenticated", reason: "API_KEY_INVALID" }]);
    expect(res.text).not.toContain(wrongKey);
    expect(errors).toHaveLength(2);
    // A refused token is the user's business, not an operator's: no onError for it.
    await misconfigured("/me");
    expect(errors).toHaveLength(2);
  });
});
