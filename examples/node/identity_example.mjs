// A Node service calling the identity service over gRPC with @identity-service/client.
//
// Usage: node identity_example.mjs [--grpc HOST:PORT] [--http URL] [--sim URL] [--api-key KEY]
// Each option also reads an environment variable (IDENTITY_GRPC, IDENTITY_HTTP, IDENTITY_SIM,
// IDENTITY_API_KEY, ...); the defaults are `npm start`'s. Prints one JSON line and exits 1 when a
// step failed.
import { parseArgs } from "node:util";
import { Code, createCheckLogin, createIdentityClient, errorInfoOf, reasonOf } from "@identity-service/client";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

const env = process.env;
const { values: args } = parseArgs({
  options: {
    grpc: { type: "string", default: env.IDENTITY_GRPC ?? "localhost:9090" }, // the h2c listener
    http: { type: "string", default: env.IDENTITY_HTTP ?? "http://localhost:8080" }, // the HTTP/1.1 listener
    sim: { type: "string", default: env.IDENTITY_SIM ?? "http://localhost:8090" }, // the WeChat simulator
    "api-key": { type: "string", default: env.IDENTITY_API_KEY ?? "" }, // an internal caller's key
    app: { type: "string", default: env.IDENTITY_APP ?? "demo" }, // the configured app key (the token's aud)
    appid: { type: "string", default: env.IDENTITY_APPID ?? "wx0000000000000001" }, // its WeChat appid
    issuer: { type: "string", default: env.IDENTITY_ISSUER ?? "identity" }, // the configured issuer
    jwks: { type: "string", default: env.IDENTITY_JWKS ?? "" }, // default: {http}/.well-known/jwks.json
  },
});

const baseUrl = args.grpc.includes("://") ? args.grpc : `http://${args.grpc}`;
const client = createIdentityClient({ baseUrl, transport: "grpc", defaultTimeoutMs: 10_000 });
const result = {};
let token;

/** UNAUTHENTICATED, as gRPC names its codes (Code.Unauthenticated). */
const codeName = (code) => Code[code].replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();

async function step(name, fn) {
  try {
    result[name] = await fn();
  } catch (err) {
    result[name] = { ok: false, error: `${err.name}: ${err.message}` };
  }
}

// 1. Login with a code from the simulator (in production the mini-program sends its wx.login code).
await step("login", async () => {
  const minted = await fetch(`${args.sim}/sim/login-code`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ appid: args.appid }) });
  const { code } = await minted.json();
  const res = await client.login({ appId: args.app, credential: { case: "code", value: code } });
  token = res.tokens.accessToken;
  return { ok: true, userId: res.user.id, registered: res.registered, firstLogin: res.firstLogin, expiresIn: res.tokens.expiresIn };
});

const checked = (identity) => ({ ok: true, userId: identity.userId, appId: identity.appId, sessionId: identity.sessionId, expireTime: identity.expireTime.toISOString() });

if (token) {
  // 2. CheckLogin as the end user: the token as bearer.
  await step("checkLoginBearer", async () => checked(await createCheckLogin(client)(token)));

  // 3. CheckLogin as an internal service: its API key, the user's token in the request.
  if (args["api-key"]) {
    const internal = createIdentityClient({ baseUrl, transport: "grpc", apiKey: args["api-key"], defaultTimeoutMs: 10_000 });
    await step("checkLoginApiKey", async () => checked(await createCheckLogin(internal)(token)));
  } else {
    result.checkLoginApiKey = { ok: null, skipped: "no --api-key / IDENTITY_API_KEY" };
  }

  // 4. A refused call: branch on the code and the ErrorInfo reason only, never on the message.
  await step("refused", async () => {
    try {
      await createCheckLogin(client)("not-a-token");
      return { ok: false, error: "CheckLogin accepted a bad token" };
    } catch (err) {
      return { ok: true, code: codeName(err.code), reason: reasonOf(err) ?? null, domain: errorInfoOf(err)?.domain };
    }
  });

  // 5. Verify the access token locally with the service's public keys (ES256; no call per request).
  await step("jwks", async () => {
    const keys = createRemoteJWKSet(new URL(args.jwks || `${args.http}/.well-known/jwks.json`), { timeoutDuration: 10_000 });
    const { payload } = await jwtVerify(token, keys, { algorithms: ["ES256"], audience: args.app, issuer: args.issuer, requiredClaims: ["exp", "iss", "aud", "sub"] });
    return { ok: true, kid: decodeProtectedHeader(token).kid, sub: payload.sub, aud: payload.aud, iss: payload.iss, exp: payload.exp };
  });
}

console.log(JSON.stringify(result));
process.exitCode = Object.values(result).every((r) => r.ok !== false) ? 0 : 1;
