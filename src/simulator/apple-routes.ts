import { createSign, generateKeyPairSync, type KeyObject, randomBytes, randomInt } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { postControl } from "./control-routes.js";
import type { Clock } from "./wechat-state.js";

// Sign in with Apple, as far as a backend sees it (wechat-api.md §7c): the JWKS at /auth/keys, served
// here at /apple/auth/keys, and identity tokens signed with its one RS256 key. A device gets those
// tokens from Apple; here the control route /sim/apple/id-token mints them.
//
//   GET  /apple/auth/keys      -> {"keys": [{kty:"RSA", kid, use:"sig", alg:"RS256", n, e}]}
//   POST /sim/apple/id-token   {"clientId", "sub"?, "email"?, "nonce"?, "expiresInSeconds"?} -> {"idToken", "sub"}

export const APPLE_ISSUER = "https://appleid.apple.com";
const DEFAULT_TTL_S = 600;

export interface AppleRouteDeps {
  clock: Clock;
}

const idTokenBody = z.strictObject({
  clientId: z.string().min(1).max(256),
  sub: z.string().min(1).max(256).optional(),
  email: z.email().optional(),
  nonce: z.string().min(1).max(512).optional(),
  // Negative gives a token that expired that many seconds (plus the lifetime) ago.
  expiresInSeconds: z
    .int()
    .min(-86_400 * 365)
    .max(86_400 * 365)
    .optional(),
});

/** Shaped like Apple's team-scoped user id: "001234.<32 hex>.0123". */
function randomSub(): string {
  const digits = (n: number) => String(randomInt(0, 10 ** n)).padStart(n, "0");
  return `${digits(6)}.${randomBytes(16).toString("hex")}.${digits(4)}`;
}

const base64url = (value: object) => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");

/** A compact RS256 JWS, written out by hand: the simulator does not share a JWT library with the verifier. */
function signRs256(header: object, payload: object, key: KeyObject): string {
  const input = `${base64url(header)}.${base64url(payload)}`;
  return `${input}.${createSign("RSA-SHA256").update(input).sign(key, "base64url")}`;
}

export function registerAppleRoutes(app: FastifyInstance, deps: AppleRouteDeps): void {
  // Made on first use, so a simulator that never sees Apple never pays for an RSA key.
  let signingKey: { kid: string; privateKey: KeyObject; jwk: Record<string, unknown> } | undefined;
  const key = () => {
    if (signingKey === undefined) {
      const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const kid = randomBytes(8).toString("hex").toUpperCase();
      const { n, e, kty } = publicKey.export({ format: "jwk" });
      signingKey = { kid, privateKey, jwk: { kty, kid, use: "sig", alg: "RS256", n, e } };
    }
    return signingKey;
  };

  app.get("/apple/auth/keys", async () => ({ keys: [key().jwk] }));

  postControl(app, "/sim/apple/id-token", idTokenBody, (input) => {
    const sub = input.sub ?? randomSub();
    const iat = Math.floor(deps.clock.now() / 1000);
    const { kid, privateKey } = key();
    const claims: Record<string, unknown> = {
      iss: APPLE_ISSUER,
      aud: input.clientId,
      exp: iat + (input.expiresInSeconds ?? DEFAULT_TTL_S),
      iat,
      sub,
      ...(input.nonce === undefined ? {} : { nonce: input.nonce }),
      nonce_supported: true,
      auth_time: iat,
    };
    if (input.email !== undefined) {
      // Apple sends these flags as strings.
      claims.email = input.email;
      claims.email_verified = "true";
      claims.is_private_email = input.email.endsWith("@privaterelay.appleid.com") ? "true" : "false";
    }
    return { idToken: signRs256({ kid, alg: "RS256" }, claims, privateKey), sub };
  });
}
