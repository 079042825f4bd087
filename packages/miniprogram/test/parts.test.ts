// The kit's pure parts, imported from src/: reading refusals of every shape an answer comes in,
// the in-flight limiter, and the adapter's own timeout for a platform that ignores its `timeout`.
import { describe, expect, it } from "vitest";
import { errorOf, IdentityError, reasonOf } from "../src/errors.js";
import { adaptPlatform, type MiniProgramApi } from "../src/platform.js";
import { createLimiter } from "../src/transport.js";

const answer = (statusCode: number, data: unknown, header: Record<string, string> = {}) => ({ statusCode, data, header });

describe("refusals", () => {
  it("reads a Connect error, parsed or as text, with its reason, metadata and retry-after", () => {
    const body = {
      code: "resource_exhausted",
      message: "slow down",
      details: [{ type: "google.rpc.ErrorInfo", value: "…", debug: { reason: "RATE_LIMITED", domain: "identity.v1", metadata: { retryAfterSeconds: "7" } } }],
    };
    for (const data of [body, JSON.stringify(body)]) {
      const error = errorOf(answer(429, data));
      expect(error).toBeInstanceOf(IdentityError);
      expect([error.code, error.reason, error.status, error.retryAfter, error.message]).toEqual(["resource_exhausted", "RATE_LIMITED", 429, 7, "slow down"]);
    }
    expect(errorOf(answer(503, body, { "Retry-After": "3" })).retryAfter).toBe(3);
  });

  it("reads the client middleware's flat {code, reason}", () => {
    const res = answer(401, { code: "unauthenticated", reason: "TOKEN_EXPIRED" });
    expect(reasonOf(res)).toBe("TOKEN_EXPIRED");
    expect(errorOf(res).code).toBe("unauthenticated");
  });

  it("names a code from the status when the body is a proxy's page, and never throws on odd bodies", () => {
    expect([errorOf(answer(502, "<html>Bad Gateway</html>")).code, errorOf(answer(502, "<html>")).reason]).toEqual(["unavailable", ""]);
    expect(errorOf(answer(401, "")).code).toBe("unauthenticated");
    expect(errorOf(answer(418, null)).code).toBe("unknown");
    for (const data of [null, 42, [1], { details: "x" }, { details: [null, { type: "google.rpc.ErrorInfo" }] }]) expect(reasonOf(answer(400, data))).toBeUndefined();
  });
});

describe("createLimiter", () => {
  it("runs at most max at once, the rest in order", async () => {
    const limit = createLimiter(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const task = (i: number) =>
      limit(async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 10));
        running--;
        order.push(i);
        if (i === 1) throw new Error("a failing task still frees its slot");
      });
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map(task));
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
  });
});

describe("adaptPlatform", () => {
  it("times out a request the platform never answers, aborting its task", async () => {
    let aborted = false;
    const abort = () => {
      aborted = true;
    };
    const silent = { request: () => ({ abort }), getStorageSync: () => "", setStorageSync() {}, removeStorageSync() {} } as MiniProgramApi;
    const started = Date.now();
    const error = await adaptPlatform(silent)
      .request({ url: "https://id.example.com", method: "GET", header: {} }, 50)
      .catch((e: IdentityError) => e);
    expect([(error as IdentityError).reason, aborted]).toEqual(["NETWORK", true]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it("takes a fail callback without an answer as NETWORK, with the platform's errMsg", async () => {
    const offline = { request: (o: { fail: (r: object) => void }) => o.fail({ errMsg: "request:fail -109" }), getStorageSync: () => "", setStorageSync() {}, removeStorageSync() {} };
    const error = await adaptPlatform(offline as unknown as MiniProgramApi)
      .request({ url: "https://id.example.com", method: "GET", header: {} }, 1000)
      .catch((e: IdentityError) => e);
    expect([(error as IdentityError).code, (error as IdentityError).reason, (error as IdentityError).message]).toEqual(["unavailable", "NETWORK", "request:fail -109"]);
  });
});
