import type { SessionLibrary } from "../auth/sessions.js";
import type { AuditStore, UserRecord, UserStatus, UserStore } from "../store/store.js";
import type { AccountLibrary } from "./accounts.js";
import { apiError, fieldInvalid } from "./errors.js";

// What ends or narrows an account, the same whether the user asks (IdentityService) or an
// operator does (AdminService): deletion, unlinking an identity, unbinding a phone number.

/** Sessions looked at when ending those opened with an unlinked identity (the per-user cap is far lower). */
const SESSIONS_SCANNED = 1000;

/** The ways to sign in a user has: each platform identity, and a username with a password. */
export function signInMethods(user: UserRecord): number {
  return user.identities.length + (user.username && user.passwordHash ? 1 : 0);
}

/** An identity named by platform and appid, each 1-128 characters (they end up in the audit log). */
export function checkIdentityNamed(platform: string, appid: string): void {
  if (!platform || platform.length > 128) throw fieldInvalid("platform", "the identity's platform, 1-128 characters");
  if (!appid || appid.length > 128) throw fieldInvalid("appid", "the identity's appid, 1-128 characters");
}

export function createAccountLifecycle({ users, sessions, accounts, audit }: { users: UserStore; sessions: SessionLibrary; accounts: AccountLibrary; audit: AuditStore }) {
  return {
    /**
     * Deletes the user: verifiers learn first that its tokens are void, then its sessions go, then
     * the record, which frees every unique key (openid, unionid, phone, username, invite code), so
     * the same WeChat user signing in again is a new user. Its audit events keep only the facts.
     * A failure midway leaves a user whose tokens are void: a retry finishes the job. `user` is
     * the record the caller has just read (its own sign-in, or an operator's subject).
     */
    async deleteUser(user: UserRecord): Promise<void> {
      await sessions.eraseUser(user.id);
      await users.remove(user.id);
      await audit.anonymiseSubject(user.id);
    },

    /**
     * Removes the user's identity of this platform app, and the unionid when no identity left
     * carries it, then ends the sessions opened with it. Never the last way to sign in.
     */
    async unlinkIdentity(userId: string, platform: string, appid: string, { anyStatus = false } = {}): Promise<UserRecord> {
      checkIdentityNamed(platform, appid);
      const updated = await accounts.update(
        userId,
        (u) => {
          const kept = u.identities.filter((i) => i.platform !== platform || i.appid !== appid);
          if (kept.length === u.identities.length) throw apiError("NOT_FOUND", "the user has no identity of this platform and appid", { platform, appid });
          const next: UserRecord = { ...u, identities: kept };
          if (u.unionid && !kept.some((i) => i.unionid === u.unionid)) delete next.unionid;
          if (signInMethods(next) === 0) throw apiError("LAST_SIGN_IN_METHOD", "this is the user's last way to sign in; set a password first, or delete the account", { platform, appid });
          return next;
        },
        undefined,
        { anyStatus },
      );
      for (const session of await sessions.listOfUser(userId, SESSIONS_SCANNED)) {
        if (!session.revokedAt && session.platform === platform && session.appid === appid) await sessions.revoke(session.id, "identity_unlinked");
      }
      return updated;
    },

    /**
     * Sets the status of `user` (the record the caller has just read); verifiers are told first
     * that its tokens are void (should the write fail, they end anyway).
     */
    async setStatus(user: UserRecord, status: UserStatus): Promise<UserRecord> {
      await sessions.beforeStatusChange(user.id, user.status, status);
      return accounts.update(user.id, (u) => (u.status === status ? u : { ...u, status }), undefined, { anyStatus: true });
    },

    /** Removes the user's phone number, which frees it for another user; a phone is no way to sign in here. */
    async unbindPhone(userId: string, { anyStatus = false } = {}): Promise<UserRecord> {
      return accounts.update(
        userId,
        (u) => {
          if (!u.phoneNumber && !u.purePhoneNumber && !u.countryCode) return u;
          const { phoneNumber: _p, purePhoneNumber: _pp, countryCode: _c, ...rest } = u;
          return rest;
        },
        undefined,
        { anyStatus },
      );
    },
  };
}

export type AccountLifecycle = ReturnType<typeof createAccountLifecycle>;
