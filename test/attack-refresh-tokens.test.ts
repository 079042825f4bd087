// Attacks on refresh tokens that need the wire: a JSON body smuggling fields, and the guarantees
// on MongoDB. (Rotation, the grace window, reuse, races, lifetime and count, and what the memory
// store keeps, run at the fast level: test/fast/refresh-tokens.test.ts.)
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectJsonRefusal } from "./support/attack.js";
import { login, rpc, startHarness, type Harness } from "./support/harness.js";

const APP_A = { id: "a", platform: "wechat-miniprogram", appid: "wx00000000000000a1", secret: "sa" };
const APP_B = { id: "b", platform: "wechat-miniprogram", appid: "wx00000000000000b2", secret: "sb" };
const POLICY = { refreshTtlSeconds: 600, refreshGraceSeconds: 10, sessionMaxAgeSeconds: 1800, maxSessionsPerUser: 3 };
const CONFIG = { apps: [APP_A, APP_B], tokens: POLICY };

describe("a JSON Refresh", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(CONFIG);
  });
  afterAll(() => h?.close());

  it("cannot move a session to another app: an app field smuggled into the body is refused as unknown", async () => {
    const a = await login(h, { appid: APP_A.appid }, "a");
    expectJsonRefusal(await rpc(h.httpUrl, "Refresh", { refreshToken: a.refresh, appId: "b" }), 400, "FIELD_INVALID");
    expect((await rpc(h.httpUrl, "Refresh", { refreshToken: a.refresh })).status).toBe(200);
  });
});

// The same guarantees on MongoDB, when one is configured (CI's FerretDB); skipped, saying so, without it.
const uri = process.env.MONGODB_URI;
describe.skipIf(!uri)("on MongoDB (needs MONGODB_URI)", () => {
  const db = `attack_refresh_${process.pid}_${Date.now()}`;
  let m: Harness;
  let mongo: MongoClient;
  beforeAll(async () => {
    m = await startHarness(CONFIG, { MONGODB_URI: uri!, MONGODB_DB: db });
    mongo = await new MongoClient(uri!).connect();
  });
  afterAll(async () => {
    await m?.close();
    await mongo?.db(db).dropDatabase();
    await mongo?.close();
  });

  it("caps a user's sessions and keeps only hashes", async () => {
    const openid = `o_mongo_${Date.now()}`;
    const tokens: string[] = [];
    for (let i = 0; i <= POLICY.maxSessionsPerUser; i++) {
      const s = await login(m, { appid: APP_A.appid, openid }, "a");
      const next = await rpc(m.httpUrl, "Refresh", { refreshToken: s.refresh });
      tokens.push(s.access, s.refresh, next.json.tokens.refreshToken);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expectJsonRefusal(await rpc(m.httpUrl, "CheckLogin", {}, tokens[0]), 401, "TOKEN_REVOKED");
    expect((await rpc(m.httpUrl, "CheckLogin", {}, tokens.at(-3))).status).toBe(200);
    const docs = JSON.stringify(await mongo.db(db).collection("sessions").find().toArray());
    for (const token of tokens) expect(docs).not.toContain(token.split(".").at(-1)!);
  });
});
