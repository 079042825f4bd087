// AdminService on the real listeners: every RPC against every kind of caller over gRPC (h2c) and
// Connect JSON (HTTP/1.1), then what operators do to users (search, detail, revoke, disable,
// delete) and what the audit log says of it.
import { createHash } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { ActorKind, AdminService, SearchKey } from "../gen/identity/admin/v1/admin_pb.js";
import { UserStatus } from "../gen/identity/v1/identity_pb.js";
import { DEMO_APPID, login, reasonOf, rpc, simPost, startHarness, type Harness } from "./support/harness.js";

const KEYS = { service: "svc-key-0123456789abcdef", viewer: "viewer-key-0123456789abc", support: "support-key-0123456789ab", admin: "admin-key-0123456789abcd" };
const sha = (key: string) => createHash("sha256").update(key).digest("hex");
const NO_SUCH_USER = "0123456789abcdef01234567";
const CLUB_APPID = "wx0000000000000004";

const config = {
  apps: [
    { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "demo-secret" },
    { id: "club", platform: "wechat-miniprogram", appid: CLUB_APPID, secret: "club-secret", registration: "explicit" },
  ],
  store: "memory",
  internalCallers: [
    { name: "gateway", keySha256: sha(KEYS.service) },
    { name: "ops-viewer", keySha256: sha(KEYS.viewer), role: "viewer" },
    { name: "ops-support", keySha256: sha(KEYS.support), role: "support" },
    { name: "ops-admin", keySha256: sha(KEYS.admin), role: "admin" },
  ],
};

let h: Harness;
let json: Client<typeof AdminService>;
let grpc: Client<typeof AdminService>;
const asKey = (key: string) => ({ headers: { "x-api-key": key } });
const asBearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/** The error's code and ErrorInfo reason, or "ok". */
async function outcomeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "ok";
  } catch (e) {
    const error = ConnectError.from(e);
    return `${Code[error.code]} ${error.findDetails(ErrorInfoSchema)[0]?.reason ?? ""}`.trim();
  }
}

/** Gives the user roles through the internal service's key, the documented way to make operators. */
async function grantRoles(userId: string, roles: string[]) {
  const res = await rpc(h.httpUrl, "UpdateUser", { user: { id: userId, roles }, updateMask: "roles" }, undefined, { "x-api-key": KEYS.service });
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  h = await startHarness(config);
  const transports: Transport[] = [createConnectTransport({ baseUrl: h.httpUrl, httpVersion: "1.1", useBinaryFormat: false }), createGrpcTransport({ baseUrl: h.grpcUrl })];
  [json, grpc] = transports.map((t) => createClient(AdminService, t)) as [Client<typeof AdminService>, Client<typeof AdminService>];
});

afterAll(async () => {
  await h?.close();
});

describe("roles, enforced per RPC", () => {
  // Reads answer; changes name a user that does not exist, so passing the role check shows as USER_NOT_FOUND.
  const NOT_FOUND = "NotFound USER_NOT_FOUND";
  const calls: [string, "viewer" | "support" | "admin", (c: Client<typeof AdminService>, o: object) => Promise<unknown>, string][] = [
    ["SearchUsers", "viewer", (c, o) => c.searchUsers({ query: NO_SUCH_USER }, o), "ok"],
    ["GetUserDetail", "viewer", (c, o) => c.getUserDetail({ userId: NO_SUCH_USER }, o), NOT_FOUND],
    ["ListAuditEvents", "viewer", (c, o) => c.listAuditEvents({ pageSize: 1 }, o), "ok"],
    ["GetStats", "viewer", (c, o) => c.getStats({}, o), "ok"],
    ["ListApps", "viewer", (c, o) => c.listApps({}, o), "ok"],
    ["RevokeSessions", "support", (c, o) => c.revokeSessions({ userId: NO_SUCH_USER, reason: "test" }, o), NOT_FOUND],
    ["SetUserStatus", "support", (c, o) => c.setUserStatus({ userId: NO_SUCH_USER, status: UserStatus.DISABLED, reason: "test" }, o), NOT_FOUND],
    ["UnlinkIdentity", "support", (c, o) => c.unlinkIdentity({ userId: NO_SUCH_USER, platform: "wechat-miniprogram", appid: DEMO_APPID, reason: "test" }, o), NOT_FOUND],
    ["UnbindPhone", "support", (c, o) => c.unbindPhone({ userId: NO_SUCH_USER, reason: "test" }, o), NOT_FOUND],
    ["DeleteUser", "admin", (c, o) => c.deleteUser({ userId: NO_SUCH_USER, reason: "test" }, o), NOT_FOUND],
  ];
  const rank = { none: 0, viewer: 1, support: 2, admin: 3 } as const;
  type Who = { name: string; rank: number; options: () => object; refused: string };
  const whos: Who[] = [];

  beforeAll(async () => {
    const endUser = await login(h);
    const viewer = await login(h);
    await grantRoles(viewer.body.user.id, ["member", "identity-viewer"]);
    const admin = await login(h);
    await grantRoles(admin.body.user.id, ["identity-admin"]);
    const denied = "PermissionDenied ROLE_REQUIRED";
    whos.push(
      { name: "no credentials", rank: rank.none, options: () => ({}), refused: "Unauthenticated TOKEN_MISSING" },
      { name: "an end user's token", rank: rank.none, options: () => asBearer(endUser.access), refused: denied },
      { name: "an internal service's key (no role)", rank: rank.none, options: () => asKey(KEYS.service), refused: denied },
      { name: "a viewer key", rank: rank.viewer, options: () => asKey(KEYS.viewer), refused: denied },
      { name: "a support key", rank: rank.support, options: () => asKey(KEYS.support), refused: denied },
      { name: "an admin key", rank: rank.admin, options: () => asKey(KEYS.admin), refused: denied },
      { name: "a viewer operator's token", rank: rank.viewer, options: () => asBearer(viewer.access), refused: denied },
      { name: "an admin operator's token", rank: rank.admin, options: () => asBearer(admin.access), refused: denied },
    );
  });

  for (const [transport, client] of [
    ["gRPC", () => grpc],
    ["Connect JSON", () => json],
  ] as const) {
    it.each(calls)(`${transport}: %s needs %s`, async (_name, needed, call, allowed) => {
      const table = [];
      for (const who of whos) table.push([who.name, await outcomeOf(call(client(), who.options()))]);
      expect(table).toEqual(whos.map((who) => [who.name, who.rank >= rank[needed] ? allowed : who.refused]));
    });
  }

  it("a user whose roles are Object.prototype's names is no operator", async () => {
    const user = await login(h);
    await grantRoles(user.body.user.id, ["constructor", "toString", "hasOwnProperty", "valueOf"]);
    expect(await outcomeOf(json.listApps({}, asBearer(user.access)))).toBe("PermissionDenied ROLE_REQUIRED");
    expect(await outcomeOf(json.deleteUser({ userId: NO_SUCH_USER, reason: "x" }, asBearer(user.access)))).toBe("PermissionDenied ROLE_REQUIRED");
  });

  it("names the role needed in the refusal", async () => {
    const error = ConnectError.from(await grpc.deleteUser({ userId: NO_SUCH_USER, reason: "x" }, asKey(KEYS.viewer)).catch((e) => e));
    expect(error.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({ role: "admin" });
  });

  it("an operator's key is refused on IdentityService: it may only do what its role allows", async () => {
    const res = await rpc(h.httpUrl, "GetUser", { userId: NO_SUCH_USER }, undefined, { "x-api-key": KEYS.admin });
    expect([res.status, reasonOf(res)]).toEqual([403, "PERMISSION_DENIED"]);
  });
});

describe("operating on users", () => {
  const admin = asKey(KEYS.admin);

  it("finds a user by each of its keys, and by no other value", async () => {
    const unionid = `union-${Date.now()}`;
    const me = await login(h, { unionid });
    const userId: string = me.body.user.id;
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13912345678" });
    expect((await rpc(h.httpUrl, "BindPhone", { code }, me.access)).status).toBe(200);
    const username = `alice${Date.now()}`;
    expect((await rpc(h.httpUrl, "SetPassword", { username, newPassword: "correct horse battery" }, me.access)).status).toBe(200);
    const inviteCode: string = me.body.user.inviteCode;
    const byKey: [SearchKey, string][] = [
      [SearchKey.ID, userId],
      [SearchKey.PHONE, "13912345678"],
      [SearchKey.PHONE, "+8613912345678"],
      [SearchKey.USERNAME, username.toUpperCase()],
      [SearchKey.OPENID, me.openid],
      [SearchKey.UNIONID, unionid],
      [SearchKey.INVITE_CODE, inviteCode.toLowerCase()],
      [SearchKey.UNSPECIFIED, me.openid],
    ];
    for (const [key, query] of byKey) {
      const found = await json.searchUsers({ query, key }, admin);
      expect([SearchKey[key], found.users.map((u) => u.id)]).toEqual([SearchKey[key], [userId]]);
    }
    // Exact keys only: a prefix, or a value of another kind, finds no one.
    expect((await json.searchUsers({ query: me.openid.slice(0, -1) }, admin)).users).toEqual([]);
    expect((await json.searchUsers({ query: me.openid, key: SearchKey.USERNAME }, admin)).users).toEqual([]);
    expect(await outcomeOf(json.searchUsers({ query: "" }, admin))).toBe("InvalidArgument FIELD_INVALID");
    const [searched] = (await json.listAuditEvents({ userId, type: "users.searched" }, admin)).events;
    expect(searched?.details).toEqual({ key: "UNSPECIFIED", found: "1" });
  });

  it("shows a user's sessions with app, platform, times and client address", async () => {
    const me = await login(h);
    await login(h, { openid: me.openid });
    expect(await outcomeOf(json.getUserDetail({ userId: "f".repeat(200) }, admin))).toBe("InvalidArgument FIELD_INVALID");
    const detail = await json.getUserDetail({ userId: me.body.user.id }, admin);
    expect(detail.user?.identities.map((i) => i.openid)).toEqual([me.openid]);
    expect(detail.sessions).toHaveLength(2);
    for (const session of detail.sessions) {
      expect(session).toMatchObject({ appId: "demo", platform: "wechat-miniprogram", platformAppid: DEMO_APPID, openid: me.openid, clientAddress: "127.0.0.1", revokeReason: "" });
      expect(session.createTime && session.lastRefreshTime && session.expireTime).toBeTruthy();
    }
  });

  it("RevokeSessions ends them at once: the access token is TOKEN_REVOKED and Refresh fails", async () => {
    const me = await login(h);
    const other = await login(h, { openid: me.openid });
    const [newest] = (await json.getUserDetail({ userId: me.body.user.id }, admin)).sessions;
    expect((await json.revokeSessions({ userId: me.body.user.id, sessionIds: [newest!.id], reason: "complaint 1" }, admin)).revokedCount).toBe(1);
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, other.access))).toBe("TOKEN_REVOKED");
    expect((await rpc(h.httpUrl, "GetUser", {}, me.access)).status).toBe(200);
    expect((await grpc.revokeSessions({ userId: me.body.user.id, reason: "complaint 1" }, admin)).revokedCount).toBe(1);
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, me.access))).toBe("TOKEN_REVOKED");
    expect(reasonOf(await rpc(h.httpUrl, "Refresh", { refreshToken: me.refresh }))).toBe("TOKEN_REVOKED");
    const sessions = (await json.getUserDetail({ userId: me.body.user.id }, admin)).sessions;
    expect(sessions.map((s) => s.revokeReason)).toEqual(["operator", "operator"]);
  });

  it("SetUserStatus disabled: Refresh fails with ACCOUNT_DISABLED; enabled again, the user signs in", async () => {
    const me = await login(h);
    const userId: string = me.body.user.id;
    expect(await outcomeOf(json.setUserStatus({ userId, status: UserStatus.DISABLED, reason: "" }, admin))).toBe("InvalidArgument FIELD_INVALID");
    const disabled = await json.setUserStatus({ userId, status: UserStatus.DISABLED, reason: "fraud report 7" }, asKey(KEYS.support));
    expect(disabled.user?.status).toBe(UserStatus.DISABLED);
    expect(reasonOf(await rpc(h.httpUrl, "Refresh", { refreshToken: me.refresh }))).toBe("ACCOUNT_DISABLED");
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, me.access))).toBe("ACCOUNT_DISABLED");
    await json.setUserStatus({ userId, status: UserStatus.ACTIVE, reason: "cleared" }, admin);
    // Enabled again, the tokens from before stay dead, as verifiers watching the feed hold them.
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, me.access))).toBe("TOKEN_REVOKED");
    expect(reasonOf(await rpc(h.httpUrl, "Refresh", { refreshToken: me.refresh }))).toBe("TOKEN_REVOKED");
    const again = await login(h, { openid: me.openid });
    expect(again.body.user.id).toBe(userId);
  });

  it("SetUserStatus acts on the stored user whatever the case of the id it is given", async () => {
    const me = await login(h);
    const userId: string = me.body.user.id.toUpperCase();
    await json.setUserStatus({ userId, status: UserStatus.DISABLED, reason: "fraud report 8" }, admin);
    await json.setUserStatus({ userId, status: UserStatus.ACTIVE, reason: "cleared" }, admin);
    // The sessions are found by the stored id: an id as typed would have matched none of them.
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, me.access))).toBe("TOKEN_REVOKED");
  });

  it("DeleteUser: old tokens refused, the same WeChat user then signs in as a new user, the audit log keeps only the fact", async () => {
    const me = await login(h);
    const userId: string = me.body.user.id;
    await json.deleteUser({ userId, reason: "PIPL request 42" }, admin);
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, me.access))).toBe("TOKEN_REVOKED");
    expect(reasonOf(await rpc(h.httpUrl, "Refresh", { refreshToken: me.refresh }))).toBe("TOKEN_INVALID");
    expect(await outcomeOf(json.getUserDetail({ userId }, admin))).toBe("NotFound USER_NOT_FOUND");
    const reborn = await login(h, { openid: me.openid });
    expect(reborn.body.firstLogin).toBe(true);
    expect(reborn.body.user.id).not.toBe(userId);
    // The operator's look at the deleted user is an event of its own, after the deletion.
    const [viewed, ...events] = (await json.listAuditEvents({ userId }, admin)).events;
    expect([viewed?.type, viewed?.outcome]).toEqual(["user.viewed", "USER_NOT_FOUND"]);
    expect(events.map((e) => e.type)).toEqual(["user.deleted", "login"]);
    for (const event of events) {
      expect(event.clientAddress).toBe("");
      expect(event.details).toEqual({});
    }
    expect(events[0]?.actor).toMatchObject({ kind: ActorKind.API_KEY, id: "ops-admin" });
  });

  it("ListApps lists the apps and nothing secret", async () => {
    const res = await fetch(`${h.httpUrl}/identity.admin.v1.AdminService/ListApps`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": KEYS.viewer }, body: "{}" });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).not.toContain("demo-secret");
    const [app] = JSON.parse(text).apps;
    expect(Object.keys(app).sort()).toEqual(["appid", "default", "defaultRoles", "id", "legacyId", "nicknameCheck", "platform", "registration"]);
    expect(app).toMatchObject({ id: "demo", appid: DEMO_APPID, nicknameCheck: true });
  });

  it("GetStats counts users per app: in total, new and active today", async () => {
    const before = await json.getStats({}, admin);
    const me = await login(h);
    await rpc(h.httpUrl, "Refresh", { refreshToken: me.refresh });
    await login(h, { openid: me.openid });
    const after = await json.getStats({}, admin);
    const today = (s: typeof after) => s.apps[0]!.days.at(-1)!;
    expect(after.apps[0]!.days).toHaveLength(30);
    expect(after.totalUsers - before.totalUsers).toBe(1n);
    expect(after.apps[0]!.totalUsers - before.apps[0]!.totalUsers).toBe(1n);
    expect(today(after).newUsers - today(before).newUsers).toBe(1);
    expect(today(after).activeUsers - today(before).activeUsers).toBe(1);
    expect(await outcomeOf(json.getStats({ startDate: "2026-01-01", endDate: "2026-06-01" }, admin))).toBe("InvalidArgument FIELD_INVALID");
    expect(await outcomeOf(json.getStats({ endDate: "2026-02-30" }, admin))).toBe("InvalidArgument FIELD_INVALID");
    expect(await outcomeOf(json.getStats({ appId: "nope" }, admin))).toBe("NotFound APP_NOT_FOUND");
  });
});

describe("the audit log", () => {
  const viewer = asKey(KEYS.viewer);

  it("records sign-ins, changes and operators' actions, queried by user, actor, type and time, page by page", async () => {
    const started = Date.now();
    const me = await login(h);
    const userId: string = me.body.user.id;
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13700000001" });
    await rpc(h.httpUrl, "BindPhone", { code }, me.access);
    await json.unbindPhone({ userId, reason: "wrong number bound" }, asKey(KEYS.support));
    await rpc(h.httpUrl, "Logout", {}, me.access);

    const mine = (await json.listAuditEvents({ userId }, viewer)).events;
    expect(mine.map((e) => [e.type, e.actor?.kind, e.outcome])).toEqual([
      ["logout", ActorKind.USER, "ok"],
      ["phone.unbound", ActorKind.API_KEY, "ok"],
      ["phone.bound", ActorKind.USER, "ok"],
      ["login", ActorKind.USER, "ok"],
    ]);
    expect(mine[3]).toMatchObject({ appId: "demo", clientAddress: "127.0.0.1", details: { method: "wechat-miniprogram" } });
    expect(mine[1]?.details).toEqual({ reason: "wrong number bound" });

    const bySupport = (await json.listAuditEvents({ actorId: "ops-support", type: "phone.unbound", startTime: timestampFromMs(started) }, viewer)).events;
    expect(bySupport.map((e) => e.userId)).toEqual([userId]);
    expect((await json.listAuditEvents({ userId, endTime: timestampFromMs(started) }, viewer)).events).toEqual([]);

    const paged: string[] = [];
    let pageToken = "";
    do {
      const page = await grpc.listAuditEvents({ userId, pageSize: 1, pageToken }, viewer);
      paged.push(...page.events.map((e) => e.type));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(paged).toEqual(mine.map((e) => e.type));
    expect(await outcomeOf(json.listAuditEvents({ userId: NO_SUCH_USER, pageToken: (await json.listAuditEvents({ userId, pageSize: 1 }, viewer)).nextPageToken }, viewer))).toBe(
      "InvalidArgument FIELD_INVALID",
    );
  });

  it("records a wrong password against the account, and a reused refresh token as the service's doing", async () => {
    const me = await login(h);
    const userId: string = me.body.user.id;
    const username = `bob${Date.now()}`;
    await rpc(h.httpUrl, "SetPassword", { username, newPassword: "correct horse battery" }, me.access);
    const wrong = await rpc(h.httpUrl, "Login", { appId: "demo", password: { username, password: "not the password" } });
    expect(reasonOf(wrong)).toBe("BAD_CREDENTIALS");
    // Two rotations on: the first token is past the grace its child's parallel requests get.
    const child = (await rpc(h.httpUrl, "Refresh", { refreshToken: me.refresh })).json.tokens.refreshToken;
    expect((await rpc(h.httpUrl, "Refresh", { refreshToken: child })).status).toBe(200);
    expect(reasonOf(await rpc(h.httpUrl, "Refresh", { refreshToken: me.refresh }))).toBe("REFRESH_TOKEN_REUSED");
    const events = (await json.listAuditEvents({ userId }, viewer)).events;
    expect(events.map((e) => [e.type, e.actor?.kind, e.outcome])).toEqual([
      ["refresh_token.reused", ActorKind.SYSTEM, "REFRESH_TOKEN_REUSED"],
      ["login", ActorKind.USER, "BAD_CREDENTIALS"],
      ["password.set", ActorKind.USER, "ok"],
      ["login", ActorKind.USER, "ok"],
    ]);
    expect(JSON.stringify(events.map((e) => e.details))).not.toContain("not the password");
  });

  it("records a registration that BindPhone finishes for a pending session, and counts the user new", async () => {
    const newToday = async () => (await json.getStats({ appId: "club" }, viewer)).apps[0]!.days.at(-1)!.newUsers;
    const before = await newToday();
    const pending = await login(h, { appid: CLUB_APPID }, "club");
    expect(pending.body.registered).toBe(false);
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: CLUB_APPID, phoneNumber: "13700000009" });
    const bound = await rpc(h.httpUrl, "BindPhone", { code }, pending.access);
    const userId: string = bound.json.user.id;
    expect((await json.listAuditEvents({ userId }, viewer)).events.map((e) => [e.type, e.appId, e.outcome])).toEqual([["phone.bound", "club", "ok"]]);
    expect((await newToday()) - before).toBe(1);
  });

  it("records a caller refused for its role", async () => {
    // Earlier tests were refused the same way: this call's own event is the one more than before.
    const refusals = async () => (await json.listAuditEvents({ actorId: "ops-viewer", type: "user.deleted", pageSize: 500 }, viewer)).events;
    const before = (await refusals()).length;
    expect(await outcomeOf(grpc.deleteUser({ userId: NO_SUCH_USER, reason: "x" }, viewer))).toBe("PermissionDenied ROLE_REQUIRED");
    const after = await refusals();
    expect(after).toHaveLength(before + 1);
    const [refused] = after;
    expect(refused).toMatchObject({ outcome: "ROLE_REQUIRED", actor: { kind: ActorKind.API_KEY, id: "ops-viewer" } });
  });
});

it("reflection lists AdminService", async () => {
  const { ServerReflection } = await import("../gen/grpc/reflection/v1/reflection_pb.js");
  const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl: h.grpcUrl }));
  const services: string[] = [];
  for await (const res of reflection.serverReflectionInfo(
    (async function* () {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
    })(),
  )) {
    if (res.messageResponse.case === "listServicesResponse") services.push(...res.messageResponse.value.service.map((s) => s.name));
    break;
  }
  expect(services).toContain("identity.admin.v1.AdminService");
});
