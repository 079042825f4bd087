// createIdentityClient and createCheckLogin against the real service on both listeners, and the
// error helpers on the refusals each transport really brings back.
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, mintCode, startHarness, type Harness } from "../../../test/support/harness.js";
import {
  Code,
  ConnectError,
  createCheckLogin,
  createIdentityClient,
  errorInfoOf,
  ErrorInfoSchema,
  fieldViolationsOf,
  HealthCheckResponse_ServingStatus,
  type IdentityClient,
  type IdentityClientOptions,
  metadataOf,
  reasonOf,
  UserStatus,
} from "../src/index.js";
import { closedPortUrl } from "./support.js";

const API_KEY = "client-package-key-0123456789abcdef";
let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    apps: [{ id: "shop", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s", registration: "auto" }],
    internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
  });
});
afterAll(() => h?.close());

/** The error a call rejects with (fails the test if it resolves). */
async function refusal(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => expect.fail("the call was accepted"),
    (err: unknown) => err,
  );
}

async function loginWith(client: IdentityClient) {
  const { code, openid } = await mintCode(h.sim);
  const res = await client.login({ appId: "shop", credential: { case: "code", value: code } });
  return { openid, userId: res.user!.id, access: res.tokens!.accessToken };
}

const setups: Array<[string, () => Omit<IdentityClientOptions, "apiKey">]> = [
  ["gRPC on h2c", () => ({ baseUrl: h.grpcUrl, transport: "grpc" })],
  ["Connect JSON on HTTP/1.1", () => ({ baseUrl: h.httpUrl, transport: "connect" })],
  ["Connect binary on HTTP/1.1", () => ({ baseUrl: h.httpUrl, transport: "connect", useBinaryFormat: true })],
  ["Connect on h2c", () => ({ baseUrl: h.grpcUrl, transport: "connect", httpVersion: "2" })],
];

describe.each(setups)("%s", (_name, options) => {
  it("logs in, checks the login by bearer and by API key, and answers Health", async () => {
    const user = createIdentityClient(options());
    const internal = createIdentityClient({ ...options(), apiKey: API_KEY });
    expect([user.internal, internal.internal]).toEqual([false, true]);
    const me = await loginWith(user);
    const byBearer = await createCheckLogin(user)(me.access);
    const byKey = await createCheckLogin(internal)(me.access);
    expect(byBearer).toMatchObject({ userId: me.userId, appId: "shop" });
    expect(byBearer.sessionId).toMatch(/\S/);
    expect(byBearer.user?.identities[0]?.openid).toBe(me.openid);
    // The token's own expiry (2 h by default), not the time of the check.
    expect(byBearer.expireTime.getTime()).toBeGreaterThan(Date.now() + 60 * 60_000);
    expect({ ...byKey, user: byKey.user?.id }).toEqual({ ...byBearer, user: byBearer.user?.id });
    // The API key really is sent: GetUser of any user is an internal caller's right only.
    const other = await loginWith(user);
    expect((await internal.getUser({ userId: other.userId })).user?.id).toBe(other.userId);
    expect(reasonOf(await refusal(user.getUser({ userId: other.userId }, { headers: { authorization: `Bearer ${me.access}` } })))).toBe("PERMISSION_DENIED");
    expect((await internal.health.check({ service: "identity.v1.IdentityService" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("gives the ErrorInfo reason, metadata and field violations of real refusals", async () => {
    const user = createIdentityClient(options());
    const internal = createIdentityClient({ ...options(), apiKey: API_KEY });
    const bad = await refusal(createCheckLogin(user)("not-a-token"));
    expect(bad).toBeInstanceOf(ConnectError);
    expect([(bad as ConnectError).code, reasonOf(bad), errorInfoOf(bad)?.domain]).toEqual([Code.Unauthenticated, "TOKEN_INVALID", "identity.v1"]);

    // An internal caller must name the token: FIELD_INVALID with its field, in metadata and as a violation.
    const missing = await refusal(internal.checkLogin({}));
    expect([(missing as ConnectError).code, reasonOf(missing), metadataOf(missing)]).toEqual([Code.InvalidArgument, "FIELD_INVALID", { field: "access_token" }]);
    expect(fieldViolationsOf(missing).map((v) => v.field)).toEqual(["access_token"]);

    const wrongKey = "wrong-key-0123456789abcdefghijkl";
    const misconfigured = await refusal(createCheckLogin(createIdentityClient({ ...options(), apiKey: wrongKey }))((await loginWith(user)).access));
    expect([(misconfigured as ConnectError).code, reasonOf(misconfigured)]).toEqual([Code.Unauthenticated, "API_KEY_INVALID"]);
    // The key is a secret: not in the error, nor in what the service logged.
    expect(`${String(misconfigured)} ${JSON.stringify(misconfigured)}`).not.toContain(wrongKey);
    expect(h.logs.join("\n")).not.toContain(wrongKey);
    expect(h.logs.join("\n")).not.toContain(API_KEY);
  });

  it("refuses a disabled user's token with ACCOUNT_DISABLED", async () => {
    const internal = createIdentityClient({ ...options(), apiKey: API_KEY });
    const victim = await loginWith(internal);
    await internal.updateUser({ user: { id: victim.userId, status: UserStatus.DISABLED }, updateMask: { paths: ["status"] } });
    const err = await refusal(createCheckLogin(internal)(victim.access));
    expect([(err as ConnectError).code, reasonOf(err)]).toEqual([Code.PermissionDenied, "ACCOUNT_DISABLED"]);
  });

  it("has no reason for a failure that is not the service's: nothing listening, a deadline", async () => {
    const down = await refusal(createIdentityClient({ ...options(), baseUrl: await closedPortUrl() }).checkLogin({ accessToken: "x" }));
    expect([(down as ConnectError).code, reasonOf(down), metadataOf(down), fieldViolationsOf(down)]).toEqual([Code.Unavailable, undefined, {}, []]);
    const { code } = await mintCode(h.sim);
    const late = await refusal(createIdentityClient({ ...options(), defaultTimeoutMs: 1 }).login({ appId: "shop", credential: { case: "code", value: code } }));
    expect([(late as ConnectError).code, reasonOf(late)]).toEqual([Code.DeadlineExceeded, undefined]);
  });
});

describe("error helpers on what is not a ConnectError", () => {
  it("give nothing for plain errors, values and a ConnectError of another domain", () => {
    for (const err of [
      new Error("TOKEN_INVALID"),
      "TOKEN_INVALID",
      undefined,
      null,
      { reason: "TOKEN_INVALID" },
      new ConnectError("no details", Code.Unauthenticated),
      new ConnectError("a mesh's", Code.Unavailable, undefined, [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { domain: "mesh.example", reason: "UPSTREAM_RESET" }) }]),
    ]) {
      expect([reasonOf(err), errorInfoOf(err), metadataOf(err), fieldViolationsOf(err)]).toEqual([undefined, undefined, {}, []]);
    }
  });
});

describe("createIdentityClient", () => {
  it("refuses a transport it does not know", () => {
    expect(() => createIdentityClient({ baseUrl: h.httpUrl, transport: "grpc-web" as "grpc" })).toThrow(TypeError);
  });
});
