// Phone numbers as the service meets WeChat over HTTP: how often it calls getuserphonenumber and
// stable_token, and its answer to a refused access token, counted at the simulator. (Oauth, binding
// numbers and login retries run at the fast level: test/fast/wechat-data.test.ts, login.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, injectFault, login, reasonOf, rpc, simPost, startHarness, type Harness } from "./support/harness.js";

const GATED = "wx00000000000000c3";
const OTHER = "wx00000000000000d4";

let h: Harness;
let gated: Harness;
beforeAll(async () => {
  h = await startHarness();
  gated = await startHarness({
    apps: [
      { id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: "gated-secret", registration: "explicit" },
      { id: "other", platform: "wechat-miniprogram", appid: OTHER, secret: "other-secret" },
    ],
  });
});
afterAll(async () => {
  await h.close();
  await gated.close();
});

const phoneCode = async (sim: string, phoneNumber: string, appid = DEMO_APPID) => ((await simPost(sim, "/sim/phone-code", { appid, phoneNumber })) as { code: string }).code;
async function calls(sim: string, path: string): Promise<number> {
  const { counts } = (await (await fetch(`${sim}/sim/calls`)).json()) as { counts: Record<string, number> };
  return counts[path] ?? 0;
}

describe("GetPhone and BindPhone", () => {
  it("resolves a phone button code once, and answers a retry of the same code from the first answer", async () => {
    const me = await login(h);
    const code = await phoneCode(h.sim, "13800001111");
    const before = await calls(h.sim, "/wxa/business/getuserphonenumber");
    const first = await rpc(h.httpUrl, "GetPhone", { code }, me.access);
    expect(first.json).toEqual({ phoneNumber: "13800001111", purePhoneNumber: "13800001111", countryCode: "86" });
    const retry = await rpc(h.httpUrl, "GetPhone", { code }, me.access);
    expect(retry.json).toEqual(first.json);
    expect((await calls(h.sim, "/wxa/business/getuserphonenumber")) - before).toBe(1);
    // Someone else with the same code gets nothing from the cache.
    const other = await login(h);
    expect(reasonOf(await rpc(h.httpUrl, "GetPhone", { code }, other.access))).toBe("CODE_INVALID");
  });

  it("survives WeChat refusing a rotated access token (40001): expire it, fetch again, retry once", async () => {
    const me = await login(h);
    await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800005555") }, me.access);
    const fetches = await calls(h.sim, "/cgi-bin/stable_token");
    await injectFault(h.sim, { path: "/wxa/business/getuserphonenumber", errcode: 40001 });
    const res = await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800006666") }, me.access);
    expect(res.json.phoneNumber).toBe("13800006666");
    expect((await calls(h.sim, "/cgi-bin/stable_token")) - fetches).toBe(1);
  });

  it("treats WeChat's invalid access_token (40014) like 40001: fetch a new one, retry once", async () => {
    const me = await login(h);
    await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800007777") }, me.access);
    const fetches = await calls(h.sim, "/cgi-bin/stable_token");
    await injectFault(h.sim, { path: "/wxa/business/getuserphonenumber", errcode: 40014 });
    const res = await rpc(h.httpUrl, "GetPhone", { code: await phoneCode(h.sim, "13800008888") }, me.access);
    expect(res.json.phoneNumber).toBe("13800008888");
    expect((await calls(h.sim, "/cgi-bin/stable_token")) - fetches).toBe(1);
  });

  it("keeps each app's access token and phone codes apart", async () => {
    const users = [await login(gated, { appid: OTHER }, "other"), await login(gated, { appid: OTHER }, "other")];
    const pendings = [await login(gated, { appid: GATED }, "gated"), await login(gated, { appid: GATED }, "gated")];
    for (const [i, u] of users.entries()) {
      const res = await rpc(gated.httpUrl, "GetPhone", { code: await phoneCode(gated.sim, `1390000000${i}`, OTHER) }, u.access);
      expect(res.json.phoneNumber).toBe(`1390000000${i}`);
    }
    for (const [i, p] of pendings.entries()) {
      const res = await rpc(gated.httpUrl, "BindPhone", { code: await phoneCode(gated.sim, `1391000000${i}`, GATED) }, p.access);
      expect(res.json.user.phoneNumber).toBe(`1391000000${i}`);
    }
    // One token per app, each fetched once over this instance's life; a code of one app is no good for the other.
    expect(await calls(gated.sim, "/cgi-bin/stable_token")).toBe(2);
    const crossed = await rpc(gated.httpUrl, "GetPhone", { code: await phoneCode(gated.sim, "13920000000", GATED) }, users[0]!.access);
    expect(reasonOf(crossed)).toBe("CODE_INVALID");
  });
});
