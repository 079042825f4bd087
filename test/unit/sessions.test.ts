// Token rotation and access-token checks, on the embedded store with a controlled clock.
import { SignJWT, base64url, decodeJwt, decodeProtectedHeader } from "jose";
import { beforeEach, describe, expect, it } from "vitest";
import { createAccessTokens, generateSigningKey } from "../../src/auth/access-tokens.js";
import { TokenError } from "../../src/auth/errors.js";
import { hashRefreshToken, newChainKey, newRefreshToken, sessionIdOf } from "../../src/auth/refresh-tokens.js";
import { createSessionLibrary, type SessionLibrary } from "../../src/auth/sessions.js";
import { MemoryStore } from "../../src/store/memory-store.js";

const policy = { accessTtlSeconds: 7200, refreshTtlSeconds: 86_400, refreshGraceSeconds: 10 };
let clock = Date.UTC(2026, 0, 1);
const now = () => clock;

let store: MemoryStore;
let sessions: SessionLibrary;
let accessTokens: ReturnType<typeof createAccessTokens>;
let userId: string;

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof TokenError) return e.kind;
    throw e;
  }
  return "ok";
}

beforeEach(async () => {
  clock = Date.UTC(2026, 0, 1);
  store = new MemoryStore({ now });
  const { key } = await generateSigningKey();
  accessTokens = createAccessTokens([key], { issuer: "test", ttlSeconds: policy.accessTtlSeconds, now });
  sessions = createSessionLibrary({ sessions: store.sessions, users: store.users, revocations: store.revocations, accessTokens, policy, now });
  const at = new Date(clock);
  userId = (await store.users.insert({ roles: [], status: "active", identities: [{ platform: "p", appid: "a", openid: "o", createdAt: at }], attributes: {}, createdAt: at, updatedAt: at })).id;
});

const open = () => sessions.open({ appKey: "demo", userId, platform: "p", appid: "a", openid: "o", sessionKey: "secret-session-key" });

describe("access tokens", () => {
  it("carry sub, sid, aud, typ at+jwt and the configured lifetime", async () => {
    const { tokens, session } = await open();
    expect(decodeProtectedHeader(tokens.accessToken)).toMatchObject({ alg: "ES256", typ: "at+jwt" });
    const claims = decodeJwt(tokens.accessToken);
    expect(claims).toMatchObject({ sub: userId, sid: session.id, aud: "demo", iss: "test" });
    expect(claims.exp! - claims.iat!).toBe(7200);
    expect(tokens.accessToken).not.toContain("secret-session-key");
  });

  it("expire, and are refused when altered or signed by anyone else", async () => {
    const { tokens } = await open();
    const [header, payload, signature] = tokens.accessToken.split(".");
    const forgedPayload = base64url.encode(JSON.stringify({ ...decodeJwt(tokens.accessToken), sub: "000000000000000000000000" }));
    expect(await reasonOf(sessions.authenticate(`${header}.${forgedPayload}.${signature}`))).toBe("invalid");
    const none = `${base64url.encode(JSON.stringify({ alg: "none", typ: "at+jwt" }))}.${payload}.`;
    expect(await reasonOf(sessions.authenticate(none))).toBe("invalid");
    const { key: other } = await generateSigningKey();
    const foreign = await new SignJWT(decodeJwt(tokens.accessToken)).setProtectedHeader({ alg: "ES256", kid: other.kid, typ: "at+jwt" }).sign(other.privateKey);
    expect(await reasonOf(sessions.authenticate(foreign))).toBe("invalid");
    expect(await reasonOf(sessions.authenticate(""))).toBe("missing");
    clock += 7200 * 1000 + 1000;
    expect(await reasonOf(sessions.authenticate(tokens.accessToken))).toBe("expired");
  });

  it("name their session for Logout once expired, up to a session's life, and only when genuine", async () => {
    const { tokens, session } = await open();
    await sessions.authenticate(tokens.accessToken);
    clock += 7200 * 1000 + 1000;
    expect(await reasonOf(sessions.authenticate(tokens.accessToken))).toBe("expired");
    expect((await sessions.authenticate(tokens.accessToken, { ending: true })).session.id).toBe(session.id);
    const [header, payload] = tokens.accessToken.split(".");
    expect(await reasonOf(sessions.authenticate(`${header}.${payload}.${"A".repeat(86)}`, { ending: true }))).toBe("invalid");
    clock += policy.refreshTtlSeconds * 1000;
    expect(await reasonOf(sessions.authenticate(tokens.accessToken, { ending: true }))).toBe("expired");
  });

  it("stay checked once remembered: expiry still applies, and an altered copy is still refused", async () => {
    const { tokens } = await open();
    await sessions.authenticate(tokens.accessToken);
    const [header, payload, signature] = tokens.accessToken.split(".");
    const flipped = `${signature!.slice(0, -2)}${signature!.endsWith("AA") ? "BB" : "AA"}`;
    expect(await reasonOf(sessions.authenticate(`${header}.${payload}.${flipped}`))).toBe("invalid");
    clock += 7200 * 1000;
    expect(await reasonOf(sessions.authenticate(tokens.accessToken))).toBe("expired");
  });

  it("stop working when the session is revoked", async () => {
    const { tokens, session } = await open();
    expect(await reasonOf(sessions.authenticate(tokens.accessToken))).toBe("ok");
    await sessions.revoke(session.id);
    expect(await reasonOf(sessions.authenticate(tokens.accessToken))).toBe("revoked");
  });
});

describe("refresh tokens", () => {
  it("are stored only as hashes", async () => {
    const { tokens, session } = await open();
    const stored = await store.sessions.get(session.id);
    expect(stored?.refreshHash).toBe(hashRefreshToken(tokens.refreshToken));
    expect(JSON.stringify(stored)).not.toContain(tokens.refreshToken.split(".")[1]);
  });

  it("rotate on every use and slide the session's expiry", async () => {
    const { tokens } = await open();
    clock += 3600_000;
    const next = (await sessions.refresh(tokens.refreshToken)).tokens;
    expect(next.refreshToken).not.toBe(tokens.refreshToken);
    expect(next.refreshExpiresIn).toBe(86_400);
    const third = (await sessions.refresh(next.refreshToken)).tokens;
    expect(third.refreshToken).not.toBe(next.refreshToken);
  });

  it("replay the same child for the parent inside the grace window, then count as reuse", async () => {
    const { tokens, session } = await open();
    const child = (await sessions.refresh(tokens.refreshToken)).tokens;
    clock += 5_000;
    expect((await sessions.refresh(tokens.refreshToken)).tokens.refreshToken).toBe(child.refreshToken);
    clock += 6_000;
    expect(await reasonOf(sessions.refresh(tokens.refreshToken))).toBe("reused");
    expect((await store.sessions.get(session.id))?.revokedAt).not.toBeNull();
    expect(await reasonOf(sessions.refresh(child.refreshToken))).toBe("revoked");
  });

  it("count a parent presented in the same millisecond as reuse when there is no grace window", async () => {
    const strict = createSessionLibrary({ sessions: store.sessions, users: store.users, revocations: store.revocations, accessTokens, policy: { ...policy, refreshGraceSeconds: 0 }, now });
    const { tokens } = await strict.open({ appKey: "demo", userId, platform: "p", appid: "a", openid: "o", sessionKey: "k" });
    await strict.refresh(tokens.refreshToken);
    expect(await reasonOf(strict.refresh(tokens.refreshToken))).toBe("reused");
  });

  it("count an older ancestor as reuse even inside the grace window", async () => {
    const { tokens } = await open();
    const child = (await sessions.refresh(tokens.refreshToken)).tokens;
    await sessions.refresh(child.refreshToken);
    expect(await reasonOf(sessions.refresh(tokens.refreshToken))).toBe("reused");
  });

  it("expire with the session", async () => {
    const { tokens } = await open();
    clock += 86_400_000 + 1;
    expect(await reasonOf(sessions.refresh(tokens.refreshToken))).toBe("refresh_expired");
  });

  it("are refused for a disabled user", async () => {
    const { tokens } = await open();
    const user = (await store.users.get(userId))!;
    await store.users.replace({ ...user, status: "disabled" });
    await expect(sessions.refresh(tokens.refreshToken)).rejects.toThrow("account disabled");
  });

  it("are not issued to a pending session", async () => {
    const { tokens, session } = await sessions.open({ appKey: "demo", userId: null, platform: "p", appid: "a", openid: "x" });
    expect(tokens.refreshToken).toBe("");
    expect(session.expiresAt.getTime() - clock).toBe(7200 * 1000);
    expect((await sessions.authenticate(tokens.accessToken)).session.userId).toBeNull();
  });
});

describe("revocation events", () => {
  const logged = async () => (await store.revocations.since(new Date(0), 100)).map(({ target, reason }) => ({ target, reason }));

  it("are appended for a logout, a logout of all sessions, a reused refresh token, the session cap and a disabled user", async () => {
    const capped = createSessionLibrary({ sessions: store.sessions, users: store.users, revocations: store.revocations, accessTokens, policy: { ...policy, maxSessionsPerUser: 1 }, now });
    const first = (await capped.open({ appKey: "demo", userId, platform: "p", appid: "a", openid: "o" })).session;
    const second = (await capped.open({ appKey: "demo", userId, platform: "p", appid: "a", openid: "o" })).session;
    const reused = await open();
    await sessions.refresh(reused.tokens.refreshToken);
    clock += policy.refreshGraceSeconds * 1000;
    expect(await reasonOf(sessions.refresh(reused.tokens.refreshToken))).toBe("reused");
    const other = await open();
    await sessions.revoke(other.session.id);
    await sessions.revokeAllOfUser(userId);
    await sessions.beforeStatusChange(userId, "active", "disabled");
    expect(await logged()).toEqual([
      { target: { sessionId: first.id }, reason: "session_limit" },
      { target: { sessionId: reused.session.id }, reason: "refresh_token_reused" },
      { target: { sessionId: other.session.id }, reason: "logout" },
      { target: { sessionId: second.id }, reason: "logout_all" },
      { target: { userId }, reason: "user_disabled" },
    ]);
    // Kept for an access token's life plus the margin.
    const [event] = await store.revocations.since(new Date(0), 1);
    expect(event!.expiresAt.getTime() - event!.revokedAt.getTime()).toBe((policy.accessTtlSeconds + 600) * 1000);
  });

  it("come before the revocation: when the event cannot be written, the session lives on (errs closed)", async () => {
    const failing = { since: store.revocations.since.bind(store.revocations), append: async () => Promise.reject(new Error("log down")) };
    const strict = createSessionLibrary({ sessions: store.sessions, users: store.users, revocations: failing, accessTokens, policy, now });
    const { tokens, session } = await open();
    await expect(strict.revoke(session.id)).rejects.toThrow("log down");
    await expect(strict.revokeAllOfUser(userId)).rejects.toThrow("log down");
    expect((await sessions.authenticate(tokens.accessToken)).session.id).toBe(session.id);
  });
});

describe("fresh secrets", () => {
  it("are 32 random bytes each, never repeated across refills of the pool", () => {
    const sessionId = "0123456789abcdef01234567";
    // 300 tokens and 300 chain keys: several refills of the 128-secret pool.
    const secrets = Array.from({ length: 300 }, () => [newRefreshToken(sessionId).split(".")[1]!, newChainKey()]).flat();
    expect(new Set(secrets).size).toBe(secrets.length);
    for (const secret of secrets) {
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const bytes = Buffer.from(secret, "base64url");
      expect(bytes).toHaveLength(32);
      // A zeroed stretch of the pool handed out twice would show as all-zero bytes.
      expect(bytes.some((b) => b !== 0)).toBe(true);
    }
    expect(sessionIdOf(newRefreshToken(sessionId))).toBe(sessionId);
  });
});
