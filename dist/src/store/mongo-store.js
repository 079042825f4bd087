import { MongoClient, MongoError, MongoErrorLabel, MongoNetworkError, MongoOperationTimeoutError, MongoServerError, MongoServerSelectionError, ObjectId, } from "mongodb";
import { DuplicateKeyError, keyKind, NotFoundError, SPENT_HASHES_KEPT, StoreUnavailableError, uniqueKeysOf, VersionConflictError, } from "./store.js";
const UNIQUE_KEY_KINDS = ["identity", "unionid", "phone", "username", "invite"];
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
const STORE_TIMEOUTS = { serverSelectionTimeoutMS: 5_000, connectTimeoutMS: 5_000, socketTimeoutMS: 10_000 };
/** NotImplemented: how a server answers an index option it lacks. */
const NOT_IMPLEMENTED = 238;
export class MongoStore {
    client;
    users;
    sessions;
    replays;
    credentials;
    userDocs;
    sessionDocs;
    replayDocs;
    /** Only a client this class opened is closed by it; a client passed in belongs to the caller. */
    ownsClient = false;
    constructor(client, dbName) {
        this.client = client;
        // Optional fields set to undefined are left out, not stored as null.
        const db = client.db(dbName, { ignoreUndefined: true });
        this.userDocs = db.collection("users");
        this.sessionDocs = db.collection("sessions");
        this.replayDocs = db.collection("replays");
        this.users = new MongoUserStore(this.userDocs);
        this.sessions = new MongoSessionStore(this.sessionDocs);
        this.replays = new MongoReplayStore(this.replayDocs);
        this.credentials = new MongoCredentialStore(db.collection("credentials"));
    }
    /**
     * Opens a client of its own. STORE_TIMEOUTS apply unless the URI or `options` set the same
     * option: the driver lets object options beat the URI's, which would make them untunable.
     */
    static async connect(uri, dbName, options = {}) {
        const inUri = new Set([...new URLSearchParams(uri.split("?")[1] ?? "").keys()].map((key) => key.toLowerCase()));
        const defaults = Object.entries(STORE_TIMEOUTS).filter(([name]) => !inUri.has(name.toLowerCase()));
        const client = new MongoClient(uri, { ...Object.fromEntries(defaults), ...options });
        await guard(() => client.connect());
        const store = new MongoStore(client, dbName);
        store.ownsClient = true;
        return store;
    }
    async init() {
        await guard(async () => {
            await this.userDocs.createIndex({ keys: 1 }, { unique: true });
            // The per-user cap runs on every login: this index finds a user's unrevoked sessions
            // newest first without reading the revoked ones kept (until they expire) for reuse detection.
            await this.sessionDocs.createIndex({ userId: 1, revokedAt: 1, createdAt: -1, _id: -1 });
            await createTtlIndex(this.sessionDocs);
            await createTtlIndex(this.replayDocs);
        });
    }
    async close() {
        if (this.ownsClient)
            await this.client.close();
    }
}
export class MongoUserStore {
    collection;
    constructor(collection) {
        this.collection = collection;
    }
    async insert(draft) {
        const _id = new ObjectId();
        await guard(() => this.collection.insertOne({ ...draft, _id, __v: 0, keys: indexKeys(draft, _id) }));
        return { ...structuredClone(draft), id: _id.toHexString(), version: 0 };
    }
    async get(id) {
        const _id = parseId(id);
        if (!_id)
            return null;
        const doc = await guard(() => this.collection.findOne({ _id }));
        return doc && toUser(doc);
    }
    async findByKeys(keys) {
        if (keys.length === 0)
            return [];
        const docs = await guard(() => this.collection.find({ keys: { $in: keys } }).toArray());
        return docs.map(toUser);
    }
    async replace(next) {
        const _id = parseId(next.id);
        if (!_id)
            throw new NotFoundError("user");
        const { id: _, version, ...fields } = next;
        const result = await guard(() => this.collection.replaceOne({ _id, __v: version }, { ...fields, __v: version + 1, keys: indexKeys(next, _id) }));
        if (result.matchedCount === 0) {
            const exists = await guard(() => this.collection.countDocuments({ _id }, { limit: 1 }));
            throw exists ? new VersionConflictError() : new NotFoundError("user");
        }
        return { ...structuredClone(fields), id: _id.toHexString(), version: version + 1 };
    }
}
export class MongoSessionStore {
    collection;
    constructor(collection) {
        this.collection = collection;
    }
    async insert(draft) {
        const { id, ...fields } = draft;
        const _id = id === undefined ? new ObjectId() : ObjectId.createFromHexString(id);
        await guard(() => this.collection.insertOne({ ...fields, _id }));
        return { ...structuredClone(fields), id: _id.toHexString() };
    }
    async get(id) {
        const _id = parseId(id);
        if (!_id)
            return null;
        const doc = await guard(() => this.collection.findOne({ _id }));
        return doc && toSession(doc);
    }
    async rotate(id, rotation) {
        const _id = parseId(id);
        if (!_id)
            return null;
        const doc = await guard(() => this.collection.findOneAndUpdate({ _id, refreshHash: rotation.expectedHash, revokedAt: null }, {
            $set: { refreshHash: rotation.nextHash, rotatedAt: rotation.rotatedAt, expiresAt: rotation.expiresAt },
            $push: { spentRefreshHashes: { $each: [rotation.expectedHash], $slice: -SPENT_HASHES_KEPT } },
        }, { returnDocument: "after" }));
        return doc && toSession(doc);
    }
    async promote(id, userId, refreshHash, expiresAt) {
        const _id = parseId(id);
        if (!_id)
            return null;
        const doc = await guard(() => this.collection.findOneAndUpdate({ _id, userId: null, revokedAt: null }, 
        // The first refresh token is issued now.
        { $set: { userId, refreshHash, rotatedAt: new Date(), expiresAt } }, { returnDocument: "after" }));
        return doc && toSession(doc);
    }
    async revoke(id, reason) {
        const _id = parseId(id);
        if (!_id)
            return;
        // The first revocation stands: its reason (e.g. token reuse) is the one worth keeping.
        await guard(() => this.collection.updateOne({ _id, revokedAt: null }, { $set: { revokedAt: new Date(), revokeReason: reason } }));
    }
    async revokeAllForUser(userId, reason) {
        const result = await guard(() => this.collection.updateMany({ userId, revokedAt: null }, { $set: { revokedAt: new Date(), revokeReason: reason } }));
        return result.modifiedCount;
    }
    async revokeOldest(userId, keep, now, reason) {
        const excess = await guard(() => this.collection.find({ userId, revokedAt: null, expiresAt: { $gt: now } }, { projection: { _id: 1 } }).sort({ createdAt: -1, _id: -1 }).skip(keep).toArray());
        if (excess.length === 0)
            return 0;
        const result = await guard(() => this.collection.updateMany({ _id: { $in: excess.map((d) => d._id) }, revokedAt: null }, { $set: { revokedAt: new Date(), revokeReason: reason } }));
        return result.modifiedCount;
    }
}
export class MongoReplayStore {
    collection;
    constructor(collection) {
        this.collection = collection;
    }
    async remember(key, value, expiresAt) {
        for (;;) {
            try {
                // Overwrites a missing or expired entry; over a live one the upsert inserts a second _id and fails, atomically.
                await guard(() => this.collection.updateOne({ _id: key, expiresAt: { $lte: new Date() } }, { $set: { value, expiresAt } }, { upsert: true }));
                return { value: structuredClone(value), created: true };
            }
            catch (err) {
                if (!(err instanceof DuplicateKeyError))
                    throw err;
            }
            const live = await this.recall(key);
            if (live)
                return { value: live, created: false };
            // The live entry expired between the two calls: try again, now over an expired one.
        }
    }
    async recall(key) {
        // TTL deletion is lazy (and missing on some servers), so expiry is checked here.
        const doc = await guard(() => this.collection.findOne({ _id: key, expiresAt: { $gt: new Date() } }));
        return doc?.value ?? null;
    }
}
export class MongoCredentialStore {
    collection;
    constructor(collection) {
        this.collection = collection;
    }
    async get(appid) {
        const doc = await guard(() => this.collection.findOne({ _id: appid }));
        return doc && toCredential(doc);
    }
    async acquireLease(appid, owner, until, now) {
        try {
            await guard(() => this.collection.updateOne({ _id: appid, $or: [{ leaseOwner: null }, { leaseUntil: { $lte: now } }, { leaseOwner: owner }] }, { $set: { leaseOwner: owner, leaseUntil: until }, $setOnInsert: { accessToken: null, expiresAt: null } }, { upsert: true }));
            return true;
        }
        catch (err) {
            // The upsert found no lease it may take and collided with the record whose live lease is another's.
            if (err instanceof DuplicateKeyError)
                return false;
            throw err;
        }
    }
    async saveToken(appid, owner, accessToken, expiresAt) {
        await guard(() => this.collection.updateOne({ _id: appid }, { $set: { accessToken, expiresAt } }, { upsert: true }));
        await guard(() => this.collection.updateOne({ _id: appid, leaseOwner: owner }, { $set: { leaseOwner: null, leaseUntil: null } }));
    }
    async expireToken(appid, accessToken) {
        // No token at all, as before the first fetch: nothing can mistake it for a usable one.
        const result = await guard(() => this.collection.updateOne({ _id: appid, accessToken }, { $set: { accessToken: null, expiresAt: null } }));
        return result.modifiedCount === 1;
    }
}
/** A TTL index on `expiresAt`; servers without TTL indexes (FerretDB 1.x) keep expired documents, which every read skips anyway. */
async function createTtlIndex(collection) {
    await collection.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 }).catch((err) => {
        if (!(err instanceof MongoServerError && err.code === NOT_IMPLEMENTED))
            throw err;
    });
}
/** The ObjectId an id names, or null when it is not 24 hex digits (which `new ObjectId` would also accept as 12 raw bytes). */
function parseId(id) {
    return /^[0-9a-f]{24}$/i.test(id) ? ObjectId.createFromHexString(id) : null;
}
/**
 * The user's unique keys plus one naming the user itself: a unique index stores an empty array as
 * one `undefined` key, which only one document may hold, so every user needs a key of its own.
 */
function indexKeys(user, _id) {
    return [...uniqueKeysOf(user), `user:${_id.toHexString()}`];
}
function toUser({ _id, __v, keys: _, ...fields }) {
    return { ...fields, id: _id.toHexString(), version: __v };
}
function toSession({ _id, ...fields }) {
    return { ...fields, id: _id.toHexString() };
}
function toCredential({ _id, ...fields }) {
    return { ...fields, appid: _id };
}
/** Runs a driver call, turning the driver's errors the service must tell apart into the store's own. */
async function guard(op) {
    try {
        return await op();
    }
    catch (err) {
        throw translate(err);
    }
}
function translate(err) {
    if (!(err instanceof MongoError))
        return err;
    if (err instanceof MongoServerError && err.code === 11000)
        return new DuplicateKeyError(duplicateKind(err));
    if (err instanceof MongoNetworkError || // includes timeouts and a cleared connection pool
        err instanceof MongoServerSelectionError ||
        err instanceof MongoOperationTimeoutError ||
        err.hasErrorLabel(MongoErrorLabel.RetryableWriteError) ||
        (typeof err.code === "number" && NOT_SERVING_CODES.has(err.code))) {
        return new StoreUnavailableError(err);
    }
    return err;
}
/** Which unique key a duplicate-key error is about: from `keyValue`, or from the message where a server omits it. */
function duplicateKind(err) {
    const value = err.keyValue?.keys ?? /dup key: \{ ?keys: "([^"]*)"/.exec(err.message)?.[1];
    if (typeof value !== "string")
        return "unknown";
    const kind = keyKind(value);
    return UNIQUE_KEY_KINDS.includes(kind) ? kind : "unknown";
}
