import { ObjectId } from "mongodb";
import {
  DuplicateKeyError,
  keyKind,
  newObjectId,
  NotFoundError,
  SPENT_HASHES_KEPT,
  uniqueKeysOf,
  VersionConflictError,
  type CredentialStore,
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
  private readonly sweep: ExpirySweep<SessionRecord>;

  constructor(private readonly now: () => number = Date.now) {
    this.sweep = new ExpirySweep(
      this.sessions,
      (session) => session.expiresAt,
      now,
      (session) => this.unindex(session),
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

  private index(userId: string, id: string): void {
    const ids = this.liveByUser.get(userId) ?? new Set<string>();
    ids.add(id);
    this.liveByUser.set(userId, ids);
  }

  private unindex(session: SessionRecord): void {
    if (session.userId === null) return;
    const ids = this.liveByUser.get(session.userId);
    ids?.delete(session.id);
    if (ids?.size === 0) this.liveByUser.delete(session.userId);
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

export class MemoryStore implements Store {
  readonly users = new MemoryUserStore();
  readonly sessions: MemorySessionStore;
  readonly replays: MemoryReplayStore;
  readonly credentials = new MemoryCredentialStore();
  readonly revocations: MemoryRevocationStore;

  constructor({ now = Date.now }: StoreOptions = {}) {
    this.sessions = new MemorySessionStore(now);
    this.replays = new MemoryReplayStore(now);
    this.revocations = new MemoryRevocationStore(now);
  }

  async init(): Promise<void> {}

  async close(): Promise<void> {}
}
