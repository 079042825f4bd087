// The service every kit test runs against: a WeChat app that registers on first login, one with
// explicit registration, a QQ and an Alipay app; one-minute access tokens and no refresh grace,
// so tests can expire a token or catch a reused refresh token by moving the clocks.
import { generateKeyPairSync } from "node:crypto";
import { afterAll, afterEach, beforeAll } from "vitest";
import { type Harness, startHarness } from "../../../test/support/harness.js";
import { clock, type Kit, loadKit, serverNow } from "./support.js";

export const APPIDS = { mp: "wx00000000000000c1", gated: "wx00000000000000c2", qq: "1110000003", ali: "2021000000000003" };

const alipayKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });

export function startService() {
  return startHarness(
    {
      apps: [
        { id: "mp", platform: "wechat-miniprogram", appid: APPIDS.mp, secret: "s-mp", registration: "auto" },
        { id: "gated", platform: "wechat-miniprogram", appid: APPIDS.gated, secret: "s-gated", registration: "explicit" },
        { id: "qq", platform: "qq-miniprogram", appid: APPIDS.qq, secret: "s-qq" },
        {
          id: "ali",
          platform: "alipay-miniprogram",
          appid: APPIDS.ali,
          privateKey: alipayKeys.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
          alipayPublicKey: alipayKeys.publicKey.export({ type: "spki", format: "pem" }).toString(),
        },
      ],
      tokens: { accessTtlSeconds: 60, refreshGraceSeconds: 0 },
    },
    {},
    undefined,
    serverNow,
  );
}

/** For a test file: the service and the kit before its tests, both clocks put back after each. */
export function useService(ready: (h: Harness, kit: typeof Kit) => void): void {
  let h: Harness | undefined;
  beforeAll(async () => {
    const [started, kit] = await Promise.all([startService(), loadKit()]);
    h = started;
    ready(started, kit);
  });
  afterAll(() => h?.close());
  afterEach(() => {
    clock.device = 0;
    clock.server = 0;
  });
}
