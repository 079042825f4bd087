import { Code, createContextKey, createContextValues, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { RpcSample } from "../metrics/metrics.js";
import { describeError } from "../util/log-safety.js";
import { WechatError } from "../wechat/wechat-client.js";
import { toConnectError } from "./errors.js";

/** The small part of pino the service uses. */
export interface Logger {
  info(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The request-scoped logger (fastify's request.log, carrying the request id). */
export const kRequestLog = createContextKey<Logger | undefined>(undefined, { description: "request logger" });

/**
 * Outermost interceptor: turns every failure into a Connect error with a reason, logs one line
 * per RPC, and logs unexpected errors once. Messages and tokens stay out of the log line. A
 * server stream's handler runs as its messages are read, so its line comes when it ends.
 */
export function createOutermostInterceptor(fallbackLog: Logger, onRpc: (sample: RpcSample) => void = () => undefined): Interceptor {
  return (next) => async (req) => {
    const log = req.contextValues.get(kRequestLog) ?? fallbackLog;
    const started = performance.now();
    const method = req.method.name;
    const finish = (code: string, reason?: string, upstream?: string) => {
      const ms = Math.round((performance.now() - started) * 100) / 100;
      log.info({ rpc: method, code, reason, ms, ...(upstream ? { upstream } : {}) }, "rpc");
      onRpc({ method, code, ...(reason ? { reason } : {}), seconds: ms / 1000 });
    };
    const fail = (e: unknown) => {
      const { error, known } = toConnectError(e);
      if (!known) log.error({ rpc: method, err: describeError(e) }, "rpc failed unexpectedly");
      // Why the platform was unavailable (refused, unresolvable, timed out) is the operator's, not the client's.
      const upstream = e instanceof WechatError ? e.message : undefined;
      finish(Code[error.code], error.findDetails(ErrorInfoSchema)[0]?.reason, upstream);
      return error;
    };
    try {
      const res = await next(req);
      if (!res.stream) {
        finish("ok");
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          let failed = false;
          try {
            yield* messages;
          } catch (e) {
            failed = true;
            throw fail(e);
          } finally {
            // Also when the client hangs up, the usual end of a watch.
            if (!failed) finish("ok");
          }
        })(),
      };
    } catch (e) {
      throw fail(e);
    }
  };
}

/** The client's address as the listener sees it (a proxy's X-Forwarded-For is not trusted). */
export const kClientAddress = createContextKey<string>("", { description: "client address" });

/** A request's context values, the same for Connect calls and the seed routes that invoke the service. */
export function requestContextValues(request: { log: unknown; ip: string }): ContextValues {
  return createContextValues()
    .set(kRequestLog, request.log as Logger)
    .set(kClientAddress, request.ip);
}
