import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { IdentityService, TokensSchema, type LoginResponseSchema, type Tokens } from "../../gen/identity/v1/identity_pb.js";
import { AccountDisabledError, TokenError } from "../auth/errors.js";
import type { Authenticated, IssuedTokens, SessionLibrary } from "../auth/sessions.js";
import { phoneKey, type IdentityRecord, type JsonObject, type ReplayStore, type SessionRecord, type UserRecord, type UserStore } from "../store/store.js";
import type { AccessTokenBroker } from "../wechat/access-token-broker.js";
import { WechatError, type WechatClient } from "../wechat/wechat-client.js";
import { createAccountLibrary, type PlatformProfile } from "./accounts.js";
import { apiError, fieldInvalid } from "./errors.js";
import { planProfilePatch, updatePaths } from "./user-update.js";
import { userToWire } from "./user-view.js";
import { checkCode, codeKey, CODE_LIFETIME_MS, createWechatData, phoneFromOpenData, type Phone } from "./wechat-data.js";

export interface App {
  /** The configured app key, e.g. "demo". */
  id: string;
  platform: "wechat-miniprogram";
  appid: string;
  secret: string;
  registration: "auto" | "explicit";
  defaultRoles: string[];
}

export interface IdentityServiceDeps {
  apps: App[];
  users: UserStore;
  sessions: SessionLibrary;
  replays: ReplayStore;
  wechat: WechatClient;
  broker: AccessTokenBroker;
  now?: () => number;
}

const MAX_TOKEN_CHARS = 4096;
/** WeChat's placeholder profile since 2022: not a name anyone chose. */
const PLACEHOLDER_NICKNAME = "微信用户";

/** What a retry of a Login with the same code must be answered from. */
interface LoginReplay extends JsonObject {
  sessionId: string;
  registered: boolean;
  firstLogin: boolean;
  openid: string;
}

export function createIdentityService({ apps, users, sessions, replays, wechat, broker, now = Date.now }: IdentityServiceDeps): ServiceImpl<typeof IdentityService> {
  const appsByName = new Map<string, App>();
  for (const app of apps) appsByName.set(app.id, app).set(app.appid, app);
  const accounts = createAccountLibrary({ users, now });
  const wechatData = createWechatData({ wechat, broker, replays, now });

  function resolveApp(appId: string): App {
    if (!appId) {
      if (apps.length === 1 && apps[0]) return apps[0];
      throw fieldInvalid("app_id", "required when more than one app is configured");
    }
    const app = appsByName.get(appId);
    if (!app) throw apiError(Code.NotFound, "APP_NOT_FOUND", `no app "${appId.slice(0, 64)}" is configured`, { appId: appId.slice(0, 64) });
    return app;
  }

  /** The app a session was opened for; a session of an app no longer configured is over. */
  function appOf(session: SessionRecord): App {
    const app = appsByName.get(session.appId);
    if (!app) throw new TokenError("revoked");
    return app;
  }

  async function authenticate(ctx: HandlerContext, { allowPending = false, token = bearerOf(ctx) } = {}): Promise<Authenticated & { userId: string }> {
    if (token.length > MAX_TOKEN_CHARS) throw new TokenError("invalid");
    const auth = await sessions.authenticate(token);
    if (!auth.session.userId && !allowPending) {
      throw apiError(Code.FailedPrecondition, "NOT_REGISTERED", "this session has no user yet: call Oauth or BindPhone first");
    }
    return { ...auth, userId: auth.session.userId ?? "" };
  }

  function identityOf(session: SessionRecord, unionid = session.unionid): IdentityRecord {
    return { platform: session.platform, appid: session.appid, openid: session.openid, ...(unionid ? { unionid } : {}), createdAt: new Date(now()) };
  }

  /** Answers a retried Login from the first one, or says the code is spent once the client has moved on. */
  async function replayLogin(record: LoginReplay, code: string): Promise<MessageInitShape<typeof LoginResponseSchema>> {
    const replayed = await sessions.replay(record.sessionId, code);
    if (!replayed) throw new WechatError("code_used", "jscode2session", 40163);
    const user = replayed.session.userId ? await accounts.activeUser(replayed.session.userId) : null;
    return { tokens: tokensToWire(replayed.tokens), registered: record.registered, firstLogin: record.firstLogin, ...(user ? { user: userToWire(user) } : {}), openid: record.openid };
  }

  async function phoneOf(app: App, session: SessionRecord, req: { code: string; encryptedData: string; iv: string }): Promise<Phone> {
    if (req.code) return wechatData.phoneFromCode(app, session, req.code);
    if (!req.encryptedData && !req.iv) throw fieldInvalid("code", "the phone button's code (or the legacy encryptedData and iv) is required");
    return phoneFromOpenData(await wechatData.decrypt(app, session, req));
  }

  /** A pending session's user, found or created from what the platform told us, and its first full tokens. */
  async function register(app: App, session: SessionRecord, identity: IdentityRecord, profile: PlatformProfile, extraKeys: string[] = []) {
    const found = await accounts.findOrCreate(identity, { create: true, defaultRoles: app.defaultRoles, profile, extraKeys });
    if (!found) throw apiError(Code.Internal, "INTERNAL", "internal error");
    if (found.user.status === "disabled") throw new AccountDisabledError();
    const { tokens } = await sessions.promote(session, found.user.id);
    return { ...found, tokens: tokensToWire(tokens) };
  }

  return {
    async login(req, ctx) {
      const app = resolveApp(req.appId);
      const { credential } = req;
      if (credential.case === "password" || credential.case === "idToken") {
        throw apiError(Code.Unimplemented, "NOT_IMPLEMENTED", `${credential.case} login is not available yet`);
      }
      const code = credential.case === "code" ? credential.value : "";
      checkCode("code", code);
      if (req.bindCode) throw fieldInvalid("bind_code", "only used with a password login");

      const replayKey = codeKey("login", app.appid, code);
      const earlier = (await replays.recall(replayKey)) as LoginReplay | null;
      if (earlier) return replayLogin(earlier, code);
      let platform: Awaited<ReturnType<WechatClient["code2Session"]>>;
      try {
        platform = await wechat.code2Session(app, code, ctx.signal);
      } catch (e) {
        // A parallel Login with the same code may have redeemed it a moment ago.
        const late = e instanceof WechatError && e.kind === "code_used" ? ((await replays.recall(replayKey)) as LoginReplay | null) : null;
        if (late) return replayLogin(late, code);
        throw e;
      }
      const identity: IdentityRecord = { platform: app.platform, appid: app.appid, openid: platform.openid, ...(platform.unionid ? { unionid: platform.unionid } : {}), createdAt: new Date(now()) };
      const found = await accounts.findOrCreate(identity, { create: app.registration === "auto", defaultRoles: app.defaultRoles });
      if (found?.user.status === "disabled") throw new AccountDisabledError();
      const { session, tokens } = await sessions.open(
        { appId: app.id, userId: found?.user.id ?? null, platform: identity.platform, appid: identity.appid, openid: identity.openid, unionid: identity.unionid, sessionKey: platform.sessionKey },
        code,
      );
      const record: LoginReplay = { sessionId: session.id, registered: Boolean(found), firstLogin: found?.created ?? false, openid: identity.openid };
      await replays.remember(replayKey, record, new Date(now() + CODE_LIFETIME_MS));
      return {
        tokens: tokensToWire(tokens),
        registered: record.registered,
        firstLogin: record.firstLogin,
        ...(found ? { user: userToWire(found.user) } : {}),
        openid: identity.openid,
      };
    },

    async oauth(req, ctx) {
      const { session, userId } = await authenticate(ctx, { allowPending: true });
      const app = appOf(session);
      const data = await wechatData.decrypt(app, session, req);
      if (data.openId !== session.openid) {
        // Someone else's data on this session: end it, as seed 000's 8527 does.
        await sessions.revoke(session.id);
        throw apiError(Code.FailedPrecondition, "SESSION_MISMATCH", "the data belongs to another WeChat user; this session has been ended, Login again");
      }
      const unionid = typeof data.unionId === "string" && data.unionId ? data.unionId : session.unionid;
      const identity = identityOf(session, unionid);
      const profile = profileOf(data);
      if (!userId) {
        const registered = await register(app, session, identity, profile);
        return { user: userToWire(registered.user), created: registered.created, tokens: registered.tokens };
      }
      const bound = await accounts.bindIdentity(await accounts.activeUser(userId), identity);
      // Fill what the user has not set; never overwrite their own edits.
      const user = await accounts.update(bound.id, (u) => {
        const missing = Object.fromEntries(Object.entries(profile).filter(([field]) => u[field as keyof PlatformProfile] === undefined));
        return Object.keys(missing).length ? { ...u, ...missing } : u;
      });
      return { user: userToWire(user), created: false };
    },

    async getPhone(req, ctx) {
      const { session } = await authenticate(ctx);
      return phoneOf(appOf(session), session, req);
    },

    async bindPhone(req, ctx) {
      const { session, userId } = await authenticate(ctx, { allowPending: true });
      const app = appOf(session);
      const phone = await phoneOf(app, session, req);
      if (!userId) {
        const { user, tokens } = await register(app, session, identityOf(session), phone, [phoneKey(phone)]);
        return { user: userToWire(await accounts.update(user.id, (u) => withPhone(u, phone))), tokens };
      }
      return { user: userToWire(await accounts.update(userId, (u) => withPhone(u, phone))) };
    },

    async refresh(req) {
      if (!req.refreshToken || req.refreshToken.length > MAX_TOKEN_CHARS) throw fieldInvalid("refresh_token", "a refresh token is required");
      return { tokens: tokensToWire(await sessions.refresh(req.refreshToken)) };
    },

    async logout(req, ctx) {
      const { session, userId } = await authenticate(ctx, { allowPending: true });
      if (req.allSessions && userId) await sessions.revokeAllOfUser(userId);
      else await sessions.revoke(session.id);
      return {};
    },

    async checkLogin(req, ctx) {
      const { session, claims, userId } = await authenticate(ctx, req.accessToken ? { token: req.accessToken } : {});
      const user = await accounts.activeUser(userId);
      return { user: userToWire(user), sessionId: session.id, expireTime: timestampFromMs(claims.exp * 1000), appId: session.appId };
    },

    async getUser(req, ctx) {
      const { userId } = await authenticate(ctx);
      if (req.userId && req.userId !== userId) {
        throw apiError(Code.PermissionDenied, "PERMISSION_DENIED", "an end user may read only itself");
      }
      return { user: userToWire(await accounts.activeUser(userId)) };
    },

    async updateUser(req, ctx) {
      const { userId } = await authenticate(ctx);
      const wanted = req.user;
      if (!wanted) throw fieldInvalid("user", "the fields to set are required");
      if (wanted.id && wanted.id !== userId) throw apiError(Code.PermissionDenied, "PERMISSION_DENIED", "an end user may update only itself");
      if (req.expectedVersion !== undefined && req.expectedVersion < 0) throw fieldInvalid("expected_version", "must not be negative");
      const patch = planProfilePatch(wanted, updatePaths(wanted, req.updateMask?.paths ?? []), new Date(now()));
      const updated = await accounts.update(
        userId,
        (user) => {
          const next: UserRecord = { ...user, ...patch.set };
          for (const field of patch.unset) {
            if (field === "attributes") next.attributes = {};
            else delete next[field];
          }
          return next;
        },
        req.expectedVersion,
      );
      return { user: userToWire(updated) };
    },
  };
}

/** The same record when the phone is already the user's, so binding it again writes nothing. */
function withPhone(user: UserRecord, phone: Phone): UserRecord {
  const same = user.phoneNumber === phone.phoneNumber && user.purePhoneNumber === phone.purePhoneNumber && user.countryCode === phone.countryCode;
  return same ? user : { ...user, ...phone };
}

/** The profile fields of a decrypted wx.getUserProfile / getUserInfo payload worth keeping. */
function profileOf(data: Record<string, unknown>): PlatformProfile {
  const profile: PlatformProfile = {};
  if (typeof data.nickName === "string" && data.nickName.trim() && data.nickName !== PLACEHOLDER_NICKNAME) profile.nickname = data.nickName.slice(0, 64);
  if (typeof data.avatarUrl === "string" && /^https?:\/\//.test(data.avatarUrl) && data.avatarUrl.length <= 1024) profile.avatarUrl = data.avatarUrl;
  if (data.gender === 1) profile.gender = "male";
  if (data.gender === 2) profile.gender = "female";
  return profile;
}

/** The bearer token; "" when there is no authorization header. */
function bearerOf(ctx: HandlerContext): string {
  const header = ctx.requestHeader.get("authorization");
  if (!header) return "";
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (!match?.[1]) throw new TokenError("invalid");
  return match[1];
}

function tokensToWire(tokens: IssuedTokens): Tokens {
  return create(TokensSchema, { ...tokens, tokenType: "Bearer" });
}
