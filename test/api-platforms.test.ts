// Every sign-in platform through the same Login, against the simulator's QQ, WeChat OAuth,
// Alipay gateway (RSA2-checked) and Apple JWKS; and one person across WeChat's platforms.
import { createHash, generateKeyPairSync } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { login, reasonOf, rpc, simPost, startHarness, type Harness } from "./support/harness.js";

const MP = "wx00000000000000a1";
const OA = "wx00000000000000a2";
const APP = "wx00000000000000a3";
const WEB = "wx00000000000000a4";
const QQ = "1110000001";
const ALIPAY = "2021000000000001";
const BUNDLE = "com.example.identity";

const alipayKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });
const pem = (key: { export(o: object): string | Buffer }, type: string) => key.export({ type, format: "pem" }).toString();

let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    apps: [
      { id: "mp", platform: "wechat-miniprogram", appid: MP, secret: "s-mp" },
      { id: "oa", platform: "wechat-official-account", appid: OA, secret: "s-oa" },
      { id: "app", platform: "wechat-app", appid: APP, secret: "s-app" },
      { id: "web", platform: "wechat-website", appid: WEB, secret: "s-web" },
      { id: "qq", platform: "qq-miniprogram", appid: QQ, secret: "s-qq" },
      { id: "ali", platform: "alipay-miniprogram", appid: ALIPAY, privateKey: pem(alipayKeys.privateKey, "pkcs8"), alipayPublicKey: pem(alipayKeys.publicKey, "spki") },
      { id: "apple", platform: "apple", appid: BUNDLE },
    ],
  });
});
afterAll(() => h.close());

const oauthCode = (appid: string, body: object = {}) => simPost(h.sim, "/sim/oauth-code", { appid, ...body }) as Promise<{ code: string; openid: string }>;
const qqCode = (body: object = {}) => simPost(h.sim, "/sim/qq/login-code", { appid: QQ, ...body }) as Promise<{ code: string; openid: string }>;
const alipayCode = (body: object = {}) => simPost(h.sim, "/sim/alipay/auth-code", { appid: ALIPAY, ...body }) as Promise<{ code: string; userId?: string; openId?: string }>;
const appleToken = (body: object = {}) => simPost(h.sim, "/sim/apple/id-token", { clientId: BUNDLE, ...body }) as Promise<{ idToken: string; sub: string }>;
const loginWith = (appKey: string, body: object) => rpc(h.httpUrl, "Login", { appId: appKey, ...body });

describe("each platform signs in through Login", () => {
  it("WeChat official-account pages, app and website exchange their OAuth code", async () => {
    for (const [appKey, appid] of [
      ["oa", OA],
      ["app", APP],
      ["web", WEB],
    ] as const) {
      const { code, openid } = await oauthCode(appid);
      const res = await loginWith(appKey, { code });
      expect(res.status, res.text).toBe(200);
      expect(res.json.user.identities).toEqual([expect.objectContaining({ platform: res.json.user.identities[0].platform, appid, openid })]);
      expect(res.json.firstLogin).toBe(true);
    }
  });

  it("QQ mini-programs use QQ's code2Session", async () => {
    const { code, openid } = await qqCode();
    const res = await loginWith("qq", { code });
    expect(res.json.user.identities[0]).toMatchObject({ platform: "qq-miniprogram", appid: QQ, openid });
    expect(reasonOf(await loginWith("qq", { code: "nope" }))).toBe("CODE_INVALID");
  });

  it("Alipay mini-programs go through the RSA2-signed gateway, with user_id or open_id", async () => {
    const byUserId = await alipayCode({ userId: "2088000000000001" });
    const res = await loginWith("ali", { code: byUserId.code });
    expect(res.status, res.text).toBe(200);
    expect(res.json.user.identities[0]).toMatchObject({ platform: "alipay-miniprogram", appid: ALIPAY, openid: "2088000000000001" });
    const byOpenId = await alipayCode({ openId: "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5" });
    expect((await loginWith("ali", { code: byOpenId.code })).json.user.identities[0].openid).toBe(byOpenId.openId);
    // A retry with the same code gets the same session back; a code Alipay refuses is CODE_INVALID.
    expect((await loginWith("ali", { code: byUserId.code })).json.user.id).toBe(res.json.user.id);
    const refused = await loginWith("ali", { code: "not-an-auth-code" });
    expect([refused.status, reasonOf(refused)]).toEqual([400, "CODE_INVALID"]);
  });

  it("Sign in with Apple verifies the identity token: signature, audience, expiry and nonce", async () => {
    const ok = await appleToken({ email: "a@example.com" });
    const res = await loginWith("apple", { idToken: ok.idToken });
    expect(res.json.user.identities[0]).toMatchObject({ platform: "apple", appid: BUNDLE, openid: ok.sub });
    expect((await loginWith("apple", { idToken: (await appleToken({ sub: ok.sub })).idToken })).json.user.id).toBe(res.json.user.id);

    const other = await appleToken({ clientId: "com.example.other" });
    expect([(await loginWith("apple", { idToken: other.idToken })).status, reasonOf(await loginWith("apple", { idToken: other.idToken }))]).toEqual([401, "ID_TOKEN_INVALID"]);
    const expired = await appleToken({ expiresInSeconds: -60 });
    expect(reasonOf(await loginWith("apple", { idToken: expired.idToken }))).toBe("ID_TOKEN_EXPIRED");
    const nonce = "n-0S6_WzA2Mj";
    const hashed = await appleToken({ nonce: createHash("sha256").update(nonce).digest("hex") });
    expect((await loginWith("apple", { idToken: hashed.idToken, nonce })).status).toBe(200);
    expect(reasonOf(await loginWith("apple", { idToken: hashed.idToken, nonce: "another" }))).toBe("ID_TOKEN_INVALID");
    expect(reasonOf(await loginWith("apple", { idToken: "not.a.token" }))).toBe("ID_TOKEN_INVALID");
    expect(reasonOf(await loginWith("apple", { code: "abc" }))).toBe("FIELD_INVALID");
  });

  it("keeps WeChat-only RPCs to WeChat mini-program sessions", async () => {
    const { code } = await qqCode();
    const res = await loginWith("qq", { code });
    const oauth = await rpc(h.httpUrl, "Oauth", { encryptedData: "x", iv: "y" }, res.json.tokens.accessToken);
    expect([oauth.status, reasonOf(oauth)]).toEqual([400, "PLATFORM_UNSUPPORTED"]);
  });
});

describe("one person, one user", () => {
  it("lands the same unionid from mini-program, official account, app and website on one user", async () => {
    const unionid = `u_person_${Date.now()}`;
    const first = await login(h, { appid: MP, unionid }, "mp");
    const ids = [first.body.user.id];
    for (const [appKey, appid] of [
      ["oa", OA],
      ["app", APP],
      ["web", WEB],
    ] as const) {
      const res = await loginWith(appKey, { code: (await oauthCode(appid, { unionid })).code });
      expect(res.json.firstLogin).toBe(false);
      ids.push(res.json.user.id);
    }
    expect(new Set(ids).size).toBe(1);
    const user = (await rpc(h.httpUrl, "GetUser", {}, first.access)).json.user;
    expect(user.identities.map((i: { appid: string }) => i.appid).sort()).toEqual([MP, OA, APP, WEB].sort());
  });

  it("does not merge a QQ user into a WeChat user with the same-looking unionid", async () => {
    const unionid = `u_qq_${Date.now()}`;
    const wechat = await login(h, { appid: MP, unionid }, "mp");
    const qq = await loginWith("qq", { code: (await qqCode({ unionid })).code });
    expect(qq.json.user.id).not.toBe(wechat.body.user.id);
  });

  it("refuses a sign-in that matches two different users instead of guessing", async () => {
    const unionid = `u_conflict_${Date.now()}`;
    const a = await login(h, { appid: MP }, "mp");
    const b = await loginWith("oa", { code: (await oauthCode(OA, { unionid })).code });
    expect(b.json.user.id).not.toBe(a.body.user.id);
    const both = await loginWith("mp", { code: (await simPost(h.sim, "/sim/login-code", { appid: MP, openid: a.openid, unionid })).code });
    expect([both.status, reasonOf(both)]).toEqual([400, "ACCOUNT_CONFLICT"]);
  });
});
