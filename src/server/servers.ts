import type { ServiceImpl } from "@connectrpc/connect";
import { setMaxListeners } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import { fastify, LogController, type FastifyInstance } from "fastify";
import type { PinoLoggerOptions } from "fastify/types/logger.js";
import type { AdminService } from "../../gen/identity/admin/v1/admin_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { createInvoke } from "../compat/invoke.js";
import { registerSeedRoutes, type SeedApp } from "../compat/seed-routes.js";
import type { CorsConfig, SeedRoutesConfig } from "../config/config.js";
import type { RpcSample } from "../metrics/metrics.js";
import { requestContextValues, type Logger } from "../service/interceptors.js";
import type { Readiness } from "./health.js";
import { createRoutes, type Routes } from "./routes.js";
import { answerUnknownGrpcCalls, registerConnectRoutes } from "./connect-adapter.js";
import { acceptConsoleCookie, registerConsole } from "./console.js";
import { registerCors } from "./cors.js";
import { lazyChildLogger } from "./request-logger.js";
import { describeError } from "../util/log-safety.js";

export interface ServerDeps {
  service: ServiceImpl<typeof IdentityService>;
  admin: ServiceImpl<typeof AdminService>;
  /** The public signing keys, served at /.well-known/jwks.json. */
  jwks: () => object;
  /** pino options for fastify's logger (level, redact, stream). */
  logger: PinoLoggerOptions;
  maxBodyBytes: number;
  /** Bounds on slow and idle clients (the config's limits.*TimeoutMs). */
  timeouts: ConnectionTimeouts;
  /** Streams one h2c connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
  /** How long close() lets in-flight calls finish. */
  shutdownTimeoutMs: number;
  /** Whether the app can serve (its store answers): /readyz and grpc.health.v1.Health. */
  ready: Readiness;
  /** Prometheus exposition for GET /metrics, and the per-RPC observer that feeds it. */
  metrics: { render(): Promise<{ contentType: string; body: string }>; recordRpc(sample: RpcSample): void };
  /** Proxies whose X-Forwarded-For names the client (fastify's trustProxy). */
  trustProxy: string[];
  /** The seed-compatible REST profiles to serve on the HTTP listener, and the apps they resolve. */
  seedRoutes: SeedRoutesConfig;
  apps: SeedApp[];
  /** CORS for browsers on other origins, HTTP/1.1 listener only; off when absent. */
  cors?: CorsConfig;
}

export interface ConnectionTimeouts {
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
}

/** HTTP/1.1 listener: Connect (JSON and binary), gRPC-Web, the seed-compatible routes, the operator console, the JWKS, and a small index at /. */
export async function buildHttpServer(deps: ServerDeps): Promise<FastifyInstance> {
  const { headersMs, requestMs, keepAliveMs } = deps.timeouts;
  const app = fastify({
    logger: deps.logger,
    logController: quietRequests(),
    // Request loggers are made when first needed (request-logger.ts).
    childLoggerFactory: lazyChildLogger,
    bodyLimit: deps.maxBodyBytes,
    trustProxy: deps.trustProxy,
    // Node enforces headersTimeout and requestTimeout only when it sweeps its connections (every
    // 30 s by default), so a slow client would get up to 30 s more than configured.
    http: { headersTimeout: headersMs, requestTimeout: requestMs, connectionsCheckingInterval: Math.min(1000, headersMs / 2) },
    requestTimeout: requestMs,
    keepAliveTimeout: keepAliveMs,
  });
  // close() closes idle keep-alive connections once; one whose answer ends later (a health Watch,
  // any call in flight) would hold close() until the client hangs up. End it with its answer.
  let closing = false;
  app.addHook("preClose", (done) => {
    closing = true;
    done();
  });
  app.server.on("request", (req: IncomingMessage, res: ServerResponse) => res.once("finish", () => closing && req.socket.end()));
  if (deps.cors) await registerCors(app, deps.cors);
  acceptConsoleCookie(app);
  const routes = await registerConnect(app, deps);
  const invoke = createInvoke(deps.service, routes.options.interceptors);
  await registerSeedRoutes(app, deps.seedRoutes, { invoke, apps: deps.apps });
  await registerConsole(app, invoke);
  app.get("/.well-known/jwks.json", async (_req, reply) => {
    reply.header("cache-control", "public, max-age=300");
    return deps.jwks();
  });
  // For Prometheus; keep it off the public address at the proxy (docs/deployment.md).
  app.get("/metrics", async (_req, reply) => {
    const { contentType, body } = await deps.metrics.render();
    return reply.type(contentType).send(body);
  });
  // Liveness: the process answers. Readiness: it can serve requests (for load balancers, k8s probes).
  app.get("/healthz", async (_req, reply) => {
    reply.header("cache-control", "no-store");
    return { status: "ok" };
  });
  app.get("/readyz", async (_req, reply) => {
    const ready = await deps.ready();
    reply.header("cache-control", "no-store").code(ready ? 200 : 503);
    return { status: ready ? "ready" : "not ready" };
  });
  app.get("/", async () => ({
    service: IdentityService.typeName,
    methods: IdentityService.methods.map((m) => `POST /${IdentityService.typeName}/${m.name}`),
    jwks: "/.well-known/jwks.json",
    health: "/healthz",
    ready: "/readyz",
  }));
  return app;
}

/** HTTP/2 cleartext listener: gRPC, Connect and gRPC-Web for internal services and buf curl, plus reflection. */
export async function buildGrpcServer(deps: ServerDeps): Promise<FastifyInstance> {
  // forceCloseConnections: on Node < 24 an h2c close() otherwise waits for clients to hang up.
  const app = fastify({
    http2: true,
    logger: deps.logger,
    logController: quietRequests(),
    childLoggerFactory: lazyChildLogger,
    forceCloseConnections: true,
    trustProxy: deps.trustProxy,
    bodyLimit: deps.maxBodyBytes,
    http2SessionTimeout: deps.timeouts.keepAliveMs,
  });
  // Advertised in every session's SETTINGS. Clients queue calls beyond it; Node ends the session
  // of one that opens more anyway (a protocol error).
  app.server.updateSettings({ maxConcurrentStreams: deps.maxConcurrentStreams });
  app.addHook("onRequest", (request, _reply, done) => {
    // An answer can be complete before the body was read (one far over the size limit). HTTP/2
    // would keep the stream half-open, the client stalled mid-upload and close() waiting for both,
    // so reset it with NO_ERROR (RFC 9113 8.1), after the compat layer has queued the trailers.
    const { stream } = request.raw;
    stream.once("wantTrailers", () => {
      if (request.raw.complete) return;
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
      // A reset stream is destroyed only once its readable side has ended.
      request.raw.resume();
    });
    done();
  });
  // The server ends its side of a connection only when the session is over; a client may never
  // end its own (seen after a stream reset mid-upload), and the half-open socket would then hold
  // close() forever. Nothing more is to be read from it.
  app.server.on("connection", (socket: Socket) => socket.once("finish", () => socket.destroy()));
  // HTTP/2 has no headers timeout, and the session's idle timeout restarts with every byte, so a
  // client trickling its preface or first HEADERS would hold the connection for ever. Its first
  // stream must open within headersMs; after that the idle timeout (keepAliveMs) applies.
  app.server.on("session", (session: http2.ServerHttp2Session) => {
    const deadline = setTimeout(() => session.destroy(), deps.timeouts.headersMs).unref();
    session.once("stream", () => clearTimeout(deadline));
    session.once("close", () => clearTimeout(deadline));
  });
  // HTTP/2 has no request timeout either: a stream whose client has not finished sending within
  // requestMs (a body trickled a byte at a time) is reset, as HTTP/1.1 ends such a request. A
  // reflection stream counts as sending until its client ends its side.
  app.server.on("stream", (stream: http2.ServerHttp2Stream) => {
    const deadline = setTimeout(() => {
      if (!stream.state.remoteClose) stream.close(http2.constants.NGHTTP2_CANCEL);
    }, deps.timeouts.requestMs).unref();
    stream.once("close", () => clearTimeout(deadline));
  });
  answerUnknownGrpcCalls(app as unknown as FastifyInstance);
  // Reflection is a bidi stream, which needs HTTP/2: served here only.
  await registerConnect(app as unknown as FastifyInstance, deps, { reflection: true });
  return app as unknown as FastifyInstance;
}

// The RPC interceptor logs one line per call; fastify's two lines per request would double it.
const quietRequests = () => new LogController({ disableRequestLogging: true });

/** Serves the Connect routes on `app`; answers them, for the seed routes to call through the same interceptors. */
async function registerConnect(app: FastifyInstance, deps: ServerDeps, options: { reflection?: boolean } = {}): Promise<Routes> {
  // Every in-flight call listens on this signal; close() gives them shutdownTimeoutMs, then aborts.
  const shutdown = new AbortController();
  setMaxListeners(0, shutdown.signal);
  app.addHook("preClose", (done) => {
    setTimeout(() => shutdown.abort(), deps.shutdownTimeoutMs).unref();
    done();
  });
  // Health watches end as soon as shutdown begins, rather than holding close() until the abort.
  const closing = new AbortController();
  app.addHook("preClose", (done) => {
    closing.abort();
    done();
  });
  const routes = createRoutes({ ...deps, log: app.log as Logger, recordRpc: deps.metrics.recordRpc, closing: closing.signal, ...options });
  // An encapsulated scope: the Connect routes take every content type, the app's other routes keep fastify's parsers.
  await app.register(async (scope) =>
    registerConnectRoutes(scope, {
      ...routes.options,
      routes: routes.routes,
      maxBodyBytes: deps.maxBodyBytes,
      shutdownSignal: shutdown.signal,
      contextValues: requestContextValues,
      onFailure: (e, handler) => app.log.error({ rpc: handler.method.name, err: describeError(e) }, "rpc could not be answered"),
    }),
  );
  return routes;
}
