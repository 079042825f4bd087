// What every seed profile shares: off unless configured, and the Connect API's limits.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { DEMO_APPID, mintCode, startHarness, type Harness } from "./support/harness.js";
import { expectCleanLogs } from "./support/attack.js";
import { expectNoStack, postForm, postJson } from "./support/seed-http.js";

const APP = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "demo-secret", legacyId: 1 };
const SEED_PATHS = ["/api/smallapp/login", "/api/smallapp/oauth", "/login", "/applet/login/wxLogin", "/module/iot/codeGetInfo", "/app/app/weChatApplet/getWeChatAppletOpenId"];

let off: Harness;
let limited: Harness;
beforeAll(async () => {
  off = await startHarness({ apps: [APP] });
  limited = await startHarness({ apps: [APP], seedRoutes: { applet: {}, smallapp: {} }, limits: { loginsPerAddress: 2 } });
});
afterAll(async () => {
  await off.close();
  await limited.close();
});

describe("seed profiles", () => {
  it("are off unless the config names them: 404", async () => {
    for (const path of SEED_PATHS) expect((await postJson(off.httpUrl, path, {})).status, path).toBe(404);
    expect((await postJson(limited.httpUrl, "/login", {})).status).toBe(404);
  });

  it("apply the Connect API's rate limits, in the seed's envelope with retry-after", async () => {
    const answers = [];
    for (let i = 0; i < 3; i++)
      answers.push(
        await fetch(`${limited.httpUrl}/applet/login/wxLogin`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code: (await mintCode(limited.sim)).code }) }),
      );
    const last = answers[2]!;
    expect(await last.json()).toMatchObject({ success: false, code: 429, result: null });
    expect(Number(last.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("answer a body over limits.maxBodyBytes with 413, and a body that is not a form or JSON object as bad input, in the seed's envelope", async () => {
    const big = await postForm(limited.httpUrl, "/applet/login/wxLogin", { code: "x".repeat(100_000) });
    expect([big.status, big.json.success, big.json.message]).toEqual([413, false, "请求体过大"]);
    const plain = await fetch(`${limited.httpUrl}/api/smallapp/login`, { method: "POST", headers: { "content-type": "text/plain" }, body: "app_id=1" });
    expect([plain.status, ((await plain.json()) as { code: number }).code]).toEqual([200, 400]);
    expectNoStack(big);
  });

  it("answer a token with a NUL or a character above U+00FF as TOKEN_INVALID in the seed's envelope, and never log it", async () => {
    for (const token of ["token-marker-nul\u0000x", "token-marker-wide\u0100x", `${"eyJ".padEnd(40, "a")}.b.c\u0000`]) {
      const query = await fetch(`${limited.httpUrl}/applet/login/getUserInfo?${new URLSearchParams({ token })}`);
      expect([query.status, await query.json()]).toEqual([200, { success: false, message: "token无效", code: 401, result: null }]);
      for (const path of ["/applet/login/checkLogin", "/applet/login/logout", "/applet/login/refreshToken"]) {
        expect((await postForm(limited.httpUrl, path, { token })).json, path).toMatchObject({ success: false, code: 401 });
      }
      const oauth = await postForm(limited.httpUrl, "/api/smallapp/oauth", { app_id: "1", _user_token: token, encryptedData: "a", iv: "b" });
      expect(oauth.json).toMatchObject({ code: 8527 });
      // The log is JSON, which escapes the NUL: look for the visible part.
      expectCleanLogs(limited, [token.slice(0, -2)]);
    }
  });
});

describe("seedRoutes configuration", () => {
  const problemsOf = (file: object) => {
    try {
      loadConfig({ IDENTITY_CONFIG: "x.json" }, () => JSON.stringify(file));
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.join("\n");
    }
    throw new Error("the config was accepted");
  };

  it("names each bad field: a non-boolean allowClientIdentity, a bad path, an unknown profile", () => {
    const problems = problemsOf({ apps: [APP], seedRoutes: { multiPlatform: { path: "no-slash", allowClientIdentity: "yes" }, applett: {} } });
    expect(problems).toMatch(/^seedRoutes\.multiPlatform\.path: /m);
    expect(problems).toMatch(/^seedRoutes\.multiPlatform\.allowClientIdentity: /m);
    expect(problems).toMatch(/^seedRoutes: .*applett/m);
  });

  it("refuses one legacyId on two apps", () => {
    expect(problemsOf({ apps: [APP, { ...APP, id: "other", appid: "wx0000000000000002" }] })).toMatch(/^apps\[1\]\.legacyId: 1 is used by apps\[0\] too/m);
  });
});
