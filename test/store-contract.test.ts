import { randomUUID } from "node:crypto";
import { MongoClient, ObjectId } from "mongodb";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { MemoryStore } from "../src/store/memory-store.js";
import { MongoStore } from "../src/store/mongo-store.js";
import { gapsOf, type Gap } from "./support/mongo-gaps.js";
import {
  DuplicateKeyError,
  identityKey,
  newObjectId,
  NotFoundError,
  SPENT_HASHES_KEPT,
  StoreUnavailableError,
  unionidKey,
  VersionConflictError,
  type IdentityRecord,
  type SessionDraft,
  type Store,
  type UniqueKeyKind,
  type UserDraft,
} from "../src/store/store.js";

// One contract, two stores: the embedded MemoryStore always, MongoStore when MONGODB_URI names a
// server (CI points it at FerretDB), each run in a database of its own.

interface StoreFixture {
  store: Store;
  dispose(): Promise<void>;
}

const runTag = randomUUID().slice(0, 8);
let sequence = 0;
/** A value no other test uses. */
const unique = (prefix: string) => `${prefix}-${runTag}-${++sequence}`;

const at = (iso: string) => new Date(iso);
const inOneHour = () => new Date(Date.now() + 3_600_000);

function identity(fields: Partial<IdentityRecord> = {}): IdentityRecord {
  return { platform: "wechat", appid: "wx-app", openid: unique("openid"), createdAt: at("2024-05-06T07:08:09.123Z"), ...fields };
}

function userDraft(fields: Partial<UserDraft> = {}): UserDraft {
  return {
    roles: ["user"],
    status: "active",
    identities: [identity()],
    attributes: {},
    createdAt: at("2024-05-06T07:08:09.123Z"),
    updatedAt: at("2024-05-06T07:08:09.456Z"),
    ...fields,
  };
}

function sessionDraft(fields: Partial<SessionDraft> = {}): SessionDraft {
  return {
    appKey: "mini",
    userId: newObjectId(),
    platform: "wechat",
    appid: "wx-app",
    openid: unique("openid"),
    refreshHash: unique("hash"),
    spentRefreshHashes: [],
    rotatedAt: at("2024-05-06T07:08:09.123Z"),
    chainKey: unique("chain"),
    createdAt: at("2024-05-06T07:08:09.123Z"),
    expiresAt: inOneHour(),
    revokedAt: null,
    ...fields,
  };
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail("expected a rejection"),
    (err: unknown) => err,
  );
}

async function expectDuplicate(promise: Promise<unknown>, kind: UniqueKeyKind): Promise<void> {
  const err = await rejectionOf(promise);
  expect(err).toBeInstanceOf(DuplicateKeyError);
  expect((err as DuplicateKeyError).kind).toBe(kind);
}

/** For each kind of unique key: fields for a holder, and fields for another user that collide with them. */
const collisions: { kind: UniqueKeyKind; fields: () => [Partial<UserDraft>, Partial<UserDraft>] }[] = [
  {
    kind: "identity",
    fields: () => {
      const openid = unique("openid");
      return [{ identities: [identity({ openid })] }, { identities: [identity(), identity({ openid, createdAt: at("2025-01-01T00:00:00Z") })] }];
    },
  },
  {
    kind: "unionid",
    fields: () => {
      const unionid = unique("union");
      return [{ unionid }, { unionid }];
    },
  },
  {
    kind: "phone",
    fields: () => {
      const phoneNumber = unique("+86138");
      return [{ phoneNumber }, { phoneNumber }];
    },
  },
  {
    kind: "username",
    fields: () => {
      const username = unique("Alice");
      return [{ username }, { username: username.toLowerCase() }];
    },
  },
];

interface ContractOptions {
  skip?: boolean;
  gaps?: ReadonlySet<Gap>;
}

function describeStoreContract(name: string, makeStore: (now: () => number) => Promise<StoreFixture>, { skip = false, gaps = new Set() }: ContractOptions = {}): void {
  const needs = (gap: Gap) => it.skipIf(gaps.has(gap));

  describe.skipIf(skip)(name, () => {
    let fixture: StoreFixture | undefined;
    let store: Store;
    /** The store's clock: the real one unless a test stops it. */
    let stoppedAt: number | null = null;

    beforeAll(async () => {
      fixture = await makeStore(() => stoppedAt ?? Date.now());
      store = fixture.store;
      await store.init();
    });

    afterAll(async () => {
      await fixture?.dispose();
    });

    it("init is safe to call again", async () => {
      await expect(store.init()).resolves.toBeUndefined();
    });

    describe("users", () => {
      it("round-trips every field, nested attributes and Dates included", async () => {
        const draft: UserDraft = {
          nickname: "小明 🐼",
          avatarUrl: "https://example.com/a.png",
          gender: "female",
          birthday: "1990-02-03",
          phoneNumber: unique("+86139"),
          purePhoneNumber: "13900000000",
          countryCode: "86",
          email: "a@example.com",
          username: unique("Xiaoming"),
          passwordHash: "$argon2id$v=19$m=65536,t=3,p=4$abc",
          roles: ["user", "admin"],
          status: "disabled",
          inviteCode: "INV123",
          inviterId: newObjectId(),
          unionid: unique("union"),
          identities: [identity({ unionid: "u-1" }), identity({ platform: "alipay", appid: "ali-app" })],
          attributes: {
            profile: { city: "杭州", tags: ["a", "b"], score: 1.5, big: 2 ** 40, negative: -7, flag: true, none: null },
            deep: { list: [{ x: 1 }, "s", 2] },
            empty: {},
            emptyList: [],
          },
          createdAt: at("2024-01-02T03:04:05.678Z"),
          updatedAt: at("2024-06-07T08:09:10.111Z"),
        };
        const inserted = await store.users.insert(draft);
        expect(inserted.id).toMatch(/^[0-9a-f]{24}$/);
        expect(inserted).toStrictEqual({ ...draft, id: inserted.id, version: 0 });
        const got = await store.users.get(inserted.id);
        expect(got).toStrictEqual(inserted);
        expect(await store.users.get(inserted.id.toUpperCase())).toStrictEqual(inserted);
        expect(got?.createdAt).toBeInstanceOf(Date);
        expect(got?.identities[0]?.createdAt).toBeInstanceOf(Date);
      });

      needs("nested-arrays")("round-trips arrays nested in arrays", async () => {
        const attributes = { matrix: [[1, 2], [[3]], []], mixed: [{ a: [[4]] }] };
        const user = await store.users.insert(userDraft({ attributes }));
        expect((await store.users.get(user.id))?.attributes).toEqual(attributes);
      });

      it("round-trips a minimal user and leaves unset fields unset", async () => {
        const draft = userDraft({ nickname: undefined, roles: [], identities: [] });
        const inserted = await store.users.insert(draft);
        const got = await store.users.get(inserted.id);
        expect(got).toEqual({ ...draft, id: inserted.id, version: 0 });
        expect(got?.nickname).toBeUndefined();
        // Nothing of the storage shape (_id, __v, keys) leaks into the record.
        const setKeys = (o: object) =>
          Object.entries(o)
            .flatMap(([k, v]) => (v === undefined ? [] : [k]))
            .sort();
        expect(setKeys(got ?? {})).toEqual(setKeys({ ...draft, id: "", version: 0 }));
      });

      it("returns null for unknown and malformed ids", async () => {
        for (const id of [newObjectId(), "", "nope", "aaaaaaaaaaaa", "zzzzzzzzzzzzzzzzzzzzzzzz", `${newObjectId()}0`]) {
          expect(await store.users.get(id)).toBeNull();
        }
      });

      it("lets any number of users hold no unique key at all", async () => {
        const a = await store.users.insert(userDraft({ identities: [] }));
        const b = await store.users.insert(userDraft({ identities: [] }));
        expect(a.id).not.toBe(b.id);
        expect(await store.users.get(b.id)).toEqual(b);
      });

      it("allows the same openid under another appid", async () => {
        const openid = unique("openid");
        await store.users.insert(userDraft({ identities: [identity({ openid })] }));
        await expect(store.users.insert(userDraft({ identities: [identity({ openid, appid: "wx-other" })] }))).resolves.toBeDefined();
      });

      describe.each(collisions)("unique $kind", ({ kind, fields }) => {
        needs("unique-multikey")("is rejected on insert, storing nothing", async () => {
          const [held, taken] = fields();
          const holder = await store.users.insert(userDraft(held));
          const taker = userDraft(taken);
          await expectDuplicate(store.users.insert(taker), kind);
          expect(await store.users.get(holder.id)).toEqual(holder);
          const [ownIdentity] = taker.identities;
          expect(ownIdentity).toBeDefined();
          if (ownIdentity) {
            expect(await store.users.findByKeys([identityKey(ownIdentity.platform, ownIdentity.appid, ownIdentity.openid)])).toEqual([]);
          }
        });

        needs("unique-multikey")("is rejected on replace, changing nothing", async () => {
          const [held, taken] = fields();
          const holder = await store.users.insert(userDraft(held));
          const other = await store.users.insert(userDraft());
          await expectDuplicate(store.users.replace({ ...other, ...taken, nickname: "taker" }), kind);
          expect(await store.users.get(holder.id)).toEqual(holder);
          expect(await store.users.get(other.id)).toEqual(other);
          // The failed write did not bump the version either.
          await expect(store.users.replace({ ...other, nickname: "fine" })).resolves.toMatchObject({ version: 1, nickname: "fine" });
        });
      });

      it("lets a user keep its own keys and frees the keys it drops", async () => {
        const username = unique("Bob");
        const phoneNumber = unique("+86137");
        const a = await store.users.insert(userDraft({ username, phoneNumber }));
        const renamed = await store.users.replace({ ...a, username: username.toUpperCase() });
        const { phoneNumber: _, ...withoutPhone } = renamed;
        await store.users.replace(withoutPhone);
        const b = await store.users.insert(userDraft({ phoneNumber }));
        expect((await store.users.findByKeys([`phone:${phoneNumber}`])).map((u) => u.id)).toEqual([b.id]);
        expect((await store.users.findByKeys([`username:${username.toLowerCase()}`])).map((u) => u.id)).toEqual([a.id]);
      });

      it("finds the distinct users holding any of the keys", async () => {
        const a = await store.users.insert(userDraft({ phoneNumber: unique("+86136") }));
        const b = await store.users.insert(userDraft({ unionid: unique("union") }));
        const aIdentity = a.identities[0];
        expect(aIdentity).toBeDefined();
        if (!aIdentity || !a.phoneNumber || !b.unionid) return;
        const aKey = identityKey(aIdentity.platform, aIdentity.appid, aIdentity.openid);

        expect(await store.users.findByKeys([aKey, `phone:${a.phoneNumber}`])).toEqual([a]);
        const both = await store.users.findByKeys([aKey, unionidKey(b.unionid), "phone:nobody", `phone:${a.phoneNumber}`]);
        expect(both.map((u) => u.id).sort()).toEqual([a.id, b.id].sort());
        expect(both.find((u) => u.id === b.id)).toEqual(b);
        expect(await store.users.findByKeys([])).toEqual([]);
        expect(await store.users.findByKeys([identityKey("wechat", "wx-app", unique("nobody"))])).toEqual([]);
      });

      it("replace bumps the version and stores the record", async () => {
        const user = await store.users.insert(userDraft());
        const first = await store.users.replace({ ...user, nickname: "one", attributes: { n: 1 } });
        expect(first).toEqual({ ...user, nickname: "one", attributes: { n: 1 }, version: 1 });
        expect(await store.users.get(user.id)).toEqual(first);
        const second = await store.users.replace({ ...first, nickname: "two" });
        expect(second.version).toBe(2);
        expect(await store.users.get(user.id)).toEqual(second);
      });

      it("replace from a stale version is a VersionConflictError and changes nothing", async () => {
        const user = await store.users.insert(userDraft());
        const current = await store.users.replace({ ...user, nickname: "current" });
        expect(await rejectionOf(store.users.replace({ ...user, nickname: "stale" }))).toBeInstanceOf(VersionConflictError);
        expect(await rejectionOf(store.users.replace({ ...user, version: 7 }))).toBeInstanceOf(VersionConflictError);
        expect(await store.users.get(user.id)).toEqual(current);
      });

      it("replace of a missing user is a NotFoundError", async () => {
        const user = await store.users.insert(userDraft());
        expect(await rejectionOf(store.users.replace({ ...user, id: newObjectId() }))).toBeInstanceOf(NotFoundError);
        expect(await rejectionOf(store.users.replace({ ...user, id: "nope" }))).toBeInstanceOf(NotFoundError);
      });

      needs("unique-multikey")("of 20 parallel inserts with one identity, exactly one succeeds", async () => {
        const shared = identity();
        const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.users.insert(userDraft({ nickname: `racer ${i}`, identities: [shared] }))));
        const won = results.filter((r) => r.status === "fulfilled");
        expect(won).toHaveLength(1);
        for (const r of results) {
          if (r.status === "fulfilled") continue;
          expect(r.reason).toBeInstanceOf(DuplicateKeyError);
          expect((r.reason as DuplicateKeyError).kind).toBe("identity");
        }
        const found = await store.users.findByKeys([identityKey(shared.platform, shared.appid, shared.openid)]);
        expect(found.map((u) => u.id)).toEqual(won.map((r) => r.value.id));
      });

      needs("atomic-conditional-writes")("of 20 parallel replaces from one version, exactly one succeeds", async () => {
        const user = await store.users.insert(userDraft());
        const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.users.replace({ ...user, nickname: `racer ${i}` })));
        const won = results.filter((r) => r.status === "fulfilled");
        expect(won).toHaveLength(1);
        for (const r of results) {
          if (r.status === "rejected") expect(r.reason).toBeInstanceOf(VersionConflictError);
        }
        const stored = await store.users.get(user.id);
        expect(stored?.version).toBe(1);
        expect(stored?.nickname).toBe(won[0]?.value.nickname);
      });

      it("hands out copies: mutating a draft or a returned record does not change the store", async () => {
        const draft = userDraft({ attributes: { nested: { n: 1 } }, username: unique("Carol") });
        const inserted = await store.users.insert(draft);
        const snapshot = structuredClone(inserted);
        draft.roles.push("admin");
        (draft.attributes.nested as { n: number }).n = 2;
        inserted.roles.push("root");
        inserted.identities.push(identity());
        (inserted.attributes.nested as { n: number }).n = 3;
        inserted.createdAt.setTime(0);

        const got = await store.users.get(snapshot.id);
        expect(got).toEqual(snapshot);
        got?.roles.push("x");
        got?.updatedAt.setTime(0);
        expect(await store.users.get(snapshot.id)).toEqual(snapshot);

        const replaced = await store.users.replace({ ...snapshot, nickname: "copy" });
        const stored = structuredClone(replaced);
        replaced.roles.push("y");
        const [found] = await store.users.findByKeys([`username:${snapshot.username?.toLowerCase()}`]);
        found?.identities.splice(0);
        expect(await store.users.get(snapshot.id)).toEqual(stored);
      });
    });

    describe("sessions", () => {
      it("round-trips a session under a caller-chosen id", async () => {
        const draft = sessionDraft({ id: newObjectId(), unionid: unique("union"), sessionKey: "c2Vzc2lvbg==", spentRefreshHashes: ["h0"] });
        const inserted = await store.sessions.insert(draft);
        expect(inserted).toStrictEqual(draft);
        expect(await store.sessions.get(inserted.id)).toStrictEqual(draft);
      });

      it("round-trips a pending session under a new id", async () => {
        const draft = sessionDraft({ userId: null, refreshHash: null });
        const inserted = await store.sessions.insert(draft);
        expect(inserted.id).toMatch(/^[0-9a-f]{24}$/);
        expect(await store.sessions.get(inserted.id)).toEqual({ ...draft, id: inserted.id });
      });

      it("rejects a second session with the same id", async () => {
        const id = newObjectId();
        await store.sessions.insert(sessionDraft({ id }));
        expect(await rejectionOf(store.sessions.insert(sessionDraft({ id })))).toBeInstanceOf(DuplicateKeyError);
      });

      it("returns null for unknown and malformed ids", async () => {
        for (const id of [newObjectId(), "", "nope", "aaaaaaaaaaaa"]) {
          expect(await store.sessions.get(id)).toBeNull();
          expect(await store.sessions.rotate(id, rotation("h", "h2"))).toBeNull();
          expect(await store.sessions.promote(id, newObjectId(), "h", inOneHour())).toBeNull();
          await expect(store.sessions.revoke(id, "logout")).resolves.toBeUndefined();
        }
      });

      it("rotate is a compare-and-set on the refresh hash", async () => {
        const session = await store.sessions.insert(sessionDraft({ refreshHash: "h1" }));
        const next = rotation("h1", "h2");
        const rotated = await store.sessions.rotate(session.id, next);
        expect(rotated).toEqual({
          ...session,
          refreshHash: "h2",
          spentRefreshHashes: ["h1"],
          rotatedAt: next.rotatedAt,
          expiresAt: next.expiresAt,
        });
        expect(await store.sessions.get(session.id)).toEqual(rotated);

        expect(await store.sessions.rotate(session.id, rotation("h1", "h3"))).toBeNull();
        expect(await store.sessions.rotate(session.id, rotation("wrong", "h3"))).toBeNull();
        expect(await store.sessions.get(session.id)).toEqual(rotated);

        await expect(store.sessions.rotate(session.id, rotation("h2", "h3"))).resolves.toMatchObject({
          refreshHash: "h3",
          spentRefreshHashes: ["h1", "h2"],
        });
      });

      it("rotate never succeeds on a revoked or pending session", async () => {
        const session = await store.sessions.insert(sessionDraft({ refreshHash: "h1" }));
        await store.sessions.revoke(session.id, "logout");
        expect(await store.sessions.rotate(session.id, rotation("h1", "h2"))).toBeNull();
        expect((await store.sessions.get(session.id))?.refreshHash).toBe("h1");

        const pending = await store.sessions.insert(sessionDraft({ userId: null, refreshHash: null }));
        expect(await store.sessions.rotate(pending.id, rotation("", "h2"))).toBeNull();
      });

      needs("atomic-conditional-writes")("of 20 parallel rotations of one hash, exactly one succeeds", async () => {
        const session = await store.sessions.insert(sessionDraft({ refreshHash: "h1" }));
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.sessions.rotate(session.id, rotation("h1", `next-${i}`))));
        const won = results.filter((r) => r !== null);
        expect(won).toHaveLength(1);
        const stored = await store.sessions.get(session.id);
        expect(stored?.refreshHash).toBe(won[0]?.refreshHash);
        expect(stored?.spentRefreshHashes).toEqual(["h1"]);
      });

      needs("push-slice")(`keeps only the newest ${SPENT_HASHES_KEPT} spent hashes, oldest first`, async () => {
        const session = await store.sessions.insert(sessionDraft({ refreshHash: "h0" }));
        const rounds = SPENT_HASHES_KEPT + 3;
        for (let i = 0; i < rounds; i++) {
          expect(await store.sessions.rotate(session.id, rotation(`h${i}`, `h${i + 1}`))).not.toBeNull();
        }
        const stored = await store.sessions.get(session.id);
        expect(stored?.refreshHash).toBe(`h${rounds}`);
        expect(stored?.spentRefreshHashes).toEqual(Array.from({ length: SPENT_HASHES_KEPT }, (_, i) => `h${rounds - SPENT_HASHES_KEPT + i}`));
      });

      it("promotes only a pending, unrevoked session", async () => {
        const pending = await store.sessions.insert(sessionDraft({ userId: null, refreshHash: null }));
        const userId = newObjectId();
        const expiresAt = inOneHour();
        const promoted = await store.sessions.promote(pending.id, userId, "first", expiresAt);
        expect(promoted).toMatchObject({ id: pending.id, userId, refreshHash: "first", expiresAt, spentRefreshHashes: [], revokedAt: null });
        expect(promoted?.rotatedAt).toBeInstanceOf(Date);
        expect(await store.sessions.get(pending.id)).toEqual(promoted);

        expect(await store.sessions.promote(pending.id, newObjectId(), "again", inOneHour())).toBeNull();
        expect(await store.sessions.get(pending.id)).toEqual(promoted);

        const revoked = await store.sessions.insert(sessionDraft({ userId: null, refreshHash: null }));
        await store.sessions.revoke(revoked.id, "logout");
        expect(await store.sessions.promote(revoked.id, userId, "first", inOneHour())).toBeNull();
      });

      it("revoke marks the session once and keeps the first reason", async () => {
        const session = await store.sessions.insert(sessionDraft());
        await store.sessions.revoke(session.id, "refresh_token_reused");
        const revoked = await store.sessions.get(session.id);
        expect(revoked?.revokedAt).toBeInstanceOf(Date);
        expect(revoked?.revokeReason).toBe("refresh_token_reused");
        await store.sessions.revoke(session.id, "logout");
        expect(await store.sessions.get(session.id)).toEqual(revoked);
      });

      it("revokeAllForUser revokes exactly that user's live sessions", async () => {
        const userId = newObjectId();
        const live = await Promise.all([store.sessions.insert(sessionDraft({ userId })), store.sessions.insert(sessionDraft({ userId }))]);
        const earlier = await store.sessions.insert(sessionDraft({ userId }));
        await store.sessions.revoke(earlier.id, "refresh_token_reused");
        const earlierRevoked = await store.sessions.get(earlier.id);
        const other = await store.sessions.insert(sessionDraft());
        const pending = await store.sessions.insert(sessionDraft({ userId: null, refreshHash: null }));

        expect(await store.sessions.revokeAllForUser(userId, "logout_all")).toBe(2);
        for (const { id } of live) {
          const s = await store.sessions.get(id);
          expect(s?.revokedAt).toBeInstanceOf(Date);
          expect(s?.revokeReason).toBe("logout_all");
        }
        expect(await store.sessions.get(earlier.id)).toEqual(earlierRevoked);
        expect(await store.sessions.get(other.id)).toEqual(other);
        expect(await store.sessions.get(pending.id)).toEqual(pending);
        expect(await store.sessions.revokeAllForUser(userId, "logout_all")).toBe(0);
        expect(await store.sessions.revokeAllForUser(newObjectId(), "logout_all")).toBe(0);
      });

      it("revokeOldest keeps the user's newest live sessions, whatever revoked and expired ones it has", async () => {
        const userId = newObjectId();
        const created = (second: number) => at(`2024-05-06T07:08:${String(second).padStart(2, "0")}.000Z`);
        const revoked = [];
        for (const second of [1, 2, 3]) {
          const session = await store.sessions.insert(sessionDraft({ userId, createdAt: created(second) }));
          await store.sessions.revoke(session.id, "refresh_token_reused");
          revoked.push(await store.sessions.get(session.id));
        }
        const expired = await store.sessions.insert(sessionDraft({ userId, createdAt: created(4), expiresAt: new Date(Date.now() - 1000) }));
        const live = [];
        for (const second of [5, 6, 7, 8]) live.push(await store.sessions.insert(sessionDraft({ userId, createdAt: created(second) })));
        const other = await store.sessions.insert(sessionDraft({ createdAt: created(0) }));

        expect(await store.sessions.revokeOldest(userId, 2, new Date(), "session_limit")).toBe(2);
        for (const { id } of live.slice(0, 2)) expect(await store.sessions.get(id)).toMatchObject({ revokedAt: expect.any(Date), revokeReason: "session_limit" });
        for (const { id } of live.slice(2)) expect((await store.sessions.get(id))?.revokedAt).toBeNull();
        for (const session of revoked) expect(await store.sessions.get(session!.id)).toEqual(session);
        expect(await store.sessions.get(expired.id)).toEqual(expired);
        expect(await store.sessions.get(other.id)).toEqual(other);

        expect(await store.sessions.revokeOldest(userId, 2, new Date(), "session_limit")).toBe(0);
        const newest = await store.sessions.insert(sessionDraft({ userId, createdAt: created(9) }));
        expect(await store.sessions.revokeOldest(userId, 2, new Date(), "session_limit")).toBe(1);
        expect((await store.sessions.get(live[2]!.id))?.revokeReason).toBe("session_limit");
        expect((await store.sessions.get(live[3]!.id))?.revokedAt).toBeNull();
        expect((await store.sessions.get(newest.id))?.revokedAt).toBeNull();
        // Logout-all after the cap reaches the two that are left and the expired one, never revoked.
        expect(await store.sessions.revokeAllForUser(userId, "logout_all")).toBe(3);
        expect((await store.sessions.get(newest.id))?.revokeReason).toBe("logout_all");
      });

      it("hands out copies: mutating a returned session does not change the store", async () => {
        const draft = sessionDraft({ refreshHash: "h1", spentRefreshHashes: ["h0"] });
        const inserted = await store.sessions.insert(draft);
        const snapshot = structuredClone(inserted);
        draft.spentRefreshHashes.push("draft");
        inserted.spentRefreshHashes.push("x");
        inserted.expiresAt.setTime(0);
        expect(await store.sessions.get(snapshot.id)).toEqual(snapshot);

        const rotated = await store.sessions.rotate(snapshot.id, rotation("h1", "h2"));
        const stored = structuredClone(rotated);
        rotated?.spentRefreshHashes.splice(0);
        rotated?.rotatedAt.setTime(0);
        const got = await store.sessions.get(snapshot.id);
        expect(got).toEqual(stored);
        got?.spentRefreshHashes.push("y");
        expect(await store.sessions.get(snapshot.id)).toEqual(stored);
      });
    });

    describe("revocations", () => {
      // Each test on a clock of its own, years ahead, so none reads another's events.
      const month = (m: number) => Date.parse(`2032-${String(m).padStart(2, "0")}-01T00:00:00.000Z`);
      const logout = () => ({ target: { sessionId: newObjectId() }, reason: "logout" as const });
      const year = (from: number) => new Date(from + 365 * 86_400_000);
      afterEach(() => {
        stoppedAt = null;
      });

      it("reads back appended events after a position, oldest first by time then id, stamped by the store's clock", async () => {
        stoppedAt = month(1);
        const disabled = { target: { userId: newObjectId() }, reason: "user_disabled" as const };
        const first = [logout(), disabled];
        await store.revocations.append(first, year(month(1)));
        stoppedAt = month(1) + 5;
        await store.revocations.append([logout()], year(month(1)));
        const all = await store.revocations.since(new Date(month(1) - 1), 10);
        expect(all.map((e) => e.revokedAt.getTime())).toEqual([month(1), month(1), month(1) + 5]);
        expect(all.slice(0, 2).map(({ target, reason }) => ({ target, reason }))).toEqual(expect.arrayContaining(first));
        expect(all[0]!.id < all[1]!.id).toBe(true);
        expect(all[0]!.expiresAt).toEqual(year(month(1)));
        expect(await store.revocations.since(new Date(month(1)), 10)).toEqual([all[2]]);
        // Paging: past (time, id) of the last one read, never repeating it.
        expect(await store.revocations.since(new Date(month(1) - 1), 1)).toEqual([all[0]]);
        expect(await store.revocations.since(all[0]!.revokedAt, 10, all[0]!.id)).toEqual(all.slice(1));
        expect(await store.revocations.append([], year(month(1)))).toBeUndefined();
      });

      it("leaves out expired events, without waiting for a sweep", async () => {
        stoppedAt = month(2);
        await store.revocations.append([logout()], new Date(month(2) + 60_000));
        expect(await store.revocations.since(new Date(month(2) - 1), 10)).toHaveLength(1);
        stoppedAt = month(2) + 60_000;
        expect(await store.revocations.since(new Date(month(2) - 1), 10)).toEqual([]);
      });

      it("finds an event stamped earlier than one already read when it is appended later (a writer behind)", async () => {
        stoppedAt = month(3) + 1000;
        await store.revocations.append([logout()], year(month(3)));
        const [ahead] = await store.revocations.since(new Date(month(3)), 10);
        stoppedAt = month(3) + 200;
        const behind = logout();
        await store.revocations.append([behind], year(month(3)));
        expect((await store.revocations.since(new Date(month(3)), 10)).map((e) => e.target)).toEqual([behind.target, ahead!.target]);
      });

      it("revokeAllForUser and revokeOldest tell beforeRevoking the ids while the sessions are live; its failure leaves them live", async () => {
        const userId = newObjectId();
        const older = await store.sessions.insert(sessionDraft({ userId, createdAt: at("2024-05-06T07:08:01.000Z") }));
        const newer = await store.sessions.insert(sessionDraft({ userId, createdAt: at("2024-05-06T07:08:02.000Z") }));
        const told: { ids: string[]; live: boolean[] }[] = [];
        const tell = async (ids: string[]) => {
          told.push({ ids, live: await Promise.all(ids.map(async (id) => (await store.sessions.get(id))?.revokedAt === null)) });
        };
        expect(await store.sessions.revokeOldest(userId, 1, new Date(), "session_limit", tell)).toBe(1);
        expect(told).toEqual([{ ids: [older.id], live: [true] }]);
        const refused = await rejectionOf(
          store.sessions.revokeAllForUser(userId, "logout_all", async () => {
            throw new Error("the log is down");
          }),
        );
        expect((refused as Error).message).toBe("the log is down");
        expect((await store.sessions.get(newer.id))?.revokedAt).toBeNull();
        expect(await store.sessions.revokeAllForUser(userId, "logout_all", tell)).toBe(1);
        expect(told[1]).toEqual({ ids: [newer.id], live: [true] });
        // Nothing live: nothing to tell.
        expect(await store.sessions.revokeAllForUser(userId, "logout_all", tell)).toBe(0);
        expect(told).toHaveLength(2);
      });
    });

    describe("replays", () => {
      it("remembers a value and recalls copies of it", async () => {
        const key = unique("replay");
        const value = { openid: "o-1", nested: { tags: ["a"], n: 1, none: null } };
        const stored = structuredClone(value);
        const remembered = await store.replays.remember(key, value, inOneHour());
        expect(remembered).toEqual({ value: stored, created: true });
        value.nested.tags.push("draft");
        (remembered.value.nested as { n: number }).n = 2;
        const recalled = await store.replays.recall(key);
        expect(recalled).toEqual(stored);
        (recalled!.nested as { tags: string[] }).tags.push("x");
        expect(await store.replays.recall(key)).toEqual(stored);
        expect(await store.replays.recall(unique("replay"))).toBeNull();
      });

      it("keeps the first value while it lives", async () => {
        const key = unique("replay");
        await store.replays.remember(key, { n: 1 }, inOneHour());
        expect(await store.replays.remember(key, { n: 2 }, inOneHour())).toEqual({ value: { n: 1 }, created: false });
        expect(await store.replays.recall(key)).toEqual({ n: 1 });
      });

      it("neither recalls nor keeps an expired entry", async () => {
        const key = unique("replay");
        expect(await store.replays.remember(key, { n: 1 }, new Date(Date.now() - 1_000))).toEqual({ value: { n: 1 }, created: true });
        expect(await store.replays.recall(key)).toBeNull();
        expect(await store.replays.remember(key, { n: 2 }, inOneHour())).toEqual({ value: { n: 2 }, created: true });
        expect(await store.replays.recall(key)).toEqual({ n: 2 });
      });

      /** Remembers one key from 20 callers at once: exactly one stores its value, and all get that one back. */
      async function expectOneRememberWins(key: string): Promise<void> {
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.replays.remember(key, { racer: i }, inOneHour())));
        const won = results.filter((r) => r.created);
        expect(won).toHaveLength(1);
        for (const r of results) expect(r.value).toEqual(won[0]?.value);
        expect(await store.replays.recall(key)).toEqual(won[0]?.value);
      }

      it("of 20 parallel remembers of a new key, exactly one stores its value", async () => {
        await expectOneRememberWins(unique("replay"));
      });

      needs("atomic-conditional-writes")("of 20 parallel remembers over an expired entry, exactly one stores its value", async () => {
        const key = unique("replay");
        await store.replays.remember(key, { stale: true }, new Date(Date.now() - 1_000));
        await expectOneRememberWins(key);
      });
    });

    describe("user removal and counts", () => {
      it("remove deletes the user and frees every unique key it held", async () => {
        const fields = { identities: [identity()], unionid: unique("union"), phoneNumber: unique("+86137"), username: unique("Gone"), inviteCode: unique("INV") };
        const user = await store.users.insert(userDraft(fields));
        expect(await store.users.remove(user.id)).toBe(true);
        expect(await store.users.get(user.id)).toBeNull();
        expect(await store.users.remove(user.id)).toBe(false);
        expect(await store.users.remove("not-an-id")).toBe(false);
        const again = await store.users.insert(userDraft(fields));
        expect(again.id).not.toBe(user.id);
      });

      it("counts users, and those holding an identity of one platform app", async () => {
        const appid = unique("wx.count");
        const before = await store.users.count();
        await store.users.insert(userDraft({ identities: [identity({ appid }), identity({ appid })] }));
        await store.users.insert(userDraft({ identities: [identity({ appid })] }));
        await store.users.insert(userDraft({ identities: [identity({ appid: `${appid}x` })] }));
        expect(await store.users.count()).toBe(before + 3);
        expect(await store.users.countWithIdentityOf("wechat", appid)).toBe(2);
        // The appid is matched as text, not as a pattern.
        expect(await store.users.countWithIdentityOf("wechat", appid.replace(".", "?"))).toBe(0);
      });
    });

    describe("sessions of a user", () => {
      it("listForUser gives the user's sessions newest first, revoked ones included, at most the limit", async () => {
        const userId = newObjectId();
        const first = await store.sessions.insert(sessionDraft({ userId, createdAt: at("2024-05-01T00:00:00Z"), clientAddress: "203.0.113.7" }));
        const second = await store.sessions.insert(sessionDraft({ userId, createdAt: at("2024-05-02T00:00:00Z") }));
        const third = await store.sessions.insert(sessionDraft({ userId, createdAt: at("2024-05-03T00:00:00Z") }));
        await store.sessions.insert(sessionDraft());
        await store.sessions.revoke(second.id, "logout");
        const listed = await store.sessions.listForUser(userId, 10);
        expect(listed.map((s) => s.id)).toEqual([third.id, second.id, first.id]);
        expect(listed[1]?.revokedAt).toBeInstanceOf(Date);
        expect(listed[2]?.clientAddress).toBe("203.0.113.7");
        expect((await store.sessions.listForUser(userId, 2)).map((s) => s.id)).toEqual([third.id, second.id]);
        expect(await store.sessions.listForUser(newObjectId(), 10)).toEqual([]);
      });

      it("removeForUser deletes every stored session of the user and no one else's", async () => {
        const userId = newObjectId();
        const live = await store.sessions.insert(sessionDraft({ userId }));
        const revoked = await store.sessions.insert(sessionDraft({ userId }));
        await store.sessions.revoke(revoked.id, "logout");
        const other = await store.sessions.insert(sessionDraft());
        expect(await store.sessions.removeForUser(userId)).toBe(2);
        expect(await store.sessions.get(live.id)).toBeNull();
        expect(await store.sessions.get(revoked.id)).toBeNull();
        expect(await store.sessions.listForUser(userId, 10)).toEqual([]);
        expect(await store.sessions.revokeAllForUser(userId, "logout_all")).toBe(0);
        expect(await store.sessions.get(other.id)).not.toBeNull();
      });

      it("listForUser includes a pending session once it is promoted", async () => {
        const userId = newObjectId();
        const pending = await store.sessions.insert(sessionDraft({ userId: null, refreshHash: null }));
        await store.sessions.promote(pending.id, userId, "first", inOneHour());
        expect((await store.sessions.listForUser(userId, 10)).map((s) => s.id)).toEqual([pending.id]);
      });
    });

    describe("audit", () => {
      // Each test on a clock of its own, years ahead, so a TTL monitor deletes nothing and tests read only their own events.
      const base = (year: number) => Date.parse(`${year}-03-01T00:00:00.000Z`);
      afterEach(() => {
        stoppedAt = null;
      });

      it("reads back events newest first, stamped by the store's clock, filtered by user, actor, type and time", async () => {
        const t0 = base(2033);
        const alice = newObjectId();
        const bob = newObjectId();
        const operator = unique("operator");
        const appended: [number, Parameters<Store["audit"]["append"]>[0]][] = [
          [t0, { type: "login", actor: { kind: "user", id: alice }, subjectUserId: alice, appKey: "mini", address: "203.0.113.1", outcome: "ok", details: { platform: "wechat" } }],
          [t0 + 1_000, { type: "login", actor: { kind: "user", id: bob }, subjectUserId: bob, outcome: "ok" }],
          [t0 + 2_000, { type: "admin.status_set", actor: { kind: "operator", id: operator }, subjectUserId: alice, outcome: "ok", details: { status: "disabled" } }],
          [t0 + 2_000, { type: "login", actor: { kind: "user", id: alice }, subjectUserId: alice, outcome: "ACCOUNT_DISABLED" }],
        ];
        for (const [time, draft] of appended) {
          stoppedAt = time;
          await store.audit.append(draft);
        }
        const all = await store.audit.list({ from: new Date(t0), before: new Date(t0 + 3_000) }, 10);
        expect(all.map((e) => [e.type, e.outcome])).toEqual([
          ["login", "ACCOUNT_DISABLED"],
          ["admin.status_set", "ok"],
          ["login", "ok"],
          ["login", "ok"],
        ]);
        expect(all[3]).toEqual({ ...appended[0]![1], id: expect.stringMatching(/^[0-9a-f]{24}$/), time: new Date(t0) });
        expect((await store.audit.list({ subjectUserId: alice }, 10)).map((e) => e.time.getTime())).toEqual([t0 + 2_000, t0 + 2_000, t0]);
        expect((await store.audit.list({ actorId: operator }, 10)).map((e) => e.type)).toEqual(["admin.status_set"]);
        expect((await store.audit.list({ subjectUserId: alice, type: "login" }, 10)).map((e) => e.outcome)).toEqual(["ACCOUNT_DISABLED", "ok"]);
        expect((await store.audit.list({ from: new Date(t0 + 1_000), before: new Date(t0 + 2_000) }, 10)).map((e) => e.subjectUserId)).toEqual([bob]);
      });

      it("pages past a position, events of the same millisecond told apart by id", async () => {
        stoppedAt = base(2034);
        const userId = newObjectId();
        for (let i = 0; i < 5; i++) await store.audit.append({ type: "login", actor: { kind: "system", id: "identity" }, subjectUserId: userId, outcome: "ok", details: { n: String(i) } });
        const seen: string[] = [];
        let after: { time: Date; id: string } | undefined;
        for (;;) {
          const page = await store.audit.list({ subjectUserId: userId }, 2, after);
          if (page.length === 0) break;
          seen.push(...page.map((e) => e.details?.n ?? ""));
          after = page.at(-1);
        }
        expect(seen).toEqual(["4", "3", "2", "1", "0"]);
      });

      it("pages past a position across seconds within a time range, the range and the position both kept", async () => {
        const t0 = base(2034) + 86_400_000;
        const userId = newObjectId();
        for (let i = 0; i < 5; i++) {
          stoppedAt = t0 + i * 1_000;
          await store.audit.append({ type: "login", actor: { kind: "system", id: "identity" }, subjectUserId: userId, outcome: "ok", details: { n: String(i) } });
        }
        const pages: string[][] = [];
        let after: { time: Date; id: string } | undefined;
        for (;;) {
          const page = await store.audit.list({ subjectUserId: userId, from: new Date(t0 + 1_000), before: new Date(t0 + 4_000) }, 2, after);
          if (page.length === 0) break;
          pages.push(page.map((e) => e.details?.n ?? ""));
          after = page.at(-1);
        }
        expect(pages).toEqual([["3", "2"], ["1"]]);
      });

      it("leaves out events older than the retention, without waiting for a TTL monitor", async () => {
        const t0 = base(2035);
        stoppedAt = t0;
        const userId = newObjectId();
        await store.audit.append({ type: "login", actor: { kind: "user", id: userId }, subjectUserId: userId, outcome: "ok" });
        stoppedAt = t0 + 179 * 86_400_000;
        expect(await store.audit.list({ subjectUserId: userId }, 10)).toHaveLength(1);
        stoppedAt = t0 + 180 * 86_400_000;
        expect(await store.audit.list({ subjectUserId: userId }, 10)).toHaveLength(0);
      });

      it("anonymiseSubject drops the address and details of the user's events and keeps the facts", async () => {
        stoppedAt = base(2036);
        const userId = newObjectId();
        const other = newObjectId();
        await store.audit.append({ type: "phone.bound", actor: { kind: "user", id: userId }, subjectUserId: userId, address: "203.0.113.9", outcome: "ok", details: { countryCode: "86" } });
        await store.audit.append({ type: "login", actor: { kind: "user", id: other }, subjectUserId: other, address: "203.0.113.10", outcome: "ok", details: { platform: "wechat" } });
        await store.audit.anonymiseSubject(userId);
        const [kept] = await store.audit.list({ subjectUserId: userId }, 10);
        expect(kept).toEqual({ id: expect.any(String), time: new Date(stoppedAt), type: "phone.bound", actor: { kind: "user", id: userId }, subjectUserId: userId, outcome: "ok" });
        expect((await store.audit.list({ subjectUserId: other }, 10))[0]?.address).toBe("203.0.113.10");
      });
    });

    describe("activity", () => {
      afterEach(() => {
        stoppedAt = null;
      });

      it("counts distinct active users per app and day, and those registered that day", async () => {
        stoppedAt = Date.parse("2037-06-10T12:00:00Z");
        const app = unique("app");
        const [u1, u2, u3] = [newObjectId(), newObjectId(), newObjectId()];
        await store.activity.record("2037-06-09", app, u1, true);
        await store.activity.record("2037-06-09", app, u1, false);
        await store.activity.record("2037-06-09", app, u2, false);
        await store.activity.record("2037-06-10", app, u1, false);
        await store.activity.record("2037-06-10", app, u3, true);
        await store.activity.record("2037-06-10", app, u3, false);
        await store.activity.record("2037-06-10", `${app}-other`, u2, false);
        const counts = (await store.activity.daily("2037-06-09", "2037-06-10")).filter((d) => d.appKey.startsWith(app));
        expect(counts.sort((a, b) => `${a.day}${a.appKey}`.localeCompare(`${b.day}${b.appKey}`))).toEqual([
          { day: "2037-06-09", appKey: app, active: 2, registered: 1 },
          { day: "2037-06-10", appKey: app, active: 2, registered: 1 },
          { day: "2037-06-10", appKey: `${app}-other`, active: 1, registered: 0 },
        ]);
        expect((await store.activity.daily("2037-06-10", "2037-06-10")).filter((d) => d.appKey === app)).toHaveLength(1);
      });
    });

    describe("an injected clock", () => {
      // Years ahead of the real clock, so a TTL monitor (on the server's clock) deletes nothing here.
      const later = Date.parse("2031-01-02T03:04:05.678Z");
      afterEach(() => {
        stoppedAt = null;
      });

      it("dates a promotion and a revocation by it", async () => {
        stoppedAt = later;
        const pending = await store.sessions.insert(sessionDraft({ userId: null, refreshHash: null }));
        const promoted = await store.sessions.promote(pending.id, newObjectId(), "first", inOneHour());
        expect(promoted?.rotatedAt).toEqual(new Date(later));
        await store.sessions.revoke(pending.id, "logout");
        expect((await store.sessions.get(pending.id))?.revokedAt).toEqual(new Date(later));
      });

      it("expires a replay entry when it moves on, without waiting", async () => {
        stoppedAt = later;
        const key = unique("replay");
        await store.replays.remember(key, { n: 1 }, new Date(later + 60_000));
        expect(await store.replays.recall(key)).toEqual({ n: 1 });
        stoppedAt = later + 60_000;
        expect(await store.replays.recall(key)).toBeNull();
        expect(await store.replays.remember(key, { n: 2 }, new Date(later + 120_000))).toEqual({ value: { n: 2 }, created: true });
      });
    });

    describe("credentials", () => {
      const t0 = at("2025-03-01T00:00:00Z");
      const later = (ms: number) => new Date(t0.getTime() + ms);

      it("get of an unknown appid is null", async () => {
        expect(await store.credentials.get(unique("wx"))).toBeNull();
      });

      needs("set-on-insert-null")("acquireLease creates the record, with no token yet", async () => {
        const appid = unique("wx");
        expect(await store.credentials.acquireLease(appid, "a", later(15_000), t0)).toBe(true);
        expect(await store.credentials.get(appid)).toEqual({ appid, accessToken: null, expiresAt: null, leaseOwner: "a", leaseUntil: later(15_000) });
      });

      it("leases to one owner at a time until the lease lapses", async () => {
        const appid = unique("wx");
        expect(await store.credentials.acquireLease(appid, "a", later(15_000), t0)).toBe(true);
        expect(await store.credentials.get(appid)).toMatchObject({ appid, leaseOwner: "a", leaseUntil: later(15_000) });

        expect(await store.credentials.acquireLease(appid, "b", later(20_000), later(5_000))).toBe(false);
        expect(await store.credentials.get(appid)).toMatchObject({ leaseOwner: "a", leaseUntil: later(15_000) });
        // The holder may extend its own lease.
        expect(await store.credentials.acquireLease(appid, "a", later(25_000), later(10_000))).toBe(true);
        expect(await store.credentials.get(appid)).toMatchObject({ leaseOwner: "a", leaseUntil: later(25_000) });

        expect(await store.credentials.acquireLease(appid, "b", later(40_000), later(25_000))).toBe(true);
        expect(await store.credentials.get(appid)).toMatchObject({ leaseOwner: "b", leaseUntil: later(40_000) });
        expect(await store.credentials.acquireLease(appid, "a", later(45_000), later(30_000))).toBe(false);
      });

      /** Asks for one appid's lease from 10 owners at once: exactly one gets it and holds it. */
      async function expectOneLeaseWins(appid: string, now: Date): Promise<void> {
        const owners = Array.from({ length: 10 }, (_, i) => `owner-${i}`);
        const results = await Promise.all(owners.map((owner) => store.credentials.acquireLease(appid, owner, later(60_000), now)));
        expect(results.filter(Boolean)).toHaveLength(1);
        expect((await store.credentials.get(appid))?.leaseOwner).toBe(owners[results.indexOf(true)]);
      }

      it("of 10 parallel owners asking for a new appid's lease, exactly one gets it", async () => {
        await expectOneLeaseWins(unique("wx"), t0);
      });

      needs("atomic-conditional-writes")("of 10 parallel owners asking for a lapsed lease, exactly one gets it", async () => {
        const appid = unique("wx");
        await store.credentials.acquireLease(appid, "earlier", later(15_000), t0);
        await expectOneLeaseWins(appid, later(20_000));
      });

      it("saveToken stores the token and frees the lease, but not a lease someone else took over", async () => {
        const lapsed = unique("wx");
        await store.credentials.acquireLease(lapsed, "a", later(15_000), t0);
        await store.credentials.acquireLease(lapsed, "b", later(40_000), later(20_000));
        await store.credentials.saveToken(lapsed, "a", "token-a", later(7_200_000));
        expect(await store.credentials.get(lapsed)).toMatchObject({ accessToken: "token-a", leaseOwner: "b", leaseUntil: later(40_000) });

        const appid = unique("wx");
        await store.credentials.acquireLease(appid, "a", later(15_000), t0);
        await store.credentials.saveToken(appid, "a", "token-1", later(7_200_000));
        expect(await store.credentials.get(appid)).toEqual({ appid, accessToken: "token-1", expiresAt: later(7_200_000), leaseOwner: null, leaseUntil: null });
        expect(await store.credentials.acquireLease(appid, "b", later(20_000), later(5_000))).toBe(true);
        expect(await store.credentials.get(appid)).toMatchObject({ accessToken: "token-1", leaseOwner: "b" });
      });

      it("expireToken expires the stored token only if it is still the one given", async () => {
        const appid = unique("wx");
        await store.credentials.saveToken(appid, "a", "token-1", later(7_200_000));
        await store.credentials.saveToken(appid, "a", "token-2", later(9_000_000));
        expect(await store.credentials.expireToken(appid, "token-1")).toBe(false);
        expect(await store.credentials.get(appid)).toMatchObject({ accessToken: "token-2", expiresAt: later(9_000_000) });

        expect(await store.credentials.expireToken(appid, "token-2")).toBe(true);
        const expired = await store.credentials.get(appid);
        const usable = !!expired?.accessToken && (expired.expiresAt?.getTime() ?? 0) > Date.now();
        expect(usable).toBe(false);
        expect(await store.credentials.expireToken(appid, "token-2")).toBe(false);
        expect(await store.credentials.expireToken(unique("wx"), "token-2")).toBe(false);
      });

      it("hands out copies: mutating a returned credential does not change the store", async () => {
        const appid = unique("wx");
        await store.credentials.saveToken(appid, "a", "token-1", later(7_200_000));
        const got = await store.credentials.get(appid);
        got?.expiresAt?.setTime(0);
        expect((await store.credentials.get(appid))?.expiresAt).toEqual(later(7_200_000));
      });
    });
  });
}

function rotation(expectedHash: string, nextHash: string) {
  return { expectedHash, nextHash, rotatedAt: new Date(Date.now() - 1_000), expiresAt: inOneHour() };
}

describeStoreContract("MemoryStore", async (now) => ({ store: new MemoryStore({ now }), dispose: async () => {} }));

describe("MemoryStore expiry", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("drops expired sessions about once a minute, as MongoDB's TTL monitor does", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2025-03-01T00:00:00Z") });
    const store = new MemoryStore();
    const expiring = await store.sessions.insert(sessionDraft({ expiresAt: new Date("2025-03-01T00:00:10Z") }));
    const lasting = await store.sessions.insert(sessionDraft({ expiresAt: new Date("2025-03-02T00:00:00Z") }));

    vi.setSystemTime(new Date("2025-03-01T00:00:30Z"));
    await store.sessions.insert(sessionDraft());
    expect(await store.sessions.get(expiring.id)).not.toBeNull();

    vi.setSystemTime(new Date("2025-03-01T00:01:01Z"));
    await store.sessions.insert(sessionDraft());
    expect(await store.sessions.get(expiring.id)).toBeNull();
    expect(await store.sessions.get(lasting.id)).toEqual(lasting);
  });

  it("spreads a sweep over the writes that follow, a thousand entries each, and still drops them all", async () => {
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2025-03-01T00:00:00Z") });
    const store = new MemoryStore();
    const userId = newObjectId();
    const soon = new Date("2025-03-01T00:00:10Z");
    const expiring = [];
    for (let i = 0; i < 2_500; i++) expiring.push(await store.sessions.insert(sessionDraft({ userId, expiresAt: soon })));
    const lasting = await store.sessions.insert(sessionDraft({ userId, expiresAt: new Date("2025-03-02T00:00:00Z") }));

    vi.setSystemTime(new Date("2025-03-01T00:01:01Z"));
    await store.sessions.insert(sessionDraft());
    // The first write past the interval looked at the first thousand (insertion order) only.
    expect(await store.sessions.get(expiring[999]!.id)).toBeNull();
    expect(await store.sessions.get(expiring[1_000]!.id)).not.toBeNull();
    await store.sessions.insert(sessionDraft());
    await store.sessions.insert(sessionDraft());
    for (const { id } of expiring) expect(await store.sessions.get(id)).toBeNull();
    expect(await store.sessions.get(lasting.id)).toEqual(lasting);
    // The swept sessions left the user's index with the map: logout-all finds the one left.
    expect(await store.sessions.revokeAllForUser(userId, "logout_all")).toBe(1);
  });

  it("sweeps by the injected clock, not the real one", async () => {
    let now = Date.parse("2025-03-01T00:00:00Z");
    const store = new MemoryStore({ now: () => now });
    const expiring = await store.sessions.insert(sessionDraft({ expiresAt: new Date(now + 10_000) }));
    now += 61_000;
    await store.sessions.insert(sessionDraft());
    expect(await store.sessions.get(expiring.id)).toBeNull();
  });
});

const uri = process.env.MONGODB_URI;
if (!uri) process.stderr.write("store contract: MongoDB run skipped (set MONGODB_URI to run it)\n");

const mongoGaps = uri ? await gapsOf(uri, "store contract") : new Set<Gap>();

/** A MongoStore on a database of its own, dropped afterwards. */
async function freshMongoStore(serverUri: string, now?: () => number): Promise<StoreFixture & { dbName: string }> {
  const dbName = `identity_test_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const store = await MongoStore.connect(serverUri, dbName, now ? { now } : {});
  return {
    store,
    dbName,
    async dispose() {
      const admin = new MongoClient(serverUri, { serverSelectionTimeoutMS: 5_000 });
      try {
        await admin.db(dbName).dropDatabase();
      } finally {
        await admin.close();
        await store.close();
      }
    },
  };
}

describeStoreContract("MongoStore", (now) => freshMongoStore(uri ?? "", now), { skip: !uri, gaps: mongoGaps });

describe.skipIf(!uri)("MongoStore indexes", () => {
  it.skipIf(mongoGaps.has("ttl"))("init creates the unique key index, the revocation feed's position index and TTL indexes on session, replay and revocation expiry", async () => {
    const fixture = await freshMongoStore(uri ?? "");
    const client = new MongoClient(uri ?? "", { serverSelectionTimeoutMS: 5_000 });
    try {
      await fixture.store.init();
      const db = client.db(fixture.dbName);
      expect(await db.collection("users").indexes()).toContainEqual(expect.objectContaining({ key: { keys: 1 }, unique: true }));
      expect(await db.collection("sessions").indexes()).toEqual(
        expect.arrayContaining([expect.objectContaining({ key: { userId: 1, revokedAt: 1, createdAt: -1, _id: -1 } }), expect.objectContaining({ key: { expiresAt: 1 }, expireAfterSeconds: 0 })]),
      );
      expect(await db.collection("replays").indexes()).toContainEqual(expect.objectContaining({ key: { expiresAt: 1 }, expireAfterSeconds: 0 }));
      expect(await db.collection("revocations").indexes()).toEqual(
        expect.arrayContaining([expect.objectContaining({ key: { revokedAt: 1, _id: 1 } }), expect.objectContaining({ key: { expiresAt: 1 }, expireAfterSeconds: 0 })]),
      );
      expect(await db.collection("audit_events").indexes()).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ key: { time: -1 }, expireAfterSeconds: 180 * 86_400 }),
          expect.objectContaining({ key: { time: -1, _id: -1 } }),
          expect.objectContaining({ key: { subjectUserId: 1, time: -1, _id: -1 } }),
          expect.objectContaining({ key: { "actor.id": 1, time: -1, _id: -1 } }),
          expect.objectContaining({ key: { type: 1, time: -1, _id: -1 } }),
        ]),
      );
      expect(await db.collection("activity").indexes()).toContainEqual(expect.objectContaining({ key: { expiresAt: 1 }, expireAfterSeconds: 0 }));
    } finally {
      await client.close();
      await fixture.dispose();
    }
  });
});

describe.skipIf(!uri)("MongoStore documents", () => {
  it("keep the field names sessions were always stored with: a session written before reads the same", async () => {
    const fixture = await freshMongoStore(uri ?? "");
    const client = new MongoClient(uri ?? "", { serverSelectionTimeoutMS: 5_000 });
    try {
      const sessions = client.db(fixture.dbName).collection("sessions");
      const { id: _, appKey, ...fields } = sessionDraft();
      const _id = new ObjectId();
      // As stored before SessionRecord named the app key appKey.
      await sessions.insertOne({ ...fields, appId: appKey, _id });
      expect(await fixture.store.sessions.get(_id.toHexString())).toEqual({ ...fields, appKey, id: _id.toHexString() });

      const written = await fixture.store.sessions.insert(sessionDraft({ appKey: "shop" }));
      const doc = await sessions.findOne({ _id: ObjectId.createFromHexString(written.id) });
      expect(doc).toMatchObject({ appId: "shop" });
      expect(doc).not.toHaveProperty("appKey");
    } finally {
      await client.close();
      await fixture.dispose();
    }
  });
});

describe("MongoStore without a server", () => {
  it("reports an unreachable server as StoreUnavailableError", async () => {
    const err = await rejectionOf(MongoStore.connect("mongodb://127.0.0.1:1/", "identity", { serverSelectionTimeoutMS: 200 }));
    expect(err).toBeInstanceOf(StoreUnavailableError);
  });
});
