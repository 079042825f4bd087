// Calls the very ServiceImpl the Connect routes serve, in process, through the interceptors
// createRoutes gives them: logging, metrics and error mapping are the Connect API's. Seed routes
// only translate. Not through a router transport: context values (the request's logger and address,
// a seed's trusted extras) are server-side and would not cross it.
import { create, type DescMessage, type DescMethodUnary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { type ConnectError, createHandlerContext, type ContextValues, type Interceptor, type ServiceImpl, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import type { FastifyRequest } from "fastify";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { TokenError } from "../auth/errors.js";
import { isReason, toConnectError, type Reason } from "../service/errors.js";
import { requestContextValues } from "../service/interceptors.js";

/** A failed call as a seed needs it: the reason, the HTTP status Connect would have used, a retry hint. */
export interface Failure {
  reason: Reason;
  status: number;
  retryAfterSeconds?: string;
}

export type Outcome<O extends DescMessage> = { ok: true; message: MessageShape<O> } | ({ ok: false } & Failure);

export type Invoke = <I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  input: MessageInitShape<I>,
  request: FastifyRequest,
  accessToken?: string,
  /** Adds server-side context values (a seed's trusted extras, e.g. an allowed asserted identity). */
  extend?: (values: ContextValues) => ContextValues,
) => Promise<Outcome<O>>;

type UnaryFn = (req: UnaryRequest) => Promise<UnaryResponse>;

export function createInvoke(service: ServiceImpl<typeof IdentityService>, interceptors: Interceptor[]): Invoke {
  // The first interceptor is the outermost, as in a Connect router.
  const call = (interceptors as unknown as Array<(next: UnaryFn) => UnaryFn>).reduceRight<UnaryFn>(
    (next, intercept) => intercept(next),
    async (req) => {
      const impl = service[req.method.localName as keyof typeof service] as unknown as (message: unknown, ctx: unknown) => Promise<MessageInitShape<DescMessage>>;
      const ctx = createHandlerContext({
        service: IdentityService,
        method: req.method,
        protocolName: "seed",
        requestMethod: req.requestMethod,
        url: req.url,
        requestHeader: req.header,
        contextValues: req.contextValues,
      });
      const output = await impl(req.message, ctx);
      return { stream: false, service: IdentityService, method: req.method, header: ctx.responseHeader, trailer: ctx.responseTrailer, message: create(req.method.output, output) };
    },
  );

  return async (method, input, request, accessToken, extend = (values) => values) => {
    const contextValues = extend(requestContextValues(request));
    try {
      const header = bearerHeader(accessToken);
      const res = await call({
        stream: false,
        service: IdentityService,
        method: method as unknown as DescMethodUnary,
        requestMethod: request.method,
        url: request.url,
        signal: new AbortController().signal,
        header,
        contextValues,
        message: create(method.input, input),
      });
      return { ok: true, message: res.message as MessageShape<typeof method.output> };
    } catch (e) {
      // The interceptor has already turned the service's failures into ConnectErrors; bearerHeader's is mapped here.
      const { error } = toConnectError(e);
      const retryAfter = error.metadata.get("retry-after");
      return {
        ok: false,
        reason: reasonOf(error),
        status: codeToHttpStatus(error.code),
        ...(retryAfter ? { retryAfterSeconds: retryAfter } : {}),
      };
    }
  };
}

// Our tokens (and the seeds' joined ones) are visible ASCII; anything else could not even be a
// header value, and Headers would throw with the token in its message.
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

function bearerHeader(accessToken: string | undefined): Headers {
  if (!accessToken) return new Headers();
  if (!TOKEN_CHARS.test(accessToken)) throw new TokenError("invalid");
  return new Headers({ authorization: `Bearer ${accessToken}` });
}

function reasonOf(error: ConnectError): Reason {
  const reason = error.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
  return isReason(reason) ? reason : "INTERNAL";
}
