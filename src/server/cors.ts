import { cors as connectCors } from "@connectrpc/connect";
import fastifyCors from "@fastify/cors";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import type { CorsConfig } from "../config/config.js";

const RPC_PREFIX = `/${IdentityService.typeName}/`;
const JWKS_PATH = "/.well-known/jwks.json";

/**
 * CORS for the configured origins on the Connect routes and the JWKS. The seed REST routes get none:
 * their clients are mini-programs (wx.request has no CORS); a web page uses Connect. Registered before
 * the routes, since its hooks apply only to routes added after it.
 */
export async function registerCors(app: FastifyInstance, config: CorsConfig): Promise<void> {
  const allowed = new Set(config.origins);
  const options = {
    // Connect's own lists (what Connect-Web and gRPC-Web send and read), plus the bearer token and the retry hint.
    methods: [...connectCors.allowedMethods],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization"],
    exposedHeaders: [...connectCors.exposedHeaders, "Retry-After"],
    credentials: config.credentials,
    maxAge: config.maxAgeSeconds,
  };
  await app.register(fastifyCors, {
    // An origin not listed gets no CORS header at all (an origin list would still add the expose and
    // credentials headers); the request goes on as without CORS, and the browser hides the answer.
    delegator: (req: FastifyRequest, done) => {
      const origin = req.headers.origin;
      done(null, origin && allowed.has(origin) && isCovered(req) ? { ...options, origin } : { origin: false });
    },
  });
}

function isCovered(req: FastifyRequest): boolean {
  const path = req.url.split("?", 1)[0] ?? "";
  return path.startsWith(RPC_PREFIX) || path === JWKS_PATH;
}
