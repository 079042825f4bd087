import { sessionSignature } from "./crypto.js";
import { errorBody, WechatApiError } from "./protocol.js";
import { routeWithFaults } from "./traffic.js";
/** A query or body field as WeChat sees it: absent, empty or not a string all count as missing. */
export function field(source, name) {
    const value = source[name];
    return typeof value === "string" && value !== "" ? value : undefined;
}
export function required(source, name, missing) {
    const value = field(source, name);
    if (value === undefined)
        throw new WechatApiError(missing);
    return value;
}
function jsonObject(body) {
    try {
        const value = JSON.parse(body ?? "");
        return typeof value === "object" && value !== null && !Array.isArray(value)
            ? value
            : undefined;
    }
    catch {
        return undefined;
    }
}
function requirePost(request) {
    if (request.method !== "POST")
        throw new WechatApiError(43002);
}
/** auth.code2Session (QQ's jscode2session too): a login code for openid, session_key and maybe unionid. */
export function code2SessionHandler(state) {
    return ({ query }) => {
        const appid = required(query, "appid", 41002);
        const secret = required(query, "secret", 41004);
        const code = required(query, "js_code", 41008);
        if (field(query, "grant_type") !== "authorization_code")
            throw new WechatApiError(40002);
        state.authenticateApp(appid, secret);
        return state.redeemLoginCode(appid, code);
    };
}
function wechatRoutes(state) {
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
                if (field(body, "grant_type") !== "client_credential")
                    throw new WechatApiError(40002);
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
                if (body === undefined)
                    throw new WechatApiError(47001);
                const phoneInfo = state.redeemPhoneCode(appid, required(body, "code", 40029));
                return { errcode: 0, errmsg: "ok", phone_info: phoneInfo };
            },
        },
        {
            path: "/wxa/checksession",
            methods: ["GET"],
            handler: ({ query }) => {
                const appid = state.authorize(field(query, "access_token"));
                if (field(query, "sig_method") !== "hmac_sha256")
                    throw new WechatApiError(87008);
                const openid = required(query, "openid", 40003);
                const sessionKey = state.currentSessionKey(appid, openid);
                if (sessionKey === undefined || field(query, "signature") !== sessionSignature(sessionKey)) {
                    throw new WechatApiError(87009);
                }
                return { errcode: 0, errmsg: "ok" };
            },
        },
    ];
}
function answer(handler, request) {
    try {
        return handler(request);
    }
    catch (error) {
        if (error instanceof WechatApiError)
            return errorBody(error.errcode);
        throw error;
    }
}
/**
 * Serves `routes` under `prefix` ("" for WeChat's root, "/qq" for QQ). Faults and call counts go by
 * the full path, prefix included, and every path registered here is one /sim/faults accepts.
 */
export function registerApiRoutes(app, deps, routes, prefix = "") {
    for (const route of routes) {
        routeWithFaults(app, deps, { path: `${prefix}${route.path}`, methods: route.methods }, (request, fault) => fault?.errcode !== undefined
            ? errorBody(fault.errcode)
            : answer(route.handler, {
                method: request.method,
                query: request.query,
                body: typeof request.body === "string" ? request.body : undefined,
            }));
    }
}
/** The mini-program server APIs of api.weixin.qq.com. */
export function registerWechatRoutes(app, deps) {
    registerApiRoutes(app, deps, wechatRoutes(deps.state));
}
