import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createCheckLogin, createIdentityClient } from "./client.js";
import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { LRUCache } from "lru-cache";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import type { TokenCheck } from "./identity.js";
import { createRevocationList, MAX_CLOCK_SKEW_SECONDS, type RevocableClaims } from "./revocation-list.js";
import { describeFailure, watchRevocations, type StreamState } from "./revocation-watch.js";

export type { StreamState };

/**
 * What a check does while the revocation stream is not live (before it first catches up, while it
 * reconnects or replays): "checkLogin" asks the service per request, "refuse" fails closed with
 * UNAVAILABLE, "accept" trusts signature, expiry and the revocations already heard.
 */
export type WhenStreamDown = "checkLogin" | "refuse" | "accept";

export interface TokenVerifierOptions {
  /** The service's gRPC listener, e.g. http://identity:9090: WatchRevocations and the CheckLogin fallback. */
  grpcUrl: string;
  /** The service's HTTP listener, whose /.well-known/jwks.json has the signing keys; or give `jwksUrl`. */
  httpUrl?: string;
  jwksUrl?: string;
  /** An internal caller's x-api-key: the stream and CheckLogin by token are internal-only. */
  apiKey: string;
  /** The service's `tokens.issuer`; tokens of any other issuer are refused. */
  issuer: string;
  /** App keys whose tokens are accepted (the `aud` claim); any app's when absent. */
  audience?: string[];
  /** Default "checkLogin". */
  whenStreamDown?: WhenStreamDown;
  /** Verified tokens remembered by exact string, so a repeat skips the signature check. Default 50,000. */
  cacheSize?: number;
  /** Bound on each call to the service: a fallback CheckLogin, a JWKS fetch. Default 2,000 ms. */
  callTimeoutMs?: number;
  /** Least time between two JWKS fetches for an unknown kid (a rotated key). Default 30,000 ms. */
  jwksCooldownMs?: number;
  /** Reconnect backoff of the stream: doubles from initialDelayMs to maxDelayMs, half of it random. Defaults 250 and 5,000 ms. */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
}

export interface TokenVerifierStats {
  stream: StreamState;
  /** When the stream last caught up; null until it has. */
  caughtUpAt: Date | null;
  reconnects: number;
  /** Why the stream last broke (code, reason, message). */
  lastStreamError?: string;
  cachedTokens: number;
  revokedSessions: number;
  revokedUsers: number;
}

export interface TokenVerifier {
  check: TokenCheck;
  /** Resolves once the keys are loaded and the stream has caught up; rejects saying what is missing after `timeoutMs` (default 10,000). */
  ready(options?: { timeoutMs?: number }): Promise<void>;
  stats(): TokenVerifierStats;
  close(): Promise<void>;
}

type Refusal = "TOKEN_MISSING" | "TOKEN_INVALID" | "TOKEN_EXPIRED" | "TOKEN_REVOKED" | "ACCOUNT_DISABLED" | "NOT_REGISTERED" | "UPSTREAM_UNAVAILABLE";

// The service's codes and texts for these reasons (src/service/errors.ts), so a local refusal reads as a remote one.
const REFUSALS: Record<Refusal, [Code, string]> = {
  TOKEN_MISSING: [Code.Unauthenticated, "no access token: send authorization: Bearer <accessToken>"],
  TOKEN_INVALID: [Code.Unauthenticated, "the token is not valid"],
  TOKEN_EXPIRED: [Code.Unauthenticated, "the token has expired; call Refresh, or Login again"],
  TOKEN_REVOKED: [Code.Unauthenticated, "the session has ended; Login again"],
  ACCOUNT_DISABLED: [Code.PermissionDenied, "this account is disabled"],
  NOT_REGISTERED: [Code.FailedPrecondition, "this session has no user yet: call Oauth or BindPhone first"],
  UPSTREAM_UNAVAILABLE: [Code.Unavailable, "the identity service cannot be reached to check this token; retry"],
};

function refusal(reason: Refusal, message = REFUSALS[reason][1]): ConnectError {
  return new ConnectError(message, REFUSALS[reason][0], undefined, [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { domain: "identity.v1", reason }) }]);
}

/** As the service: RFC 9068's type, its two algorithms, a bound on length, one encoding per token. */
const ACCESS_TOKEN_TYPE = "at+jwt";
const ALGORITHMS = ["ES256", "EdDSA"];
const MAX_TOKEN_CHARS = 4096;
const SEGMENT = /^[A-Za-z0-9_-]+$/;
const PRUNE_INTERVAL_MS = 60_000;

interface Claims extends RevocableClaims {
  aud: string;
}

/** The keys could not be fetched: the token is neither good nor bad yet. */
class KeysUnavailable extends Error {}

/**
 * Verifies access tokens in process against the service's JWKS and refuses those revoked on any
 * instance, as WatchRevocations tells; see docs/clients.md, "Verifying tokens locally".
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  if (!options.apiKey) throw new Error("createTokenVerifier: apiKey is required (WatchRevocations is internal-only)");
  if (!options.issuer) throw new Error("createTokenVerifier: issuer is required");
  const jwksUrl = options.jwksUrl ?? (options.httpUrl ? new URL("/.well-known/jwks.json", options.httpUrl).href : undefined);
  if (!jwksUrl) throw new Error("createTokenVerifier: give httpUrl (the service's HTTP listener) or jwksUrl");
  const whenStreamDown = options.whenStreamDown ?? "checkLogin";
  const audience = options.audience && new Set(options.audience);
  const callTimeoutMs = options.callTimeoutMs ?? 2000;

  // One internal client (its x-api-key on every call) carries the stream and the fallback.
  const client = createIdentityClient({ baseUrl: options.grpcUrl, transport: "grpc", apiKey: options.apiKey });
  const askService = createCheckLogin(client, { timeoutMs: callTimeoutMs });

  const remoteKeys = createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: options.jwksCooldownMs ?? 30_000, timeoutDuration: callTimeoutMs });
  const keys: JWTVerifyGetKey = async (header, token) => {
    try {
      return await remoteKeys(header, token);
    } catch (e) {
      // A fetch that failed (network, timeout, not 200, not a key set) says nothing about the token.
      const fetchFailed = !(e instanceof errors.JOSEError) || e instanceof errors.JWKSTimeout || e instanceof errors.JWKSInvalid || e.code === "ERR_JOSE_GENERIC";
      throw fetchFailed ? new KeysUnavailable(describeFailure(e), { cause: e }) : e;
    }
  };

  const verified = new LRUCache<string, Claims>({ max: options.cacheSize ?? 50_000 });
  const revocations = createRevocationList();
  const watch = watchRevocations({
    client,
    onMessage: (message) => {
      for (const revocation of message.revocations) revocations.add(revocation);
    },
    initialDelayMs: options.reconnect?.initialDelayMs ?? 250,
    maxDelayMs: options.reconnect?.maxDelayMs ?? 5000,
    firstMessageTimeoutMs: 10_000,
  });
  const pruning = setInterval(() => revocations.prune(Date.now()), PRUNE_INTERVAL_MS).unref();

  /** The token's claims as the service's own verification gives them, or its refusal. */
  async function verify(token: string, now: number): Promise<Claims> {
    const known = verified.get(token);
    if (known) {
      if (known.exp * 1000 > now) return known;
      verified.delete(token);
      throw refusal("TOKEN_EXPIRED");
    }
    if (!isCanonical(token)) throw refusal("TOKEN_INVALID");
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: options.issuer,
        algorithms: ALGORITHMS,
        typ: ACCESS_TOKEN_TYPE,
        currentDate: new Date(now),
        requiredClaims: ["sid", "exp", "aud"],
      });
      const { sid, sub, aud, exp, iat } = payload;
      if (typeof sid !== "string" || typeof aud !== "string" || typeof exp !== "number") throw refusal("TOKEN_INVALID");
      if (iat !== undefined && iat > now / 1000 + MAX_CLOCK_SKEW_SECONDS) throw refusal("TOKEN_INVALID");
      if (audience && !audience.has(aud)) throw refusal("TOKEN_INVALID");
      const claims: Claims = Object.freeze({ sid, aud, exp, ...(typeof sub === "string" ? { sub } : {}), ...(iat !== undefined ? { iat } : {}) });
      verified.set(token, claims);
      return claims;
    } catch (e) {
      if (e instanceof ConnectError) throw e;
      if (e instanceof KeysUnavailable) throw refusal("UPSTREAM_UNAVAILABLE", `the signing keys could not be fetched (${e.message}); retry`);
      if (e instanceof errors.JWTExpired) throw refusal("TOKEN_EXPIRED");
      if (e instanceof errors.JOSEError) throw refusal("TOKEN_INVALID");
      throw e;
    }
  }

  const check: TokenCheck = async (token, checkOptions) => {
    if (!token) throw refusal("TOKEN_MISSING");
    if (token.length > MAX_TOKEN_CHARS) throw refusal("TOKEN_INVALID");
    const now = Date.now();
    // Signature and expiry first, always: a forgery never costs a call to the service.
    const claims = await verify(token, now);
    const verdict = revocations.verdict(claims);
    if (verdict === "TOKEN_REVOKED" || verdict === "ACCOUNT_DISABLED") throw refusal(verdict);
    if (verdict === "UNKNOWN" || !watch.isLive(now)) {
      if (whenStreamDown === "checkLogin") return askService(token, checkOptions);
      if (whenStreamDown === "refuse") throw refusal("UPSTREAM_UNAVAILABLE", "the revocation stream is not live, so this token cannot be checked; retry");
    }
    if (claims.sub === undefined) throw refusal("NOT_REGISTERED");
    return { userId: claims.sub, sessionId: claims.sid, appId: claims.aud, expireTime: new Date(claims.exp * 1000) };
  };

  async function ready({ timeoutMs = 10_000 } = {}): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const { state, lastError } = watch.stats();
        reject(new Error(`token verifier not ready after ${timeoutMs} ms: stream ${state}${lastError ? ` (${lastError})` : ""}`));
      }, timeoutMs);
    });
    const keysLoaded = remoteKeys.reload().catch((e: unknown) => {
      throw new Error(`token verifier: the JWKS at ${jwksUrl} could not be loaded: ${describeFailure(e)}`);
    });
    try {
      await Promise.race([Promise.all([keysLoaded, watch.caughtUp]), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    check,
    ready,
    stats() {
      const { state, caughtUpAt, reconnects, lastError } = watch.stats();
      const size = revocations.size;
      return {
        stream: state,
        caughtUpAt,
        reconnects,
        ...(lastError ? { lastStreamError: lastError } : {}),
        cachedTokens: verified.size,
        revokedSessions: size.sessions,
        revokedUsers: size.users,
      };
    },
    async close() {
      clearInterval(pruning);
      await watch.close();
    },
  };
}

/** Three non-empty base64url segments, each exactly as encoding its bytes again gives it (jose decodes leniently). */
function isCanonical(token: string): boolean {
  const parts = token.split(".");
  return parts.length === 3 && parts.every((part) => SEGMENT.test(part) && Buffer.from(part, "base64url").toString("base64url") === part);
}
