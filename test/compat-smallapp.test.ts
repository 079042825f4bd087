// Seed 000 (/api/smallapp/login, /api/smallapp/oauth) replayed against the real HTTP listener.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../src/store/memory-store.js";
import { StoreUnavailableError } from "../src/store/store.js";
import { DEMO_APPID, mintCode, simPost, startHarness, type Harness } from "./support/harness.js";
import { expectNoStack, expectShape, postForm, postJson } from "./support/seed-http.js";

const GATED = "wx00000000000000e5";
const LOGIN = "/api/smallapp/login";
const OAUTH = "/api/smallapp/oauth";

let h: Harness;
let gated: Harness;
// Makes the next user write fail, as a store outage would.
const failNext = { insert: false, replace: false };

beforeAll(async () => {
  h = await startHarness();
  const store = new MemoryStore();
  const { insert, replace } = store.users;
  store.users.insert = async (draft) => {
    if (failNext.insert) {
      failNext.insert = false;
      throw new StoreUnavailableError("test");
    }
    return insert.call(store.users, draft);
  };
  store.users.replace = async (user) => {
    if (failNext.replace) {
      failNext.replace = false;
      throw new StoreUnavailableError("test");
    }
    return replace.call(store.users, user);
  };
  gated = await startHarness({ apps: [{ id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: "s", registration: "explicit", legacyId: 7 }], seedRoutes: { smallapp: {} } }, {}, store);
});
afterAll(async () => {
  await h.close();
  await gated.close();
});

const key = (seed: string) => createHash("md5").update(seed).digest("base64");
const encrypt = (sim: string, appid: string, openid: string, data: object) => simPost(sim, "/sim/encrypt", { appid, openid, data }) as Promise<{ encryptedData: string; iv: string }>;

describe("seed 000 login", () => {
  it("answers the documented fields with their types, for JSON and form bodies", async () => {
    const json = await postJson(h.httpUrl, LOGIN, { app_id: 1, code: (await mintCode(h.sim)).code });
    expect(json.status).toBe(200);
    expectShape(json.json, { code: "number", token: "string", oauthed: "boolean", user: "object" });
    expect(json.json).toMatchObject({ code: 0, oauthed: true });
    expectShape(json.json.user, { nickname: "string", avatar: "string", mobile: "string" });

    const form = await postForm(h.httpUrl, LOGIN, { app_id: "1", code: (await mintCode(h.sim)).code });
    expect(form.json).toMatchObject({ code: 0, oauthed: true, token: expect.any(String) });
  });

  it("says oauthed false and leaves user out for a user an explicit app has not registered", async () => {
    const res = await postJson(gated.httpUrl, LOGIN, { app_id: 7, code: (await mintCode(gated.sim, { appid: GATED })).code });
    expect(res.json).toMatchObject({ code: 0, oauthed: false, token: expect.any(String) });
    expect(res.json).not.toHaveProperty("user");
  });

  it("refuses an unknown app_id, wrong types and bad codes in the seed's envelope, never a 500", async () => {
    const cases: Array<[Record<string, unknown> | string, number]> = [
      [{ app_id: 99, code: "x" }, 404],
      [{ app_id: "one", code: "x" }, 400],
      [{ app_id: 1, code: 123 }, 400],
      [{ code: "x" }, 400],
      [{ app_id: 1, code: "not-a-code" }, 400],
      ["[1]", 400],
    ];
    for (const [body, code] of cases) {
      const res = await postJson(h.httpUrl, LOGIN, body);
      expect([res.status, res.json.code], JSON.stringify(body)).toEqual([200, code]);
      expect(typeof res.json.msg).toBe("string");
      expectNoStack(res);
    }
    const broken = await postJson(h.httpUrl, LOGIN, "{not json");
    expect([broken.status, broken.json.code]).toEqual([400, 400]);
  });
});

describe("seed 000 oauth", () => {
  async function loggedIn(harness: Harness, appid: string, legacyId: number, sessionKey?: string) {
    const minted = await mintCode(harness.sim, { appid, ...(sessionKey ? { sessionKey } : {}) });
    const res = await postJson(harness.httpUrl, LOGIN, { app_id: legacyId, code: minted.code });
    return { openid: minted.openid, token: res.json.token as string };
  }

  it("fills the profile and answers nickname, avatar and mobile, with the token in _user_token or token", async () => {
    const me = await loggedIn(h, DEMO_APPID, 1);
    const payload = await encrypt(h.sim, DEMO_APPID, me.openid, { openId: me.openid, nickName: "Seed", avatarUrl: "https://thirdwx.qlogo.cn/seed.png" });
    const res = await postForm(h.httpUrl, OAUTH, { app_id: "1", _user_token: me.token, ...payload });
    expect(res.json).toMatchObject({ code: 0, nickname: "Seed", avatar: "https://thirdwx.qlogo.cn/seed.png", mobile: "" });
    expectShape(res.json, { nickname: "string", avatar: "string", mobile: "string" });
    const again = await postJson(h.httpUrl, OAUTH, { app_id: 1, token: me.token, ...payload });
    expect(again.json.code).toBe(0);
  });

  it("registers a pending user and hands over its new token", async () => {
    const me = await loggedIn(gated, GATED, 7);
    const res = await postJson(gated.httpUrl, OAUTH, { app_id: 7, token: me.token, ...(await encrypt(gated.sim, GATED, me.openid, { openId: me.openid, nickName: "New" })) });
    expect(res.json).toMatchObject({ code: 0, nickname: "New", token: expect.any(String) });
    const next = await postJson(gated.httpUrl, LOGIN, { app_id: 7, code: (await mintCode(gated.sim, { appid: GATED, openid: me.openid })).code });
    expect(next.json).toMatchObject({ oauthed: true, user: { nickname: "New" } });
  });

  it("answers 8527 when the data is another user's or the session is gone, and 8524 when it does not decrypt", async () => {
    const me = await loggedIn(h, DEMO_APPID, 1);
    const foreign = await encrypt(h.sim, DEMO_APPID, me.openid, { openId: "o_someone_else" });
    expect((await postJson(h.httpUrl, OAUTH, { app_id: 1, token: me.token, ...foreign })).json.code).toBe(8527);
    expect((await postJson(h.httpUrl, OAUTH, { app_id: 1, token: "nonsense", ...foreign })).json.code).toBe(8527);

    const other = await loggedIn(h, DEMO_APPID, 1);
    const garbage = { encryptedData: Buffer.alloc(48, 7).toString("base64"), iv: Buffer.alloc(16, 1).toString("base64") };
    const res = await postJson(h.httpUrl, OAUTH, { app_id: 1, token: other.token, ...garbage });
    expect([res.status, res.json.code, typeof res.json.msg]).toEqual([200, 8524, "string"]);
  });

  it("answers 8526 when registering fails and 8525 when updating the user fails", async () => {
    const pending = await loggedIn(gated, GATED, 7);
    failNext.insert = true;
    const register = await postJson(gated.httpUrl, OAUTH, { app_id: 7, token: pending.token, ...(await encrypt(gated.sim, GATED, pending.openid, { openId: pending.openid })) });
    expect(register.json.code).toBe(8526);

    const registered = (await postJson(gated.httpUrl, OAUTH, { app_id: 7, token: pending.token, ...(await encrypt(gated.sim, GATED, pending.openid, { openId: pending.openid })) })).json
      .token as string;
    failNext.replace = true;
    const update = await postJson(gated.httpUrl, OAUTH, { app_id: 7, token: registered, ...(await encrypt(gated.sim, GATED, pending.openid, { openId: pending.openid, nickName: "Later" })) });
    expect(update.json.code).toBe(8525);
  });

  it("never answers the session_key", async () => {
    const sessionKey = key("seed-000");
    const me = await loggedIn(h, DEMO_APPID, 1, sessionKey);
    const res = await postJson(h.httpUrl, OAUTH, { app_id: 1, token: me.token, ...(await encrypt(h.sim, DEMO_APPID, me.openid, { openId: me.openid })) });
    expect(res.text).not.toContain(sessionKey);
  });
});
