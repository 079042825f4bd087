import { createPrivateKey, randomBytes, sign as signBytes, type KeyObject } from "node:crypto";
import { LRUCache } from "lru-cache";
import { createLocalJWKSet, errors, exportJWK, generateKeyPair, jwtVerify, type JWK } from "jose";
import { TokenError } from "./errors.js";

export type SigningAlgorithm = "ES256" | "EdDSA";
const ALGORITHMS: SigningAlgorithm[] = ["ES256", "EdDSA"];
/** RFC 9068 type: an access token can't be confused with any other JWT. */
const ACCESS_TOKEN_TYPE = "at+jwt";
/** How far ahead of our clock an `iat` may be (another instance's clock); further means a forged or broken token. */
const MAX_CLOCK_SKEW_SECONDS = 60;
const SEGMENT = /^[A-Za-z0-9_-]+$/;

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: KeyObject;
  /** Public half only, as published at /.well-known/jwks.json. */
  publicJwk: JWK;
}

export interface AccessClaims {
  /** Session id. */
  sid: string;
  /** User id; absent for a pending session. */
  sub?: string;
  /** Configured app key. */
  aud: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

export interface AccessTokenOptions {
  issuer: string;
  ttlSeconds: number;
  now?: () => number;
  /** How many verified tokens to remember (their signature check is the cost of every call). */
  verifiedCacheSize?: number;
}

/** A fresh key pair, for dev mode and for printing a key into a config. */
export async function generateSigningKey(alg: SigningAlgorithm = "ES256"): Promise<{ key: SigningKey; privateJwk: JWK }> {
  const pair = await generateKeyPair(alg, { extractable: true, ...(alg === "EdDSA" ? { crv: "Ed25519" } : {}) });
  // The date says which key is newer at a glance; the random part keeps two of one day apart.
  const kid = `${new Date().toISOString().slice(0, 10)}-${randomBytes(4).toString("hex")}`;
  const privateJwk = { ...(await exportJWK(pair.privateKey)), alg, kid };
  return { key: await importSigningKey(privateJwk), privateJwk };
}

/** Imports a private JWK from the config (`kid` and `alg` required there). */
export async function importSigningKey(jwk: JWK): Promise<SigningKey> {
  const alg = jwk.alg as SigningAlgorithm;
  if (!ALGORITHMS.includes(alg)) throw new Error(`unsupported signing algorithm ${String(jwk.alg)}`);
  if (!jwk.kid) throw new Error("signing key has no kid");
  const privateKey = createPrivateKey({ key: jwk as import("node:crypto").JsonWebKey, format: "jwk" });
  const fits = alg === "ES256" ? privateKey.asymmetricKeyType === "ec" && privateKey.asymmetricKeyDetails?.namedCurve === "prime256v1" : privateKey.asymmetricKeyType === "ed25519";
  if (!fits) throw new Error(`signing key ${jwk.kid} is not an ${alg === "ES256" ? "ES256 (P-256)" : "EdDSA (Ed25519)"} key`);
  const { d: _private, ...publicJwk } = jwk;
  return { kid: jwk.kid, alg, privateKey, publicJwk: { ...publicJwk, use: "sig" } };
}

/** Signs with the first key; verifies with any of them, so older keys keep working until their tokens expire. */
export function createAccessTokens(keys: SigningKey[], options: AccessTokenOptions) {
  const [current] = keys;
  if (!current) throw new Error("at least one signing key is needed");
  const now = options.now ?? Date.now;
  const jwks = { keys: keys.map((k) => k.publicJwk) };
  const keySet = createLocalJWKSet(jwks);
  const algorithms = [...new Set(keys.map((k) => k.alg))];
  // Only verified tokens are cached, by exact string, so a forgery never hits; expiry is still
  // checked on every hit (docs/performance.md).
  const verified = new LRUCache<string, AccessClaims>({ max: options.verifiedCacheSize ?? 50_000 });
  const protectedHeader = base64url(JSON.stringify({ alg: current.alg, kid: current.kid, typ: ACCESS_TOKEN_TYPE }));

  return {
    jwks: () => jwks,

    // Signed with node:crypto, not jose's WebCrypto (docs/performance.md); verified with jose.
    async sign(claims: { sid: string; sub?: string; aud: string }): Promise<{ token: string; expiresAt: Date }> {
      const iat = Math.floor(now() / 1000);
      const exp = iat + options.ttlSeconds;
      const payload = { sid: claims.sid, iss: options.issuer, aud: claims.aud, iat, exp, ...(claims.sub ? { sub: claims.sub } : {}) };
      const signingInput = `${protectedHeader}.${base64url(JSON.stringify(payload))}`;
      const signature =
        current.alg === "ES256"
          ? signBytes("sha256", Buffer.from(signingInput), { key: current.privateKey, dsaEncoding: "ieee-p1363" })
          : signBytes(null, Buffer.from(signingInput), current.privateKey);
      return { token: `${signingInput}.${signature.toString("base64url")}`, expiresAt: new Date(exp * 1000) };
    },

    /**
     * The token's claims, or TokenError "invalid" / "expired". Says nothing about revocation.
     * `expiredGraceSeconds` accepts a genuine token that long past its expiry (Logout's).
     */
    async verify(token: string, { expiredGraceSeconds = 0 } = {}): Promise<AccessClaims> {
      const known = verified.get(token);
      if (known) {
        if (known.exp * 1000 > now()) return known;
        verified.delete(token);
        if (!expiredGraceSeconds) throw new TokenError("expired");
      }
      // jose decodes leniently ('=' padding, stray low bits in the last character), so many strings
      // would carry one signature; only the one encoding we produce is accepted.
      if (!isCanonical(token)) throw new TokenError("invalid");
      try {
        const { payload } = await jwtVerify(token, keySet, {
          issuer: options.issuer,
          algorithms,
          typ: ACCESS_TOKEN_TYPE,
          currentDate: new Date(now()),
          clockTolerance: expiredGraceSeconds,
          requiredClaims: ["sid", "exp", "aud"],
        });
        const { sid, sub, aud, exp, iat } = payload;
        if (typeof sid !== "string" || typeof aud !== "string" || typeof exp !== "number") throw new TokenError("invalid");
        // jose checks iat only against a maximum age, which we do not set.
        if (iat !== undefined && iat > now() / 1000 + MAX_CLOCK_SKEW_SECONDS) throw new TokenError("invalid");
        const claims: AccessClaims = Object.freeze({ sid, aud, exp, ...(typeof sub === "string" ? { sub } : {}) });
        if (exp * 1000 > now()) verified.set(token, claims);
        return claims;
      } catch (e) {
        if (e instanceof errors.JWTExpired) throw new TokenError("expired");
        if (e instanceof errors.JOSEError || e instanceof TokenError) throw new TokenError("invalid");
        throw e;
      }
    },
  };
}

export type AccessTokens = ReturnType<typeof createAccessTokens>;

const base64url = (text: string) => Buffer.from(text).toString("base64url");

/** Three non-empty base64url segments, each exactly as encoding its bytes again gives it. */
function isCanonical(token: string): boolean {
  const parts = token.split(".");
  return parts.length === 3 && parts.every((part) => SEGMENT.test(part) && Buffer.from(part, "base64url").toString("base64url") === part);
}
