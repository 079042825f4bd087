// The one place where internal errors become wire errors: a Connect code plus a
// google.rpc.ErrorInfo (domain identity.v1, UPPER_SNAKE reason) that plain JSON clients can read.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AccountDisabledError, TokenError, type TokenErrorKind } from "../auth/errors.js";
import { DuplicateKeyError, NotFoundError, StoreUnavailableError, VersionConflictError } from "../store/store.js";
import { AlipayError, type AlipayErrorKind } from "../platforms/alipay-client.js";
import { AppleTokenError } from "../platforms/apple-verifier.js";
import { WechatError, type WechatErrorKind } from "../wechat/wechat-client.js";

export const ERROR_DOMAIN = "identity.v1";

/**
 * Every reason the service answers, each naming its Connect code once (the HTTP status follows
 * from the code). Maps from reasons, such as the seed routes' messages, are `Record<Reason, …>`,
 * so a reason added here without its mapping does not compile.
 */
export const REASONS = {
  // The request itself
  FIELD_INVALID: Code.InvalidArgument,
  REQUEST_INVALID: Code.InvalidArgument,
  REQUEST_TOO_LARGE: Code.InvalidArgument,
  FIELD_NOT_ALLOWED: Code.PermissionDenied,
  PERMISSION_DENIED: Code.PermissionDenied,
  ROLE_REQUIRED: Code.PermissionDenied,
  CONTENT_RISKY: Code.InvalidArgument,
  APP_NOT_FOUND: Code.NotFound,
  USER_NOT_FOUND: Code.NotFound,
  NOT_FOUND: Code.NotFound,
  SERVICE_UNKNOWN: Code.NotFound,
  PLATFORM_UNSUPPORTED: Code.FailedPrecondition,
  RATE_LIMITED: Code.ResourceExhausted,
  // Credentials and sessions
  TOKEN_MISSING: Code.Unauthenticated,
  TOKEN_INVALID: Code.Unauthenticated,
  TOKEN_EXPIRED: Code.Unauthenticated,
  TOKEN_REVOKED: Code.Unauthenticated,
  REFRESH_TOKEN_REUSED: Code.Unauthenticated,
  SESSION_EXPIRED: Code.Unauthenticated,
  ID_TOKEN_INVALID: Code.Unauthenticated,
  ID_TOKEN_EXPIRED: Code.Unauthenticated,
  API_KEY_INVALID: Code.Unauthenticated,
  BAD_CREDENTIALS: Code.Unauthenticated,
  ACCOUNT_DISABLED: Code.PermissionDenied,
  NOT_REGISTERED: Code.FailedPrecondition,
  // The platform's codes and data
  CODE_INVALID: Code.InvalidArgument,
  CODE_USED: Code.InvalidArgument,
  USER_BLOCKED_BY_PLATFORM: Code.PermissionDenied,
  DECRYPT_FAILED: Code.InvalidArgument,
  SIGNATURE_INVALID: Code.InvalidArgument,
  SESSION_KEY_STALE: Code.FailedPrecondition,
  SESSION_MISMATCH: Code.FailedPrecondition,
  // Users
  PHONE_TAKEN: Code.AlreadyExists,
  USERNAME_TAKEN: Code.AlreadyExists,
  IDENTITY_TAKEN: Code.AlreadyExists,
  ACCOUNT_CONFLICT: Code.FailedPrecondition,
  LAST_SIGN_IN_METHOD: Code.FailedPrecondition,
  REAUTH_REQUIRED: Code.FailedPrecondition,
  VERSION_CONFLICT: Code.Aborted,
  // Our dependencies, and us
  UPSTREAM_UNAVAILABLE: Code.Unavailable,
  STORE_UNAVAILABLE: Code.Unavailable,
  APP_MISCONFIGURED: Code.Internal,
  UPSTREAM_ERROR: Code.Internal,
  INTERNAL: Code.Internal,
} as const satisfies Record<string, Code>;

export type Reason = keyof typeof REASONS;

export function isReason(value: string): value is Reason {
  return Object.hasOwn(REASONS, value);
}

export function apiError(reason: Reason, message: string, metadata: Record<string, string> = {}): ConnectError {
  // A retry hint also goes out as the standard header, for HTTP clients and the seed routes alike.
  const header = metadata.retryAfterSeconds ? { "retry-after": metadata.retryAfterSeconds } : undefined;
  return new ConnectError(message, REASONS[reason], header, [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { domain: ERROR_DOMAIN, reason, metadata }) }]);
}

/** INVALID_ARGUMENT / FIELD_INVALID naming the field, with a BadRequest field violation. */
export function fieldInvalid(field: string, description: string): ConnectError {
  const error = apiError("FIELD_INVALID", `${field}: ${description}`, { field });
  error.details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: [{ field, description }] }) });
  return error;
}

const TOKEN_REASONS: Record<TokenErrorKind, [Reason, string]> = {
  missing: ["TOKEN_MISSING", "no access token: send authorization: Bearer <accessToken>"],
  invalid: ["TOKEN_INVALID", "the token is not valid"],
  expired: ["TOKEN_EXPIRED", "the token has expired; call Refresh, or Login again"],
  revoked: ["TOKEN_REVOKED", "the session has ended; Login again"],
  reused: ["REFRESH_TOKEN_REUSED", "this refresh token was already used; the session has been ended for safety, Login again"],
  session_expired: ["SESSION_EXPIRED", "the session has reached its maximum age (tokens.sessionMaxAgeSeconds); Login again"],
  refresh_expired: ["SESSION_EXPIRED", "the refresh token has expired (unused for tokens.refreshTtlSeconds); Login again"],
};

const WECHAT_RATE_WINDOW_MS = 60_000;

const WECHAT_ERRORS: Record<WechatErrorKind, [Reason, string]> = {
  code_invalid: ["CODE_INVALID", "WeChat says the code is invalid or expired; call wx.login again"],
  code_used: ["CODE_USED", "WeChat says the code was already used; call wx.login again"],
  user_blocked: ["USER_BLOCKED_BY_PLATFORM", "WeChat blocked this user's login as high-risk"],
  rate_limited: ["RATE_LIMITED", "WeChat rate limit reached; retry in a minute"],
  unavailable: ["UPSTREAM_UNAVAILABLE", "WeChat could not be reached or did not answer; retry"],
  token_invalid: ["UPSTREAM_UNAVAILABLE", "WeChat refused our access token; retry"],
  circuit_open: ["UPSTREAM_UNAVAILABLE", "this WeChat API has been failing; calls to it are paused for a few seconds, retry later"],
  misconfigured: ["APP_MISCONFIGURED", "WeChat refused this app's credentials; the operator must check the app's appid and secret"],
  unexpected: ["UPSTREAM_ERROR", "WeChat gave an unexpected answer"],
};

const ALIPAY_ERRORS: Record<AlipayErrorKind, [Reason, string]> = {
  code_invalid: ["CODE_INVALID", "Alipay says the auth code is invalid or used; call my.getAuthCode again"],
  misconfigured: ["APP_MISCONFIGURED", "Alipay refused this app's credentials; the operator must check its app id and keys"],
  bad_response: ["UPSTREAM_UNAVAILABLE", "Alipay's answer could not be verified; retry"],
  unavailable: ["UPSTREAM_UNAVAILABLE", "Alipay could not be reached or did not answer; retry"],
  unexpected: ["UPSTREAM_ERROR", "Alipay gave an unexpected answer"],
};

// A unionid or invite code taken twice is no field the caller chose: two accounts collided.
const DUPLICATE_REASONS: Record<DuplicateKeyError["kind"], Reason> = {
  phone: "PHONE_TAKEN",
  username: "USERNAME_TAKEN",
  identity: "IDENTITY_TAKEN",
  unionid: "ACCOUNT_CONFLICT",
  invite: "ACCOUNT_CONFLICT",
  unknown: "ACCOUNT_CONFLICT",
};

/** Maps any thrown value to the ConnectError the client sees. `known` is false for bugs, which are logged. */
export function toConnectError(error: unknown): { error: ConnectError; known: boolean } {
  if (error instanceof ConnectError) return { error, known: error.code !== Code.Internal || error.findDetails(ErrorInfoSchema).length > 0 };
  if (error instanceof TokenError) {
    const [reason, message] = TOKEN_REASONS[error.kind];
    return { error: apiError(reason, message), known: true };
  }
  if (error instanceof AccountDisabledError) {
    return { error: apiError("ACCOUNT_DISABLED", "this account is disabled"), known: true };
  }
  if (error instanceof WechatError) {
    const [reason, message] = WECHAT_ERRORS[error.kind];
    const metadata: Record<string, string> = { api: error.api };
    if (error.errcode !== undefined) metadata.errcode = String(error.errcode);
    // WeChat's own limit (45011) names no wait; its quota is per minute.
    const retryAfterMs = error.retryAfterMs ?? (error.kind === "rate_limited" ? WECHAT_RATE_WINDOW_MS : undefined);
    if (retryAfterMs !== undefined) metadata.retryAfterSeconds = String(Math.ceil(retryAfterMs / 1000));
    // Misconfiguration is the operator's bug, not the caller's: known to the client, but logged.
    return { error: apiError(reason, message, metadata), known: REASONS[reason] !== Code.Internal };
  }
  if (error instanceof AlipayError) {
    const [reason, message] = ALIPAY_ERRORS[error.kind];
    return { error: apiError(reason, message, error.subCode ? { subCode: error.subCode } : {}), known: REASONS[reason] !== Code.Internal };
  }
  if (error instanceof AppleTokenError) {
    if (error.kind === "unavailable") return { error: apiError("UPSTREAM_UNAVAILABLE", "Apple's keys could not be fetched; retry"), known: true };
    const expired = error.kind === "expired";
    return {
      error: apiError(expired ? "ID_TOKEN_EXPIRED" : "ID_TOKEN_INVALID", expired ? "the identity token has expired; sign in with Apple again" : "the identity token is not valid for this app"),
      known: true,
    };
  }
  if (error instanceof DuplicateKeyError) {
    return { error: apiError(DUPLICATE_REASONS[error.kind], `this ${error.kind} belongs to another user`), known: true };
  }
  if (error instanceof VersionConflictError) {
    return { error: apiError("VERSION_CONFLICT", "the user was changed since that version; read it again and retry"), known: true };
  }
  if (error instanceof NotFoundError) return { error: apiError("NOT_FOUND", error.message), known: true };
  if (error instanceof StoreUnavailableError) {
    return { error: apiError("STORE_UNAVAILABLE", "storage is unavailable; retry"), known: false };
  }
  return { error: apiError("INTERNAL", "internal error"), known: false };
}
