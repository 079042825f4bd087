// Attacks on refresh tokens against the real listeners: rotation, the grace window, reuse, races,
// session lifetime and count, and what the store keeps (hashes only).
import { Code, ConnectError } from "@connectrpc/connect";
import { MongoClient } from "mongodb";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { hashRefreshToken } from "../src/auth/refresh-tokens.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { expectCleanLogs, expectJsonRefusal, expectRefusedEverywhere, grpcClient } from "./support/attack.js";
import { login, rpc, startHarness, type Harness } from "./support/harness.js";

const APP_A = { id: "a", platform: "wechat-miniprogram", appid: "wx00000000000000a1", secret: "sa" };
const APP_B = { id: "b", platform: "wechat-miniprogram", appid: "wx00000000000000b2", secret: "sb" };
const POLICY = { refreshTtlSeconds: 600, refreshGraceSeconds: 10, sessionMaxAgeSeconds: 1800, maxSessionsPerUser: 3 };
const CONFIG = { apps: [APP_A, APP_B], tokens: POLICY };

let h: Harness;
let client: ReturnType<typeof grpcClient>;
const store = new MemoryStore();
let clock = Date.now();
/** Every token the service handed out, to look for in the store and the logs. */
const issued: string[] = [];

beforeAll(async () => {
  h = await startHarness(CONFIG, {}, store, () => clock);
  client = grpcClient(h);
});
afterAll(() => h?.close());

async function signIn(openid?: string, app = APP_A) {
  const session = await login(h, { appid: app.appid, ...(openid ? { openid } : {}) }, app.id);
  issued.push(session.access, session.refresh);
  return session;
}

async function refresh(refreshToken: string) {
  const res = await rpc(h.httpUrl, "Refresh", { refreshToken });
  if (res.status === 200) issued.push(res.json.tokens.accessToken, res.json.tokens.refreshToken);
  return res;
}

/** Refresh over gRPC on h2c: the new refresh token, or the refusal's code and reason. */
async function grpcRefresh(refreshToken: string): Promise<string | { code: Code; reason: string | undefined }> {
  try {
    const res = await client.refresh({ refreshToken });
    issued.push(res.tokens!.accessToken, res.tokens!.refreshToken);
    return res.tokens!.refreshToken;
  } catch (e) {
    const error = ConnectError.from(e);
    return { code: error.code, reason: error.findDetails(ErrorInfoSchema)[0]?.reason };
  }
}

const sessionIdOf = (refreshToken: string) => refreshToken.split(".")[0]!;

describe("rotation and reuse", () => {
  it("rotates on every use, on both listeners; the new tokens work", async () => {
    const me = await signIn();
    const first = await refresh(me.refresh);
    expect(first.status).toBe(200);
    const r1 = first.json.tokens.refreshToken as string;
    expect(r1).not.toBe(me.refresh);
    expect((await rpc(h.httpUrl, "CheckLogin", {}, first.json.tokens.accessToken)).json.user.id).toBe(me.body.user.id);
    const r2 = await grpcRefresh(r1);
    expect(typeof r2).toBe("string");
    expect([me.refresh, r1]).not.toContain(r2);
    expect((await refresh(r2 as string)).status).toBe(200);
  });

  it("gives the same child for the parent again inside the grace window, and keeps the session", async () => {
    const me = await signIn();
    const child = (await refresh(me.refresh)).json.tokens.refreshToken;
    clock += (POLICY.refreshGraceSeconds - 2) * 1000;
    const again = await refresh(me.refresh);
    expect(again.json.tokens.refreshToken).toBe(child);
    expect(await grpcRefresh(me.refresh)).toBe(child);
    expect((await rpc(h.httpUrl, "CheckLogin", {}, me.access)).status).toBe(200);
    expect((await refresh(child)).status).toBe(200);
  });

  it("revokes the whole session when the parent comes back after the grace window", async () => {
    const me = await signIn();
    const child = await refresh(me.refresh);
    clock += (POLICY.refreshGraceSeconds + 1) * 1000;
    expectJsonRefusal(await refresh(me.refresh), 401, "REFRESH_TOKEN_REUSED");
    // Every token of the session stops: the old and new access tokens, and the child refresh token.
    await expectRefusedEverywhere(h, client, me.access, "TOKEN_REVOKED");
    await expectRefusedEverywhere(h, client, child.json.tokens.accessToken, "TOKEN_REVOKED");
    expectJsonRefusal(await refresh(child.json.tokens.refreshToken), 401, "TOKEN_REVOKED");
    expect((await store.sessions.get(sessionIdOf(me.refresh)))?.revokeReason).toBe("refresh_token_reused");
  });

  it("revokes the whole session when an older token comes back, even inside the grace window", async () => {
    const me = await signIn();
    const r1 = (await refresh(me.refresh)).json.tokens.refreshToken;
    const r2 = await refresh(r1);
    expect(await grpcRefresh(me.refresh)).toEqual({ code: Code.Unauthenticated, reason: "REFRESH_TOKEN_REUSED" });
    await expectRefusedEverywhere(h, client, r2.json.tokens.accessToken, "TOKEN_REVOKED");
    expectJsonRefusal(await refresh(r2.json.tokens.refreshToken), 401, "TOKEN_REVOKED");
  });

  it("persists exactly one child from 20 parallel refreshes of one token", async () => {
    const me = await signIn();
    const results = await Promise.all(Array.from({ length: 20 }, () => refresh(me.refresh)));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    const children = new Set(results.map((r) => r.json.tokens.refreshToken));
    expect(children.size).toBe(1);
    const [child] = children;
    const stored = await store.sessions.get(sessionIdOf(me.refresh));
    expect(stored).toMatchObject({ refreshHash: hashRefreshToken(child), spentRefreshHashes: [hashRefreshToken(me.refresh)], revokedAt: null });
    expect((await refresh(child)).status).toBe(200);
  });

  it("refuses a refresh token made of another session's id and this one's secret", async () => {
    const a = await signIn();
    const b = await signIn(undefined, APP_B);
    const spliced = `${sessionIdOf(b.refresh)}.${a.refresh.split(".")[1]}`;
    expectJsonRefusal(await refresh(spliced), 401, "TOKEN_INVALID");
    // A guess is no reuse: B's session lives on.
    expect((await rpc(h.httpUrl, "CheckLogin", {}, b.access)).status).toBe(200);
  });

  it("keeps app A's session on app A: Refresh names no app, and its tokens stay A's", async () => {
    const a = await signIn();
    const next = await refresh(a.refresh);
    expect(decodeJwt(next.json.tokens.accessToken).aud).toBe("a");
    expect((await rpc(h.httpUrl, "CheckLogin", {}, next.json.tokens.accessToken)).json.appId).toBe("a");
    // An app field smuggled into the body is not part of the request type: refused as unknown.
    const again = await refresh(next.json.tokens.refreshToken);
    expect(again.status).toBe(200);
    expectJsonRefusal(await rpc(h.httpUrl, "Refresh", { refreshToken: again.json.tokens.refreshToken, appId: "b" }), 400, "FIELD_INVALID");
  });

  it("refuses malformed refresh tokens without touching a session", async () => {
    const me = await signIn();
    const [id, secret] = me.refresh.split(".") as [string, string];
    for (const token of [`${id}.`, `${id}.${secret}x`, `${id}.${secret.slice(1)}`, `${id}${secret}`, `${id}.${secret}.${secret}`, me.access, `${id.toUpperCase()}.${secret}`]) {
      expectJsonRefusal(await refresh(token), 401, "TOKEN_INVALID");
    }
    expect((await refresh(me.refresh)).status).toBe(200);
  });
});

describe("session lifetime and count", () => {
  it("cannot be refreshed past tokens.sessionMaxAgeSeconds, however often it is refreshed", async () => {
    const me = await signIn();
    let token = me.refresh;
    let access = me.access;
    const step = (POLICY.refreshTtlSeconds - 100) * 1000;
    for (let elapsed = step; elapsed < POLICY.sessionMaxAgeSeconds * 1000; elapsed += step) {
      clock += step;
      const res = await refresh(token);
      expect(res.status, `after ${elapsed / 1000} s`).toBe(200);
      // Never promised beyond the maximum age.
      expect(res.json.tokens.refreshExpiresIn).toBeLessThanOrEqual(POLICY.sessionMaxAgeSeconds - elapsed / 1000);
      token = res.json.tokens.refreshToken;
      access = res.json.tokens.accessToken;
    }
    clock += step;
    expectJsonRefusal(await refresh(token), 401, "SESSION_EXPIRED");
    expect(await grpcRefresh(token)).toEqual({ code: Code.Unauthenticated, reason: "SESSION_EXPIRED" });
    await expectRefusedEverywhere(h, client, access, "TOKEN_EXPIRED");
  });

  it("ends the oldest session when a user opens one more than tokens.maxSessionsPerUser", async () => {
    const openid = `o_cap_${Date.now()}`;
    const sessions = [];
    for (let i = 0; i <= POLICY.maxSessionsPerUser; i++) {
      sessions.push(await signIn(openid));
      clock += 1000;
    }
    const [oldest, ...kept] = sessions;
    await expectRefusedEverywhere(h, client, oldest!.access, "TOKEN_REVOKED");
    expectJsonRefusal(await refresh(oldest!.refresh), 401, "TOKEN_REVOKED");
    expect((await store.sessions.get(sessionIdOf(oldest!.refresh)))?.revokeReason).toBe("session_limit");
    for (const session of kept) expect((await rpc(h.httpUrl, "CheckLogin", {}, session.access)).status).toBe(200);
    // Another user's sessions are not counted.
    expect((await rpc(h.httpUrl, "CheckLogin", {}, (await signIn()).access)).status).toBe(200);
  });
});

describe("what is kept", () => {
  it("stores no refresh token, nor its secret, nor an access token: only hashes", () => {
    // The embedded store's own records, as they sit in memory.
    const raw = JSON.stringify([...(store.sessions as unknown as { sessions: Map<string, unknown> }).sessions.values()]);
    const everything = JSON.stringify(store, (_k, v: unknown) => (v instanceof Map ? [...v.values()] : v));
    expect(raw.length).toBeGreaterThan(1000);
    expect(issued.length).toBeGreaterThan(50);
    for (const token of issued) {
      const secret = token.split(".").at(-1)!;
      expect(raw).not.toContain(secret);
      expect(everything).not.toContain(secret);
    }
    // It is the real records: the hashes are there.
    expect(issued.filter((token) => raw.includes(hashRefreshToken(token))).length).toBeGreaterThan(10);
  });

  it("logged no bug and no token", () => {
    expectCleanLogs(h, issued.map((t) => t.split(".").at(-1)!));
  });
});

// The same guarantees on MongoDB, when one is configured (CI's FerretDB); skipped, saying so, without it.
const uri = process.env.MONGODB_URI;
describe.skipIf(!uri)("on MongoDB (needs MONGODB_URI)", () => {
  const db = `attack_refresh_${process.pid}_${Date.now()}`;
  let m: Harness;
  let mongo: MongoClient;
  beforeAll(async () => {
    m = await startHarness(CONFIG, { MONGODB_URI: uri!, MONGODB_DB: db });
    mongo = await new MongoClient(uri!).connect();
  });
  afterAll(async () => {
    await m?.close();
    await mongo?.db(db).dropDatabase();
    await mongo?.close();
  });

  it("caps a user's sessions and keeps only hashes", async () => {
    const openid = `o_mongo_${Date.now()}`;
    const tokens: string[] = [];
    for (let i = 0; i <= POLICY.maxSessionsPerUser; i++) {
      const s = await login(m, { appid: APP_A.appid, openid }, "a");
      const next = await rpc(m.httpUrl, "Refresh", { refreshToken: s.refresh });
      tokens.push(s.access, s.refresh, next.json.tokens.refreshToken);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expectJsonRefusal(await rpc(m.httpUrl, "CheckLogin", {}, tokens[0]), 401, "TOKEN_REVOKED");
    expect((await rpc(m.httpUrl, "CheckLogin", {}, tokens.at(-3))).status).toBe(200);
    const docs = JSON.stringify(await mongo.db(db).collection("sessions").find().toArray());
    for (const token of tokens) expect(docs).not.toContain(token.split(".").at(-1)!);
  });
});
