import { createHmac, hash, randomFillSync, timingSafeEqual } from "node:crypto";
// A refresh token is "<sessionId>.<secret>". The session id lets one read find the session;
// only sha256 of the whole token is stored.
const TOKEN_PATTERN = /^([0-9a-f]{24})\.([A-Za-z0-9_-]{43})$/;
// Secrets are cut from a pool that one randomFillSync refills every 128 of them, as Node's
// randomUUID does: a call into OpenSSL per secret cost a login about 2% of its CPU (profiled).
// Bytes handed out are zeroed, so the pool holds only secrets not yet issued.
const randomPool = Buffer.alloc(4096);
let poolOffset = randomPool.length;
function randomSecret() {
    if (poolOffset === randomPool.length) {
        randomFillSync(randomPool);
        poolOffset = 0;
    }
    const end = poolOffset + 32;
    const secret = randomPool.toString("base64url", poolOffset, end);
    randomPool.fill(0, poolOffset, end);
    poolOffset = end;
    return secret;
}
export function newRefreshToken(sessionId) {
    return `${sessionId}.${randomSecret()}`;
}
/** A fresh per-session chain key. */
export function newChainKey() {
    return randomSecret();
}
/** The session id, or null when the token is not of our shape. */
export function sessionIdOf(token) {
    return TOKEN_PATTERN.exec(token)?.[1] ?? null;
}
// crypto.hash (Node ≥ 20.12): one call instead of a Hash object, about twice as fast for a token.
export function hashRefreshToken(token) {
    return hash("sha256", token, "base64url");
}
/**
 * Whether two token hashes are equal, in constant time. The session is found by the id in the
 * token, not by its hash, so the stored hash is compared here in JS: `===` stops at the first
 * differing character.
 */
export function sameHash(stored, presented) {
    if (!stored || stored.length !== presented.length)
        return false;
    return timingSafeEqual(Buffer.from(stored), Buffer.from(presented));
}
/**
 * The token that replaces `parent`. Derived rather than random so that a parallel refresh
 * of the same parent inside the grace window gets the same child instead of a second one,
 * without the store ever holding a usable token.
 */
export function childRefreshToken(chainKey, sessionId, parent) {
    return `${sessionId}.${createHmac("sha256", chainKey).update(parent).digest("base64url")}`;
}
