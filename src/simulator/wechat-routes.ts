import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { sessionSignature } from "./crypto.js";
import { type Errcode, errorBody, WechatApiError } from "./protocol.js";
import { routeWithFaults, type ApiRouteDeps } from "./traffic.js";
import type { WechatState } from "./wechat-state.js";

// The WeChat API itself, as api.weixin.qq.com answers it: always HTTP 200, errors as errcode bodies.
// The route wrapper (faults, call counts, errcode bodies) and the handlers are shared with the
// APIs that speak the same way: QQ's (qq-routes.ts) and WeChat's web OAuth (oauth-routes.ts).

export interface WechatRouteDeps extends ApiRouteDeps {
  state: WechatState;
}

export interface WechatRequest {
  method: string;
  query: Record<string, unknown>;
  /** The raw body; WeChat reads JSON whatever the Content-Type says. */
  body: string | undefined;
}

export type WechatHandler = (request: WechatRequest) => object;

/** One API endpoint: its path (without any prefix), the methods it answers, and what it does. */
export interface ApiRoute {
  path: string;
  /** POST-only endpoints also answer GET, with WeChat's 43002, rather than a bare 404. */
  methods: ("GET" | "POST")[];
  handler: WechatHandler;
}

/** A query or body field as WeChat sees it: absent, empty or not a string all count as missing. */
export function field(source: Record<string, unknown>, name: string): string | undefined {
  const value = source[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

export function required(source: Record<string, unknown>, name: string, missing: Errcode): string {
  const value = field(source, name);
  if (value === undefined) throw new WechatApiError(missing);
  return value;
}

function jsonObject(body: string | undefined): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body ?? "");
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function requirePost(request: WechatRequest): void {
  if (request.method !== "POST") throw new WechatApiError(43002);
}

/** auth.code2Session (QQ's jscode2session too): a login code for openid, session_key and maybe unionid. */
export function code2SessionHandler(state: WechatState): WechatHandler {
  return ({ query }) => {
    const appid = required(query, "appid", 41002);
    const secret = required(query, "secret", 41004);
    const code = required(query, "js_code", 41008);
    if (field(query, "grant_type") !== "authorization_code") throw new WechatApiError(40002);
    state.authenticateApp(appid, secret);
    return state.redeemLoginCode(appid, code);
  };
}

function wechatRoutes(state: WechatState): ApiRoute[] {
  return [
    { path: "/sns/jscode2session", methods: ["GET"], handler: code2SessionHandler(state) },

    {
      path: "/cgi-bin/stable_token",
      methods: ["GET", "POST"],
      handler: (request) => {
        requirePost(request);
        // Only JSON is read: a form-encoded body has no appid as far as WeChat is concerned (41002).
        const body = jsonObject(request.body) ?? {};
        const appid = required(body, "appid", 41002);
        const secret = required(body, "secret", 41004);
        if (field(body, "grant_type") !== "client_credential") throw new WechatApiError(40002);
        state.authenticateApp(appid, secret);
        return state.stableToken(appid, body.force_refresh === true);
      },
    },

    {
      path: "/wxa/business/getuserphonenumber",
      methods: ["GET", "POST"],
      handler: (request) => {
        requirePost(request);
        const appid = state.authorize(field(request.query, "access_token"));
        const body = jsonObject(request.body);
        if (body === undefined) throw new WechatApiError(47001);
        const phoneInfo = state.redeemPhoneCode(appid, required(body, "code", 40029));
        return { errcode: 0, errmsg: "ok", phone_info: phoneInfo };
      },
    },

    {
      path: "/wxa/checksession",
      methods: ["GET"],
      handler: ({ query }) => {
        const appid = state.authorize(field(query, "access_token"));
        if (field(query, "sig_method") !== "hmac_sha256") throw new WechatApiError(87008);
        const openid = required(query, "openid", 40003);
        const sessionKey = state.currentSessionKey(appid, openid);
        if (sessionKey === undefined || field(query, "signature") !== sessionSignature(sessionKey)) {
          throw new WechatApiError(87009);
        }
        return { errcode: 0, errmsg: "ok" };
      },
    },

    {
      path: "/wxa/msg_sec_check",
      methods: ["GET", "POST"],
      handler: (request) => {
        requirePost(request);
        const appid = state.authorize(field(request.query, "access_token"));
        const body = jsonObject(request.body);
        if (body === undefined || body.version !== 2) throw new WechatApiError(47001);
        if (body.scene !== 1 && body.scene !== 2 && body.scene !== 3 && body.scene !== 4) throw new WechatApiError(40129);
        const content = required(body, "content", 44002);
        const result = state.judgeContent(appid, required(body, "openid", 40003), content);
        return { errcode: 0, errmsg: "ok", result, detail: [{ strategy: "keyword", errcode: 0, ...result, prob: 90 }], trace_id: randomBytes(12).toString("hex") };
      },
    },
  ];
}

function answer(handler: WechatHandler, request: WechatRequest): object {
  try {
    return handler(request);
  } catch (error) {
    if (error instanceof WechatApiError) return errorBody(error.errcode);
    throw error;
  }
}

/**
 * Serves `routes` under `prefix` ("" for WeChat's root, "/qq" for QQ). Faults and call counts go by
 * the full path, prefix included, and every path registered here is one /sim/faults accepts.
 */
export function registerApiRoutes(app: FastifyInstance, deps: ApiRouteDeps, routes: ApiRoute[], prefix = ""): void {
  for (const route of routes) {
    routeWithFaults(app, deps, { path: `${prefix}${route.path}`, methods: route.methods }, (request, fault) =>
      fault?.errcode !== undefined
        ? errorBody(fault.errcode)
        : answer(route.handler, {
            method: request.method,
            query: request.query as Record<string, unknown>,
            body: typeof request.body === "string" ? request.body : undefined,
          }),
    );
  }
}

/** The mini-program server APIs of api.weixin.qq.com. */
export function registerWechatRoutes(app: FastifyInstance, deps: WechatRouteDeps): void {
  registerApiRoutes(app, deps, wechatRoutes(deps.state));
}
