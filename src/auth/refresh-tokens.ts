import { createHmac, hash, randomFillSync, timingSafeEqual } from "node:crypto";

// A refresh token is "<sessionId>.<secret>". The session id lets one read find the session;
// only sha256 of the whole token is stored.

const TOKEN_PATTERN = /^([0-9a-f]{24})\.([A-Za-z0-9_-]{43})$/;

// Secrets come from a pool one randomFillSync refills every 128 (docs/performance.md); bytes handed
// out are zeroed, so the pool holds only secrets not yet issued.
const randomPool = Buffer.alloc(4096);
let poolOffset = randomPool.length;

function randomSecret(): string {
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

export function newRefreshToken(sessionId: string): string {
  return `${sessionId}.${randomSecret()}`;
}

/** A fresh per-session chain key. */
export function newChainKey(): string {
  return randomSecret();
}

/** The session id, or null when the token is not of our shape. */
export function sessionIdOf(token: string): string | null {
  return TOKEN_PATTERN.exec(token)?.[1] ?? null;
}

// crypto.hash (Node ≥ 20.12): one call instead of a Hash object, about twice as fast for a token.
export function hashRefreshToken(token: string): string {
  return hash("sha256", token, "base64url");
}

/**
 * Whether two token hashes are equal, in constant time. The session is found by the id in the
 * token, not by its hash, so the stored hash is compared here in JS: `===` stops at the first
 * differing character.
 */
export function sameHash(stored: string | null | undefined, presented: string): boolean {
  if (!stored || stored.length !== presented.length) return false;
  return timingSafeEqual(Buffer.from(stored), Buffer.from(presented));
}

/**
 * The token that replaces `parent`. Derived rather than random so that a parallel refresh
 * of the same parent inside the grace window gets the same child instead of a second one,
 * without the store ever holding a usable token.
 */
export function childRefreshToken(chainKey: string, sessionId: string, parent: string): string {
  return `${sessionId}.${createHmac("sha256", chainKey).update(parent).digest("base64url")}`;
}
