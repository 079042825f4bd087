import { ObjectId } from "mongodb";

// The storage port. Two implementations keep the same contract: MemoryStore (embedded default)
// and MongoStore (official driver). The service layer is the only caller.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type Gender = "male" | "female";
export type UserStatus = "active" | "disabled";

export interface IdentityRecord {
  platform: string;
  appid: string;
  openid: string;
  unionid?: string;
  createdAt: Date;
}

export interface UserRecord {
  /** Hex of the stored ObjectId. */
  id: string;
  /** The stored `__v`; +1 on every write. */
  version: number;
  nickname?: string;
  avatarUrl?: string;
  gender?: Gender;
  /** YYYY-MM-DD. */
  birthday?: string;
  phoneNumber?: string;
  purePhoneNumber?: string;
  countryCode?: string;
  email?: string;
  username?: string;
  passwordHash?: string;
  roles: string[];
  status: UserStatus;
  inviteCode?: string;
  inviterId?: string;
  /** The open-platform id shared by the user's identities (WeChat unionid). */
  unionid?: string;
  identities: IdentityRecord[];
  attributes: JsonObject;
  createdAt: Date;
  updatedAt: Date;
}

export type UserDraft = Omit<UserRecord, "id" | "version">;

export interface SessionRecord {
  /** Hex of the stored ObjectId; the access token's `sid`. */
  id: string;
  /** The configured app key the session was opened for (stored as `appId`); not the platform's `appid`. */
  appKey: string;
  /** Null while the session is pending (signed in at the platform, not yet a user). */
  userId: string | null;
  platform: string;
  appid: string;
  openid: string;
  unionid?: string;
  /** The platform session key (WeChat session_key). Never leaves the server. */
  sessionKey?: string;
  /** Hash of the current refresh token; null for a pending session. */
  refreshHash: string | null;
  /** Hashes of spent refresh tokens, oldest first, at most SPENT_HASHES_KEPT. */
  spentRefreshHashes: string[];
  /** When the current refresh token was issued. */
  rotatedAt: Date;
  /** Per-session secret from which a rotated refresh token is derived (see auth/refresh-token.ts). */
  chainKey: string;
  createdAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revokeReason?: string;
  /** The client address the session was opened from, for operators. */
  clientAddress?: string;
}

/** `id` may be chosen by the caller (see newObjectId) so a token can name the session before it is stored. */
export type SessionDraft = Omit<SessionRecord, "id"> & { id?: string };

export interface Rotation {
  /** The refresh hash the session must still have. */
  expectedHash: string;
  nextHash: string;
  rotatedAt: Date;
  expiresAt: Date;
}

/** How many spent refresh-token hashes a session remembers for reuse detection. */
export const SPENT_HASHES_KEPT = 10;

export interface StoreOptions {
  /**
   * The clock for the times a store writes (revocations, promotions) and the expiry its reads
   * check; Date.now by default. MongoDB's TTL deletion still runs on the server's clock.
   */
  now?: () => number;
  /** How long audit events are kept (a TTL index on MongoDB); AUDIT_RETENTION_DAYS by default. */
  auditRetentionDays?: number;
}

export const AUDIT_RETENTION_DAYS = 180;

export interface UserStore {
  insert(draft: UserDraft): Promise<UserRecord>;
  /** Null when no user has the id (including ids that are not ObjectId hex). */
  get(id: string): Promise<UserRecord | null>;
  /** The distinct users holding any of the unique keys (see uniqueKeysOf). */
  findByKeys(keys: string[]): Promise<UserRecord[]>;
  /**
   * Writes the record if the stored version is still `next.version`; the stored and returned
   * record has version + 1. VersionConflictError otherwise, NotFoundError when the user is gone,
   * DuplicateKeyError when a unique key belongs to another user.
   */
  replace(next: UserRecord): Promise<UserRecord>;
  /** Deletes the user, freeing every unique key it held; false when there was none. */
  remove(id: string): Promise<boolean>;
  /** How many users are stored. */
  count(): Promise<number>;
  /** How many users hold an identity of this platform app (by the identity keys' prefix). */
  countWithIdentityOf(platform: string, appid: string): Promise<number>;
}

export interface SessionStore {
  insert(draft: SessionDraft): Promise<SessionRecord>;
  /** The session as stored, expired or revoked ones included; null when unknown. */
  get(id: string): Promise<SessionRecord | null>;
  /**
   * Compare-and-set of the refresh hash: succeeds only if the session is not revoked and still
   * has `expectedHash`, which moves to the end of spentRefreshHashes. Returns the updated
   * session, or null when the compare failed.
   */
  rotate(id: string, rotation: Rotation): Promise<SessionRecord | null>;
  /** Turns a pending session into a user's session with its first refresh token. */
  promote(id: string, userId: string, refreshHash: string, expiresAt: Date): Promise<SessionRecord | null>;
  /** Marks the session revoked (idempotent). */
  revoke(id: string, reason: string): Promise<void>;
  /**
   * Revokes every live session of the user; returns how many. `beforeRevoking` is told their ids
   * first and the sessions stay live if it rejects (so a revocation event can be written first).
   */
  revokeAllForUser(userId: string, reason: string, beforeRevoking?: BeforeRevoking): Promise<number>;
  /**
   * Revokes the user's live sessions (unrevoked, expiring after `now`) beyond the `keep` newest by
   * createdAt; returns how many. `beforeRevoking` as for revokeAllForUser.
   */
  revokeOldest(userId: string, keep: number, now: Date, reason: string, beforeRevoking?: BeforeRevoking): Promise<number>;
  /** The user's stored sessions (live, revoked and not yet expired-and-dropped), newest first by createdAt, at most `limit`. */
  listForUser(userId: string, limit: number): Promise<SessionRecord[]>;
  /** Deletes every stored session of the user (its account is deleted); returns how many. */
  removeForUser(userId: string): Promise<number>;
}

/** Told the ids of the sessions about to be revoked; a rejection leaves them live. */
export type BeforeRevoking = (sessionIds: string[]) => Promise<void>;

/** Why tokens ended early, as the revocation feed tells it. */
export type RevocationReason = "logout" | "logout_all" | "refresh_token_reused" | "session_limit" | "user_disabled" | "session_mismatch" | "operator" | "user_deleted" | "identity_unlinked";

/** One session's tokens, or every token of a user issued at or before the event's time. */
export type RevocationTarget = { sessionId: string } | { userId: string };

export interface RevocationDraft {
  target: RevocationTarget;
  reason: RevocationReason;
}

export interface RevocationRecord extends RevocationDraft {
  /** Unique per event (ObjectId hex): tells apart events of the same millisecond. */
  id: string;
  /** The appender's clock; the feed orders by it (then id) and resumes from it. */
  revokedAt: Date;
  expiresAt: Date;
}

/**
 * The revocation feed's log: appended when tokens end early, read back in order by every
 * instance. Kept until `expiresAt` (at least an access token's lifetime).
 */
export interface RevocationStore {
  /** Appends the events, all stamped with the store's now. */
  append(drafts: RevocationDraft[], expiresAt: Date): Promise<void>;
  /**
   * The live (unexpired) events with revokedAt after `after`, oldest first by revokedAt then id,
   * at most `limit`, starting past (`after`, `afterId`) when `afterId` is given (paging).
   */
  since(after: Date, limit: number, afterId?: string): Promise<RevocationRecord[]>;
  /**
   * Calls `onAppend` whenever any instance appends, until closed; `onLost` if that stops working.
   * Resolves to null where the store cannot tell (then the feed polls only). Optional.
   */
  follow?(onAppend: () => void, onLost: (err: unknown) => void): Promise<{ close(): Promise<void> } | null>;
}

/**
 * Short-lived answers keyed by a hash of a one-time code (a wx.login or phone code), so a client
 * retrying the same request inside the code's life gets the same answer instead of a spent code.
 */
export interface ReplayStore {
  /**
   * Stores `value` under `key` unless a live (unexpired) entry exists; returns what is stored
   * after the call and whether it was this call that stored it.
   */
  remember(key: string, value: JsonObject, expiresAt: Date): Promise<{ value: JsonObject; created: boolean }>;
  /** The live entry, or null (missing or expired). */
  recall(key: string): Promise<JsonObject | null>;
}

/** A platform access token shared by every instance, and the lease that lets one of them refresh it. */
export interface PlatformCredential {
  /** The platform appid. */
  appid: string;
  accessToken: string | null;
  expiresAt: Date | null;
  leaseOwner: string | null;
  leaseUntil: Date | null;
}

export interface CredentialStore {
  get(appid: string): Promise<PlatformCredential | null>;
  /**
   * Takes the refresh lease for `owner` until `until` if nobody holds it or it has lapsed (by `now`)
   * or `owner` holds it already; true when `owner` holds it after the call. Creates the record.
   */
  acquireLease(appid: string, owner: string, until: Date, now: Date): Promise<boolean>;
  /**
   * Stores a fresh token, and frees the lease if `owner` still holds it (a refresher whose lease
   * lapsed must not free the next one's).
   */
  saveToken(appid: string, owner: string, accessToken: string, expiresAt: Date): Promise<void>;
  /** Marks the stored token expired only if it is still `accessToken` (compare-and-expire); true if it was. */
  expireToken(appid: string, accessToken: string): Promise<boolean>;
}

export type AuditActorKind = "user" | "operator" | "api_key" | "system";

export interface AuditActor {
  kind: AuditActorKind;
  /** A user id, an API key's configured name, or "identity" for the system. */
  id: string;
}

export interface AuditDraft {
  /** What happened, e.g. "login", "user.deleted", "admin.status_set". */
  type: string;
  actor: AuditActor;
  /** The user it is about, when one is known. */
  subjectUserId?: string;
  /** The configured app key. */
  appKey?: string;
  /** The client address. */
  address?: string;
  /** "ok", or the error reason it ended with. */
  outcome: string;
  /** A few small facts; never a secret. */
  details?: Record<string, string>;
}

export interface AuditRecord extends AuditDraft {
  /** ObjectId hex: unique, and orders events of the same millisecond. */
  id: string;
  /** The appender's clock. */
  time: Date;
}

/** Every filter given must match; `from` inclusive, `before` exclusive. */
export interface AuditQuery {
  subjectUserId?: string;
  actorId?: string;
  type?: string;
  from?: Date;
  before?: Date;
}

/** Where a page of audit events ended: the last event's time and id. */
export interface AuditPosition {
  time: Date;
  id: string;
}

/**
 * The audit log: appended by the service, read by operators, never edited through the API.
 * Events older than the retention are gone (a TTL index on MongoDB; reads skip them anyway).
 */
export interface AuditStore {
  /** Appends one event stamped with the store's now. */
  append(draft: AuditDraft): Promise<void>;
  /** Matching live events newest first (time, then id, descending), strictly past `after` when given, at most `limit`. */
  list(query: AuditQuery, limit: number, after?: AuditPosition): Promise<AuditRecord[]>;
  /** Drops the address and details of every event about the user: what stays of a deleted user is the facts. */
  anonymiseSubject(userId: string): Promise<void>;
}

/** One day's count for one app. */
export interface DailyActivity {
  /** YYYY-MM-DD. */
  day: string;
  appKey: string;
  /** Distinct users active that day. */
  active: number;
  /** Of them, those registered that day. */
  registered: number;
}

/** Who was active in which app on which day, for GetStats: one small record per user, app and day. */
export interface ActivityStore {
  /** Marks the user active in the app on the day (idempotent); `registered` also counts it new that day. */
  record(day: string, appKey: string, userId: string, registered: boolean): Promise<void>;
  /** The counts of every day in [fromDay, toDay] with any activity, per app. */
  daily(fromDay: string, toDay: string): Promise<DailyActivity[]>;
}

/** How long activity records are kept: longer than GetStats' longest range. */
export const ACTIVITY_RETENTION_DAYS = 100;

export const DAY_MS = 86_400_000;

/** The oldest day (YYYY-MM-DD) whose activity is still kept at `nowMs`, in both stores. */
export function oldestActivityDay(nowMs: number): string {
  return new Date(nowMs - ACTIVITY_RETENTION_DAYS * DAY_MS).toISOString().slice(0, 10);
}

export interface Store {
  users: UserStore;
  sessions: SessionStore;
  replays: ReplayStore;
  credentials: CredentialStore;
  revocations: RevocationStore;
  audit: AuditStore;
  activity: ActivityStore;
  /** Creates indexes and the like; safe to call on every start. */
  init(): Promise<void>;
  close(): Promise<void>;
}

/** A new id in ObjectId hex form, the id format of both stores. */
export function newObjectId(): string {
  return new ObjectId().toHexString();
}

export type UniqueKeyKind = "identity" | "unionid" | "phone" | "username" | "invite";

/**
 * Every value that at most one user may hold, as strings "kind:value". Both stores index these
 * (MongoDB: a unique multikey index on `keys`), so uniqueness needs no transactions.
 */
export function uniqueKeysOf(user: Pick<UserRecord, "identities" | "unionid" | "phoneNumber" | "purePhoneNumber" | "countryCode" | "username" | "inviteCode">): string[] {
  const keys = user.identities.map((i) => identityKey(i.platform, i.appid, i.openid));
  if (user.unionid) keys.push(`unionid:${user.unionid}`);
  if (user.phoneNumber) keys.push(phoneKey(user));
  if (user.username) keys.push(usernameKey(user.username));
  if (user.inviteCode) keys.push(inviteKey(user.inviteCode));
  return keys;
}

export const identityKey = (platform: string, appid: string, openid: string) => `identity:${platform}:${appid}:${openid}`;
export const unionidKey = (unionid: string) => `unionid:${unionid}`;
export const usernameKey = (username: string) => `username:${username.toLowerCase()}`;
export const inviteKey = (inviteCode: string) => `invite:${inviteCode.toUpperCase()}`;

/** One number, one key: +86 13800000000 and 13800000000 with country code 86 are the same phone. */
export function phoneKey(phone: Pick<UserRecord, "phoneNumber" | "purePhoneNumber" | "countryCode">): string {
  return phone.countryCode && phone.purePhoneNumber ? `phone:+${phone.countryCode}${phone.purePhoneNumber}` : `phone:${phone.phoneNumber}`;
}

export function keyKind(key: string): UniqueKeyKind {
  return key.slice(0, key.indexOf(":")) as UniqueKeyKind;
}

/** Base of the store's own errors; the service maps them to wire errors in one place. */
export class StoreError extends Error {}

export class DuplicateKeyError extends StoreError {
  constructor(readonly kind: UniqueKeyKind | "unknown") {
    super(`duplicate ${kind}`);
  }
}

export class VersionConflictError extends StoreError {
  constructor() {
    super("version conflict");
  }
}

export class NotFoundError extends StoreError {
  constructor(what: string) {
    super(`${what} not found`);
  }
}

/** The store could not be reached or did not answer in time. */
export class StoreUnavailableError extends StoreError {
  constructor(cause: unknown) {
    super("store unavailable", { cause });
  }
}
