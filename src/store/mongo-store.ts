import {
  MongoClient,
  MongoError,
  MongoErrorLabel,
  MongoNetworkError,
  MongoOperationTimeoutError,
  MongoServerError,
  MongoServerSelectionError,
  ObjectId,
  type Collection,
  type MongoClientOptions,
} from "mongodb";
import {
  DuplicateKeyError,
  keyKind,
  NotFoundError,
  SPENT_HASHES_KEPT,
  StoreUnavailableError,
  uniqueKeysOf,
  VersionConflictError,
  ACTIVITY_RETENTION_DAYS,
  AUDIT_RETENTION_DAYS,
  DAY_MS,
  oldestActivityDay,
  identityKey,
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
  type UniqueKeyKind,
  type UserDraft,
  type UserRecord,
  type UserStore,
} from "./store.js";

// The MongoDB store, in the mongoose document style (`_id` ObjectId, `__v` version). Uniqueness
// rests on one unique multikey index over `keys`, concurrency on conditional single-document
// writes, so it needs neither transactions nor a replica set (but runs on one).

type UserDoc = Omit<UserRecord, "id" | "version"> & { _id: ObjectId; __v: number; keys: string[] };
/**
 * `userId` is kept as the user's id hex string (null while pending), as in SessionRecord; the app
 * key keeps the field name `appId` that stored sessions have always had.
 */
type SessionDoc = Omit<SessionRecord, "id" | "appKey"> & { _id: ObjectId; appId: string };
/** Keyed by the caller's key. */
type ReplayDoc = { _id: string; value: JsonObject; expiresAt: Date };
/** Keyed by the platform appid. */
type CredentialDoc = Omit<PlatformCredential, "appid"> & { _id: string };
/** One of sessionId and userId is set. */
type RevocationDoc = { _id: ObjectId; sessionId?: string; userId?: string; reason: RevocationRecord["reason"]; revokedAt: Date; expiresAt: Date };

type AuditDoc = Omit<AuditRecord, "id"> & { _id: ObjectId };
/** Keyed by "day|appKey|userId": one per user, app and day, however often the user signs in. */
type ActivityDoc = { _id: string; day: string; appKey: string; registered: number; expiresAt: Date };

const UNIQUE_KEY_KINDS: readonly string[] = ["identity", "unionid", "phone", "username", "invite"] satisfies UniqueKeyKind[];

/**
 * Server error codes meaning "no node can serve this right now" (network trouble, shutdown, not
 * primary during an election): the retryable-error codes of the driver specifications.
 */
const NOT_SERVING_CODES = new Set([6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436]);

/**
 * How long a call waits for a store that is down or silent, so it fails with STORE_UNAVAILABLE
 * instead of hanging (the driver's defaults: 30 s to find a server, no socket timeout at all).
 * Every operation here is a point read or write, so 10 s without a byte is a dead connection.
 */
const STORE_TIMEOUTS = { serverSelectionTimeoutMS: 5_000, connectTimeoutMS: 5_000, socketTimeoutMS: 10_000 } as const;

/** NotImplemented: how a server answers an index option it lacks. */
const NOT_IMPLEMENTED = 238;
/** IndexOptionsConflict: an index on the same keys exists with other options (another retention). */
const INDEX_OPTIONS_CONFLICT = 85;

export class MongoStore implements Store {
  readonly users: MongoUserStore;
  readonly sessions: MongoSessionStore;
  readonly replays: MongoReplayStore;
  readonly credentials: MongoCredentialStore;
  readonly revocations: MongoRevocationStore;
  private readonly userDocs: Collection<UserDoc>;
  private readonly sessionDocs: Collection<SessionDoc>;
  private readonly replayDocs: Collection<ReplayDoc>;
  private readonly revocationDocs: Collection<RevocationDoc>;
  private readonly auditDocs: Collection<AuditDoc>;
  private readonly activityDocs: Collection<ActivityDoc>;
  readonly audit: MongoAuditStore;
  readonly activity: MongoActivityStore;
  private readonly auditRetentionSeconds: number;
  /** Only a client this class opened is closed by it; a client passed in belongs to the caller. */
  private ownsClient = false;

  constructor(
    private readonly client: MongoClient,
    dbName: string,
    { now = Date.now, auditRetentionDays = AUDIT_RETENTION_DAYS }: StoreOptions = {},
  ) {
    // Optional fields set to undefined are left out, not stored as null.
    const db = client.db(dbName, { ignoreUndefined: true });
    this.userDocs = db.collection<UserDoc>("users");
    this.sessionDocs = db.collection<SessionDoc>("sessions");
    this.replayDocs = db.collection<ReplayDoc>("replays");
    this.users = new MongoUserStore(this.userDocs);
    this.sessions = new MongoSessionStore(this.sessionDocs, now);
    this.replays = new MongoReplayStore(this.replayDocs, now);
    this.credentials = new MongoCredentialStore(db.collection<CredentialDoc>("credentials"));
    this.revocationDocs = db.collection<RevocationDoc>("revocations");
    this.revocations = new MongoRevocationStore(this.revocationDocs, now);
    this.auditDocs = db.collection<AuditDoc>("audit_events");
    this.auditRetentionSeconds = auditRetentionDays * 86_400;
    this.audit = new MongoAuditStore(this.auditDocs, now, auditRetentionDays);
    this.activityDocs = db.collection<ActivityDoc>("activity");
    this.activity = new MongoActivityStore(this.activityDocs, now);
  }

  /**
   * Opens a client of its own. STORE_TIMEOUTS apply unless the URI or `options` set the same
   * option: the driver lets object options beat the URI's, which would make them untunable.
   */
  static async connect(uri: string, dbName: string, { now, auditRetentionDays, ...options }: MongoClientOptions & StoreOptions = {}): Promise<MongoStore> {
    const inUri = new Set([...new URLSearchParams(uri.split("?")[1] ?? "").keys()].map((key) => key.toLowerCase()));
    const defaults = Object.entries(STORE_TIMEOUTS).filter(([name]) => !inUri.has(name.toLowerCase()));
    const client = new MongoClient(uri, { ...Object.fromEntries(defaults), ...options });
    await guard(() => client.connect());
    const store = new MongoStore(client, dbName, { now, ...(auditRetentionDays === undefined ? {} : { auditRetentionDays }) });
    store.ownsClient = true;
    return store;
  }

  async init(): Promise<void> {
    await guard(async () => {
      await this.userDocs.createIndex({ keys: 1 }, { unique: true });
      // The per-user cap runs on every login: this index finds a user's unrevoked sessions
      // newest first without reading the revoked ones kept (until they expire) for reuse detection.
      await this.sessionDocs.createIndex({ userId: 1, revokedAt: 1, createdAt: -1, _id: -1 });
      await createTtlIndex(this.sessionDocs);
      await createTtlIndex(this.replayDocs);
      // The feed reads by position (revokedAt, then _id) from a cursor.
      await this.revocationDocs.createIndex({ revokedAt: 1, _id: 1 });
      await createTtlIndex(this.revocationDocs);
      // ListAuditEvents newest first, unfiltered and by each filter. The TTL index on time alone
      // cannot give the (time, _id) order: the server would read and sort the whole range per page.
      await this.auditDocs.createIndex({ time: -1, _id: -1 });
      await this.auditDocs.createIndex({ subjectUserId: 1, time: -1, _id: -1 });
      await this.auditDocs.createIndex({ "actor.id": 1, time: -1, _id: -1 });
      await this.auditDocs.createIndex({ type: 1, time: -1, _id: -1 });
      await createRetentionIndex(this.auditDocs, this.auditRetentionSeconds);
      await this.activityDocs.createIndex({ day: 1, appKey: 1 });
      await createTtlIndex(this.activityDocs);
    });
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

export class MongoUserStore implements UserStore {
  constructor(private readonly collection: Collection<UserDoc>) {}

  async insert(draft: UserDraft): Promise<UserRecord> {
    const _id = new ObjectId();
    await guard(() => this.collection.insertOne({ ...draft, _id, __v: 0, keys: indexKeys(draft, _id) }));
    return { ...structuredClone(draft), id: _id.toHexString(), version: 0 };
  }

  async get(id: string): Promise<UserRecord | null> {
    const _id = parseId(id);
    if (!_id) return null;
    const doc = await guard(() => this.collection.findOne({ _id }));
    return doc && toUser(doc);
  }

  async findByKeys(keys: string[]): Promise<UserRecord[]> {
    if (keys.length === 0) return [];
    const docs = await guard(() => this.collection.find({ keys: { $in: keys } }).toArray());
    return docs.map(toUser);
  }

  async remove(id: string): Promise<boolean> {
    const _id = parseId(id);
    if (!_id) return false;
    const result = await guard(() => this.collection.deleteOne({ _id }));
    return result.deletedCount === 1;
  }

  /** From the collection's metadata, not a scan: GetStats asks on every dashboard load. */
  async count(): Promise<number> {
    return guard(() => this.collection.estimatedDocumentCount());
  }

  async countWithIdentityOf(platform: string, appid: string): Promise<number> {
    // An anchored prefix regex is a range scan of the unique index on keys.
    const prefix = `^${identityKey(platform, appid, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`;
    return guard(() => this.collection.countDocuments({ keys: { $regex: prefix } }));
  }

  async replace(next: UserRecord): Promise<UserRecord> {
    const _id = parseId(next.id);
    if (!_id) throw new NotFoundError("user");
    const { id: _, version, ...fields } = next;
    const result = await guard(() => this.collection.replaceOne({ _id, __v: version }, { ...fields, __v: version + 1, keys: indexKeys(next, _id) }));
    if (result.matchedCount === 0) {
      const exists = await guard(() => this.collection.countDocuments({ _id }, { limit: 1 }));
      throw exists ? new VersionConflictError() : new NotFoundError("user");
    }
    return { ...structuredClone(fields), id: _id.toHexString(), version: version + 1 };
  }
}

export class MongoSessionStore implements SessionStore {
  constructor(
    private readonly collection: Collection<SessionDoc>,
    private readonly now: () => number = Date.now,
  ) {}

  async insert(draft: SessionDraft): Promise<SessionRecord> {
    const { id, appKey, ...fields } = draft;
    const _id = id === undefined ? new ObjectId() : ObjectId.createFromHexString(id);
    await guard(() => this.collection.insertOne({ ...fields, appId: appKey, _id }));
    return { ...structuredClone(fields), appKey, id: _id.toHexString() };
  }

  async get(id: string): Promise<SessionRecord | null> {
    const _id = parseId(id);
    if (!_id) return null;
    const doc = await guard(() => this.collection.findOne({ _id }));
    return doc && toSession(doc);
  }

  async rotate(id: string, rotation: Rotation): Promise<SessionRecord | null> {
    const _id = parseId(id);
    if (!_id) return null;
    const doc = await guard(() =>
      this.collection.findOneAndUpdate(
        { _id, refreshHash: rotation.expectedHash, revokedAt: null },
        {
          $set: { refreshHash: rotation.nextHash, rotatedAt: rotation.rotatedAt, expiresAt: rotation.expiresAt },
          $push: { spentRefreshHashes: { $each: [rotation.expectedHash], $slice: -SPENT_HASHES_KEPT } },
        },
        { returnDocument: "after" },
      ),
    );
    return doc && toSession(doc);
  }

  async promote(id: string, userId: string, refreshHash: string, expiresAt: Date): Promise<SessionRecord | null> {
    const _id = parseId(id);
    if (!_id) return null;
    const doc = await guard(() =>
      this.collection.findOneAndUpdate(
        { _id, userId: null, revokedAt: null },
        // The first refresh token is issued now.
        { $set: { userId, refreshHash, rotatedAt: new Date(this.now()), expiresAt } },
        { returnDocument: "after" },
      ),
    );
    return doc && toSession(doc);
  }

  async revoke(id: string, reason: string): Promise<void> {
    const _id = parseId(id);
    if (!_id) return;
    // The first revocation stands: its reason (e.g. token reuse) is the one worth keeping.
    await guard(() => this.collection.updateOne({ _id, revokedAt: null }, { $set: { revokedAt: new Date(this.now()), revokeReason: reason } }));
  }

  async revokeAllForUser(userId: string, reason: string, beforeRevoking?: BeforeRevoking): Promise<number> {
    const live = await guard(() => this.collection.find({ userId, revokedAt: null }, { projection: { _id: 1 } }).toArray());
    return this.revokeListed(live, reason, beforeRevoking);
  }

  async revokeOldest(userId: string, keep: number, now: Date, reason: string, beforeRevoking?: BeforeRevoking): Promise<number> {
    const excess = await guard(() =>
      this.collection
        .find({ userId, revokedAt: null, expiresAt: { $gt: now } }, { projection: { _id: 1 } })
        .sort({ createdAt: -1, _id: -1 })
        .skip(keep)
        .toArray(),
    );
    return this.revokeListed(excess, reason, beforeRevoking);
  }

  async listForUser(userId: string, limit: number): Promise<SessionRecord[]> {
    const docs = await guard(() => this.collection.find({ userId }).sort({ createdAt: -1, _id: -1 }).limit(limit).toArray());
    return docs.map(toSession);
  }

  async removeForUser(userId: string): Promise<number> {
    const result = await guard(() => this.collection.deleteMany({ userId }));
    return result.deletedCount;
  }

  /**
   * Revokes the listed sessions still live once `beforeRevoking` has been told them. A session a
   * parallel login opens after the listing is not among them: it began after the revocation.
   */
  private async revokeListed(docs: { _id: ObjectId }[], reason: string, beforeRevoking?: BeforeRevoking): Promise<number> {
    if (docs.length === 0) return 0;
    if (beforeRevoking) await beforeRevoking(docs.map((d) => d._id.toHexString()));
    const result = await guard(() => this.collection.updateMany({ _id: { $in: docs.map((d) => d._id) }, revokedAt: null }, { $set: { revokedAt: new Date(this.now()), revokeReason: reason } }));
    return result.modifiedCount;
  }
}

export class MongoReplayStore implements ReplayStore {
  constructor(
    private readonly collection: Collection<ReplayDoc>,
    private readonly now: () => number = Date.now,
  ) {}

  async remember(key: string, value: JsonObject, expiresAt: Date): Promise<{ value: JsonObject; created: boolean }> {
    for (;;) {
      try {
        // Overwrites a missing or expired entry; over a live one the upsert inserts a second _id and fails, atomically.
        await guard(() => this.collection.updateOne({ _id: key, expiresAt: { $lte: new Date(this.now()) } }, { $set: { value, expiresAt } }, { upsert: true }));
        return { value: structuredClone(value), created: true };
      } catch (err) {
        if (!(err instanceof DuplicateKeyError)) throw err;
      }
      const live = await this.recall(key);
      if (live) return { value: live, created: false };
      // The live entry expired between the two calls: try again, now over an expired one.
    }
  }

  async recall(key: string): Promise<JsonObject | null> {
    // TTL deletion is lazy, missing on some servers and on the server's clock: expiry is checked here, on ours.
    const doc = await guard(() => this.collection.findOne({ _id: key, expiresAt: { $gt: new Date(this.now()) } }));
    return doc?.value ?? null;
  }
}

export class MongoCredentialStore implements CredentialStore {
  constructor(private readonly collection: Collection<CredentialDoc>) {}

  async get(appid: string): Promise<PlatformCredential | null> {
    const doc = await guard(() => this.collection.findOne({ _id: appid }));
    return doc && toCredential(doc);
  }

  async acquireLease(appid: string, owner: string, until: Date, now: Date): Promise<boolean> {
    try {
      await guard(() =>
        this.collection.updateOne(
          { _id: appid, $or: [{ leaseOwner: null }, { leaseUntil: { $lte: now } }, { leaseOwner: owner }] },
          { $set: { leaseOwner: owner, leaseUntil: until }, $setOnInsert: { accessToken: null, expiresAt: null } },
          { upsert: true },
        ),
      );
      return true;
    } catch (err) {
      // The upsert found no lease it may take and collided with the record whose live lease is another's.
      if (err instanceof DuplicateKeyError) return false;
      throw err;
    }
  }

  async saveToken(appid: string, owner: string, accessToken: string, expiresAt: Date): Promise<void> {
    await guard(() => this.collection.updateOne({ _id: appid }, { $set: { accessToken, expiresAt } }, { upsert: true }));
    await guard(() => this.collection.updateOne({ _id: appid, leaseOwner: owner }, { $set: { leaseOwner: null, leaseUntil: null } }));
  }

  async expireToken(appid: string, accessToken: string): Promise<boolean> {
    // No token at all, as before the first fetch: nothing can mistake it for a usable one.
    const result = await guard(() => this.collection.updateOne({ _id: appid, accessToken }, { $set: { accessToken: null, expiresAt: null } }));
    return result.modifiedCount === 1;
  }
}

export class MongoRevocationStore implements RevocationStore {
  constructor(
    private readonly collection: Collection<RevocationDoc>,
    private readonly now: () => number = Date.now,
  ) {}

  async append(drafts: RevocationDraft[], expiresAt: Date): Promise<void> {
    if (drafts.length === 0) return;
    const revokedAt = new Date(this.now());
    await guard(() => this.collection.insertMany(drafts.map(({ target, reason }) => ({ _id: new ObjectId(), ...target, reason, revokedAt, expiresAt }))));
  }

  async since(after: Date, limit: number, afterId?: string): Promise<RevocationRecord[]> {
    const position = afterId ? { $or: [{ revokedAt: { $gt: after } }, { revokedAt: after, _id: { $gt: ObjectId.createFromHexString(afterId) } }] } : { revokedAt: { $gt: after } };
    // Expiry is checked here too: TTL deletion is lazy, and missing on FerretDB 1.x.
    const docs = await guard(() =>
      this.collection
        .find({ ...position, expiresAt: { $gt: new Date(this.now()) } })
        .sort({ revokedAt: 1, _id: 1 })
        .limit(limit)
        .toArray(),
    );
    return docs.map(toRevocation);
  }

  /**
   * Calls `onAppend` whenever an event is appended on any instance, through a change stream;
   * null when the server has none (a standalone mongod, FerretDB 1.x), found by trying once.
   * The feed still reads through `since`: this only tells it to read now.
   */
  async follow(onAppend: () => void, onLost: (err: unknown) => void): Promise<{ close(): Promise<void> } | null> {
    const stream = this.collection.watch([{ $match: { operationType: "insert" } }]);
    // Emitter mode from the start: the driver refuses to mix it with iteration (tryNext).
    const opened = await new Promise<boolean>((resolve) => {
      stream.once("init", () => resolve(true));
      // Where there is none, the $changeStream aggregate fails at once.
      stream.once("error", () => resolve(false));
      stream.on("change", () => onAppend());
    });
    if (!opened) {
      await stream.close().catch(() => undefined);
      return null;
    }
    stream.on("error", (err) => {
      void stream.close().catch(() => undefined);
      onLost(err);
    });
    return { close: () => stream.close() };
  }
}

export class MongoAuditStore implements AuditStore {
  private readonly retentionMs: number;

  constructor(
    private readonly collection: Collection<AuditDoc>,
    private readonly now: () => number = Date.now,
    retentionDays = AUDIT_RETENTION_DAYS,
  ) {
    this.retentionMs = retentionDays * DAY_MS;
  }

  async append(draft: AuditDraft): Promise<void> {
    await guard(() => this.collection.insertOne({ ...draft, _id: new ObjectId(), time: new Date(this.now()) }));
  }

  async list(query: AuditQuery, limit: number, after?: AuditPosition): Promise<AuditRecord[]> {
    // TTL deletion is lazy (and missing on FerretDB 1.x): the retention is checked here too.
    const oldest = new Date(this.now() - this.retentionMs);
    const time: Record<string, Date> = query.from && query.from > oldest ? { $gte: query.from } : { $gt: oldest };
    if (query.before) time.$lt = query.before;
    // The position as a bound on time too: the $or alone leaves the index scan starting at the newest event on every page.
    if (after) time.$lte = after.time;
    const filter: Record<string, unknown> = { time };
    if (query.subjectUserId !== undefined) filter.subjectUserId = query.subjectUserId;
    if (query.actorId !== undefined) filter["actor.id"] = query.actorId;
    if (query.type !== undefined) filter.type = query.type;
    if (after) filter.$or = [{ time: { $lt: after.time } }, { time: after.time, _id: { $lt: ObjectId.createFromHexString(after.id) } }];
    const docs = await guard(() => this.collection.find(filter).sort({ time: -1, _id: -1 }).limit(limit).toArray());
    return docs.map(({ _id, ...fields }) => ({ ...fields, id: _id.toHexString() }));
  }

  async anonymiseSubject(userId: string): Promise<void> {
    await guard(() => this.collection.updateMany({ subjectUserId: userId }, { $unset: { address: "", details: "" } }));
  }
}

export class MongoActivityStore implements ActivityStore {
  constructor(
    private readonly collection: Collection<ActivityDoc>,
    private readonly now: () => number = Date.now,
  ) {}

  async record(day: string, appKey: string, userId: string, registered: boolean): Promise<void> {
    const expiresAt = new Date(Date.parse(day) + ACTIVITY_RETENTION_DAYS * DAY_MS);
    // A registration sets the flag, a later sign-in that day leaves it (no $max: FerretDB 1.x drops it on an upsert's insert).
    const update = registered ? { $setOnInsert: { day, appKey, expiresAt }, $set: { registered: 1 } } : { $setOnInsert: { day, appKey, expiresAt, registered: 0 } };
    await guard(() => this.collection.updateOne({ _id: `${day}|${appKey}|${userId}` }, update, { upsert: true }));
  }

  async daily(fromDay: string, toDay: string): Promise<DailyActivity[]> {
    const cutoff = oldestActivityDay(this.now());
    const first = fromDay > cutoff ? fromDay : cutoff;
    // One accumulator, the registered flag in the group key: FerretDB 1.x answers 0 for every
    // accumulator of a $group but the first. At most two groups per day and app come back.
    const groups = await guard(() =>
      this.collection
        .aggregate<{ _id: { day: string; appKey: string; registered: number }; users: number }>([
          { $match: { day: { $gte: first, $lte: toDay } } },
          { $group: { _id: { day: "$day", appKey: "$appKey", registered: "$registered" }, users: { $sum: 1 } } },
        ])
        .toArray(),
    );
    const counts = new Map<string, DailyActivity>();
    for (const { _id, users } of groups) {
      const key = `${_id.day}|${_id.appKey}`;
      const count = counts.get(key) ?? { day: _id.day, appKey: _id.appKey, active: 0, registered: 0 };
      count.active += users;
      if (_id.registered) count.registered += users;
      counts.set(key, count);
    }
    return [...counts.values()];
  }
}

function toRevocation({ _id, sessionId, userId, reason, revokedAt, expiresAt }: RevocationDoc): RevocationRecord {
  return { id: _id.toHexString(), target: sessionId !== undefined ? { sessionId } : { userId: userId! }, reason, revokedAt, expiresAt };
}

/** A TTL index on `expiresAt`; servers without TTL indexes (FerretDB 1.x) keep expired documents, which every read skips anyway. */
async function createTtlIndex<T extends { expiresAt: Date }>(collection: Collection<T>): Promise<void> {
  await collection.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 }).catch((err: unknown) => {
    if (!(err instanceof MongoServerError && err.code === NOT_IMPLEMENTED)) throw err;
  });
}

/**
 * The audit log's TTL index on `time`. A changed retention changes the index in place (collMod):
 * createIndex refuses an index on the same key with other options. Servers without TTL
 * indexes (FerretDB 1.x) keep old events, which reads skip anyway.
 */
async function createRetentionIndex(collection: Collection<AuditDoc>, expireAfterSeconds: number): Promise<void> {
  try {
    await collection.createIndex({ time: -1 }, { expireAfterSeconds, name: "time_ttl" });
  } catch (err) {
    if (err instanceof MongoServerError && err.code === NOT_IMPLEMENTED) return;
    if (!(err instanceof MongoServerError && err.code === INDEX_OPTIONS_CONFLICT)) throw err;
    await collection.db.command({ collMod: collection.collectionName, index: { name: "time_ttl", expireAfterSeconds } });
  }
}

/** The ObjectId an id names, or null when it is not 24 hex digits (which `new ObjectId` would also accept as 12 raw bytes). */
function parseId(id: string): ObjectId | null {
  return /^[0-9a-f]{24}$/i.test(id) ? ObjectId.createFromHexString(id) : null;
}

/**
 * The user's unique keys plus one naming the user itself: a unique index stores an empty array as
 * one `undefined` key, which only one document may hold, so every user needs a key of its own.
 */
function indexKeys(user: UserDraft, _id: ObjectId): string[] {
  return [...uniqueKeysOf(user), `user:${_id.toHexString()}`];
}

function toUser({ _id, __v, keys: _, ...fields }: UserDoc): UserRecord {
  return { ...fields, id: _id.toHexString(), version: __v };
}

function toSession({ _id, appId, ...fields }: SessionDoc): SessionRecord {
  return { ...fields, appKey: appId, id: _id.toHexString() };
}

function toCredential({ _id, ...fields }: CredentialDoc): PlatformCredential {
  return { ...fields, appid: _id };
}

/** Runs a driver call, turning the driver's errors the service must tell apart into the store's own. */
async function guard<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw translate(err);
  }
}

function translate(err: unknown): unknown {
  if (!(err instanceof MongoError)) return err;
  if (err instanceof MongoServerError && err.code === 11000) return new DuplicateKeyError(duplicateKind(err));
  if (
    err instanceof MongoNetworkError || // includes timeouts and a cleared connection pool
    err instanceof MongoServerSelectionError ||
    err instanceof MongoOperationTimeoutError ||
    err.hasErrorLabel(MongoErrorLabel.RetryableWriteError) ||
    (typeof err.code === "number" && NOT_SERVING_CODES.has(err.code))
  ) {
    return new StoreUnavailableError(err);
  }
  return err;
}

/** Which unique key a duplicate-key error is about: from `keyValue`, or from the message where a server omits it. */
function duplicateKind(err: MongoServerError): UniqueKeyKind | "unknown" {
  const value: unknown = err.keyValue?.keys ?? /dup key: \{ ?keys: "([^"]*)"/.exec(err.message)?.[1];
  if (typeof value !== "string") return "unknown";
  const kind = keyKind(value);
  return UNIQUE_KEY_KINDS.includes(kind) ? kind : "unknown";
}
