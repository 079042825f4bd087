// What every seed profile needs: reading loosely typed fields, finding the app, mounting a scope.
import formbody from "@fastify/formbody";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { App } from "../config/config.js";
import type { Reason } from "../service/errors.js";
import { describeError } from "../util/log-safety.js";
import type { Failure, Invoke } from "./invoke.js";

export type SeedApp = Pick<App, "id" | "platform" | "appid" | "legacyId" | "default">;

export interface SeedDeps {
  invoke: Invoke;
  apps: SeedApp[];
}

/** A field the seed's client sent with a type we cannot read: the seed's "bad request" answer. */
export class SeedInputError extends Error {
  constructor(readonly field: string) {
    super(`${field}: wrong type`);
  }
}

export type Fields = Record<string, unknown>;

/** Query and body together (the body wins), as the seeds' backends read them. */
export function fieldsOf(request: FastifyRequest): Fields {
  const { body } = request;
  if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body))) throw new SeedInputError("body");
  return { ...(request.query as Fields), ...(body as Fields | undefined) };
}

/** A string field; "" when absent. Numbers are not strings: a code or token is never a number. */
export function text(fields: Fields, name: string): string {
  const value = fields[name];
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new SeedInputError(name);
  return value;
}

/** An integer field sent as a JSON number or, from a form, as digits; undefined when absent. */
export function integer(fields: Fields, name: string): number | undefined {
  const value = fields[name];
  if (value === undefined || value === null || value === "") return undefined;
  const n = typeof value === "string" && /^-?\d{1,15}$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw new SeedInputError(name);
  return n;
}

/** The seed's token: the first field present, else `authorization: Bearer …`, else a `token` header. */
export function tokenOf(request: FastifyRequest, fields: Fields, names: string[] = ["token"]): string {
  for (const name of names) {
    const value = text(fields, name);
    if (value) return value;
  }
  const bearer = /^Bearer +(\S+)$/i.exec(request.headers.authorization ?? "")?.[1];
  const header = request.headers.token;
  return bearer ?? (typeof header === "string" ? header : "");
}

/** The app a seed that names none uses: the one marked default, else the only one (of a platform). */
export function defaultApp(apps: SeedApp[], platform?: SeedApp["platform"]): SeedApp | undefined {
  const candidates = platform ? apps.filter((a) => a.platform === platform) : apps;
  return candidates.find((a) => a.default) ?? (candidates.length === 1 ? candidates[0] : undefined);
}

// Chinese, as the seeds speak to their users; a seed overrides where its document words it.
// Every reason has its message: one added to REASONS without one here does not compile.
const MESSAGES: Record<Reason, string> = {
  FIELD_INVALID: "请求参数错误",
  REQUEST_INVALID: "请求参数错误",
  REQUEST_TOO_LARGE: "请求体过大",
  FIELD_NOT_ALLOWED: "禁止访问",
  PERMISSION_DENIED: "禁止访问",
  ROLE_REQUIRED: "禁止访问",
  CONTENT_RISKY: "内容含有违规信息,请修改后重试",
  APP_NOT_FOUND: "应用不存在",
  USER_NOT_FOUND: "用户不存在",
  NOT_FOUND: "数据不存在",
  SERVICE_UNKNOWN: "服务不存在",
  PLATFORM_UNSUPPORTED: "该应用不支持此操作",
  RATE_LIMITED: "请求过于频繁,请稍后再试",
  TOKEN_MISSING: "token无效",
  TOKEN_INVALID: "token无效",
  TOKEN_EXPIRED: "token已过期",
  TOKEN_REVOKED: "token已失效",
  REFRESH_TOKEN_REUSED: "token已失效",
  SESSION_EXPIRED: "登录已过期,请重新登录",
  ID_TOKEN_INVALID: "身份凭证无效",
  ID_TOKEN_EXPIRED: "身份凭证已过期",
  API_KEY_INVALID: "禁止访问",
  BAD_CREDENTIALS: "用户名或密码不正确!",
  ACCOUNT_DISABLED: "账号已禁用",
  NOT_REGISTERED: "用户未注册",
  CODE_INVALID: "code无效",
  CODE_USED: "code已被使用",
  USER_BLOCKED_BY_PLATFORM: "该用户被平台限制登录",
  DECRYPT_FAILED: "授权数据解密失败",
  SIGNATURE_INVALID: "授权数据签名不正确",
  SESSION_KEY_STALE: "登录已过期,请重新登录",
  SESSION_MISMATCH: "用户SESSION数据不一致,请重新登录",
  PHONE_TAKEN: "该手机号已被其他用户绑定",
  USERNAME_TAKEN: "用户名已被占用",
  IDENTITY_TAKEN: "该微信已绑定其他用户",
  ACCOUNT_CONFLICT: "账号冲突,请联系客服",
  LAST_SIGN_IN_METHOD: "这是唯一的登录方式,无法解绑",
  REAUTH_REQUIRED: "请重新登录后再试",
  VERSION_CONFLICT: "数据已被修改,请重试",
  UPSTREAM_UNAVAILABLE: "微信服务繁忙,请稍后再试",
  STORE_UNAVAILABLE: "服务繁忙,请稍后再试",
  APP_MISCONFIGURED: "服务器内部错误",
  UPSTREAM_ERROR: "服务器内部错误",
  INTERNAL: "服务器内部错误",
};

export function messageOf(reason: Reason): string {
  return MESSAGES[reason];
}

/** Passes WeChat's and our rate-limit hint on, whatever the seed's envelope. */
export function withRetryHint(reply: FastifyReply, failure: Failure): void {
  if (failure.retryAfterSeconds) reply.header("retry-after", failure.retryAfterSeconds);
}

export interface SeedEnvelope {
  /** The seed's answer to input it cannot read: a missing or wrong-typed field, a bad body. */
  badInput(message: string): object;
  /** The seed's answer to a bug of ours (logged; no detail leaves). */
  serverError(): object;
}

/**
 * Mounts one profile in its own scope: form bodies parsed there only, and every failure (a body
 * that does not parse, one over the size limit, a wrong-typed field, a bug) answered in the
 * seed's envelope, never with a stack trace.
 */
export async function mountSeed(app: FastifyInstance, envelope: SeedEnvelope, routes: (scope: FastifyInstance) => void): Promise<void> {
  await app.register(async (scope) => {
    await scope.register(formbody);
    scope.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
      // A field of the wrong type: the seeds answer that in their envelope, with HTTP 200.
      if (error instanceof SeedInputError) return reply.code(200).send(envelope.badInput(`${messageOf("FIELD_INVALID")}: ${error.field}`));
      const status = error.statusCode ?? 500;
      if (status < 500) return reply.code(status).send(envelope.badInput(status === 413 ? messageOf("REQUEST_TOO_LARGE") : messageOf("REQUEST_INVALID")));
      request.log.error({ err: describeError(error) }, "seed route failed unexpectedly");
      return reply.code(500).send(envelope.serverError());
    });
    routes(scope);
  });
}
