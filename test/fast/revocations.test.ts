// WatchRevocations through the real router on the memory store and the test's clock: who may
// watch, replay from nothing and from a cursor, every reason arriving live, resync on a cursor older
// than what is kept, heartbeats, and the stream ending when the feed closes.
import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RevocationReason } from "../../gen/identity/v1/identity_pb.js";
import { as, DEMO_APPID, refusal, startFast, type Fast } from "../support/fast.js";
import { newObjectId } from "../../src/store/store.js";
import { targetsOf, watch } from "../support/watch.js";

const API_KEY = "test-revocations-key-0123456789";
const internal = { "x-api-key": API_KEY };
const GATED = "wx00000000000000c3";
const HEARTBEAT_MS = 300;
const config = {
  apps: [
    { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "demo-secret" },
    { id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: "gated-secret", registration: "explicit" },
  ],
  internalCallers: [{ name: "gateway", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
  tokens: { maxSessionsPerUser: 2, refreshGraceSeconds: 0 },
  revocations: { pollIntervalMs: 20, heartbeatIntervalMs: HEARTBEAT_MS },
};
/** Access-token lifetime (2 h) plus the 10 min margin. */
const RETENTION_MS = (7200 + 600) * 1000;

const sidOf = (access: string) => decodeJwt(access).sid as string;

let f: Fast;
beforeAll(async () => {
  f = await startFast(config);
});
afterAll(() => f.feed.close());

describe("who may watch", () => {
  it("internal callers only: no key or an end user's bearer is PERMISSION_DENIED, a wrong key API_KEY_INVALID", async () => {
    const me = await f.login();
    const none = await refusal(watch(f.client, {}).next());
    expect([none.code, none.reason]).toEqual([Code.PermissionDenied, "PERMISSION_DENIED"]);
    const bearer = await refusal(watch(f.client, as(me.access).headers as Record<string, string>).next());
    expect([bearer.code, bearer.reason]).toEqual([Code.PermissionDenied, "PERMISSION_DENIED"]);
    const wrong = await refusal(watch(f.client, { "x-api-key": "not-the-key" }).next());
    expect([wrong.code, wrong.reason]).toEqual([Code.Unauthenticated, "API_KEY_INVALID"]);
  });

  it("refuses a cursor it did not give out: garbled, too long, or from the future", async () => {
    for (const cursor of ["garbage", "r1.", `r1.${"z".repeat(80)}`, `r1.${(f.clock.now() + 3_600_000).toString(36)}`]) {
      const bad = await refusal(watch(f.client, internal, cursor).next());
      expect([bad.code, bad.reason, bad.metadata.field]).toEqual([Code.InvalidArgument, "FIELD_INVALID", "cursor"]);
    }
  });
});

describe("replay and resume", () => {
  it("an empty cursor replays every revocation kept, ends the replay with caught_up, then a cursor resumes after it", async () => {
    const early = await f.login();
    await f.client.logout({}, as(early.access));
    f.clock.advance(60_000);

    const first = watch(f.client, internal);
    const caughtUp = await first.until((m) => m.caughtUp);
    expect(await first.revocationOf(sidOf(early.access))).toMatchObject({ reason: RevocationReason.LOGOUT });
    expect(first.messages.every((m) => !m.resync && m.cursor)).toBe(true);
    first.close();

    f.clock.advance(60_000);
    const later = await f.login();
    await f.client.logout({}, as(later.access));
    const resumed = watch(f.client, internal, caughtUp.cursor);
    await resumed.until((m) => m.caughtUp);
    // What came before the cursor (less the overlap window) is not told again.
    expect(targetsOf(resumed.messages)).toContain(sidOf(later.access));
    expect(targetsOf(resumed.messages)).not.toContain(sidOf(early.access));
    resumed.close();
  });

  it("a cursor older than what is kept: resync on the first message, then everything kept, then caught_up", async () => {
    const stale = watch(f.client, internal);
    const { cursor } = await stale.until((m) => m.caughtUp);
    stale.close();
    f.clock.advance(RETENTION_MS + 60_000);
    const me = await f.login();
    await f.client.logout({}, as(me.access));

    const again = watch(f.client, internal, cursor);
    // One page: the replay is a single message, both resync and caught_up.
    expect(await again.next()).toMatchObject({ resync: true, caughtUp: true });
    expect(targetsOf(again.messages)).toEqual([sidOf(me.access)]);
    again.close();
  });
});

describe("live", () => {
  let live: ReturnType<typeof watch>;
  beforeAll(async () => {
    live = watch(f.client, internal);
    await live.until((m) => m.caughtUp);
  });
  afterAll(() => live.close());

  it("tells a logout and a logout of all sessions, session by session", async () => {
    const me = await f.login();
    await f.client.logout({}, as(me.access));
    expect((await live.revocationOf(sidOf(me.access))).reason).toBe(RevocationReason.LOGOUT);

    const phone = await f.login();
    const laptop = await f.login({ openid: phone.openid });
    await f.client.logout({ allSessions: true }, as(laptop.access));
    expect((await live.revocationOf(sidOf(phone.access))).reason).toBe(RevocationReason.LOGOUT_ALL);
    expect((await live.revocationOf(sidOf(laptop.access))).reason).toBe(RevocationReason.LOGOUT_ALL);
  });

  it("tells a reused refresh token and the session cap's oldest session", async () => {
    const me = await f.login();
    await f.client.refresh({ refreshToken: me.refresh });
    expect((await refusal(f.client.refresh({ refreshToken: me.refresh }))).reason).toBe("REFRESH_TOKEN_REUSED");
    expect((await live.revocationOf(sidOf(me.access))).reason).toBe(RevocationReason.REFRESH_TOKEN_REUSED);

    const oldest = await f.login();
    await f.login({ openid: oldest.openid });
    await f.login({ openid: oldest.openid });
    expect((await live.revocationOf(sidOf(oldest.access))).reason).toBe(RevocationReason.SESSION_LIMIT);
  });

  it("tells a disabled user as the user, at the time it was disabled", async () => {
    const me = await f.login();
    const at = f.clock.now();
    await f.client.updateUser({ user: { id: me.userId, status: 2 }, updateMask: { paths: ["status"] } }, { headers: internal });
    expect(await live.revocationOf(me.userId)).toMatchObject({ reason: RevocationReason.USER_DISABLED, revokeMs: at });
  });

  it("tells a session ended for another user's data; a pending session becoming a user's is not revoked", async () => {
    const me = await f.login();
    await refusal(f.client.oauth(f.encrypt(me.openid, { openId: "o_someone_else" }), as(me.access)));
    expect((await live.revocationOf(sidOf(me.access))).reason).toBe(RevocationReason.UNSPECIFIED);

    // Its new tokens keep the session id: a revocation would end them too.
    const pending = await f.login({ appid: GATED }, "gated");
    const { tokens } = await f.client.oauth(f.encrypt(pending.openid, { openId: pending.openid }, GATED), as(pending.access));
    expect(sidOf(tokens!.accessToken)).toBe(sidOf(pending.access));
    const marker = await f.login();
    await f.client.logout({}, as(marker.access));
    await live.revocationOf(sidOf(marker.access));
    expect(targetsOf(live.messages)).not.toContain(sidOf(pending.access));
  });

  it("sends a heartbeat with a cursor when nothing happens, and says how often", async () => {
    const started = Date.now();
    const beat = await live.until((m) => m.revocations.length === 0, 3000);
    expect(Date.now() - started).toBeLessThan(HEARTBEAT_MS * 4);
    expect(beat.cursor).toMatch(/^r1\./);
    expect(Number(beat.heartbeatInterval!.nanos) / 1e6 + Number(beat.heartbeatInterval!.seconds) * 1000).toBe(HEARTBEAT_MS);
  });
});

describe("a watcher that stops reading", () => {
  it("is told to resync once too far behind, then replayed everything kept, then caught up", async () => {
    const own = await startFast(config);
    const slow = watch(own.client, internal);
    await slow.until((m) => m.caughtUp);
    // Five reads of 3000 events each while the watcher reads nothing: past the 10 000 it may queue.
    const expiresAt = new Date(own.clock.now() + 3_600_000);
    for (let i = 0; i < 5; i++) {
      await own.store.revocations.append(
        Array.from({ length: 3000 }, () => ({ target: { sessionId: newObjectId() }, reason: "logout" as const })),
        expiresAt,
      );
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    const resync = await slow.until((m) => m.resync, 5000);
    expect(resync.revocations).toHaveLength(1000);
    const caughtUp = await slow.until((m) => m.caughtUp, 5000);
    const replayed = slow.messages.slice(slow.messages.indexOf(resync), slow.messages.indexOf(caughtUp) + 1);
    expect(replayed.reduce((n, m) => n + m.revocations.length, 0)).toBe(15_000);
    slow.close();
    await own.feed.close();
  });
});

describe("shutdown", () => {
  it("closing the feed ends open streams cleanly", async () => {
    const own = await startFast(config);
    const open = watch(own.client, internal);
    await open.until((m) => m.caughtUp);
    const started = Date.now();
    await own.feed.close();
    expect(await open.ended()).toBeNull();
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
