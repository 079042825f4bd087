// Local verification against the real service's JWKS: it refuses what the service refuses, with
// the service's reasons, and picks up a rotated key.
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { decodeJwt, decodeProtectedHeader, type JWK } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../../src/auth/access-tokens.js";
import { MemoryStore } from "../../../src/store/memory-store.js";
import { login, startHarness, type Harness } from "../../../test/support/harness.js";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { IdentityService } from "../src/gen/identity/v1/identity_pb.js";
import { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions } from "../src/token-verifier.js";
import { API_KEY, caughtUp, ISSUER, serviceConfig, startFeed, type Feed } from "./support/revocation-feed.js";

let h: Harness;
let feed: Feed;
let service: Client<typeof IdentityService>;
let ours: { kid: string; privateKey: KeyObject; privateJwk: JWK };
const verifiers: TokenVerifier[] = [];

beforeAll(async () => {
  const { privateJwk } = await generateSigningKey("ES256");
  ours = { kid: privateJwk.kid!, privateKey: createPrivateKey({ key: privateJwk as import("node:crypto").JsonWebKey, format: "jwk" }), privateJwk };
  h = await startHarness(serviceConfig({ signingKeys: [privateJwk] }));
  feed = await startFeed(h.grpcUrl);
  service = createClient(IdentityService, createGrpcTransport({ baseUrl: h.grpcUrl }));
});

afterEach(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
});

afterAll(async () => {
  await feed?.close();
  await h?.close();
});

/** A verifier whose stream is live (and stays so: heartbeats are not due for a minute). */
async function liveVerifier(options: Partial<TokenVerifierOptions> = {}): Promise<TokenVerifier> {
  const v = createTokenVerifier({ grpcUrl: feed.grpcUrl, httpUrl: h.httpUrl, apiKey: API_KEY, issuer: ISSUER, ...options });
  verifiers.push(v);
  (await feed.nextStream()).send(caughtUp("c1", 60_000));
  await v.ready();
  return v;
}

type Outcome = { accepted: true } | { code: Code; reason: string | undefined };

async function outcomeOf(call: Promise<unknown>): Promise<Outcome> {
  try {
    await call;
    return { accepted: true };
  } catch (e) {
    const error = ConnectError.from(e);
    return { code: error.code, reason: error.findDetails(ErrorInfoSchema)[0]?.reason };
  }
}

const remote = (token: string) => outcomeOf(service.checkLogin({ accessToken: token }, { headers: { "x-api-key": API_KEY } }));

const b64url = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
type Header = Record<string, unknown>;
function signed(header: Header, payload: unknown, signer: (input: Buffer) => Buffer): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${signer(Buffer.from(input)).toString("base64url")}`;
}
const ecSigner = (key: KeyObject) => (input: Buffer) => sign("sha256", input, { key, dsaEncoding: "ieee-p1363" });
const header = (): Header => ({ alg: "ES256", kid: ours.kid, typ: "at+jwt" });
const nowSeconds = () => Math.floor(Date.now() / 1000);

describe("the service's rules, locally", () => {
  it("refuses every token the service refuses, with the same code and reason, and accepts what it accepts", async () => {
    const v = await liveVerifier();
    const me = await login(h);
    const claims = decodeJwt(me.access);
    const ourSign = (changes: Header, head: Header = header()) => signed(head, { ...claims, ...changes }, ecSigner(ours.privateKey));
    const [head, body, sig] = me.access.split(".") as [string, string, string];
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // The last character of a 64-byte signature carries 4 unused bits: flipping one keeps the bytes.
    const strayBits = `${head}.${body}.${sig.slice(0, -1)}${alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1]}`;
    const publicPem = createPublicKey(ours.privateKey).export({ type: "spki", format: "pem" }).toString();
    const attacker = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;

    const cases: Record<string, string> = {
      "the service's own": me.access,
      "ours, the same claims": ourSign({}),
      expired: ourSign({ iat: nowSeconds() - 7300, exp: nowSeconds() - 100 }),
      "not before later": ourSign({ nbf: nowSeconds() + 3600 }),
      "issued in the future": ourSign({ iat: nowSeconds() + 3600, exp: nowSeconds() + 7200 }),
      "issued just within the clock skew": ourSign({ iat: nowSeconds() + 30 }),
      "another issuer": ourSign({ iss: "someone-else" }),
      "no issuer": ourSign({ iss: undefined }),
      "numeric sid": ourSign({ sid: 1 }),
      "no sid": ourSign({ sid: undefined }),
      "string exp": ourSign({ exp: "9999999999" }),
      "no exp": ourSign({ exp: undefined }),
      "two audiences": ourSign({ aud: ["demo", "b"] }),
      "typ JWT": ourSign({}, { ...header(), typ: "JWT" }),
      "no typ": ourSign({}, { ...header(), typ: undefined }),
      "unknown kid": ourSign({}, { ...header(), kid: "unknown" }),
      "object kid": ourSign({}, { ...header(), kid: { $ne: null } }),
      "numeric kid": ourSign({}, { ...header(), kid: 1 }),
      "null kid": ourSign({}, { ...header(), kid: null }),
      "empty kid": ourSign({}, { ...header(), kid: "" }),
      "a jku": signed({ ...header(), jku: `${h.httpUrl}/.well-known/jwks.json` }, claims, ecSigner(attacker)),
      "unknown crit": ourSign({}, { ...header(), crit: ["x-custom"], "x-custom": 1 }),
      "alg none": `${b64url({ ...header(), alg: "none" })}.${body}.`,
      "HS256 keyed with our public key": signed({ ...header(), alg: "HS256" }, claims, (input) => createHmac("sha256", publicPem).update(input).digest()),
      "an attacker's key": signed(header(), claims, ecSigner(attacker)),
      "another subject under our signature": `${head}.${b64url({ ...claims, sub: "000000000000000000000000" })}.${sig}`,
      padding: `${me.access}=`,
      "stray bits in the last character": strayBits,
      "the refresh token": me.refresh,
      "one segment": "x",
      "empty segments": "..",
      "too long": `${me.access}${"A".repeat(4096)}`,
    };
    const outcomes: Record<string, { local: Outcome; remote: Outcome }> = {};
    for (const [name, token] of Object.entries(cases)) outcomes[name] = { local: await outcomeOf(v.check(token)), remote: await remote(token) };
    for (const [name, { local, remote }] of Object.entries(outcomes)) expect({ name, outcome: local }).toEqual({ name, outcome: remote });
    // The cases do what they say: three accepted, the rest refused for their reason.
    expect(Object.values(outcomes).filter((o) => "accepted" in o.remote)).toHaveLength(3);
    expect(outcomes.expired!.remote).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_EXPIRED" });
    expect(outcomes["stray bits in the last character"]!.remote).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_INVALID" });
  });

  it("refuses a cached token once it expires, and one whose app is not in `audience`", async () => {
    const v = await liveVerifier({ audience: ["demo"] });
    const me = await login(h);
    const shortLived = signed(header(), { ...decodeJwt(me.access), exp: nowSeconds() + 1 }, ecSigner(ours.privateKey));
    expect((await v.check(shortLived)).userId).toBe(me.body.user.id);
    expect(v.stats().cachedTokens).toBe(1);
    await expect.poll(() => outcomeOf(v.check(shortLived)), { timeout: 3000, interval: 50 }).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_EXPIRED" });
    const other = await liveVerifier({ audience: ["another-app"] });
    expect(await outcomeOf(other.check(me.access))).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_INVALID" });
  });

  it("answers TOKEN_MISSING for an empty token, UNAVAILABLE when the keys cannot be fetched", async () => {
    const v = await liveVerifier();
    expect(await outcomeOf(v.check(""))).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_MISSING" });
    const me = await login(h);
    const closed = await startHarness(serviceConfig());
    const jwksUrl = `${closed.httpUrl}/.well-known/jwks.json`;
    await closed.close();
    const keyless = createTokenVerifier({ grpcUrl: h.grpcUrl, jwksUrl, apiKey: API_KEY, issuer: ISSUER });
    verifiers.push(keyless);
    expect(await outcomeOf(keyless.check(me.access))).toEqual({ code: Code.Unavailable, reason: "UPSTREAM_UNAVAILABLE" });
    await expect(keyless.ready({ timeoutMs: 2000 })).rejects.toThrow(/the JWKS at http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json could not be loaded/);
  });
});

describe("key rotation", () => {
  it("picks up a key added to the JWKS when a token names it", async () => {
    const store = new MemoryStore();
    const fresh = await generateSigningKey("EdDSA");
    const first = await startHarness(serviceConfig({ signingKeys: [ours.privateJwk] }), {}, store);
    const port = String(new URL(first.httpUrl).port);
    const v = createTokenVerifier({ grpcUrl: first.grpcUrl, httpUrl: first.httpUrl, apiKey: API_KEY, issuer: ISSUER, whenStreamDown: "accept", jwksCooldownMs: 0 });
    verifiers.push(v);
    const old = await login(first);
    expect((await v.check(old.access)).userId).toBe(old.body.user.id);
    await first.close();
    // The same address, now signing with a new key and still listing the old one.
    const second = await startHarness(serviceConfig({ signingKeys: [fresh.privateJwk, ours.privateJwk] }), { PORT: port }, store);
    try {
      const rotated = await login(second);
      expect(decodeProtectedHeader(rotated.access)).toMatchObject({ kid: fresh.privateJwk.kid, alg: "EdDSA" });
      expect((await v.check(rotated.access)).userId).toBe(rotated.body.user.id);
      expect((await v.check(old.access)).userId).toBe(old.body.user.id);
    } finally {
      await second.close();
    }
  });
});
