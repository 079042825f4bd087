// Reads a WatchRevocations stream message by message, with a deadline on each wait, for tests.
import type { Client } from "@connectrpc/connect";
import type { IdentityService, RevocationReason, WatchRevocationsResponse } from "../../gen/identity/v1/identity_pb.js";

export interface Watch {
  /** Every message read so far. */
  messages: WatchRevocationsResponse[];
  /** The next message; fails after `timeoutMs`. */
  next(timeoutMs?: number): Promise<WatchRevocationsResponse>;
  /** Reads until a message satisfies `wanted`, and returns it. */
  until(wanted: (m: WatchRevocationsResponse) => boolean, timeoutMs?: number): Promise<WatchRevocationsResponse>;
  /** Reads until a revocation of `target` (a session or user id) arrives, and returns it. */
  revocationOf(target: string, timeoutMs?: number): Promise<{ target: string; reason: RevocationReason; revokeMs: number }>;
  /** The stream's end: null when it ended cleanly, else its error. */
  ended(timeoutMs?: number): Promise<unknown>;
  /** Hangs up. */
  close(): void;
}

export function watch(client: Client<typeof IdentityService>, headers: Record<string, string>, cursor = ""): Watch {
  const abort = new AbortController();
  const stream = client.watchRevocations({ cursor }, { headers, signal: abort.signal })[Symbol.asyncIterator]();
  const messages: WatchRevocationsResponse[] = [];
  const within = <T>(promise: Promise<T>, timeoutMs: number, what: string) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  };
  const next = async (timeoutMs = 3000) => {
    const result = await within(stream.next(), timeoutMs, "message");
    if (result.done) throw new Error("the stream ended");
    messages.push(result.value);
    return result.value;
  };
  const until = async (wanted: (m: WatchRevocationsResponse) => boolean, timeoutMs = 3000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = await next(Math.max(1, deadline - Date.now()));
      if (wanted(message)) return message;
    }
  };
  return {
    messages,
    next,
    until,
    async revocationOf(target, timeoutMs = 3000) {
      const named = (m: WatchRevocationsResponse) => m.revocations.find((r) => r.target.value === target);
      const seen = messages.map(named).find((r) => r !== undefined);
      const found = seen ?? named(await until((m) => named(m) !== undefined, timeoutMs))!;
      return { target, reason: found.reason, revokeMs: Number(found.revokeTime!.seconds) * 1000 + Math.floor(found.revokeTime!.nanos / 1e6) };
    },
    async ended(timeoutMs = 3000) {
      try {
        for (;;) {
          const result = await within(stream.next(), timeoutMs, "end");
          if (result.done) return null;
        }
      } catch (e) {
        return e;
      }
    },
    close: () => abort.abort(),
  };
}

/** Every revocation target (session or user id) the messages named. */
export const targetsOf = (messages: WatchRevocationsResponse[]) => messages.flatMap((m) => m.revocations.map((r) => r.target.value));
