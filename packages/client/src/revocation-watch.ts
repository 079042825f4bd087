import { setTimeout as sleep } from "node:timers/promises";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import type { IdentityService, WatchRevocationsResponse } from "./gen/identity/v1/identity_pb.js";

/**
 * connecting: no message yet; replaying: the service is replaying what was missed; live: caught
 * up and hearing heartbeats; reconnecting: the stream broke and waits its backoff; closed.
 */
export type StreamState = "connecting" | "replaying" | "live" | "reconnecting" | "closed";

export interface RevocationWatchOptions {
  /** An internal caller's client: the stream is for API keys only. */
  client: Client<typeof IdentityService>;
  /** Each message, in order, before its cursor is taken. */
  onMessage(message: WatchRevocationsResponse): void;
  /** Backoff between attempts: doubles from initialDelayMs up to maxDelayMs, half of it random. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** How long a connection may stay silent before its first message tells the heartbeat interval. */
  firstMessageTimeoutMs: number;
}

/** A heartbeat may be late by half its interval, and at least by a second, before the stream counts as broken. */
const silenceLimitOf = (heartbeatMs: number) => heartbeatMs + Math.max(1000, heartbeatMs / 2);

/** Follows WatchRevocations for as long as it runs: reconnects, resumes from the last cursor, and says when it is live. */
export function watchRevocations(options: RevocationWatchOptions) {
  const { client } = options;
  const closing = new AbortController();
  let state: StreamState = "connecting";
  let cursor = "";
  let silenceLimitMs = options.firstMessageTimeoutMs;
  let lastMessageAt = 0;
  let caughtUpAt: Date | null = null;
  let reconnects = 0;
  let lastError: string | undefined;
  let firstCaughtUp!: () => void;
  const caughtUp = new Promise<void>((resolve) => {
    firstCaughtUp = resolve;
  });

  async function follow(attempt: AbortController): Promise<void> {
    let silence = setTimeout(() => attempt.abort(), silenceLimitMs);
    try {
      for await (const message of client.watchRevocations({ cursor }, { signal: attempt.signal })) {
        lastMessageAt = Date.now();
        if (message.heartbeatInterval) {
          const { seconds, nanos } = message.heartbeatInterval;
          silenceLimitMs = silenceLimitOf(Number(seconds) * 1000 + nanos / 1e6);
        }
        clearTimeout(silence);
        silence = setTimeout(() => attempt.abort(), silenceLimitMs);
        if (message.resync || state !== "live") state = "replaying";
        options.onMessage(message);
        if (message.cursor) cursor = message.cursor;
        if (message.caughtUp) {
          state = "live";
          caughtUpAt = new Date(lastMessageAt);
          firstCaughtUp();
        }
      }
      lastError = "the service ended the stream";
    } catch (e) {
      lastError = attempt.signal.aborted && !closing.signal.aborted ? `no message for ${silenceLimitMs} ms` : describeFailure(e);
    } finally {
      clearTimeout(silence);
    }
  }

  const running = (async () => {
    let failures = 0;
    while (!closing.signal.aborted) {
      const attempt = new AbortController();
      const stop = () => attempt.abort();
      closing.signal.addEventListener("abort", stop, { once: true });
      const wasLive: Date | null = caughtUpAt;
      await follow(attempt);
      closing.signal.removeEventListener("abort", stop);
      if (closing.signal.aborted) break;
      // A connection that reached live resets the backoff; one that never did keeps growing it.
      if (caughtUpAt !== wasLive) failures = 0;
      state = "reconnecting";
      reconnects++;
      const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** failures++);
      await sleep(ceiling / 2 + (Math.random() * ceiling) / 2, undefined, { signal: closing.signal }).catch(() => {});
    }
    state = "closed";
  })();

  return {
    /** Live and not silent for longer than the heartbeat allows (checked here too: a timer can fire late). */
    isLive: (now: number) => state === "live" && now - lastMessageAt <= silenceLimitMs,
    /** Resolves the first time the stream catches up. */
    caughtUp,
    stats: () => ({ state, caughtUpAt, reconnects, lastError }),
    async close(): Promise<void> {
      closing.abort();
      await running;
    },
  };
}

export type RevocationWatch = ReturnType<typeof watchRevocations>;

/** Code, reason and message of a failure: never the request's headers, so never the API key. */
export function describeFailure(error: unknown): string {
  if (!(error instanceof ConnectError)) return error instanceof Error ? error.message : String(error);
  const reason = error.findDetails(ErrorInfoSchema)[0]?.reason;
  return `${Code[error.code]}${reason ? ` ${reason}` : ""}: ${error.rawMessage}`;
}
