// Access tokens are signed with node:crypto and verified with jose: both algorithms must round-trip
// through an independent verifier (jose against the published JWKS), and a key must fit its alg.
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { createAccessTokens, generateSigningKey, importSigningKey, type SigningAlgorithm } from "../../src/auth/access-tokens.js";

describe.each<SigningAlgorithm>(["ES256", "EdDSA"])("%s access tokens", (alg) => {
  it("verify with jose against the published JWKS, with every claim", async () => {
    const { key } = await generateSigningKey(alg);
    const tokens = createAccessTokens([key], { issuer: "https://id.example", ttlSeconds: 600 });
    const { token, expiresAt } = await tokens.sign({ sid: "s1", sub: "u1", aud: "demo" });
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(tokens.jwks() as { keys: [] }), {
      issuer: "https://id.example",
      audience: "demo",
      typ: "at+jwt",
      algorithms: [alg],
    });
    expect(protectedHeader).toEqual({ alg, kid: key.kid, typ: "at+jwt" });
    expect(payload).toMatchObject({ sid: "s1", sub: "u1", aud: "demo" });
    expect(payload.exp! * 1000).toBe(expiresAt.getTime());
    expect(payload.exp! - payload.iat!).toBe(600);
    await expect(tokens.verify(token)).resolves.toMatchObject({ sid: "s1", sub: "u1", aud: "demo" });
  });

  it("leave sub out of a pending session's token", async () => {
    const tokens = createAccessTokens([(await generateSigningKey(alg)).key], { issuer: "i", ttlSeconds: 60 });
    const { token } = await tokens.sign({ sid: "s2", aud: "demo" });
    const claims = await tokens.verify(token);
    expect(claims.sub).toBeUndefined();
    expect(decodeProtectedHeader(token).alg).toBe(alg);
  });
});

it("refuses a key that does not fit its alg", async () => {
  const { privateJwk } = await generateSigningKey("EdDSA");
  await expect(importSigningKey({ ...privateJwk, alg: "ES256" })).rejects.toThrow(/not an ES256/);
  const ec = (await generateSigningKey("ES256")).privateJwk;
  await expect(importSigningKey({ ...ec, alg: "EdDSA" })).rejects.toThrow(/not an EdDSA/);
});
