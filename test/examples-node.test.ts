// examples/node/identity_example.mjs against the real service: Login with a simulator code,
// CheckLogin by bearer and by API key through @identity-service/client, a refusal's reason, and the
// access token verified locally against /.well-known/jwks.json with jose. The package is run from
// its sources (the identity-source export condition, through tsx), so no build is needed first.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, startHarness, type Harness } from "./support/harness.js";

const run = promisify(execFile);
const API_KEY = "examples-node-internal-key-0123456789";
const root = new URL("..", import.meta.url).pathname;

let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    apps: [{ id: "shop", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s", registration: "auto" }],
    issuer: "identity-examples",
    internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
  });
});
afterAll(() => h?.close());

/** Runs the example and parses its summary line, also when it exits 1. */
async function example(...extra: string[]): Promise<{ rc: number; out: any; stderr: string }> {
  const argv = ["--import", "tsx", "--conditions=identity-source", "examples/node/identity_example.mjs"];
  argv.push("--grpc", h.grpcUrl.replace(/^http:\/\//, ""), "--http", h.httpUrl, "--sim", h.sim, "--app", "shop", "--appid", DEMO_APPID, "--issuer", "identity-examples", ...extra);
  const { stdout, stderr, rc } = await run(process.execPath, argv, { cwd: root, timeout: 60_000 }).then(
    (r) => ({ ...r, rc: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, rc: e.code }),
  );
  return { rc, out: JSON.parse(stdout.trim().split("\n").at(-1) || "null"), stderr };
}

describe("examples/node/identity_example.mjs", () => {
  it("logs in, checks the login both ways, reads a refusal's reason and verifies the token with the JWKS", async () => {
    const { rc, out, stderr } = await example("--api-key", API_KEY);
    expect(out, stderr).not.toBeNull();
    expect(rc, JSON.stringify(out)).toBe(0);
    const userId = out.login.userId;
    expect(userId).toMatch(/^[0-9a-f]{24}$/);
    expect(out.login).toMatchObject({ ok: true, registered: true, expiresIn: 7200 });
    expect(out.checkLoginBearer).toMatchObject({ ok: true, userId, appId: "shop" });
    expect(out.checkLoginApiKey).toMatchObject({ ok: true, userId, appId: "shop", sessionId: out.checkLoginBearer.sessionId });
    expect(new Date(out.checkLoginBearer.expireTime).getTime()).toBeGreaterThan(Date.now());
    expect(out.refused).toEqual({ ok: true, code: "UNAUTHENTICATED", reason: "TOKEN_INVALID", domain: "identity.v1" });
    expect(out.jwks).toMatchObject({ ok: true, sub: userId, aud: "shop", iss: "identity-examples" });
    expect(out.jwks.exp * 1000).toBeGreaterThan(Date.now());
    // The API key is the example's secret: it never prints it, nor does the service log it.
    expect(JSON.stringify(out) + stderr).not.toContain(API_KEY);
    expect(h.logs.join("\n")).not.toContain(API_KEY);
  });

  it("fails the step, and exits 1, when the token does not verify or the API key is wrong", async () => {
    const { rc, out } = await example("--issuer", "someone-else", "--api-key", "not-a-configured-key-0123456789");
    expect(rc).toBe(1);
    expect(out.checkLoginBearer.ok).toBe(true);
    expect(out.checkLoginApiKey).toMatchObject({ ok: false });
    expect(out.checkLoginApiKey.error).toContain("ConnectError");
    expect(out.jwks).toEqual({ ok: false, error: 'JWTClaimValidationFailed: unexpected "iss" claim value' });
  });

  it("reports the API key step as skipped without a key", async () => {
    const { rc, out } = await example();
    expect(rc).toBe(0);
    expect(out.checkLoginApiKey).toEqual({ ok: null, skipped: "no --api-key / IDENTITY_API_KEY" });
  });
});
