import { ObjectId } from "mongodb";
/** How many spent refresh-token hashes a session remembers for reuse detection. */
export const SPENT_HASHES_KEPT = 10;
/** A new id in ObjectId hex form, the id format of both stores. */
export function newObjectId() {
    return new ObjectId().toHexString();
}
/**
 * Every value that at most one user may hold, as strings "kind:value". Both stores index these
 * (MongoDB: a unique multikey index on `keys`), so uniqueness needs no transactions.
 */
export function uniqueKeysOf(user) {
    const keys = user.identities.map((i) => identityKey(i.platform, i.appid, i.openid));
    if (user.unionid)
        keys.push(`unionid:${user.unionid}`);
    if (user.phoneNumber)
        keys.push(phoneKey(user));
    if (user.username)
        keys.push(usernameKey(user.username));
    if (user.inviteCode)
        keys.push(inviteKey(user.inviteCode));
    return keys;
}
export const identityKey = (platform, appid, openid) => `identity:${platform}:${appid}:${openid}`;
export const unionidKey = (unionid) => `unionid:${unionid}`;
export const usernameKey = (username) => `username:${username.toLowerCase()}`;
export const inviteKey = (inviteCode) => `invite:${inviteCode.toUpperCase()}`;
/** One number, one key: +86 13800000000 and 13800000000 with country code 86 are the same phone. */
export function phoneKey(phone) {
    return phone.countryCode && phone.purePhoneNumber ? `phone:+${phone.countryCode}${phone.purePhoneNumber}` : `phone:${phone.phoneNumber}`;
}
export function keyKind(key) {
    return key.slice(0, key.indexOf(":"));
}
/** Base of the store's own errors; the service maps them to wire errors in one place. */
export class StoreError extends Error {
}
export class DuplicateKeyError extends StoreError {
    kind;
    constructor(kind) {
        super(`duplicate ${kind}`);
        this.kind = kind;
    }
}
export class VersionConflictError extends StoreError {
    constructor() {
        super("version conflict");
    }
}
export class NotFoundError extends StoreError {
    constructor(what) {
        super(`${what} not found`);
    }
}
/** The store could not be reached or did not answer in time. */
export class StoreUnavailableError extends StoreError {
    constructor(cause) {
        super("store unavailable", { cause });
    }
}
