import { Code, ConnectError, type ConnectRouterOptions, type ContextValues, type HandlerContext, type MethodImplSpec } from "@connectrpc/connect";
import { compressionNegotiate, createMethodSerializationLookup, invokeUnaryImplementation, validateUniversalHandlerOptions } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJsonBytes,
  headerTimeout,
  headerUnaryAcceptEncoding,
  headerUnaryEncoding,
  parseContentType,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import type { PlainAbortSignal } from "../util/plain-abort-signal.js";
import { decodeUnaryBody, readBoundedBody } from "./request-guard.js";

// Connect's own unary handler, for the call internal services make most (a Connect unary POST,
// uncompressed, without a deadline), cost more than the RPC behind it: per call it parsed the URL,
// copied the request headers, made two AbortControllers linked by listeners, wrapped the body in
// and out of async iterables, and at its end aborted the context with a DOMException (its stack
// trace captured) that nobody reads. This answers that case with the same parts Connect exports
// (serialization, interceptors, error JSON, compression negotiation, trailer muxing) and a lean
// context; every other request (GET, compressed, with a deadline, streams, gRPC) still goes
// through Connect's handler. docs/performance.md, "The unary fast path".

export interface UnaryAnswer {
  status: number;
  header: Headers;
  body: Uint8Array;
}

export interface UnaryCall {
  header: Headers;
  body: AsyncIterable<Uint8Array>;
  url: string;
  /** Aborted when the client leaves before the answer is out. */
  signal: PlainAbortSignal;
  values: ContextValues;
}

export interface UnaryFastPath {
  /** Whether this request is one the fast path answers exactly as Connect would. */
  takes(header: Headers): boolean;
  answer(call: UnaryCall): Promise<UnaryAnswer>;
}

export function createUnaryFastPath(spec: MethodImplSpec & { kind: "unary" }, routerOptions: ConnectRouterOptions, maxBodyBytes: number): UnaryFastPath | undefined {
  const opt = validateUniversalHandlerOptions(routerOptions);
  // The protocol-version check needs Connect's own errors; not worth a second copy.
  if (opt.requireConnectProtocolHeader) return undefined;
  const serialization = createMethodSerializationLookup(spec.method, opt.binaryOptions, opt.jsonOptions, opt);
  const { method } = spec;
  return {
    takes(header) {
      const type = parseContentType(header.get("content-type"));
      const encoding = header.get(headerUnaryEncoding);
      return type !== undefined && !type.stream && (encoding === null || encoding === "identity") && !header.has(headerTimeout);
    },
    async answer(call) {
      const binary = parseContentType(call.header.get("content-type"))?.binary ?? false;
      const { context, abort, detach } = createContext(spec, call, opt.shutdownSignal, binary);
      const compression = compressionNegotiate(opt.acceptCompression, null, call.header.get(headerUnaryAcceptEncoding), headerUnaryAcceptEncoding);
      let status = 200;
      let body: Uint8Array;
      try {
        const bytes = await readBoundedBody(call.body, Number(call.header.get("content-length") ?? 0), maxBodyBytes);
        const input = decodeUnaryBody(bytes, method.input, binary, opt.jsonOptions ?? {}, opt.binaryOptions);
        const output = await invokeUnaryImplementation(spec, context, input, opt.interceptors);
        body = serialization.getO(binary).serialize(output);
      } catch (e) {
        abort(e);
        const error = e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
        status = codeToHttpStatus(error.code);
        context.responseHeader.set("content-type", contentTypeUnaryJson);
        error.metadata.forEach((value, key) => {
          context.responseHeader.set(key, value);
        });
        body = errorToJsonBytes(error, opt.jsonOptions);
      } finally {
        detach();
      }
      if (compression.response && body.byteLength >= opt.compressMinBytes) {
        body = await compression.response.compress(body);
        context.responseHeader.set(headerUnaryEncoding, compression.response.name);
      }
      const header = trailerMux(context.responseHeader, context.responseTrailer);
      header.set("content-length", String(body.byteLength));
      return { status, header, body };
    },
  };
}

/**
 * A handler context as Connect's, whose signal is left alone when the call succeeds (no
 * DOMException per call). A real AbortSignal, not the bridge's plain one: handlers hand it to
 * fetch and AbortSignal.any, which take nothing else.
 */
function createContext(spec: MethodImplSpec, call: UnaryCall, shutdownSignal: AbortSignal | undefined, binary: boolean) {
  const controller = new AbortController();
  const follow = function (this: { reason: unknown }) {
    controller.abort(this.reason);
  };
  for (const linked of [call.signal, shutdownSignal]) {
    if (linked?.aborted) controller.abort(linked.reason);
    else linked?.addEventListener("abort", follow);
  }
  const context: HandlerContext = {
    method: spec.method,
    service: spec.method.parent,
    requestMethod: "POST",
    protocolName: "connect",
    url: call.url,
    signal: controller.signal,
    timeoutMs: () => undefined,
    requestHeader: call.header,
    responseHeader: new Headers({ "content-type": binary ? contentTypeUnaryProto : contentTypeUnaryJson }),
    responseTrailer: new Headers(),
    values: call.values,
  };
  const detach = () => {
    call.signal.removeEventListener("abort", follow);
    shutdownSignal?.removeEventListener("abort", follow);
  };
  return { context, abort: (reason: unknown) => controller.abort(reason), detach };
}
