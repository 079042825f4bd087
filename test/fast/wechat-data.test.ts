// Oauth and phone numbers: decrypting open data with the session's session_key, checking whose and
// which app's it is, and binding numbers, with WeChat's data made by the simulator's own crypto.
import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { Gender } from "../../gen/identity/v1/identity_pb.js";
import { as, refusal, refusalOf, startFast, type Fast } from "../support/fast.js";

const GATED = "wx00000000000000c3";
const OTHER = "wx00000000000000d4";

// An explicit-registration app, and a second app of the same open platform account.
const GATED_APPS = [
  { id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: "gated-secret", registration: "explicit" },
  { id: "other", platform: "wechat-miniprogram", appid: OTHER, secret: "other-secret" },
];

let f: Fast;
let gated: Fast;
beforeAll(async () => {
  [f, gated] = await Promise.all([startFast(), startFast({ apps: GATED_APPS })]);
});

const key = (seed: string) => createHash("md5").update(seed).digest("base64");
const phoneCode = (on: Fast, phoneNumber: string, appid = "wx0000000000000001") => on.wechat.mintPhoneCode({ appid, phoneNumber, countryCode: "86" });

describe("Oauth", () => {
  it("fills a signed-in user's profile from the encrypted data, without overwriting their own edits", async () => {
    const me = await f.login({ sessionKey: key("oauth-1") });
    const profile = { openId: me.openid, nickName: "Band", gender: 1, avatarUrl: "https://thirdwx.qlogo.cn/band.png" };
    const res = await f.client.oauth(f.encrypt(me.openid, profile), as(me.access));
    expect(res).toMatchObject({ created: false, user: { id: me.userId, nickname: "Band", gender: Gender.MALE, avatarUrl: profile.avatarUrl, version: 1 } });
    expect(res.tokens).toBeUndefined();

    await f.client.updateUser({ user: { nickname: "Mine" }, updateMask: { paths: ["nickname"] } }, as(me.access));
    expect((await f.client.oauth(f.encrypt(me.openid, { ...profile, nickName: "Band2" }), as(me.access))).user!.nickname).toBe("Mine");
  });

  it("keeps a decrypted nickName by the one nickname rule: control characters stripped, an invisible one dropped", async () => {
    const cases: Array<[string, string]> = [
      ["\u001b[31mRed\r\n\u0000", "[31mRed"],
      ["\u200b\u3164\u2800", ""],
      ["  ", ""],
    ];
    for (const [nickName, stored] of cases) {
      const me = await f.login();
      expect((await f.client.oauth(f.encrypt(me.openid, { openId: me.openid, nickName }), as(me.access))).user!.nickname).toBe(stored);
    }
  });

  it("verifies rawData against its signature", async () => {
    const sessionKey = key("oauth-sig");
    const me = await f.login({ sessionKey });
    const rawData = JSON.stringify({ nickName: "Sig" });
    const signature = createHash("sha1")
      .update(rawData + sessionKey)
      .digest("hex");
    const payload = f.encrypt(me.openid, { openId: me.openid, nickName: "Sig" });
    expect((await f.client.oauth({ ...payload, rawData, signature }, as(me.access))).user!.nickname).toBe("Sig");
    const forged = await refusal(f.client.oauth({ ...payload, rawData: rawData.replace("Sig", "Evil"), signature }, as(me.access)));
    expect([forged.code, forged.reason]).toEqual([Code.InvalidArgument, "SIGNATURE_INVALID"]);
    expect((await refusal(f.client.oauth({ ...payload, rawData }, as(me.access)))).reason).toBe("FIELD_INVALID");
  });

  it("ends the session when the data is another WeChat user's (SESSION_MISMATCH)", async () => {
    const me = await f.login();
    const mismatch = await refusal(f.client.oauth(f.encrypt(me.openid, { openId: "o_someone_else", nickName: "X" }), as(me.access)));
    expect([mismatch.code, mismatch.reason]).toEqual([Code.FailedPrecondition, "SESSION_MISMATCH"]);
    expect((await refusal(f.client.checkLogin({}, as(me.access)))).reason).toBe("TOKEN_REVOKED");
  });

  it("refuses data of another app, and data that is not WeChat's, as DECRYPT_FAILED", async () => {
    const me = await f.login();
    const foreign = f.encrypt(me.openid, { openId: me.openid, watermark: { appid: "wx9999999999999999", timestamp: 1 } });
    expect((await refusal(f.client.oauth(foreign, as(me.access)))).reason).toBe("DECRYPT_FAILED");
    const garbage = { encryptedData: Buffer.alloc(48, 7).toString("base64"), iv: Buffer.alloc(16, 1).toString("base64") };
    const refused = await refusal(f.client.oauth(garbage, as(me.access)));
    expect([refused.code, refused.reason]).toEqual([Code.InvalidArgument, "DECRYPT_FAILED"]);
    expect((await refusal(f.client.oauth({ encryptedData: "%%%", iv: "x" }, as(me.access)))).reason).toBe("FIELD_INVALID");
  });

  it("tells a session_key WeChat has rotated apart (SESSION_KEY_STALE)", async () => {
    const me = await f.login({ sessionKey: key("stale-1") });
    // wx.login again on the phone: WeChat's key for this user changes, ours is now stale.
    f.mintCode({ openid: me.openid, sessionKey: key("stale-2") });
    const stale = await refusal(f.client.oauth(f.encrypt(me.openid, { openId: me.openid, nickName: "Late" }), as(me.access)));
    expect([stale.code, stale.reason]).toEqual([Code.FailedPrecondition, "SESSION_KEY_STALE"]);
    expect(stale.message).toMatch(/wx\.login/);
  });

  it("turns a pending session into a new user with fresh tokens", async () => {
    const pending = await gated.login({ appid: GATED }, "gated");
    expect(pending.res.registered).toBe(false);
    const res = await gated.client.oauth(gated.encrypt(pending.openid, { openId: pending.openid, nickName: "New" }, GATED), as(pending.access));
    expect(res).toMatchObject({ created: true, user: { nickname: "New", roles: ["member"] } });
    const tokens = res.tokens!;
    expect(tokens.refreshToken).toBeTruthy();
    expect(decodeJwt(tokens.accessToken).sub).toBe(res.user!.id);
    expect((await gated.client.checkLogin({}, as(tokens.accessToken))).user!.id).toBe(res.user!.id);
    expect((await refusal(gated.client.oauth({}, as(pending.access)))).reason).toBe("TOKEN_INVALID");
    expect((await gated.client.refresh({ refreshToken: tokens.refreshToken })).tokens!.refreshToken).toBeTruthy();
  });

  it("binds a pending session to the user who already has its unionId", async () => {
    const existing = await gated.login({ appid: OTHER, unionid: "u_oauth" }, "other");
    const pending = await gated.login({ appid: GATED }, "gated");
    const res = await gated.client.oauth(gated.encrypt(pending.openid, { openId: pending.openid, unionId: "u_oauth" }, GATED), as(pending.access));
    expect(res).toMatchObject({ created: false, user: { id: existing.userId } });
    expect(res.user!.identities.map((i) => i.appid).sort()).toEqual([GATED, OTHER].sort());
  });
});

describe("GetPhone and BindPhone", () => {
  it("reads the legacy encrypted phone payload with the session_key", async () => {
    const me = await f.login();
    const payload = f.encrypt(me.openid, { phoneNumber: "+85261234567", purePhoneNumber: "61234567", countryCode: "852" });
    expect(await f.client.getPhone(payload, as(me.access))).toMatchObject({ phoneNumber: "+85261234567", purePhoneNumber: "61234567", countryCode: "852" });
  });

  it("binds a number, does nothing when it is bound again, and refuses another user's number", async () => {
    const me = await f.login();
    const bound = await f.client.bindPhone({ code: phoneCode(f, "13800002222") }, as(me.access));
    expect(bound.user).toMatchObject({ phoneNumber: "13800002222", purePhoneNumber: "13800002222", countryCode: "86", version: 1 });
    expect((await f.client.bindPhone({ code: phoneCode(f, "13800002222") }, as(me.access))).user!.version).toBe(1);
    const other = await f.login();
    const taken = await refusal(f.client.bindPhone({ code: phoneCode(f, "13800002222") }, as(other.access)));
    expect([taken.code, taken.reason]).toEqual([Code.AlreadyExists, "PHONE_TAKEN"]);
  });

  it("lets exactly one of two users binding one number at once have it", async () => {
    const [a, b] = await Promise.all([f.login(), f.login()]);
    const results = await Promise.allSettled([a, b].map((u) => f.client.bindPhone({ code: phoneCode(f, "13800003333") }, as(u.access))));
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    for (const r of results) if (r.status === "rejected") expect(refusalOf(r.reason).reason).toBe("PHONE_TAKEN");
  });

  it("needs a registered session for GetPhone, and registers a pending one on BindPhone", async () => {
    const pending = await gated.login({ appid: GATED }, "gated");
    const code = phoneCode(gated, "13800004444", GATED);
    expect((await refusal(gated.client.getPhone({ code }, as(pending.access)))).reason).toBe("NOT_REGISTERED");
    const res = await gated.client.bindPhone({ code }, as(pending.access));
    expect(res.user).toMatchObject({ phoneNumber: "13800004444" });
    expect((await gated.client.getUser({}, as(res.tokens!.accessToken))).user!.id).toBe(res.user!.id);
  });

  it("refuses a request with neither a code nor encrypted data", async () => {
    const me = await f.login();
    const refused = await refusal(f.client.getPhone({}, as(me.access)));
    expect([refused.code, refused.reason]).toEqual([Code.InvalidArgument, "FIELD_INVALID"]);
  });
});
