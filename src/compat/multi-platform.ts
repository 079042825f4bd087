// Seed 003: one login for every platform (login_method + login_type + code, pid the inviter),
// answering `{status: 200, msg, data: {…profile, token, first_login, set_password}}` or `{status: 0, msg}`.
// Its app variant sends openid/unionid/nickName/avatarUrl instead of a code: an identity the client
// merely asserts, which anyone could forge. Refused unless the operator sets allowClientIdentity;
// even then a unionid is never trusted (it would merge into another app's user). The code path always works.
import type { FastifyInstance, FastifyRequest } from "fastify";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Gender, IdentityService, UserStatus, type User } from "../../gen/identity/v1/identity_pb.js";
import type { SeedRoutesConfig } from "../config/config.js";
import { kAssertedSignIn } from "../service/platform-login.js";
import { defaultApp, fieldsOf, messageOf, mountSeed, SeedInputError, text, withRetryHint, type Fields, type SeedApp, type SeedDeps } from "./shared.js";
import { shanghaiTimestamp } from "../platforms/shanghai-time.js";

type Platform = SeedApp["platform"];

// login_method → platform, or login_type → platform for WeChat's several kinds of app.
const PLATFORMS: Record<string, Platform | Record<string, Platform>> = {
  WeChat: { wx_small: "wechat-miniprogram", wx_public: "wechat-official-account", wx_app: "wechat-app", wx_pc: "wechat-website" },
  QQ: "qq-miniprogram",
  Alipay: "alipay-miniprogram",
  Apple: "apple",
};
const ASSERTED_IDENTITY = ["openid", "unionid", "nickName", "avatarUrl"];
// WeChat and QQ openids are 28-ish characters of base64url; anything else is not one.
const ASSERTED_OPENID = /^[A-Za-z0-9_-]{6,64}$/;
const OBJECT_ID = /^[0-9a-f]{24}$/;
const GENDERS: Record<Gender, string> = { [Gender.UNSPECIFIED]: "", [Gender.MALE]: "男", [Gender.FEMALE]: "女" };

const fail = (msg: string) => ({ status: 0, msg });

export async function registerMultiPlatform(server: FastifyInstance, { path, allowClientIdentity }: NonNullable<SeedRoutesConfig["multiPlatform"]>, { invoke, apps }: SeedDeps): Promise<void> {
  if (allowClientIdentity) {
    server.log.warn({ seed: "multiPlatform", path }, "seed 003 trusts client-asserted openids (allowClientIdentity): anyone who knows an openid can sign in as that user");
  }
  function appOf(fields: Fields): SeedApp | undefined {
    const byMethod = PLATFORMS[text(fields, "login_method")];
    const platform = typeof byMethod === "object" ? byMethod[text(fields, "login_type")] : byMethod;
    return platform && defaultApp(apps, platform);
  }

  await mountSeed(server, { badInput: fail, serverError: () => fail(messageOf("INTERNAL")) }, (scope) => {
    scope.post(path, async (request, reply) => {
      const fields = fieldsOf(request);
      const code = text(fields, "code");
      const idToken = text(fields, "id_token");
      const asserted = !code && !idToken && ASSERTED_IDENTITY.some((name) => fields[name] !== undefined);
      if (asserted && !allowClientIdentity) {
        request.log.warn({ seed: "multiPlatform" }, "refused a client-asserted identity (openid without a code)");
        return fail("不接受客户端提交的openid, 请使用code登录");
      }
      const app = appOf(fields);
      if (!app) return fail(`不支持的登录方式: ${text(fields, "login_method").slice(0, 32)}/${text(fields, "login_type").slice(0, 32)}`);
      const openid = asserted ? text(fields, "openid") : "";
      if (asserted && !ASSERTED_OPENID.test(openid)) throw new SeedInputError("openid");
      const credential = app.platform === "apple" ? { case: "idToken" as const, value: idToken } : { case: "code" as const, value: code };
      const res = await invoke(IdentityService.method.login, { appId: app.id, credential, nonce: text(fields, "nonce"), inviterId: inviterOf(fields) }, request, undefined, (values) =>
        asserted ? values.set(kAssertedSignIn, { openid }) : values,
      );
      if (!res.ok) {
        withRetryHint(reply, res);
        return fail(messageOf(res.reason));
      }
      const { tokens, firstLogin } = res.message;
      let { user } = res.message;
      if (!user) return fail(messageOf("NOT_REGISTERED"));
      // A new user takes the asserted nickname and avatar through UpdateUser, with its validation.
      if (asserted && firstLogin) user = (await profileFromClient(invoke, fields, tokens!.accessToken, request)) ?? user;
      return {
        status: 200,
        msg: firstLogin ? "注册成功" : "登录成功",
        data: { ...profileOf(user), token: tokens!.accessToken, session_key: "", first_login: firstLogin, set_password: user.hasPassword },
      };
    });
  });
}

/** UpdateUser with nickName/avatarUrl: the user as updated, or undefined when nothing was sent or it was refused. */
async function profileFromClient(invoke: SeedDeps["invoke"], fields: Fields, accessToken: string, request: FastifyRequest): Promise<User | undefined> {
  const nickname = text(fields, "nickName");
  const avatarUrl = text(fields, "avatarUrl");
  if (!nickname && !avatarUrl) return undefined;
  const res = await invoke(IdentityService.method.updateUser, { user: { nickname, avatarUrl } }, request, accessToken);
  return res.ok ? res.message.user : undefined;
}

/** pid names the inviter by our user id; the seed's numeric uids cannot be ours and are ignored. */
function inviterOf(fields: Fields): string {
  const pid = fields.pid;
  if (pid === undefined || pid === null || typeof pid === "number") return "";
  if (typeof pid !== "string") throw new SeedInputError("pid");
  return OBJECT_ID.test(pid) ? pid : "";
}

function profileOf(user: User) {
  const attributes = user.attributes ?? {};
  const extra = (name: string) => (typeof attributes[name] === "string" ? attributes[name] : "");
  return {
    uid: user.id,
    avatar: user.avatarUrl,
    c_code: user.countryCode || "86",
    phone: user.purePhoneNumber,
    email: user.email,
    username: user.username,
    male: GENDERS[user.gender] ?? "",
    birthday: user.birthday,
    nickname: user.nickname,
    type: user.roles[0] ?? "member",
    phone_active: user.purePhoneNumber ? 1 : 0,
    // We never verify an email address.
    email_active: 0,
    status: user.status === UserStatus.DISABLED ? 0 : 1,
    create_at: user.createTime ? shanghaiTimestamp(timestampMs(user.createTime)) : "",
    update_at: user.updateTime ? shanghaiTimestamp(timestampMs(user.updateTime)) : "",
    // UpdateUser lets a user change its username.
    change_username: 1,
    integral: typeof attributes.integral === "number" ? attributes.integral : null,
    invite_code: user.inviteCode,
    signature: extra("signature"),
    alias_name: extra("alias_name"),
    small_code_url: extra("small_code_url"),
    company_name: extra("company_name"),
    settled_in_status: typeof attributes.settled_in_status === "number" ? attributes.settled_in_status : 3,
  };
}
