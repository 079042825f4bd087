// Two real service instances on one store (one MemoryStore in process, or MongoDB when
// MONGODB_URI is set), and a TCP front that sends new connections to whichever is up, as a load
// balancer would.
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import { MongoClient } from "mongodb";
import { generateSigningKey } from "../../../../src/auth/access-tokens.js";
import { MemoryStore } from "../../../../src/store/memory-store.js";
import { startHarness, type Harness } from "../../../../test/support/harness.js";
import { serviceConfig } from "./revocation-feed.js";

export interface Instances {
  a: Harness;
  b: Harness;
  close(): Promise<void>;
}

export async function startInstances(tokens: object = {}): Promise<Instances> {
  const { privateJwk } = await generateSigningKey();
  const file = serviceConfig({ signingKeys: [privateJwk], tokens });
  const uri = process.env.MONGODB_URI;
  const db = `identity_verifier_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const store = uri ? undefined : new MemoryStore();
  const env: Record<string, string> = uri ? { MONGODB_URI: uri, MONGODB_DB: db } : {};
  const a = closesOnce(await startHarness(file, env, store));
  const b = closesOnce(await startHarness(file, env, store));
  return {
    a,
    b,
    async close() {
      await Promise.all([a.close(), b.close()]);
      if (uri) {
        const client = await MongoClient.connect(uri);
        await client.db(db).dropDatabase();
        await client.close();
      }
    },
  };
}

/** A test closes B to drop its streams; the suite's end closes what is left. */
function closesOnce(h: Harness): Harness {
  let closing: Promise<void> | undefined;
  return { ...h, close: () => (closing ??= h.close()) };
}

export interface Front {
  /** http://host:port of the front. */
  url: string;
  /** Where new connections go (a listener's URL); null refuses them. */
  route(to: string | null): void;
  close(): Promise<void>;
}

export async function startFront(to: string | null): Promise<Front> {
  let target = to ? new URL(to) : null;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    if (!target) return void client.destroy();
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    route: (next) => {
      target = next ? new URL(next) : null;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
