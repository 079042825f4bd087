import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { RevocationReason, RevocationSchema, type IdentityService, type Revocation, type WatchRevocationsResponseSchema } from "../../gen/identity/v1/identity_pb.js";
import type { RevocationRecord, RevocationStore } from "../store/store.js";
import type { Caller } from "./caller.js";
import { apiError, fieldInvalid } from "./errors.js";
import { decodeCursor, encodeCursor, OVERLAP_MS, type RevocationFeed } from "./revocation-feed.js";
import type { ServiceContext } from "./service-context.js";

// WatchRevocations: what ends access tokens early, for services that verify them locally. A
// stream replays from its cursor out of the store, then follows this instance's feed.

export interface RevocationDeps {
  feed: RevocationFeed;
  store: RevocationStore;
  /** How long the store keeps an event (revocationRetentionMs). */
  retentionMs: number;
  heartbeatMs: number;
}

/** Events per replayed message. */
const REPLAY_PAGE = 1000;
const MAX_CURSOR_CHARS = 64;

const REASONS: Record<RevocationRecord["reason"], RevocationReason> = {
  logout: RevocationReason.LOGOUT,
  logout_all: RevocationReason.LOGOUT_ALL,
  refresh_token_reused: RevocationReason.REFRESH_TOKEN_REUSED,
  session_limit: RevocationReason.SESSION_LIMIT,
  user_disabled: RevocationReason.USER_DISABLED,
  // Ended because it was handed another WeChat user's data: none of the contract's reasons.
  session_mismatch: RevocationReason.UNSPECIFIED,
  operator: RevocationReason.OPERATOR,
  user_deleted: RevocationReason.USER_DELETED,
  identity_unlinked: RevocationReason.IDENTITY_UNLINKED,
};

function toWire({ target, revokedAt, reason }: RevocationRecord): Revocation {
  return create(RevocationSchema, {
    target: "sessionId" in target ? { case: "sessionId", value: target.sessionId } : { case: "userId", value: target.userId },
    revokeTime: timestampFromDate(revokedAt),
    reason: REASONS[reason],
  });
}

type Response = MessageInitShape<typeof WatchRevocationsResponseSchema>;

export function createRevocationRpcs({ revocations, now }: ServiceContext, { internalCallerOf }: Caller): Pick<ServiceImpl<typeof IdentityService>, "watchRevocations"> {
  const { feed, store, retentionMs, heartbeatMs } = revocations;
  const heartbeatInterval = durationFromMs(heartbeatMs);
  const message = (events: RevocationRecord[], cursor: number, flags: { resync?: boolean; caughtUp?: boolean } = {}): Response => ({
    revocations: events.map(toWire),
    cursor: encodeCursor(cursor),
    heartbeatInterval,
    ...flags,
  });

  /** Where a request resumes: after `from` (null: everything kept), and whether it must resync. */
  function resumePoint(cursor: string): { from: number | null; resync: boolean } {
    if (!cursor) return { from: null, resync: false };
    const frontier = cursor.length <= MAX_CURSOR_CHARS ? decodeCursor(cursor) : null;
    // One from the future was never ours: it would skip what happens until then.
    if (frontier === null || frontier > now() + OVERLAP_MS) throw fieldInvalid("cursor", "not a cursor this service gave out; send the cursor of the last message received, or none");
    // Events after the cursor may be gone already.
    if (frontier - OVERLAP_MS < now() - retentionMs) return { from: null, resync: true };
    return { from: frontier - OVERLAP_MS, resync: false };
  }

  /** The store's events after `from`, page by page; the last page says caught_up and carries a cursor at least `reached`. */
  async function* replay(from: number | null, reached: number, resync: boolean): AsyncGenerator<Response> {
    let after = new Date(from ?? 0);
    let afterId: string | undefined;
    for (let first = true; ; first = false) {
      const page = await store.since(after, REPLAY_PAGE, afterId);
      const last = page.at(-1);
      const done = page.length < REPLAY_PAGE;
      const position = last ? last.revokedAt.getTime() : 0;
      yield message(page, done ? Math.max(reached, position) : position, { resync: first && resync, caughtUp: done });
      if (done || !last) return;
      after = last.revokedAt;
      afterId = last.id;
    }
  }

  return {
    async *watchRevocations(req, ctx) {
      if (!internalCallerOf(ctx)) throw apiError("PERMISSION_DENIED", "WatchRevocations is for internal callers: send x-api-key");
      let { from, resync } = resumePoint(req.cursor);
      const watcher = feed.join();
      try {
        for (;;) {
          // Joined before reading: what is appended meanwhile comes from the feed, maybe twice.
          yield* replay(from, Math.max(feed.frontier, from === null ? 0 : from + OVERLAP_MS), resync);
          for (let update = await watcher.next(heartbeatMs, ctx.signal); ; update = await watcher.next(heartbeatMs, ctx.signal)) {
            if (update.kind === "closed") return;
            if (update.kind === "overflow") break;
            if (update.kind === "events") yield message(update.events, update.frontier);
            else if (feed.failing) throw apiError("STORE_UNAVAILABLE", "revocations cannot be read from storage; watch again, maybe on another instance");
            else yield message([], update.frontier);
          }
          // Too far behind to queue for: told to resync, then everything kept, again.
          watcher.discardQueued();
          from = null;
          resync = true;
        }
      } finally {
        watcher.leave();
      }
    },
  };
}
