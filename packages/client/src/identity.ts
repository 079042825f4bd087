import type { User } from "./gen/identity/v1/identity_pb.js";

/** Whose a request's access token is, as a check (CheckLogin, or a local verifier) proved it. */
export interface VerifiedIdentity {
  userId: string;
  sessionId: string;
  /** The configured app key the session belongs to (the token's `aud`). */
  appId: string;
  expireTime: Date;
  /** Set when the service was asked (CheckLogin); a local verifier knows only the token's claims. */
  user?: User;
}

/**
 * Checks one access token. Refuses with a ConnectError carrying the service's ErrorInfo reason
 * (`TOKEN_EXPIRED`, `TOKEN_REVOKED`, `ACCOUNT_DISABLED`, ...), so callers branch the same way
 * whichever check they use.
 */
export type TokenCheck = (accessToken: string, options?: { signal?: AbortSignal }) => Promise<VerifiedIdentity>;
