// Each platform object the kit accepts, with its own shapes: QQ (wx's shapes, QQ's login), Alipay
// (my.getAuthCode, `headers` in, `status` out, non-2xx through fail, storage by {key}), Douyin's tt
// (login needs force) and uni-app (login needs a provider). tt and uni sign in to a WeChat app here:
// uni-app compiled for WeChat gets wx codes, and the service has no Douyin login yet.
import { describe, expect, it } from "vitest";
import { type Harness, rpc, simPost } from "../../../test/support/harness.js";
import { APPIDS, useService } from "./harness-config.js";
import { clock, createDevice, type Dialect, type Kit, refusal } from "./support.js";

let h: Harness;
let kit: typeof Kit;
useService((started, loaded) => {
  h = started;
  kit = loaded;
});

const cases: Array<{ dialect: Dialect; appId: keyof typeof APPIDS; platform: string }> = [
  { dialect: "qq", appId: "qq", platform: "qq-miniprogram" },
  { dialect: "my", appId: "ali", platform: "alipay-miniprogram" },
  { dialect: "tt", appId: "mp", platform: "wechat-miniprogram" },
  { dialect: "uni", appId: "mp", platform: "wechat-miniprogram" },
];

describe.each(cases)("$dialect", ({ dialect, appId, platform }) => {
  it("logs in, calls with the bearer, refreshes, and restores its session from the platform's storage", async () => {
    const d = createDevice({ sim: h.sim, appid: APPIDS[appId], dialect });
    const identity = kit.createIdentity({ baseUrl: h.httpUrl, appId, platform: d.api });
    const { user, registered } = await identity.login();
    expect(registered).toBe(true);
    expect(user?.identities).toEqual([expect.objectContaining({ platform, openid: dialect === "my" ? d.userId : d.openid })]);
    expect(d.state.logins).toBe(1);

    clock.device += 61_000;
    clock.server += 61_000;
    const relaunched = kit.createIdentity({ baseUrl: h.httpUrl, appId, platform: d.api });
    expect(relaunched.user?.id).toBe(user?.id);
    expect((await relaunched.call<{ user: { id: string } }>("GetUser", {})).user.id).toBe(user?.id);
    expect(d.count("Refresh")).toBe(1);
    expect(d.storage.get(`identity:${appId}`)).toMatchObject({ registered: true });
  });
});

describe("platform differences", () => {
  it("Alipay: a refusal arrives through my.request's fail (error 19) and still signs out", async () => {
    const d = createDevice({ sim: h.sim, appid: APPIDS.ali, dialect: "my" });
    const identity = kit.createIdentity({ baseUrl: h.httpUrl, appId: "ali", platform: d.api });
    await identity.login();
    const { code } = await simPost(h.sim, "/sim/alipay/auth-code", { appid: APPIDS.ali, userId: d.userId });
    const other = await rpc(h.httpUrl, "Login", { appId: "ali", code });
    await rpc(h.httpUrl, "Logout", { allSessions: true }, other.json.tokens.accessToken);
    let signedOut = 0;
    identity.onSignedOut(() => signedOut++);
    expect((await refusal(identity.call("GetUser", {}))).reason).toBe("TOKEN_REVOKED");
    expect(signedOut).toBe(1);
    expect(d.storage.has("identity:ali")).toBe(false);
  });

  it("uni-app: the login provider is passed on; the wrong one is PLATFORM_LOGIN_FAILED", async () => {
    const d = createDevice({ sim: h.sim, appid: APPIDS.mp, dialect: "uni" });
    const identity = kit.createIdentity({ baseUrl: h.httpUrl, appId: "mp", platform: d.api, provider: "qq" });
    const error = await refusal(identity.login());
    expect([error.code, error.reason]).toEqual(["unavailable", "PLATFORM_LOGIN_FAILED"]);
    expect(error.message).toMatch(/provider qq/);
  });

  it("a platform object without login() is refused at login, not at creation", async () => {
    const { api } = createDevice({ sim: h.sim, appid: APPIDS.mp });
    const identity = kit.createIdentity({ baseUrl: h.httpUrl, appId: "mp", platform: { ...api, login: undefined } });
    expect((await refusal(identity.login())).reason).toBe("PLATFORM_LOGIN_FAILED");
  });
});
