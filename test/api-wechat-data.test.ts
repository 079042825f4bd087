// Profiles, phone numbers and login retries as a mini-program meets them, through the real
// listeners and the simulator (which encrypts with the session_key it issued).
import { createHash } from "node:crypto";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, injectFault, login, mintCode, reasonOf, rpc, simPost, startHarness, type Harness } from "./support/harness.js";

const GATED = "wx00000000000000c3";
const OTHER = "wx00000000000000d4";

let h: Harness;
let gated: Harness;
beforeAll(async () => {
  h = await startHarness();
  gated = await startHarness({
    apps: [
      { id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: "gated-secret", registration: "explicit" },
      { id: "other", platform: "wechat-miniprogram", appid: OTHER, secret: "other-secret" },
    ],
  });
});
afterAll(async () => {
  await h.close();
  await gated.close();
});

const key = (seed: string) => createHash("md5").update(seed).digest("base64");
const encrypt = (sim: string, appid: string, openid: string, data: object) => simPost(sim, "/sim/encrypt", { appid, openid, data }) as Promise<{ encryptedData: string; iv: string }>;
const phoneCode = async (sim: string, phoneNumber: string, appid = DEMO_APPID) => ((await simPost(sim, "/sim/phone-code", { appid, phoneNumber })) as { code: string }).code;
async function calls(sim: string, path: string): Promise<number> {
  const { counts } = (await (await fetch(`${sim}/sim/calls`)).json()) as { counts: Record<string, number> };
  return counts[path] ?? 0;
}

describe("Oauth", () => {
  it("fills a signed-in user's profile from the encrypted data, without overwriting their own edits", async () => {
    const me = await login(h, { sessionKey: key("oauth-1") });
    const profile = { openId: me.openid, nickName: "Band", gender: 1, avatarUrl: "https://thirdwx.qlogo.cn/band.png" };
    const res = await rpc(h.httpUrl, "Oauth", await encrypt(h.sim, DEMO_APPID, me.openid, profile), me.access);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ created: false, user: { id: me.body.user.id, nickname: "Band", gender: "GENDER_MALE", avatarUrl: profile.avatarUrl, version: 1 } });
    expect(res.json.tokens).toBeUndefined();

    await rpc(h.httpUrl, "UpdateUser", { user: { nickname: "Mine" }, updateMask: "nickname" }, me.access);
    const again = await rpc(h.httpUrl, "Oauth", await encrypt(h.sim, DEMO_APPID, me.openid, { ...profile, nickName: "Band2" }), me.access);
    expect(again.json.user.nickname).toBe("Mine");
  });

  it("keeps a decrypted nickName by the one nickname rule: control characters stripped, an invisible one dropped", async () => {
    const cases: Array<[string, string]> = [["\u001b[31mRed\r\n\u0000", "[31mRed"], ["\u200b\u3164\u2800", ""], ["  ", ""]];
    for (const [nickName, stored] of cases) {
      const me = await login(h);
      const res = await rpc(h.httpUrl, "Oauth", await encrypt(h.sim, DEMO_APPID, me.openid, { openId: me.openid, nickName }), me.access);
      expect(res.status).toBe(200);
      expect(res.json.user.nickname).toBe(stored);
    }
  });

  it("verifies rawData against its signature", async () => {
    const sessionKey = key("oauth-sig");
    const me = await login(h, { sessionKey });
    const rawData = JSON.stringify({ nickName: "Sig" });
    const signature = createHash("sha1").update(rawData + sessionKey).digest("hex");
    const payload = await encrypt(h.sim, DEMO_APPID, me.openid, { openId: me.openid, nickName: "Sig" });
    expect((await rpc(h.httpUrl, "Oauth", { ...payload, rawData, signature }, me.access)).status).toBe(200);
    const forged = await rpc(h.httpUrl, "Oauth", { ...payload, rawData: rawData.replace("Sig", "Evil"), signature }, me.access);
    expect([forged.status, reasonOf(forged)]).toEqual([400, "SIGNATURE_INVALID"]);
    const half = await rpc(h.httpUrl, "Oauth", { ...payload, rawData }, me.access);
    expect(reasonOf(half)).toBe("FIELD_INVALID");
  });

  it("ends the session when the data is another WeChat user's (SESSION_MISMATCH)", async () => {
    const me = await login(h);
    const payload = await encrypt(h.sim, DEMO_APPID, me.openid, { openId: "o_someone_else", nickName: "X" });
    const res = await rpc(h.httpUrl, "Oauth", payload, me.access);
    expect([res.status, res.json.code, reasonOf(res)]).toEqual([400, "failed_precondition", "SESSION_MISMATCH"]);
    expect(reasonOf(await rpc(h.httpUrl, "CheckLogin", {}, me.access))).toBe("TOKEN_REVOKED");
  });

  it("refuses data of another app, and data that is not WeChat's, as DECRYPT_FAILED", async () => {
    const me = await login(h);
    const foreign = await encrypt(h.sim, DEMO_APPID, me.openid, { openId: me.openid, watermark: { appid: "wx9999999999999999", timestamp: 1 } });
    expect(reasonOf(await rpc(h.httpUrl, "Oauth", foreign, me.access))).toBe("DECRYPT_FAILED");
    const garbage = { encryptedData: Buffer.alloc(48, 7).toString("base64"), iv: Buffer.alloc(16, 1).toString("base64") };
    const res = await rpc(h.httpUrl, "Oauth", garbage, me.access);
    expect([res.status, reasonOf(res)]).toEqual([400, "DECRYPT_FAILED"]);
    const malformed = await rpc(h.httpUrl, "Oauth", { encryptedData: "%%%", iv: "x" }, me.access);
    expect(reasonOf(malformed)).toBe("FIELD_INVALID");
  });

  it("tells a session_key WeChat has rotated apart (SESSION_KEY_STALE)", async () => {
    const me = await login(h, { sessionKey: key("stale-1") });
    // wx.login again on the phone: WeChat's key for this user changes, ours is now stale.
    await mintCode(h.sim, { openid: me.openid, sessionKey: key("stale-2") });
    const payload = await encrypt(h.sim, DEMO_APPID, me.openid, { openId: me.openid, nickName: "Late" });
    const res = await rpc(h.httpUrl, "Oauth", payload, me.access);
    expect([res.status, reasonOf(res)]).toEqual([400, "SESSION_KEY_STALE"]);
    expect(res.json.message).toMatch(/wx\.login/);
  });

  it("turns a pending session into a new user with fresh tokens", async () => {
    const pending = await login(gated, { appid: GATED }, "gated");
    expect(pending.body.registered).toBe(false);
    const res = await rpc(gated.httpUrl, "Oauth", await encrypt(gated.sim, GATED, pending.openid, { openId: pending.openid, nickName: "New" }), pending.access);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ created: true, user: { nickname: "New", roles: ["member"] } });
    const tokens = res.json.tokens;
    expect(tokens.refreshToken).toBeTruthy();
    expect(decodeJwt(tokens.accessToken).sub).toBe(res.json.user.id);
    expect((await rpc(gated.httpUrl, "CheckLogin", {}, tokens.accessToken)).json.user.id).toBe(res.json.user.id);
    expect(reasonOf(await rpc(gated.httpUrl, "Oauth", {}, pending.access))).toBe("TOKEN_INVALID");
    expect((await rpc(gated.httpUrl, "Refresh", { refreshToken: tokens.refreshToken })).status).toBe(200);
  });

  it("binds a pending session to the user who already has its unionId", async () => {
    const unionid = `u_oauth_${Date.now()}`;
    const existing = await login(gated, { appid: OTHER, unionid }, "other");
    const pending = await login(gated, { appid: GATED }, "gated");
    const payload = await encrypt(gated.sim, GATED, pending.openid, { openId: pending.openid, unionId: unionid });
    const res = await rpc(gated.httpUrl, "Oauth", payload, pending.access);
    expect(res.json).toMatchObject({ created: false, user: { id: existing.body.user.id } });
    expect(res.json.user.identities.map((i: { appid: string }) => i.appid).sort()).toEqual([GATED, OTHER].sort());
  });
});

describe("GetPhone and BindPhone", () => {
  it("resolves a phone button code once, and answers a retry of the same code from the first answer", async () => {
    const me = await login(h);
    const code = await phoneCode(h.sim, "13800001111");
    const before = await calls(h.sim, "/wxa/business/getuserphonenumber");
    const first = await rpc(h.httpUrl, "GetPhone", { code }, me.access);
    expect(first.json).toEqual({ phoneNumber: "13800001111", purePhoneNumber: "13800001111", countryCode: "86" });
    const retry = await rpc(h.httpUrl, "GetPhone", { code }, me.access);
    expect(retry.json).toEqual(first.json);
    expect((await calls(h.sim, "/wxa/business/getuserphonenumber")) - before).toBe(1);
    // Someone else with the same code gets nothing from the cache.
    const other = await login(h);
    expect(reasonOf(await rpc(h.httpUrl, "GetPhone", { code }, other.access))).toBe("CODE_INVALID");
  });

  it("reads the legacy encrypted phone payload with the session_key", async () => {
    const me = await login(h);
    const payload = await encrypt(h.sim, DEMO_APPID, me.openid, { phoneNumber: "+85261234567", purePhoneNumber: "61234567", countryCode: "852" });
    const res = await rpc(h.httpUrl, "GetPhone", payload, me.access);
    expect(res.json).toEqual({ phoneNumber: "+85261234567", purePhoneNumber: "61234567", countryCode: "852" });
  });

  it("binds a number, does nothing when it is bound again, and refuses another user's number", async () => {
    const me = await login(h);
    const bound = await rpc(h.httpUrl, "BindPhone", { code: await phoneCode(h.sim, "13800002222") }, me.access);
    expect(bound.json.user).toMatchObject({ phoneNumber: "13800002222", purePhoneNumber: "13800002222", countryCode: "86", version: 1 });
    const again = await rpc(h.httpUrl, "BindPhone", { code: await phoneCode(h.sim, "13800002222") }, me.access);
    expect(again.json.user.version).toBe(1);
    const other = await login(h);
    const taken = await rpc(h.httpUrl, "BindPhone", { code: await phoneCode(h.sim, "13800002222") }, other.access);
    expect([taken.status, taken.json.code, reasonOf(taken)]).toEqual([409, "already_exists", "PHONE_TAKEN"]);
  });

  it("lets exactly one of two users binding one number at once have it", async () => {
    const [a, b] = await Promise.all([login(h), login(h)]);
    const [codeA, codeB] = await Promise.all([phoneCode(h.sim, "13800003333"), phoneCode(h.sim, "13800003333")]);
    const results = await Promise.all([rpc(h.httpUrl, "BindPhone", { code: codeA }, a.access), rpc(h.httpUrl, "BindPhone", { code: codeB }, b.access)]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 409]);
  });

  it("needs a registered session for GetPhone, and registers a pending one on BindPhone", async () => {
    const pending = await login(gated, { appid: GATED }, "gated");
    const code = await phoneCode(gated.sim, "13800004444", GATED);
    expect(reasonOf(await rpc(gated.httpUrl, "GetPhone", { code }, pending.access))).toBe("NOT_REGISTERED");
    const res = await rpc(gated.httpUrl, "BindPhone", { code }, pending.access);
    expect(res.status).toBe(200);
    expect(res.json.user).toMatchObject({ phoneNumber: "13800004444" });
    expect((await rpc(gated.httpUrl, "GetUser", {}, res.json.tokens.accessToken)).json.user.id).toBe(res.json.user.id);
  });

  it("survives WeChat refusing a rotated access token (40001): expire it, fetch again, retry once", async () => {
    const me = await login(h);
    await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800005555") }, me.access);
    const fetches = await calls(h.sim, "/cgi-bin/stable_token");
    await injectFault(h.sim, { path: "/wxa/business/getuserphonenumber", errcode: 40001 });
    const res = await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800006666") }, me.access);
    expect(res.json.phoneNumber).toBe("13800006666");
    expect((await calls(h.sim, "/cgi-bin/stable_token")) - fetches).toBe(1);
  });

  it("treats WeChat's invalid access_token (40014) like 40001: fetch a new one, retry once", async () => {
    const me = await login(h);
    await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800007777") }, me.access);
    const fetches = await calls(h.sim, "/cgi-bin/stable_token");
    await injectFault(h.sim, { path: "/wxa/business/getuserphonenumber", errcode: 40014 });
    const res = await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800008888") }, me.access);
    expect(res.json.phoneNumber).toBe("13800008888");
    expect((await calls(h.sim, "/cgi-bin/stable_token")) - fetches).toBe(1);
  });

  it("keeps each app's access token and phone codes apart", async () => {
    const users = [await login(gated, { appid: OTHER }, "other"), await login(gated, { appid: OTHER }, "other")];
    const pendings = [await login(gated, { appid: GATED }, "gated"), await login(gated, { appid: GATED }, "gated")];
    for (const [i, u] of users.entries()) {
      const res = await rpc(gated.httpUrl, "GetPhone", { code: await phoneCode(gated.sim, `1390000000${i}`, OTHER) }, u.access);
      expect(res.json.phoneNumber).toBe(`1390000000${i}`);
    }
    for (const [i, p] of pendings.entries()) {
      const res = await rpc(gated.httpUrl, "BindPhone", { code: await phoneCode(gated.sim, `1391000000${i}`, GATED) }, p.access);
      expect(res.json.user.phoneNumber).toBe(`1391000000${i}`);
    }
    // One token per app, each fetched once over this instance's life; a code of one app is no good for the other.
    expect(await calls(gated.sim, "/cgi-bin/stable_token")).toBe(2);
    const crossed = await rpc(gated.httpUrl, "GetPhone", { code: await phoneCode(gated.sim, "13920000000", GATED) }, users[0]!.access);
    expect(reasonOf(crossed)).toBe("CODE_INVALID");
  });

  it("refuses a request with neither a code nor encrypted data", async () => {
    const me = await login(h);
    const res = await rpc(h.httpUrl, "GetPhone", {}, me.access);
    expect([res.status, reasonOf(res)]).toEqual([400, "FIELD_INVALID"]);
  });
});
