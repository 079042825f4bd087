// End to end: two real instances on one store; the verifier watches instance B while everything
// that ends tokens happens on instance A. Then B goes away under the verifier.
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { login, rpc } from "../../../test/support/harness.js";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions } from "../src/token-verifier.js";
import { startFront, startInstances, type Front, type Instances } from "./support/instances.js";
import { API_KEY, ISSUER } from "./support/revocation-feed.js";

/** The contract's bound: a revocation on any instance refused everywhere within 2 s. */
const LAG_BOUND_MS = 2000;

let instances: Instances;
const verifiers: TokenVerifier[] = [];

beforeAll(async () => {
  instances = await startInstances({ refreshGraceSeconds: 0, maxSessionsPerUser: 2 });
});

afterEach(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
});

afterAll(async () => {
  await instances?.close();
});

async function watching(grpcUrl: string, options: Partial<TokenVerifierOptions> = {}): Promise<TokenVerifier> {
  const v = createTokenVerifier({ grpcUrl, httpUrl: instances.b.httpUrl, apiKey: API_KEY, issuer: ISSUER, ...options });
  verifiers.push(v);
  await v.ready({ timeoutMs: 5000 });
  return v;
}

const reasonOfCheck = (v: TokenVerifier, token: string) =>
  v.check(token).then(
    () => "accepted",
    (e: ConnectError) => e.findDetails(ErrorInfoSchema)[0]?.reason ?? Code[e.code],
  );

/** How long after now the verifier first refuses `token`, and with which reason; fails past the bound. */
async function refusalLag(v: TokenVerifier, token: string): Promise<{ ms: number; reason: string }> {
  const started = performance.now();
  let reason = "accepted";
  await expect.poll(async () => (reason = await reasonOfCheck(v, token)), { timeout: LAG_BOUND_MS, interval: 2 }).not.toBe("accepted");
  return { ms: performance.now() - started, reason };
}

const apiKey = { "x-api-key": API_KEY };

describe("revocations on instance A, a verifier watching instance B", () => {
  it("refuses a token logged out on A within 2 s, without a call per request", async () => {
    const { a, b } = instances;
    const v = await watching(b.grpcUrl);
    const me = await login(a);
    const identity = await v.check(me.access);
    expect(identity).toMatchObject({ userId: me.body.user.id, appId: "demo" });
    // Answered locally: a CheckLogin answer would carry the user.
    expect(identity.user).toBeUndefined();
    expect((await rpc(a.httpUrl, "Logout", {}, me.access)).status).toBe(200);
    const { ms, reason } = await refusalLag(v, me.access);
    expect(reason).toBe("TOKEN_REVOKED");
    expect(ms).toBeLessThan(LAG_BOUND_MS);
  });

  it("refuses after a refresh token's reuse, a session cap, logout of all sessions and a disabled user", async () => {
    const { a, b } = instances;
    const v = await watching(b.grpcUrl);

    const reused = await login(a);
    expect((await rpc(a.httpUrl, "Refresh", { refreshToken: reused.refresh })).status).toBe(200);
    expect((await rpc(a.httpUrl, "Refresh", { refreshToken: reused.refresh })).status).toBe(401);
    expect((await refusalLag(v, reused.access)).reason).toBe("TOKEN_REVOKED");

    // The cap is two sessions: a third login ends the oldest.
    const openid = `o_cap_${Date.now()}`;
    const oldest = await login(a, { openid });
    await login(a, { openid });
    await v.check(oldest.access);
    const newest = await login(a, { openid });
    expect((await refusalLag(v, oldest.access)).reason).toBe("TOKEN_REVOKED");
    expect(await reasonOfCheck(v, newest.access)).toBe("accepted");

    expect((await rpc(a.httpUrl, "Logout", { allSessions: true }, newest.access)).status).toBe(200);
    expect((await refusalLag(v, newest.access)).reason).toBe("TOKEN_REVOKED");

    const victim = await login(a);
    await v.check(victim.access);
    const disabled = await rpc(a.httpUrl, "UpdateUser", { user: { id: victim.body.user.id, status: "USER_STATUS_DISABLED" }, updateMask: "status" }, undefined, apiKey);
    expect(disabled.status).toBe(200);
    expect((await refusalLag(v, victim.access)).reason).toBe("ACCOUNT_DISABLED");
  }, 15_000);
});

describe("when instance B goes away", () => {
  let front: Front;

  afterAll(async () => {
    await front?.close();
  });

  it("falls back to CheckLogin by default, refuses or accepts as configured, and resumes on A", async () => {
    const { a, b } = instances;
    front = await startFront(b.grpcUrl);
    // A long first backoff: the stream stays down long enough to see each mode's answer.
    const reconnect = { initialDelayMs: 3000, maxDelayMs: 3000 };
    const [byDefault, refusing, accepting] = await Promise.all([
      watching(front.url, { reconnect }),
      watching(front.url, { reconnect, whenStreamDown: "refuse" }),
      watching(front.url, { reconnect, whenStreamDown: "accept" }),
    ]);
    const me = await login(a);
    const later = await login(a);
    for (const v of [byDefault, refusing, accepting]) expect((await v.check(me.access)).user).toBeUndefined();

    // B stops; the front now sends new connections to A, as a load balancer would.
    front.route(a.grpcUrl);
    await b.close();
    await expect.poll(() => [byDefault, refusing, accepting].map((v) => v.stats().stream)).toEqual(["reconnecting", "reconnecting", "reconnecting"]);

    expect((await byDefault.check(me.access)).user?.id).toBe(me.body.user.id);
    expect(await reasonOfCheck(refusing, me.access)).toBe("UPSTREAM_UNAVAILABLE");
    expect((await accepting.check(me.access)).user).toBeUndefined();

    // A logout while the stream is down: CheckLogin knows at once; the stream tells it on resuming.
    expect((await rpc(a.httpUrl, "Logout", {}, me.access)).status).toBe(200);
    expect(await reasonOfCheck(byDefault, me.access)).toBe("TOKEN_REVOKED");
    for (const v of [byDefault, refusing]) await expect.poll(() => v.stats().stream, { timeout: 5000 }).toBe("live");
    expect(byDefault.stats().reconnects).toBe(1);
    expect(await reasonOfCheck(refusing, me.access)).toBe("TOKEN_REVOKED");
    const local = await byDefault.check(later.access);
    expect(local.user).toBeUndefined();
  }, 15_000);
});
