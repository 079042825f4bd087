import { createSign, createVerify, generateKeyPairSync, type KeyObject } from "node:crypto";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createAlipayClient } from "../src/platforms/alipay-client.js";
import { createWechatSimulator, type WechatSimulator } from "../src/simulator/simulator.js";
import { simHttp, type Json } from "./support/sim-http.js";

// The simulated Alipay gateway and Sign in with Apple over real HTTP, as the service's clients and a
// test harness see them. Requests to the gateway are signed here by hand (except where the real
// client is the point), so the simulator's RSA2 check is tested against an independent signer.
// One simulator for the file (its RSA keys take a while to make); faults and counts reset per test.

const APP = "2021000000000001";
const OTHER_APP = "2021000000000002";
const GATEWAY = "/alipay/gateway.do";
const T0 = Date.UTC(2026, 0, 1, 4, 0, 0);
const MINUTE = 60_000;

const pemOf = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();
let appKeys: { privateKey: KeyObject; publicKey: KeyObject };
let otherKeys: { privateKey: KeyObject; publicKey: KeyObject };

let sim: WechatSimulator;
let base: string;

beforeAll(async () => {
  appKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  otherKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  sim = createWechatSimulator({
    apps: {},
    alipayApps: { [APP]: pemOf(appKeys.publicKey), [OTHER_APP]: pemOf(otherKeys.publicKey) },
    now: () => T0,
  });
  base = await sim.listen(0, "127.0.0.1");
});

afterAll(async () => {
  await sim.close();
});

beforeEach(async () => {
  await call("/sim/faults", { method: "DELETE" });
  await call("/sim/calls", { method: "DELETE" });
});

const { call, postJson, control } = simHttp(() => base);

/** The simulator's current time: T0 plus whatever /sim/clock has added so far. */
async function simNow(): Promise<number> {
  return (await control("/sim/clock", { advanceMs: 0 })).now as number;
}

const mintAuthCode = (request: Json = {}) => control("/sim/alipay/auth-code", { appid: APP, ...request });

/** An oauth.token request signed RSA2 with `key`: sorted non-empty params but sign, raw values. */
function signedParams(code: string, key: KeyObject = appKeys.privateKey, overrides: Record<string, string> = {}) {
  const params: Record<string, string> = {
    app_id: APP,
    method: "alipay.system.oauth.token",
    format: "JSON",
    charset: "utf-8",
    sign_type: "RSA2",
    timestamp: "2026-01-01 12:00:00",
    version: "1.0",
    grant_type: "authorization_code",
    code,
    ...overrides,
  };
  const content = Object.keys(params)
    .filter((k) => params[k] !== "")
    .sort()
    .map((k) => `${k}=${params[k]}`)
    .join("&");
  params.sign = createSign("RSA-SHA256").update(content).sign(key, "base64");
  return params;
}

async function gateway(params: Record<string, string>) {
  const answer = await call(GATEWAY, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded;charset=utf-8" },
    body: new URLSearchParams(params),
  });
  expect(answer.status).toBe(200);
  return answer;
}

/** The raw node text the gateway signed, and whether its sign verifies with the simulator's key. */
function verifiesWithGatewayKey(text: string, node: string): boolean {
  const match = new RegExp(`^\\{"${node}":(\\{.*\\}),"sign":"([^"]+)"\\}$`).exec(text);
  if (match === null) return false;
  return createVerify("RSA-SHA256").update(match[1]!).verify(sim.alipayPublicKeyPem, match[2]!, "base64");
}

async function calls(): Promise<number> {
  return ((await call("/sim/calls")).body.counts[GATEWAY] as number | undefined) ?? 0;
}

describe("Alipay gateway: alipay.system.oauth.token", () => {
  it("redeems a code for a request the real client signs, and signs its answer", async () => {
    const { code, userId } = await mintAuthCode();
    expect(userId).toMatch(/^2088\d{12}$/);
    const client = createAlipayClient({ gatewayUrl: `${base}${GATEWAY}`, timeoutMs: 2000 });
    const keys = {
      appid: APP,
      privateKeyPem: appKeys.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      alipayPublicKeyPem: sim.alipayPublicKeyPem,
    };
    expect(await client.oauthToken(keys, code as string)).toEqual({ userId });
  });

  it("answers the documented fields, signed with the key it publishes", async () => {
    const { code, userId } = await mintAuthCode({ userId: "2088000000000042" });
    expect(userId).toBe("2088000000000042");
    const { text, body } = await gateway(signedParams(code));
    const node = body.alipay_system_oauth_token_response;
    expect(node).toMatchObject({ user_id: "2088000000000042", expires_in: "3600" });
    expect(typeof node.access_token).toBe("string");
    expect(typeof node.refresh_token).toBe("string");
    expect(Number(node.re_expires_in)).toBeGreaterThan(3600);
    expect(node.open_id).toBeUndefined();
    expect(verifiesWithGatewayKey(text, "alipay_system_oauth_token_response")).toBe(true);
    expect((await call("/sim/alipay/public-key")).body).toEqual({ publicKeyPem: sim.alipayPublicKeyPem });
    expect(sim.alipayPublicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
  });

  it("answers open_id instead of user_id for a code minted with an openId", async () => {
    const minted = await mintAuthCode({ openId: "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5" });
    expect(minted).toEqual({ code: expect.any(String), openId: "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5" });
    const { body } = await gateway(signedParams(minted.code));
    expect(body.alipay_system_oauth_token_response.open_id).toBe(minted.openId);
    expect(body.alipay_system_oauth_token_response.user_id).toBeUndefined();
  });

  it("accepts the parameters in the query string too, as the SDKs send the common ones", async () => {
    const { code, userId } = await mintAuthCode();
    const params = signedParams(code);
    const { body } = await call(`${GATEWAY}?${new URLSearchParams(params)}`, { method: "POST" });
    expect(body.alipay_system_oauth_token_response.user_id).toBe(userId);
  });

  it("refuses a request signed with another key, without spending the code", async () => {
    const { code, userId } = await mintAuthCode();
    const { body, text } = await gateway(signedParams(code, otherKeys.privateKey));
    expect(body.error_response).toMatchObject({ code: "40002", sub_code: "isv.invalid-signature" });
    expect(verifiesWithGatewayKey(text, "error_response")).toBe(true);
    // A tampered parameter breaks the signature too.
    const tampered = { ...signedParams(code), grant_type: "refresh_token" };
    expect((await gateway(tampered)).body.error_response.sub_code).toBe("isv.invalid-signature");
    expect((await gateway(signedParams(code))).body.alipay_system_oauth_token_response.user_id).toBe(userId);
  });

  it("refuses an unsigned request and a sign_type other than RSA2", async () => {
    const { code } = await mintAuthCode();
    const { sign: _sign, ...unsigned } = signedParams(code);
    expect((await gateway(unsigned)).body.error_response).toMatchObject({ code: "40001", sub_code: "isv.missing-signature" });
    const rsa1 = signedParams(code, appKeys.privateKey, { sign_type: "RSA" });
    expect((await gateway(rsa1)).body.error_response.sub_code).toBe("isv.invalid-signature-type");
  });

  it("refuses an unknown app", async () => {
    const { code } = await mintAuthCode();
    const { body } = await gateway(signedParams(code, appKeys.privateKey, { app_id: "2021999999999999" }));
    expect(body.error_response).toMatchObject({ code: "40002", msg: "Invalid Arguments", sub_code: "isv.invalid-app-id" });
    expect(typeof body.sign).toBe("string");
  });

  it("refuses other methods and grant types", async () => {
    const { code } = await mintAuthCode();
    const other = signedParams(code, appKeys.privateKey, { method: "alipay.user.info.share" });
    expect((await gateway(other)).body.error_response.sub_code).toBe("isv.invalid-method");
    const refresh = signedParams(code, appKeys.privateKey, { grant_type: "refresh_token" });
    expect((await gateway(refresh)).body.error_response.sub_code).toBe("isv.grant-type-invalid");
  });

  it("redeems a code once", async () => {
    const { code } = await mintAuthCode();
    expect((await gateway(signedParams(code))).body.alipay_system_oauth_token_response).toBeDefined();
    const { body } = await gateway(signedParams(code));
    expect(body.error_response).toMatchObject({ code: "40002", sub_code: "isv.code-invalid" });
  });

  it("refuses another app's code and an unknown one", async () => {
    const { code } = await control("/sim/alipay/auth-code", { appid: OTHER_APP });
    expect((await gateway(signedParams(code))).body.error_response.sub_code).toBe("isv.code-invalid");
    expect((await gateway(signedParams("no-such-code"))).body.error_response.sub_code).toBe("isv.code-invalid");
    // Still good for its own app.
    const own = signedParams(code, otherKeys.privateKey, { app_id: OTHER_APP });
    expect((await gateway(own)).body.alipay_system_oauth_token_response).toBeDefined();
  });

  it("lets a code expire after 3 minutes", async () => {
    const early = await mintAuthCode();
    const late = await mintAuthCode();
    await control("/sim/clock", { advanceMs: 3 * MINUTE - 1 });
    expect((await gateway(signedParams(early.code))).body.alipay_system_oauth_token_response).toBeDefined();
    await control("/sim/clock", { advanceMs: 1 });
    expect((await gateway(signedParams(late.code))).body.error_response.sub_code).toBe("isv.code-invalid");
  });
});

describe("Alipay gateway: faults and calls", () => {
  it("answers an injected errcode as a signed error_response with that code", async () => {
    await control("/sim/faults", { path: GATEWAY, errcode: 20000 });
    const { code, userId } = await mintAuthCode();
    const { body, text } = await gateway(signedParams(code));
    expect(body.error_response).toMatchObject({ code: "20000", sub_code: "isp.unknow-error" });
    expect(verifiesWithGatewayKey(text, "error_response")).toBe(true);
    // The fault did not spend the code.
    expect((await gateway(signedParams(code))).body.alipay_system_oauth_token_response.user_id).toBe(userId);
  });

  it("answers an HTTP status, and drops the connection after spending the code", async () => {
    await control("/sim/faults", { path: GATEWAY, status: 502 });
    const { code } = await mintAuthCode();
    const failed = await call(GATEWAY, { method: "POST", body: new URLSearchParams(signedParams(code)) });
    expect(failed.status).toBe(502);
    await control("/sim/faults", { path: GATEWAY, drop: true });
    await expect(fetch(`${base}${GATEWAY}`, { method: "POST", body: new URLSearchParams(signedParams(code)) })).rejects.toThrow();
    expect((await gateway(signedParams(code))).body.error_response.sub_code).toBe("isv.code-invalid");
  });

  it("delays the real answer", async () => {
    await control("/sim/faults", { path: GATEWAY, delayMs: 200 });
    const { code } = await mintAuthCode();
    const started = performance.now();
    expect((await gateway(signedParams(code))).body.alipay_system_oauth_token_response).toBeDefined();
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
  });

  it("counts gateway requests, failed ones included, in /sim/calls", async () => {
    expect(await calls()).toBe(0);
    await gateway(signedParams("nope"));
    await gateway(signedParams("nope", otherKeys.privateKey));
    expect(await calls()).toBe(2);
    await call("/sim/calls", { method: "DELETE" });
    expect(await calls()).toBe(0);
  });
});

describe("Alipay control API", () => {
  it("404s an unknown appid and 400s bad input", async () => {
    expect((await postJson("/sim/alipay/auth-code", { appid: "2021999999999999" })).status).toBe(404);
    const both = await postJson("/sim/alipay/auth-code", { appid: APP, userId: "2088000000000001", openId: "0abc" });
    expect(both.status).toBe(400);
    expect(both.body.error).toContain("openId");
    expect((await postJson("/sim/alipay/auth-code", { appid: APP, openid: "typo" })).status).toBe(400);
    expect((await call("/sim/alipay/auth-code", { method: "POST", body: "{" })).status).toBe(400);
  });

  it("refuses a simulator option that is not a public key", () => {
    expect(() => createWechatSimulator({ apps: {}, alipayApps: { [APP]: "not a pem" } })).toThrow(/alipayApps/);
  });
});

describe("Sign in with Apple", () => {
  const CLIENT_ID = "com.example.app";

  async function jwks(): Promise<Json> {
    const { status, body } = await call("/apple/auth/keys");
    expect(status).toBe(200);
    return body;
  }

  it("publishes one RS256 signing key", async () => {
    const { keys } = await jwks();
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty: "RSA", alg: "RS256", use: "sig", e: "AQAB" });
    expect(typeof keys[0].kid).toBe("string");
    expect(keys[0].d).toBeUndefined();
    expect((await jwks()).keys[0].kid).toBe(keys[0].kid);
  });

  it("mints identity tokens that verify against the JWKS, with Apple's claims", async () => {
    const minted = await control("/sim/apple/id-token", { clientId: CLIENT_ID, email: "a@example.com", nonce: "n-1" });
    expect(minted.sub).toMatch(/^\d{6}\.[0-9a-f]{32}\.\d{4}$/);
    const keySet = createLocalJWKSet((await jwks()) as Parameters<typeof createLocalJWKSet>[0]);
    const now = await simNow();
    const { payload, protectedHeader } = await jwtVerify(minted.idToken, keySet, {
      issuer: "https://appleid.apple.com",
      audience: CLIENT_ID,
      currentDate: new Date(now),
    });
    expect(protectedHeader).toMatchObject({ alg: "RS256", kid: (await jwks()).keys[0].kid });
    expect(payload).toMatchObject({
      sub: minted.sub,
      iat: now / 1000,
      exp: now / 1000 + 600,
      nonce: "n-1",
      email: "a@example.com",
      email_verified: "true",
    });
  });

  it("takes sub and lifetime from the request, negative for an expired token, on the simulator's clock", async () => {
    const before = await simNow();
    await control("/sim/clock", { advanceMs: MINUTE });
    const minted = await control("/sim/apple/id-token", { clientId: CLIENT_ID, sub: "001234.fixed.0123", expiresInSeconds: -30 });
    expect(minted.sub).toBe("001234.fixed.0123");
    const claims = decodeJwt(minted.idToken);
    expect(claims.iat).toBe((before + MINUTE) / 1000);
    expect(claims.exp).toBe((before + MINUTE) / 1000 - 30);
    expect(claims.nonce).toBeUndefined();
    expect(claims.email).toBeUndefined();
    expect(decodeProtectedHeader(minted.idToken).alg).toBe("RS256");
  });

  it("400s bad input", async () => {
    expect((await postJson("/sim/apple/id-token", {})).status).toBe(400);
    expect((await postJson("/sim/apple/id-token", { clientId: CLIENT_ID, expiresInSeconds: 1.5 })).status).toBe(400);
    expect((await postJson("/sim/apple/id-token", { clientId: CLIENT_ID, email: "nope" })).status).toBe(400);
    expect((await postJson("/sim/apple/id-token", { clientId: CLIENT_ID, aud: "x" })).status).toBe(400);
  });
});
