// The verifier's stream logic against a WatchRevocations the test drives (test/support/revocation-feed.ts),
// with tokens, keys and the CheckLogin fallback from the real service.
import { createServer, type AddressInfo } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { login, startHarness, type Harness } from "../../../test/support/harness.js";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { IdentityService, RevocationReason } from "../src/gen/identity/v1/identity_pb.js";
import { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions } from "../src/token-verifier.js";
import { API_KEY, caughtUp, ISSUER, serviceConfig, sessionRevoked, startFeed, userRevoked, type Feed } from "./support/revocation-feed.js";

let h: Harness;
let feed: Feed;
const verifiers: TokenVerifier[] = [];

beforeAll(async () => {
  h = await startHarness(serviceConfig());
});

// A feed per test: its streams are this test's verifiers' only.
beforeEach(async () => {
  feed = await startFeed(h.grpcUrl);
});

afterEach(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
  await feed.close();
});

afterAll(async () => {
  await h?.close();
});

function verifier(options: Partial<TokenVerifierOptions> = {}): TokenVerifier {
  const v = createTokenVerifier({ grpcUrl: feed.grpcUrl, httpUrl: h.httpUrl, apiKey: API_KEY, issuer: ISSUER, reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, ...options });
  verifiers.push(v);
  return v;
}

/** A verifier caught up on `stream`, with these revocations replayed. */
async function live(options: Partial<TokenVerifierOptions> = {}, replay: Parameters<typeof caughtUp>[2] = [], heartbeatMs = 5000) {
  const v = verifier(options);
  const stream = await feed.nextStream();
  stream.send(caughtUp("c1", heartbeatMs, replay));
  await v.ready({ timeoutMs: 5000 });
  return { v, stream };
}

async function refusal(promise: Promise<unknown>): Promise<{ code: Code; reason: string | undefined }> {
  const error = await promise.then(
    () => expect.fail("the check accepted the token"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConnectError);
  const e = error as ConnectError;
  return { code: e.code, reason: e.findDetails(ErrorInfoSchema)[0]?.reason };
}

/** Resolves once a check of `token` is refused, polling the cheap local check. */
async function refusedWithin(v: TokenVerifier, token: string, ms: number) {
  await expect
    .poll(
      () =>
        v.check(token).then(
          () => "accepted",
          (e: ConnectError) => e.findDetails(ErrorInfoSchema)[0]?.reason,
        ),
      { timeout: ms, interval: 5 },
    )
    .not.toBe("accepted");
}

describe("replay and live", () => {
  it("presents the API key, refuses what the replay revoked and accepts the rest without asking the service", async () => {
    const gone = await login(h);
    const kept = await login(h);
    const calls = feed.checkLoginCalls;
    const { v, stream } = await live({}, [sessionRevoked(gone.access)]);
    expect(stream.apiKey).toBe(API_KEY);
    expect(stream.cursor).toBe("");
    expect(await refusal(v.check(gone.access))).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_REVOKED" });
    const identity = await v.check(kept.access);
    expect(identity).toMatchObject({ userId: kept.body.user.id, sessionId: decodeJwt(kept.access).sid, appId: "demo" });
    expect(identity.expireTime.getTime()).toBe(Number(decodeJwt(kept.access).exp) * 1000);
    expect(identity.user).toBeUndefined();
    expect(feed.checkLoginCalls).toBe(calls);
    expect(v.stats()).toMatchObject({ stream: "live", revokedSessions: 1, cachedTokens: 2 });
    expect(v.stats().caughtUpAt).toBeInstanceOf(Date);
  });

  it("refuses a session revoked live, on a token it had already cached", async () => {
    const me = await login(h);
    const { v, stream } = await live();
    await v.check(me.access);
    stream.send({ revocations: [sessionRevoked(me.access, RevocationReason.REFRESH_TOKEN_REUSED)], cursor: "c2" });
    await refusedWithin(v, me.access, 2000);
    expect(await refusal(v.check(me.access))).toEqual({ code: Code.Unauthenticated, reason: "TOKEN_REVOKED" });
  });

  it("refuses a disabled user's tokens issued at or before revoke_time, and later ones not", async () => {
    const me = await login(h);
    const iat = Number(decodeJwt(me.access).iat);
    const other = await login(h);
    const { v, stream } = await live({}, [userRevoked(me.body.user.id, (iat - 1) * 1000)]);
    await v.check(me.access);
    stream.send({ revocations: [userRevoked(me.body.user.id, iat * 1000 + 999)], cursor: "c2" });
    await refusedWithin(v, me.access, 2000);
    expect(await refusal(v.check(me.access))).toEqual({ code: Code.PermissionDenied, reason: "ACCOUNT_DISABLED" });
    await v.check(other.access);
    // Logout of all sessions comes as the user's revocation too, and ends them as a logout does.
    stream.send({ revocations: [userRevoked(other.body.user.id, Date.now(), RevocationReason.LOGOUT_ALL)], cursor: "c3" });
    await refusedWithin(v, other.access, 2000);
    expect((await refusal(v.check(other.access))).reason).toBe("TOKEN_REVOKED");
  });

  it("answers NOT_REGISTERED for a pending session's token, as CheckLogin does", async () => {
    const pending = await login(h, { appid: "wx0000000000000002" }, "explicit");
    expect(decodeJwt(pending.access).sub).toBeUndefined();
    const { v } = await live();
    const service = createClient(IdentityService, createGrpcTransport({ baseUrl: h.grpcUrl }));
    const remote = await refusal(service.checkLogin({ accessToken: pending.access }, { headers: { "x-api-key": API_KEY } }));
    expect(remote).toEqual({ code: Code.FailedPrecondition, reason: "NOT_REGISTERED" });
    expect(await refusal(v.check(pending.access))).toEqual(remote);
  });
});

describe("while the stream is not live", () => {
  it("asks CheckLogin per request by default, before the first caught_up, and gets the service's answer", async () => {
    const me = await login(h);
    const v = verifier();
    const stream = await feed.nextStream();
    stream.send({ revocations: [], cursor: "c1" });
    const calls = feed.checkLoginCalls;
    const identity = await v.check(me.access);
    expect(identity.user?.id).toBe(me.body.user.id);
    expect(feed.checkLoginCalls).toBe(calls + 1);
    expect(v.stats().stream).toBe("replaying");
    // A forgery is refused before any call: the signature is checked locally first.
    const [head, body] = me.access.split(".");
    expect((await refusal(v.check(`${head}.${body}.${Buffer.alloc(64).toString("base64url")}`))).reason).toBe("TOKEN_INVALID");
    expect(feed.checkLoginCalls).toBe(calls + 1);
  });

  it('fails closed with UNAVAILABLE when told to "refuse", and trusts the signature when told to "accept"', async () => {
    const me = await login(h);
    const refusing = verifier({ whenStreamDown: "refuse" });
    const accepting = verifier({ whenStreamDown: "accept" });
    expect(await refusal(refusing.check(me.access))).toEqual({ code: Code.Unavailable, reason: "UPSTREAM_UNAVAILABLE" });
    const calls = feed.checkLoginCalls;
    expect((await accepting.check(me.access)).userId).toBe(me.body.user.id);
    expect(feed.checkLoginCalls).toBe(calls);
  });

  it("takes a silent stream as broken after the heartbeat, falls back, and resumes from its cursor", async () => {
    const me = await login(h);
    const { v, stream } = await live({}, [], 200);
    await v.check(me.access);
    const calls = feed.checkLoginCalls;
    // No more messages: within the heartbeat plus its margin the verifier gives up on the stream.
    const next = feed.nextStream();
    await stream.gone;
    await expect.poll(() => v.stats().lastStreamError).toBe("no message for 1200 ms");
    expect((await v.check(me.access)).user?.id).toBe(me.body.user.id);
    expect(feed.checkLoginCalls).toBe(calls + 1);
    const resumed = await next;
    expect(resumed.cursor).toBe("c1");
    resumed.send({ revocations: [sessionRevoked(me.access)], cursor: "c2" });
    resumed.send(caughtUp("c3", 200));
    await expect.poll(() => v.stats().stream).toBe("live");
    expect((await refusal(v.check(me.access))).reason).toBe("TOKEN_REVOKED");
    expect(feed.checkLoginCalls).toBe(calls + 1);
  });

  it("reconnects after the service ends the stream with an error, and resumes from the last cursor", async () => {
    const me = await login(h);
    const { v, stream } = await live({ whenStreamDown: "refuse" });
    stream.send({ revocations: [], cursor: "c2" });
    await expect.poll(() => v.stats().reconnects).toBe(0);
    const next = feed.nextStream();
    stream.fail();
    const again = await next;
    expect(again.cursor).toBe("c2");
    expect(v.stats()).toMatchObject({ stream: "reconnecting", reconnects: 1, lastStreamError: "Unavailable: instance going away" });
    expect((await refusal(v.check(me.access))).code).toBe(Code.Unavailable);
    again.send(caughtUp("c3"));
    await expect.poll(() => v.stats().stream).toBe("live");
    expect((await v.check(me.access)).userId).toBe(me.body.user.id);
  });

  it("on resync stays down until the replay is caught up, and keeps what it knew", async () => {
    const older = await login(h);
    const newer = await login(h);
    const { v, stream } = await live({ whenStreamDown: "refuse" }, [sessionRevoked(older.access)]);
    const next = feed.nextStream();
    stream.fail();
    const again = await next;
    again.send({ resync: true, revocations: [], cursor: "r1" });
    await expect.poll(() => v.stats().stream).toBe("replaying");
    expect((await refusal(v.check(newer.access))).code).toBe(Code.Unavailable);
    again.send(caughtUp("r2", 5000, [sessionRevoked(newer.access)]));
    await expect.poll(() => v.stats().stream).toBe("live");
    expect((await refusal(v.check(older.access))).reason).toBe("TOKEN_REVOKED");
    expect((await refusal(v.check(newer.access))).reason).toBe("TOKEN_REVOKED");
  });

  it("never hangs on a CheckLogin or a JWKS fetch that does not answer: each times out", async () => {
    const me = await login(h);
    // Accepts connections and never answers on them.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const noAnswer = verifier({ grpcUrl: silentUrl, callTimeoutMs: 300 });
      let started = Date.now();
      expect((await refusal(noAnswer.check(me.access))).code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(1500);
      const noKeys = verifier({ jwksUrl: `${silentUrl}/.well-known/jwks.json`, callTimeoutMs: 300 });
      started = Date.now();
      expect(await refusal(noKeys.check(me.access))).toEqual({ code: Code.Unavailable, reason: "UPSTREAM_UNAVAILABLE" });
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      silent.close();
    }
  });

  it("rejects ready() saying what is missing, and never puts the API key in what it says", async () => {
    // An instance of its own: wrong keys are counted against the address, and would lock the others out.
    const own = await startHarness(serviceConfig());
    try {
      const wrongKey = "not-the-configured-key-0123456789";
      const v = verifier({ grpcUrl: own.grpcUrl, httpUrl: own.httpUrl, apiKey: wrongKey });
      const error = await v.ready({ timeoutMs: 500 }).then(
        () => expect.fail("ready resolved"),
        (e: Error) => e,
      );
      expect(error.message).toMatch(/^token verifier not ready after 500 ms: stream (connecting|reconnecting) \(Unauthenticated API_KEY_INVALID: .+\)$/);
      expect(error.message).not.toContain(wrongKey);
      expect(JSON.stringify(v.stats())).not.toContain(wrongKey);
    } finally {
      await own.close();
    }
  });
});
