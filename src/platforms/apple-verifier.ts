import { createHash } from "node:crypto";
import { createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from "jose";

// Checks a Sign in with Apple identity token (wechat-api.md §7c): RS256 signature by a key from
// Apple's JWKS (picked by the token's kid; jose never follows a jku or x5u in the token), issuer,
// audience = one of our client ids, expiry, and the nonce when the caller supplies one.

export type AppleTokenErrorKind =
  /** Signed by Apple for us, but past its exp. */
  | "expired"
  /** Not a token Apple issued for this app: bad signature, alg, issuer, audience, nonce, claims. */
  | "invalid"
  /** Apple's keys could not be fetched (network, timeout, bad JWKS answer); the token may be fine. */
  | "unavailable";

export class AppleTokenError extends Error {
  constructor(readonly kind: AppleTokenErrorKind) {
    super(`apple identity token: ${kind}`);
    this.name = "AppleTokenError";
  }
}

export interface AppleVerifierOptions {
  /** https://appleid.apple.com/auth/keys, or the simulator's `${url}/apple/auth/keys`. */
  jwksUrl: string;
  issuer?: string;
  /** Clock for exp/iat checks; defaults to Date.now. */
  now?: () => number;
}

export interface AppleIdentity {
  /** The stable, team-scoped user id. */
  sub: string;
  email?: string;
  emailVerified?: boolean;
}

export interface AppleVerifyOptions {
  /** Our client ids: bundle ids for native apps, Services IDs for the web. */
  audience: string[];
  /**
   * The nonce the app generated for this sign-in. The token's `nonce` claim must equal it, or equal
   * its SHA-256 as lowercase hex (what apps usually hand to Apple, keeping the raw value): both accepted.
   */
  nonce?: string;
}

/** Apple sends booleans as "true"/"false" strings in some tokens and as JSON booleans in others. */
function flag(value: unknown): boolean | undefined {
  if (value === true || value === "true") return true;
  if (value === false || value === "false") return false;
  return undefined;
}

function sha256Hex(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

/** The kind for what jwtVerify threw; jose's error classes (and codes) are its API, the messages are not. */
function kindOf(error: unknown): AppleTokenErrorKind {
  if (error instanceof errors.JWTExpired) return "expired";
  // Fetching the JWKS: a timeout, a non-200 or unparsable answer (plain JOSEError), a malformed key set.
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return "unavailable";
  if (error instanceof errors.JOSEError) return error.code === errors.JOSEError.code ? "unavailable" : "invalid";
  // jose wraps everything about the token in its own errors; anything else is fetch failing (network).
  return "unavailable";
}

export function createAppleVerifier(options: AppleVerifierOptions) {
  const issuer = options.issuer ?? "https://appleid.apple.com";
  // Fetched on first use, cached, and refetched (at most every 30 s) when a token names an unknown kid.
  const keys = createRemoteJWKSet(new URL(options.jwksUrl));

  return {
    async verify(idToken: string, expected: AppleVerifyOptions): Promise<AppleIdentity> {
      if (expected.audience.length === 0) throw new TypeError("audience must list at least one client id");
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(idToken, keys, {
          algorithms: ["RS256"],
          issuer,
          audience: expected.audience,
          requiredClaims: ["sub", "exp", "iat"],
          ...(options.now ? { currentDate: new Date(options.now()) } : {}),
        }));
      } catch (error) {
        throw new AppleTokenError(kindOf(error));
      }
      if (expected.nonce !== undefined) {
        const claim = payload.nonce;
        if (typeof claim !== "string" || (claim !== expected.nonce && claim !== sha256Hex(expected.nonce))) {
          throw new AppleTokenError("invalid");
        }
      }
      const { sub, email } = payload;
      if (typeof sub !== "string" || sub === "") throw new AppleTokenError("invalid");
      const emailVerified = flag(payload.email_verified);
      return {
        sub,
        ...(typeof email === "string" && email !== "" ? { email } : {}),
        ...(emailVerified === undefined ? {} : { emailVerified }),
      };
    },
  };
}

export type AppleVerifier = ReturnType<typeof createAppleVerifier>;
