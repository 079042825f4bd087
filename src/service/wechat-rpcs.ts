import type { ServiceImpl } from "@connectrpc/connect";
import type { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { phoneKey, type SessionRecord, type UserRecord } from "../store/store.js";
import type { PlatformProfile } from "./accounts.js";
import { noteOf } from "./audit.js";
import type { Caller } from "./caller.js";
import { apiError, fieldInvalid } from "./errors.js";
import type { App } from "../config/config.js";
import type { ServiceContext } from "./service-context.js";
import { cleanNickname } from "./user-update.js";
import { userToWire } from "./user-view.js";
import { phoneFromOpenData, type Phone } from "./wechat-data.js";

// What a WeChat mini-program session can add to its user: the profile (Oauth) and the phone number.

/** WeChat's placeholder profile since 2022: not a name anyone chose. */
const PLACEHOLDER_NICKNAME = "微信用户";

export function createWechatRpcs(
  { sessions, accounts, wechatData, rates, limit, wechatAppOf, identityOf, register }: ServiceContext,
  { authenticate }: Caller,
): Pick<ServiceImpl<typeof IdentityService>, "oauth" | "getPhone" | "bindPhone"> {
  async function phoneOf(app: App & { secret: string }, session: SessionRecord, req: { code: string; encryptedData: string; iv: string }, signal: AbortSignal): Promise<Phone> {
    if (req.code) return wechatData.phoneFromCode(app, session, req.code, signal);
    if (!req.encryptedData && !req.iv) throw fieldInvalid("code", "the phone button's code (or the legacy encryptedData and iv) is required");
    return phoneFromOpenData(await wechatData.decrypt(app, session, req, signal));
  }

  return {
    async oauth(req, ctx) {
      const { session, user: caller } = await authenticate(ctx, { allowPending: true });
      const app = wechatAppOf(session);
      const data = await wechatData.decrypt(app, session, req, ctx.signal);
      if (data.openId !== session.openid) {
        // Someone else's data on this session: end it, as seed 000's 8527 does.
        await sessions.revoke(session.id, "session_mismatch");
        throw apiError("SESSION_MISMATCH", "the data belongs to another WeChat user; this session has been ended, Login again");
      }
      const unionid = typeof data.unionId === "string" && data.unionId ? data.unionId : session.unionid;
      const identity = identityOf(session, unionid);
      const profile = profileOf(data);
      if (!caller) {
        const registered = await register(app, session, identity, profile);
        Object.assign(noteOf(ctx), { subjectUserId: registered.user.id, registered: registered.created });
        return { user: userToWire(registered.user), created: registered.created, tokens: registered.tokens };
      }
      const bound = await accounts.bindIdentity(caller, identity);
      // Fill what the user has not set; never overwrite their own edits.
      const user = await accounts.update(bound.id, (u) => {
        const missing = Object.fromEntries(Object.entries(profile).filter(([field]) => u[field as keyof PlatformProfile] === undefined));
        return Object.keys(missing).length ? { ...u, ...missing } : u;
      });
      return { user: userToWire(user), created: false };
    },

    async getPhone(req, ctx) {
      const { session } = await authenticate(ctx);
      limit(rates.phone, session.openid, "too many phone number requests");
      return phoneOf(wechatAppOf(session), session, req, ctx.signal);
    },

    async bindPhone(req, ctx) {
      // An expired access token still ends its session (sessions.authenticate).
      const { session, userId } = await authenticate(ctx, { allowPending: true, ending: true });
      limit(rates.phone, session.openid, "too many phone number requests");
      const app = wechatAppOf(session);
      const phone = await phoneOf(app, session, req, ctx.signal);
      if (!userId) {
        const { user, tokens, created } = await register(app, session, identityOf(session), phone, [phoneKey(phone)]);
        Object.assign(noteOf(ctx), { subjectUserId: user.id, registered: created });
        return { user: userToWire(await accounts.update(user.id, (u) => withPhone(u, phone))), tokens };
      }
      return { user: userToWire(await accounts.update(userId, (u) => withPhone(u, phone))) };
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
  const nickname = typeof data.nickName === "string" ? cleanNickname(data.nickName) : "";
  if (nickname && nickname !== PLACEHOLDER_NICKNAME) profile.nickname = nickname;
  if (typeof data.avatarUrl === "string" && /^https?:\/\//.test(data.avatarUrl) && data.avatarUrl.length <= 1024) profile.avatarUrl = data.avatarUrl;
  if (data.gender === 1) profile.gender = "male";
  if (data.gender === 2) profile.gender = "female";
  return profile;
}
