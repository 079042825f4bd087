// examples/python/identity_example.py against the real service: code generated from proto/ at run
// time, Login, CheckLogin by bearer and by API key, a refusal's ErrorInfo reason, and the access
// token verified locally against /.well-known/jwks.json. Skips when that python lacks the packages.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, startHarness, type Harness } from "./support/harness.js";

const run = promisify(execFile);
const API_KEY = "examples-internal-key-0123456789";
const PINS = "grpcio==1.76.0 grpcio-tools==1.76.0 grpcio-status==1.76.0 googleapis-common-protos==1.72.0 protobuf==6.33.1 PyJWT==2.10.1 cryptography==46.0.3";
const script = new URL("../examples/python/identity_example.py", import.meta.url).pathname;

// The same venv .ci/run makes for the reflection tests.
const python = process.env.IDENTITY_PYTHON ?? `${process.env.XDG_CACHE_HOME ?? `${process.env.HOME}/.cache`}/identity-ci/pyvenv/bin/python`;
const pythonReady = await run(python, ["-c", "import grpc, grpc_tools.protoc, grpc_status, google.rpc.error_details_pb2, jwt, cryptography"]).then(
  () => true,
  (e: Error) => {
    console.log(
      `Python example test skipped: ${python} lacks the packages (${e.message.split("\n").at(-2) ?? e.message}); python3 -m venv ${python.replace(/\/bin\/python$/, "")} && ${python.replace(/python$/, "pip")} install ${PINS}`,
    );
    return false;
  },
);

let h: Harness;
beforeAll(async () => {
  if (!pythonReady) return;
  h = await startHarness({
    apps: [{ id: "shop", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s", registration: "auto" }],
    issuer: "identity-examples",
    internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
  });
});
afterAll(() => h?.close());

/** Runs the example and parses its summary line, also when it exits 1. */
async function example(...extra: string[]): Promise<{ rc: number; out: any; stderr: string }> {
  const argv = [script, "--grpc", h.grpcUrl.replace(/^http:\/\//, ""), "--http", h.httpUrl, "--sim", h.sim, "--app", "shop", "--appid", DEMO_APPID, "--issuer", "identity-examples", ...extra];
  const { stdout, stderr, rc } = await run(python, argv, { timeout: 60_000 }).then(
    (r) => ({ ...r, rc: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, rc: e.code }),
  );
  return { rc, out: JSON.parse(stdout.trim().split("\n").at(-1) || "null"), stderr };
}

describe.skipIf(!pythonReady)("examples/python/identity_example.py", () => {
  it("logs in, checks the login both ways, reads a refusal's reason and verifies the token with the JWKS", async () => {
    const { rc, out, stderr } = await example("--api-key", API_KEY);
    expect(out, stderr).not.toBeNull();
    expect(rc, JSON.stringify(out)).toBe(0);
    const userId = out.login.userId;
    expect(userId).toMatch(/^[0-9a-f]{24}$/);
    expect(out.login).toMatchObject({ ok: true, registered: true });
    expect(out.checkLoginBearer).toMatchObject({ ok: true, userId, appId: "shop" });
    expect(out.checkLoginApiKey).toMatchObject({ ok: true, userId, appId: "shop", sessionId: out.checkLoginBearer.sessionId });
    expect(out.refused).toMatchObject({ ok: true, code: "UNAUTHENTICATED", domain: "identity.v1" });
    expect(["TOKEN_MISSING", "TOKEN_INVALID"]).toContain(out.refused.reason);
    expect(out.jwks).toMatchObject({ ok: true, sub: userId, aud: "shop", iss: "identity-examples" });
    expect(out.jwks.exp * 1000).toBeGreaterThan(Date.now());
  });

  it("fails the step, and exits 1, when the token does not verify", async () => {
    const { rc, out } = await example("--issuer", "someone-else");
    expect(rc).toBe(1);
    expect(out.checkLoginApiKey.skipped).toBeTruthy();
    expect(out.jwks.ok).toBe(false);
    expect(out.jwks.error).toContain("InvalidIssuerError");
  });
});
