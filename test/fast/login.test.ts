// Login's branches: several apps, explicit registration, refresh reuse without a grace window, and
// a retried Login with the same wx.login code.
import { Code } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { as, byCode, refusal, refusalOf, startFast, type Fast } from "../support/fast.js";

const SHOP = "wx00000000000000a1";
const CLUB = "wx00000000000000b2";
const GATED = "wx00000000000000c3";

let f: Fast;
beforeAll(async () => {
  f = await startFast({
    apps: [
      { id: "shop", platform: "wechat-miniprogram", appid: SHOP, secret: "shop-secret-value" },
      { id: "club", platform: "wechat-miniprogram", appid: CLUB, secret: "club-secret-value", defaultRoles: ["guest"] },
      { id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: "gated-secret-value", registration: "explicit" },
    ],
    tokens: { refreshGraceSeconds: 0, accessTtlSeconds: 600 },
  });
});

describe("several apps", () => {
  it("needs appId when more than one app is configured", async () => {
    const { code, reason, metadata } = await refusal(f.client.login(byCode(f.mintCode({ appid: SHOP }).code)));
    expect([code, reason, metadata.field]).toEqual([Code.InvalidArgument, "FIELD_INVALID", "app_id"]);
  });

  it("does not redeem one app's code for another app", async () => {
    expect((await refusal(f.client.login({ appId: "club", ...byCode(f.mintCode({ appid: SHOP }).code) }))).reason).toBe("CODE_INVALID");
  });

  it("lands the same unionid from two apps on one user, with both identities", async () => {
    const shop = await f.login({ appid: SHOP, unionid: "u_two_apps" }, "shop");
    const club = await f.login({ appid: CLUB, unionid: "u_two_apps" }, "club");
    expect(club.userId).toBe(shop.userId);
    expect(club.res.firstLogin).toBe(false);
    expect(club.res.user!.identities.map((i) => i.appid).sort()).toEqual([SHOP, CLUB].sort());
    expect(club.res.user!.roles).toEqual(["member"]);
  });

  it("gives each app its default roles and tokens for that app", async () => {
    const club = await f.login({ appid: CLUB }, "club");
    expect(club.res.user!.roles).toEqual(["guest"]);
    expect(club.res.tokens!.expiresIn).toBe(600);
    expect((await f.client.checkLogin({}, as(club.access))).appId).toBe("club");
  });
});

describe("explicit registration", () => {
  it("answers registered:false with a pending session that only Oauth, BindPhone and Logout accept", async () => {
    const pending = await f.login({ appid: GATED }, "gated");
    expect(pending.res).toMatchObject({ registered: false, firstLogin: false, openid: pending.openid });
    expect(pending.res.user).toBeUndefined();
    expect(pending.access).toBeTruthy();
    expect(pending.res.tokens).toMatchObject({ refreshToken: "", refreshExpiresIn: 0 });

    const userOnly: Array<[string, () => Promise<unknown>]> = [
      ["CheckLogin", () => f.client.checkLogin({}, as(pending.access))],
      ["GetUser", () => f.client.getUser({}, as(pending.access))],
      ["UpdateUser", () => f.client.updateUser({ user: { nickname: "x" } }, as(pending.access))],
    ];
    for (const [method, call] of userOnly) {
      const { code, reason } = await refusal(call());
      expect([method, code, reason]).toEqual([method, Code.FailedPrecondition, "NOT_REGISTERED"]);
    }
    // Accepted by auth, then refused for its data: not NOT_REGISTERED.
    expect((await refusal(f.client.oauth({ encryptedData: "x", iv: "y" }, as(pending.access)))).reason).not.toBe("NOT_REGISTERED");

    await f.client.logout({}, as(pending.access));
    expect((await refusal(f.client.logout({}, as(pending.access)))).reason).toBe("TOKEN_REVOKED");
  });

  it("signs in a user who already exists through the same open platform account", async () => {
    const shop = await f.login({ appid: SHOP, unionid: "u_gated" }, "shop");
    const gated = await f.login({ appid: GATED, unionid: "u_gated" }, "gated");
    expect(gated.res).toMatchObject({ registered: true, firstLogin: false, user: { id: shop.userId } });
  });
});

describe("refresh token reuse without a grace window", () => {
  it("revokes the whole session when a spent refresh token comes back", async () => {
    const { refresh } = await f.login({ appid: SHOP }, "shop");
    const rotated = (await f.client.refresh({ refreshToken: refresh })).tokens!;
    f.clock.advance(5);
    const reused = await refusal(f.client.refresh({ refreshToken: refresh }));
    expect([reused.code, reused.reason]).toEqual([Code.Unauthenticated, "REFRESH_TOKEN_REUSED"]);
    expect((await refusal(f.client.refresh({ refreshToken: rotated.refreshToken }))).reason).toBe("TOKEN_REVOKED");
    expect((await refusal(f.client.checkLogin({}, as(rotated.accessToken)))).reason).toBe("TOKEN_REVOKED");
  });

  it("lets exactly one of parallel refreshes win", async () => {
    const { refresh } = await f.login({ appid: SHOP }, "shop");
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => f.client.refresh({ refreshToken: refresh })));
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
    for (const r of results) if (r.status === "rejected") expect(["REFRESH_TOKEN_REUSED", "TOKEN_REVOKED"]).toContain(refusalOf(r.reason).reason);
  });
});

describe("retrying a Login with the same wx.login code", () => {
  const shopLogin = (code: string) => f.client.login({ appId: "shop", ...byCode(code) });

  it("gets the same session back instead of CODE_USED", async () => {
    const { code } = f.mintCode({ appid: SHOP });
    const first = await shopLogin(code);
    const retry = await shopLogin(code);
    expect(decodeJwt(retry.tokens!.accessToken).sid).toBe(decodeJwt(first.tokens!.accessToken).sid);
    expect(retry.tokens!.refreshToken).toBe(first.tokens!.refreshToken);
    expect(retry).toMatchObject({ registered: true, firstLogin: true, user: { id: first.user!.id } });
  });

  it("says CODE_USED once the session has moved on", async () => {
    const { code } = f.mintCode({ appid: SHOP });
    const first = await shopLogin(code);
    await f.client.refresh({ refreshToken: first.tokens!.refreshToken });
    expect((await refusal(shopLogin(code))).reason).toBe("CODE_USED");
  });

  it("answers parallel duplicates with one session", async () => {
    const { code } = f.mintCode({ appid: SHOP });
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => shopLogin(code)));
    const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(new Set(ok.map((r) => decodeJwt(r.tokens!.accessToken).sid)).size).toBe(1);
    for (const r of results) if (r.status === "rejected") expect(refusalOf(r.reason).reason).toBe("CODE_USED");
  });
});
