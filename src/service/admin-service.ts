import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ActorKind, type AdminService, AppSchema, AuditEventSchema, SearchKey, SessionSchema } from "../../gen/identity/admin/v1/admin_pb.js";
import { UserStatus } from "../../gen/identity/v1/identity_pb.js";
import type { OperatorRole } from "../config/config.js";
import { shanghaiDay } from "../platforms/shanghai-time.js";
import { DAY_MS, identityKey, inviteKey, phoneKey, unionidKey, usernameKey, type AuditActorKind, type AuditQuery, type AuditRecord, type SessionRecord, type UserRecord } from "../store/store.js";
import { checkIdentityNamed } from "./account-lifecycle.js";
import { nicknameCheckOn } from "./content-check.js";
import { noteOf, type AuditedMethod } from "./audit.js";
import type { Caller } from "./caller.js";
import { apiError, fieldInvalid } from "./errors.js";
import type { ServiceContext } from "./service-context.js";
import { userToWire } from "./user-view.js";

// The operator side: internal callers only, each RPC allowed to one role and those above it.

/** Each role may do what the ones before it may. */
const RANK: Record<OperatorRole, number> = { viewer: 1, support: 2, admin: 3 };

/**
 * The user roles that make an operator of a user signing in with an access token. A Map, not an
 * object: a role named "constructor" or "__proto__" must find nothing, not Object.prototype's.
 */
export const OPERATOR_USER_ROLES: ReadonlyMap<string, OperatorRole> = new Map([
  ["identity-viewer", "viewer"],
  ["identity-support", "support"],
  ["identity-admin", "admin"],
]);

type AdminImpl = ServiceImpl<typeof AdminService>;

/** The role each RPC needs; a method added to the service without one does not compile. */
const NEEDS: Record<keyof AdminImpl, OperatorRole> = {
  searchUsers: "viewer",
  getUserDetail: "viewer",
  listAuditEvents: "viewer",
  getStats: "viewer",
  listApps: "viewer",
  revokeSessions: "support",
  setUserStatus: "support",
  unlinkIdentity: "support",
  unbindPhone: "support",
  deleteUser: "admin",
};

/** What the audit log records of operators: every change, and every look at a user. A caller refused for its role is recorded too. */
export const ADMIN_AUDITED: Partial<Record<keyof AdminImpl, AuditedMethod>> = {
  searchUsers: { type: "users.searched", failureReasons: ["ROLE_REQUIRED"] },
  getUserDetail: { type: "user.viewed", failureReasons: ["ROLE_REQUIRED"] },
  revokeSessions: { type: "sessions.revoked", failureReasons: ["ROLE_REQUIRED"] },
  setUserStatus: { type: "user.status_set", failureReasons: ["ROLE_REQUIRED"] },
  unlinkIdentity: { type: "identity.unlinked", failureReasons: ["ROLE_REQUIRED"] },
  unbindPhone: { type: "phone.unbound", failureReasons: ["ROLE_REQUIRED"] },
  deleteUser: { type: "user.deleted", factOnly: true, failureReasons: ["ROLE_REQUIRED"] },
};

const PAGE = { search: { default: 20, max: 100 }, audit: { default: 50, max: 500 } };
const SESSIONS_SHOWN = 100;
const MAX_STATS_DAYS = 90;
const DEFAULT_STATS_DAYS = 30;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const MAX_ID_CHARS = 128;

const ACTOR_KINDS: Record<AuditActorKind, ActorKind> = { user: ActorKind.USER, operator: ActorKind.OPERATOR, api_key: ActorKind.API_KEY, system: ActorKind.SYSTEM };

export function createAdminService({ apps, users, sessions, lifecycle, audit, activity, now, resolveApp, auditWriter }: ServiceContext, { authenticate, keyCallerOf }: Caller): AdminImpl {
  /**
   * Lets the call through if its caller has the role (or a higher one): an operator's x-api-key,
   * or an access token whose user has an operator role. The audit note then names the caller as
   * actor and nothing else yet: the user the call is about is the request's, not the caller's.
   */
  async function authorize(ctx: HandlerContext, method: keyof AdminImpl): Promise<void> {
    const needed = NEEDS[method];
    const key = keyCallerOf(ctx);
    let role = key?.role;
    if (!key) {
      const { user } = await authenticate(ctx);
      role = strongestRole(user!.roles);
      noteOf(ctx).actor = { kind: role ? "operator" : "user", id: user!.id };
    }
    const note = noteOf(ctx);
    delete note.subjectUserId;
    delete note.appKey;
    if (!role || RANK[role] < RANK[needed]) {
      const why = key && !key.role ? "this x-api-key is an internal service's, not an operator's" : `this needs the ${needed} role`;
      throw apiError("ROLE_REQUIRED", why, { role: needed });
    }
  }

  /** The user a request names, as the audit note's subject; USER_NOT_FOUND when there is none. */
  async function subject(ctx: HandlerContext, userId: string): Promise<UserRecord> {
    if (!userId) throw fieldInvalid("user_id", "required");
    // Bounded before it is written anywhere: the audit log is no place for a caller's megabyte.
    noteOf(ctx).subjectUserId = boundedId("user_id", userId).toLowerCase();
    const user = await users.get(userId);
    if (!user) throw apiError("USER_NOT_FOUND", "no user has this id");
    return user;
  }

  /** The operator's stated reason, kept in the audit log. */
  function reasonOf(ctx: HandlerContext, reason: string): void {
    if (!reason || reason.length > 200) throw fieldInvalid("reason", "1-200 characters, for the audit log");
    noteOf(ctx).details.reason = reason;
  }

  /** The unique keys a search value may be, by the kind asked for. */
  function searchKeys(query: string, key: SearchKey): string[] {
    // As stored: a number with its country code, or a mainland one without.
    const phones = query.startsWith("+") ? [phoneKey({ phoneNumber: query })] : [phoneKey({ phoneNumber: query }), phoneKey({ countryCode: "86", purePhoneNumber: query })];
    const byKind: Partial<Record<SearchKey, string[]>> = {
      [SearchKey.PHONE]: phones,
      [SearchKey.USERNAME]: [usernameKey(query)],
      [SearchKey.OPENID]: apps.map((a) => identityKey(a.platform, a.appid, query)),
      [SearchKey.UNIONID]: [unionidKey(query)],
      [SearchKey.INVITE_CODE]: [inviteKey(query)],
    };
    return key === SearchKey.UNSPECIFIED ? Object.values(byKind).flat() : (byKind[key] ?? []);
  }

  const impl: AdminImpl = {
    async searchUsers(req, ctx) {
      await authorize(ctx, "searchUsers");
      if (!req.query || req.query.length > MAX_ID_CHARS) throw fieldInvalid("query", `1-${MAX_ID_CHARS} characters`);
      const size = pageSize("page_size", req.pageSize, PAGE.search);
      const scope = pageScope({ query: req.query, key: req.key });
      const offset = req.pageToken ? readToken<{ offset: number }>(req.pageToken, scope).offset : 0;
      const found = new Map<string, UserRecord>();
      if (req.key === SearchKey.UNSPECIFIED || req.key === SearchKey.ID) {
        const byId = await users.get(req.query);
        if (byId) found.set(byId.id, byId);
      }
      for (const user of await users.findByKeys(searchKeys(req.query, req.key))) found.set(user.id, user);
      const sorted = [...found.values()].sort((a, b) => a.id.localeCompare(b.id));
      const page = sorted.slice(offset, offset + size);
      const note = noteOf(ctx);
      // Which person was looked up, without the value searched for (a phone number, say).
      if (sorted.length === 1) note.subjectUserId = sorted[0]!.id;
      Object.assign(note.details, { key: SearchKey[req.key], found: String(sorted.length) });
      const next = offset + size < sorted.length ? writeToken({ offset: offset + size }, scope) : "";
      return { users: page.map(userToWire), nextPageToken: next };
    },

    async getUserDetail(req, ctx) {
      await authorize(ctx, "getUserDetail");
      const user = await subject(ctx, req.userId);
      const stored = await sessions.listOfUser(user.id, SESSIONS_SHOWN);
      return { user: userToWire(user), sessions: stored.map(sessionToWire) };
    },

    async revokeSessions(req, ctx) {
      await authorize(ctx, "revokeSessions");
      const user = await subject(ctx, req.userId);
      reasonOf(ctx, req.reason);
      if (req.sessionIds.length > SESSIONS_SHOWN) throw fieldInvalid("session_ids", `at most ${SESSIONS_SHOWN}`);
      let revoked: number;
      if (req.sessionIds.length === 0) {
        revoked = await sessions.revokeAllOfUser(user.id, "operator");
      } else {
        const wanted = new Set(req.sessionIds.map((id) => id.toLowerCase()));
        const live = (await sessions.listOfUser(user.id, SESSIONS_SHOWN * 10)).filter((s) => !s.revokedAt && wanted.has(s.id));
        for (const session of live) await sessions.revoke(session.id, "operator");
        revoked = live.length;
      }
      noteOf(ctx).details.revoked = String(revoked);
      return { revokedCount: revoked };
    },

    async setUserStatus(req, ctx) {
      await authorize(ctx, "setUserStatus");
      const user = await subject(ctx, req.userId);
      reasonOf(ctx, req.reason);
      const status = req.status === UserStatus.ACTIVE ? "active" : req.status === UserStatus.DISABLED ? "disabled" : null;
      if (!status) throw fieldInvalid("status", "must be USER_STATUS_ACTIVE or USER_STATUS_DISABLED");
      noteOf(ctx).details.status = status;
      return { user: userToWire(await lifecycle.setStatus(user, status)) };
    },

    async unlinkIdentity(req, ctx) {
      await authorize(ctx, "unlinkIdentity");
      const user = await subject(ctx, req.userId);
      reasonOf(ctx, req.reason);
      checkIdentityNamed(req.platform, req.appid);
      Object.assign(noteOf(ctx).details, { platform: req.platform, appid: req.appid });
      return { user: userToWire(await lifecycle.unlinkIdentity(user.id, req.platform, req.appid, { anyStatus: true })) };
    },

    async unbindPhone(req, ctx) {
      await authorize(ctx, "unbindPhone");
      const user = await subject(ctx, req.userId);
      reasonOf(ctx, req.reason);
      return { user: userToWire(await lifecycle.unbindPhone(user.id, { anyStatus: true })) };
    },

    async deleteUser(req, ctx) {
      await authorize(ctx, "deleteUser");
      const user = await subject(ctx, req.userId);
      reasonOf(ctx, req.reason);
      await lifecycle.deleteUser(user);
      return {};
    },

    async listAuditEvents(req, ctx) {
      await authorize(ctx, "listAuditEvents");
      const size = pageSize("page_size", req.pageSize, PAGE.audit);
      const query: AuditQuery = {
        ...(req.userId ? { subjectUserId: boundedId("user_id", req.userId).toLowerCase() } : {}),
        ...(req.actorId ? { actorId: boundedId("actor_id", req.actorId) } : {}),
        ...(req.type ? { type: boundedId("type", req.type) } : {}),
        ...(req.startTime ? { from: dateOf("start_time", req.startTime) } : {}),
        ...(req.endTime ? { before: dateOf("end_time", req.endTime) } : {}),
      };
      const scope = pageScope({ ...query });
      const after = req.pageToken ? positionOf(readToken<{ time: number; id: string }>(req.pageToken, scope)) : undefined;
      // One more than the page: whether there is a next page is known without another query.
      const found = await audit.list(query, size + 1, after);
      const page = found.slice(0, size);
      const last = page.at(-1);
      const next = found.length > size && last ? writeToken({ time: last.time.getTime(), id: last.id }, scope) : "";
      return { events: page.map(auditToWire), nextPageToken: next };
    },

    async getStats(req, ctx) {
      await authorize(ctx, "getStats");
      const endDay = req.endDate ? dayOf("end_date", req.endDate) : shanghaiDay(now());
      const startDay = req.startDate ? dayOf("start_date", req.startDate) : addDays(endDay, 1 - DEFAULT_STATS_DAYS);
      const days = (Date.parse(endDay) - Date.parse(startDay)) / DAY_MS + 1;
      if (days < 1) throw fieldInvalid("start_date", "must not be after end_date");
      if (days > MAX_STATS_DAYS) throw fieldInvalid("start_date", `at most ${MAX_STATS_DAYS} days before end_date`);
      const shown = req.appId ? [resolveApp(req.appId)] : apps;
      const counts = new Map((await activity.daily(startDay, endDay)).map((c) => [`${c.day}|${c.appKey}`, c]));
      const range = Array.from({ length: days }, (_, i) => addDays(startDay, i));
      return {
        totalUsers: BigInt(await users.count()),
        apps: await Promise.all(
          shown.map(async (app) => ({
            appId: app.id,
            totalUsers: BigInt(await users.countWithIdentityOf(app.platform, app.appid)),
            days: range.map((date) => {
              const count = counts.get(`${date}|${app.id}`);
              return { date, newUsers: count?.registered ?? 0, activeUsers: count?.active ?? 0 };
            }),
          })),
        ),
      };
    },

    async listApps(_req, ctx) {
      await authorize(ctx, "listApps");
      // Field by field: a secret or key added to the config later cannot slip out with a spread.
      const listed = apps.map((app) =>
        create(AppSchema, {
          id: app.id,
          platform: app.platform,
          appid: app.appid,
          registration: app.registration,
          default: app.default ?? false,
          legacyId: app.legacyId ?? 0,
          defaultRoles: app.defaultRoles,
          nicknameCheck: nicknameCheckOn(app),
        }),
      );
      return { apps: listed };
    },
  };
  return auditWriter.audited(impl, ADMIN_AUDITED);
}

/** The highest operator role among a user's roles. */
export function strongestRole(roles: string[]): OperatorRole | undefined {
  let best: OperatorRole | undefined;
  for (const role of roles) {
    const operator = OPERATOR_USER_ROLES.get(role);
    if (operator && (!best || RANK[operator] > RANK[best])) best = operator;
  }
  return best;
}

function pageSize(field: string, requested: number, { default: fallback, max }: { default: number; max: number }): number {
  if (requested < 0 || requested > max) throw fieldInvalid(field, `0-${max} (0: ${fallback})`);
  return requested || fallback;
}

/** A digest of the filters a page token belongs to: a token used with other filters is refused. */
function pageScope(filters: object): string {
  return createHash("sha256").update(JSON.stringify(filters)).digest("base64url").slice(0, 16);
}

function writeToken(position: object, scope: string): string {
  return Buffer.from(JSON.stringify({ ...position, scope })).toString("base64url");
}

function readToken<T>(token: string, scope: string): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token.slice(0, 512), "base64url").toString());
  } catch {
    parsed = null;
  }
  if (typeof parsed !== "object" || parsed === null || (parsed as { scope?: unknown }).scope !== scope) {
    throw fieldInvalid("page_token", "not a next_page_token of this request's filters");
  }
  return parsed as T;
}

function positionOf(token: { time: number; id: string }) {
  if (typeof token.time !== "number" || typeof token.id !== "string" || !/^[0-9a-f]{24}$/.test(token.id)) {
    throw fieldInvalid("page_token", "not a next_page_token of this request's filters");
  }
  return { time: new Date(token.time), id: token.id };
}

function boundedId(field: string, value: string): string {
  if (value.length > MAX_ID_CHARS) throw fieldInvalid(field, `at most ${MAX_ID_CHARS} characters`);
  return value;
}

function dateOf(field: string, timestamp: Timestamp): Date {
  const date = timestampDate(timestamp);
  if (Number.isNaN(date.getTime())) throw fieldInvalid(field, "not a valid time");
  return date;
}

function dayOf(field: string, value: string): string {
  if (!DATE.test(value) || Number.isNaN(Date.parse(value)) || new Date(value).toISOString().slice(0, 10) !== value) throw fieldInvalid(field, "must be a date YYYY-MM-DD");
  return value;
}

function addDays(day: string, days: number): string {
  return new Date(Date.parse(day) + days * DAY_MS).toISOString().slice(0, 10);
}

function sessionToWire(session: SessionRecord) {
  return create(SessionSchema, {
    id: session.id,
    appId: session.appKey,
    platform: session.platform,
    platformAppid: session.appid,
    openid: session.openid,
    createTime: timestampFromDate(session.createdAt),
    lastRefreshTime: timestampFromDate(session.rotatedAt),
    expireTime: timestampFromDate(session.expiresAt),
    ...(session.revokedAt ? { revokeTime: timestampFromDate(session.revokedAt) } : {}),
    revokeReason: session.revokeReason ?? "",
    clientAddress: session.clientAddress ?? "",
  });
}

function auditToWire(event: AuditRecord) {
  return create(AuditEventSchema, {
    id: event.id,
    time: timestampFromDate(event.time),
    type: event.type,
    actor: { kind: ACTOR_KINDS[event.actor.kind], id: event.actor.id },
    userId: event.subjectUserId ?? "",
    appId: event.appKey ?? "",
    clientAddress: event.address ?? "",
    outcome: event.outcome,
    details: event.details ?? {},
  });
}
