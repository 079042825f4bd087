// Attacks on access tokens, against the real listeners (Connect JSON on HTTP/1.1, gRPC on h2c):
// every forgery, confusion and malformed shape is refused with UNAUTHENTICATED and its reason, never 500.
import { createHash, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import fc from "fast-check";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAccessTokens, generateSigningKey, type AccessTokens } from "../src/auth/access-tokens.js";
import { TokenError } from "../src/auth/errors.js";
import { b64url, expectCleanLogs, expectJsonRefusal, expectRefusedEverywhere, grpcCheck, grpcClient } from "./support/attack.js";
import { login, reasonOf, rpc, SERVICE, startHarness, type Harness } from "./support/harness.js";

const API_KEY = "attack-internal-key-0123456789";
const APP_A = { id: "a", platform: "wechat-miniprogram", appid: "wx00000000000000a1", secret: "sa" };
const APP_B = { id: "b", platform: "wechat-miniprogram", appid: "wx00000000000000b2", secret: "sb" };

let h: Harness;
let client: ReturnType<typeof grpcClient>;
let ourKey: { kid: string; privateKey: KeyObject; publicJwk: Record<string, unknown>; publicPem: string };
let me: Awaited<ReturnType<typeof login>>;
let claims: Record<string, unknown>;
const kidServer = { server: null as Server | null, url: "", hits: 0 };

beforeAll(async () => {
  const { privateJwk } = await generateSigningKey("ES256");
  const privateKey = createPrivateKey({ key: privateJwk as import("node:crypto").JsonWebKey, format: "jwk" });
  const { d: _d, ...publicJwk } = privateJwk;
  ourKey = { kid: privateJwk.kid!, privateKey, publicJwk, publicPem: createPublicKey(privateKey).export({ type: "spki", format: "pem" }).toString() };
  h = await startHarness({
    apps: [APP_A, APP_B],
    signingKeys: [privateJwk],
    internalCallers: [{ name: "ops", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
  });
  client = grpcClient(h);
  me = await login(h, { appid: APP_A.appid }, "a");
  claims = decodeJwt(me.access);
  // Where jku / x5u point: the service must never fetch from it.
  kidServer.server = createServer((_req, res) => {
    kidServer.hits++;
    res.end(JSON.stringify({ keys: [] }));
  });
  await new Promise<void>((resolve) => kidServer.server!.listen(0, "127.0.0.1", resolve));
  kidServer.url = `http://127.0.0.1:${(kidServer.server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  kidServer.server?.close();
  await h?.close();
});

type Header = Record<string, unknown>;

/** Signs header.payload with `alg` as an attacker (or we, with ourKey) would. */
function signed(header: Header, payload: unknown, signer: (input: Buffer) => Buffer): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${signer(Buffer.from(input)).toString("base64url")}`;
}

const ecSigner = (key: KeyObject, hash: string) => (input: Buffer) => sign(hash, input, { key, dsaEncoding: "ieee-p1363" });
const ourSigner = () => ecSigner(ourKey.privateKey, "sha256");
const hmacSigner = (hash: string, secret: string | Buffer) => (input: Buffer) => createHmac(hash, secret).update(input).digest();
const ourHeader = (): Header => ({ alg: "ES256", kid: ourKey.kid, typ: "at+jwt" });
/** Our own key over `changes` to the logged-in user's claims: tests every check after the signature. */
const ours = (changes: Header, header: Header = ourHeader()) => signed(header, { ...claims, ...changes }, ourSigner());

describe("the baseline", () => {
  it("accepts the real token and one we sign the same way, on both listeners", async () => {
    expect((await rpc(h.httpUrl, "CheckLogin", {}, me.access)).json.user.id).toBe(me.body.user.id);
    expect(await grpcCheck(client, me.access)).toBeNull();
    // Proves the forgery helpers are right: every refusal below is the attack's doing.
    expect(await grpcCheck(client, ours({}))).toBeNull();
  });
});

describe("algorithms", () => {
  const sigOf = () => me.access.split(".")[2]!;
  for (const alg of ["none", "None", "NONE", "nOnE"]) {
    it(`refuses alg ${alg}, with an empty and with the original signature`, async () => {
      const input = `${b64url({ ...ourHeader(), alg })}.${b64url(claims)}`;
      await expectRefusedEverywhere(h, client, `${input}.`, "TOKEN_INVALID");
      await expectRefusedEverywhere(h, client, `${input}.${sigOf()}`, "TOKEN_INVALID");
    });
  }

  it("refuses HS256/384/512 keyed with our public key (key confusion)", async () => {
    const secrets: Array<string | Buffer> = [ourKey.publicPem, JSON.stringify(ourKey.publicJwk), Buffer.from(String(ourKey.publicJwk.x), "base64url")];
    for (const [alg, hash] of [
      ["HS256", "sha256"],
      ["HS384", "sha384"],
      ["HS512", "sha512"],
    ] as const) {
      for (const secret of secrets) await expectRefusedEverywhere(h, client, signed({ ...ourHeader(), alg }, claims, hmacSigner(hash, secret)), "TOKEN_INVALID");
    }
  });

  it("refuses algorithms we do not sign with, each with a key that fits it", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    const cases: Array<[string, (input: Buffer) => Buffer]> = [
      ["RS256", (input) => sign("sha256", input, rsa)],
      ["PS256", (input) => sign("sha256", input, { key: rsa, padding: 6 /* RSA_PKCS1_PSS_PADDING */ })],
      ["ES384", ecSigner(generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey, "sha384")],
      ["ES512", ecSigner(generateKeyPairSync("ec", { namedCurve: "P-521" }).privateKey, "sha512")],
      ["EdDSA", (input) => sign(null, input, generateKeyPairSync("ed25519").privateKey)],
      ["ES256K", ecSigner(generateKeyPairSync("ec", { namedCurve: "secp256k1" }).privateKey, "sha256")],
    ];
    for (const [alg, signer] of cases) await expectRefusedEverywhere(h, client, signed({ ...ourHeader(), alg }, claims, signer), "TOKEN_INVALID");
  });

  it("refuses an ES256 token from an attacker's key, whether or not it embeds that key", async () => {
    const attacker = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = attacker.publicKey.export({ format: "jwk" });
    await expectRefusedEverywhere(h, client, signed(ourHeader(), claims, ecSigner(attacker.privateKey, "sha256")), "TOKEN_INVALID");
    await expectRefusedEverywhere(h, client, signed({ ...ourHeader(), jwk }, claims, ecSigner(attacker.privateKey, "sha256")), "TOKEN_INVALID");
    const { kid: _kid, ...noKid } = ourHeader();
    await expectRefusedEverywhere(h, client, signed({ ...noKid, jwk }, claims, ecSigner(attacker.privateKey, "sha256")), "TOKEN_INVALID");
  });
});

describe("signatures", () => {
  it("refuses a stripped, truncated, altered, or borrowed signature", async () => {
    const [head, body, sig] = me.access.split(".") as [string, string, string];
    const flipped = sig[5] === "A" ? "B" : "A";
    const other = (await login(h, { appid: APP_A.appid }, "a")).access.split(".")[2]!;
    for (const token of [
      `${head}.${body}.`,
      `${head}.${body}`,
      `${head}.${body}.${sig.slice(0, -4)}`,
      `${head}.${body}.${sig.slice(0, 5)}${flipped}${sig.slice(6)}`,
      `${head}.${body}.${Buffer.alloc(64).toString("base64url")}`,
      `${head}.${body}.${other}`,
      `${head}.${b64url({ ...claims, sub: "000000000000000000000000" })}.${sig}`,
    ]) {
      await expectRefusedEverywhere(h, client, token, "TOKEN_INVALID");
    }
  });
});

describe("kid and key-locating headers", () => {
  it("refuses unknown and hostile kids, signed by us", async () => {
    for (const kid of ["unknown", "../../etc/passwd", "' OR 1=1 --", { $ne: null }, [ourKey.kid], 1, null, true, "k".repeat(10_240), ""]) {
      // Signed with our key: only the kid is wrong, so a lax key lookup would let it through.
      await expectRefusedEverywhere(h, client, ours({}, { ...ourHeader(), kid }), "TOKEN_INVALID");
    }
  });

  it("never fetches jku or x5u, and refuses what they name", async () => {
    const attacker = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    for (const extra of [{ jku: `${kidServer.url}/jwks.json` }, { x5u: `${kidServer.url}/cert.pem` }, { jku: `${kidServer.url}/jwks.json`, x5u: `${kidServer.url}/x` }]) {
      await expectRefusedEverywhere(h, client, signed({ ...ourHeader(), ...extra }, claims, ecSigner(attacker, "sha256")), "TOKEN_INVALID");
    }
    expect(kidServer.hits).toBe(0);
  });

  it("refuses an unknown crit header, even signed by us", async () => {
    await expectRefusedEverywhere(h, client, ours({}, { ...ourHeader(), crit: ["x-custom"], "x-custom": 1 }), "TOKEN_INVALID");
    await expectRefusedEverywhere(h, client, ours({}, { ...ourHeader(), crit: ["b64"], b64: false }), "TOKEN_INVALID");
    await expectRefusedEverywhere(h, client, ours({}, { ...ourHeader(), crit: "exp" }), "TOKEN_INVALID");
  });
});

describe("claims, signed with our own key", () => {
  const nowSeconds = () => Math.floor(Date.now() / 1000);

  it("says TOKEN_EXPIRED for an expired token", async () => {
    await expectRefusedEverywhere(h, client, ours({ iat: nowSeconds() - 7300, exp: nowSeconds() - 100 }), "TOKEN_EXPIRED");
  });

  it("refuses one not yet valid (nbf or iat in the future)", async () => {
    await expectRefusedEverywhere(h, client, ours({ nbf: nowSeconds() + 3600 }), "TOKEN_INVALID");
    await expectRefusedEverywhere(h, client, ours({ iat: nowSeconds() + 3600, exp: nowSeconds() + 7200 }), "TOKEN_INVALID");
  });

  it("refuses a wrong issuer, a missing one, and claims of the wrong type", async () => {
    for (const changes of [
      { iss: "someone-else" },
      { iss: undefined },
      { sid: 1 },
      { sid: undefined },
      { exp: "9999999999" },
      { exp: undefined },
      { aud: ["a", "b"] },
      { exp: Number.POSITIVE_INFINITY },
    ]) {
      await expectRefusedEverywhere(h, client, ours(changes), "TOKEN_INVALID");
    }
  });

  it("refuses app A's session presented with app B's audience, and an unknown audience", async () => {
    const other = await login(h, { appid: APP_B.appid }, "b");
    expect((await rpc(h.httpUrl, "CheckLogin", {}, other.access)).json.appId).toBe("b");
    expect(decodeJwt(other.access).aud).toBe("b");
    await expectRefusedEverywhere(h, client, ours({ aud: "b" }), "TOKEN_INVALID");
    await expectRefusedEverywhere(h, client, ours({ aud: "nope" }), "TOKEN_INVALID");
    // B's session with A's user as the subject.
    await expectRefusedEverywhere(h, client, ours({ sid: decodeJwt(other.access).sid, aud: "b" }), "TOKEN_INVALID");
  });

  it("refuses another kind of token: wrong or absent typ, and the refresh token", async () => {
    for (const typ of ["JWT", "jwt", "refresh+jwt", "at+jwt ", "", undefined, 1]) {
      await expectRefusedEverywhere(h, client, ours({}, { ...ourHeader(), typ }), "TOKEN_INVALID");
    }
    await expectRefusedEverywhere(h, client, me.refresh, "TOKEN_INVALID");
  });
});

describe("replay", () => {
  it("refuses a token after Logout with TOKEN_REVOKED", async () => {
    const session = await login(h, { appid: APP_A.appid }, "a");
    expect((await rpc(h.httpUrl, "Logout", {}, session.access)).status).toBe(200);
    await expectRefusedEverywhere(h, client, session.access, "TOKEN_REVOKED");
  });

  it("refuses a disabled user's token with ACCOUNT_DISABLED (PERMISSION_DENIED, as DESIGN.md says)", async () => {
    const victim = await login(h, { appid: APP_A.appid }, "a");
    const setStatus = (status: string) => rpc(h.httpUrl, "UpdateUser", { user: { id: victim.body.user.id, status }, updateMask: "status" }, undefined, { "x-api-key": API_KEY });
    expect((await setStatus("USER_STATUS_DISABLED")).status).toBe(200);
    await expectRefusedEverywhere(h, client, victim.access, "ACCOUNT_DISABLED", Code.PermissionDenied);
    expectJsonRefusal(await rpc(h.httpUrl, "Refresh", { refreshToken: victim.refresh }), 403, "ACCOUNT_DISABLED");
  });
});

describe("malformed shapes", () => {
  it("refuses every malformed shape with TOKEN_INVALID", async () => {
    const [head, body, sig] = me.access.split(".") as [string, string, string];
    const shapes = [
      "x",
      head,
      `${head}.${body}`,
      `${head}.${body}.${sig}.${sig}`,
      `${head}.${body}.${sig}.`,
      "..",
      "...",
      `.${body}.${sig}`,
      `${head}..${sig}`,
      `${head}.${body}.${sig}=`,
      `${head}!.${body}.${sig}`,
      `${head}.${body}.${sig.replace(/.$/, "*")}`,
      `${b64url("{not json")}.${body}.${sig}`,
      `${b64url([ourHeader()])}.${body}.${sig}`,
      `${b64url("null")}.${body}.${sig}`,
      `${b64url('"ES256"')}.${body}.${sig}`,
      `${head}.${b64url("[1,2]")}.${sig}`,
      `${head}.${b64url("not json")}.${sig}`,
      `${b64url({ ...ourHeader(), alg: Number.POSITIVE_INFINITY })}.${body}.${sig}`,
      `${head}.${b64url(`{"sid":"${claims.sid}","exp":1${"0".repeat(400)}}`)}.${sig}`,
      `${head}.${body}.${"A".repeat(2000)}`,
    ];
    for (const token of shapes) await expectRefusedEverywhere(h, client, token, "TOKEN_INVALID");
    // A scheme other than Bearer, and a bare scheme.
    for (const authorization of [`Basic ${me.access}`, "Bearer", "Bearer  ", `Bearer ${me.access} x`]) {
      expectJsonRefusal(await rpc(h.httpUrl, "CheckLogin", {}, undefined, { authorization }), 401, "TOKEN_INVALID");
    }
  });

  it("answers huge Authorization headers with 431 or TOKEN_INVALID on HTTP/1.1, and keeps serving", async () => {
    for (const size of [8 * 1024, 15 * 1024, 17 * 1024, 64 * 1024, 1024 * 1024]) {
      const token = `${me.access}${"A".repeat(size)}`;
      const res = await rpc(h.httpUrl, "CheckLogin", {}, token).catch((e: unknown) => ({ status: -1, json: undefined, text: String(e), headers: new Headers() }));
      if (size < 16 * 1024) expectJsonRefusal(res, 401, "TOKEN_INVALID");
      else expect([401, 431], `${size}: ${res.status} ${res.text.slice(0, 200)}`).toContain(res.status);
      if (res.status === 401) expect(reasonOf(res)).toBe("TOKEN_INVALID");
    }
    expect((await rpc(h.httpUrl, "CheckLogin", {}, me.access)).status).toBe(200);
  });

  it("fails huge Authorization headers cleanly on h2c, and keeps serving", async () => {
    for (const size of [8 * 1024, 15 * 1024, 64 * 1024, 1024 * 1024]) {
      const refusal = await grpcCheck(grpcClient(h), `${me.access}${"A".repeat(size)}`);
      expect(refusal, `${size}`).not.toBeNull();
      // Either our refusal or the HTTP/2 layer's (the stream or session is reset); never an internal error.
      if (size < 16 * 1024) expect({ code: refusal!.code, reason: refusal!.reason }).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_INVALID" });
      // connect-node reports the h2 server's RST_STREAM REFUSED_STREAM as INTERNAL: the client's word, not ours.
      // On Node 24 the reset can land while the client still writes, which it words as "write ECANCELED".
      else expect(refusal!.code === Code.Unauthenticated || /NGHTTP2_REFUSED_STREAM|write ECANCELED/.test(refusal!.message), `${size}: ${refusal!.code} ${refusal!.message}`).toBe(true);
    }
    // The raw h2 layer: a 1 MB header list is refused without a 5xx.
    const session = http2.connect(h.grpcUrl);
    const status = await new Promise<number | string>((resolve) => {
      const stream = session.request({ ":method": "POST", ":path": `/${SERVICE}/CheckLogin`, "content-type": "application/json", authorization: `Bearer ${"A".repeat(1024 * 1024)}` });
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("error", (e) => resolve(String((e as NodeJS.ErrnoException).code)));
      stream.on("close", () => resolve("closed"));
      stream.end("{}");
    });
    session.destroy();
    // Refused at the HTTP/2 layer (RST_STREAM REFUSED_STREAM): a stream error, or a plain 4xx; never a 5xx.
    expect(["ERR_HTTP2_STREAM_ERROR", 401, 431], String(status)).toContain(status);
    expect(await grpcCheck(grpcClient(h), me.access)).toBeNull();
  });
});

describe("fuzz", () => {
  let tokens: AccessTokens;
  let valid: string;
  beforeAll(async () => {
    const { key } = await generateSigningKey("ES256");
    tokens = createAccessTokens([key], { issuer: "identity", ttlSeconds: 3600 });
    valid = (await tokens.sign({ sid: "0123456789abcdef01234567", sub: "fedcba9876543210fedcba98", aud: "a" })).token;
  });

  /** A valid token changed by one of the mutations an attacker would try. */
  const mutated = () => {
    const segment = fc.integer({ min: 0, max: 2 });
    const char = fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ");
    const at = fc.nat();
    const edit = (parts: string[], i: number, f: (s: string) => string) => parts.map((p, j) => (j === i ? f(p) : p)).join(".");
    return fc.oneof(
      fc.tuple(segment, at, char).map(
        ([i, n, c]) =>
          (t: string) =>
            edit(t.split("."), i, (s) => {
              const k = n % Math.max(1, s.length);
              return s.slice(0, k) + c + s.slice(k + 1);
            }),
      ),
      fc.tuple(segment, at, char).map(
        ([i, n, c]) =>
          (t: string) =>
            edit(t.split("."), i, (s) => {
              const k = n % (s.length + 1);
              return s.slice(0, k) + c + s.slice(k);
            }),
      ),
      fc.tuple(segment, at).map(
        ([i, n]) =>
          (t: string) =>
            edit(t.split("."), i, (s) => {
              const k = n % Math.max(1, s.length);
              return s.slice(0, k) + s.slice(k + 1);
            }),
      ),
      fc.tuple(segment, segment).map(([i, j]) => (t: string) => {
        const p = t.split(".");
        [p[i], p[j]] = [p[j]!, p[i]!];
        return p.join(".");
      }),
      fc
        .record({ alg: fc.constantFrom("ES256", "none", "HS256", "RS256", "EdDSA", "ES384"), kid: fc.oneof(fc.string(), fc.integer()), typ: fc.constantFrom("at+jwt", "JWT", "", undefined) })
        .map((header) => (t: string) => {
          const p = t.split(".");
          return [b64url(header), p[1], p[2]].join(".");
        }),
    );
  };

  it("never accepts a random string or a mutated token (a few thousand cases, against the verifier)", async () => {
    const accepted = async (token: string) =>
      tokens.verify(token).then(
        () => true,
        (e: unknown) => {
          if (e instanceof TokenError) return false;
          throw e;
        },
      );
    expect(await accepted(valid)).toBe(true);
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 400 }), fc.string({ unit: "binary", maxLength: 400 })), async (s) => {
        expect(await accepted(s)).toBe(false);
      }),
      { numRuns: 2000 },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutated(), { minLength: 1, maxLength: 3 }), async (mutations) => {
        const token = mutations.reduce((t, m) => m(t), valid);
        expect(await accepted(token)).toBe(token === valid);
      }),
      { numRuns: 3000 },
    );
  });

  it("never authenticates a mutated token on the JSON listener", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(mutated(), { minLength: 1, maxLength: 2 }), async (mutations) => {
        const token = mutations.reduce((t, m) => m(t), me.access);
        // In the body, so any string reaches the verifier (a header refuses some bytes before we see them).
        const res = await rpc(h.httpUrl, "CheckLogin", { accessToken: token });
        if (token === me.access) expect(res.status).toBe(200);
        else expect([res.status, reasonOf(res)]).toEqual([401, expect.stringMatching(/^TOKEN_(INVALID|MISSING)$/)]);
      }),
      { numRuns: 150 },
    );
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "binary", maxLength: 300 }), async (s) => {
        const res = await rpc(h.httpUrl, "CheckLogin", { accessToken: s });
        expect(res.status).toBe(401);
      }),
      { numRuns: 100 },
    );
  });

  it("logged no bug and no token", () => {
    expectCleanLogs(h, [me.access, me.refresh, me.refresh.split(".")[1]!]);
  });
});
