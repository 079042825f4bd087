// Every failure the kit reports is an IdentityError carrying the service's Connect code and
// ErrorInfo reason, so pages branch on `reason`, never on message text.

/** Reasons the kit itself gives, beside the service's own (see the README's table). */
export const LOCAL_REASONS = {
  /** The request never got an answer (offline, DNS, timeout) within the caller's timeout. */
  NETWORK: "unavailable",
  /** wx.login (or the platform's equivalent) failed or gave no code. */
  PLATFORM_LOGIN_FAILED: "unavailable",
  /** The phone button's detail has neither a code nor encryptedData/iv: the user said no. */
  PHONE_NOT_GRANTED: "canceled",
  /** An answer that is not the service's JSON. */
  BAD_RESPONSE: "internal",
} as const;

/** The 401 reasons after which the stored session can never work again: sign the user out. */
export const SIGNED_OUT_REASONS = ["TOKEN_REVOKED", "REFRESH_TOKEN_REUSED", "SESSION_EXPIRED", "TOKEN_INVALID"];

export class IdentityError extends Error {
  /** The Connect code, e.g. "unauthenticated", "unavailable". */
  declare readonly code: string;
  /** The UPPER_SNAKE reason, e.g. "TOKEN_REVOKED", "NETWORK". */
  declare readonly reason: string;
  /** The HTTP status, 0 when there was no answer. */
  declare readonly status: number;
  /** The service's ErrorInfo metadata, e.g. `field` for FIELD_INVALID. */
  declare readonly metadata: Record<string, string>;
  /** Seconds to wait before retrying, when the service said (RATE_LIMITED, UNAVAILABLE). */
  declare readonly retryAfter?: number;

  constructor(code: string, reason: string, message: string, status = 0, metadata: Record<string, string> = {}, retryAfter?: number) {
    super(message);
    this.name = "IdentityError";
    this.code = code;
    this.reason = reason;
    this.status = status;
    this.metadata = metadata;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

export function localError(reason: keyof typeof LOCAL_REASONS, message: string): IdentityError {
  return new IdentityError(LOCAL_REASONS[reason], reason, message);
}

/** An HTTP answer as every platform adapter hands it over. */
export interface HttpResponse {
  statusCode: number;
  data: unknown;
  header: Record<string, string>;
}

interface ErrorBody {
  code?: unknown;
  message?: unknown;
  reason?: unknown;
  details?: Array<{ type?: unknown; debug?: { reason?: unknown; metadata?: Record<string, string> } }>;
}

// For a body that is no Connect error (a proxy's 502 page, say); 5xx otherwise is "unavailable".
const CODE_OF_STATUS: Record<number, string> = { 401: "unauthenticated", 429: "resource_exhausted" };

/** The body as an object: platforms hand JSON over parsed or, with some dataTypes, as text. */
export function jsonOf(data: unknown): Record<string, unknown> | undefined {
  let value = data;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch {
      return undefined;
    }
  }
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function headerOf(header: Record<string, string>, name: string): string | undefined {
  for (const key of Object.keys(header)) if (key.toLowerCase() === name) return header[key];
  return undefined;
}

/**
 * The body of a refusal and its reason: the Connect error's `details[].debug.reason`, or the flat
 * `reason` that @identity-service/client's middleware answers with on an app's own backend.
 */
function refusalOf(res: HttpResponse): { body: ErrorBody; reason: string | undefined; metadata: Record<string, string> } {
  const body = (jsonOf(res.data) ?? {}) as ErrorBody;
  const info = Array.isArray(body.details) ? body.details.find((d) => d && d.type === "google.rpc.ErrorInfo") : undefined;
  const debug = (info ? info.debug : undefined) || {};
  const reason = debug.reason === undefined ? body.reason : debug.reason;
  return { body, reason: typeof reason === "string" ? reason : undefined, metadata: debug.metadata || {} };
}

export const reasonOf = (res: HttpResponse): string | undefined => refusalOf(res).reason;

/** The IdentityError for a non-200 answer. */
export function errorOf(res: HttpResponse): IdentityError {
  const { body, reason, metadata } = refusalOf(res);
  const code = typeof body.code === "string" ? body.code : (CODE_OF_STATUS[res.statusCode] ?? (res.statusCode >= 500 ? "unavailable" : "unknown"));
  const retryAfter = Number(headerOf(res.header, "retry-after") ?? metadata.retryAfterSeconds);
  const message = typeof body.message === "string" ? body.message : `HTTP ${res.statusCode}`;
  return new IdentityError(code, reason ?? "", message, res.statusCode, metadata, retryAfter > 0 ? retryAfter : undefined);
}
