import { createDecipheriv, createHmac } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createWechatSimulator, type WechatSimulator } from "../src/simulator/simulator.js";
import { simHttp, type Json } from "./support/sim-http.js";

// The simulator over real HTTP, as the service's WeChat client and a test harness see it.

const APP = "wx0000000000000001";
const SECRET = "secret-one";
const OTHER_APP = "wx0000000000000002";
const OTHER_SECRET = "secret-two";
const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

// Answers are loosely typed on purpose: each test asserts the fields it cares about.

let sim: WechatSimulator;
let base: string;

beforeEach(async () => {
  sim = createWechatSimulator({ apps: { [APP]: SECRET, [OTHER_APP]: OTHER_SECRET }, now: () => T0 });
  base = await sim.listen(0, "127.0.0.1");
});

afterEach(async () => {
  await sim.close();
});

const { call, postJson, control } = simHttp(() => base);

function mintLoginCode(request: Json = {}): Promise<Json> {
  return control("/sim/login-code", { appid: APP, ...request });
}

async function mintPhoneCode(phoneNumber = "13800138000", request: Json = {}): Promise<string> {
  return (await control("/sim/phone-code", { appid: APP, phoneNumber, ...request })).code as string;
}

async function advance(advanceMs: number): Promise<void> {
  await control("/sim/clock", { advanceMs });
}

async function code2Session(code: string, params: Record<string, string> = {}): Promise<Json> {
  const query = new URLSearchParams({
    appid: APP,
    secret: SECRET,
    js_code: code,
    grant_type: "authorization_code",
    ...params,
  });
  const { status, body } = await call(`/sns/jscode2session?${query}`);
  expect(status).toBe(200);
  return body;
}

async function stableToken(body: Json = {}): Promise<Json> {
  const answer = await postJson("/cgi-bin/stable_token", {
    grant_type: "client_credential",
    appid: APP,
    secret: SECRET,
    ...body,
  });
  expect(answer.status).toBe(200);
  return answer.body;
}

async function accessToken(body: Json = {}): Promise<string> {
  const answer = await stableToken(body);
  expect(typeof answer.access_token).toBe("string");
  return answer.access_token as string;
}

async function phoneNumber(token: string, code: string): Promise<Json> {
  const { status, body } = await postJson(`/wxa/business/getuserphonenumber?access_token=${token}`, { code });
  expect(status).toBe(200);
  return body;
}

function signature(sessionKey: string): string {
  return createHmac("sha256", sessionKey).update("").digest("hex");
}

async function checkSession(token: string, openid: string, sig: string, sigMethod = "hmac_sha256"): Promise<Json> {
  const query = new URLSearchParams({ access_token: token, openid, signature: sig, sig_method: sigMethod });
  const { status, body } = await call(`/wxa/checksession?${query}`);
  expect(status).toBe(200);
  return body;
}

function decrypt(sessionKey: string, encryptedData: string, iv: string): Json {
  const decipher = createDecipheriv("aes-128-cbc", Buffer.from(sessionKey, "base64"), Buffer.from(iv, "base64"));
  const plain = Buffer.concat([decipher.update(Buffer.from(encryptedData, "base64")), decipher.final()]);
  return JSON.parse(plain.toString("utf8")) as Json;
}

describe("readiness and unknown paths", () => {
  it("answers on / with the endpoint list", async () => {
    const { status, body } = await call("/");
    expect(status).toBe(200);
    expect(body.service).toBe("wechat-simulator");
    expect(body.endpoints).toEqual(expect.arrayContaining(["GET /sns/jscode2session", "POST /sim/login-code"]));
  });

  it("refuses unknown paths like WeChat, with 40066", async () => {
    const { status, body } = await call("/cgi-bin/nope");
    expect(status).toBe(404);
    expect(body.errcode).toBe(40066);
  });

  it("has no url before it listens", () => {
    expect(() => createWechatSimulator({ apps: {} }).url).toThrow();
    expect(sim.url).toBe(base);
  });
});

describe("jscode2session", () => {
  it("exchanges a code once, then answers 40163", async () => {
    const minted = await mintLoginCode({ openid: "o-alice", unionid: "u-alice" });
    expect(minted).toMatchObject({ openid: "o-alice", unionid: "u-alice" });

    const session = await code2Session(minted.code);
    expect(session.errcode).toBeUndefined();
    expect(session).toMatchObject({ openid: "o-alice", unionid: "u-alice" });
    expect(Buffer.from(session.session_key, "base64")).toHaveLength(16);
    expect((await code2Session(minted.code)).errcode).toBe(40163);
  });

  it("makes up an openid and leaves unionid out when not given", async () => {
    const minted = await mintLoginCode();
    expect(minted.openid).toMatch(/^o[A-Za-z0-9_-]{27}$/);
    expect(minted.unionid).toBeNull();
    const session = await code2Session(minted.code);
    expect(session.openid).toBe(minted.openid);
    expect(session).not.toHaveProperty("unionid");
  });

  it("expires codes after 5 minutes", async () => {
    const early = await mintLoginCode();
    const late = await mintLoginCode();
    await advance(5 * MINUTE - 1_000);
    expect((await code2Session(early.code)).openid).toBe(early.openid);
    await advance(1_000);
    expect((await code2Session(late.code)).errcode).toBe(40029);
  });

  it("keeps codes to the app they were minted for", async () => {
    const minted = await mintLoginCode();
    expect((await code2Session(minted.code, { appid: OTHER_APP, secret: OTHER_SECRET })).errcode).toBe(40029);
    expect((await code2Session(minted.code)).openid).toBe(minted.openid);
  });

  it("answers 40226 for a blocked user's code", async () => {
    const minted = await mintLoginCode({ blocked: true });
    expect((await code2Session(minted.code)).errcode).toBe(40226);
  });

  it.each([
    ["an unknown appid", { appid: "wx-unknown" }, 40013],
    ["a wrong secret", { secret: "wrong" }, 40125],
    ["a missing appid", { appid: "" }, 41002],
    ["a missing secret", { secret: "" }, 41004],
    ["a missing js_code", { js_code: "" }, 41008],
    ["a wrong grant_type", { grant_type: "client_credential" }, 40002],
    ["an unknown code", { js_code: "no-such-code" }, 40029],
  ])("refuses %s", async (_case, params, errcode) => {
    const minted = await mintLoginCode();
    expect((await code2Session(minted.code, params)).errcode).toBe(errcode);
  });
});

describe("stable_token", () => {
  it("returns the same token while it is valid", async () => {
    const first = await stableToken();
    expect(first.expires_in).toBe(7200);
    await advance(1_000_000);
    const second = await stableToken();
    expect(second.access_token).toBe(first.access_token);
    expect(second.expires_in).toBe(6200);
  });

  it("renews in the last 300 s, keeping the old token valid until its own expiry", async () => {
    const old = await accessToken();
    await advance(7200_000 - 300_000);
    const renewed = await stableToken();
    expect(renewed.access_token).not.toBe(old);
    expect(renewed.expires_in).toBe(7200);
    expect((await phoneNumber(old, await mintPhoneCode())).errcode).toBe(0);

    await advance(300_000);
    expect((await phoneNumber(old, await mintPhoneCode())).errcode).toBe(42001);
    expect((await phoneNumber(renewed.access_token, await mintPhoneCode())).errcode).toBe(0);
  });

  it("force_refresh issues a new token and invalidates the old one at once", async () => {
    const old = await accessToken();
    const forced = await accessToken({ force_refresh: true });
    expect(forced).not.toBe(old);
    expect((await phoneNumber(old, await mintPhoneCode())).errcode).toBe(40001);
    expect((await phoneNumber(forced, await mintPhoneCode())).errcode).toBe(0);
    expect(await accessToken()).toBe(forced);
  });

  it("keeps tokens per app", async () => {
    const mine = await accessToken();
    const theirs = await accessToken({ appid: OTHER_APP, secret: OTHER_SECRET });
    expect(theirs).not.toBe(mine);
    expect((await phoneNumber(theirs, await mintPhoneCode())).errcode).toBe(40029);
  });

  it("reads only JSON: a form-encoded body is 41002", async () => {
    const form = new URLSearchParams({ grant_type: "client_credential", appid: APP, secret: SECRET });
    const { status, body } = await call("/cgi-bin/stable_token", { method: "POST", body: form });
    expect(status).toBe(200);
    expect(body.errcode).toBe(41002);
  });

  it("requires POST", async () => {
    expect((await call("/cgi-bin/stable_token")).body.errcode).toBe(43002);
  });

  it.each([
    ["an unknown appid", { appid: "wx-unknown" }, 40013],
    ["a wrong secret", { secret: "wrong" }, 40125],
    ["a missing secret", { secret: undefined }, 41004],
    ["a wrong grant_type", { grant_type: "authorization_code" }, 40002],
  ])("refuses %s", async (_case, body, errcode) => {
    expect((await stableToken(body)).errcode).toBe(errcode);
  });
});

describe("getuserphonenumber", () => {
  it("redeems a phone code once", async () => {
    const token = await accessToken();
    const code = await mintPhoneCode("+8613800138000");
    expect(await phoneNumber(token, code)).toEqual({
      errcode: 0,
      errmsg: "ok",
      phone_info: {
        phoneNumber: "+8613800138000",
        purePhoneNumber: "13800138000",
        countryCode: 86,
        watermark: { timestamp: T0 / 1000, appid: APP },
      },
    });
    expect((await phoneNumber(token, code)).errcode).toBe(40029);
  });

  it("strips only the given country code from the pure number", async () => {
    const token = await accessToken();
    const foreign = await phoneNumber(token, await mintPhoneCode("+14155550100", { countryCode: "1" }));
    expect(foreign.phone_info).toMatchObject({ purePhoneNumber: "4155550100", countryCode: 1 });
    const local = await phoneNumber(token, await mintPhoneCode("13800138000"));
    expect(local.phone_info).toMatchObject({ phoneNumber: "13800138000", purePhoneNumber: "13800138000" });
  });

  it("expires phone codes after 5 minutes", async () => {
    const code = await mintPhoneCode();
    await advance(5 * MINUTE);
    expect((await phoneNumber(await accessToken(), code)).errcode).toBe(40029);
  });

  it("checks the access token first", async () => {
    const code = await mintPhoneCode();
    const missing = await postJson("/wxa/business/getuserphonenumber", { code });
    expect(missing.body.errcode).toBe(41001);
    expect((await phoneNumber("not-a-token", code)).errcode).toBe(40001);
    expect((await phoneNumber(await accessToken(), code)).errcode).toBe(0);
  });

  it("answers 47001 for a body that is not JSON", async () => {
    const token = await accessToken();
    const { body } = await call(`/wxa/business/getuserphonenumber?access_token=${token}`, {
      method: "POST",
      body: "code=abc",
    });
    expect(body.errcode).toBe(47001);
  });
});

describe("checksession", () => {
  it("accepts the HMAC of the current session_key and refuses others", async () => {
    const token = await accessToken();
    const { code, openid } = await mintLoginCode();
    const { session_key: sessionKey } = await code2Session(code);

    expect(await checkSession(token, openid, signature(sessionKey))).toEqual({ errcode: 0, errmsg: "ok" });
    expect((await checkSession(token, openid, signature("not-the-key"))).errcode).toBe(87009);
    expect((await checkSession(token, "o-stranger", signature(sessionKey))).errcode).toBe(87009);
    expect((await checkSession(token, openid, signature(sessionKey), "md5")).errcode).toBe(87008);
  });

  it("rotates the session_key with every login code, unless one is given", async () => {
    const token = await accessToken();
    const first = await mintLoginCode();
    const firstKey = (await code2Session(first.code)).session_key as string;
    const second = await mintLoginCode({ openid: first.openid });
    const secondKey = (await code2Session(second.code)).session_key as string;

    expect(secondKey).not.toBe(firstKey);
    expect((await checkSession(token, first.openid, signature(firstKey))).errcode).toBe(87009);
    expect((await checkSession(token, first.openid, signature(secondKey))).errcode).toBe(0);

    const chosenKey = Buffer.alloc(16, 7).toString("base64");
    await mintLoginCode({ openid: first.openid, sessionKey: chosenKey });
    expect((await checkSession(token, first.openid, signature(chosenKey))).errcode).toBe(0);
  });

  it("needs a valid access token", async () => {
    const { openid } = await mintLoginCode();
    expect((await checkSession("not-a-token", openid, "00")).errcode).toBe(40001);
  });
});

describe("/sim/encrypt", () => {
  it("encrypts open data with the user's current session_key and a watermark", async () => {
    const { code, openid } = await mintLoginCode();
    const { session_key: sessionKey } = await code2Session(code);
    const { encryptedData, iv } = await control("/sim/encrypt", { appid: APP, openid, data: { nickName: "Alice" } });

    expect(Buffer.from(iv, "base64")).toHaveLength(16);
    expect(decrypt(sessionKey, encryptedData, iv)).toEqual({
      nickName: "Alice",
      watermark: { appid: APP, timestamp: T0 / 1000 },
    });
  });

  it("lets the data override the watermark, for negative tests", async () => {
    const sessionKey = Buffer.alloc(16, 1).toString("base64");
    const { openid } = await mintLoginCode({ sessionKey });
    const watermark = { appid: OTHER_APP, timestamp: 1 };
    const { encryptedData, iv } = await control("/sim/encrypt", { appid: APP, openid, data: { watermark } });
    expect(decrypt(sessionKey, encryptedData, iv).watermark).toEqual(watermark);
  });

  it("answers 404 for a user or app it does not know", async () => {
    const unknownUser = await postJson("/sim/encrypt", { appid: APP, openid: "o-nobody", data: {} });
    expect(unknownUser.status).toBe(404);
    const unknownApp = await postJson("/sim/encrypt", { appid: "wx-unknown", openid: "o-nobody", data: {} });
    expect(unknownApp.status).toBe(404);
  });
});

describe("faults", () => {
  const path = "/sns/jscode2session";

  it("answers an errcode instead of doing the work, once by default", async () => {
    await control("/sim/faults", { path, errcode: -1 });
    const { code, openid } = await mintLoginCode();
    expect((await code2Session(code)).errcode).toBe(-1);
    expect((await code2Session(code)).openid).toBe(openid);
  });

  it("applies a fault `times` times", async () => {
    await control("/sim/faults", { path, errcode: 45011, times: 2 });
    const { code, openid } = await mintLoginCode();
    expect((await code2Session(code)).errcode).toBe(45011);
    expect((await code2Session(code)).errcode).toBe(45011);
    expect((await code2Session(code)).openid).toBe(openid);
  });

  it("answers an HTTP status with a plain body", async () => {
    await control("/sim/faults", { path, status: 502 });
    const response = await fetch(`${base}${path}?appid=${APP}`);
    expect(response.status).toBe(502);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
  });

  it("delays the real answer", async () => {
    await control("/sim/faults", { path, delayMs: 200 });
    const { code, openid } = await mintLoginCode();
    const started = performance.now();
    expect((await code2Session(code)).openid).toBe(openid);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
  });

  it("drops the connection after consuming the code", async () => {
    await control("/sim/faults", { path, drop: true });
    const { code } = await mintLoginCode();
    await expect(code2Session(code)).rejects.toThrow();
    expect((await code2Session(code)).errcode).toBe(40163);
  });

  it("touches only its own path, and DELETE clears all", async () => {
    await control("/sim/faults", { path, errcode: -1, times: 5 });
    expect((await stableToken()).access_token).toBeDefined();

    const cleared = await call("/sim/faults", { method: "DELETE" });
    expect(cleared.body).toEqual({ ok: true });
    const { code, openid } = await mintLoginCode();
    expect((await code2Session(code)).openid).toBe(openid);
  });

  it("does not hold close() up with a delayed answer", async () => {
    await control("/sim/faults", { path, delayMs: 30_000 });
    const pending = fetch(`${base}${path}`).catch(() => undefined);
    await expect.poll(async () => (await call("/sim/calls")).body.counts[path]).toBe(1);
    const started = performance.now();
    await sim.close();
    await pending;
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe("/sim/calls", () => {
  it("counts WeChat API requests per path, failed ones included, and resets", async () => {
    expect((await call("/sim/calls")).body.counts).toEqual({
      "/sns/jscode2session": 0,
      "/cgi-bin/stable_token": 0,
      "/wxa/business/getuserphonenumber": 0,
      "/wxa/checksession": 0,
      "/wxa/msg_sec_check": 0,
    });
    await accessToken();
    await accessToken();
    await code2Session("no-such-code");

    const { counts } = (await call("/sim/calls")).body;
    expect(counts["/cgi-bin/stable_token"]).toBe(2);
    expect(counts["/sns/jscode2session"]).toBe(1);
    expect(counts["/wxa/checksession"]).toBe(0);

    expect((await call("/sim/calls", { method: "DELETE" })).status).toBe(200);
    expect((await call("/sim/calls")).body.counts["/cgi-bin/stable_token"]).toBe(0);
  });
});

describe("control API input", () => {
  it.each([
    ["/sim/login-code", {}, "appid"],
    ["/sim/login-code", { appid: APP, sessionKey: "c2hvcnQ=" }, "sessionKey"],
    ["/sim/login-code", { appid: APP, openId: "o-typo" }, "openId"],
    ["/sim/login-code", { appid: APP, blocked: "yes" }, "blocked"],
    ["/sim/phone-code", { appid: APP, phoneNumber: "call me" }, "phoneNumber"],
    ["/sim/phone-code", { appid: APP, phoneNumber: "13800138000", countryCode: "+86" }, "countryCode"],
    ["/sim/encrypt", { appid: APP, openid: "o-x", data: "text" }, "data"],
    ["/sim/faults", { path: "/cgi-bin/nope", errcode: -1 }, "path"],
    ["/sim/faults", { path: "/sns/jscode2session", errcode: -1, times: 0 }, "times"],
    ["/sim/faults", { path: "/sns/jscode2session", delayMs: -5 }, "delayMs"],
    ["/sim/faults", { path: "/sns/jscode2session" }, ""],
    ["/sim/faults", { path: "/sns/jscode2session", errcode: -1, drop: true }, ""],
    ["/sim/clock", { advanceMs: -1 }, "advanceMs"],
  ])("answers 400 for %s %j", async (path, body, fieldName) => {
    const { status, body: answer } = await postJson(path, body);
    expect(status).toBe(400);
    expect(typeof answer.error).toBe("string");
    expect(answer.error).toContain(fieldName);
  });

  it("answers 400 for a body that is not JSON", async () => {
    const { status, body } = await call("/sim/login-code", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{appid",
    });
    expect(status).toBe(400);
    expect(typeof body.error).toBe("string");
  });

  it("answers 404 for an app it does not know", async () => {
    const { status, body } = await postJson("/sim/login-code", { appid: "wx-unknown" });
    expect(status).toBe(404);
    expect(typeof body.error).toBe("string");
  });
});

describe("logging", () => {
  it("keeps secrets, codes and tokens out of the log", async () => {
    const lines: string[] = [];
    const logged = createWechatSimulator({
      apps: { [APP]: SECRET },
      logger: { level: "info", stream: { write: (line: string) => lines.push(line) } },
    });
    const url = await logged.listen(0);
    const code = "code-that-must-not-be-logged";
    try {
      const params = { appid: APP, secret: SECRET, js_code: code, grant_type: "authorization_code" };
      await fetch(`${url}/sns/jscode2session?${new URLSearchParams(params)}`);
    } finally {
      await logged.close();
    }
    const log = lines.join("");
    expect(log).toContain("/sns/jscode2session");
    expect(log).not.toContain(SECRET);
    expect(log).not.toContain(code);
  });
});
