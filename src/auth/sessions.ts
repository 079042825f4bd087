import { newObjectId, type RevocationDraft, type RevocationStore, type SessionRecord, type SessionStore, type UserStatus, type UserStore } from "../store/store.js";
import type { AccessClaims, AccessTokens } from "./access-tokens.js";
import { AccountDisabledError, TokenError } from "./errors.js";
import { childRefreshToken, hashRefreshToken, newChainKey, newRefreshToken, sameHash, sessionIdOf } from "./refresh-tokens.js";

export interface SessionPolicy {
  accessTtlSeconds: number;
  refreshTtlSeconds: number;
  /** How long the parent of the current refresh token still yields the same child. */
  refreshGraceSeconds: number;
  /** How long after its login a session may still be refreshed; unbounded when absent. */
  sessionMaxAgeSeconds?: number;
  /** Live sessions per user; opening one more ends the oldest. Unbounded when absent. */
  maxSessionsPerUser?: number;
}

export interface IssuedTokens {
  accessToken: string;
  /** Empty for a pending session. */
  refreshToken: string;
  expiresIn: number;
  refreshExpiresIn: number;
}

export type OpenSessionInput = Pick<SessionRecord, "appKey" | "userId" | "platform" | "appid" | "openid" | "unionid" | "sessionKey" | "clientAddress">;

/** Why one session ends early. */
type SessionEndReason = "logout" | "refresh_token_reused" | "session_mismatch" | "operator" | "identity_unlinked";

export interface Authenticated {
  session: SessionRecord;
  claims: AccessClaims;
}

/** Revocation events outlive every access token they can end, with a margin for a watcher that reconnects. */
const REVOCATION_MARGIN_SECONDS = 600;

/** How long the revocation feed keeps an event; a watcher's cursor older than that must resync. */
export const revocationRetentionMs = (policy: Pick<SessionPolicy, "accessTtlSeconds">) => (policy.accessTtlSeconds + REVOCATION_MARGIN_SECONDS) * 1000;

export interface SessionLibraryDeps {
  sessions: SessionStore;
  users: UserStore;
  /** Where every early end of tokens is told, for local verifiers (WatchRevocations). */
  revocations: RevocationStore;
  accessTokens: AccessTokens;
  policy: SessionPolicy;
  now?: () => number;
}

export function createSessionLibrary({ sessions, users, revocations, accessTokens, policy, now = Date.now }: SessionLibraryDeps) {
  // Rounded up: a token signed this second reports its full lifetime.
  const seconds = (ms: number) => Math.max(0, Math.ceil(ms / 1000));

  async function issue(session: SessionRecord, refreshToken: string): Promise<IssuedTokens> {
    const access = await accessTokens.sign({ sid: session.id, aud: session.appKey, ...(session.userId ? { sub: session.userId } : {}) });
    return {
      accessToken: access.token,
      refreshToken,
      expiresIn: seconds(access.expiresAt.getTime() - now()),
      refreshExpiresIn: refreshToken ? seconds(session.expiresAt.getTime() - now()) : 0,
    };
  }

  // Sliding, but never past the session's maximum age: refreshExpiresIn then tells the client the truth.
  const refreshExpiry = (session: Pick<SessionRecord, "createdAt">, at: number) =>
    new Date(Math.min(at + policy.refreshTtlSeconds * 1000, session.createdAt.getTime() + (policy.sessionMaxAgeSeconds ?? Infinity) * 1000));

  const tooOld = (session: SessionRecord) => policy.sessionMaxAgeSeconds !== undefined && now() - session.createdAt.getTime() >= policy.sessionMaxAgeSeconds * 1000;

  // Every early end of tokens is appended to the revocation log BEFORE the sessions are marked:
  // a crash in between leaves a revocation that verifiers honour although the session lives on
  // (its user logs in again), never a revoked session that local verifiers still accept.
  const record = (drafts: RevocationDraft[]) => revocations.append(drafts, new Date(now() + revocationRetentionMs(policy)));
  const recordSessions = (reason: "logout_all" | "session_limit" | "operator") => (ids: string[]) => record(ids.map((sessionId) => ({ target: { sessionId }, reason })));

  async function end(sessionId: string, reason: SessionEndReason): Promise<void> {
    await record([{ target: { sessionId }, reason }]);
    await sessions.revoke(sessionId, reason);
  }

  /** Ends the user's oldest sessions beyond the cap, so a leaked or forgotten one does not live on. */
  async function capSessions(userId: string): Promise<void> {
    if (policy.maxSessionsPerUser) await sessions.revokeOldest(userId, policy.maxSessionsPerUser, new Date(now()), "session_limit", recordSessions("session_limit"));
  }

  const loginRefreshToken = (chainKey: string, sessionId: string, loginCode: string) => childRefreshToken(chainKey, sessionId, `login:${loginCode}`);

  async function assertUserActive(userId: string): Promise<void> {
    const user = await users.get(userId);
    if (!user) throw new TokenError("revoked");
    if (user.status === "disabled") throw new AccountDisabledError();
  }

  /** Gives the caller of a matched, unrevoked session its next tokens. */
  async function rotateOrReplay(session: SessionRecord, presented: string, presentedHash: string): Promise<IssuedTokens> {
    const child = childRefreshToken(session.chainKey, session.id, presented);
    if (sameHash(session.refreshHash, presentedHash)) {
      const at = now();
      const rotated = await sessions.rotate(session.id, {
        expectedHash: presentedHash,
        nextHash: hashRefreshToken(child),
        rotatedAt: new Date(at),
        expiresAt: refreshExpiry(session, at),
      });
      if (rotated) return issue(rotated, child);
      // Lost a race with a parallel refresh of the same token: judge it against the new state.
      const current = await sessions.get(session.id);
      if (!current || current.revokedAt) throw new TokenError("revoked");
      return replayOrReject(current, presentedHash, child);
    }
    return replayOrReject(session, presentedHash, child);
  }

  async function replayOrReject(session: SessionRecord, presentedHash: string, child: string): Promise<IssuedTokens> {
    const isParent = sameHash(session.spentRefreshHashes.at(-1), presentedHash);
    // Strictly inside the window: with no grace, a parent presented in the same millisecond is reuse.
    const inGrace = now() - session.rotatedAt.getTime() < policy.refreshGraceSeconds * 1000;
    if (isParent && inGrace && sameHash(session.refreshHash, hashRefreshToken(child))) return issue(session, child);
    if (session.spentRefreshHashes.some((spent) => sameHash(spent, presentedHash))) {
      await end(session.id, "refresh_token_reused");
      throw new TokenError("reused", session.userId ?? undefined);
    }
    throw new TokenError("invalid");
  }

  return {
    /**
     * Opens a session; a pending one (userId null) gets no refresh token and lives as long as its
     * access token. With a `loginCode`, the first refresh token is derived from it, so `replay`
     * can answer a retry of the same login with the same token.
     */
    async open(input: OpenSessionInput, loginCode?: string): Promise<{ session: SessionRecord; tokens: IssuedTokens }> {
      const at = now();
      const id = newObjectId();
      const chainKey = newChainKey();
      const refreshToken = !input.userId ? "" : loginCode ? loginRefreshToken(chainKey, id, loginCode) : newRefreshToken(id);
      const session = await sessions.insert({
        ...input,
        id,
        refreshHash: refreshToken ? hashRefreshToken(refreshToken) : null,
        spentRefreshHashes: [],
        rotatedAt: new Date(at),
        chainKey,
        createdAt: new Date(at),
        expiresAt: input.userId ? refreshExpiry({ createdAt: new Date(at) }, at) : new Date(at + policy.accessTtlSeconds * 1000),
        revokedAt: null,
      });
      if (input.userId) await capSessions(input.userId);
      return { session, tokens: await issue(session, refreshToken) };
    },

    /**
     * The tokens of a session opened by `open(…, loginCode)`, again; null once the session has
     * ended or moved on (its first refresh token was used), since then the client had the answer.
     */
    async replay(sessionId: string, loginCode: string): Promise<{ session: SessionRecord; tokens: IssuedTokens } | null> {
      const session = await sessions.get(sessionId);
      if (!session || session.revokedAt || session.expiresAt.getTime() <= now()) return null;
      if (!session.userId) return { session, tokens: await issue(session, "") };
      const refreshToken = loginRefreshToken(session.chainKey, session.id, loginCode);
      if (!sameHash(session.refreshHash, hashRefreshToken(refreshToken))) return null;
      return { session, tokens: await issue(session, refreshToken) };
    },

    /**
     * Gives a pending session its user and first refresh token; the pending access token stops
     * working. No revocation event: the session keeps its id, so one would end the new tokens too,
     * and a verifier refuses a pending token (it names no user) anyway.
     */
    async promote(session: SessionRecord, userId: string): Promise<{ session: SessionRecord; tokens: IssuedTokens }> {
      const refreshToken = newRefreshToken(session.id);
      const promoted = await sessions.promote(session.id, userId, hashRefreshToken(refreshToken), refreshExpiry(session, now()));
      if (!promoted) throw new TokenError("revoked");
      await capSessions(userId);
      return { session: promoted, tokens: await issue(promoted, refreshToken) };
    },

    /** Rotates a refresh token, answering which session it was. Reusing a spent one revokes its session. */
    async refresh(refreshToken: string): Promise<{ tokens: IssuedTokens; session: SessionRecord }> {
      const sessionId = sessionIdOf(refreshToken);
      if (!sessionId) throw new TokenError("invalid");
      const session = await sessions.get(sessionId);
      if (!session?.userId) throw new TokenError("invalid");
      const presentedHash = hashRefreshToken(refreshToken);
      if (session.revokedAt) {
        throw new TokenError(sameHash(session.refreshHash, presentedHash) || session.spentRefreshHashes.some((spent) => sameHash(spent, presentedHash)) ? "revoked" : "invalid");
      }
      if (tooOld(session)) throw new TokenError("session_expired");
      // Not "expired", which tells a client to call Refresh: the refresh token itself is what ran out.
      if (session.expiresAt.getTime() <= now()) throw new TokenError("refresh_expired");
      await assertUserActive(session.userId);
      return { tokens: await rotateOrReplay(session, refreshToken, presentedHash), session };
    },

    /**
     * Verifies an access token and that its session is still live. With `ending`, for Logout, an
     * expired access token still names its session: the refresh token beside it lives on, so the
     * session must end. A token older than any session's life names nothing left to end.
     */
    async authenticate(accessToken: string, { ending = false } = {}): Promise<Authenticated> {
      if (!accessToken) throw new TokenError("missing");
      const claims = await accessTokens.verify(accessToken, ending ? { expiredGraceSeconds: policy.sessionMaxAgeSeconds ?? policy.refreshTtlSeconds } : {});
      const session = await sessions.get(claims.sid);
      if (!session || session.revokedAt) throw new TokenError("revoked");
      if ((session.userId ?? undefined) !== claims.sub || session.appKey !== claims.aud) throw new TokenError("invalid");
      if (!ending && session.expiresAt.getTime() <= now()) throw new TokenError("expired");
      return { session, claims };
    },

    /** Ends a session: its user logged out, or (session_mismatch) it was handed another user's data. */
    revoke: (sessionId: string, reason: Exclude<SessionEndReason, "refresh_token_reused"> = "logout") => end(sessionId, reason),
    /** Ends every live session of the user: it logged out of all, or an operator ended them. */
    revokeAllOfUser: (userId: string, reason: "logout_all" | "operator" = "logout_all") => sessions.revokeAllForUser(userId, reason, recordSessions(reason)),
    /**
     * Tells verifiers that every token of the user is void, then deletes its sessions (their
     * openids, session keys and addresses with them): the account is deleted. A token of a
     * deleted session is refused as revoked (access) or invalid (refresh).
     */
    async eraseUser(userId: string): Promise<void> {
      await record([{ target: { userId }, reason: "user_deleted" }]);
      await sessions.removeForUser(userId);
    },
    /** The user's stored sessions, newest first, for operators. */
    listOfUser: (userId: string, limit: number) => sessions.listForUser(userId, limit),
    /**
     * Call before a user's new status is written. Disabling tells verifiers that every token issued
     * until now is void (the service refuses a disabled user's tokens from then on); enabling again
     * ends the sessions from before, which verifiers already hold void, so the service revives none.
     */
    async beforeStatusChange(userId: string, from: UserStatus | undefined, to: UserStatus): Promise<void> {
      if (from === "active" && to === "disabled") await record([{ target: { userId }, reason: "user_disabled" }]);
      if (from === "disabled" && to === "active") await sessions.revokeAllForUser(userId, "user_disabled");
    },
  };
}

export type SessionLibrary = ReturnType<typeof createSessionLibrary>;
