// A configuration's secrets stay out of answers and logs, with a config file and WECHAT_SIMULATOR=1 as an
// operator trying a config would run it. (Several apps, explicit registration and refresh reuse
// without a grace window are Login's branches: test/fast/login.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { login, rpc, startHarness, type Harness } from "./support/harness.js";

const SHOP = "wx00000000000000a1";
const CLUB = "wx00000000000000b2";
const GATED = "wx00000000000000c3";
const SECRETS = ["shop-secret-value", "club-secret-value", "gated-secret-value"];

let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    apps: [
      { id: "shop", platform: "wechat-miniprogram", appid: SHOP, secret: SECRETS[0] },
      { id: "club", platform: "wechat-miniprogram", appid: CLUB, secret: SECRETS[1], defaultRoles: ["guest"] },
      { id: "gated", platform: "wechat-miniprogram", appid: GATED, secret: SECRETS[2], registration: "explicit" },
    ],
    tokens: { refreshGraceSeconds: 0, accessTtlSeconds: 600 },
  });
});
afterAll(() => h.close());

describe("secrets", () => {
  it("keeps app secrets, session keys and tokens out of responses and logs", async () => {
    const sessionKey = Buffer.from("fedcba9876543210").toString("base64");
    const { res, access, refresh } = await login(h, { appid: SHOP, sessionKey }, "shop");
    await rpc(h.httpUrl, "CheckLogin", {}, access);
    await rpc(h.httpUrl, "Refresh", { refreshToken: refresh });
    await rpc(h.httpUrl, "Login", { appId: "shop", code: "bad" });
    const logs = h.logs.join("\n");
    expect(logs).toContain('"rpc":"Login"');
    for (const secret of [...SECRETS, sessionKey, access, refresh]) expect(logs).not.toContain(secret);
    for (const secret of [...SECRETS, sessionKey]) expect(res.text).not.toContain(secret);
  });
});
