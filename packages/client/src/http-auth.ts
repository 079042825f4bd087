// What the framework middleware share: the bearer token of a request, its check, and the HTTP answer
// to a refusal. The adapters (fastify.ts, express.ts) only read headers and write answers.
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { metadataOf, reasonOf } from "./errors.js";
import type { TokenCheck, VerifiedIdentity } from "./identity.js";

export interface IdentityAuthOptions {
  /** How a token is checked: createCheckLogin(client), or a local verifier's `check`. */
  check: TokenCheck;
  /**
   * Let a request without a bearer token through, with no identity. A token that is there but
   * refused is still answered 401/403: the client must refresh or log in, not be served as a guest.
   */
  optional?: boolean;
  /** Told of every failure answered 5xx (the check unreachable, misconfigured, or broken), for logs and alerts. */
  onError?: (error: unknown) => void;
}

/** The JSON body of a refusal: the Connect code and, when the service gave one, its ErrorInfo reason. Never the token. */
export interface RefusalBody {
  code: string;
  reason?: string;
}

export interface Refusal {
  status: number;
  headers: Record<string, string>;
  body: RefusalBody;
}

export type AuthOutcome = { identity: VerifiedIdentity | undefined; refusal?: undefined } | { refusal: Refusal; error?: unknown };

const STATUS: Partial<Record<Code, number>> = {
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 503,
};

// RFC 6750: a 401 tells the client which scheme, and whether the token it sent was the problem.
const CHALLENGE = { missing: 'Bearer realm="identity"', invalid: 'Bearer realm="identity", error="invalid_token"' };

/** The token of `authorization: Bearer <token>` (the scheme in any case, RFC 7235), else undefined. */
export function bearerToken(authorization: string | string[] | undefined): string | undefined {
  const value = Array.isArray(authorization) ? authorization[0] : authorization;
  return /^bearer +(\S+) *$/i.exec(value ?? "")?.[1];
}

/** Checks a request's bearer token; a refusal says what to answer. Never throws. */
export async function authenticateRequest(authorization: string | string[] | undefined, options: IdentityAuthOptions): Promise<AuthOutcome> {
  const token = bearerToken(authorization);
  if (token === undefined) {
    if (options.optional) return { identity: undefined };
    return { refusal: { status: 401, headers: { "www-authenticate": CHALLENGE.missing }, body: { code: "unauthenticated", reason: "TOKEN_MISSING" } } };
  }
  try {
    return { identity: await options.check(token) };
  } catch (error) {
    const refusal = refusalOf(error);
    if (refusal.status >= 500) options.onError?.(error);
    return { refusal, error };
  }
}

function refusalOf(error: unknown): Refusal {
  const code = error instanceof ConnectError ? error.code : Code.Internal;
  const reason = reasonOf(error);
  const body: RefusalBody = { code: codeToString(code), ...(reason ? { reason } : {}) };
  // A wrong x-api-key is this server's misconfiguration, not the user's token.
  const status = reason === "API_KEY_INVALID" ? 500 : (STATUS[code] ?? 500);
  const headers: Record<string, string> = {};
  if (status === 401) headers["www-authenticate"] = CHALLENGE.invalid;
  const retryAfter = metadataOf(error).retryAfterSeconds;
  if (retryAfter && (status === 429 || status === 503)) headers["retry-after"] = retryAfter;
  return { status, headers, body };
}
