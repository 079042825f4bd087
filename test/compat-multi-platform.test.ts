// Seed 003 (the multi-platform login) replayed against the real HTTP listener.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintCode, rpc, simPost, startHarness, type Harness } from "./support/harness.js";
import { expectNoStack, expectShape, postForm, postJson } from "./support/seed-http.js";

const DEV_PATH = "/module/iot/codeGetInfo";
const PATH = "/api/v1/login";
const MINI = "wx00000000000000a7";
const QQ = "1109876543";
let h: Harness;
let multi: Harness;
beforeAll(async () => {
  h = await startHarness();
  multi = await startHarness({
    apps: [
      { id: "mini", platform: "wechat-miniprogram", appid: MINI, secret: "s", default: true },
      { id: "qq", platform: "qq-miniprogram", appid: QQ, secret: "q" },
    ],
    seedRoutes: { multiPlatform: { path: PATH } },
  });
});
afterAll(async () => {
  await h.close();
  await multi.close();
});

const PROFILE = {
  uid: "string",
  avatar: "string",
  c_code: "string",
  phone: "string",
  email: "string",
  username: "string",
  male: "string",
  birthday: "string",
  nickname: "string",
  type: "string",
  phone_active: "number",
  email_active: "number",
  status: "number",
  create_at: "string",
  update_at: "string",
  change_username: "number",
  integral: "number|null",
  invite_code: "string",
  token: "string",
  first_login: "boolean",
  set_password: "boolean",
  settled_in_status: "number",
};

describe("seed 003 multi-platform login", () => {
  it("registers with a mini-program code (status 200, 注册成功, first_login) and logs in again (登录成功)", async () => {
    const minted = await mintCode(h.sim);
    const res = await postJson(h.httpUrl, DEV_PATH, { login_method: "WeChat", login_type: "wx_small", code: minted.code });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 200, msg: "注册成功", data: { first_login: true, set_password: false, c_code: "86", status: 1, type: "member" } });
    expectShape(res.json.data, PROFILE);
    expect(res.json.data.create_at).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    // session_key is left empty: it never leaves the server.
    expect(res.json.data.session_key).toBe("");

    const again = await postForm(h.httpUrl, DEV_PATH, { login_method: "WeChat", login_type: "wx_small", code: (await mintCode(h.sim, { openid: minted.openid })).code });
    expect(again.json).toMatchObject({ status: 200, msg: "登录成功", data: { uid: res.json.data.uid, first_login: false } });
  });

  it("records pid as the inviter when it is one of our user ids, and ignores a numeric one", async () => {
    const inviter = await postJson(h.httpUrl, DEV_PATH, { login_method: "WeChat", login_type: "wx_small", code: (await mintCode(h.sim)).code });
    const invited = await postForm(h.httpUrl, DEV_PATH, { login_method: "WeChat", login_type: "wx_small", pid: inviter.json.data.uid, code: (await mintCode(h.sim)).code });
    expect(invited.json.status).toBe(200);
    expect((await rpc(h.httpUrl, "GetUser", {}, invited.json.data.token)).json.user.inviterId).toBe(inviter.json.data.uid);
    const numeric = await postJson(h.httpUrl, DEV_PATH, { login_method: "WeChat", login_type: "wx_small", pid: 5, code: (await mintCode(h.sim)).code });
    expect(numeric.json.status).toBe(200);
    expect((await rpc(h.httpUrl, "GetUser", {}, numeric.json.data.token)).json.user.inviterId).toBe("");
  });

  it("maps login_method QQ to the configured QQ mini-program, on the configured path", async () => {
    const { code } = (await simPost(multi.sim, "/sim/qq/login-code", { appid: QQ })) as { code: string };
    const res = await postJson(multi.httpUrl, PATH, { login_method: "QQ", login_type: "wx_small", code });
    expect(res.json).toMatchObject({ status: 200, data: { first_login: true } });
    expect((await postJson(multi.httpUrl, DEV_PATH, { login_method: "QQ", code })).status).toBe(404);
  });

  it("refuses an unconfigured login_method/login_type with status 0", async () => {
    for (const [login_method, login_type] of [
      ["Alipay", "wx_small"],
      ["WeChat", "wx_public"],
      ["Weibo", "x"],
    ]) {
      const res = await postJson(multi.httpUrl, PATH, { login_method, login_type, code: "abc" });
      expect([res.status, res.json.status, typeof res.json.msg]).toEqual([200, 0, "string"]);
      // Refused for the mapping, before the (invalid) code is ever tried.
      expect(res.json.msg).toMatch(/^不支持的登录方式/);
    }
  });

  it("refuses the app variant's client-asserted openid/unionid/nickName/avatarUrl", async () => {
    const res = await postJson(h.httpUrl, DEV_PATH, { login_method: "WeChat", login_type: "wx_app", openid: "o_victim", unionid: "u_victim", nickName: "x", avatarUrl: "https://x/y.png" });
    expect(res.json).toEqual({ status: 0, msg: "不接受客户端提交的openid, 请使用code登录" });
    expect(h.logs.some((l) => l.includes("client-asserted identity"))).toBe(true);
  });

  it("answers {status: 0, msg} for a bad code and wrong types, never a 500", async () => {
    expect((await postJson(h.httpUrl, DEV_PATH, { login_method: "WeChat", login_type: "wx_small", code: "nope" })).json).toMatchObject({ status: 0 });
    for (const body of [
      { login_method: "WeChat", login_type: "wx_small", code: 5 },
      { login_method: ["WeChat"], code: "x" },
      { login_method: "WeChat", login_type: "wx_small", code: "x", pid: { a: 1 } },
    ]) {
      const res = await postJson(h.httpUrl, DEV_PATH, body);
      expect([res.status, res.json.status, typeof res.json.msg], JSON.stringify(body)).toEqual([200, 0, "string"]);
      expectNoStack(res);
    }
  });

  describe("with allowClientIdentity (the operator's explicit, logged choice)", () => {
    const APP = "wx00000000000000b8";
    let trusting: Harness;
    beforeAll(async () => {
      trusting = await startHarness({
        apps: [
          { id: "mini", platform: "wechat-miniprogram", appid: MINI, secret: "s", default: true },
          { id: "app", platform: "wechat-app", appid: APP, secret: "a" },
        ],
        seedRoutes: { multiPlatform: { path: PATH, allowClientIdentity: true } },
      });
    });
    afterAll(() => trusting.close());

    it("warns at start-up", () => {
      expect(trusting.logs.some((l) => l.includes("trusts client-asserted openids"))).toBe(true);
    });

    it("signs in the asserted openid, keeps nickName/avatarUrl for a new user, and finds it again", async () => {
      const body = { login_method: "WeChat", login_type: "wx_app", openid: "o_asserted_0001", nickName: "凯文", avatarUrl: "https://example.com/a.png" };
      const first = await postJson(trusting.httpUrl, PATH, body);
      expect(first.json).toMatchObject({ status: 200, msg: "注册成功", data: { first_login: true, nickname: "凯文", avatar: "https://example.com/a.png", session_key: "" } });
      expectShape(first.json.data, PROFILE);
      const again = await postForm(trusting.httpUrl, PATH, { login_method: "WeChat", login_type: "wx_app", openid: "o_asserted_0001", nickName: "other" });
      expect(again.json).toMatchObject({ status: 200, msg: "登录成功", data: { first_login: false, uid: first.json.data.uid, nickname: "凯文" } });
    });

    it("never merges by an asserted unionid", async () => {
      const minted = await mintCode(trusting.sim, { appid: MINI, unionid: "u_victim_0001" });
      const victim = await postJson(trusting.httpUrl, PATH, { login_method: "WeChat", login_type: "wx_small", code: minted.code });
      expect(victim.json.status).toBe(200);
      const attacker = await postJson(trusting.httpUrl, PATH, { login_method: "WeChat", login_type: "wx_app", openid: "o_attacker_0001", unionid: "u_victim_0001" });
      expect(attacker.json.status).toBe(200);
      expect(attacker.json.data.uid).not.toBe(victim.json.data.uid);
    });

    it("refuses an openid that is not one", async () => {
      for (const openid of ["", "a b c d e f", "x".repeat(65), { $gt: "" }]) {
        const res = await postJson(trusting.httpUrl, PATH, { login_method: "WeChat", login_type: "wx_app", openid, nickName: "n" });
        expect([res.status, res.json.status], JSON.stringify(openid)).toEqual([200, 0]);
        expectNoStack(res);
      }
    });
  });
});
