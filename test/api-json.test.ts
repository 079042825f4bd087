// The API as a mini-program sees it: Connect JSON over HTTP/1.1 against the real listeners and simulator.
// (Refresh, logout and Login's branches run at the fast level: test/fast/.)
import { createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, injectFault, login, mintCode, reasonOf, rpc, SERVICE, startHarness, type Harness } from "./support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

describe("Login with a wx.login code", () => {
  it("registers a new user on first login and finds it again on the next", async () => {
    const first = await login(h);
    expect(first.res.status).toBe(200);
    expect(first.body).toMatchObject({ registered: true, firstLogin: true, openid: first.openid });
    expect(first.body.user.id).toMatch(/^[0-9a-f]{24}$/);
    expect(first.body.user.version).toBe(0);
    expect(first.body.user.identities).toEqual([expect.objectContaining({ platform: "wechat-miniprogram", appid: DEMO_APPID, openid: first.openid })]);
    expect(first.body.tokens).toMatchObject({ tokenType: "Bearer", expiresIn: 7200 });
    expect(first.body.tokens.refreshExpiresIn).toBeGreaterThan(7200);

    const again = await login(h, { openid: first.openid });
    expect(again.body).toMatchObject({ registered: true, firstLogin: false });
    expect(again.body.user.id).toBe(first.body.user.id);
  });

  it("never shows the session_key", async () => {
    const sessionKey = Buffer.from("0123456789abcdef").toString("base64");
    const { res, access } = await login(h, { sessionKey });
    expect(res.text).not.toContain(sessionKey);
    const check = await rpc(h.httpUrl, "CheckLogin", {}, access);
    expect(check.text).not.toContain(sessionKey);
    expect(h.logs.join("\n")).not.toContain(sessionKey);
  });

  it("maps WeChat's answers to codes and reasons", async () => {
    const bad = await rpc(h.httpUrl, "Login", { appId: "demo", code: "not-a-code" });
    expect([bad.status, reasonOf(bad)]).toEqual([400, "CODE_INVALID"]);

    await injectFault(h.sim, { path: "/sns/jscode2session", errcode: 40163 });
    const used = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim)).code });
    expect([used.status, reasonOf(used)]).toEqual([400, "CODE_USED"]);

    const blocked = await mintCode(h.sim, { blocked: true });
    const denied = await rpc(h.httpUrl, "Login", { appId: "demo", code: blocked.code });
    expect([denied.status, reasonOf(denied)]).toEqual([403, "USER_BLOCKED_BY_PLATFORM"]);

    await injectFault(h.sim, { path: "/sns/jscode2session", errcode: 45011 });
    const limited = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim)).code });
    expect([limited.status, reasonOf(limited)]).toEqual([429, "RATE_LIMITED"]);

    await injectFault(h.sim, { path: "/sns/jscode2session", errcode: -1, times: 2 });
    const busy = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim)).code });
    expect([busy.status, reasonOf(busy)]).toEqual([503, "UPSTREAM_UNAVAILABLE"]);

    await injectFault(h.sim, { path: "/sns/jscode2session", status: 502 });
    const gateway = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim)).code });
    expect([gateway.status, reasonOf(gateway)]).toEqual([503, "UPSTREAM_UNAVAILABLE"]);
  });

  it("retries a WeChat -1 once and then succeeds", async () => {
    await injectFault(h.sim, { path: "/sns/jscode2session", errcode: -1, times: 1 });
    const ok = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim)).code });
    expect(ok.status).toBe(200);
  });

  it("refuses bad input with INVALID_ARGUMENT and a reason, never a 500", async () => {
    const cases: Array<[unknown, number, string]> = [
      ["{not json", 400, "REQUEST_INVALID"],
      ["[1,2]", 400, "REQUEST_INVALID"],
      [{ appId: "demo", code: 123 }, 400, "FIELD_INVALID"],
      [{ appId: "demo", code: "x", unknownField: 1 }, 400, "FIELD_INVALID"],
      [{ appId: "demo" }, 400, "FIELD_INVALID"],
      [{ appId: "demo", code: "" }, 400, "FIELD_INVALID"],
      [{ appId: "demo", code: "a".repeat(300) }, 400, "FIELD_INVALID"],
      [{ appId: "nope", code: "abc" }, 404, "APP_NOT_FOUND"],
      [{ appId: "demo", code: "x".repeat(200_000) }, 400, "REQUEST_TOO_LARGE"],
    ];
    for (const [body, status, reason] of cases) {
      const res = await rpc(h.httpUrl, "Login", body);
      expect([res.status, reasonOf(res)], JSON.stringify(body).slice(0, 60)).toEqual([status, reason]);
    }
    const wrongType = await rpc(h.httpUrl, "Login", { appId: "demo", code: 123 });
    expect(wrongType.json.details[0].debug.metadata).toEqual({ field: "code" });
  });

  it("refuses an identity token for an app that signs in with a code", async () => {
    const res = await rpc(h.httpUrl, "Login", { appId: "demo", idToken: "eyJ.x.y" });
    expect([res.status, reasonOf(res), res.json.details[0].debug.metadata.field]).toEqual([400, "FIELD_INVALID", "id_token"]);
  });
});

describe("tokens and sessions", () => {
  it("signs access tokens that internal services can verify with the JWKS", async () => {
    const { access, body } = await login(h);
    const jwks = createRemoteJWKSet(new URL(`${h.httpUrl}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(access, jwks, { audience: "demo", typ: "at+jwt" });
    expect(protectedHeader.alg).toBe("ES256");
    expect(payload.sub).toBe(body.user.id);
    expect(typeof payload.sid).toBe("string");
    expect(payload.exp! - payload.iat!).toBe(7200);
    const keys = (await (await fetch(`${h.httpUrl}/.well-known/jwks.json`)).json()) as { keys: object[] };
    expect(keys.keys[0]).not.toHaveProperty("d");
  });

  it("checks a login by bearer, by the accessToken field, and with Connect GET", async () => {
    const { access, body } = await login(h);
    const byBearer = await rpc(h.httpUrl, "CheckLogin", {}, access);
    expect(byBearer.status).toBe(200);
    expect(byBearer.json).toMatchObject({ user: { id: body.user.id }, sessionId: decodeJwt(access).sid, appId: "demo" });
    expect(new Date(byBearer.json.expireTime).getTime()).toBe((decodeJwt(access).exp as number) * 1000);

    const byField = await rpc(h.httpUrl, "CheckLogin", { accessToken: access });
    expect(byField.json.user.id).toBe(body.user.id);

    const message = encodeURIComponent(JSON.stringify({}));
    const get = await fetch(`${h.httpUrl}/${SERVICE}/GetUser?connect=v1&encoding=json&message=${message}`, { headers: { authorization: `Bearer ${access}` } });
    expect(get.status).toBe(200);
    expect(((await get.json()) as { user: { id: string } }).user.id).toBe(body.user.id);
  });

  it("refuses missing, malformed and forged tokens with their reasons", async () => {
    const { access } = await login(h);
    const missing = await rpc(h.httpUrl, "GetUser", {});
    expect([missing.status, reasonOf(missing)]).toEqual([401, "TOKEN_MISSING"]);
    const garbage = await rpc(h.httpUrl, "GetUser", {}, "garbage");
    expect([garbage.status, reasonOf(garbage)]).toEqual([401, "TOKEN_INVALID"]);
    const [header, payload] = access.split(".");
    const unsigned = await rpc(h.httpUrl, "GetUser", {}, `${header}.${payload}.`);
    expect(reasonOf(unsigned)).toBe("TOKEN_INVALID");
    const basic = await rpc(h.httpUrl, "GetUser", {}, undefined, { authorization: "Basic Zm9vOmJhcg==" });
    expect(reasonOf(basic)).toBe("TOKEN_INVALID");
  });
});

describe("UpdateUser in JSON", () => {
  // What only a JSON body can say; the update rules themselves are in test/fast/users.test.ts.
  it("refuses a mask path that is not lowerCamelCase and attributes that are not an object", async () => {
    const { access } = await login(h);
    const proto = await rpc(h.httpUrl, "UpdateUser", { user: { nickname: "x" }, updateMask: "__proto__" }, access);
    expect([proto.status, reasonOf(proto), proto.json.details[0].debug.metadata.field]).toEqual([400, "FIELD_INVALID", "update_mask"]);
    const attributesNotObject = await rpc(h.httpUrl, "UpdateUser", { user: { attributes: [1, 2] }, updateMask: "attributes" }, access);
    expect([attributesNotObject.status, reasonOf(attributesNotObject)]).toEqual([400, "FIELD_INVALID"]);
    expect((await rpc(h.httpUrl, "GetUser", {}, access)).json.user).toMatchObject({ version: 0 });
  });
});

describe("one clock", () => {
  it("answers a retried Login from the first on the app's clock, which the store it builds follows", async () => {
    // A day behind the real clock: the first Login's replay entry has expired by the real one.
    const behind = await startHarness(undefined, {}, undefined, () => Date.now() - 86_400_000);
    try {
      const { code } = await mintCode(behind.sim);
      const first = await rpc(behind.httpUrl, "Login", { appId: "demo", code });
      const retry = await rpc(behind.httpUrl, "Login", { appId: "demo", code });
      expect(retry.status, retry.text).toBe(200);
      expect(retry.json.user.id).toBe(first.json.user.id);
    } finally {
      await behind.close();
    }
  });
});
