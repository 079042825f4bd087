// WatchRevocations on the real listeners: two instances sharing one store (a logout on A reaches a
// watcher of B within 2 s), over Connect JSON on HTTP/1.1 and gRPC on h2c, a stream outliving the
// servers' request and idle timeouts on its heartbeats, a watcher freed when its client hangs up,
// and shutdown ending open streams at once.
import { createHash } from "node:crypto";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService, RevocationReason } from "../gen/identity/v1/identity_pb.js";
import { generateSigningKey } from "../src/auth/access-tokens.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { DEMO_APPID, login, rpc, startHarness, type Harness } from "./support/harness.js";
import { watch } from "./support/watch.js";

const API_KEY = "test-revocations-key-0123456789";
const internal = { "x-api-key": API_KEY };
/** Half the idle timeout below: the default 5 s would let the connection be cut. */
const HEARTBEAT_MS = 500;

async function config() {
  const { privateJwk } = await generateSigningKey();
  return {
    apps: [{ id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "demo-secret" }],
    store: "memory",
    signingKeys: [privateJwk],
    internalCallers: [{ name: "gateway", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
    // Far below the stream's life: it must outlive each of them.
    limits: { headersTimeoutMs: 300, requestTimeoutMs: 600, keepAliveTimeoutMs: 2 * HEARTBEAT_MS },
  };
}

const transports: [string, (h: Harness) => Transport][] = [
  ["Connect JSON on HTTP/1.1", (h) => createConnectTransport({ baseUrl: h.httpUrl, httpVersion: "1.1" })],
  ["gRPC on h2c", (h) => createGrpcTransport({ baseUrl: h.grpcUrl })],
];

const sidOf = (access: string) => decodeJwt(access).sid as string;

async function watchers(h: Harness): Promise<number> {
  const text = await (await fetch(`${h.httpUrl}/metrics`)).text();
  return Number(/^identity_revocation_watchers (\d+)$/m.exec(text)?.[1]);
}

describe("two instances on one store", () => {
  let a: Harness;
  let b: Harness;
  beforeAll(async () => {
    const file = await config();
    const store = new MemoryStore();
    [a, b] = await Promise.all([startHarness(file, {}, store), startHarness(file, {}, store)]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  it("says at startup that it polls the store", () => {
    expect(a.logs.some((line) => line.includes("revocations: the store has no change streams; polling it"))).toBe(true);
  });

  describe.each(transports)("%s", (_name, transport) => {
    it("tells B's watcher of a logout on A within 2 s, and lives on heartbeats past every server timeout", async () => {
      const stream = watch(createClient(IdentityService, transport(b)), internal);
      await stream.until((m) => m.caughtUp);
      const me = await login(a);
      const started = performance.now();
      expect((await rpc(a.httpUrl, "Logout", {}, me.access)).status).toBe(200);
      expect((await stream.revocationOf(sidOf(me.access), 2000)).reason).toBe(RevocationReason.LOGOUT);
      const latencyMs = performance.now() - started;
      const { seconds, nanos } = stream.messages[0]!.heartbeatInterval!;
      expect(Number(seconds) * 1000 + nanos / 1e6).toBe(HEARTBEAT_MS);
      expect(latencyMs).toBeLessThan(2000);
      process.stderr.write(`revocations (${_name}): logout on A seen on B after ${Math.round(latencyMs)} ms\n`);

      // 2.5 s: past the request timeout (0.6 s) and the idle timeouts (1 s), on heartbeats alone.
      const beats = stream.messages.length;
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const later = await login(a);
      await rpc(a.httpUrl, "Logout", {}, later.access);
      await stream.revocationOf(sidOf(later.access), 2000);
      expect(stream.messages.length - beats).toBeGreaterThanOrEqual(4);
      stream.close();
    });
  });

  it("frees a watcher when its client hangs up", async () => {
    const streams = transports.map(([, transport]) => watch(createClient(IdentityService, transport(b)), internal));
    for (const stream of streams) await stream.until((m) => m.caughtUp);
    await expect.poll(() => watchers(b)).toBe(2);
    for (const stream of streams) stream.close();
    await expect.poll(() => watchers(b), { timeout: 3000 }).toBe(0);
  });
});

describe("shutdown", () => {
  it("ends open streams at once, on both listeners", async () => {
    const h = await startHarness(await config());
    const streams = transports.map(([, transport]) => watch(createClient(IdentityService, transport(h)), internal));
    for (const stream of streams) await stream.until((m) => m.caughtUp);
    const started = performance.now();
    await h.close();
    expect(performance.now() - started).toBeLessThan(1500);
    for (const stream of streams) expect(await stream.ended(1000)).toBeNull();
  });
});
