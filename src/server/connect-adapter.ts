import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createServiceImplSpec, type ConnectRouter, type ConnectRouterOptions, type ContextValues } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { contentTypeRegExp as grpcContentType, parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { contentTypeRegExp as grpcWebContentType } from "@connectrpc/connect/protocol-grpc-web";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { PlainAbortSignal } from "../util/plain-abort-signal.js";
import { createUnaryFastPath, type UnaryFastPath } from "./connect-unary.js";

// In place of @connectrpc/connect-fastify: the same router and protocol code (Connect's universal
// handlers), with a leaner bridge to Node. Profiled on Health/Check over HTTP/1.1 JSON, the stock
// bridge aborted every request's signal when its answer closed (one more DOMException, with its
// stack trace, per call) and wrote the answer through an async iterator and a second write. Here
// the request signal aborts only when the client leaves before the answer is out, and a unary
// answer is written with one end(). (Connect itself still aborts each call's context at its end.)

export interface ConnectRoutesOptions extends ConnectRouterOptions {
  routes(router: ConnectRouter): void;
  /** The request guard's limit, which the unary fast path enforces too. */
  maxBodyBytes: number;
  contextValues(req: FastifyRequest): ContextValues;
  onFailure(error: unknown, handler: UniversalHandler): void;
}

/** Registers the router's handlers on `scope` (an encapsulated plugin: it takes every content type). */
export function registerConnectRoutes(scope: FastifyInstance, options: ConnectRoutesOptions): void {
  const { routes, contextValues, onFailure, maxBodyBytes, ...routerOptions } = options;
  const router = createConnectRouter(routerOptions);
  const fastPaths = new Map<DescMethod, UnaryFastPath>();
  // The services as routes() registers them, for the unary fast path (connect-unary.ts).
  const recorder: ConnectRouter = {
    handlers: router.handlers,
    service(service, implementation, serviceOptions) {
      router.service(service, implementation, serviceOptions);
      if (serviceOptions) return recorder;
      for (const spec of Object.values(createServiceImplSpec(service, implementation).methods)) {
        const fast = spec.kind === "unary" && createUnaryFastPath(spec, routerOptions, maxBodyBytes);
        if (fast) fastPaths.set(spec.method, fast);
      }
      return recorder;
    },
    rpc(method, implementation, rpcOptions) {
      router.rpc(method, implementation, rpcOptions);
      return recorder;
    },
  };
  routes(recorder);
  // Connect reads the body itself and answers 415 for content types it does not speak.
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser("*", (_req, _payload, done) => done(null, undefined));
  for (const handler of router.handlers) {
    scope.all(handler.requestPath, (req, reply) => {
      reply.hijack();
      const res = reply.raw as NodeResponse;
      // Headers the app's hooks set (CORS) live on the reply, which hijack() bypasses.
      for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(name, value);
      serve(handler, fastPaths.get(handler.method), req.raw as NodeRequest, res, contextValues(req)).catch((e: unknown) => {
        if (ConnectError.from(e).code === Code.Canceled) return;
        onFailure(e, handler);
        // Connect answers its own errors; this is a bug or a broken socket. Never leave it hanging.
        if (!res.headersSent) writeHead(res, 500);
        if (!res.writableEnded) res.end();
      });
    });
  }
}

/**
 * A gRPC call to a service or method `scope` does not serve gets status UNIMPLEMENTED, as gRPC
 * says, rather than fastify's 404, which gRPC clients report as a transport failure. A trailers-only
 * answer, before the body is parsed (fastify would answer 415). HTTP/2 only. Connect requests keep the 404 Connect specifies.
 */
export function answerUnknownGrpcCalls(scope: FastifyInstance): void {
  scope.addHook("onRequest", (req, reply, done) => {
    const contentType = req.headers["content-type"] ?? "";
    if (!req.is404 || !(grpcContentType.test(contentType) || grpcWebContentType.test(contentType))) return done();
    reply.hijack();
    const message = `unknown service or method ${req.url}`;
    // On the stream itself: trailers-only means one HEADERS frame that ends the stream, where
    // writeHead and end() send an empty DATA frame after it (grpc-js then reports INTERNAL).
    (reply.raw as unknown as Http2ServerResponse).stream.respond(
      { ":status": 200, "content-type": contentType, "grpc-status": String(Code.Unimplemented), "grpc-message": grpcPercentEncode(message) },
      { endStream: true },
    );
    // Read and drop the request body, so the stream closes on both sides.
    req.raw.resume();
  });
}

// gRPC's grpc-message encoding: only '%' and bytes outside printable ASCII. (Connect's own encoder
// also escapes '/', which grpc-js does not decode.)
const grpcPercentEncode = (message: string) => message.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

// Both answer writeHead(status, headers), but @types/node 24 overloads each differently and TypeScript
// cannot call a union of overloaded methods: call it through the shape they share.
const writeHead = (res: NodeResponse, status: number, headers?: Record<string, string>) => (res as Pick<ServerResponse, "writeHead">).writeHead(status, headers);

async function serve(handler: UniversalHandler, fast: UnaryFastPath | undefined, raw: NodeRequest, res: NodeResponse, values: ContextValues): Promise<void> {
  const requestSignal = new PlainAbortSignal();
  res.once("close", () => {
    if (!res.writableEnded) requestSignal.abort(new ConnectError("the client went away before the answer was out", Code.Canceled));
  });
  const header = webHeaders(raw.headers);
  const url = `http://${authorityOf(raw)}${raw.url}`;
  if (fast && raw.method === "POST" && fast.takes(header)) {
    const answer = await fast.answer({ header, body: raw, url, signal: requestSignal, values });
    writeHead(res, answer.status, nodeHeaders(answer.header));
    res.end(answer.body);
    return;
  }
  const uRes = await handler({
    httpVersion: raw.httpVersion,
    method: raw.method ?? "",
    url,
    header: clampDeadline(header),
    body: raw,
    signal: requestSignal.asAbortSignal(),
    contextValues: values,
  } satisfies UniversalServerRequest);
  // A unary answer is one message: read it whole, then write head, body and trailers at once.
  // HTTP/1.1 can carry trailers only chunked; leave that rare case (gRPC over HTTP/1.1) to Connect.
  if (handler.method.methodKind !== "unary" || (uRes.trailer && raw.httpVersionMajor < 2)) {
    await universalResponseToNodeResponse(uRes, res);
    return;
  }
  const body = await readAll(uRes);
  writeHead(res, uRes.status, nodeHeaders(uRes.header));
  if (uRes.trailer) res.addTrailers(nodeHeaders(uRes.trailer));
  res.end(body);
}

async function readAll(uRes: UniversalServerResponse): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  // The body is an iterable of a single chunk for unary calls; its end also fills in the trailers.
  for await (const chunk of uRes.body ?? []) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

function authorityOf(raw: NodeRequest): string {
  return ("authority" in raw ? raw.authority : raw.headers.host) || "localhost";
}

function webHeaders(headers: IncomingHttpHeaders): Headers {
  const web = new Headers();
  for (const key in headers) {
    // HTTP/2 pseudo-headers (:path, :method) are not headers.
    if (key.charCodeAt(0) === 58) continue;
    const value = headers[key];
    if (typeof value === "string") web.append(key, value);
    else if (Array.isArray(value)) for (const v of value) web.append(key, v);
  }
  return web;
}

// Connect turns a deadline header into a timer, and Node fires a timer set beyond 2^31-1 ms after
// 1 ms (with a TimeoutOverflowWarning): a longer deadline would end the call at once. Clamped to
// that (24.8 days) it means what the client meant, no hurry, for unary calls and watches alike.
const MAX_DEADLINE_MS = 2 ** 31 - 1;

function clampDeadline(header: Headers): Headers {
  if ((parseConnectTimeout(header.get("connect-timeout-ms"), MAX_DEADLINE_MS).timeoutMs ?? 0) > MAX_DEADLINE_MS) header.set("connect-timeout-ms", String(MAX_DEADLINE_MS));
  // gRPC takes at most 8 digits: whole seconds.
  if ((parseGrpcTimeout(header.get("grpc-timeout"), MAX_DEADLINE_MS).timeoutMs ?? 0) > MAX_DEADLINE_MS) header.set("grpc-timeout", `${Math.floor(MAX_DEADLINE_MS / 1000)}S`);
  return header;
}

function nodeHeaders(headers: Headers | undefined): Record<string, string> {
  const node: Record<string, string> = {};
  headers?.forEach((value, key) => {
    node[key] = value;
  });
  return node;
}
