import type { JsonReadOptions, JsonWriteOptions } from "@bufbuild/protobuf";
import { createContextValues, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import { setMaxListeners } from "node:events";
import http2 from "node:http2";
import type { Socket } from "node:net";
import { fastify, LogController, type FastifyInstance } from "fastify";
import type { PinoLoggerOptions } from "fastify/types/logger.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { createOutermostInterceptor, kClientAddress, kRequestLog, type Logger } from "../service/interceptors.js";
import { guardRouter } from "./request-guard.js";

export interface ServerDeps {
  service: ServiceImpl<typeof IdentityService>;
  /** The public signing keys, served at /.well-known/jwks.json. */
  jwks: () => object;
  /** pino options for fastify's logger (level, redact, stream). */
  logger: PinoLoggerOptions;
  maxBodyBytes: number;
  /** How long close() lets in-flight calls finish. */
  shutdownTimeoutMs: number;
}

// Always emit scalar fields, so a JSON client sees `"registered": false` rather than nothing.
const JSON_OPTIONS: Partial<JsonReadOptions & JsonWriteOptions> = { alwaysEmitImplicit: true };

/** HTTP/1.1 listener: Connect (JSON and binary), gRPC-Web, the JWKS, and a small index at /. */
export async function buildHttpServer(deps: ServerDeps): Promise<FastifyInstance> {
  const app = fastify({ logger: deps.logger, logController: quietRequests(), bodyLimit: deps.maxBodyBytes });
  await registerConnect(app, deps);
  app.get("/.well-known/jwks.json", async (_req, reply) => {
    reply.header("cache-control", "public, max-age=300");
    return deps.jwks();
  });
  app.get("/", async () => ({
    service: IdentityService.typeName,
    methods: IdentityService.methods.map((m) => `POST /${IdentityService.typeName}/${m.name}`),
    jwks: "/.well-known/jwks.json",
  }));
  return app;
}

/** HTTP/2 cleartext listener: gRPC, Connect and gRPC-Web for internal services and buf curl. */
export async function buildGrpcServer(deps: ServerDeps): Promise<FastifyInstance> {
  // forceCloseConnections: on Node < 24 an h2c close() otherwise waits for clients to hang up.
  const app = fastify({ http2: true, logger: deps.logger, logController: quietRequests(), forceCloseConnections: true });
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
  await registerConnect(app as unknown as FastifyInstance, deps);
  return app as unknown as FastifyInstance;
}

// The RPC interceptor logs one line per call; fastify's two lines per request would double it.
const quietRequests = () => new LogController({ disableRequestLogging: true });

async function registerConnect(app: FastifyInstance, deps: ServerDeps): Promise<void> {
  // Every in-flight call listens on this signal; close() gives them shutdownTimeoutMs, then aborts.
  const shutdown = new AbortController();
  setMaxListeners(0, shutdown.signal);
  app.addHook("preClose", (done) => {
    setTimeout(() => shutdown.abort(), deps.shutdownTimeoutMs).unref();
    done();
  });
  await app.register(fastifyConnectPlugin, {
    routes: (router: ConnectRouter) => {
      router.service(IdentityService, deps.service);
      guardRouter(router, deps.maxBodyBytes, JSON_OPTIONS);
    },
    interceptors: [createOutermostInterceptor(app.log as Logger)],
    jsonOptions: JSON_OPTIONS,
    readMaxBytes: deps.maxBodyBytes,
    shutdownSignal: shutdown.signal,
    contextValues: (req) => createContextValues().set(kRequestLog, req.log as Logger).set(kClientAddress, req.ip),
  });
}
