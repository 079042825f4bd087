// Seed 002 (/applet/login/*) replayed from the document's curl examples against the real HTTP listener.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, mintCode, simPost, startHarness, type Harness } from "./support/harness.js";
import { expectNoStack, expectShape, get, postForm, postJson } from "./support/seed-http.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

const BASE = "/applet/login";
const USER_INFO = { id: "string", name: "string", openid: "string", phone: "string", avatar: "string", bmi: "number|null", fat: "number|null" };
const ENVELOPE = { success: "boolean", message: "string", code: "number", result: "object|string|null" };
const phoneCode = async (phoneNumber: string) => ((await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber })) as { code: string }).code;

async function wxLogin(sessionKey?: string) {
  const minted = await mintCode(h.sim, sessionKey ? { sessionKey } : {});
  const res = await postForm(h.httpUrl, `${BASE}/wxLogin`, { code: minted.code });
  return { ...minted, res, token: res.json.result.token as string };
}

describe("seed 002 /applet/login", () => {
  it("wxLogin answers token, userInfo, openid and an empty sessionKey", async () => {
    const sessionKey = createHash("md5").update("seed-002").digest("base64");
    const { res, openid } = await wxLogin(sessionKey);
    expectShape(res.json, ENVELOPE);
    expect(res.json).toMatchObject({ success: true, code: 200, message: "登录成功", result: { openid, sessionKey: "" } });
    expectShape(res.json.result, { token: "string", userInfo: "object", openid: "string", sessionKey: "string" });
    expectShape(res.json.result.userInfo, USER_INFO);
    expect(res.text).not.toContain(sessionKey);
  });

  it("getPhoneNumber and bindPhoneNumber with one phone code; checkLogin and getUserInfo show the phone", async () => {
    const { token, openid } = await wxLogin();
    const code = await phoneCode("13800138000");
    const phone = await postForm(h.httpUrl, `${BASE}/getPhoneNumber`, { code, token });
    expect(phone.json).toEqual({ success: true, message: "获取成功", code: 200, result: "13800138000" });
    const bound = await postForm(h.httpUrl, `${BASE}/bindPhoneNumber`, { token, phoneCode: code });
    expect(bound.json).toEqual({ success: true, message: "绑定成功", code: 200, result: "绑定成功" });
    for (const [path, message] of [
      ["checkLogin", "登录有效"],
      ["getUserInfo", "获取成功"],
    ]) {
      const res = await get(h.httpUrl, `${BASE}/${path}`, { token });
      expect(res.json).toMatchObject({ success: true, code: 200, message, result: { phone: "13800138000", openid } });
      expectShape(res.json.result, USER_INFO);
    }
  });

  it("refuses a number bound to another user with 400 and the seed's message", async () => {
    const first = await wxLogin();
    await postForm(h.httpUrl, `${BASE}/bindPhoneNumber`, { token: first.token, phoneCode: await phoneCode("13900001111") });
    const second = await wxLogin();
    const res = await postForm(h.httpUrl, `${BASE}/bindPhoneNumber`, { token: second.token, phoneCode: await phoneCode("13900001111") });
    expect(res.json).toEqual({ success: false, message: "该手机号已被其他用户绑定", code: 400, result: null });
  });

  it("updateUserInfo (the document's JSON example) sets name, avatar, bmi and fat as numbers", async () => {
    const { token } = await wxLogin();
    const res = await postJson(h.httpUrl, `${BASE}/updateUserInfo`, { token, userInfo: { name: "新昵称", avatar: "https://example.com/new_avatar.jpg", bmi: 23.0, fat: 16.0 } });
    expect(res.json).toEqual({ success: true, message: "更新成功", code: 200, result: "更新成功" });
    const form = await postForm(h.httpUrl, `${BASE}/updateUserInfo`, { token, userInfo: JSON.stringify({ fat: 15.5 }) });
    expect(form.json.success).toBe(true);
    const me = await get(h.httpUrl, `${BASE}/getUserInfo`, { token });
    expect(me.json.result).toMatchObject({ name: "新昵称", avatar: "https://example.com/new_avatar.jpg", bmi: 23, fat: 15.5 });
    const wrong = await postJson(h.httpUrl, `${BASE}/updateUserInfo`, { token, userInfo: { bmi: "fat" } });
    expect([wrong.status, wrong.json.success, wrong.json.code]).toEqual([200, false, 400]);
  });

  it("refreshToken takes the old token and answers a new one that works; a token we did not issue is 401", async () => {
    const { token } = await wxLogin();
    const res = await postForm(h.httpUrl, `${BASE}/refreshToken`, { token });
    expect(res.json).toMatchObject({ success: true, message: "刷新成功", code: 200, result: expect.any(String) });
    expect((await get(h.httpUrl, `${BASE}/checkLogin`, { token: res.json.result })).json.success).toBe(true);
    expect((await postForm(h.httpUrl, `${BASE}/refreshToken`, { token: "eyJ.x.y" })).json).toMatchObject({ success: false, code: 401 });
    // Well-formed, so it reaches the service's Refresh, which knows no such session.
    const forged = `eyJ.x.y~0123456789abcdef01234567.${"A".repeat(43)}`;
    expect((await postForm(h.httpUrl, `${BASE}/refreshToken`, { token: forged })).json).toMatchObject({ success: false, code: 401 });
  });

  it("logout ends the session: checkLogin then answers 401", async () => {
    const { token } = await wxLogin();
    expect((await postForm(h.httpUrl, `${BASE}/logout`, { token })).json).toEqual({ success: true, message: "退出成功", code: 200, result: "退出成功" });
    const after = await get(h.httpUrl, `${BASE}/checkLogin`, { token });
    expect(after.json).toMatchObject({ success: false, code: 401, result: null });
  });

  it("logout ends the session once the access half has expired: the refresh half then fails too", async () => {
    let clock = Date.now();
    const timed = await startHarness(undefined, {}, undefined, () => clock);
    try {
      const minted = await mintCode(timed.sim);
      const { token } = (await postForm(timed.httpUrl, `${BASE}/wxLogin`, { code: minted.code })).json.result;
      clock += 2 * 3600_000 + 1000;
      expect((await get(timed.httpUrl, `${BASE}/checkLogin`, { token })).json).toMatchObject({ success: false, code: 401, message: "token已过期" });
      expect((await postForm(timed.httpUrl, `${BASE}/logout`, { token })).json).toMatchObject({ success: true, code: 200 });
      expect((await postForm(timed.httpUrl, `${BASE}/refreshToken`, { token })).json).toMatchObject({ success: false, code: 401, result: null });
      // A session past tokens.sessionMaxAgeSeconds (90 days) is the user's to log in again, not an internal error.
      const old = (await postForm(timed.httpUrl, `${BASE}/wxLogin`, { code: (await mintCode(timed.sim)).code })).json.result.token;
      clock += 91 * 86_400_000;
      expect((await postForm(timed.httpUrl, `${BASE}/refreshToken`, { token: old })).json).toEqual({ success: false, code: 401, message: "登录已过期,请重新登录", result: null });
    } finally {
      await timed.close();
    }
  });

  it("answers the documented errors: 401 token无效, 400 微信登录失败: code无效, 400 for wrong types, never a 500", async () => {
    expect((await get(h.httpUrl, `${BASE}/checkLogin`, { token: "user_token_here" })).json).toEqual({ success: false, message: "token无效", code: 401, result: null });
    expect((await postForm(h.httpUrl, `${BASE}/wxLogin`, { code: "wx_login_code_here" })).json).toEqual({ success: false, message: "微信登录失败: code无效", code: 400, result: null });
    for (const body of [{ code: 1 }, { code: { a: 1 } }]) {
      const res = await postJson(h.httpUrl, `${BASE}/wxLogin`, body);
      expect([res.status, res.json.success, res.json.code]).toEqual([200, false, 400]);
      expectNoStack(res);
    }
  });
});
