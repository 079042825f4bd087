import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { shanghaiDay } from "../platforms/shanghai-time.js";
import type { ActivityStore, AuditActor, AuditStore } from "../store/store.js";
import { describeError } from "../util/log-safety.js";
import { toConnectError } from "./errors.js";
import { kClientAddress, kRequestLog, type Logger } from "./interceptors.js";

// The audit log's writer. Handlers only note what they learn (whose account, which app, a few
// facts) on the request's AuditNote; `audited` wraps the handlers and writes one event per call
// from it once the call's outcome is known, so no handler repeats the writing or the outcome.

/** What a handler learns about the call as it goes; written once the outcome is known. */
export interface AuditNote {
  actor?: AuditActor;
  subjectUserId?: string;
  appKey?: string;
  details: Record<string, string>;
  /** Another event type than the method's, e.g. the reuse of a refresh token found by Refresh. */
  type?: string;
  /** Set when the call registered its user: also counted as new for GetStats. */
  registered?: boolean;
}

/** The service itself as an actor, e.g. when it ends a session whose refresh token was reused. */
export const SYSTEM_ACTOR: AuditActor = { kind: "system", id: "identity" };

export const kAuditNote = createContextKey<AuditNote | undefined>(undefined, { description: "audit note" });

/** The call's note; a throwaway one outside `audited` (the write is then simply not made). */
export function noteOf(ctx: HandlerContext): AuditNote {
  let note = ctx.values.get(kAuditNote);
  if (!note) {
    note = { details: {} };
    ctx.values.set(kAuditNote, note);
  }
  return note;
}

/** How one method is audited: its event type, whether a success marks its user active, and which failures are worth an event. */
export interface AuditedMethod {
  type: string;
  /** Login and Refresh: a success counts the user active in the app that day (GetStats). */
  activity?: boolean;
  /** Refresh: a success only counts the user active, without an event (one per refresh would swamp the log). */
  quietSuccess?: boolean;
  /** Deletion: the event keeps only type, actor, user, time and outcome (no address, no details) of a person who asked to be forgotten. */
  factOnly?: boolean;
  /** Failures are written only when the note names a user, or with one of these reasons. */
  failureReasons?: readonly string[];
}

export interface AuditDeps {
  audit: AuditStore;
  activity: ActivityStore;
  now: () => number;
  /** For calls whose context carries no request logger. */
  log?: Logger;
}

export type AuditWriter = ReturnType<typeof createAuditWriter>;

/** Activity records remembered per instance and day before the memory starts afresh. */
const RECORDED_MAX = 100_000;

export function createAuditWriter({ audit, activity, now, log }: AuditDeps) {
  /**
   * The (app, user) pairs this instance has recorded active today. The record is idempotent, so
   * once written it need not be written again that day: a user refreshing all day costs one
   * store write, not one per Refresh. A registration is always written (it sets the flag).
   */
  const recorded = { day: "", pairs: new Set<string>() };

  async function recordActivity(appKey: string, userId: string, registered: boolean): Promise<void> {
    const day = shanghaiDay(now());
    if (recorded.day !== day || recorded.pairs.size >= RECORDED_MAX) Object.assign(recorded, { day, pairs: new Set<string>() });
    const pair = `${appKey}|${userId}`;
    if (!registered && recorded.pairs.has(pair)) return;
    await activity.record(day, appKey, userId, registered);
    if (recorded.day === day) recorded.pairs.add(pair);
  }

  /**
   * Writes the call's event. A failed write is logged with the event (no secret is ever in one)
   * and counted as a store error (audit.append), never thrown: the call's own change is already
   * stored, and failing the answer would make the client repeat something that happened.
   */
  async function write(ctx: HandlerContext, method: AuditedMethod, outcome: string): Promise<void> {
    const note = noteOf(ctx);
    if (outcome !== "ok" && !note.subjectUserId && !method.failureReasons?.includes(outcome)) return;
    const logged = outcome !== "ok" || !method.quietSuccess;
    const address = ctx.values.get(kClientAddress);
    const event = {
      type: note.type ?? method.type,
      actor: note.actor ?? { kind: "user" as const, id: note.subjectUserId ?? "" },
      ...(note.subjectUserId ? { subjectUserId: note.subjectUserId } : {}),
      ...(note.appKey ? { appKey: note.appKey } : {}),
      ...(address && !method.factOnly ? { address } : {}),
      outcome,
      ...(Object.keys(note.details).length && !method.factOnly ? { details: note.details } : {}),
    };
    const logLost = (err: unknown) => (ctx.values.get(kRequestLog) ?? log)?.error({ event: { ...event, address: undefined }, err: describeError(err) }, "audit event not written");
    // The call failed because the store did not answer: a write now would only wait as long again.
    if (outcome === "STORE_UNAVAILABLE") return logLost(new Error("store unavailable"));
    // Side by side: the answer (a Login's, a Refresh's) waits for one store round trip, not two.
    const writes: Promise<void>[] = [];
    if (logged) writes.push(audit.append(event));
    if (outcome === "ok" && method.activity && note.subjectUserId && note.appKey) {
      writes.push(recordActivity(note.appKey, note.subjectUserId, note.registered ?? false));
    }
    await Promise.all(writes.map((w) => w.catch(logLost)));
  }

  /** The handlers with every method named in `methods` audited; the others as they are. */
  function audited<T extends object>(impl: T, methods: Partial<Record<keyof T, AuditedMethod>>): T {
    const wrapped: Record<string, unknown> = { ...(impl as Record<string, unknown>) };
    for (const [name, method] of Object.entries(methods) as [string, AuditedMethod][]) {
      const handler = (impl as Record<string, (req: unknown, ctx: HandlerContext) => Promise<unknown>>)[name]!;
      wrapped[name] = async (req: unknown, ctx: HandlerContext) => {
        ctx.values.set(kAuditNote, { details: {} });
        try {
          const res = await handler(req, ctx);
          await write(ctx, method, "ok");
          return res;
        } catch (e) {
          const reason = toConnectError(e).error.findDetails(ErrorInfoSchema)[0]?.reason ?? "INTERNAL";
          await write(ctx, method, reason);
          throw e;
        }
      };
    }
    return wrapped as T;
  }

  return { audited };
}
