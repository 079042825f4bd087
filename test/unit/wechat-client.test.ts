// The WeChat client against the simulator over HTTP: errcode mapping, timeouts, and which failures it retries.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createWechatSimulator, type WechatSimulator } from "../../src/simulator/simulator.js";
import { createWechatClient, kindOfErrcode, WechatError } from "../../src/wechat/wechat-client.js";
import { injectFault, mintCode } from "../support/harness.js";

const app = { appid: "wx0000000000000001", secret: "s3cret" };
let sim: WechatSimulator;
let client: ReturnType<typeof createWechatClient>;

beforeAll(async () => {
  sim = createWechatSimulator({ apps: { [app.appid]: app.secret } });
  await sim.listen(0, "127.0.0.1");
  client = createWechatClient({ baseUrl: sim.url, timeoutMs: 300, retries: 1, retryDelayMs: 1 });
});
afterAll(() => sim.close());
beforeEach(async () => {
  await fetch(`${sim.url}/sim/faults`, { method: "DELETE" });
  await fetch(`${sim.url}/sim/calls`, { method: "DELETE" });
});

async function calls(): Promise<number> {
  const { counts } = (await (await fetch(`${sim.url}/sim/calls`)).json()) as { counts: Record<string, number> };
  return counts["/sns/jscode2session"] ?? 0;
}

async function kindOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "ok";
  } catch (e) {
    if (e instanceof WechatError) return `${e.kind}${e.errcode === undefined ? "" : `:${e.errcode}`}`;
    throw e;
  }
}

describe("errcode mapping", () => {
  it("maps the documented errcodes and treats the rest as unexpected", () => {
    expect([40029, 40163, 40226, 45011, 45009, -1, 40001, 42001, 40125, 40013, 12345].map(kindOfErrcode)).toEqual([
      "code_invalid", "code_used", "user_blocked", "rate_limited", "rate_limited", "unavailable", "token_invalid", "token_invalid",
      "misconfigured", "misconfigured", "unexpected",
    ]);
  });
});

describe("code2Session", () => {
  it("returns openid, session_key and unionid", async () => {
    const minted = await mintCode(sim.url, { unionid: "u1", sessionKey: "a2V5a2V5a2V5a2V5a2V5aw==" });
    expect(await client.code2Session(app, minted.code)).toEqual({ openid: minted.openid, sessionKey: "a2V5a2V5a2V5a2V5a2V5aw==", unionid: "u1" });
  });

  it("reports WeChat's refusals without retrying them", async () => {
    expect(await kindOf(client.code2Session(app, "unknown"))).toBe("code_invalid:40029");
    const { code } = await mintCode(sim.url);
    await client.code2Session(app, code);
    expect(await kindOf(client.code2Session(app, code))).toBe("code_used:40163");
    expect(await kindOf(client.code2Session({ ...app, secret: "wrong" }, (await mintCode(sim.url)).code))).toBe("misconfigured:40125");
    await injectFault(sim.url, { path: "/sns/jscode2session", errcode: 45011 });
    expect(await kindOf(client.code2Session(app, (await mintCode(sim.url)).code))).toBe("rate_limited:45011");
    expect(await calls()).toBe(5);
  });

  it("retries -1 once; a second -1 is unavailable", async () => {
    await injectFault(sim.url, { path: "/sns/jscode2session", errcode: -1, times: 1 });
    expect(await kindOf(client.code2Session(app, (await mintCode(sim.url)).code))).toBe("ok");
    expect(await calls()).toBe(2);
    await injectFault(sim.url, { path: "/sns/jscode2session", errcode: -1, times: 2 });
    expect(await kindOf(client.code2Session(app, (await mintCode(sim.url)).code))).toBe("unavailable:-1");
  });

  it("does not retry a timeout or a dropped connection, which may have spent the code", async () => {
    await injectFault(sim.url, { path: "/sns/jscode2session", delayMs: 1000 });
    expect(await kindOf(client.code2Session(app, (await mintCode(sim.url)).code))).toBe("unavailable");
    await injectFault(sim.url, { path: "/sns/jscode2session", drop: true });
    expect(await kindOf(client.code2Session(app, (await mintCode(sim.url)).code))).toBe("unavailable");
    expect(await calls()).toBe(2);
  });

  it("treats 5xx and non-JSON answers as unavailable", async () => {
    await injectFault(sim.url, { path: "/sns/jscode2session", status: 503 });
    expect(await kindOf(client.code2Session(app, (await mintCode(sim.url)).code))).toBe("unavailable");
  });

  it("retries a connection that was refused before anything was sent", async () => {
    const dead = createWechatClient({ baseUrl: "http://127.0.0.1:1", timeoutMs: 300, retries: 1, retryDelayMs: 1 });
    expect(await kindOf(dead.code2Session(app, "x"))).toBe("unavailable");
  });

  it("stops when the caller's deadline passes", async () => {
    await injectFault(sim.url, { path: "/sns/jscode2session", delayMs: 250 });
    const slow = createWechatClient({ baseUrl: sim.url, timeoutMs: 5000, retries: 1 });
    const started = Date.now();
    expect(await kindOf(slow.code2Session(app, (await mintCode(sim.url)).code, AbortSignal.timeout(50)))).toBe("unavailable");
    expect(Date.now() - started).toBeLessThan(240);
  });
});
