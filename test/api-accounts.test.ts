// Password limits per client address through the real listener, which decides the address (the
// branches of password accounts and invites are in test/fast/accounts.test.ts).
import { describe, expect, it } from "vitest";
import { reasonOf, rpc, startHarness } from "./support/harness.js";

describe("limits per client address", () => {
  it("refuses a spray of passwords over many usernames from one address", async () => {
    const own = await startHarness();
    try {
      const spray = (i: number) => rpc(own.httpUrl, "Login", { appId: "demo", password: { username: `spray_${i}`, password: "guess guess" } });
      for (let i = 0; i < 30; i++) expect(reasonOf(await spray(i))).toBe("BAD_CREDENTIALS");
      const limited = await spray(30);
      expect([limited.status, reasonOf(limited)]).toEqual([429, "RATE_LIMITED"]);
      // A forged X-Forwarded-For is not trusted.
      const forged = await rpc(own.httpUrl, "Login", { appId: "demo", password: { username: "spray_x", password: "guess guess" } }, undefined, { "x-forwarded-for": "203.0.113.9" });
      expect(reasonOf(forged)).toBe("RATE_LIMITED");
    } finally {
      await own.close();
    }
    // 31 password checks at the production scrypt cost, about 150 ms each here and more in a loaded CI.
  }, 30_000);
});
