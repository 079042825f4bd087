// `@identity-service/client/express`: middleware that authenticates a request's bearer token. Typed
// on Node's own request and response, so it needs neither express nor @types/express to load or typecheck.
import type { IncomingMessage, ServerResponse } from "node:http";
import { authenticateRequest, type IdentityAuthOptions } from "./http-auth.js";
import type { VerifiedIdentity } from "./identity.js";

export type { IdentityAuthOptions, RefusalBody } from "./http-auth.js";

declare global {
  // Express's own augmentation point for req (as @types/express documents it).
  namespace Express {
    interface Request {
      /** Whose the bearer token is, once identityAuth passed; undefined on an optional route without a token. */
      identity?: VerifiedIdentity;
    }
  }
}

/**
 * `app.use(identityAuth({ check }))`, or per route. Sets `req.identity` and calls next(), or answers
 * the refusal (401, 403, 429, 503, 500) with `{ code, reason }` itself; 5xx failures go to `onError`.
 */
export function identityAuth(options: IdentityAuthOptions): (req: IncomingMessage & { identity?: VerifiedIdentity }, res: ServerResponse, next: (err?: unknown) => void) => void {
  return (req, res, next) => {
    // Not an async function: Express 4 would not see a rejected promise. authenticateRequest never rejects.
    void authenticateRequest(req.headers.authorization, options).then((outcome) => {
      if (!outcome.refusal) {
        req.identity = outcome.identity;
        next();
        return;
      }
      const { status, headers, body } = outcome.refusal;
      res.writeHead(status, { ...headers, "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
    });
  };
}
