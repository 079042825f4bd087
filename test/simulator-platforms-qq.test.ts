import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createWechatSimulator, type WechatSimulator } from "../src/simulator/simulator.js";
import { simHttp, type Json } from "./support/sim-http.js";

// The simulator's QQ mini-program side (/qq) and WeChat's web/app OAuth code exchange, over real HTTP.

const WX_APP = "wx0000000000000001";
const WX_SECRET = "wx-secret-one";
const WX_OTHER = "wx0000000000000002";
const WX_OTHER_SECRET = "wx-secret-two";
const QQ_APP = "1110000001";
const QQ_SECRET = "qq-secret-one";
const QQ_OTHER = "1110000002";
const QQ_OTHER_SECRET = "qq-secret-two";
/** Known to both platforms with the same secret, to show their codes and keys do not mix. */
const SHARED_APP = "1119999999";
const SHARED_SECRET = "shared-secret";
const T0 = 1_700_000_000_000;
const MINUTE = 60_000;
const QQ_PATH = "/qq/sns/jscode2session";
const WX_PATH = "/sns/jscode2session";
const OAUTH_PATH = "/sns/oauth2/access_token";

// Answers are loosely typed on purpose: each test asserts the fields it cares about.

let sim: WechatSimulator;
let base: string;

beforeEach(async () => {
  sim = createWechatSimulator({
    apps: { [WX_APP]: WX_SECRET, [WX_OTHER]: WX_OTHER_SECRET, [SHARED_APP]: SHARED_SECRET },
    qqApps: { [QQ_APP]: QQ_SECRET, [QQ_OTHER]: QQ_OTHER_SECRET, [SHARED_APP]: SHARED_SECRET },
    now: () => T0,
  });
  base = await sim.listen(0, "127.0.0.1");
});

afterEach(async () => {
  await sim.close();
});

const { call, postJson, control } = simHttp(() => base);

async function advance(advanceMs: number): Promise<void> {
  await control("/sim/clock", { advanceMs });
}

async function counts(): Promise<Record<string, number>> {
  return (await call("/sim/calls")).body.counts as Record<string, number>;
}

/** A GET to one of the simulated APIs; always HTTP 200, like the real ones. */
async function api(path: string, params: Record<string, string>): Promise<Json> {
  const { status, body } = await call(`${path}?${new URLSearchParams(params)}`);
  expect(status).toBe(200);
  return body;
}

function mintQqCode(request: Json = {}): Promise<Json> {
  return control("/sim/qq/login-code", { appid: QQ_APP, ...request });
}

function qqCode2Session(code: string, params: Record<string, string> = {}): Promise<Json> {
  return api(QQ_PATH, { appid: QQ_APP, secret: QQ_SECRET, js_code: code, grant_type: "authorization_code", ...params });
}

function mintOauthCode(request: Json = {}): Promise<Json> {
  return control("/sim/oauth-code", { appid: WX_APP, ...request });
}

function oauthToken(code: string, params: Record<string, string> = {}): Promise<Json> {
  return api(OAUTH_PATH, { appid: WX_APP, secret: WX_SECRET, code, grant_type: "authorization_code", ...params });
}

describe("endpoint list", () => {
  it("lists the QQ and OAuth endpoints", async () => {
    expect((await call("/")).body.endpoints).toEqual(expect.arrayContaining([`GET ${QQ_PATH}`, "POST /sim/qq/login-code", `GET ${OAUTH_PATH}`, "POST /sim/oauth-code"]));
  });
});

describe("QQ jscode2session", () => {
  it("exchanges a code once, then answers 40163", async () => {
    const minted = await mintQqCode({ openid: "qq-alice", unionid: "qu-alice" });
    expect(minted).toMatchObject({ openid: "qq-alice", unionid: "qu-alice" });
    expect(typeof minted.code).toBe("string");

    const session = await qqCode2Session(minted.code);
    expect(session.errcode).toBeUndefined();
    expect(session).toMatchObject({ openid: "qq-alice", unionid: "qu-alice" });
    expect(Buffer.from(session.session_key, "base64")).toHaveLength(16);
    expect((await qqCode2Session(minted.code)).errcode).toBe(40163);
  });

  it("makes up an openid, uses a given session key, and leaves unionid out when not given", async () => {
    const sessionKey = Buffer.alloc(16, 9).toString("base64");
    const minted = await mintQqCode({ sessionKey });
    expect(minted.unionid).toBeNull();
    const session = await qqCode2Session(minted.code);
    expect(session).toEqual({ openid: minted.openid, session_key: sessionKey });
  });

  it("keeps codes to the QQ app they were minted for", async () => {
    const minted = await mintQqCode();
    expect((await qqCode2Session(minted.code, { appid: QQ_OTHER, secret: QQ_OTHER_SECRET })).errcode).toBe(40029);
    expect((await qqCode2Session(minted.code)).openid).toBe(minted.openid);
  });

  it("expires codes after 5 minutes on the shared clock", async () => {
    const early = await mintQqCode();
    const late = await mintQqCode();
    await advance(5 * MINUTE - 1_000);
    expect((await qqCode2Session(early.code)).openid).toBe(early.openid);
    await advance(1_000);
    expect((await qqCode2Session(late.code)).errcode).toBe(40029);
  });

  it.each([
    ["a wrong secret", { secret: "wrong" }, 40125],
    ["an unknown appid", { appid: "1119876543" }, 40013],
    ["a WeChat appid", { appid: WX_APP, secret: WX_SECRET }, 40013],
    ["a missing js_code", { js_code: "" }, 41008],
    ["a wrong grant_type", { grant_type: "client_credential" }, 40002],
    ["an unknown code", { js_code: "no-such-code" }, 40029],
  ])("refuses %s", async (_case, params, errcode) => {
    const minted = await mintQqCode();
    expect((await qqCode2Session(minted.code, params)).errcode).toBe(errcode);
  });

  it("keeps QQ's codes apart from WeChat's, even for an appid both know", async () => {
    const params = { appid: SHARED_APP, secret: SHARED_SECRET, grant_type: "authorization_code" };
    const qq = await mintQqCode({ appid: SHARED_APP });
    const wx = await control("/sim/login-code", { appid: SHARED_APP });
    expect((await api(WX_PATH, { ...params, js_code: qq.code })).errcode).toBe(40029);
    expect((await api(QQ_PATH, { ...params, js_code: wx.code })).errcode).toBe(40029);
    expect((await api(QQ_PATH, { ...params, js_code: qq.code })).openid).toBe(qq.openid);
    expect((await api(WX_PATH, { ...params, js_code: wx.code })).openid).toBe(wx.openid);
  });

  it("does not offer QQ's login codes for WeChat apps, nor a blocked user", async () => {
    expect((await postJson("/sim/qq/login-code", { appid: WX_APP })).status).toBe(404);
    const blocked = await postJson("/sim/qq/login-code", { appid: QQ_APP, blocked: true });
    expect(blocked.status).toBe(400);
    expect(blocked.body.error).toContain("blocked");
    const badKey = await postJson("/sim/qq/login-code", { appid: QQ_APP, sessionKey: "c2hvcnQ=" });
    expect(badKey.status).toBe(400);
    expect(badKey.body.error).toContain("sessionKey");
  });

  it("has no QQ apps unless given", async () => {
    const plain = createWechatSimulator({ apps: { [WX_APP]: WX_SECRET } });
    const url = await plain.listen(0, "127.0.0.1");
    try {
      const response = await fetch(`${url}/sim/qq/login-code`, { method: "POST", body: JSON.stringify({ appid: QQ_APP }) });
      expect(response.status).toBe(404);
    } finally {
      await plain.close();
    }
  });
});

describe("QQ faults and call counts", () => {
  it("injects faults on the /qq path only", async () => {
    await control("/sim/faults", { path: QQ_PATH, errcode: -1 });
    const wx = await control("/sim/login-code", { appid: WX_APP });
    const wxParams = { appid: WX_APP, secret: WX_SECRET, js_code: wx.code, grant_type: "authorization_code" };
    expect((await api(WX_PATH, wxParams)).openid).toBe(wx.openid);

    const { code, openid } = await mintQqCode();
    expect((await qqCode2Session(code)).errcode).toBe(-1);
    expect((await qqCode2Session(code)).openid).toBe(openid);
  });

  it("leaves QQ alone when the WeChat path has a fault", async () => {
    await control("/sim/faults", { path: WX_PATH, errcode: 45011 });
    const { code, openid } = await mintQqCode();
    expect((await qqCode2Session(code)).openid).toBe(openid);
  });

  it("supports every kind of fault on the /qq path", async () => {
    await control("/sim/faults", { path: QQ_PATH, errcode: 45011, times: 2 });
    const { code, openid } = await mintQqCode();
    expect((await qqCode2Session(code)).errcode).toBe(45011);
    expect((await qqCode2Session(code)).errcode).toBe(45011);
    expect((await qqCode2Session(code)).openid).toBe(openid);

    await control("/sim/faults", { path: QQ_PATH, status: 503 });
    expect((await fetch(`${base}${QQ_PATH}`)).status).toBe(503);

    await control("/sim/faults", { path: QQ_PATH, drop: true });
    const dropped = await mintQqCode();
    await expect(qqCode2Session(dropped.code)).rejects.toThrow();
    expect((await qqCode2Session(dropped.code)).errcode).toBe(40163);
  });

  it("refuses a fault for a QQ path it does not serve", async () => {
    const { status, body } = await postJson("/sim/faults", { path: "/qq/api/getToken", errcode: -1 });
    expect(status).toBe(400);
    expect(body.error).toContain("path");
  });

  it("counts QQ calls under the /qq path, apart from WeChat's", async () => {
    expect((await counts())[QQ_PATH] ?? 0).toBe(0);
    await qqCode2Session("no-such-code");
    await qqCode2Session("no-such-code");
    const after = await counts();
    expect(after[QQ_PATH]).toBe(2);
    expect(after[WX_PATH]).toBe(0);

    await call("/sim/calls", { method: "DELETE" });
    expect((await counts())[QQ_PATH] ?? 0).toBe(0);
  });
});

describe("WeChat sns/oauth2/access_token", () => {
  it("exchanges a code once for tokens, openid, scope and unionid, then answers 40163", async () => {
    const minted = await mintOauthCode({ openid: "o-web-alice", unionid: "u-alice", scope: "snsapi_login" });
    expect(minted).toMatchObject({ openid: "o-web-alice", unionid: "u-alice" });

    const answer = await oauthToken(minted.code);
    expect(answer.errcode).toBeUndefined();
    expect(answer).toMatchObject({ expires_in: 7200, openid: "o-web-alice", scope: "snsapi_login", unionid: "u-alice" });
    expect(typeof answer.access_token).toBe("string");
    expect(typeof answer.refresh_token).toBe("string");
    expect(answer.access_token).not.toBe(answer.refresh_token);
    expect((await oauthToken(minted.code)).errcode).toBe(40163);
  });

  it("defaults scope to snsapi_userinfo, makes up an openid, and leaves unionid out when not given", async () => {
    const minted = await mintOauthCode();
    expect(minted.openid).toMatch(/^o[A-Za-z0-9_-]{27}$/);
    expect(minted.unionid).toBeNull();
    const answer = await oauthToken(minted.code);
    expect(answer).toMatchObject({ openid: minted.openid, scope: "snsapi_userinfo" });
    expect(answer).not.toHaveProperty("unionid");
  });

  it("expires codes after 5 minutes", async () => {
    const early = await mintOauthCode();
    const late = await mintOauthCode();
    await advance(5 * MINUTE - 1_000);
    expect((await oauthToken(early.code)).openid).toBe(early.openid);
    await advance(1_000);
    expect((await oauthToken(late.code)).errcode).toBe(40029);
  });

  it("keeps codes to the app they were minted for", async () => {
    const minted = await mintOauthCode();
    expect((await oauthToken(minted.code, { appid: WX_OTHER, secret: WX_OTHER_SECRET })).errcode).toBe(40029);
    expect((await oauthToken(minted.code)).openid).toBe(minted.openid);
  });

  it("keeps OAuth codes apart from mini-program login codes", async () => {
    const oauth = await mintOauthCode();
    const login = await control("/sim/login-code", { appid: WX_APP });
    expect((await oauthToken(login.code)).errcode).toBe(40029);
    const params = { appid: WX_APP, secret: WX_SECRET, grant_type: "authorization_code" };
    expect((await api(WX_PATH, { ...params, js_code: oauth.code })).errcode).toBe(40029);
  });

  it.each([
    ["a wrong secret", { secret: "wrong" }, 40125],
    ["an unknown appid", { appid: "wx-unknown" }, 40013],
    ["a QQ appid", { appid: QQ_APP, secret: QQ_SECRET }, 40013],
    ["a missing appid", { appid: "" }, 41002],
    ["a missing secret", { secret: "" }, 41004],
    ["a missing code", { code: "" }, 41008],
    ["a wrong grant_type", { grant_type: "refresh_token" }, 40002],
    ["an unknown code", { code: "no-such-code" }, 40029],
  ])("refuses %s", async (_case, params, errcode) => {
    const minted = await mintOauthCode();
    expect((await oauthToken(minted.code, params)).errcode).toBe(errcode);
  });

  it("takes faults and counts calls on its own path", async () => {
    await control("/sim/faults", { path: OAUTH_PATH, errcode: -1 });
    const { code, openid } = await mintOauthCode();
    expect((await oauthToken(code)).errcode).toBe(-1);
    expect((await oauthToken(code)).openid).toBe(openid);
    const after = await counts();
    expect(after[OAUTH_PATH]).toBe(2);
    expect(after[WX_PATH]).toBe(0);
  });

  it.each([
    [{ scope: "snsapi_everything" }, "scope"],
    [{ unionId: "u-typo" }, "unionId"],
    [{ openid: "" }, "openid"],
  ])("answers 400 for /sim/oauth-code %j", async (extra, fieldName) => {
    const { status, body } = await postJson("/sim/oauth-code", { appid: WX_APP, ...extra });
    expect(status).toBe(400);
    expect(body.error).toContain(fieldName);
  });

  it("answers 404 for an app it does not know", async () => {
    expect((await postJson("/sim/oauth-code", { appid: QQ_APP })).status).toBe(404);
  });
});

describe("logging", () => {
  it("keeps OAuth codes, secrets and QQ codes out of the log", async () => {
    const lines: string[] = [];
    const logged = createWechatSimulator({
      apps: { [WX_APP]: WX_SECRET },
      qqApps: { [QQ_APP]: QQ_SECRET },
      logger: { level: "info", stream: { write: (line: string) => lines.push(line) } },
    });
    const url = await logged.listen(0);
    const code = "oauth-code-that-must-not-be-logged";
    const qqCode = "qq-code-that-must-not-be-logged";
    try {
      const oauth = { appid: WX_APP, secret: WX_SECRET, code, grant_type: "authorization_code" };
      await fetch(`${url}${OAUTH_PATH}?${new URLSearchParams(oauth)}`);
      const qq = { appid: QQ_APP, secret: QQ_SECRET, js_code: qqCode, grant_type: "authorization_code" };
      await fetch(`${url}${QQ_PATH}?${new URLSearchParams(qq)}`);
    } finally {
      await logged.close();
    }
    const log = lines.join("");
    expect(log).toContain(OAUTH_PATH);
    expect(log).toContain(QQ_PATH);
    for (const secret of [WX_SECRET, QQ_SECRET, code, qqCode]) expect(log).not.toContain(secret);
  });
});
