// `@identity-service/client/fastify`: a hook that authenticates a request's bearer token. Loaded
// only by who imports it, so the package does not need fastify otherwise.
import type { FastifyReply, FastifyRequest } from "fastify";
import { authenticateRequest, type IdentityAuthOptions } from "./http-auth.js";
import type { VerifiedIdentity } from "./identity.js";

export type { IdentityAuthOptions, RefusalBody } from "./http-auth.js";

declare module "fastify" {
  interface FastifyRequest {
    /** Whose the bearer token is, once the identity hook passed; undefined on an optional route without a token. */
    identity?: VerifiedIdentity;
  }
}

/**
 * An onRequest (or preHandler) hook: `app.addHook("onRequest", identityAuth({ check }))`, or per
 * route `{ onRequest: identityAuth({ check }) }`. Sets `request.identity`, or answers the refusal
 * (401, 403, 429, 503, 500) with `{ code, reason }`; 5xx failures go to `onError`, else the request's log.
 */
export function identityAuth(options: IdentityAuthOptions): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  return async (request, reply) => {
    const outcome = await authenticateRequest(request.headers.authorization, {
      ...options,
      onError: options.onError ?? ((err) => request.log.error({ err }, "identity check failed")),
    });
    if (!outcome.refusal) {
      request.identity = outcome.identity;
      return undefined;
    }
    return reply.code(outcome.refusal.status).headers(outcome.refusal.headers).send(outcome.refusal.body);
  };
}
