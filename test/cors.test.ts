// CORS on the HTTP/1.1 listener for configured origins (docs/configuration.md "CORS"), as a browser
// would exercise it: a preflight, then the call, both read from the headers a browser checks.
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { DEMO_APPID, login, reasonOf, resultOf, rpc, SERVICE, startHarness, type Harness } from "./support/harness.js";

const ALLOWED = "https://app.example.com";
const OTHER = "https://evil.example.com";
const app = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "cors-test-secret" };
// What Connect-Web sends on a call with a bearer token and a deadline.
const REQUEST_HEADERS = "content-type,connect-protocol-version,connect-timeout-ms,authorization";

let h: Harness;
let plain: Harness;
beforeAll(async () => {
  [h, plain] = await Promise.all([
    startHarness({ apps: [app], seedRoutes: { smallapp: {} }, cors: { origins: [ALLOWED, "http://localhost:5173"], credentials: true, maxAgeSeconds: 300 } }),
    startHarness(),
  ]);
});
afterAll(() => Promise.all([h?.close(), plain?.close()]));

const preflight = (base: string, path: string, origin: string, method = "POST") =>
  fetch(`${base}${path}`, { method: "OPTIONS", headers: { origin, "access-control-request-method": method, "access-control-request-headers": REQUEST_HEADERS } });

const corsHeadersOf = (headers: Headers) => [...headers.keys()].filter((name) => name.startsWith("access-control-"));

describe("CORS for a configured origin", () => {
  it("answers a preflight for a Connect route with the exact origin, methods, headers, max-age and credentials", async () => {
    const res = await preflight(h.httpUrl, `/${SERVICE}/Login`, ALLOWED);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(res.headers.get("access-control-allow-credentials")).toBe("true");
    expect(res.headers.get("access-control-max-age")).toBe("300");
    expect(res.headers.get("vary")).toMatch(/\borigin\b/i);
    expect(res.headers.get("access-control-allow-methods")?.split(/, */)).toEqual(expect.arrayContaining(["POST", "GET"]));
    const allowed = res.headers.get("access-control-allow-headers")?.toLowerCase().split(/, */) ?? [];
    for (const name of ["content-type", "connect-protocol-version", "connect-timeout-ms", "authorization", "x-grpc-web", "x-user-agent", "grpc-timeout"]) expect(allowed).toContain(name);
    // The second origin is matched on its own, port included.
    expect((await preflight(h.httpUrl, `/${SERVICE}/CheckLogin`, "http://localhost:5173", "GET")).headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
  });

  it("lets a page read a Login and a CheckLogin (POST and Connect GET), with the headers Connect-Web reads exposed", async () => {
    const { access } = await login(h);
    const post = await rpc(h.httpUrl, "CheckLogin", {}, access, { origin: ALLOWED });
    expect(post.status).toBe(200);
    expect(post.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    const exposed = post.headers.get("access-control-expose-headers")?.toLowerCase().split(/, */) ?? [];
    for (const name of ["grpc-status", "grpc-message", "grpc-status-details-bin", "retry-after"]) expect(exposed).toContain(name);
    expect(post.headers.get("vary")).toMatch(/\borigin\b/i);

    const query = new URLSearchParams({ connect: "v1", encoding: "json", message: "{}" });
    const get = await resultOf(await fetch(`${h.httpUrl}/${SERVICE}/CheckLogin?${query}`, { headers: { origin: ALLOWED, authorization: `Bearer ${access}` } }));
    expect(get.status).toBe(200);
    expect(get.json.user.id).toBe(post.json.user.id);
    expect(get.headers.get("access-control-allow-origin")).toBe(ALLOWED);
  });

  it("keeps the CORS headers on an error, so the page can read the code and reason", async () => {
    const res = await rpc(h.httpUrl, "CheckLogin", {}, undefined, { origin: ALLOWED });
    expect(res.status).toBe(401);
    expect(res.json.code).toBe("unauthenticated");
    expect(reasonOf(res)).toBe("TOKEN_MISSING");
    expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    expect(res.headers.get("access-control-expose-headers")).toMatch(/grpc-status/i);
    // A bad body is refused as ever (400, not 500), readable too.
    const bad = await rpc(h.httpUrl, "Login", "{not json", undefined, { origin: ALLOWED });
    expect(bad.status).toBe(400);
    expect(bad.headers.get("access-control-allow-origin")).toBe(ALLOWED);
  });

  it("serves the public JWKS to the origin, and nothing on the seed REST routes or /metrics", async () => {
    const jwks = await fetch(`${h.httpUrl}/.well-known/jwks.json`, { headers: { origin: ALLOWED } });
    expect(jwks.status).toBe(200);
    expect(jwks.headers.get("access-control-allow-origin")).toBe(ALLOWED);
    // Seed 000's login answers as ever (the app has no legacyId: refused in its own shape), with no CORS.
    const seed = await fetch(`${h.httpUrl}/api/smallapp/login`, { method: "POST", headers: { origin: ALLOWED, "content-type": "application/json" }, body: JSON.stringify({ app_id: 1, code: "x" }) });
    expect(seed.status).toBeLessThan(500);
    expect(corsHeadersOf(seed.headers)).toEqual([]);
    expect(corsHeadersOf((await preflight(h.httpUrl, "/api/smallapp/login", ALLOWED)).headers)).toEqual([]);
    const metrics = await fetch(`${h.httpUrl}/metrics`, { headers: { origin: ALLOWED } });
    expect(metrics.status).toBe(200);
    expect(corsHeadersOf(metrics.headers)).toEqual([]);
    expect(corsHeadersOf((await preflight(h.httpUrl, "/metrics", ALLOWED, "GET")).headers)).toEqual([]);
  });
});

/** A preflight from `origin` is not answered as CORS, and a signed-in call works as without CORS, with no CORS header. */
async function expectNoCors(server: Harness, origins: string[]) {
  for (const origin of origins) {
    const pre = await preflight(server.httpUrl, `/${SERVICE}/Login`, origin);
    expect(pre.status).not.toBe(204);
    expect(pre.status).toBeLessThan(500);
    expect(corsHeadersOf(pre.headers)).toEqual([]);
  }
  const { access } = await login(server);
  const res = await rpc(server.httpUrl, "CheckLogin", {}, access, { origin: origins[0] as string });
  expect(res.status).toBe(200);
  expect(corsHeadersOf(res.headers)).toEqual([]);
}

describe("CORS for any other origin", () => {
  it("adds no CORS header to a preflight or a call from an origin not listed, and the call itself still works", () =>
    expectNoCors(h, [OTHER, `${ALLOWED}.evil.com`, "http://app.example.com", "null"]));

  it("adds none by default (no cors in the config)", () => expectNoCors(plain, [ALLOWED]));

  it("adds none on the h2c listener, which is for internal services", async () => {
    const session = http2.connect(h.grpcUrl);
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request({ ":method": "OPTIONS", ":path": `/${SERVICE}/Login`, origin: ALLOWED, "access-control-request-method": "POST" });
        stream.on("response", resolve).on("error", reject).resume();
        stream.end();
      });
      expect(headers[":status"]).not.toBe(204);
      expect(Object.keys(headers).filter((name) => name.startsWith("access-control-"))).toEqual([]);
    } finally {
      session.close();
    }
  });
});

describe("cors config", () => {
  const problemsOf = (cors: unknown): string[] => {
    try {
      loadConfig({ IDENTITY_CONFIG: "/etc/identity.json" }, () => JSON.stringify({ apps: [app], cors }));
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
    return [];
  };

  it("takes exact origins and fills the defaults", () => {
    const config = loadConfig({ IDENTITY_CONFIG: "/etc/identity.json" }, () => JSON.stringify({ apps: [app], cors: { origins: [ALLOWED, "http://127.0.0.1:8081"] } }));
    expect(config.file?.cors).toEqual({ origins: [ALLOWED, "http://127.0.0.1:8081"], credentials: false, maxAgeSeconds: 600 });
    expect(problemsOf({ origins: [ALLOWED] })).toEqual([]);
  });

  it("refuses what is not an origin as a browser sends it, naming the field", () => {
    const cases: [unknown, RegExp][] = [
      ["https://app.example.com/login", /^cors\.origins\[0\]: .*must be written as browsers send it: "https:\/\/app\.example\.com"/],
      ["https://App.Example.com", /^cors\.origins\[0\]: .*"https:\/\/app\.example\.com"/],
      ["https://app.example.com:443", /^cors\.origins\[0\]: .*"https:\/\/app\.example\.com"/],
      ["*", /^cors\.origins\[0\]: .*wildcards are not allowed/],
      ["https://*.example.com", /^cors\.origins\[0\]: .*wildcards are not allowed/],
      ["app.example.com", /^cors\.origins\[0\]: .*not an http\(s\) origin/],
      ["null", /^cors\.origins\[0\]: .*not an http\(s\) origin/],
      ["ftp://app.example.com", /^cors\.origins\[0\]: .*not an http\(s\) origin/],
      [42, /^cors\.origins\[0\]: /],
    ];
    for (const [origin, message] of cases) {
      const problems = problemsOf({ origins: [origin] });
      expect(problems, String(origin)).toHaveLength(1);
      expect(problems[0]).toMatch(message);
    }
    expect(problemsOf({ origins: [] })[0]).toMatch(/^cors\.origins: must list at least one origin/);
    expect(problemsOf({ origins: [ALLOWED], maxAgeSeconds: -1 })[0]).toMatch(/^cors\.maxAgeSeconds: /);
    expect(problemsOf({ origins: [ALLOWED], methods: ["PUT"] })[0]).toMatch(/^cors: .*methods/);
  });
});
