import { randomBytes } from "node:crypto";
import { AccountDisabledError, TokenError } from "../auth/errors.js";
import { sameHash } from "../auth/refresh-tokens.js";
import { DuplicateKeyError, identityKey, unionidKey, VersionConflictError, type IdentityRecord, type UserDraft, type UserRecord, type UserStore } from "../store/store.js";
import { apiError } from "./errors.js";

const UPDATE_ATTEMPTS = 5;
// No 0/O, 1/I/L: an invite code is read aloud and typed by hand. 31^8 ≈ 8.5e11 codes.
const INVITE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const INVITE_LENGTH = 8;
const CREATE_ATTEMPTS = 3;

export function newInviteCode(): string {
  return Array.from(randomBytes(INVITE_LENGTH), (b) => INVITE_ALPHABET[b % INVITE_ALPHABET.length]).join("");
}

/** Profile fields a platform may tell us about a new user. */
export type PlatformProfile = Partial<Pick<UserRecord, "nickname" | "avatarUrl" | "gender" | "phoneNumber" | "purePhoneNumber" | "countryCode" | "username" | "passwordHash" | "inviterId">>;

const hasIdentity = (user: UserRecord, identity: IdentityRecord) => user.identities.some((i) => i.platform === identity.platform && i.appid === identity.appid && i.openid === identity.openid);

/** Whether the user still lacks the identity, or the unionid it brings. */
const lacks = (user: UserRecord, identity: IdentityRecord) => !hasIdentity(user, identity) || (Boolean(identity.unionid) && !user.unionid);

export function createAccountLibrary({ users, now }: { users: UserStore; now: () => number }) {
  async function activeUser(userId: string): Promise<UserRecord> {
    const user = await users.get(userId);
    if (!user) throw new TokenError("revoked");
    if (user.status === "disabled") throw new AccountDisabledError();
    return user;
  }

  /**
   * Read-modify-write with the store's version check; retries lost races unless the caller pinned a
   * version. Only an internal caller (`anyStatus`) may write a disabled user, e.g. to enable it.
   */
  async function update(userId: string, change: (user: UserRecord) => UserRecord, expectedVersion?: number, { anyStatus = false } = {}): Promise<UserRecord> {
    for (let attempt = 1; ; attempt++) {
      const current = anyStatus ? await users.get(userId) : await activeUser(userId);
      if (!current) throw apiError("USER_NOT_FOUND", "no user has this id");
      if (expectedVersion !== undefined && current.version !== expectedVersion) throw new VersionConflictError();
      const next = change(current);
      if (next === current) return current;
      try {
        return await users.replace({ ...next, updatedAt: new Date(now()) });
      } catch (e) {
        if (!(e instanceof VersionConflictError) || expectedVersion !== undefined || attempt >= UPDATE_ATTEMPTS) throw e;
      }
    }
  }

  /** Adds the identity (and its unionid) to the user if it lacks them. */
  async function bindIdentity(user: UserRecord, identity: IdentityRecord): Promise<UserRecord> {
    if (identity.unionid && user.unionid && user.unionid !== identity.unionid) {
      throw apiError("ACCOUNT_CONFLICT", "this sign-in matches a user of another open platform account; contact support");
    }
    // A returning sign-in changes nothing: answer from the record just read instead of reading it again.
    if (!lacks(user, identity)) {
      if (user.status === "disabled") throw new AccountDisabledError();
      return user;
    }
    return update(user.id, (u) => {
      if (!lacks(u, identity)) return u;
      return {
        ...u,
        identities: hasIdentity(u, identity) ? u.identities : [...u.identities, identity],
        ...(identity.unionid ? { unionid: identity.unionid } : {}),
      };
    });
  }

  /**
   * Gives the user this username and password hash if its username and password are still those of
   * `checked` (no password, for a first one): of parallel calls exactly one wins; the others, whose
   * check no longer holds, get ABORTED / VERSION_CONFLICT instead of overwriting the winner's.
   */
  async function setPassword(checked: UserRecord, username: string, passwordHash: string): Promise<UserRecord> {
    return update(checked.id, (u) => {
      const samePassword = checked.passwordHash ? sameHash(u.passwordHash, checked.passwordHash) : !u.passwordHash;
      if (!samePassword || u.username !== checked.username) throw new VersionConflictError();
      return { ...u, username, passwordHash };
    });
  }

  return {
    activeUser,
    update,
    bindIdentity,
    setPassword,

    /**
     * The one user holding this identity, its unionid or any of `extraKeys` (e.g. a phone), with the
     * identity bound to it; else a new user when `create` allows; else null. Two users matching
     * different keys is a conflict, never a guess.
     */
    async findOrCreate(
      identity: IdentityRecord,
      { create, defaultRoles, profile = {}, extraKeys = [] }: { create: boolean; defaultRoles: string[]; profile?: PlatformProfile; extraKeys?: string[] },
    ): Promise<{ user: UserRecord; created: boolean } | null> {
      const keys = [identityKey(identity.platform, identity.appid, identity.openid), ...extraKeys];
      if (identity.unionid) keys.push(unionidKey(identity.unionid));
      // A parallel first login of the same person may insert between our read and our insert; then
      // the next round finds it. (An invite code taken by chance just gets a new one.)
      for (let round = 0; round < CREATE_ATTEMPTS; round++) {
        const found = await users.findByKeys(keys);
        if (found.length > 1) {
          throw apiError("ACCOUNT_CONFLICT", "this sign-in matches two different users; contact support");
        }
        const [existing] = found;
        if (existing) return { user: await bindIdentity(existing, identity), created: false };
        if (!create) return null;
        const at = new Date(now());
        const draft: UserDraft = {
          ...profile,
          roles: [...defaultRoles],
          status: "active",
          identities: [identity],
          ...(identity.unionid ? { unionid: identity.unionid } : {}),
          inviteCode: newInviteCode(),
          attributes: {},
          createdAt: at,
          updatedAt: at,
        };
        try {
          return { user: await users.insert(draft), created: true };
        } catch (e) {
          // A taken username is final; any other key taken meanwhile means the next round finds its holder.
          const retry = e instanceof DuplicateKeyError && (e.kind === "invite" || (round === 0 && e.kind !== "username"));
          if (!retry) throw e;
        }
      }
      throw apiError("STORE_UNAVAILABLE", "could not settle a parallel sign-in; retry");
    },
  };
}

export type AccountLibrary = ReturnType<typeof createAccountLibrary>;
