// A user's own account lifecycle on the real listeners: DeleteAccount, UnlinkIdentity and
// UnbindPhone, never leaving the user without a way to sign in; and nickname changes through
// WeChat's content check (msg_sec_check v2), answered by the simulator from its word list.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEMO_APPID, injectFault, login, reasonOf, rpc, simPost, startHarness, type Harness } from "./support/harness.js";

const STRICT_APPID = "wx0000000000000002";
const LAX_APPID = "wx0000000000000003";
const config = {
  apps: [
    { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "demo-secret" },
    { id: "strict", platform: "wechat-miniprogram", appid: STRICT_APPID, secret: "strict-secret", contentCheck: { review: "refuse" } },
    { id: "lax", platform: "wechat-miniprogram", appid: LAX_APPID, secret: "lax-secret", contentCheck: { nickname: "off" } },
  ],
  store: "memory",
};

let h: Harness;
/** The service's clock runs this far ahead of the real one (the simulator keeps the real one). */
let ahead = 0;

beforeAll(async () => {
  h = await startHarness(config, {}, undefined, () => Date.now() + ahead);
});

afterAll(async () => {
  await h?.close();
});

beforeEach(() => {
  ahead = 0;
});

const setNickname = (token: string, nickname: string) => rpc(h.httpUrl, "UpdateUser", { user: { nickname }, updateMask: "nickname" }, token);

describe("DeleteAccount", () => {
  it("needs confirm, and a sign-in of the last 10 minutes", async () => {
    const me = await login(h);
    expect(reasonOf(await rpc(h.httpUrl, "DeleteAccount", {}, me.access))).toBe("FIELD_INVALID");
    ahead = 11 * 60_000;
    const stale = await rpc(h.httpUrl, "DeleteAccount", { confirm: true }, me.access);
    expect([stale.status, reasonOf(stale)]).toEqual([400, "REAUTH_REQUIRED"]);
    expect((await rpc(h.httpUrl, "GetUser", {}, me.access)).status).toBe(200);
  });

  it("ends every session, erases the user and frees its keys: the same WeChat user and phone start afresh", async () => {
    const me = await login(h);
    const second = await login(h, { openid: me.openid });
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13600000001" });
    expect((await rpc(h.httpUrl, "BindPhone", { code }, me.access)).status).toBe(200);
    const username = `carol${Date.now()}`;
    expect((await rpc(h.httpUrl, "SetPassword", { username, newPassword: "correct horse battery" }, me.access)).status).toBe(200);

    expect((await rpc(h.httpUrl, "DeleteAccount", { confirm: true }, me.access)).status).toBe(200);
    for (const token of [me.access, second.access]) expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, token))).toBe("TOKEN_REVOKED");
    expect(reasonOf(await rpc(h.httpUrl, "Refresh", { refreshToken: second.refresh }))).toBe("TOKEN_INVALID");
    expect(reasonOf(await rpc(h.httpUrl, "Login", { appId: "demo", password: { username, password: "correct horse battery" } }))).toBe("BAD_CREDENTIALS");

    const reborn = await login(h, { openid: me.openid });
    expect([reborn.body.firstLogin, reborn.body.user.id === me.body.user.id, reborn.body.user.phoneNumber]).toEqual([true, false, ""]);
    const again = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13600000001" });
    expect((await rpc(h.httpUrl, "BindPhone", { code: again.code }, reborn.access)).json.user.phoneNumber).toBe("13600000001");
  });
});

describe("UnlinkIdentity", () => {
  it("refuses the last way to sign in", async () => {
    const me = await login(h);
    const res = await rpc(h.httpUrl, "UnlinkIdentity", { platform: "wechat-miniprogram", appid: DEMO_APPID }, me.access);
    expect([res.status, reasonOf(res)]).toEqual([400, "LAST_SIGN_IN_METHOD"]);
    expect(reasonOf(await rpc(h.httpUrl, "UnlinkIdentity", { platform: "wechat-miniprogram", appid: STRICT_APPID }, me.access))).toBe("NOT_FOUND");
    expect(reasonOf(await rpc(h.httpUrl, "UnlinkIdentity", { appid: DEMO_APPID }, me.access))).toBe("FIELD_INVALID");
  });

  it("with a password left, removes the identity and ends the sessions opened with it; the openid then signs in as a new user", async () => {
    const me = await login(h);
    const username = `dave${Date.now()}`;
    expect((await rpc(h.httpUrl, "SetPassword", { username, newPassword: "correct horse battery" }, me.access)).status).toBe(200);
    const byPassword = await rpc(h.httpUrl, "Login", { appId: "demo", password: { username, password: "correct horse battery" } });
    const unlinked = await rpc(h.httpUrl, "UnlinkIdentity", { platform: "wechat-miniprogram", appid: DEMO_APPID }, byPassword.json.tokens.accessToken);
    expect(unlinked.json.user.identities).toEqual([]);
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, me.access))).toBe("TOKEN_REVOKED");
    expect((await rpc(h.httpUrl, "GetUser", {}, byPassword.json.tokens.accessToken)).status).toBe(200);
    const fresh = await login(h, { openid: me.openid });
    expect(fresh.body.user.id).not.toBe(me.body.user.id);
  });
});

describe("UnbindPhone", () => {
  it("removes the number and frees it for another user", async () => {
    const me = await login(h);
    const phone = "13600000002";
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: phone });
    await rpc(h.httpUrl, "BindPhone", { code }, me.access);
    const other = await login(h);
    const taken = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: phone });
    expect(reasonOf(await rpc(h.httpUrl, "BindPhone", { code: taken.code }, other.access))).toBe("PHONE_TAKEN");
    const unbound = await rpc(h.httpUrl, "UnbindPhone", {}, me.access);
    expect([unbound.json.user.phoneNumber, unbound.json.user.purePhoneNumber, unbound.json.user.countryCode]).toEqual(["", "", ""]);
    const free = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: phone });
    expect((await rpc(h.httpUrl, "BindPhone", { code: free.code }, other.access)).json.user.phoneNumber).toBe(phone);
  });
});

describe("nickname content check", () => {
  beforeAll(async () => {
    await simPost(h.sim, "/sim/sec-words", { risky: ["badword"], review: ["maybe"] });
  });

  it("passes a clean nickname and refuses a risky one with CONTENT_RISKY", async () => {
    const me = await login(h);
    expect((await setNickname(me.access, "小明")).json.user.nickname).toBe("小明");
    const risky = await setNickname(me.access, "a BadWord here");
    expect([risky.status, reasonOf(risky)]).toEqual([400, "CONTENT_RISKY"]);
    const info = risky.json.details.find((d: { type: string }) => d.type === "google.rpc.ErrorInfo").debug;
    expect(info.metadata).toMatchObject({ field: "user.nickname", suggest: "risky" });
    expect((await rpc(h.httpUrl, "GetUser", {}, me.access)).json.user.nickname).toBe("小明");
  });

  it("lets a nickname for review through by default, and refuses it where the app says review: refuse", async () => {
    const me = await login(h);
    expect((await setNickname(me.access, "maybe me")).status).toBe(200);
    const strict = await login(h, { appid: STRICT_APPID }, "strict");
    expect(reasonOf(await setNickname(strict.access, "maybe me"))).toBe("CONTENT_RISKY");
  });

  it("is off where the app turns it off", async () => {
    const lax = await login(h, { appid: LAX_APPID }, "lax");
    expect((await setNickname(lax.access, "badword")).status).toBe(200);
  });

  it("fails closed when WeChat cannot answer: UPSTREAM_UNAVAILABLE, nothing stored", async () => {
    const me = await login(h);
    await injectFault(h.sim, { path: "/wxa/msg_sec_check", errcode: -1, times: 5 });
    const res = await setNickname(me.access, "unchecked");
    expect([res.status, reasonOf(res)]).toEqual([503, "UPSTREAM_UNAVAILABLE"]);
    await fetch(`${h.sim}/sim/faults`, { method: "DELETE" });
    expect((await rpc(h.httpUrl, "GetUser", {}, me.access)).json.user.nickname).toBe("");
  });
});
