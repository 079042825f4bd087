import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { IdentityService, LoginResponseSchema } from "../../gen/identity/v1/identity_pb.js";
import { AccountDisabledError } from "../auth/errors.js";
import { hashPassword, verifyPassword } from "../auth/passwords.js";
import { identityKey, inviteKey, usernameKey, type IdentityRecord, type JsonObject, type UserRecord } from "../store/store.js";
import { WechatError } from "../wechat/wechat-client.js";
import { createAttemptLimiter } from "./attempt-limiter.js";
import { noteOf } from "./audit.js";
import type { Caller } from "./caller.js";
import { apiError, fieldInvalid, toConnectError } from "./errors.js";
import { kClientAddress } from "./interceptors.js";
import type { App } from "../config/config.js";
import { kAssertedSignIn, type PlatformSignIn } from "./platform-login.js";
import { rateLimited, tokensToWire, type ServiceContext } from "./service-context.js";
import { checkUsername } from "./user-update.js";
import { userToWire } from "./user-view.js";
import { codeKey, CODE_LIFETIME_MS } from "./wechat-data.js";

// Login (platform code, id token, or password with an optional bindCode) and SetPassword: both
// spend the same password-guess budget, so they share one pair of failure limiters.

const PASSWORD_CHARS = { min: 8, max: 128 };
/** Failures that are nobody's guess: the platform or the store did not answer. */
const OUTAGE_CODES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.ResourceExhausted, Code.Internal]);

/** What a retry of a Login with the same code must be answered from. */
interface LoginReplay extends JsonObject {
  sessionId: string;
  registered: boolean;
  firstLogin: boolean;
  openid: string;
}

export function createLoginRpcs(
  { users, sessions, replays, accounts, passwordLimits, rates, now, signIn, resolveApp, limit, identityRecord, identityFrom, openSession }: ServiceContext,
  { authenticate }: Caller,
): Pick<ServiceImpl<typeof IdentityService>, "login" | "setPassword"> {
  const accountFailures = createAttemptLimiter(passwordLimits.perAccount, now);
  const addressFailures = createAttemptLimiter(passwordLimits.perAddress, now);

  /** Answers a retried Login from the first one, or says the code is spent once the client has moved on. */
  async function replayLogin(record: LoginReplay, code: string, ctx: HandlerContext): Promise<MessageInitShape<typeof LoginResponseSchema>> {
    const replayed = await sessions.replay(record.sessionId, code);
    if (!replayed) throw new WechatError("code_used", "jscode2session", 40163);
    const note = noteOf(ctx);
    Object.assign(note, { subjectUserId: replayed.session.userId ?? undefined, appKey: replayed.session.appKey });
    // The same sign-in answered again (a client's retry), not a second one.
    Object.assign(note.details, { method: replayed.session.platform, replayed: "true" });
    const user = replayed.session.userId ? await accounts.activeUser(replayed.session.userId) : null;
    return { tokens: tokensToWire(replayed.tokens), registered: record.registered, firstLogin: record.firstLogin, ...(user ? { user: userToWire(user) } : {}), openid: record.openid };
  }

  /** The inviter named by id or invite code; refused when unknown. */
  async function inviterOf(req: { inviterId: string; inviteCode: string }): Promise<string | undefined> {
    if (req.inviterId && req.inviteCode) throw fieldInvalid("invite_code", "give inviter_id or invite_code, not both");
    if (req.inviterId) {
      if (!(await users.get(req.inviterId))) throw fieldInvalid("inviter_id", "no user has this id");
      return req.inviterId.toLowerCase();
    }
    if (!req.inviteCode) return undefined;
    const [inviter] = req.inviteCode.length <= 16 ? await users.findByKeys([inviteKey(req.inviteCode)]) : [];
    if (!inviter) throw fieldInvalid("invite_code", "no user has this invite code");
    return inviter.id;
  }

  /**
   * Counts a password guess against the username and the client address before the hash is
   * verified, so however many arrive at once, at most the limit of them is ever evaluated (per
   * instance); RATE_LIMITED, counting nothing, when either is at its limit. The guess stays a
   * failure unless the caller says otherwise: `succeed` (the password was right) clears the
   * username's failures and takes back the address's count, as a right password never counted;
   * `cancel` takes both back, for an attempt that ended on an outage before any password was tried.
   */
  function reserveGuess(username: string, ctx: HandlerContext) {
    const accountKey = `account:${username.toLowerCase()}`;
    const addressKey = `address:${ctx.values.get(kClientAddress)}`;
    const wait = Math.max(accountFailures.retryAfter(accountKey), addressFailures.retryAfter(addressKey));
    if (wait) throw rateLimited(wait, "too many failed sign-ins");
    const undoAccount = accountFailures.fail(accountKey);
    const undoAddress = addressFailures.fail(addressKey);
    return {
      succeed() {
        accountFailures.succeed(accountKey);
        undoAddress();
      },
      cancel() {
        undoAccount();
        undoAddress();
      },
    };
  }

  /**
   * Username and password. A wrong pair is BAD_CREDENTIALS whether or not the username exists
   * (same answer, same time, same count). With a bindCode, the code's platform identity is linked
   * to the account; an unknown username with a bindCode registers one, when the app registers users.
   * The bindCode is spent first, for every username: a refused code then answers, and counts, the
   * same whether or not the username exists.
   */
  async function passwordLogin(app: App, credential: { username: string; password: string } | undefined, bindCode: string, inviterId: string | undefined, ctx: HandlerContext) {
    const { username = "", password = "" } = credential ?? {};
    checkUsername("password.username", username);
    if (!password || password.length > PASSWORD_CHARS.max) throw fieldInvalid("password.password", `required, at most ${PASSWORD_CHARS.max} characters`);
    const guess = reserveGuess(username, ctx);
    let platform: PlatformSignIn | null;
    let account: UserRecord | undefined;
    try {
      platform = bindCode ? await signIn(app, { code: bindCode, idToken: "", nonce: "" }, ctx.signal) : null;
      [account] = await users.findByKeys([usernameKey(username)]);
    } catch (e) {
      // A refused code counts like a wrong password; an outage is not the caller's failure.
      if (OUTAGE_CODES.has(toConnectError(e).error.code)) guess.cancel();
      throw e;
    }
    const matches = await verifyPassword(password, account?.passwordHash);
    const note = noteOf(ctx);
    note.appKey = app.id;
    note.details.method = "password";
    if (!matches && !(account === undefined && platform && app.registration === "auto")) {
      // Whose account was guessed at, for operators; an unknown username is kept as typed (no secret).
      if (account) note.subjectUserId = account.id;
      else note.details.username = username;
      throw apiError("BAD_CREDENTIALS", "the username or password is not right");
    }
    if (account) note.subjectUserId = account.id;
    guess.succeed();
    if (account?.status === "disabled") throw new AccountDisabledError();
    const identity = platform ? identityFrom(app, platform) : null;
    let user: UserRecord;
    let created = false;
    if (account) {
      user = identity ? await linkIdentity(account, identity) : account;
    } else {
      // Registration: the bindCode's identity gets this username and password.
      checkNewPassword("password.password", password, username);
      const passwordHash = await hashPassword(password);
      const found = await accounts.findOrCreate(identity!, { create: true, defaultRoles: app.defaultRoles, profile: { username, passwordHash, ...(inviterId ? { inviterId } : {}) } });
      if (!found) throw apiError("INTERNAL", "internal error");
      created = found.created;
      user = found.created ? found.user : await addPassword(found.user, username, passwordHash);
    }
    Object.assign(note, { subjectUserId: user.id, registered: created });
    const { tokens } = await openSession(app, user.id, identity ?? identityRecord({ platform: "password", appid: app.appid, openid: user.id }), platform?.sessionKey, ctx.values.get(kClientAddress));
    return { tokens: tokensToWire(tokens), registered: true, firstLogin: created, user: userToWire(user), openid: identity?.openid ?? "" };
  }

  /** Binds a platform identity to a password account, unless it is another user's. */
  async function linkIdentity(account: UserRecord, identity: IdentityRecord): Promise<UserRecord> {
    const [holder] = await users.findByKeys([identityKey(identity.platform, identity.appid, identity.openid)]);
    if (holder && holder.id !== account.id) throw apiError("IDENTITY_TAKEN", "this WeChat account is bound to another user");
    return accounts.bindIdentity(account, identity);
  }

  /** Gives an existing platform user the username and password it registers with. */
  async function addPassword(user: UserRecord, username: string, passwordHash: string): Promise<UserRecord> {
    // Checked on the record being written, so a parallel registration cannot rename the account.
    return accounts.update(user.id, (u) => {
      if (u.username) throw apiError("ACCOUNT_CONFLICT", "this WeChat account already has a username; sign in with it");
      return { ...u, username, passwordHash };
    });
  }

  return {
    async login(req, ctx) {
      const app = resolveApp(req.appId);
      limit(rates.loginAddress, ctx.values.get(kClientAddress), "too many sign-ins from this address");
      limit(rates.loginApp, app.id, "too many sign-ins to this app");
      // Checked before any code is spent, so a client can fix it and retry with the same code.
      const inviterId = await inviterOf(req);
      const { credential } = req;
      if (credential.case === "password") return passwordLogin(app, credential.value, req.bindCode, inviterId, ctx);
      if (req.bindCode) throw fieldInvalid("bind_code", "only used with a password login");
      const code = credential.case === "code" ? credential.value : "";
      const idToken = credential.case === "idToken" ? credential.value : "";

      const replayKey = code ? codeKey("login", app.appid, code) : "";
      const earlier = replayKey ? ((await replays.recall(replayKey)) as LoginReplay | null) : null;
      if (earlier) return replayLogin(earlier, code, ctx);
      let platform: PlatformSignIn;
      try {
        platform = ctx.values.get(kAssertedSignIn) ?? (await signIn(app, { code, idToken, nonce: req.nonce }, ctx.signal));
      } catch (e) {
        // A parallel Login with the same code may have redeemed it a moment ago.
        const late = replayKey && e instanceof WechatError && e.kind === "code_used" ? ((await replays.recall(replayKey)) as LoginReplay | null) : null;
        if (late) return replayLogin(late, code, ctx);
        throw e;
      }
      const identity = identityFrom(app, platform);
      const found = await accounts.findOrCreate(identity, { create: app.registration === "auto", defaultRoles: app.defaultRoles, profile: inviterId ? { inviterId } : {} });
      Object.assign(noteOf(ctx), { appKey: app.id, subjectUserId: found?.user.id, registered: found?.created ?? false });
      noteOf(ctx).details.method = app.platform;
      if (found?.user.status === "disabled") throw new AccountDisabledError();
      const { session, tokens } = await openSession(app, found?.user.id ?? null, identity, platform.sessionKey, ctx.values.get(kClientAddress), code);
      const record: LoginReplay = { sessionId: session.id, registered: Boolean(found), firstLogin: found?.created ?? false, openid: identity.openid };
      if (replayKey) await replays.remember(replayKey, record, new Date(now() + CODE_LIFETIME_MS));
      return {
        tokens: tokensToWire(tokens),
        registered: record.registered,
        firstLogin: record.firstLogin,
        ...(found ? { user: userToWire(found.user) } : {}),
        openid: identity.openid,
      };
    },

    async setPassword(req, ctx) {
      const { user: caller } = await authenticate(ctx);
      const user = caller!;
      if (user.passwordHash) {
        const wrong = () => apiError("BAD_CREDENTIALS", "the current password is not right");
        // No current password is no guess (none is empty): refused without spending the budget.
        if (!req.currentPassword) throw wrong();
        const guess = reserveGuess(user.username ?? user.id, ctx);
        if (!(await verifyPassword(req.currentPassword, user.passwordHash))) throw wrong();
        guess.succeed();
      }
      const username = user.username ?? req.username;
      if (!username) throw fieldInvalid("username", "required: this account has no username yet");
      if (req.username && req.username.toLowerCase() !== username.toLowerCase()) throw fieldInvalid("username", "this account has a username already; change it with UpdateUser");
      checkUsername("username", username);
      checkNewPassword("new_password", req.newPassword, username);
      const passwordHash = await hashPassword(req.newPassword);
      return { user: userToWire(await accounts.setPassword(user, username, passwordHash)) };
    },
  };
}

function checkNewPassword(field: string, password: string, username: string): void {
  if ([...password].length < PASSWORD_CHARS.min || [...password].length > PASSWORD_CHARS.max) {
    throw fieldInvalid(field, `must be ${PASSWORD_CHARS.min}-${PASSWORD_CHARS.max} characters`);
  }
  if (password.toLowerCase() === username.toLowerCase()) throw fieldInvalid(field, "must not be the username");
}
