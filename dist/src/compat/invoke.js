// Calls the very ServiceImpl the Connect routes serve, in process, through the same outermost
// interceptor: logging, metrics and error mapping are the Connect API's. Seed routes only translate.
import { create } from "@bufbuild/protobuf";
import { ConnectError, createHandlerContext } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { TokenError } from "../auth/errors.js";
import { isReason, toConnectError } from "../service/errors.js";
import { createOutermostInterceptor, requestContextValues } from "../service/interceptors.js";
export function createInvoke(service, fallbackLog, recordRpc) {
    const intercept = createOutermostInterceptor(fallbackLog, recordRpc);
    const call = intercept(async (req) => {
        const impl = service[req.method.localName];
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
    });
    return async (method, input, request, accessToken, extend = (values) => values) => {
        const contextValues = extend(requestContextValues(request));
        try {
            const header = bearerHeader(accessToken);
            const res = await call({
                stream: false,
                service: IdentityService,
                method: method,
                requestMethod: request.method,
                url: request.url,
                signal: new AbortController().signal,
                header,
                contextValues,
                message: create(method.input, input),
            });
            return { ok: true, message: res.message };
        }
        catch (e) {
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
function bearerHeader(accessToken) {
    if (!accessToken)
        return new Headers();
    if (!TOKEN_CHARS.test(accessToken))
        throw new TokenError("invalid");
    return new Headers({ authorization: `Bearer ${accessToken}` });
}
function reasonOf(error) {
    const reason = error.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
    return isReason(reason) ? reason : "INTERNAL";
}
