// Refresh tokens: rotation, the grace window, reuse, races, session lifetime and count, and what
// the store keeps (hashes only), with time moved by the test's clock.
import { Code } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { hashRefreshToken } from "../../src/auth/refresh-tokens.js";
import { expectCleanLogs } from "../support/attack.js";
import { as, refusal, startFast, type Fast } from "../support/fast.js";

const APP_A = { id: "a", platform: "wechat-miniprogram", appid: "wx00000000000000a1", secret: "sa" };
const APP_B = { id: "b", platform: "wechat-miniprogram", appid: "wx00000000000000b2", secret: "sb" };
const POLICY = { refreshTtlSeconds: 600, refreshGraceSeconds: 10, sessionMaxAgeSeconds: 1800, maxSessionsPerUser: 3 };

let f: Fast;
/** Every token the service handed out, to look for in the store and the logs. */
const issued: string[] = [];

beforeAll(async () => {
  f = await startFast({ apps: [APP_A, APP_B], tokens: POLICY });
});

async function signIn(openid?: string, app = APP_A) {
  const session = await f.login({ appid: app.appid, ...(openid ? { openid } : {}) }, app.id);
  issued.push(session.access, session.refresh);
  return session;
}

async function refresh(refreshToken: string) {
  const { tokens } = await f.client.refresh({ refreshToken });
  issued.push(tokens!.accessToken, tokens!.refreshToken);
  return tokens!;
}

const refused = async (call: Promise<unknown>) => {
  const { code, reason } = await refusal(call);
  return { code, reason };
};
const unauthenticated = (reason: string) => ({ code: Code.Unauthenticated, reason });
const checkLogin = (access: string) => f.client.checkLogin({}, as(access));
const sessionIdOf = (refreshToken: string) => refreshToken.split(".")[0]!;

describe("rotation and reuse", () => {
  it("rotates on every use; the new tokens work", async () => {
    const me = await signIn();
    const first = await refresh(me.refresh);
    expect(first.refreshToken).not.toBe(me.refresh);
    expect((await checkLogin(first.accessToken)).user!.id).toBe(me.userId);
    const second = await refresh(first.refreshToken);
    expect([me.refresh, first.refreshToken]).not.toContain(second.refreshToken);
    await refresh(second.refreshToken);
  });

  it("gives the same child for the parent again inside the grace window, and keeps the session", async () => {
    const me = await signIn();
    const child = (await refresh(me.refresh)).refreshToken;
    f.clock.advance((POLICY.refreshGraceSeconds - 2) * 1000);
    expect((await refresh(me.refresh)).refreshToken).toBe(child);
    expect((await checkLogin(me.access)).user!.id).toBe(me.userId);
    await refresh(child);
  });

  it("revokes the whole session when the parent comes back after the grace window", async () => {
    const me = await signIn();
    const child = await refresh(me.refresh);
    f.clock.advance((POLICY.refreshGraceSeconds + 1) * 1000);
    expect(await refused(refresh(me.refresh))).toEqual(unauthenticated("REFRESH_TOKEN_REUSED"));
    // Every token of the session stops: the old and new access tokens, and the child refresh token.
    expect(await refused(checkLogin(me.access))).toEqual(unauthenticated("TOKEN_REVOKED"));
    expect(await refused(checkLogin(child.accessToken))).toEqual(unauthenticated("TOKEN_REVOKED"));
    expect(await refused(refresh(child.refreshToken))).toEqual(unauthenticated("TOKEN_REVOKED"));
    expect((await f.store.sessions.get(sessionIdOf(me.refresh)))?.revokeReason).toBe("refresh_token_reused");
  });

  it("revokes the whole session when an older token comes back, even inside the grace window", async () => {
    const me = await signIn();
    const r1 = (await refresh(me.refresh)).refreshToken;
    const r2 = await refresh(r1);
    expect(await refused(refresh(me.refresh))).toEqual(unauthenticated("REFRESH_TOKEN_REUSED"));
    expect(await refused(checkLogin(r2.accessToken))).toEqual(unauthenticated("TOKEN_REVOKED"));
    expect(await refused(refresh(r2.refreshToken))).toEqual(unauthenticated("TOKEN_REVOKED"));
  });

  it("persists exactly one child from 20 parallel refreshes of one token", async () => {
    const me = await signIn();
    const children = new Set((await Promise.all(Array.from({ length: 20 }, () => refresh(me.refresh)))).map((t) => t.refreshToken));
    expect(children.size).toBe(1);
    const [child] = children as Set<string>;
    const stored = await f.store.sessions.get(sessionIdOf(me.refresh));
    expect(stored).toMatchObject({ refreshHash: hashRefreshToken(child!), spentRefreshHashes: [hashRefreshToken(me.refresh)], revokedAt: null });
    await refresh(child!);
  });

  it("refuses a refresh token made of another session's id and this one's secret", async () => {
    const a = await signIn();
    const b = await signIn(undefined, APP_B);
    const spliced = `${sessionIdOf(b.refresh)}.${a.refresh.split(".")[1]}`;
    expect(await refused(refresh(spliced))).toEqual(unauthenticated("TOKEN_INVALID"));
    // A guess is no reuse: B's session lives on.
    expect((await checkLogin(b.access)).user!.id).toBe(b.userId);
  });

  it("keeps app A's session on app A: Refresh names no app, and its tokens stay A's", async () => {
    const a = await signIn();
    const next = await refresh(a.refresh);
    expect(decodeJwt(next.accessToken).aud).toBe("a");
    expect((await checkLogin(next.accessToken)).appId).toBe("a");
  });

  it("refuses malformed refresh tokens without touching a session", async () => {
    const me = await signIn();
    const [id, secret] = me.refresh.split(".") as [string, string];
    for (const token of [`${id}.`, `${id}.${secret}x`, `${id}.${secret.slice(1)}`, `${id}${secret}`, `${id}.${secret}.${secret}`, me.access, `${id.toUpperCase()}.${secret}`]) {
      expect(await refused(refresh(token))).toEqual(unauthenticated("TOKEN_INVALID"));
    }
    await refresh(me.refresh);
  });
});

describe("session lifetime and count", () => {
  it("cannot be refreshed past tokens.sessionMaxAgeSeconds, however often it is refreshed", async () => {
    const me = await signIn();
    let token = me.refresh;
    let access = me.access;
    const step = (POLICY.refreshTtlSeconds - 100) * 1000;
    for (let elapsed = step; elapsed < POLICY.sessionMaxAgeSeconds * 1000; elapsed += step) {
      f.clock.advance(step);
      const tokens = await refresh(token);
      // Never promised beyond the maximum age.
      expect(tokens.refreshExpiresIn, `after ${elapsed / 1000} s`).toBeLessThanOrEqual(POLICY.sessionMaxAgeSeconds - elapsed / 1000);
      token = tokens.refreshToken;
      access = tokens.accessToken;
    }
    f.clock.advance(step);
    expect(await refused(refresh(token))).toEqual(unauthenticated("SESSION_EXPIRED"));
    expect(await refused(checkLogin(access))).toEqual(unauthenticated("TOKEN_EXPIRED"));
  });

  it("ends the oldest session when a user opens one more than tokens.maxSessionsPerUser", async () => {
    const openid = "o_cap";
    const sessions = [];
    for (let i = 0; i <= POLICY.maxSessionsPerUser; i++) {
      sessions.push(await signIn(openid));
      f.clock.advance(1000);
    }
    const [oldest, ...kept] = sessions;
    expect(await refused(checkLogin(oldest!.access))).toEqual(unauthenticated("TOKEN_REVOKED"));
    expect(await refused(refresh(oldest!.refresh))).toEqual(unauthenticated("TOKEN_REVOKED"));
    expect((await f.store.sessions.get(sessionIdOf(oldest!.refresh)))?.revokeReason).toBe("session_limit");
    for (const session of kept) expect((await checkLogin(session.access)).user!.id).toBe(session.userId);
    // Another user's sessions are not counted.
    const other = await signIn();
    expect((await checkLogin(other.access)).user!.id).toBe(other.userId);
  });
});

describe("what is kept", () => {
  it("stores no refresh token, nor its secret, nor an access token: only hashes", () => {
    // The embedded store's own records, as they sit in memory.
    const raw = JSON.stringify([...(f.store.sessions as unknown as { sessions: Map<string, unknown> }).sessions.values()]);
    const everything = JSON.stringify(f.store, (_k, v: unknown) => (v instanceof Map ? [...v.values()] : v));
    expect(raw.length).toBeGreaterThan(1000);
    expect(issued.length).toBeGreaterThan(50);
    for (const token of issued) {
      const secret = token.split(".").at(-1)!;
      expect(raw).not.toContain(secret);
      expect(everything).not.toContain(secret);
    }
    // It is the real records: the hashes of the sessions still stored are there (the store's sweep,
    // on the test clock, has dropped those the earlier cases let expire).
    expect(issued.filter((token) => raw.includes(hashRefreshToken(token))).length).toBeGreaterThan(0);
  });

  it("logged no bug and no token", () => {
    expect(f.logs.length).toBeGreaterThan(50);
    expectCleanLogs(
      f,
      issued.map((t) => t.split(".").at(-1)!),
    );
  });
});
