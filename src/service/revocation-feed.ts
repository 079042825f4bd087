import type { RevocationRecord, RevocationStore } from "../store/store.js";
import type { Logger } from "./interceptors.js";

// One feed per instance: it reads the store's revocation log and fans each batch out to every open
// WatchRevocations stream, so a thousand watchers cost one reader, not a thousand.
//
// Positions and cursors. An event's position is (revokedAt, id), revokedAt on the appending
// instance's clock. Concurrent writers can commit out of order (an event stamped 10:00:00.100 may
// become visible after one stamped .200), so a reader that only asked for "after the last position
// seen" would skip the late one. The feed instead reads everything after (frontier - OVERLAP_MS)
// and drops the ids it has already delivered: an event is missed only if it becomes visible more
// than OVERLAP_MS after its stamp, or its writer's clock is that far behind the reader's. A cursor is
// a frontier: resuming from it reads from (cursor - OVERLAP_MS) again, on any instance, which may
// deliver an event twice (the contract says at least once) but never skips one.

/** How late an event may become visible after its stamp (commit latency plus clock skew between instances). */
export const OVERLAP_MS = 5000;
/** Events one store read returns; a replay or a burst reads page after page. */
const PAGE_SIZE = 1000;
/** Events queued for one watcher that is not reading; beyond it the watcher is told to resync. */
const MAX_QUEUED_EVENTS = 10_000;
/** With a change stream telling the feed of every append, polling is only the safety net. */
const FOLLOWING_POLL_MS = 5000;
/** After a failed read, the feed waits this long before the next. */
const RETRY_MS = 1000;

export interface RevocationFeedOptions {
  revocations: RevocationStore;
  now: () => number;
  /** How long events are kept (revocation retention): older cursors must resync. */
  retentionMs: number;
  pollMs: number;
  heartbeatMs: number;
  log: Logger;
  maxQueuedEvents?: number;
  /** The number of open watchers, whenever it changes. */
  onWatchers?: (count: number) => void;
  /** Events the feed read that no watcher had been given yet, per read. */
  onEvents?: (count: number) => void;
}

export type WatcherUpdate = { kind: "events"; events: RevocationRecord[]; frontier: number } | { kind: "overflow" } | { kind: "idle"; frontier: number } | { kind: "closed" };

/** One open stream's place in the feed. */
export class Watcher {
  private queue: { events: RevocationRecord[]; frontier: number }[] = [];
  private queued = 0;
  private overflowed = false;
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly feed: { readonly frontier: number; leave(watcher: Watcher): void },
    private readonly maxQueued: number,
  ) {}

  /** The next batch, or idle after `timeoutMs` without one, or closed (the feed shut down or `signal` aborted). */
  async next(timeoutMs: number, signal: AbortSignal): Promise<WatcherUpdate> {
    if (!this.ready() && !signal.aborted) {
      let timer: NodeJS.Timeout | undefined;
      const done = new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, timeoutMs);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
      await done;
      clearTimeout(timer);
      this.wake = null;
    }
    if (this.closed || signal.aborted) return { kind: "closed" };
    if (this.overflowed) {
      this.overflowed = false;
      return { kind: "overflow" };
    }
    const batch = this.queue.shift();
    if (!batch) return { kind: "idle", frontier: this.feed.frontier };
    this.queued -= batch.events.length;
    return { kind: "events", ...batch };
  }

  /** Drops what the watcher has not read yet, for a replay from the store instead. */
  discardQueued(): void {
    this.queue = [];
    this.queued = 0;
    this.overflowed = false;
  }

  leave(): void {
    this.feed.leave(this);
  }

  /** From the feed. */
  push(events: RevocationRecord[], frontier: number): void {
    if (this.overflowed) return;
    // One batch is shared by every watcher; an attentive watcher takes even one larger than the bound.
    if (this.queued > 0 && this.queued + events.length > this.maxQueued) {
      // A watcher this far behind holds no more memory: it re-reads from the store, told to resync.
      this.discardQueued();
      this.overflowed = true;
    } else {
      this.queue.push({ events, frontier });
      this.queued += events.length;
    }
    this.wake?.();
  }

  /** From the feed. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  private ready(): boolean {
    return this.closed || this.overflowed || this.queue.length > 0;
  }
}

export type RevocationFeed = ReturnType<typeof createRevocationFeed>;

export function createRevocationFeed(options: RevocationFeedOptions) {
  const { revocations, now, log, maxQueuedEvents = MAX_QUEUED_EVENTS } = options;
  const watchers = new Set<Watcher>();
  /** Every event with a position at or before frontier - OVERLAP_MS has been handed to the watchers. */
  let frontier = now();
  /** Ids delivered inside the overlap window, with their position, to drop when read again. */
  const delivered = new Map<string, number>();
  let running: Promise<void> | null = null;
  let sleeping: (() => void) | null = null;
  let following: { close(): Promise<void> } | null = null;
  let followable: boolean | undefined;
  let failing = false;
  let closed = false;

  /** Reads what is new since the last read and hands it to every watcher. */
  async function readOnce(): Promise<void> {
    const started = now();
    const fresh: RevocationRecord[] = [];
    let after = new Date(frontier - OVERLAP_MS);
    let afterId: string | undefined;
    for (;;) {
      const page = await revocations.since(after, PAGE_SIZE, afterId);
      for (const event of page) {
        if (delivered.has(event.id)) continue;
        delivered.set(event.id, event.revokedAt.getTime());
        fresh.push(event);
      }
      const last = page.at(-1);
      if (!last || page.length < PAGE_SIZE) break;
      after = last.revokedAt;
      afterId = last.id;
    }
    // Whatever becomes visible from now on is stamped after started - OVERLAP_MS.
    frontier = Math.max(frontier, started, ...fresh.map((e) => e.revokedAt.getTime()));
    for (const [id, position] of delivered) if (position <= frontier - OVERLAP_MS) delivered.delete(id);
    if (fresh.length) {
      options.onEvents?.(fresh.length);
      for (const watcher of watchers) watcher.push(fresh, frontier);
    }
  }

  async function run(): Promise<void> {
    if (followable !== false && revocations.follow) {
      following = await revocations
        .follow(
          () => sleeping?.(),
          (err) => {
            log.error({ err: String(err) }, "revocations: the change stream failed; polling only");
            following = null;
          },
        )
        .catch(() => null);
    }
    while (watchers.size && !closed) {
      let waitMs = following ? FOLLOWING_POLL_MS : options.pollMs;
      try {
        await readOnce();
        if (failing) log.info({}, "revocations: reading the store again");
        failing = false;
      } catch (err) {
        if (!failing) log.error({ err: err instanceof Error ? err.message : String(err) }, "revocations: the store could not be read; retrying");
        failing = true;
        waitMs = RETRY_MS;
      }
      if (!watchers.size || closed) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        sleeping = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      sleeping = null;
    }
    await following?.close().catch(() => undefined);
    following = null;
  }

  function start(): void {
    if (running) return;
    running = run().finally(() => {
      running = null;
      // A watcher that joined while the loop was winding down needs a loop of its own.
      if (watchers.size && !closed) start();
    });
  }

  const feed = {
    /** Finds out once, at startup, whether the store tells of appends (a change stream), and logs which. */
    async init(): Promise<void> {
      const probe = revocations.follow
        ? await revocations
            .follow(
              () => undefined,
              () => undefined,
            )
            .catch(() => null)
        : null;
      followable = probe !== null;
      await probe?.close();
      log.info(
        { changeStream: followable, pollMs: followable ? FOLLOWING_POLL_MS : options.pollMs },
        followable ? "revocations: following the store's change stream" : "revocations: the store has no change streams; polling it",
      );
    },
    /** The position up to which (less OVERLAP_MS) every watcher has been handed every event. */
    get frontier() {
      return frontier;
    },
    /** True while the store cannot be read: watchers would hear heartbeats from a blind feed. */
    get failing() {
      return failing;
    },
    join(): Watcher {
      if (closed) throw new Error("the revocation feed is closed");
      if (!running) {
        // Nobody was reading: the feed starts from now, and the first watcher's replay covers before.
        frontier = Math.max(frontier, now());
        delivered.clear();
      }
      const watcher = new Watcher(feed, maxQueuedEvents);
      watchers.add(watcher);
      options.onWatchers?.(watchers.size);
      start();
      return watcher;
    },
    leave(watcher: Watcher): void {
      if (!watchers.delete(watcher)) return;
      options.onWatchers?.(watchers.size);
      if (!watchers.size) sleeping?.();
    },
    /** Ends every watcher's stream (shutdown) and stops reading. */
    async close(): Promise<void> {
      closed = true;
      for (const watcher of watchers) watcher.close();
      watchers.clear();
      options.onWatchers?.(0);
      sleeping?.();
      await running;
    },
  };
  return feed;
}

/** A frontier as the opaque cursor the wire carries. */
export function encodeCursor(frontier: number): string {
  return `r1.${Math.floor(frontier).toString(36)}`;
}

/** The frontier a cursor names; null when it is not one of ours. */
export function decodeCursor(cursor: string): number | null {
  const match = /^r1\.([0-9a-z]{1,11})$/.exec(cursor);
  if (!match) return null;
  const frontier = Number.parseInt(match[1]!, 36);
  return Number.isSafeInteger(frontier) ? frontier : null;
}
