// The revocation feed over a real store (memory always, MongoDB when MONGODB_URI is set): two
// writers committing out of order, one read per poll however many watch, a watcher too slow to
// keep up told to resync, and reading only while someone watches.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { MongoClient } from "mongodb";
import { afterAll, describe, expect, it } from "vitest";
import { createRevocationFeed, OVERLAP_MS, type Watcher } from "../../src/service/revocation-feed.js";
import { MemoryRevocationStore } from "../../src/store/memory-store.js";
import { MongoStore } from "../../src/store/mongo-store.js";
import { newObjectId, type RevocationRecord, type RevocationStore } from "../../src/store/store.js";
import { gapsOf } from "../support/mongo-gaps.js";

const T0 = Date.parse("2031-01-02T03:04:05.000Z");
const silent = { info: () => undefined, error: () => undefined };

/** Two writers on one log, each with its own clock, as two instances are. */
interface Writers {
  one: RevocationStore;
  two: RevocationStore;
  clocks: { one: number; two: number };
  dispose(): Promise<void>;
}

const memoryWriters = async (): Promise<Writers> => {
  // One log; the writer's clock is whichever is set when it appends.
  const clocks = { one: T0, two: T0 };
  let writing: "one" | "two" = "one";
  const log = new MemoryRevocationStore(() => clocks[writing]);
  const as = (writer: "one" | "two"): RevocationStore => ({
    append: (drafts, expiresAt) => {
      writing = writer;
      return log.append(drafts, expiresAt);
    },
    since: (after, limit, afterId) => log.since(after, limit, afterId),
  });
  return { one: as("one"), two: as("two"), clocks, dispose: async () => {} };
};

const uri = process.env.MONGODB_URI;
const gaps = uri ? await gapsOf(uri, "revocation feed") : new Set();

const mongoWriters = async (): Promise<Writers> => {
  const db = `identity_test_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const clocks = { one: T0, two: T0 };
  const one = await MongoStore.connect(uri!, db, { now: () => clocks.one });
  const two = await MongoStore.connect(uri!, db, { now: () => clocks.two });
  await one.init();
  return {
    one: one.revocations,
    two: two.revocations,
    clocks,
    async dispose() {
      const admin = await MongoClient.connect(uri!);
      await admin.db(db).dropDatabase();
      await Promise.all([admin.close(), one.close(), two.close()]);
    },
  };
};

/** Events the watcher is handed within `ms`, skipping idle turns. */
async function drain(watcher: Watcher, ms = 300): Promise<RevocationRecord[]> {
  const events: RevocationRecord[] = [];
  const deadline = Date.now() + ms;
  const signal = AbortSignal.timeout(ms);
  while (Date.now() < deadline) {
    const update = await watcher.next(20, signal);
    if (update.kind === "events") events.push(...update.events);
    if (update.kind === "closed" || update.kind === "overflow") break;
  }
  return events;
}

const session = () => ({ target: { sessionId: newObjectId() }, reason: "logout" as const });
const idsOf = (events: RevocationRecord[]) => events.map((e) => ("sessionId" in e.target ? e.target.sessionId : e.target.userId));

for (const [name, makeWriters] of [
  ["memory", memoryWriters],
  ["MongoDB", mongoWriters],
] as const) {
  describe.skipIf(name === "MongoDB" && !uri)(`the revocation feed on ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const cleanup of cleanups) await cleanup();
    });

    async function setUp(options: { maxQueuedEvents?: number } = {}) {
      const writers = await makeWriters();
      let reads = 0;
      const counted: RevocationStore = {
        append: (drafts, expiresAt) => writers.one.append(drafts, expiresAt),
        since: (...args) => {
          reads++;
          return writers.one.since(...args);
        },
      };
      const feed = createRevocationFeed({ revocations: counted, now: () => writers.clocks.one, retentionMs: 3_600_000, pollMs: 10, heartbeatMs: 1000, log: silent, ...options });
      cleanups.push(async () => {
        await feed.close();
        await writers.dispose();
      });
      return { ...writers, feed, reads: () => reads, expiresAt: new Date(T0 + 3_600_000) };
    }

    it("delivers an event committed after a later-stamped one was read, once each", async () => {
      const { one, two, clocks, feed, expiresAt } = await setUp();
      const watcher = feed.join();
      clocks.one = T0 + 1000;
      const early = session();
      await one.append([early], expiresAt);
      expect(idsOf(await drain(watcher))).toEqual([early.target.sessionId]);
      // Writer two's clock is 800 ms behind: its event lands before what the feed has read.
      clocks.two = T0 + 200;
      const late = session();
      await two.append([late], expiresAt);
      expect(idsOf(await drain(watcher))).toEqual([late.target.sessionId]);
      expect(feed.frontier - OVERLAP_MS).toBeLessThan(T0 + 200);
    });

    it("reads once per poll for every watcher together, and not at all once nobody watches", async () => {
      const { one, feed, reads, expiresAt } = await setUp();
      const watchers = Array.from({ length: 50 }, () => feed.join());
      await one.append([session()], expiresAt);
      const handed = await Promise.all(watchers.map((w) => drain(w, 200)));
      expect(handed.every((events) => events.length === 1)).toBe(true);
      // A 10 ms poll for ~200 ms: some twenty reads, where one loop per watcher would make a thousand.
      expect(reads()).toBeLessThan(60);
      for (const w of watchers) w.leave();
      await sleep(50);
      const after = reads();
      await sleep(100);
      expect(reads()).toBe(after);
    });

    it("tells a watcher that does not read to resync instead of queueing without end", async () => {
      const { one, feed, expiresAt } = await setUp({ maxQueuedEvents: 3 });
      const slow = feed.join();
      const keeping = feed.join();
      const kept = drain(keeping, 600);
      for (let i = 0; i < 5; i++) {
        await one.append([session()], expiresAt);
        await sleep(30);
      }
      expect((await kept).length).toBe(5);
      expect((await slow.next(1000, AbortSignal.timeout(1000))).kind).toBe("overflow");
    });
  });
}

describe.skipIf(!uri)("MongoDB change streams", () => {
  it(gaps.has("change-streams") ? "are missing on this server: follow says so, and the feed polls" : "tell of an append on another client at once", async () => {
    const writers = await mongoWriters();
    try {
      let told = 0;
      const follower = await writers.one.follow!(
        () => told++,
        () => undefined,
      );
      if (gaps.has("change-streams")) {
        expect(follower).toBeNull();
        return;
      }
      expect(follower).not.toBeNull();
      await writers.two.append([session()], new Date(T0 + 3_600_000));
      await expect.poll(() => told, { timeout: 2000 }).toBe(1);
      await follower!.close();
    } finally {
      await writers.dispose();
    }
  });
});
