// Two service instances on one MongoDB, as behind a load balancer: they share users, sessions and
// signing keys, so a token from one works on the other and a logout on one ends it on both, and
// on a watcher of the other's revocation feed within 2 s.
import { createHash } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService, RevocationReason } from "../gen/identity/v1/identity_pb.js";
import { generateSigningKey } from "../src/auth/access-tokens.js";
import { login, mintCode, reasonOf, rpc, startHarness, type Harness } from "./support/harness.js";
import { gapsOf } from "./support/mongo-gaps.js";
import { watch } from "./support/watch.js";

const uri = process.env.MONGODB_URI;
if (!uri) process.stderr.write("instances: MongoDB run skipped (set MONGODB_URI to run it)\n");
const gaps = uri ? await gapsOf(uri, "instances") : new Set();
// Races are settled by the unique index and by compare-and-set writes.
const racesHold = !gaps.has("unique-multikey") && !gaps.has("atomic-conditional-writes");
const API_KEY = "test-instances-key-0123456789";

describe.skipIf(!uri)("two instances on one MongoDB", () => {
  const db = `identity_test_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  let a: Harness;
  let b: Harness;

  beforeAll(async () => {
    const { privateJwk } = await generateSigningKey();
    const file = {
      apps: [{ id: "demo", platform: "wechat-miniprogram", appid: "wx0000000000000001", secret: "s" }],
      signingKeys: [privateJwk],
      tokens: { refreshGraceSeconds: 0 },
      internalCallers: [{ name: "gateway", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
    };
    a = await startHarness(file, { MONGODB_URI: uri!, MONGODB_DB: db });
    b = await startHarness(file, { MONGODB_URI: uri!, MONGODB_DB: db });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    const client = await MongoClient.connect(uri!);
    await client.db(db).dropDatabase();
    await client.close();
  });

  it("accepts one instance's token on the other, and ends it on both at logout", async () => {
    const first = await login(a);
    expect(first.body.firstLogin).toBe(true);
    const onB = await rpc(b.httpUrl, "CheckLogin", {}, first.access);
    expect(onB.json.user.id).toBe(first.body.user.id);
    expect((await rpc(b.httpUrl, "Logout", {}, first.access)).status).toBe(200);
    expect(reasonOf(await rpc(a.httpUrl, "CheckLogin", {}, first.access))).toBe("TOKEN_REVOKED");
  });

  it("tells a watcher of B of a logout on A within 2 s, through the store (a change stream, else polling)", async () => {
    const followed = gaps.has("change-streams") ? "the store has no change streams; polling it" : "following the store's change stream";
    expect(b.logs.some((line) => line.includes(`revocations: ${followed}`))).toBe(true);
    const stream = watch(createClient(IdentityService, createGrpcTransport({ baseUrl: b.grpcUrl })), { "x-api-key": API_KEY });
    await stream.until((m) => m.caughtUp);
    const me = await login(a);
    const started = performance.now();
    expect((await rpc(a.httpUrl, "Logout", {}, me.access)).status).toBe(200);
    expect((await stream.revocationOf(decodeJwt(me.access).sid as string, 2000)).reason).toBe(RevocationReason.LOGOUT);
    process.stderr.write(`instances: logout on A seen on B after ${Math.round(performance.now() - started)} ms\n`);
    stream.close();
  });

  it.runIf(racesHold)("makes one user from first logins of one openid racing on both instances", async () => {
    const openid = `o_race_${Date.now()}`;
    const codes = await Promise.all([...Array(4)].flatMap(() => [mintCode(a.sim, { openid }).then((c) => [a, c.code] as const), mintCode(b.sim, { openid }).then((c) => [b, c.code] as const)]));
    const results = await Promise.all(codes.map(([h, code]) => rpc(h.httpUrl, "Login", { appId: "demo", code })));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    expect(new Set(results.map((r) => r.json.user.id)).size).toBe(1);
    expect(results.filter((r) => r.json.firstLogin).length).toBe(1);
  });

  it.runIf(racesHold)("lets exactly one of a refresh racing on both instances win", async () => {
    const { refresh } = await login(a);
    const results = await Promise.all([a, b, a, b].map((h) => rpc(h.httpUrl, "Refresh", { refreshToken: refresh })));
    expect(results.filter((r) => r.status === 200).length).toBe(1);
  });

  it.runIf(racesHold)("keeps version conflicts across instances", async () => {
    const { access } = await login(a);
    const results = await Promise.all([a, b, a, b].map((h, i) => rpc(h.httpUrl, "UpdateUser", { user: { nickname: `n${i}` }, updateMask: "nickname", expectedVersion: 0 }, access)));
    expect(results.filter((r) => r.status === 200).length).toBe(1);
    expect(results.filter((r) => reasonOf(r) === "VERSION_CONFLICT").length).toBe(3);
  });
});
