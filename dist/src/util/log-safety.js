// What may reach a log line about a request or an error: never a header value, a query string or
// a token. Used by the logger's serializers and by every place that logs a caught error.
// Error texts quote what they choked on (undici: `"Bearer …" is an invalid header value`), and a
// token can sit in a bearer credential or be a JWT: those never leave.
const QUOTED = /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g;
const BEARER = /\bBearer\s+\S+/gi;
const JWT = /\beyJ[\w-]*\.[\w.~-]*/g;
export function scrub(text) {
    return text.replace(QUOTED, '"[redacted]"').replace(BEARER, "Bearer [redacted]").replace(JWT, "[redacted]");
}
/** An error as a log line may carry it: its type, and its message and stack with quoted values and tokens taken out. */
export function describeError(e) {
    if (!(e instanceof Error))
        return { type: typeof e };
    return {
        type: e.name,
        message: scrub(e.message),
        ...(e.stack ? { stack: scrub(e.stack) } : {}),
        ...(e.cause instanceof Error ? { cause: scrub(`${e.cause.name}: ${e.cause.message}`) } : {}),
    };
}
/** A request as a log line may carry it: method and path (no query, no headers). */
export function describeRequest(req) {
    return { method: req.method, path: (req.url ?? "").split("?")[0] };
}
