/** Why a token was refused; the service maps each kind to UNAUTHENTICATED with its reason. */
export type TokenErrorKind = "missing" | "invalid" | "expired" | "revoked" | "reused" | "session_expired" | "refresh_expired";

export class TokenError extends Error {
  constructor(
    readonly kind: TokenErrorKind,
    /** Whose session it was, when known: a reused refresh token's, for the audit log. */
    readonly userId?: string,
  ) {
    super(`token ${kind}`);
  }
}

/** The session's user may not sign in (status disabled). */
export class AccountDisabledError extends Error {
  constructor() {
    super("account disabled");
  }
}
