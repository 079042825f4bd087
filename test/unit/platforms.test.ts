// The Alipay client and the Apple identity-token verifier, against the simulator over HTTP and, where
// the simulator would never misbehave that way, against a tiny stub gateway.
import { createHash, createSign, createVerify, generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AlipayError, createAlipayClient, kindOfAlipayError, rawMember, signingContent, type AlipayApp } from "../../src/platforms/alipay-client.js";
import { shanghaiTimestamp } from "../../src/platforms/shanghai-time.js";
import { AppleTokenError, createAppleVerifier } from "../../src/platforms/apple-verifier.js";
import { createWechatSimulator, type WechatSimulator } from "../../src/simulator/simulator.js";
import { injectFault, simPost } from "../support/harness.js";

const APPID = "2021000000000001";
const GATEWAY = "/alipay/gateway.do";
const CLIENT_ID = "com.example.app";

const spki = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();
const pkcs8 = (key: KeyObject) => key.export({ type: "pkcs8", format: "pem" }).toString();

let appKeys: { privateKey: KeyObject; publicKey: KeyObject };
let foreignKeys: { privateKey: KeyObject; publicKey: KeyObject };
let sim: WechatSimulator;
let app: AlipayApp;

beforeAll(async () => {
  appKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  foreignKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  sim = createWechatSimulator({ apps: {}, alipayApps: { [APPID]: spki(appKeys.publicKey) } });
  await sim.listen(0, "127.0.0.1");
  app = { appid: APPID, privateKeyPem: pkcs8(appKeys.privateKey), alipayPublicKeyPem: sim.alipayPublicKeyPem };
});
afterAll(() => sim.close());
beforeEach(async () => {
  await fetch(`${sim.url}/sim/faults`, { method: "DELETE" });
  await fetch(`${sim.url}/sim/calls`, { method: "DELETE" });
});

async function calls(): Promise<number> {
  const { counts } = (await (await fetch(`${sim.url}/sim/calls`)).json()) as { counts: Record<string, number> };
  return counts[GATEWAY] ?? 0;
}

async function authCode(body: { userId?: string; openId?: string } = {}): Promise<string> {
  return ((await simPost(sim.url, "/sim/alipay/auth-code", { appid: APPID, ...body })) as { code: string }).code;
}

/** "kind" or "kind:sub_code", or "ok"; also checks the message gives away no code or key. */
async function alipayOutcome(promise: Promise<unknown>, secrets: string[] = []): Promise<string> {
  try {
    await promise;
    return "ok";
  } catch (e) {
    if (!(e instanceof AlipayError)) throw e;
    for (const secret of secrets) expect(e.message).not.toContain(secret);
    expect(e.message).not.toContain("PRIVATE KEY");
    return e.subCode === undefined ? e.kind : `${e.kind}:${e.subCode}`;
  }
}

describe("Alipay client against the simulator", () => {
  const client = () => createAlipayClient({ gatewayUrl: `${sim.url}${GATEWAY}`, timeoutMs: 300 });

  it("redeems an auth code for the user_id, or the open_id of newer apps", async () => {
    const code = await authCode({ userId: "2088000000000007" });
    expect(await client().oauthToken(app, code)).toEqual({ userId: "2088000000000007" });
    const openId = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5";
    expect(await client().oauthToken(app, await authCode({ openId }))).toEqual({ userId: openId });
  });

  it("reports a used, unknown or foreign code as code_invalid, once each", async () => {
    const code = await authCode();
    await client().oauthToken(app, code);
    expect(await alipayOutcome(client().oauthToken(app, code), [code])).toBe("code_invalid:isv.code-invalid");
    expect(await alipayOutcome(client().oauthToken(app, "no-such-code"))).toBe("code_invalid:isv.code-invalid");
    expect(await calls()).toBe(3);
  });

  it("reports a wrong app key or an unknown app as misconfigured", async () => {
    const wrongKey = { ...app, privateKeyPem: pkcs8(foreignKeys.privateKey) };
    expect(await alipayOutcome(client().oauthToken(wrongKey, await authCode()))).toBe("misconfigured:isv.invalid-signature");
    expect(await alipayOutcome(client().oauthToken({ ...app, appid: "2021999999999999" }, await authCode()))).toBe("misconfigured:isv.invalid-app-id");
  });

  it("refuses unusable keys before sending anything, without quoting them", async () => {
    const code = await authCode();
    const broken = "-----BEGIN PRIVATE KEY-----\nTk9UQUtFWQ==\n-----END PRIVATE KEY-----\n";
    expect(await alipayOutcome(client().oauthToken({ ...app, privateKeyPem: broken }, code), ["Tk9UQUtFWQ"])).toBe("misconfigured");
    expect(await alipayOutcome(client().oauthToken({ ...app, alipayPublicKeyPem: "nope" }, code))).toBe("misconfigured");
    expect(await calls()).toBe(0);
    // The code is still good.
    expect(await alipayOutcome(client().oauthToken(app, code))).toBe("ok");
  });

  it("refuses an answer that does not verify with the Alipay public key it was given", async () => {
    const code = await authCode();
    const impostor = { ...app, alipayPublicKeyPem: spki(foreignKeys.publicKey) };
    expect(await alipayOutcome(client().oauthToken(impostor, code), [code])).toBe("bad_response");
    // The gateway did redeem it: the code is spent, and was sent exactly once.
    expect(await calls()).toBe(1);
    expect(await alipayOutcome(client().oauthToken(app, code))).toBe("code_invalid:isv.code-invalid");
  });

  it("reports Alipay's system-busy, HTTP errors, timeouts and lost connections as unavailable, never retrying", async () => {
    await injectFault(sim.url, { path: GATEWAY, errcode: 20000 });
    expect(await alipayOutcome(client().oauthToken(app, await authCode()))).toBe("unavailable:isp.unknow-error");
    await injectFault(sim.url, { path: GATEWAY, status: 502 });
    expect(await alipayOutcome(client().oauthToken(app, await authCode()))).toBe("unavailable");
    await injectFault(sim.url, { path: GATEWAY, delayMs: 1000 });
    expect(await alipayOutcome(client().oauthToken(app, await authCode()))).toBe("unavailable");
    await injectFault(sim.url, { path: GATEWAY, drop: true });
    expect(await alipayOutcome(client().oauthToken(app, await authCode()))).toBe("unavailable");
    expect(await calls()).toBe(4);
    const dead = createAlipayClient({ gatewayUrl: "http://127.0.0.1:1/gateway.do", timeoutMs: 300 });
    expect(await alipayOutcome(dead.oauthToken(app, "x"))).toBe("unavailable");
  });

  it("stops when the caller's signal aborts", async () => {
    await injectFault(sim.url, { path: GATEWAY, delayMs: 250 });
    const slow = createAlipayClient({ gatewayUrl: `${sim.url}${GATEWAY}`, timeoutMs: 5000 });
    const started = Date.now();
    expect(await alipayOutcome(slow.oauthToken(app, await authCode(), AbortSignal.timeout(50)))).toBe("unavailable");
    expect(Date.now() - started).toBeLessThan(240);
  });
});

describe("Alipay client against a stub gateway", () => {
  let server: Server;
  let url: string;
  let gatewayKeys: { privateKey: KeyObject; publicKey: KeyObject };
  let lastBody = "";
  let lastContentType = "";
  /** What the stub answers next: status and body text. */
  let next: { status: number; text: string } = { status: 200, text: "{}" };

  const sign = (text: string) => createSign("RSA-SHA256").update(text).sign(gatewayKeys.privateKey, "base64");
  const stubApp = () => ({ ...app, alipayPublicKeyPem: spki(gatewayKeys.publicKey) });
  const client = (now?: () => number) => createAlipayClient({ gatewayUrl: url, timeoutMs: 1000, ...(now ? { now } : {}) });

  beforeAll(async () => {
    gatewayKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });
    server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
      request.on("end", () => {
        lastBody = body;
        lastContentType = request.headers["content-type"] ?? "";
        response.writeHead(next.status, { "content-type": "application/json;charset=utf-8" }).end(next.text);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/gateway.do`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("sends the documented form, signed RSA2 over the sorted parameters", async () => {
    const node = '{"user_id":"2088000000000001"}';
    next = { status: 200, text: `{"alipay_system_oauth_token_response":${node},"sign":"${sign(node)}"}` };
    await client(() => Date.UTC(2026, 0, 31, 20, 5, 9)).oauthToken(stubApp(), "code+with&odd=chars");
    expect(lastContentType).toMatch(/^application\/x-www-form-urlencoded/);
    const params = Object.fromEntries(new URLSearchParams(lastBody));
    expect(params).toMatchObject({
      app_id: APPID,
      method: "alipay.system.oauth.token",
      format: "JSON",
      charset: "utf-8",
      sign_type: "RSA2",
      // 20:05:09 UTC is 04:05:09 the next day in Shanghai.
      timestamp: "2026-02-01 04:05:09",
      version: "1.0",
      grant_type: "authorization_code",
      code: "code+with&odd=chars",
    });
    const { sign: signature, ...unsigned } = params;
    const content = Object.keys(unsigned)
      .sort()
      .map((k) => `${k}=${unsigned[k]}`)
      .join("&");
    expect(content).toContain("code=code+with&odd=chars&");
    expect(createVerify("RSA-SHA256").update(content).verify(appKeys.publicKey, signature!, "base64")).toBe(true);
  });

  it("verifies the node's text exactly as sent, not a re-serialisation of it", async () => {
    // Spacing and escapes that JSON.stringify would not reproduce.
    const node = '{ "user_id" : "2088000000000002", "note": "a\\/b \\u4e2d {,}" }';
    next = { status: 200, text: `{"alipay_system_oauth_token_response":${node},"sign":"${sign(node)}"}` };
    expect(await client().oauthToken(stubApp(), "c")).toEqual({ userId: "2088000000000002" });
    // Signed over the re-serialised form instead: that is not what Alipay sent.
    const reserialised = JSON.stringify(JSON.parse(node));
    next = { status: 200, text: `{"alipay_system_oauth_token_response":${node},"sign":"${sign(reserialised)}"}` };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("bad_response");
  });

  it("refuses a success answer without a signature, with two response nodes, or without a user id", async () => {
    const node = '{"user_id":"2088000000000003"}';
    next = { status: 200, text: `{"alipay_system_oauth_token_response":${node}}` };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("bad_response");
    next = { status: 200, text: `{"alipay_system_oauth_token_response":${node},"alipay_system_oauth_token_response":${node},"sign":"${sign(node)}"}` };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("bad_response");
    const empty = '{"access_token":"t"}';
    next = { status: 200, text: `{"alipay_system_oauth_token_response":${empty},"sign":"${sign(empty)}"}` };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("bad_response");
    next = { status: 200, text: "<html>busy</html>" };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("bad_response");
  });

  it("believes an unsigned error answer, but not one with a bad signature", async () => {
    const error = '{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid","sub_msg":"授权码code无效"}';
    next = { status: 200, text: `{"error_response":${error}}` };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("code_invalid:isv.code-invalid");
    next = { status: 200, text: `{"error_response":${error},"sign":"${sign("something else")}"}` };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("bad_response");
    // A business error inside the method's own node counts too.
    const inNode = '{"code":"40004","msg":"Business Failed","sub_code":"isv.code-invalid"}';
    next = { status: 200, text: `{"alipay_system_oauth_token_response":${inNode},"sign":"${sign(inNode)}"}` };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("code_invalid:isv.code-invalid");
  });

  it("treats a 5xx as unavailable", async () => {
    next = { status: 503, text: "{}" };
    expect(await alipayOutcome(client().oauthToken(stubApp(), "c"))).toBe("unavailable");
  });
});

describe("Alipay helpers", () => {
  it("formats timestamps in Shanghai time", () => {
    expect(shanghaiTimestamp(Date.UTC(2025, 11, 31, 16, 0, 0))).toBe("2026-01-01 00:00:00");
  });

  it("signs non-empty parameters but sign, sorted by key", () => {
    expect(signingContent({ b: "2", sign: "x", a: "1", empty: "", A: "0" })).toBe("A=0&a=1&b=2");
  });

  it("finds a top-level member's raw text, skipping strings and nested members of the same name", () => {
    const text = '{"x":{"r":"}\\"{"},"r" : [1, {"r":2}] ,"s":"t"}';
    expect(rawMember(text, "r")).toBe('[1, {"r":2}]');
    expect(rawMember(text, "x")).toBe('{"r":"}\\"{"}');
    expect(rawMember(text, "s")).toBe('"t"');
    expect(rawMember(text, "missing")).toBeUndefined();
    expect(rawMember('{"a":1,"a":2}', "a")).toBeUndefined();
  });

  it("maps codes and sub_codes to kinds", () => {
    expect(
      [
        ["40002", "isv.code-invalid"],
        ["40002", "isv.invalid-signature"],
        ["40002", "isv.invalid-app-id"],
        ["40006", "isv.insufficient-isv-permissions"],
        ["20000", "isp.unknow-error"],
        ["20000", undefined],
        ["40004", "acq.something"],
      ].map(([code, sub]) => kindOfAlipayError(code, sub)),
    ).toEqual(["code_invalid", "misconfigured", "misconfigured", "misconfigured", "unavailable", "unavailable", "unexpected"]);
  });
});

describe("Apple identity-token verifier", () => {
  const verifier = () => createAppleVerifier({ jwksUrl: `${sim.url}/apple/auth/keys` });

  async function idToken(body: Record<string, unknown> = {}): Promise<{ idToken: string; sub: string }> {
    return simPost(sim.url, "/sim/apple/id-token", { clientId: CLIENT_ID, ...body });
  }

  async function simKid(): Promise<string> {
    const { keys } = (await (await fetch(`${sim.url}/apple/auth/keys`)).json()) as { keys: { kid: string }[] };
    return keys[0]!.kid;
  }

  async function appleOutcome(promise: Promise<unknown>): Promise<string> {
    try {
      await promise;
      return "ok";
    } catch (e) {
      if (e instanceof AppleTokenError) return e.kind;
      throw e;
    }
  }

  /** A token with Apple's claims for us, signed by someone else. */
  async function forged(kid: string, key: KeyObject | Uint8Array, alg = "RS256"): Promise<string> {
    return new SignJWT({ sub: "001234.forged.0123" }).setProtectedHeader({ alg, kid }).setIssuer("https://appleid.apple.com").setAudience(CLIENT_ID).setIssuedAt().setExpirationTime("10m").sign(key);
  }

  it("returns sub and email of a valid token for one of our client ids", async () => {
    const minted = await idToken({ email: "x@privaterelay.appleid.com" });
    expect(await verifier().verify(minted.idToken, { audience: ["com.example.other", CLIENT_ID] })).toEqual({
      sub: minted.sub,
      email: "x@privaterelay.appleid.com",
      emailVerified: true,
    });
    const plain = await idToken();
    expect(await verifier().verify(plain.idToken, { audience: [CLIENT_ID] })).toEqual({ sub: plain.sub });
  });

  it("refuses a token for another client id, or from another issuer", async () => {
    const { idToken: token } = await idToken({ clientId: "com.example.other" });
    expect(await appleOutcome(verifier().verify(token, { audience: [CLIENT_ID] }))).toBe("invalid");
    const ours = (await idToken()).idToken;
    const elsewhere = createAppleVerifier({ jwksUrl: `${sim.url}/apple/auth/keys`, issuer: "https://example.com" });
    expect(await appleOutcome(elsewhere.verify(ours, { audience: [CLIENT_ID] }))).toBe("invalid");
  });

  it("reports an expired token as expired", async () => {
    const { idToken: token } = await idToken({ expiresInSeconds: -60 });
    expect(await appleOutcome(verifier().verify(token, { audience: [CLIENT_ID] }))).toBe("expired");
  });

  it("checks the nonce: raw or SHA-256 hex of it, and present when expected", async () => {
    const nonce = "d5f1c0a1-raw-nonce";
    const hashed = createHash("sha256").update(nonce).digest("hex");
    const raw = (await idToken({ nonce })).idToken;
    const viaHash = (await idToken({ nonce: hashed })).idToken;
    const none = (await idToken()).idToken;
    expect(await appleOutcome(verifier().verify(raw, { audience: [CLIENT_ID], nonce }))).toBe("ok");
    expect(await appleOutcome(verifier().verify(viaHash, { audience: [CLIENT_ID], nonce }))).toBe("ok");
    expect(await appleOutcome(verifier().verify(raw, { audience: [CLIENT_ID], nonce: "other" }))).toBe("invalid");
    // The hash is not a nonce of its own: handing over what the token carries does not pass for the raw value's hash.
    expect(await appleOutcome(verifier().verify(viaHash, { audience: [CLIENT_ID], nonce: createHash("sha256").update(hashed).digest("hex") }))).toBe("invalid");
    expect(await appleOutcome(verifier().verify(none, { audience: [CLIENT_ID], nonce }))).toBe("invalid");
    // Without an expected nonce, the claim is not checked.
    expect(await appleOutcome(verifier().verify(raw, { audience: [CLIENT_ID] }))).toBe("ok");
  });

  it("refuses tokens signed by a foreign key, whatever kid they name", async () => {
    const kid = await simKid();
    expect(await appleOutcome(verifier().verify(await forged(kid, foreignKeys.privateKey), { audience: [CLIENT_ID] }))).toBe("invalid");
    expect(await appleOutcome(verifier().verify(await forged("FOREIGN", foreignKeys.privateKey), { audience: [CLIENT_ID] }))).toBe("invalid");
  });

  it("refuses alg none and an HMAC keyed with Apple's public key", async () => {
    const kid = await simKid();
    const unsecured = new UnsecuredJWT({ sub: "001234.none.0123" }).setIssuer("https://appleid.apple.com").setAudience(CLIENT_ID).setIssuedAt().setExpirationTime("10m").encode();
    expect(await appleOutcome(verifier().verify(unsecured, { audience: [CLIENT_ID] }))).toBe("invalid");
    const jwks = await (await fetch(`${sim.url}/apple/auth/keys`)).text();
    const confused = await forged(kid, new TextEncoder().encode(jwks), "HS256");
    expect(await appleOutcome(verifier().verify(confused, { audience: [CLIENT_ID] }))).toBe("invalid");
    expect(await appleOutcome(verifier().verify("not.a.jwt", { audience: [CLIENT_ID] }))).toBe("invalid");
  });

  it("reports unreachable or broken key sets as unavailable, not as a bad token", async () => {
    const { idToken: token } = await idToken();
    const dead = createAppleVerifier({ jwksUrl: "http://127.0.0.1:1/auth/keys" });
    expect(await appleOutcome(dead.verify(token, { audience: [CLIENT_ID] }))).toBe("unavailable");
    const missing = createAppleVerifier({ jwksUrl: `${sim.url}/apple/auth/nope` });
    expect(await appleOutcome(missing.verify(token, { audience: [CLIENT_ID] }))).toBe("unavailable");
  });
});
