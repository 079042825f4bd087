// Sessions of the dev-mode app: access-token expiry on the clock, unknown refresh tokens, logout,
// parallel first logins, the only app standing in for a missing appId; and the routes' Health.
import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { as, byCode, DEMO_APPID, refusal, startFast, type Fast } from "../support/fast.js";

let f: Fast;
beforeAll(async () => {
  f = await startFast();
});

const checkLogin = (access: string) => f.client.checkLogin({}, as(access));

describe("access tokens", () => {
  it("expire after accessTtlSeconds (2 h); the session's refresh token still renews them", async () => {
    const me = await f.login();
    f.clock.advance(7200_000 - 1000);
    expect((await checkLogin(me.access)).user!.id).toBe(me.userId);
    f.clock.advance(2000);
    const expired = await refusal(checkLogin(me.access));
    expect([expired.code, expired.reason]).toEqual([Code.Unauthenticated, "TOKEN_EXPIRED"]);
    const { tokens } = await f.client.refresh({ refreshToken: me.refresh });
    expect((await checkLogin(tokens!.accessToken)).user!.id).toBe(me.userId);
  });
});

describe("refresh and logout", () => {
  it("refuses unknown refresh tokens without revoking anything", async () => {
    const { refresh, access, userId } = await f.login();
    const forged = `${refresh.split(".")[0]}.${"A".repeat(43)}`;
    for (const token of [forged, "nonsense", ""]) {
      expect(["TOKEN_INVALID", "FIELD_INVALID"]).toContain((await refusal(f.client.refresh({ refreshToken: token }))).reason);
    }
    expect((await checkLogin(access)).user!.id).toBe(userId);
  });

  it("logs out one session, or all of a user's sessions", async () => {
    const a = await f.login();
    const b = await f.login({ openid: a.openid });
    await f.client.logout({}, as(a.access));
    const dead = await refusal(checkLogin(a.access));
    expect([dead.code, dead.reason]).toEqual([Code.Unauthenticated, "TOKEN_REVOKED"]);
    expect((await checkLogin(b.access)).user!.id).toBe(a.userId);
    expect((await refusal(f.client.refresh({ refreshToken: a.refresh }))).reason).toBe("TOKEN_REVOKED");

    const c = await f.login({ openid: a.openid });
    await f.client.logout({ allSessions: true }, as(c.access));
    for (const token of [b.access, c.access]) expect((await refusal(checkLogin(token))).reason).toBe("TOKEN_REVOKED");
  });
});

describe("Login", () => {
  it("makes exactly one user from parallel first logins of one openid", async () => {
    const codes = Array.from({ length: 10 }, () => f.mintCode({ openid: "o_parallel" }).code);
    const results = await Promise.all(codes.map((code) => f.client.login({ appId: "demo", ...byCode(code) })));
    expect(new Set(results.map((r) => r.user!.id)).size).toBe(1);
    expect(results.filter((r) => r.firstLogin).length).toBe(1);
  });

  it("uses the only configured app when appId is omitted, and accepts the appid as the app id", async () => {
    expect((await f.client.login(byCode(f.mintCode().code))).registered).toBe(true);
    expect((await f.client.login({ appId: DEMO_APPID, ...byCode(f.mintCode().code) })).registered).toBe(true);
  });
});

describe("Health, served by the same routes", () => {
  it("says SERVING for the server and the identity service, and NOT_FOUND for a service it does not have", async () => {
    for (const service of ["", IdentityService.typeName]) expect((await f.health.check({ service })).status).toBe(ServingStatus.SERVING);
    const unknown = await refusal(f.health.check({ service: "no.such.Service" }));
    expect([unknown.code, unknown.reason]).toEqual([Code.NotFound, "SERVICE_UNKNOWN"]);
  });
});
