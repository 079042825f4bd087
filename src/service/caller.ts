import { hash } from "node:crypto";
import type { HandlerContext } from "@connectrpc/connect";
import { TokenError } from "../auth/errors.js";
import type { Authenticated } from "../auth/sessions.js";
import type { UserRecord } from "../store/store.js";
import { createAttemptLimiter, type AttemptLimit } from "./attempt-limiter.js";
import { apiError } from "./errors.js";
import { kClientAddress } from "./interceptors.js";
import { noteOf } from "./audit.js";
import { rateLimited, type InternalCaller, type ServiceContext } from "./service-context.js";

// Who is calling: an end user's bearer token, or an internal service's x-api-key.

/** Wrong `x-api-key` values per client address: a configured caller sends its one key, so a few wrong ones are a probe. */
const API_KEY_FAILURES_PER_ADDRESS: AttemptLimit = { max: 10, windowMs: 15 * 60_000 };

export const MAX_TOKEN_CHARS = 4096;

export type Caller = ReturnType<typeof createCaller>;

export function createCaller({ sessions, accounts, internalCallers, rates, limit, now }: ServiceContext) {
  const callersByKeyHash = new Map(internalCallers.map((c) => [c.keySha256, c]));
  const apiKeyFailures = createAttemptLimiter(API_KEY_FAILURES_PER_ADDRESS, now);

  /**
   * The caller's live session and, for a user's session, its user, who must be active: a disabled
   * user's sessions stop working everywhere at once.
   */
  async function authenticate(
    ctx: HandlerContext,
    { allowPending = false, token = bearerOf(ctx), limited = true, ending = false } = {},
  ): Promise<Authenticated & { userId: string; user: UserRecord | null }> {
    if (token.length > MAX_TOKEN_CHARS) throw new TokenError("invalid");
    const auth = await sessions.authenticate(token, { ending });
    const { userId } = auth.session;
    const note = noteOf(ctx);
    note.actor ??= { kind: "user", id: userId ?? "" };
    note.subjectUserId ??= userId ?? undefined;
    note.appKey ??= auth.session.appKey;
    if (!userId && !allowPending) {
      throw apiError("NOT_REGISTERED", "this session has no user yet: call Oauth or BindPhone first");
    }
    if (limited) limit(rates.user, `session:${userId ?? auth.session.id}`, "too many requests for this user");
    return { ...auth, userId: userId ?? "", user: userId ? await accounts.activeUser(userId) : null };
  }

  /**
   * The configured caller presenting `x-api-key`, or null for none; a wrong key is refused and
   * counted against the client address. An address at its limit is refused before its key is looked
   * up, even a right one: otherwise its guesses would go on being answered.
   */
  function keyCallerOf(ctx: HandlerContext): InternalCaller | null {
    const key = ctx.requestHeader.get("x-api-key");
    if (key === null) return null;
    const address = ctx.values.get(kClientAddress);
    const wait = apiKeyFailures.retryAfter(address);
    if (wait) throw rateLimited(wait, "too many wrong x-api-key values from this address");
    // A lookup by the key's SHA-256, not a comparison of the key: timing can at most tell how a
    // guess's hash relates to a stored hash, which says nothing about the key (preimage resistance).
    const caller = key.length <= 256 ? callersByKeyHash.get(hash("sha256", key, "hex")) : undefined;
    if (!caller) {
      apiKeyFailures.fail(address);
      throw apiError("API_KEY_INVALID", "this x-api-key is not a configured internal caller's");
    }
    noteOf(ctx).actor = { kind: "api_key", id: caller.name };
    return caller;
  }

  /**
   * The internal service presenting `x-api-key`, or null for an end user. An operator's key (one
   * with a role) is refused: it may do what its role allows on AdminService, not what a service may.
   */
  function internalCallerOf(ctx: HandlerContext): string | null {
    const caller = keyCallerOf(ctx);
    if (caller?.role) throw apiError("PERMISSION_DENIED", "an operator's x-api-key serves AdminService only");
    return caller?.name ?? null;
  }

  return { authenticate, keyCallerOf, internalCallerOf };
}

/** The bearer token; "" when there is no authorization header. */
function bearerOf(ctx: HandlerContext): string {
  const header = ctx.requestHeader.get("authorization");
  if (!header) return "";
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (!match?.[1]) throw new TokenError("invalid");
  return match[1];
}
