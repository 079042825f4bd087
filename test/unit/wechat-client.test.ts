// The WeChat client against the simulator over HTTP: errcode mapping, timeouts, and which failures it retries.
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createWechatSimulator, type WechatSimulator } from "../../src/simulator/simulator.js";
import { createWechatClient, kindOfErrcode, WechatError } from "../../src/wechat/wechat-client.js";
import { injectFault, mintCode, simPost } from "../support/harness.js";

const app = { appid: "wx0000000000000001", secret: "s3cret" };
const qqApp = { appid: "1110000001", secret: "qq-s3cret" };
let sim: WechatSimulator;
let client: ReturnType<typeof createWechatClient>;

beforeAll(async () => {
  sim = createWechatSimulator({ apps: { [app.appid]: app.secret }, qqApps: { [qqApp.appid]: qqApp.secret } });
  await sim.listen(0, "127.0.0.1");
  client = createWechatClient({ baseUrl: sim.url, timeoutMs: 300, retries: 1, retryDelayMs: 1 });
});
afterAll(async () => {
  await client.close();
  await sim.close();
});
beforeEach(async () => {
  await fetch(`${sim.url}/sim/faults`, { method: "DELETE" });
  await fetch(`${sim.url}/sim/calls`, { method: "DELETE" });
});

async function calls(path = "/sns/jscode2session"): Promise<number> {
  const { counts } = (await (await fetch(`${sim.url}/sim/calls`)).json()) as { counts: Record<string, number> };
  return counts[path] ?? 0;
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
    expect([40029, 42003, 40163, 40226, 45011, 45009, -1, 40001, 42001, 40014, 40125, 40013, 12345].map(kindOfErrcode)).toEqual([
      "code_invalid",
      "code_invalid",
      "code_used",
      "user_blocked",
      "rate_limited",
      "rate_limited",
      "unavailable",
      "token_invalid",
      "token_invalid",
      "token_invalid",
      "misconfigured",
      "misconfigured",
      "unexpected",
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
    // A port just freed refuses connections (fetch itself rejects "bad" ports such as 1 without trying).
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const attempts: string[] = [];
    const dead = createWechatClient({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 300, retries: 1, retryDelayMs: 1, observe: (_api, outcome) => attempts.push(outcome) });
    expect(await kindOf(dead.code2Session(app, "x"))).toBe("unavailable");
    expect(attempts).toEqual(["network", "network"]);
  });

  it("refuses an answer past a megabyte as a bad response, without retrying a code it may have spent", async () => {
    // Valid JSON with a real-looking openid, padded past the cap: the client must not buffer it whole or use it.
    const huge = JSON.stringify({ openid: "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", session_key: "tiihtNczf5v6AKRyjwEUhQ==", pad: "x".repeat(2 << 20) });
    const server = createHttpServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(huge));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const attempts: string[] = [];
    const padded = createWechatClient({
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      timeoutMs: 2000,
      retries: 1,
      retryDelayMs: 1,
      observe: (_api, outcome) => attempts.push(outcome),
    });
    try {
      expect(await kindOf(padded.code2Session(app, "x"))).toBe("unavailable");
      expect(attempts).toEqual(["bad_response"]);
    } finally {
      await padded.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("sends nothing for a caller that gave up before the call", async () => {
    const attempts: string[] = [];
    const watched = createWechatClient({ baseUrl: sim.url, timeoutMs: 300, retries: 1, retryDelayMs: 1, observe: (_api, outcome) => attempts.push(outcome) });
    try {
      const gone = new AbortController();
      gone.abort(new Error("the client went away"));
      expect(await kindOf(watched.code2Session(app, (await mintCode(sim.url)).code, gone.signal))).toBe("unavailable");
      expect(attempts).toEqual(["aborted"]);
      expect(await calls()).toBe(0);
    } finally {
      await watched.close();
    }
  });

  it("stops when the caller's deadline passes", async () => {
    await injectFault(sim.url, { path: "/sns/jscode2session", delayMs: 250 });
    const slow = createWechatClient({ baseUrl: sim.url, timeoutMs: 5000, retries: 1 });
    const started = Date.now();
    expect(await kindOf(slow.code2Session(app, (await mintCode(sim.url)).code, AbortSignal.timeout(50)))).toBe("unavailable");
    expect(Date.now() - started).toBeLessThan(240);
  });
});

describe("stableToken", () => {
  const path = "/cgi-bin/stable_token";

  it("gets the same token while it is valid, one call per fetch", async () => {
    const first = await client.stableToken(app);
    expect(first.accessToken).not.toBe("");
    expect(first.expiresIn).toBeGreaterThan(300);
    expect((await client.stableToken(app)).accessToken).toBe(first.accessToken);
    expect(await calls(path)).toBe(2);
  });

  it("retries -1 and a timeout, since fetching twice is harmless", async () => {
    await injectFault(sim.url, { path, errcode: -1 });
    expect(await kindOf(client.stableToken(app))).toBe("ok");
    expect(await calls(path)).toBe(2);
    await injectFault(sim.url, { path, delayMs: 1000 });
    expect(await kindOf(client.stableToken(app))).toBe("ok");
    expect(await calls(path)).toBe(4);
    await injectFault(sim.url, { path, errcode: -1, times: 2 });
    expect(await kindOf(client.stableToken(app))).toBe("unavailable:-1");
  });

  it("reports a wrong secret without retrying it", async () => {
    expect(await kindOf(client.stableToken({ ...app, secret: "wrong" }))).toBe("misconfigured:40125");
    expect(await calls(path)).toBe(1);
  });
});

describe("getPhoneNumber", () => {
  const path = "/wxa/business/getuserphonenumber";
  const phoneCode = async (phoneNumber: string, countryCode?: string) => ((await simPost(sim.url, "/sim/phone-code", { appid: app.appid, phoneNumber, countryCode })) as { code: string }).code;

  it("redeems a phone code once; the country code comes back as a string", async () => {
    const token = (await client.stableToken(app)).accessToken;
    const code = await phoneCode("13800138000");
    expect(await client.getPhoneNumber(token, code)).toEqual({
      phoneNumber: "13800138000",
      purePhoneNumber: "13800138000",
      countryCode: "86",
      watermarkAppid: app.appid,
    });
    expect(await kindOf(client.getPhoneNumber(token, code))).toBe("code_invalid:40029");
    expect(await client.getPhoneNumber(token, await phoneCode("+85261234567", "852"))).toMatchObject({
      phoneNumber: "+85261234567",
      purePhoneNumber: "61234567",
      countryCode: "852",
    });
    expect(await calls(path)).toBe(3);
  });

  it("leaves a refused token to the caller, without retrying", async () => {
    expect(await kindOf(client.getPhoneNumber("bogus-token", await phoneCode("13800138000")))).toBe("token_invalid:40001");
    expect(await calls(path)).toBe(1);
  });

  it("does not retry a timeout, which may have spent the code", async () => {
    const token = (await client.stableToken(app)).accessToken;
    await injectFault(sim.url, { path, delayMs: 1000 });
    expect(await kindOf(client.getPhoneNumber(token, await phoneCode("13800138000")))).toBe("unavailable");
    expect(await calls(path)).toBe(1);
  });
});

describe("checkSessionKey", () => {
  const path = "/wxa/checksession";
  const first = "Zmlyc3RmaXJzdGZpcnN0Zg==";
  const second = "c2Vjb25kc2Vjb25kc2Vjbw==";

  it("is true for the user's current session_key only", async () => {
    const token = (await client.stableToken(app)).accessToken;
    const { openid } = await mintCode(sim.url, { sessionKey: first });
    expect(await client.checkSessionKey(token, openid, first)).toBe(true);
    // A new wx.login for the same user rotates the key.
    await mintCode(sim.url, { openid, sessionKey: second });
    expect(await client.checkSessionKey(token, openid, first)).toBe(false);
    expect(await client.checkSessionKey(token, openid, second)).toBe(true);
    expect(await client.checkSessionKey(token, openid, "bWFkZXVwbWFkZXVwbWFkZQ==")).toBe(false);
    expect(await calls(path)).toBe(4);
  });

  it("retries -1 and reports a refused token", async () => {
    const token = (await client.stableToken(app)).accessToken;
    const { openid } = await mintCode(sim.url, { sessionKey: first });
    await injectFault(sim.url, { path, errcode: -1 });
    expect(await client.checkSessionKey(token, openid, first)).toBe(true);
    expect(await calls(path)).toBe(2);
    expect(await kindOf(client.checkSessionKey("bogus-token", openid, first))).toBe("token_invalid:40001");
    expect(await calls(path)).toBe(3);
  });
});

describe("msgSecCheck", () => {
  const path = "/wxa/msg_sec_check";

  it("gives WeChat's verdict from the v2 result, for a user of the app only", async () => {
    await simPost(sim.url, "/sim/sec-words", { risky: ["gamble"], review: ["lottery"] });
    const token = (await client.stableToken(app)).accessToken;
    const { openid } = await mintCode(sim.url);
    expect(await client.msgSecCheck(token, openid, "Gamble here")).toMatchObject({ suggest: "risky", label: 20006, traceId: expect.any(String) });
    expect((await client.msgSecCheck(token, openid, "lottery?")).suggest).toBe("review");
    expect(await client.msgSecCheck(token, openid, "小明")).toMatchObject({ suggest: "pass", label: 100 });
    expect(await kindOf(client.msgSecCheck(token, "not-a-user", "hi"))).toBe("unexpected:40003");
    await simPost(sim.url, "/sim/sec-words", {});
  });

  it("retries -1, since checking twice is harmless, and reports a refused token", async () => {
    const token = (await client.stableToken(app)).accessToken;
    const { openid } = await mintCode(sim.url);
    await injectFault(sim.url, { path, errcode: -1 });
    expect((await client.msgSecCheck(token, openid, "hello")).suggest).toBe("pass");
    expect(await calls(path)).toBe(2);
    expect(await kindOf(client.msgSecCheck("bogus-token", openid, "hello"))).toBe("token_invalid:40001");
  });
});

describe("QQ code2Session, through the same client", () => {
  const path = "/qq/sns/jscode2session";
  let qq: ReturnType<typeof createWechatClient>;
  beforeAll(() => {
    qq = createWechatClient({ baseUrl: `${sim.url}/qq`, timeoutMs: 300, retries: 1, retryDelayMs: 1 });
  });
  const qqCode = async (body: { openid?: string; unionid?: string; sessionKey?: string } = {}) =>
    (await simPost(sim.url, "/sim/qq/login-code", { appid: qqApp.appid, ...body })) as { code: string; openid: string };

  it("returns openid, session_key and unionid, and leaves unionid out when QQ sends none", async () => {
    const sessionKey = "cXFxcXFxcXFxcXFxcXFxcQ==";
    const minted = await qqCode({ unionid: "qu1", sessionKey });
    expect(await qq.code2Session(qqApp, minted.code)).toEqual({ openid: minted.openid, sessionKey, unionid: "qu1" });
    const plain = await qqCode();
    expect(await qq.code2Session(qqApp, plain.code)).not.toHaveProperty("unionid");
    expect(await calls(path)).toBe(2);
    expect(await calls()).toBe(0);
  });

  it("maps QQ's refusals like WeChat's", async () => {
    expect(await kindOf(qq.code2Session(qqApp, "unknown"))).toBe("code_invalid:40029");
    const { code } = await qqCode();
    await qq.code2Session(qqApp, code);
    expect(await kindOf(qq.code2Session(qqApp, code))).toBe("code_used:40163");
    expect(await kindOf(qq.code2Session({ ...qqApp, secret: "wrong" }, (await qqCode()).code))).toBe("misconfigured:40125");
    // A WeChat app is unknown to QQ, and a QQ code is unknown to WeChat.
    expect(await kindOf(qq.code2Session(app, (await mintCode(sim.url)).code))).toBe("misconfigured:40013");
    expect(await kindOf(client.code2Session(app, (await qqCode()).code))).toBe("code_invalid:40029");
    await injectFault(sim.url, { path, errcode: 45011 });
    expect(await kindOf(qq.code2Session(qqApp, (await qqCode()).code))).toBe("rate_limited:45011");
    expect(await calls(path)).toBe(6);
  });

  it("retries QQ's -1 once, like WeChat's", async () => {
    await injectFault(sim.url, { path, errcode: -1 });
    expect(await kindOf(qq.code2Session(qqApp, (await qqCode()).code))).toBe("ok");
    expect(await calls(path)).toBe(2);
  });
});

describe("oauth2AccessToken", () => {
  const path = "/sns/oauth2/access_token";
  const oauthCode = async (body: { openid?: string; unionid?: string; scope?: string } = {}) =>
    (await simPost(sim.url, "/sim/oauth-code", { appid: app.appid, ...body })) as { code: string; openid: string };

  it("returns openid, unionid and scope, and nothing of the user tokens", async () => {
    const minted = await oauthCode({ unionid: "u-web", scope: "snsapi_login" });
    expect(await client.oauth2AccessToken(app, minted.code)).toEqual({ openid: minted.openid, unionid: "u-web", scope: "snsapi_login" });
    const plain = await oauthCode();
    expect(await client.oauth2AccessToken(app, plain.code)).toEqual({ openid: plain.openid, scope: "snsapi_userinfo" });
    expect(await calls(path)).toBe(2);
  });

  it("reports an invalid or reused code without retrying it", async () => {
    expect(await kindOf(client.oauth2AccessToken(app, "unknown"))).toBe("code_invalid:40029");
    const { code } = await oauthCode();
    await client.oauth2AccessToken(app, code);
    expect(await kindOf(client.oauth2AccessToken(app, code))).toBe("code_used:40163");
    expect(await kindOf(client.oauth2AccessToken({ ...app, secret: "wrong" }, (await oauthCode()).code))).toBe("misconfigured:40125");
    expect(await calls(path)).toBe(4);
  });

  it("retries -1 but not a timeout, which may have spent the code", async () => {
    await injectFault(sim.url, { path, errcode: -1 });
    expect(await kindOf(client.oauth2AccessToken(app, (await oauthCode()).code))).toBe("ok");
    expect(await calls(path)).toBe(2);
    await injectFault(sim.url, { path, delayMs: 1000 });
    expect(await kindOf(client.oauth2AccessToken(app, (await oauthCode()).code))).toBe("unavailable");
    expect(await calls(path)).toBe(3);
  });
});
