import Fastify, {} from "fastify";
import { registerAlipayRoutes } from "./alipay-routes.js";
import { registerAppleRoutes } from "./apple-routes.js";
import { registerControlRoutes } from "./control-routes.js";
import { registerOauthRoutes } from "./oauth-routes.js";
import { errorBody } from "./protocol.js";
import { registerQqRoutes } from "./qq-routes.js";
import { createCallCounter, createFaultBook } from "./traffic.js";
import { registerWechatRoutes } from "./wechat-routes.js";
import { createClock, createWechatState } from "./wechat-state.js";
// Query parameters that are credentials; they never reach the log.
const SECRET_PARAMS = ["secret", "access_token", "refresh_token", "js_code", "code", "signature"];
function redactUrl(url) {
    const queryAt = url.indexOf("?");
    if (queryAt < 0)
        return url;
    const params = new URLSearchParams(url.slice(queryAt + 1));
    for (const name of SECRET_PARAMS)
        if (params.has(name))
            params.set(name, "redacted");
    return `${url.slice(0, queryAt)}?${params.toString()}`;
}
function loggerOptions(logger) {
    if (logger === undefined || logger === false)
        return false;
    const base = logger === true ? {} : logger;
    // Our request serializer wins over a caller's, so URLs are always logged redacted.
    return {
        ...base,
        serializers: {
            ...base.serializers,
            req: (request) => ({ method: request.method, url: redactUrl(request.url) }),
        },
    };
}
export function createWechatSimulator(options) {
    const clock = createClock(options.now ?? Date.now);
    const state = createWechatState(options.apps, clock);
    const faults = createFaultBook();
    const calls = createCallCounter();
    const closing = new AbortController();
    const app = Fastify({ logger: loggerOptions(options.logger) });
    const endpoints = [];
    app.addHook("onRoute", (route) => {
        for (const method of [route.method].flat())
            if (method !== "HEAD")
                endpoints.push(`${method} ${route.url}`);
    });
    // Bodies arrive as text and each route reads them itself: WeChat parses JSON whatever the
    // Content-Type, and the control API wants to answer bad JSON with its own 400.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) => done(null, body));
    app.setNotFoundHandler(async (_request, reply) => reply.code(404).send(errorBody(40066)));
    app.setErrorHandler(async (error, request, reply) => {
        // Fastify's own 4xx (body too large, bad Content-Length) carry a status and a safe message.
        const status = error instanceof Error && "statusCode" in error ? Number(error.statusCode) : 500;
        if (error instanceof Error && status >= 400 && status < 500) {
            return reply.code(status).send({ error: error.message });
        }
        request.log.error({ err: error }, "simulator failure");
        return reply.code(500).send({ error: "internal error" });
    });
    app.get("/", async () => ({ service: "wechat-simulator", endpoints }));
    registerWechatRoutes(app, { state, faults, calls, closing: closing.signal });
    registerControlRoutes(app, { state, faults, calls, clock });
    const alipay = registerAlipayRoutes(app, { apps: options.alipayApps ?? {}, clock, faults, calls, closing: closing.signal });
    registerAppleRoutes(app, { clock });
    registerOauthRoutes(app, { state, faults, calls, closing: closing.signal });
    registerQqRoutes(app, { apps: options.qqApps ?? {}, clock, faults, calls, closing: closing.signal });
    let url;
    return {
        async listen(port, host = "127.0.0.1") {
            url = await app.listen({ port, host });
            return url;
        },
        async close() {
            closing.abort();
            await app.close();
        },
        get url() {
            if (url === undefined)
                throw new Error("the WeChat simulator is not listening yet");
            return url;
        },
        get alipayPublicKeyPem() {
            return alipay.publicKeyPem;
        },
    };
}
