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

export function apiError(code: Code, reason: string, message: string, metadata: Record<string, string> = {}): ConnectError {
  // A retry hint also goes out as the standard header, for HTTP clients and the seed routes alike.
  const header = metadata.retryAfterSeconds ? { "retry-after": metadata.retryAfterSeconds } : undefined;
  return new ConnectError(message, code, header, [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { domain: ERROR_DOMAIN, reason, metadata }) }]);
}

/** INVALID_ARGUMENT / FIELD_INVALID naming the field, with a BadRequest field violation. */
export function fieldInvalid(field: string, description: string): ConnectError {
  const error = apiError(Code.InvalidArgument, "FIELD_INVALID", `${field}: ${description}`, { field });
  error.details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: [{ field, description }] }) });
  return error;
}

const TOKEN_REASONS: Record<TokenErrorKind, [string, string]> = {
  missing: ["TOKEN_MISSING", "no access token: send authorization: Bearer <accessToken>"],
  invalid: ["TOKEN_INVALID", "the token is not valid"],
  expired: ["TOKEN_EXPIRED", "the token has expired; call Refresh, or Login again"],
  revoked: ["TOKEN_REVOKED", "the session has ended; Login again"],
  reused: ["REFRESH_TOKEN_REUSED", "this refresh token was already used; the session has been ended for safety, Login again"],
  session_expired: ["SESSION_EXPIRED", "the session has reached its maximum age (tokens.sessionMaxAgeSeconds); Login again"],
};

const WECHAT_ERRORS: Record<WechatErrorKind, [Code, string, string]> = {
  code_invalid: [Code.InvalidArgument, "CODE_INVALID", "WeChat says the code is invalid or expired; call wx.login again"],
  code_used: [Code.InvalidArgument, "CODE_USED", "WeChat says the code was already used; call wx.login again"],
  user_blocked: [Code.PermissionDenied, "USER_BLOCKED_BY_PLATFORM", "WeChat blocked this user's login as high-risk"],
  rate_limited: [Code.ResourceExhausted, "RATE_LIMITED", "WeChat rate limit reached; retry in a minute"],
  unavailable: [Code.Unavailable, "UPSTREAM_UNAVAILABLE", "WeChat did not answer in time; retry"],
  token_invalid: [Code.Unavailable, "UPSTREAM_UNAVAILABLE", "WeChat refused our access token; retry"],
  circuit_open: [Code.Unavailable, "UPSTREAM_UNAVAILABLE", "this WeChat API has been failing; calls to it are paused for a few seconds, retry later"],
  misconfigured: [Code.Internal, "APP_MISCONFIGURED", "WeChat refused this app's credentials; the operator must check the app's appid and secret"],
  unexpected: [Code.Internal, "UPSTREAM_ERROR", "WeChat gave an unexpected answer"],
};

const ALIPAY_ERRORS: Record<AlipayErrorKind, [Code, string, string]> = {
  code_invalid: [Code.InvalidArgument, "CODE_INVALID", "Alipay says the auth code is invalid or used; call my.getAuthCode again"],
  misconfigured: [Code.Internal, "APP_MISCONFIGURED", "Alipay refused this app's credentials; the operator must check its app id and keys"],
  bad_response: [Code.Unavailable, "UPSTREAM_UNAVAILABLE", "Alipay's answer could not be verified; retry"],
  unavailable: [Code.Unavailable, "UPSTREAM_UNAVAILABLE", "Alipay did not answer in time; retry"],
  unexpected: [Code.Internal, "UPSTREAM_ERROR", "Alipay gave an unexpected answer"],
};

/** Maps any thrown value to the ConnectError the client sees. `known` is false for bugs, which are logged. */
export function toConnectError(error: unknown): { error: ConnectError; known: boolean } {
  if (error instanceof ConnectError) return { error, known: error.code !== Code.Internal || error.findDetails(ErrorInfoSchema).length > 0 };
  if (error instanceof TokenError) {
    const [reason, message] = TOKEN_REASONS[error.kind];
    return { error: apiError(Code.Unauthenticated, reason, message), known: true };
  }
  if (error instanceof AccountDisabledError) {
    return { error: apiError(Code.PermissionDenied, "ACCOUNT_DISABLED", "this account is disabled"), known: true };
  }
  if (error instanceof WechatError) {
    const [code, reason, message] = WECHAT_ERRORS[error.kind];
    const metadata: Record<string, string> = { api: error.api };
    if (error.errcode !== undefined) metadata.errcode = String(error.errcode);
    if (error.retryAfterMs !== undefined) metadata.retryAfterSeconds = String(Math.ceil(error.retryAfterMs / 1000));
    // Misconfiguration is the operator's bug, not the caller's: known to the client, but logged.
    return { error: apiError(code, reason, message, metadata), known: code !== Code.Internal };
  }
  if (error instanceof AlipayError) {
    const [code, reason, message] = ALIPAY_ERRORS[error.kind];
    return { error: apiError(code, reason, message, error.subCode ? { subCode: error.subCode } : {}), known: code !== Code.Internal };
  }
  if (error instanceof AppleTokenError) {
    if (error.kind === "unavailable") return { error: apiError(Code.Unavailable, "UPSTREAM_UNAVAILABLE", "Apple's keys could not be fetched; retry"), known: true };
    const expired = error.kind === "expired";
    return {
      error: apiError(Code.Unauthenticated, expired ? "ID_TOKEN_EXPIRED" : "ID_TOKEN_INVALID", expired ? "the identity token has expired; sign in with Apple again" : "the identity token is not valid for this app"),
      known: true,
    };
  }
  if (error instanceof DuplicateKeyError) {
    const reason = { phone: "PHONE_TAKEN", username: "USERNAME_TAKEN", identity: "IDENTITY_TAKEN" }[error.kind as string] ?? "ACCOUNT_CONFLICT";
    return { error: apiError(Code.AlreadyExists, reason, `this ${error.kind} belongs to another user`), known: true };
  }
  if (error instanceof VersionConflictError) {
    return { error: apiError(Code.Aborted, "VERSION_CONFLICT", "the user was changed since that version; read it again and retry"), known: true };
  }
  if (error instanceof NotFoundError) return { error: apiError(Code.NotFound, "NOT_FOUND", error.message), known: true };
  if (error instanceof StoreUnavailableError) {
    return { error: apiError(Code.Unavailable, "STORE_UNAVAILABLE", "storage is unavailable; retry"), known: false };
  }
  return { error: apiError(Code.Internal, "INTERNAL", "internal error"), known: false };
}
