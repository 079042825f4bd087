// Seed 004 (POST /app/app/weChatApplet/getWeChatAppletOpenId) replayed against the real HTTP listener.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, mintCode, startHarness, type Harness } from "./support/harness.js";
import { expectNoStack, expectShape, postForm, postJson } from "./support/seed-http.js";

const PATH = "/app/app/weChatApplet/getWeChatAppletOpenId";
const GATED = "wx00000000000000f6";
let h: Harness;
let gated: Harness;
beforeAll(async () => {
  h = await startHarness();
  gated = await startHarness({ apps: [{ id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: "s", registration: "explicit" }], seedRoutes: { openIdLogin: {} } });
});
afterAll(async () => {
  await h.close();
  await gated.close();
});

describe("seed 004 getWeChatAppletOpenId", () => {
  it("answers code 0 with openId, expire and token for a bound openid (the document's example body)", async () => {
    const minted = await mintCode(h.sim);
    const res = await postJson(h.httpUrl, PATH, { appid: DEMO_APPID, code: minted.code }, { uuid: "channel-uuid" });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ code: 0, msg: "success", data: { openId: minted.openid } });
    expectShape(res.json, { code: "number", msg: "string", data: "object" });
    expectShape(res.json.data, { openId: "string", expire: "number", token: "string" });
    const form = await postForm(h.httpUrl, PATH, { appid: DEMO_APPID, code: (await mintCode(h.sim)).code });
    expect(form.json.code).toBe(0);
  });

  it("answers code 2000 with only the openId when no user has it", async () => {
    const minted = await mintCode(gated.sim, { appid: GATED });
    const res = await postJson(gated.httpUrl, PATH, { appid: GATED, code: minted.code });
    expect(res.json).toEqual({ code: 2000, msg: "微信openid未绑定用户", data: { openId: minted.openid } });
  });

  it("answers 2004 without a code, 200 when WeChat refuses the code, 440007 otherwise, never a 500", async () => {
    expect((await postJson(h.httpUrl, PATH, { appid: DEMO_APPID })).json.code).toBe(2004);
    expect((await postJson(h.httpUrl, PATH, { appid: DEMO_APPID, code: "not-a-code" })).json).toMatchObject({ code: 200, msg: "获取微信openid失败" });
    for (const body of [
      { appid: "wx9999999999999999", code: "x" },
      { appid: DEMO_APPID, code: 42 },
      { appid: ["x"], code: "x" },
    ]) {
      const res = await postJson(h.httpUrl, PATH, body);
      expect([res.status, res.json.code, typeof res.json.msg], JSON.stringify(body)).toEqual([200, 440007, "string"]);
      expectNoStack(res);
    }
  });
});
