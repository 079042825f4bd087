// WeChat misbehaving, scripted in the simulator: the service must answer quickly and honestly,
// never spend a single-use code twice, keep its deadline, stop hammering a failing API, and keep
// signed-in users signed in while WeChat is down.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEMO_APPID, injectFault, login, mintCode, reasonOf, rpc, simPost, startHarness, type Harness, type RpcResult } from "./support/harness.js";

const SECRET = "faults-secret-0123456789abcdef";
const CODE_PATH = "/sns/jscode2session";
const PHONE_PATH = "/wxa/business/getuserphonenumber";

function configWith(wechat: object) {
  return { apps: [{ id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: SECRET }], wechat };
}

async function calls(h: Harness): Promise<Record<string, number>> {
  return ((await (await fetch(`${h.sim}/sim/calls`)).json()) as { counts: Record<string, number> }).counts;
}

async function resetTraffic(h: Harness): Promise<void> {
  await fetch(`${h.sim}/sim/faults`, { method: "DELETE" });
  await fetch(`${h.sim}/sim/calls`, { method: "DELETE" });
}

/** How many jscode2session attempts ended with this outcome (the service's metrics). */
async function codeAttempts(h: Harness, outcome: string): Promise<number> {
  const metrics = await (await fetch(`${h.httpUrl}/metrics`)).text();
  return Number(new RegExp(`identity_upstream_requests_total\\{api="jscode2session",outcome="${outcome}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
}

/** Polls until `check` is true or `ms` pass; the last answer. */
async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > ms) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/** Every code a test here sent to Login, for the log check. */
const sentCodes: string[] = [];

/** A Login with a fresh code, timed. */
async function timedLogin(h: Harness, headers: Record<string, string> = {}): Promise<{ res: RpcResult; ms: number; code: string }> {
  const { code } = await mintCode(h.sim);
  sentCodes.push(code);
  const started = performance.now();
  const res = await rpc(h.httpUrl, "Login", { appId: "demo", code }, undefined, headers);
  return { res, ms: performance.now() - started, code };
}

function expectUnavailable(res: RpcResult): void {
  expect(res.status).toBe(503);
  expect(res.json.code).toBe("unavailable");
  expect(reasonOf(res)).toBe("UPSTREAM_UNAVAILABLE");
}

describe("WeChat faults on single-use code calls", () => {
  let h: Harness;
  beforeAll(async () => {
    // Breaker off here: these tests fail jscode2session on purpose, one after another.
    h = await startHarness(configWith({ timeoutMs: 800, retries: 1, budgetMs: 5000, breaker: { failures: 0 } }));
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => resetTraffic(h));

  it("gives up on a hanging code2Session after one attempt's timeout and does not send the code again", async () => {
    await injectFault(h.sim, { path: CODE_PATH, delayMs: 4000 });
    const { res, ms } = await timedLogin(h);
    expectUnavailable(res);
    expect(ms).toBeGreaterThanOrEqual(700);
    expect(ms).toBeLessThan(3000);
    expect((await calls(h))[CODE_PATH]).toBe(1);
  });

  it("does not resend a code after a connection reset, and the unspent code still works", async () => {
    await injectFault(h.sim, { path: CODE_PATH, reset: true });
    const { res, code } = await timedLogin(h);
    expectUnavailable(res);
    expect((await calls(h))[CODE_PATH]).toBe(1);
    // The reset came before WeChat did anything: the user's retry with the same code signs in.
    const again = await rpc(h.httpUrl, "Login", { appId: "demo", code });
    expect(again.status).toBe(200);
  });

  it.each([
    ["a truncated body", { body: "truncated" as const }],
    ["a body that is not JSON", { body: "garbage" as const }],
    ["HTTP 502", { status: 502 }],
    ["the code consumed, then the connection dropped", { drop: true }],
  ])("answers UNAVAILABLE to %s without sending the code twice", async (_what, f) => {
    await injectFault(h.sim, { path: CODE_PATH, ...f });
    const { res, code } = await timedLogin(h);
    expectUnavailable(res);
    expect((await calls(h))[CODE_PATH]).toBe(1);
    // The retry is the client's to make, and the service tells it how that went: signed in if
    // WeChat never redeemed the code (the 502 here), CODE_USED if it did.
    const again = await rpc(h.httpUrl, "Login", { appId: "demo", code });
    if ("status" in f) expect(again.status).toBe(200);
    else expect(reasonOf(again)).toBe("CODE_USED");
  });

  it("retries WeChat's busy (-1), which spent nothing, and signs in", async () => {
    await injectFault(h.sim, { path: CODE_PATH, errcode: -1 });
    const { res } = await timedLogin(h);
    expect(res.status).toBe(200);
    expect((await calls(h))[CODE_PATH]).toBe(2);
  });

  it("stops retrying -1 after wechat.retries and answers UNAVAILABLE", async () => {
    await injectFault(h.sim, { path: CODE_PATH, errcode: -1, times: 5 });
    const { res } = await timedLogin(h);
    expectUnavailable(res);
    expect(res.json.details[0].debug.metadata.errcode).toBe("-1");
    expect((await calls(h))[CODE_PATH]).toBe(2);
  });

  it("answers WeChat's code expired (42003) as CODE_INVALID, never a logged UPSTREAM_ERROR", async () => {
    await injectFault(h.sim, { path: CODE_PATH, errcode: 42003 });
    const { res } = await timedLogin(h);
    expect([res.status, reasonOf(res)]).toEqual([400, "CODE_INVALID"]);
    expect(h.logs.filter((line) => JSON.parse(line).level >= 50)).toEqual([]);
  });

  it("passes WeChat's rate limit (45011) on as RESOURCE_EXHAUSTED without retrying", async () => {
    await injectFault(h.sim, { path: CODE_PATH, errcode: 45011 });
    const { res } = await timedLogin(h);
    expect(res.status).toBe(429);
    expect(reasonOf(res)).toBe("RATE_LIMITED");
    expect((await calls(h))[CODE_PATH]).toBe(1);
  });

  it("does not resend a phone code whose answer was lost", async () => {
    const { access } = await login(h);
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13800138000" });
    await injectFault(h.sim, { path: PHONE_PATH, drop: true });
    const res = await rpc(h.httpUrl, "GetPhone", { code }, access);
    expectUnavailable(res);
    expect((await calls(h))[PHONE_PATH]).toBe(1);
  });

  it("keeps a Connect deadline of 500 ms against a hanging WeChat", async () => {
    await injectFault(h.sim, { path: CODE_PATH, delayMs: 10_000, times: 3 });
    const [abortedBefore, timedOutBefore] = [await codeAttempts(h, "aborted"), await codeAttempts(h, "timeout")];
    const { res, ms } = await timedLogin(h, { "connect-timeout-ms": "500" });
    expect(["deadline_exceeded", "unavailable"]).toContain(res.json.code);
    // 500 ms plus generous room for a busy machine, well short of an attempt's 800 ms and its retry.
    expect(ms).toBeLessThan(1500);
    expect((await calls(h))[CODE_PATH]).toBe(1);
    // The deadline cut the attempt ("aborted"); an ignored deadline would have ended it by its own 800 ms timeout.
    expect(await eventually(async () => (await codeAttempts(h, "aborted")) - abortedBefore === 1)).toBe(true);
    expect(await codeAttempts(h, "timeout")).toBe(timedOutBefore);
  });

  it("stops waiting on WeChat when the client goes away mid-Login", async () => {
    const before = await codeAttempts(h, "aborted");
    await injectFault(h.sim, { path: CODE_PATH, delayMs: 10_000 });
    const { code } = await mintCode(h.sim);
    sentCodes.push(code);
    const client = new AbortController();
    const pending = fetch(`${h.httpUrl}/identity.v1.IdentityService/Login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ appId: "demo", code }),
      signal: client.signal,
    }).catch((e: unknown) => e);
    // Leave once the code is at WeChat, whatever the machine's speed.
    expect(await eventually(async () => (await calls(h))[CODE_PATH] === 1)).toBe(true);
    client.abort();
    await pending;
    // The attempt ends as "aborted", long before WeChat's 10 s; its own 800 ms timeout would say "timeout".
    expect(await eventually(async () => (await codeAttempts(h, "aborted")) - before === 1)).toBe(true);
    expect((await calls(h))[CODE_PATH]).toBe(1);
  });

  it("keeps a Connect deadline of 500 ms on GetPhone while WeChat's access_token fetch hangs", async () => {
    // A fresh instance: its broker has no token yet, so GetPhone must wait for stable_token.
    const fresh = await startHarness(configWith({ timeoutMs: 5000, retries: 0, budgetMs: 8000, breaker: { failures: 0 } }));
    try {
      const { access } = await login(fresh);
      await injectFault(fresh.sim, { path: "/cgi-bin/stable_token", delayMs: 10_000 });
      const { code } = await simPost(fresh.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13800138000" });
      const started = performance.now();
      const res = await rpc(fresh.httpUrl, "GetPhone", { code }, access, { "connect-timeout-ms": "500" });
      expect(res.json.code).toBe("deadline_exceeded");
      expect(performance.now() - started).toBeLessThan(1500);
      expect((await calls(fresh))[PHONE_PATH] ?? 0).toBe(0);
    } finally {
      await fresh.close();
    }
  }, 15_000);

  it("serves Refresh, CheckLogin, GetUser, UpdateUser and Logout while every WeChat API hangs, without calling WeChat", async () => {
    const user = await login(h);
    await resetTraffic(h);
    const paths = Object.keys(await calls(h));
    expect(paths).toContain(CODE_PATH);
    for (const path of paths) await injectFault(h.sim, { path, delayMs: 10_000, times: 100 });

    const refreshed = await rpc(h.httpUrl, "Refresh", { refreshToken: user.refresh });
    expect(refreshed.status).toBe(200);
    const access = refreshed.json.tokens.accessToken as string;
    const checked = await rpc(h.httpUrl, "CheckLogin", {}, access);
    expect(checked.status).toBe(200);
    expect(checked.json.user.id).toBe(user.body.user.id);
    const got = await rpc(h.httpUrl, "GetUser", {}, access);
    expect(got.status).toBe(200);
    expect(got.json.user.id).toBe(user.body.user.id);
    // A nickname goes through WeChat's content check; every other field is ours alone.
    const updated = await rpc(h.httpUrl, "UpdateUser", { user: { avatarUrl: "https://example.com/offline.png" }, updateMask: "avatarUrl" }, access);
    expect(updated.json.user.avatarUrl).toBe("https://example.com/offline.png");
    expect((await rpc(h.httpUrl, "Logout", {}, access)).status).toBe(200);

    const counts = await calls(h);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
  });

  it("never logs the app secret or a code", () => {
    const log = h.logs.join("");
    expect(log).toContain("UPSTREAM_UNAVAILABLE");
    expect(log).not.toContain(SECRET);
    expect(log).not.toMatch(/js_code=(?!redacted)/);
    expect(sentCodes.length).toBeGreaterThan(5);
    for (const code of sentCodes) expect(log).not.toContain(code);
  });
});

describe("WeChat call budget and circuit breaker", () => {
  let h: Harness;
  const coolDownMs = 1500;
  beforeAll(async () => {
    h = await startHarness(configWith({ timeoutMs: 1000, retries: 3, budgetMs: 1500, breaker: { failures: 3, coolDownMs } }));
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => resetTraffic(h));

  it("stops retrying when the call's budget is spent", async () => {
    // Each busy answer takes 700 ms: four attempts would take about 3 s, the budget allows about two.
    await injectFault(h.sim, { path: CODE_PATH, errcode: -1, delayMs: 700, times: 10 });
    const { res, ms } = await timedLogin(h);
    expectUnavailable(res);
    expect((await calls(h))[CODE_PATH]).toBeLessThanOrEqual(3);
    expect(ms).toBeLessThan(2800);
  });

  it("fails fast after repeated failures of one API, leaves the others alone, and probes after the cool-down", async () => {
    const user = await login(h); // a success resets the count of failures in a row
    await resetTraffic(h);
    await injectFault(h.sim, { path: CODE_PATH, status: 503, times: 3 });
    for (let i = 0; i < 3; i++) expectUnavailable((await timedLogin(h)).res);
    expect((await calls(h))[CODE_PATH]).toBe(3);

    const open = await timedLogin(h);
    expectUnavailable(open.res);
    expect(open.res.json.details[0].debug.metadata).toMatchObject({ api: "jscode2session" });
    expect(Number(open.res.json.details[0].debug.metadata.retryAfterSeconds)).toBeGreaterThan(0);
    expect(open.res.headers.get("retry-after")).toBe(open.res.json.details[0].debug.metadata.retryAfterSeconds);
    expect(open.ms).toBeLessThan(1000);
    expect((await calls(h))[CODE_PATH]).toBe(3); // failed fast: WeChat never saw it

    // Another API has its own breaker.
    const { code: phoneCode } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13900139000" });
    expect((await rpc(h.httpUrl, "GetPhone", { code: phoneCode }, user.access)).status).toBe(200);

    // After the cool-down one probe goes out; it fails, so the breaker opens again.
    await new Promise((r) => setTimeout(r, coolDownMs + 200));
    await injectFault(h.sim, { path: CODE_PATH, status: 503 });
    expectUnavailable((await timedLogin(h)).res);
    expect((await calls(h))[CODE_PATH]).toBe(4);
    expectUnavailable((await timedLogin(h)).res);
    expect((await calls(h))[CODE_PATH]).toBe(4);

    // The next probe succeeds and closes it.
    await new Promise((r) => setTimeout(r, coolDownMs + 200));
    expect((await timedLogin(h)).res.status).toBe(200);
    expect((await timedLogin(h)).res.status).toBe(200);
    expect((await calls(h))[CODE_PATH]).toBe(6);
  });
});
