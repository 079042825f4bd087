// Seed 002: the eight /applet/login/* endpoints, answering `{success, message, code, result}`.
// The seed's client keeps one token and sends it everywhere, refreshToken included; ours are an
// access token and a refresh token, so the seed's token carries both as "<access>~<refresh>".
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { IdentityService, type Tokens, type User } from "../../gen/identity/v1/identity_pb.js";
import type { Reason } from "../service/errors.js";
import type { JsonObject } from "../store/store.js";
import type { Failure } from "./invoke.js";
import { defaultApp, fieldsOf, messageOf, mountSeed, SeedInputError, text, tokenOf, withRetryHint, type Fields, type SeedDeps } from "./shared.js";

const PREFIX = "/applet/login";
const SEPARATOR = "~";
// Neither token contains "~" (a JWT and "<hex>.<base64url>").
const seedToken = (tokens: Tokens) => (tokens.refreshToken ? `${tokens.accessToken}${SEPARATOR}${tokens.refreshToken}` : tokens.accessToken);
const accessPart = (token: string) => token.split(SEPARATOR)[0] ?? "";
const refreshPart = (token: string) => token.split(SEPARATOR)[1] ?? "";

const ok = (message: string, result: unknown) => ({ success: true, message, code: 200, result });
const fail = (code: number, message: string) => ({ success: false, message, code, result: null });
// Attributes the seed keeps in its user: numbers, or null to clear.
const BODY_ATTRIBUTES = ["bmi", "fat"] as const;
const UPDATE_ATTEMPTS = 3;

export async function registerApplet(server: FastifyInstance, { invoke, apps }: SeedDeps): Promise<void> {
  const app = defaultApp(apps);
  const appKey = app?.id ?? "";

  function answer(reply: FastifyReply, failure: Failure, messages: Partial<Record<Reason, string>> = {}) {
    withRetryHint(reply, failure);
    // The seed's codes are 400, 401, 403, 404 and 500 (429 added for our rate limits).
    const code = failure.status === 409 ? 400 : Math.min(failure.status, 500);
    return fail(code, messages[failure.reason] ?? messageOf(failure.reason));
  }

  function userInfo(user: User | undefined) {
    if (!user) return null;
    const identity = user.identities.find((i) => i.appid === app?.appid) ?? user.identities[0];
    const attribute = (name: string) => (typeof user.attributes?.[name] === "number" ? user.attributes[name] : null);
    return { id: user.id, name: user.nickname, openid: identity?.openid ?? "", phone: user.purePhoneNumber, avatar: user.avatarUrl, bmi: attribute("bmi"), fat: attribute("fat") };
  }

  await mountSeed(server, { badInput: (message) => fail(400, message), serverError: () => fail(500, messageOf("INTERNAL")) }, (scope) => {
    type Handler = (request: FastifyRequest, reply: FastifyReply, fields: Fields) => Promise<object>;
    const route = (method: "POST" | ["GET", "POST"], path: string, handler: Handler) =>
      scope.route({ method, url: `${PREFIX}${path}`, handler: (request, reply) => handler(request, reply, fieldsOf(request)) });
    const post = (path: string, handler: Handler) => route("POST", path, handler);
    // The seed reads these with GET; POST is accepted too.
    const read = (path: string, handler: Handler) => route(["GET", "POST"], path, handler);
    const bearer = (request: FastifyRequest, fields: Fields) => accessPart(tokenOf(request, fields));

    post("/wxLogin", async (request, reply, fields) => {
      const res = await invoke(IdentityService.method.login, { appId: appKey, credential: { case: "code", value: text(fields, "code") } }, request);
      if (!res.ok) return answer(reply, res, { CODE_INVALID: "微信登录失败: code无效", CODE_USED: "微信登录失败: code无效" });
      const { tokens, user, openid } = res.message;
      // sessionKey stays on the server: the field is kept for clients that read it, always empty.
      return ok("登录成功", { token: seedToken(tokens!), userInfo: userInfo(user), openid, sessionKey: "" });
    });

    post("/getPhoneNumber", async (request, reply, fields) => {
      const res = await invoke(IdentityService.method.getPhone, { code: text(fields, "code") }, request, bearer(request, fields));
      if (!res.ok) return answer(reply, res);
      return ok("获取成功", res.message.purePhoneNumber);
    });

    post("/bindPhoneNumber", async (request, reply, fields) => {
      const res = await invoke(IdentityService.method.bindPhone, { code: text(fields, "phoneCode") }, request, bearer(request, fields));
      if (!res.ok) return answer(reply, res);
      return ok("绑定成功", "绑定成功");
    });

    post("/refreshToken", async (request, reply, fields) => {
      const refreshToken = refreshPart(tokenOf(request, fields));
      if (!refreshToken) return answer(reply, { reason: "TOKEN_INVALID", status: 401 });
      const res = await invoke(IdentityService.method.refresh, { refreshToken }, request);
      if (!res.ok) return answer(reply, res, { FIELD_INVALID: messageOf("TOKEN_INVALID") });
      return ok("刷新成功", seedToken(res.message.tokens!));
    });

    post("/logout", async (request, reply, fields) => {
      const res = await invoke(IdentityService.method.logout, {}, request, bearer(request, fields));
      if (!res.ok) return answer(reply, res);
      return ok("退出成功", "退出成功");
    });

    read("/checkLogin", async (request, reply, fields) => {
      const res = await invoke(IdentityService.method.checkLogin, {}, request, bearer(request, fields));
      if (!res.ok) return answer(reply, res);
      return ok("登录有效", userInfo(res.message.user));
    });

    read("/getUserInfo", async (request, reply, fields) => {
      const res = await invoke(IdentityService.method.getUser, {}, request, bearer(request, fields));
      if (!res.ok) return answer(reply, res);
      return ok("获取成功", userInfo(res.message.user));
    });

    post("/updateUserInfo", async (request, reply, fields) => {
      const token = bearer(request, fields);
      const wanted = userInfoOf(fields);
      const paths = [...(wanted.name !== undefined ? ["nickname"] : []), ...(wanted.avatar !== undefined ? ["avatar_url"] : [])];
      const attributes = BODY_ATTRIBUTES.filter((name) => wanted[name] !== undefined);
      for (let attempt = 1; ; attempt++) {
        // Attributes are replaced whole: merge into the current ones, at the version read.
        const current = attributes.length ? await invoke(IdentityService.method.getUser, {}, request, token) : null;
        if (current && !current.ok) return answer(reply, current);
        const user = current?.message.user;
        const merged: JsonObject = { ...(user?.attributes as JsonObject | undefined) };
        for (const name of attributes) {
          if (wanted[name] === null) delete merged[name];
          else merged[name] = wanted[name] as number;
        }
        const res = await invoke(
          IdentityService.method.updateUser,
          {
            user: { nickname: wanted.name ?? "", avatarUrl: wanted.avatar ?? "", attributes: merged },
            updateMask: { paths: [...paths, ...(attributes.length ? ["attributes"] : [])] },
            ...(user ? { expectedVersion: user.version } : {}),
          },
          request,
          token,
        );
        if (res.ok) return ok("更新成功", "更新成功");
        if (res.reason !== "VERSION_CONFLICT" || attempt >= UPDATE_ATTEMPTS) return answer(reply, res);
      }
    });
  });
}

interface SeedUserInfo {
  name?: string;
  avatar?: string;
  bmi?: number | null;
  fat?: number | null;
}

/** `userInfo` as an object (JSON) or a JSON string (a form field); other keys are not the client's to set. */
function userInfoOf(fields: Fields): SeedUserInfo {
  let value = fields.userInfo;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value) as unknown;
    } catch {
      throw new SeedInputError("userInfo");
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new SeedInputError("userInfo");
  const info = value as Fields;
  const wanted: SeedUserInfo = {};
  for (const name of ["name", "avatar"] as const) if (info[name] !== undefined) wanted[name] = text(info, name);
  for (const name of BODY_ATTRIBUTES) {
    const n = info[name];
    if (n === undefined) continue;
    if (n !== null && (typeof n !== "number" || !Number.isFinite(n))) throw new SeedInputError(`userInfo.${name}`);
    wanted[name] = n;
  }
  if (!Object.keys(wanted).length) throw new SeedInputError("userInfo");
  return wanted;
}
