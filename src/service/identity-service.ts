import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { IdentityService, TokensSchema, type Tokens } from "../../gen/identity/v1/identity_pb.js";
import { AccountDisabledError, TokenError } from "../auth/errors.js";
import type { Authenticated, IssuedTokens, SessionLibrary } from "../auth/sessions.js";
import {
  DuplicateKeyError,
  identityKey,
  unionidKey,
  VersionConflictError,
  type IdentityRecord,
  type UserRecord,
  type UserStore,
} from "../store/store.js";
import type { WechatClient } from "../wechat/wechat-client.js";
import { apiError, fieldInvalid } from "./errors.js";
import { planProfilePatch, updatePaths } from "./user-update.js";
import { userToWire } from "./user-view.js";

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
  wechat: WechatClient;
  now?: () => number;
}

const MAX_CODE_CHARS = 256;
const MAX_TOKEN_CHARS = 4096;
const UPDATE_ATTEMPTS = 5;

export function createIdentityService({ apps, users, sessions, wechat, now = Date.now }: IdentityServiceDeps): ServiceImpl<typeof IdentityService> {
  const appsByName = new Map<string, App>();
  for (const app of apps) appsByName.set(app.id, app).set(app.appid, app);

  function resolveApp(appId: string): App {
    if (!appId) {
      if (apps.length === 1 && apps[0]) return apps[0];
      throw fieldInvalid("app_id", "required when more than one app is configured");
    }
    const app = appsByName.get(appId);
    if (!app) throw apiError(Code.NotFound, "APP_NOT_FOUND", `no app "${appId.slice(0, 64)}" is configured`, { appId: appId.slice(0, 64) });
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

  async function activeUser(userId: string): Promise<UserRecord> {
    const user = await users.get(userId);
    if (!user) throw new TokenError("revoked");
    if (user.status === "disabled") throw new AccountDisabledError();
    return user;
  }

  /** Read-modify-write with the store's version check; retries lost races unless the caller pinned a version. */
  async function updateUser(userId: string, change: (user: UserRecord) => UserRecord, expectedVersion?: number): Promise<UserRecord> {
    for (let attempt = 1; ; attempt++) {
      const current = await activeUser(userId);
      if (expectedVersion !== undefined && current.version !== expectedVersion) throw new VersionConflictError();
      try {
        return await users.replace({ ...change(current), updatedAt: new Date(now()) });
      } catch (e) {
        if (!(e instanceof VersionConflictError) || expectedVersion !== undefined || attempt >= UPDATE_ATTEMPTS) throw e;
      }
    }
  }

  /** The user holding this identity or its unionid, binding what it lacks; creates one when the app allows. */
  async function findOrCreateUser(app: App, identity: IdentityRecord): Promise<{ user: UserRecord; created: boolean } | null> {
    const keys = [identityKey(identity.platform, identity.appid, identity.openid)];
    if (identity.unionid) keys.push(unionidKey(identity.unionid));
    // Two rounds: a parallel first login of the same person may insert between our read and our insert.
    for (let round = 0; round < 2; round++) {
      const found = await users.findByKeys(keys);
      if (found.length > 1) {
        throw apiError(Code.FailedPrecondition, "ACCOUNT_CONFLICT", "this sign-in matches two different users; contact support");
      }
      const [existing] = found;
      if (existing) return { user: await bindIdentity(existing, identity), created: false };
      if (app.registration === "explicit") return null;
      const at = new Date(now());
      try {
        const user = await users.insert({
          roles: [...app.defaultRoles],
          status: "active",
          identities: [identity],
          ...(identity.unionid ? { unionid: identity.unionid } : {}),
          attributes: {},
          createdAt: at,
          updatedAt: at,
        });
        return { user, created: true };
      } catch (e) {
        if (round > 0 || !(e instanceof DuplicateKeyError)) throw e;
      }
    }
    throw apiError(Code.Unavailable, "STORE_UNAVAILABLE", "could not settle a parallel sign-in; retry");
  }

  async function bindIdentity(user: UserRecord, identity: IdentityRecord): Promise<UserRecord> {
    const hasIdentity = user.identities.some((i) => i.platform === identity.platform && i.appid === identity.appid && i.openid === identity.openid);
    const needsUnionid = identity.unionid && !user.unionid;
    if (hasIdentity && !needsUnionid) return user;
    if (identity.unionid && user.unionid && user.unionid !== identity.unionid) {
      throw apiError(Code.FailedPrecondition, "ACCOUNT_CONFLICT", "this sign-in matches a user of another open platform account; contact support");
    }
    return updateUser(user.id, (u) => ({
      ...u,
      identities: hasIdentity ? u.identities : [...u.identities, identity],
      ...(identity.unionid ? { unionid: identity.unionid } : {}),
    }));
  }

  return {
    async login(req, ctx) {
      const app = resolveApp(req.appId);
      const { credential } = req;
      if (credential.case === "password" || credential.case === "idToken") {
        throw apiError(Code.Unimplemented, "NOT_IMPLEMENTED", `${credential.case} login is not available yet`);
      }
      const code = credential.case === "code" ? credential.value : "";
      if (!code || code.length > MAX_CODE_CHARS || /\s/.test(code)) throw fieldInvalid("code", "a wx.login code is required");
      if (req.bindCode) throw fieldInvalid("bind_code", "only used with a password login");

      const platform = await wechat.code2Session(app, code, ctx.signal);
      const identity: IdentityRecord = {
        platform: app.platform,
        appid: app.appid,
        openid: platform.openid,
        ...(platform.unionid ? { unionid: platform.unionid } : {}),
        createdAt: new Date(now()),
      };
      const found = await findOrCreateUser(app, identity);
      if (found?.user.status === "disabled") throw new AccountDisabledError();
      const { tokens } = await sessions.open({
        appId: app.id,
        userId: found?.user.id ?? null,
        platform: identity.platform,
        appid: identity.appid,
        openid: identity.openid,
        ...(identity.unionid ? { unionid: identity.unionid } : {}),
        sessionKey: platform.sessionKey,
      });
      return {
        tokens: tokensToWire(tokens),
        registered: Boolean(found),
        firstLogin: found?.created ?? false,
        ...(found ? { user: userToWire(found.user) } : {}),
        openid: identity.openid,
      };
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
      const user = await activeUser(userId);
      return { user: userToWire(user), sessionId: session.id, expireTime: timestampFromMs(claims.exp * 1000), appId: session.appId };
    },

    async getUser(req, ctx) {
      const { userId } = await authenticate(ctx);
      if (req.userId && req.userId !== userId) {
        throw apiError(Code.PermissionDenied, "PERMISSION_DENIED", "an end user may read only itself");
      }
      return { user: userToWire(await activeUser(userId)) };
    },

    async updateUser(req, ctx) {
      const { userId } = await authenticate(ctx);
      const wanted = req.user;
      if (!wanted) throw fieldInvalid("user", "the fields to set are required");
      if (wanted.id && wanted.id !== userId) throw apiError(Code.PermissionDenied, "PERMISSION_DENIED", "an end user may update only itself");
      if (req.expectedVersion !== undefined && req.expectedVersion < 0) throw fieldInvalid("expected_version", "must not be negative");
      const patch = planProfilePatch(wanted, updatePaths(wanted, req.updateMask?.paths ?? []), new Date(now()));
      const updated = await updateUser(
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

    oauth: notYet("Oauth"),
    getPhone: notYet("GetPhone"),
    bindPhone: notYet("BindPhone"),
  };
}

function notYet(method: string) {
  return async (): Promise<never> => {
    throw apiError(Code.Unimplemented, "NOT_IMPLEMENTED", `${method} is not available yet`);
  };
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
