// GetUser and UpdateUser: who may read and change whom, update masks, versions and field rules;
// internal callers with API keys; per-address and per-user request limits on the test's clock.
import { createHash } from "node:crypto";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, type CallOptions } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { UpdateUserRequestSchema, UserStatus } from "../../gen/identity/v1/identity_pb.js";
import { as, byCode, DEMO_APPID, refusal, refusalOf, startFast, type Fast } from "../support/fast.js";

const API_KEY = "test-internal-key-0123456789";
const app = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s" };
const internal: CallOptions = { headers: { "x-api-key": API_KEY } };

/** An UpdateUser request written as a JSON client writes it (a field mask string, enum names, a Struct). */
const updateUser = (f: Fast, body: JsonValue, options: CallOptions) => f.client.updateUser(fromJson(UpdateUserRequestSchema, body), options);

describe("GetUser and UpdateUser", () => {
  let f: Fast;
  beforeAll(async () => {
    f = await startFast();
  });

  it("reads only the caller", async () => {
    const a = await f.login();
    const b = await f.login();
    expect((await f.client.getUser({}, as(a.access))).user!.id).toBe(a.userId);
    expect((await f.client.getUser({ userId: a.userId }, as(a.access))).user!.id).toBe(a.userId);
    const other = await refusal(f.client.getUser({ userId: b.userId }, as(a.access)));
    expect([other.code, other.reason]).toEqual([Code.PermissionDenied, "PERMISSION_DENIED"]);
  });

  it("updates the masked fields, bumps the version and keeps the rest", async () => {
    const { access } = await f.login();
    const body = {
      user: { nickname: "小明", avatarUrl: "https://thirdwx.qlogo.cn/a.png", gender: "GENDER_FEMALE", birthday: "1990-02-28", email: "x@example.com", attributes: { bmi: 22.5, fat: 15.2 } },
      updateMask: "nickname,avatarUrl,gender,birthday,email,attributes",
    };
    const { user } = await updateUser(f, body, as(access));
    expect(user).toMatchObject({ nickname: "小明", birthday: "1990-02-28", attributes: { bmi: 22.5, fat: 15.2 }, version: 1 });

    expect((await updateUser(f, { user: { nickname: "ignored", email: "y@example.com" }, updateMask: "email" }, as(access))).user).toMatchObject({
      nickname: "小明",
      email: "y@example.com",
      version: 2,
    });
    expect((await updateUser(f, { user: {}, updateMask: "email" }, as(access))).user).toMatchObject({ email: "", version: 3 });
    expect((await updateUser(f, { user: { nickname: "小红" } }, as(access))).user).toMatchObject({ nickname: "小红", email: "", version: 4 });
    expect((await f.client.getUser({}, as(access))).user).toMatchObject({ nickname: "小红", version: 4 });
  });

  it("refuses a stale expectedVersion with ABORTED / VERSION_CONFLICT and changes nothing", async () => {
    const { access } = await f.login();
    const pinned = (nickname: string) => updateUser(f, { user: { nickname }, updateMask: "nickname", expectedVersion: 0 }, as(access));
    expect((await pinned("one")).user!.version).toBe(1);
    const stale = await refusal(pinned("two"));
    expect([stale.code, stale.reason]).toEqual([Code.Aborted, "VERSION_CONFLICT"]);
    expect((await f.client.getUser({}, as(access))).user).toMatchObject({ nickname: "one", version: 1 });
  });

  it("lets exactly one of parallel updates pinned to one version win", async () => {
    const { access } = await f.login();
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => updateUser(f, { user: { nickname: `n${i}` }, updateMask: "nickname", expectedVersion: 0 }, as(access))));
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
    const reasons = results.flatMap((r) => (r.status === "rejected" ? [refusalOf(r.reason)] : []));
    expect(reasons.map((r) => r.reason)).toEqual(Array(7).fill("VERSION_CONFLICT"));
  });

  it("validates every field it sets", async () => {
    const { access } = await f.login();
    const nickname = (value: string): [JsonValue, string] => [{ user: { nickname: value }, updateMask: "nickname" }, "user.nickname"];
    const cases: Array<[JsonValue, string]> = [
      nickname("x".repeat(65)),
      nickname("a\u0007b"),
      // Nothing visible: zero-width space, Hangul filler, blank Braille, ideographic space, a lone combining mark.
      ...["\u200b\u200b", "\u3164", "\u2800\u2800", "\u3000", "\u0301", "\u200b \u3164\u2800"].map(nickname),
      // Line breaks and a right-to-left override that would reorder what follows the name.
      ...["a\nb", "a\u2028b", "a\u202eb"].map(nickname),
      [{ user: { avatarUrl: "javascript:alert(1)" }, updateMask: "avatarUrl" }, "user.avatarUrl"],
      [{ user: { gender: 7 }, updateMask: "gender" }, "user.gender"],
      [{ user: { birthday: "2023-02-30" }, updateMask: "birthday" }, "user.birthday"],
      [{ user: { birthday: "2999-01-01" }, updateMask: "birthday" }, "user.birthday"],
      [{ user: { email: "nope" }, updateMask: "email" }, "user.email"],
      [{ user: { attributes: { $where: "1" } }, updateMask: "attributes" }, "user.attributes"],
      [{ user: { attributes: { "a.b": 1 } }, updateMask: "attributes" }, "user.attributes"],
      [{ user: { attributes: { big: "x".repeat(9000) } }, updateMask: "attributes" }, "user.attributes"],
      [{ user: { nickname: "x" }, updateMask: "phoneNumber" }, "update_mask"],
      [{ user: { nickname: "x" }, updateMask: "noSuchField" }, "update_mask"],
      [{ user: { nickname: "x" }, updateMask: "constructor" }, "update_mask"],
      [{ user: {} }, "update_mask"],
    ];
    for (const [body, field] of cases) {
      const { code, reason, metadata } = await refusal(updateUser(f, body, as(access)));
      expect([code, reason, metadata.field], JSON.stringify(body).slice(0, 80)).toEqual([Code.InvalidArgument, "FIELD_INVALID", field]);
    }
    const roles = await refusal(updateUser(f, { user: { roles: ["admin"] }, updateMask: "roles" }, as(access)));
    expect([roles.code, roles.reason]).toEqual([Code.PermissionDenied, "FIELD_NOT_ALLOWED"]);
    expect((await f.client.getUser({}, as(access))).user).toMatchObject({ version: 0, roles: ["member"] });
  });
});

describe("internal callers", () => {
  let f: Fast;
  beforeAll(async () => {
    f = await startFast({ apps: [app], internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }] });
  });

  it("introspect any user's token, and must name it", async () => {
    const me = await f.login();
    expect((await f.client.checkLogin({ accessToken: me.access }, internal)).user!.id).toBe(me.userId);
    expect((await refusal(f.client.checkLogin({}, internal))).reason).toBe("FIELD_INVALID");
  });

  it("read any user by id; an unknown id is NOT_FOUND", async () => {
    const me = await f.login();
    expect((await f.client.getUser({ userId: me.userId }, internal)).user!.id).toBe(me.userId);
    const missing = await refusal(f.client.getUser({ userId: "000000000000000000000000" }, internal));
    expect([missing.code, missing.reason]).toEqual([Code.NotFound, "USER_NOT_FOUND"]);
  });

  it("change roles and status, which shuts a user out and lets it sign in again, with its old tokens dead", async () => {
    const me = await f.login();
    const id = me.userId;
    expect((await updateUser(f, { user: { id, roles: ["admin", "merchant"] }, updateMask: "roles" }, internal)).user!.roles).toEqual(["admin", "merchant"]);
    await updateUser(f, { user: { id, status: "USER_STATUS_DISABLED" }, updateMask: "status" }, internal);
    expect((await refusal(f.client.getUser({}, as(me.access)))).reason).toBe("ACCOUNT_DISABLED");
    expect((await f.client.getUser({ userId: id }, internal)).user!.status).toBe(UserStatus.DISABLED);
    await updateUser(f, { user: { id, status: "USER_STATUS_ACTIVE" }, updateMask: "status" }, internal);
    expect((await refusal(f.client.getUser({}, as(me.access)))).reason).toBe("TOKEN_REVOKED");
    const again = await f.login({ openid: me.openid });
    expect((await f.client.getUser({}, as(again.access))).user).toMatchObject({ id, status: UserStatus.ACTIVE });
    expect((await refusal(updateUser(f, { user: { id, roles: ["no spaces"] }, updateMask: "roles" }, internal))).reason).toBe("FIELD_INVALID");
  });

  it("disable and enable a user named by an upper-case id: the revocation names the stored id, the old tokens stay dead", async () => {
    const me = await f.login();
    const id = me.userId.toUpperCase();
    await updateUser(f, { user: { id, status: "USER_STATUS_DISABLED" }, updateMask: "status" }, internal);
    const [revocation] = (await f.store.revocations.since(new Date(0), 1_000)).filter((r) => r.reason === "user_disabled" && "userId" in r.target && r.target.userId.toLowerCase() === me.userId);
    expect(revocation?.target).toEqual({ userId: me.userId });
    await updateUser(f, { user: { id, status: "USER_STATUS_ACTIVE" }, updateMask: "status" }, internal);
    expect((await refusal(f.client.getUser({}, as(me.access)))).reason).toBe("TOKEN_REVOKED");
    // The audit log files both changes under the stored id, where ListAuditEvents looks.
    const events = await f.store.audit.list({ subjectUserId: me.userId, type: "user.updated" }, 10);
    expect(events.map((e) => e.details?.status)).toEqual(["active", "disabled"]);
  });

  it("are refused with a wrong key, and an end user gets none of their powers", async () => {
    const me = await f.login();
    const other = await f.login();
    const wrongKey = await refusal(f.client.getUser({ userId: me.userId }, { headers: { "x-api-key": "guess" } }));
    expect([wrongKey.code, wrongKey.reason]).toEqual([Code.Unauthenticated, "API_KEY_INVALID"]);
    expect((await refusal(f.client.getUser({ userId: other.userId }, as(me.access)))).reason).toBe("PERMISSION_DENIED");
    const escalate = await refusal(updateUser(f, { user: { roles: ["admin"] }, updateMask: "roles" }, as(me.access)));
    expect([escalate.code, escalate.reason]).toEqual([Code.PermissionDenied, "FIELD_NOT_ALLOWED"]);
    expect((await refusal(updateUser(f, { user: { id: other.userId, nickname: "x" }, updateMask: "nickname" }, as(me.access)))).reason).toBe("PERMISSION_DENIED");
  });
});

describe("request limits", () => {
  it("limit logins per address and phone calls per user, with a retry hint, for a minute", async () => {
    const f = await startFast({ apps: [app], limits: { loginsPerAddress: 3, phoneCallsPerUser: 2 } });
    const me = await f.login();
    await f.login();
    await f.login();
    const login = () => f.client.login(byCode(f.mintCode().code));
    const limited = await refusal(login());
    expect([limited.code, limited.reason]).toEqual([Code.ResourceExhausted, "RATE_LIMITED"]);
    expect(Number(limited.metadata.retryAfterSeconds)).toBeGreaterThan(0);

    const phone = () => f.client.getPhone({ code: f.wechat.mintPhoneCode({ appid: DEMO_APPID, phoneNumber: "13800007777", countryCode: "86" }) }, as(me.access));
    expect((await phone()).purePhoneNumber).toBe("13800007777");
    await phone();
    expect((await refusal(phone())).reason).toBe("RATE_LIMITED");

    f.clock.advance(60_000);
    expect((await login()).registered).toBe(true);
    expect((await phone()).purePhoneNumber).toBe("13800007777");
  });
});
