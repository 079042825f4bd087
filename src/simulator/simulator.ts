import Fastify, { type FastifyServerOptions } from "fastify";
import { registerAlipayRoutes } from "./alipay-routes.js";
import { registerAppleRoutes } from "./apple-routes.js";
import { registerControlRoutes } from "./control-routes.js";
import { registerOauthRoutes } from "./oauth-routes.js";
import { errorBody } from "./protocol.js";
import { registerQqRoutes } from "./qq-routes.js";
import { createCallCounter, createFaultBook } from "./traffic.js";
import { registerWechatRoutes } from "./wechat-routes.js";
import { createClock, createWechatState, type ContentWords } from "./wechat-state.js";

// A stand-in for api.weixin.qq.com on loopback. It is WeChat, not us: it imports nothing from the
// rest of the service, which reaches it only over HTTP through the client it uses for real WeChat.

export interface SimulatorOptions {
  /** Known apps: appid -> secret. An appid not listed here is refused like WeChat refuses an unknown appid (40013); a wrong secret gets 40125. */
  apps: Record<string, string>;
  /** Known Alipay apps: appid -> the app's RSA public key (PEM). Others get isv.invalid-app-id. */
  alipayApps?: Record<string, string>;
  /** QQ mini-program apps (served under /qq, with their own codes and session keys): appid -> secret. */
  qqApps?: Record<string, string>;
  /** The words msg_sec_check finds risky or for review at start (POST /sim/sec-words replaces them). */
  contentWords?: ContentWords;
  /** Clock, for tests; defaults to Date.now. */
  now?: () => number;
  logger?: boolean | object; // passed to fastify; default false
}

export interface WechatSimulator {
  /** Starts listening; resolves to the base URL, e.g. http://127.0.0.1:PORT */
  listen(port: number, host?: string): Promise<string>;
  close(): Promise<void>;
  readonly url: string; // after listen
  /** The simulated Alipay gateway's public key (PEM), which signs its answers; also at GET /sim/alipay/public-key. */
  readonly alipayPublicKeyPem: string;
}

// Query parameters that are credentials; they never reach the log.
const SECRET_PARAMS = ["secret", "access_token", "refresh_token", "js_code", "code", "signature"];

function redactUrl(url: string): string {
  const queryAt = url.indexOf("?");
  if (queryAt < 0) return url;
  const params = new URLSearchParams(url.slice(queryAt + 1));
  for (const name of SECRET_PARAMS) if (params.has(name)) params.set(name, "redacted");
  return `${url.slice(0, queryAt)}?${params.toString()}`;
}

function loggerOptions(logger: boolean | object | undefined): FastifyServerOptions["logger"] {
  if (logger === undefined || logger === false) return false;
  const base: { serializers?: object } = logger === true ? {} : logger;
  // Our request serializer wins over a caller's, so URLs are always logged redacted.
  return {
    ...base,
    serializers: {
      ...base.serializers,
      req: (request: { method: string; url: string }) => ({ method: request.method, url: redactUrl(request.url) }),
    },
  } as FastifyServerOptions["logger"];
}

export function createWechatSimulator(options: SimulatorOptions): WechatSimulator {
  const clock = createClock(options.now ?? Date.now);
  const state = createWechatState(options.apps, clock);
  if (options.contentWords) state.setContentWords(options.contentWords);
  const faults = createFaultBook();
  const calls = createCallCounter();
  const closing = new AbortController();
  const app = Fastify({ logger: loggerOptions(options.logger) });

  const endpoints: string[] = [];
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) if (method !== "HEAD") endpoints.push(`${method} ${route.url}`);
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

  let url: string | undefined;
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
      if (url === undefined) throw new Error("the WeChat simulator is not listening yet");
      return url;
    },
    get alipayPublicKeyPem() {
      return alipay.publicKeyPem;
    },
  };
}
