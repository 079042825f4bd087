import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { sessionSignature } from "./crypto.js";
import { type Errcode, errorBody, WechatApiError, type WechatPath } from "./protocol.js";
import type { CallCounter, FaultBook } from "./traffic.js";
import type { WechatState } from "./wechat-state.js";

// The WeChat API itself, as api.weixin.qq.com answers it: always HTTP 200, errors as errcode bodies.

export interface WechatRouteDeps {
  state: WechatState;
  faults: FaultBook;
  calls: CallCounter;
  /** Aborted on close, so a delayed answer does not hold the server open. */
  closing: AbortSignal;
}

interface WechatRequest {
  method: string;
  query: Record<string, unknown>;
  /** The raw body; WeChat reads JSON whatever the Content-Type says. */
  body: string | undefined;
}

type WechatHandler = (request: WechatRequest) => object;

/** A query or body field as WeChat sees it: absent, empty or not a string all count as missing. */
function field(source: Record<string, unknown>, name: string): string | undefined {
  const value = source[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function required(source: Record<string, unknown>, name: string, missing: Errcode): string {
  const value = field(source, name);
  if (value === undefined) throw new WechatApiError(missing);
  return value;
}

function jsonObject(body: string | undefined): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body ?? "");
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function requirePost(request: WechatRequest): void {
  if (request.method !== "POST") throw new WechatApiError(43002);
}

function wechatHandlers(state: WechatState): Record<WechatPath, WechatHandler> {
  return {
    "/sns/jscode2session": ({ query }) => {
      const appid = required(query, "appid", 41002);
      const secret = required(query, "secret", 41004);
      const code = required(query, "js_code", 41008);
      if (field(query, "grant_type") !== "authorization_code") throw new WechatApiError(40002);
      state.authenticateApp(appid, secret);
      return state.redeemLoginCode(appid, code);
    },

    "/cgi-bin/stable_token": (request) => {
      requirePost(request);
      // Only JSON is read: a form-encoded body has no appid as far as WeChat is concerned (41002).
      const body = jsonObject(request.body) ?? {};
      const appid = required(body, "appid", 41002);
      const secret = required(body, "secret", 41004);
      if (field(body, "grant_type") !== "client_credential") throw new WechatApiError(40002);
      state.authenticateApp(appid, secret);
      return state.stableToken(appid, body.force_refresh === true);
    },

    "/wxa/business/getuserphonenumber": (request) => {
      requirePost(request);
      const appid = state.authorize(field(request.query, "access_token"));
      const body = jsonObject(request.body);
      if (body === undefined) throw new WechatApiError(47001);
      const phoneInfo = state.redeemPhoneCode(appid, required(body, "code", 40029));
      return { errcode: 0, errmsg: "ok", phone_info: phoneInfo };
    },

    "/wxa/checksession": ({ query }) => {
      const appid = state.authorize(field(query, "access_token"));
      if (field(query, "sig_method") !== "hmac_sha256") throw new WechatApiError(87008);
      const openid = required(query, "openid", 40003);
      const sessionKey = state.currentSessionKey(appid, openid);
      if (sessionKey === undefined || field(query, "signature") !== sessionSignature(sessionKey)) {
        throw new WechatApiError(87009);
      }
      return { errcode: 0, errmsg: "ok" };
    },
  };
}

function answer(handler: WechatHandler, request: WechatRequest): object {
  try {
    return handler(request);
  } catch (error) {
    if (error instanceof WechatApiError) return errorBody(error.errcode);
    throw error;
  }
}

// The POST-only endpoints also answer GET, with WeChat's 43002, rather than a bare 404.
const METHODS: Record<WechatPath, ("GET" | "POST")[]> = {
  "/sns/jscode2session": ["GET"],
  "/cgi-bin/stable_token": ["GET", "POST"],
  "/wxa/business/getuserphonenumber": ["GET", "POST"],
  "/wxa/checksession": ["GET"],
};

export function registerWechatRoutes(app: FastifyInstance, deps: WechatRouteDeps): void {
  const handlers = wechatHandlers(deps.state);
  for (const [path, handler] of Object.entries(handlers) as [WechatPath, WechatHandler][]) {
    app.route({
      method: METHODS[path],
      url: path,
      handler: async (request, reply) => {
        deps.calls.count(path);
        const fault = deps.faults.take(path);
        if (fault !== undefined) request.log.info({ path, fault }, "injecting simulated fault");
        if (fault?.delayMs !== undefined) {
          // On close the wait ends early and the real answer goes out, so close() is not held up.
          await sleep(fault.delayMs, undefined, { signal: deps.closing }).catch(() => undefined);
        }
        if (fault?.status !== undefined) {
          return reply.code(fault.status).type("text/plain").send(`simulated HTTP ${fault.status}`);
        }
        if (fault?.errcode !== undefined) return errorBody(fault.errcode);
        const body = answer(handler, {
          method: request.method,
          query: request.query as Record<string, unknown>,
          body: typeof request.body === "string" ? request.body : undefined,
        });
        if (fault?.drop === true) {
          // The work is done (a code is consumed), but the caller never hears about it.
          reply.hijack();
          request.raw.socket.destroy();
          return;
        }
        return body;
      },
    });
  }
}
