// Several brokers on one store, as several service instances would be, against the simulator:
// one fetch per token lifetime between them, and a rotated token never reaches a caller as 40001.
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createWechatSimulator, type WechatSimulator } from "../../src/simulator/simulator.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { MongoStore } from "../../src/store/mongo-store.js";
import type { Store } from "../../src/store/store.js";
import { createAccessTokenBroker } from "../../src/wechat/access-token-broker.js";
import { createWechatClient } from "../../src/wechat/wechat-client.js";
import { mintCode } from "../support/harness.js";
import { gapsOf } from "../support/mongo-gaps.js";

const app = { appid: "wx0000000000000001", secret: "s3cret" };
const sessionKey = Buffer.from("0123456789abcdef").toString("base64");
const uri = process.env.MONGODB_URI;
const gaps = uri ? await gapsOf(uri, "access-token broker") : new Set();

let sim: WechatSimulator;
let client: ReturnType<typeof createWechatClient>;
let openid: string;

beforeAll(async () => {
  sim = createWechatSimulator({ apps: { [app.appid]: app.secret } });
  await sim.listen(0, "127.0.0.1");
  client = createWechatClient({ baseUrl: sim.url, timeoutMs: 2000, retries: 1, retryDelayMs: 1 });
  openid = (await mintCode(sim.url, { openid: "o_broker", sessionKey })).openid;
});
afterAll(() => sim.close());

async function tokenFetches(): Promise<number> {
  const { counts } = (await (await fetch(`${sim.url}/sim/calls`)).json()) as { counts: Record<string, number> };
  return counts["/cgi-bin/stable_token"] ?? 0;
}

/** What leaked this token, rotated at WeChat: the token every instance holds stops working. */
async function forceRotation(): Promise<void> {
  const res = await fetch(`${sim.url}/cgi-bin/stable_token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ grant_type: "client_credential", appid: app.appid, secret: app.secret, force_refresh: true }),
  });
  expect(res.ok).toBe(true);
}

async function mongoStore(): Promise<{ store: Store; dispose: () => Promise<void> }> {
  const db = `identity_broker_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const store = await MongoStore.connect(uri!, db);
  return {
    store,
    async dispose() {
      const admin = await MongoClient.connect(uri!);
      await admin.db(db).dropDatabase();
      await admin.close();
      await store.close();
    },
  };
}

const stores: Array<[string, () => Promise<{ store: Store; dispose: () => Promise<void> }>, boolean]> = [
  ["memory store", async () => ({ store: new MemoryStore(), dispose: async () => undefined }), true],
  // The lease is a compare-and-set write, which FerretDB 1.x does not make atomic.
  ["MongoDB store", mongoStore, Boolean(uri) && !gaps.has("atomic-conditional-writes")],
];

describe.each(stores)("brokers sharing the %s", (_name, makeStore, runs) => {
  let store: Store;
  let clock = Date.now();
  beforeEach(async () => {
    if (!runs) return;
    await fetch(`${sim.url}/sim/calls`, { method: "DELETE" });
    const made = await makeStore();
    store = made.store;
    await store.init();
    clock = Date.now();
    return made.dispose;
  });

  const brokers = (n: number) => Array.from({ length: n }, () => createAccessTokenBroker({ credentials: store.credentials, fetchToken: (a) => client.stableToken(a), now: () => clock, pollMs: 5 }));
  const check = (broker: ReturnType<typeof brokers>[number]) => broker.withToken(app, (token) => client.checkSessionKey(token, openid, sessionKey));

  it.runIf(runs)("fetch the token once between them under parallel load", async () => {
    const instances = brokers(4);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => check(instances[i % 4]!)));
    expect(results.every(Boolean)).toBe(true);
    expect(await tokenFetches()).toBe(1);
  });

  it.runIf(runs)("recover from a token rotated at WeChat with no 40001 reaching a caller, refetching a bounded number of times", async () => {
    const instances = brokers(4);
    await Promise.all(instances.map(check));
    await forceRotation();
    const before = await tokenFetches();
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => check(instances[i % 4]!)));
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    // Every instance finds out on its own, but the compare-and-expire lets at most one refetch per instance.
    expect((await tokenFetches()) - before).toBeLessThanOrEqual(4);
    expect((await tokenFetches()) - before).toBeGreaterThanOrEqual(1);
  });

  it.runIf(runs)("refresh ahead of expiry, once between them", async () => {
    const instances = brokers(3);
    await Promise.all(instances.map(check));
    expect(await tokenFetches()).toBe(1);
    // Seven minutes short of WeChat's 7200 s: still used as it is.
    clock += (7200 - 420) * 1000;
    await Promise.all(instances.map(check));
    expect(await tokenFetches()).toBe(1);
    // Three minutes short: inside the refresh-ahead margin.
    clock += 240 * 1000;
    await fetch(`${sim.url}/sim/clock`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ advanceMs: (7200 - 180) * 1000 }) });
    await Promise.all(Array.from({ length: 30 }, (_, i) => check(instances[i % 3]!)));
    expect(await tokenFetches()).toBe(2);
  });
});
