import { ObjectId } from "mongodb";
import {
  DuplicateKeyError,
  keyKind,
  newObjectId,
  NotFoundError,
  SPENT_HASHES_KEPT,
  identityKey,
  uniqueKeysOf,
  VersionConflictError,
  AUDIT_RETENTION_DAYS,
  DAY_MS,
  oldestActivityDay,
  type ActivityStore,
  type AuditDraft,
  type AuditPosition,
  type AuditQuery,
  type AuditRecord,
  type AuditStore,
  type CredentialStore,
  type DailyActivity,
  type JsonObject,
  type BeforeRevoking,
  type PlatformCredential,
  type ReplayStore,
  type RevocationDraft,
  type RevocationRecord,
  type RevocationStore,
  type Rotation,
  type SessionDraft,
  type SessionRecord,
  type SessionStore,
  type Store,
  type StoreOptions,
  type UserDraft,
  type UserRecord,
  type UserStore,
} from "./store.js";

// The embedded store: the MongoDB store's contract kept in Maps. Records are cloned on the way in
// and out so no caller can reach stored state, and every check-then-write runs without an await
// in between, which makes it atomic on the event loop.

/**
 * A deep copy of a stored record: plain objects, arrays, Dates and primitives, which is all a
 * record holds (attributes are JSON). Several times cheaper than structuredClone, which
 * serializes; CheckLogin reads two records a call.
 */
function copyOf<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Date) return new Date(value.getTime()) as T;
  if (Array.isArray(value)) return value.map(copyOf) as T;
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const field = copyOf((value as Record<string, unknown>)[key]);
    // An own "__proto__" stays data, never a prototype (the service refuses such keys anyway).
    if (key === "__proto__") Object.defineProperty(copy, key, { value: field, enumerable: true, writable: true, configurable: true });
    else copy[key] = field;
  }
  return copy as T;
}

/** How often expired entries are dropped; MongoDB's TTL monitor also runs once a minute. */
const SWEEP_INTERVAL_MS = 60_000;

/** Entries a write looks at once a sweep is due: 100k sessions took one write 18–20 ms to scan whole. */
const SWEEP_SLICE = 1_000;

/**
 * Drops a map's expired entries, as a TTL index does in MongoDB, so a long-running process does
 * not grow without bound. Once due, each write continues the sweep by SWEEP_SLICE entries, so no
 * single request pays for scanning the whole map.
 */
class ExpirySweep<V> {
  private nextSweepAt: number;
  /** Where the sweep in progress stands; a Map's iterator stays valid while entries come and go. */
  private cursor: Iterator<[string, V]> | null = null;

  constructor(
    private readonly entries: Map<string, V>,
    private readonly expiresAt: (entry: V) => Date,
    private readonly clock: () => number,
    /** Told of each entry dropped, so indexes over the map stay exact. */
    private readonly onDrop: (entry: V) => void = () => {},
  ) {
    this.nextSweepAt = clock() + SWEEP_INTERVAL_MS;
  }

  /** Cheap to call on every write: does a slice of work only while a sweep is due. */
  run(): void {
    const now = this.clock();
    if (!this.cursor) {
      if (now < this.nextSweepAt) return;
      this.cursor = this.entries.entries();
    }
    for (let seen = 0; seen < SWEEP_SLICE; seen++) {
      const next = this.cursor.next();
      if (next.done) {
        this.cursor = null;
        this.nextSweepAt = now + SWEEP_INTERVAL_MS;
        return;
      }
      const [key, entry] = next.value;
      if (this.expiresAt(entry).getTime() > now) continue;
      this.entries.delete(key);
      this.onDrop(entry);
    }
  }
}

function addTo(index: Map<string, Set<string>>, key: string, id: string): void {
  const ids = index.get(key) ?? new Set<string>();
  ids.add(id);
  index.set(key, ids);
}

function removeFrom(index: Map<string, Set<string>>, key: string, id: string): void {
  const ids = index.get(key);
  ids?.delete(id);
  if (ids?.size === 0) index.delete(key);
}

/** The stored form of an id: ObjectId hex in lower case, as MongoDB reads it back; null if not one. */
function storedId(id: string): string | null {
  return /^[0-9a-f]{24}$/i.test(id) ? id.toLowerCase() : null;
}

export class MemoryUserStore implements UserStore {
  private readonly users = new Map<string, UserRecord>();
  /** Unique key → id of the user holding it: the in-process twin of the unique index on `keys`. */
  private readonly owners = new Map<string, string>();

  async insert(draft: UserDraft): Promise<UserRecord> {
    const keys = uniqueKeysOf(draft);
    this.assertFree(keys, null);
    const user: UserRecord = { ...copyOf(draft), id: newObjectId(), version: 0 };
    this.users.set(user.id, user);
    for (const key of keys) this.owners.set(key, user.id);
    return copyOf(user);
  }

  async get(id: string): Promise<UserRecord | null> {
    const user = this.find(id);
    return user ? copyOf(user) : null;
  }

  async findByKeys(keys: string[]): Promise<UserRecord[]> {
    const ids = new Set(keys.flatMap((key) => this.owners.get(key) ?? []));
    return [...ids].flatMap((id) => {
      const user = this.users.get(id);
      return user ? [copyOf(user)] : [];
    });
  }

  async replace(next: UserRecord): Promise<UserRecord> {
    const current = this.find(next.id);
    if (!current) throw new NotFoundError("user");
    if (current.version !== next.version) throw new VersionConflictError();
    const keys = uniqueKeysOf(next);
    this.assertFree(keys, current.id);
    for (const key of uniqueKeysOf(current)) this.owners.delete(key);
    for (const key of keys) this.owners.set(key, current.id);
    const user: UserRecord = { ...copyOf(next), id: current.id, version: current.version + 1 };
    this.users.set(user.id, user);
    return copyOf(user);
  }

  async remove(id: string): Promise<boolean> {
    const user = this.find(id);
    if (!user) return false;
    for (const key of uniqueKeysOf(user)) this.owners.delete(key);
    return this.users.delete(user.id);
  }

  async count(): Promise<number> {
    return this.users.size;
  }

  async countWithIdentityOf(platform: string, appid: string): Promise<number> {
    const prefix = identityKey(platform, appid, "");
    const holders = new Set<string>();
    for (const [key, owner] of this.owners) if (key.startsWith(prefix)) holders.add(owner);
    return holders.size;
  }

  private find(id: string): UserRecord | undefined {
    const key = storedId(id);
    return key === null ? undefined : this.users.get(key);
  }

  private assertFree(keys: string[], self: string | null): void {
    for (const key of keys) {
      const owner = this.owners.get(key);
      if (owner !== undefined && owner !== self) throw new DuplicateKeyError(keyKind(key));
    }
  }
}

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, SessionRecord>();
  /**
   * User id → the ids of its stored sessions not revoked, for the per-user cap and logout-all
   * (MongoDB uses its index on userId). Revoked sessions stay stored until they expire, for reuse
   * detection, but leave this index, so a login looks at the few live ones, not at every login
   * of the last 30 days.
   */
  private readonly liveByUser = new Map<string, Set<string>>();
  /** User id → the ids of all its stored sessions, revoked ones included, for operators' listing. */
  private readonly storedByUser = new Map<string, Set<string>>();
  private readonly sweep: ExpirySweep<SessionRecord>;

  constructor(private readonly now: () => number = Date.now) {
    this.sweep = new ExpirySweep(
      this.sessions,
      (session) => session.expiresAt,
      now,
      (session) => {
        this.unindex(session);
        if (session.userId !== null) removeFrom(this.storedByUser, session.userId, session.id);
      },
    );
  }

  async insert(draft: SessionDraft): Promise<SessionRecord> {
    // Parsed like the MongoDB store does, so a malformed caller-chosen id fails the same way.
    const id = draft.id === undefined ? newObjectId() : ObjectId.createFromHexString(draft.id).toHexString();
    if (this.sessions.has(id)) throw new DuplicateKeyError("unknown");
    this.sweep.run();
    const session: SessionRecord = { ...copyOf(draft), id };
    this.sessions.set(id, session);
    if (session.userId !== null) this.index(session.userId, id);
    return copyOf(session);
  }

  async get(id: string): Promise<SessionRecord | null> {
    const session = this.find(id);
    return session ? copyOf(session) : null;
  }

  async rotate(id: string, rotation: Rotation): Promise<SessionRecord | null> {
    const session = this.find(id);
    if (!session || session.revokedAt !== null || session.refreshHash !== rotation.expectedHash) return null;
    session.refreshHash = rotation.nextHash;
    session.spentRefreshHashes = [...session.spentRefreshHashes, rotation.expectedHash].slice(-SPENT_HASHES_KEPT);
    session.rotatedAt = new Date(rotation.rotatedAt);
    session.expiresAt = new Date(rotation.expiresAt);
    return copyOf(session);
  }

  async promote(id: string, userId: string, refreshHash: string, expiresAt: Date): Promise<SessionRecord | null> {
    const session = this.find(id);
    if (!session || session.userId !== null || session.revokedAt !== null) return null;
    session.userId = userId;
    this.index(userId, id);
    session.refreshHash = refreshHash;
    // The first refresh token is issued now.
    session.rotatedAt = new Date(this.now());
    session.expiresAt = new Date(expiresAt);
    return copyOf(session);
  }

  async revoke(id: string, reason: string): Promise<void> {
    const session = this.find(id);
    // The first revocation stands: its reason (e.g. token reuse) is the one worth keeping.
    if (session && session.revokedAt === null) this.end(session, reason, this.now());
  }

  async revokeAllForUser(userId: string, reason: string, beforeRevoking?: BeforeRevoking): Promise<number> {
    return this.endAll(this.liveSessionsOf(userId), reason, beforeRevoking);
  }

  async revokeOldest(userId: string, keep: number, now: Date, reason: string, beforeRevoking?: BeforeRevoking): Promise<number> {
    const live = this.liveSessionsOf(userId).filter((s) => s.expiresAt > now);
    // Ties (one millisecond) go by id, which grows within a process.
    const excess = live.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id.localeCompare(a.id)).slice(keep);
    return this.endAll(excess, reason, beforeRevoking);
  }

  /** Ends the sessions still live once `beforeRevoking` has been told them (it may await). */
  private async endAll(sessions: SessionRecord[], reason: string, beforeRevoking?: BeforeRevoking): Promise<number> {
    if (sessions.length && beforeRevoking) await beforeRevoking(sessions.map((s) => s.id));
    const at = this.now();
    const live = sessions.filter((s) => s.revokedAt === null);
    for (const session of live) this.end(session, reason, at);
    return live.length;
  }

  private find(id: string): SessionRecord | undefined {
    const key = storedId(id);
    return key === null ? undefined : this.sessions.get(key);
  }

  async listForUser(userId: string, limit: number): Promise<SessionRecord[]> {
    const stored = Array.from(this.storedByUser.get(userId) ?? [], (id) => this.sessions.get(id)!);
    return stored
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.id.localeCompare(a.id))
      .slice(0, limit)
      .map(copyOf);
  }

  async removeForUser(userId: string): Promise<number> {
    const ids = [...(this.storedByUser.get(userId) ?? [])];
    for (const id of ids) this.sessions.delete(id);
    this.storedByUser.delete(userId);
    this.liveByUser.delete(userId);
    return ids.length;
  }

  private index(userId: string, id: string): void {
    addTo(this.liveByUser, userId, id);
    addTo(this.storedByUser, userId, id);
  }

  private unindex(session: SessionRecord): void {
    if (session.userId !== null) removeFrom(this.liveByUser, session.userId, session.id);
  }

  private end(session: SessionRecord, reason: string, at: number): void {
    session.revokedAt = new Date(at);
    session.revokeReason = reason;
    this.unindex(session);
  }

  /** Every id in the index is of a stored session: revoking and sweeping both take it out. */
  private liveSessionsOf(userId: string): SessionRecord[] {
    return Array.from(this.liveByUser.get(userId) ?? [], (id) => this.sessions.get(id)!);
  }
}

interface ReplayEntry {
  value: JsonObject;
  expiresAt: Date;
}

export class MemoryReplayStore implements ReplayStore {
  private readonly entries = new Map<string, ReplayEntry>();
  private readonly sweep: ExpirySweep<ReplayEntry>;

  constructor(private readonly now: () => number = Date.now) {
    this.sweep = new ExpirySweep(this.entries, (entry) => entry.expiresAt, now);
  }

  async remember(key: string, value: JsonObject, expiresAt: Date): Promise<{ value: JsonObject; created: boolean }> {
    const live = this.live(key);
    if (live) return { value: copyOf(live.value), created: false };
    this.sweep.run();
    this.entries.set(key, { value: copyOf(value), expiresAt: new Date(expiresAt) });
    return { value: copyOf(value), created: true };
  }

  async recall(key: string): Promise<JsonObject | null> {
    const live = this.live(key);
    return live ? copyOf(live.value) : null;
  }

  /** Expiry is checked here, not left to the sweep, which runs only now and then. */
  private live(key: string): ReplayEntry | undefined {
    const entry = this.entries.get(key);
    return entry && entry.expiresAt.getTime() > this.now() ? entry : undefined;
  }
}

export class MemoryCredentialStore implements CredentialStore {
  private readonly credentials = new Map<string, PlatformCredential>();

  async get(appid: string): Promise<PlatformCredential | null> {
    const credential = this.credentials.get(appid);
    return credential ? copyOf(credential) : null;
  }

  async acquireLease(appid: string, owner: string, until: Date, now: Date): Promise<boolean> {
    const current = this.credentials.get(appid) ?? { appid, accessToken: null, expiresAt: null, leaseOwner: null, leaseUntil: null };
    const lapsed = current.leaseUntil !== null && current.leaseUntil.getTime() <= now.getTime();
    if (current.leaseOwner !== null && current.leaseOwner !== owner && !lapsed) return false;
    this.credentials.set(appid, { ...current, leaseOwner: owner, leaseUntil: new Date(until) });
    return true;
  }

  async saveToken(appid: string, owner: string, accessToken: string, expiresAt: Date): Promise<void> {
    const current = this.credentials.get(appid);
    const lease = current && current.leaseOwner !== owner ? { leaseOwner: current.leaseOwner, leaseUntil: current.leaseUntil } : { leaseOwner: null, leaseUntil: null };
    this.credentials.set(appid, { appid, accessToken, expiresAt: new Date(expiresAt), ...lease });
  }

  async expireToken(appid: string, accessToken: string): Promise<boolean> {
    const current = this.credentials.get(appid);
    if (current?.accessToken !== accessToken) return false;
    // No token at all, as before the first fetch: nothing can mistake it for a usable one.
    current.accessToken = null;
    current.expiresAt = null;
    return true;
  }
}

/** Ordered as the feed reads: by revokedAt, then id. */
const byPosition = (a: RevocationRecord, b: RevocationRecord) => a.revokedAt.getTime() - b.revokedAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export class MemoryRevocationStore implements RevocationStore {
  /** Sorted by position; appends come in clock order, so an insert is at or near the end. */
  private readonly events: RevocationRecord[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  async append(drafts: RevocationDraft[], expiresAt: Date): Promise<void> {
    const at = this.now();
    // The oldest come first: dropping expired ones from the front is the sweep (one splice, not a shift each).
    let expired = 0;
    while (expired < this.events.length && this.events[expired]!.expiresAt.getTime() <= at) expired++;
    if (expired) this.events.splice(0, expired);
    for (const draft of drafts) {
      const event: RevocationRecord = { ...copyOf(draft), id: newObjectId(), revokedAt: new Date(at), expiresAt: new Date(expiresAt) };
      let i = this.events.length;
      while (i > 0 && byPosition(this.events[i - 1]!, event) > 0) i--;
      this.events.splice(i, 0, event);
    }
  }

  async since(after: Date, limit: number, afterId?: string): Promise<RevocationRecord[]> {
    const now = this.now();
    const from = { revokedAt: after, id: afterId ?? "\uffff" } as RevocationRecord;
    // Binary search for the first event past `from`.
    let lo = 0;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (byPosition(this.events[mid]!, from) <= 0) lo = mid + 1;
      else hi = mid;
    }
    const found: RevocationRecord[] = [];
    for (let i = lo; i < this.events.length && found.length < limit; i++) {
      const event = this.events[i]!;
      if (event.expiresAt.getTime() > now) found.push(copyOf(event));
    }
    return found;
  }
}

/** Newest first: by time, then id, descending. */
const newestFirst = (a: AuditPosition, b: AuditPosition) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

const matches = (event: AuditRecord, q: AuditQuery) =>
  (q.subjectUserId === undefined || event.subjectUserId === q.subjectUserId) &&
  (q.actorId === undefined || event.actor.id === q.actorId) &&
  (q.type === undefined || event.type === q.type) &&
  (q.from === undefined || event.time >= q.from) &&
  (q.before === undefined || event.time < q.before);

export class MemoryAuditStore implements AuditStore {
  /** Oldest first; appends come in clock order, so an event goes at or near the end. */
  private readonly events: AuditRecord[] = [];
  private readonly retentionMs: number;

  constructor(
    private readonly now: () => number = Date.now,
    retentionDays = AUDIT_RETENTION_DAYS,
  ) {
    this.retentionMs = retentionDays * DAY_MS;
  }

  async append(draft: AuditDraft): Promise<void> {
    const at = this.now();
    let expired = 0;
    while (expired < this.events.length && this.expired(this.events[expired]!, at)) expired++;
    if (expired) this.events.splice(0, expired);
    const event: AuditRecord = { ...copyOf(draft), id: newObjectId(), time: new Date(at) };
    let i = this.events.length;
    while (i > 0 && newestFirst(this.events[i - 1]!, event) < 0) i--;
    this.events.splice(i, 0, event);
  }

  async list(query: AuditQuery, limit: number, after?: AuditPosition): Promise<AuditRecord[]> {
    const at = this.now();
    const found: AuditRecord[] = [];
    for (let i = this.events.length - 1; i >= 0 && found.length < limit; i--) {
      const event = this.events[i]!;
      // Expiry is checked here too, as on MongoDB, whose TTL deletion is lazy.
      if (this.expired(event, at)) break;
      if (after && newestFirst(after, event) >= 0) continue;
      if (matches(event, query)) found.push(copyOf(event));
    }
    return found;
  }

  async anonymiseSubject(userId: string): Promise<void> {
    for (const event of this.events) {
      if (event.subjectUserId !== userId) continue;
      delete event.address;
      delete event.details;
    }
  }

  private expired(event: AuditRecord, at: number): boolean {
    return event.time.getTime() <= at - this.retentionMs;
  }
}

export class MemoryActivityStore implements ActivityStore {
  /** "day|appKey" → user id → registered that day. */
  private readonly days = new Map<string, Map<string, boolean>>();

  constructor(private readonly now: () => number = Date.now) {}

  async record(day: string, appKey: string, userId: string, registered: boolean): Promise<void> {
    this.dropExpired();
    const key = `${day}|${appKey}`;
    const users = this.days.get(key) ?? new Map<string, boolean>();
    users.set(userId, registered || (users.get(userId) ?? false));
    this.days.set(key, users);
  }

  async daily(fromDay: string, toDay: string): Promise<DailyActivity[]> {
    const cutoff = oldestActivityDay(this.now());
    const found: DailyActivity[] = [];
    for (const [key, users] of this.days) {
      const [day = "", appKey = ""] = key.split("|");
      if (day < fromDay || day > toDay || day < cutoff) continue;
      found.push({ day, appKey, active: users.size, registered: [...users.values()].filter(Boolean).length });
    }
    return found;
  }

  /** Drops the days before the oldest still kept, as the TTL index does on MongoDB. */
  private dropExpired(): void {
    const cutoff = oldestActivityDay(this.now());
    for (const key of this.days.keys()) if (key < cutoff) this.days.delete(key);
  }
}

export class MemoryStore implements Store {
  readonly users = new MemoryUserStore();
  readonly sessions: MemorySessionStore;
  readonly replays: MemoryReplayStore;
  readonly credentials = new MemoryCredentialStore();
  readonly revocations: MemoryRevocationStore;
  readonly audit: MemoryAuditStore;
  readonly activity: MemoryActivityStore;

  constructor({ now = Date.now, auditRetentionDays }: StoreOptions = {}) {
    this.sessions = new MemorySessionStore(now);
    this.replays = new MemoryReplayStore(now);
    this.revocations = new MemoryRevocationStore(now);
    this.audit = new MemoryAuditStore(now, auditRetentionDays);
    this.activity = new MemoryActivityStore(now);
  }

  async init(): Promise<void> {}

  async close(): Promise<void> {}
}
