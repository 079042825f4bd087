// Health (grpc.health.v1 on both listeners, /healthz and /readyz on HTTP/1.1) and gRPC server
// reflection on h2c, through real listeners: buf curl needs no --schema.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection, type ServerReflectionRequestSchema, type ServerReflectionResponse } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";
import { IdentityService } from "../gen/identity/v1/identity_pb.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { Store, UserStore } from "../src/store/store.js";
import { mintCode, SERVICE, startHarness, type Harness } from "./support/harness.js";

const bufCurl = async (...args: string[]) => (await promisify(execFile)("npx", ["--no-install", "buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { timeout: 30_000 })).stdout;

/** A memory store whose reads (and ping, should the port grow one) fail while `state.down`. */
function storeThatCanFail() {
  const state = { down: true };
  const base = new MemoryStore();
  const check = () => {
    if (state.down) throw new Error("store unreachable");
  };
  const users = Object.assign(Object.create(base.users) as UserStore, {
    get: async (id: string) => {
      check();
      return base.users.get(id);
    },
  });
  const store = Object.assign(Object.create(base) as Store, { users, ping: async () => check() });
  return { store, state };
}

/** Both listeners serve the health service. */
const healthTransports: Array<[string, (h: Harness) => Transport]> = [
  ["gRPC on h2c", (h) => createGrpcTransport({ baseUrl: h.grpcUrl })],
  ["Connect on HTTP/1.1", (h) => createConnectTransport({ baseUrl: h.httpUrl, httpVersion: "1.1" })],
];

/** Reads a Watch until `count` messages arrived, then cancels it. */
async function watchStatuses(transport: Transport, count: number, service = ""): Promise<ServingStatus[]> {
  const abort = new AbortController();
  const statuses: ServingStatus[] = [];
  try {
    for await (const res of createClient(Health, transport).watch({ service }, { signal: abort.signal, timeoutMs: 10_000 })) {
      statuses.push(res.status);
      if (statuses.length === count) break;
    }
  } finally {
    abort.abort();
  }
  return statuses;
}

describe("a ready service", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  it("lists its methods to buf curl through reflection, without --schema", async () => {
    const listed = (await bufCurl("--list-methods", h.grpcUrl)).trim().split("\n");
    const identity = listed.filter((m) => m.startsWith(`${SERVICE}/`));
    expect(identity).toEqual(IdentityService.methods.map((m) => `${SERVICE}/${m.name}`).sort());
    expect(identity.length).toBeGreaterThanOrEqual(9);
    expect(identity).toContain(`${SERVICE}/SetPassword`);
    expect(listed).toEqual(expect.arrayContaining(["grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch", "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]));
  });

  it("lets buf curl log in with only reflection for a schema", async () => {
    const { code, openid } = await mintCode(h.sim);
    const out = JSON.parse(await bufCurl("-d", JSON.stringify({ appId: "demo", code }), `${h.grpcUrl}/${SERVICE}/Login`));
    expect(out.openid).toBe(openid);
    expect(out.tokens.accessToken).toEqual(expect.any(String));
  });

  it("answers /healthz and /readyz with 200", async () => {
    const healthz = await fetch(`${h.httpUrl}/healthz`);
    expect([healthz.status, await healthz.json()]).toEqual([200, { status: "ok" }]);
    const readyz = await fetch(`${h.httpUrl}/readyz`);
    expect([readyz.status, await readyz.json()]).toEqual([200, { status: "ready" }]);
  });

  describe.each(healthTransports)("health, %s", (_name, makeTransport) => {
    const transport = () => makeTransport(h);

    it("Check answers SERVING for the server and for the identity service", async () => {
      const client = createClient(Health, transport());
      expect((await client.check({})).status).toBe(ServingStatus.SERVING);
      expect((await client.check({ service: SERVICE })).status).toBe(ServingStatus.SERVING);
    });

    it("Check answers NOT_FOUND for a service it does not serve", async () => {
      const error = await createClient(Health, transport())
        .check({ service: "no.such.Service" })
        .catch((e: unknown) => ConnectError.from(e));
      expect((error as ConnectError).code).toBe(Code.NotFound);
    });

    it("Watch sends SERVING first", async () => {
      expect(await watchStatuses(transport(), 1)).toEqual([ServingStatus.SERVING]);
    });

    it("Watch sends SERVICE_UNKNOWN for a service it does not serve", async () => {
      expect(await watchStatuses(transport(), 1, "no.such.Service")).toEqual([ServingStatus.SERVICE_UNKNOWN]);
    });
  });

  it("answers reflection requests with the file and each import once per stream", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: h.grpcUrl }));
    const requests: Array<MessageInitShape<typeof ServerReflectionRequestSchema>["messageRequest"]> = [
      { case: "fileContainingSymbol", value: SERVICE },
      { case: "fileContainingSymbol", value: "identity.v1.IdentityService.Login" },
      { case: "fileByFilename", value: "google/protobuf/timestamp.proto" },
      { case: "fileContainingSymbol", value: "google.rpc.ErrorInfo" },
      { case: "fileContainingSymbol", value: "no.such.Symbol" },
      { case: "fileContainingExtension", value: { containingType: "identity.v1.User", extensionNumber: 100 } },
      { case: "allExtensionNumbersOfType", value: "identity.v1.User" },
    ];
    async function* send() {
      for (const messageRequest of requests) yield { host: "localhost", messageRequest };
    }
    const answers: ServerReflectionResponse[] = [];
    for await (const res of client.serverReflectionInfo(send())) answers.push(res);

    const files = (i: number) => {
      const response = answers[i]!.messageResponse;
      return response.case === "fileDescriptorResponse" ? response.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name) : response;
    };
    expect(answers).toHaveLength(requests.length);
    expect(files(0)).toEqual(["identity/v1/identity.proto", "google/protobuf/duration.proto", "google/protobuf/field_mask.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]);
    // Already sent on this stream: only the file asked for.
    expect(files(1)).toEqual(["identity/v1/identity.proto"]);
    expect(files(2)).toEqual(["google/protobuf/timestamp.proto"]);
    // duration.proto went with identity.proto already.
    expect(files(3)).toEqual(["google/rpc/error_details.proto"]);
    expect(answers[4]!.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: Code.NotFound } });
    expect(answers[5]!.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: Code.NotFound } });
    expect(answers[6]!.messageResponse).toMatchObject({ case: "allExtensionNumbersResponse", value: { baseTypeName: "identity.v1.User", extensionNumber: [] } });
    expect(answers[0]!.originalRequest?.messageRequest).toEqual(requests[0]);
  });

  it("serves reflection on h2c only", async () => {
    const res = await fetch(`${h.httpUrl}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`, { method: "POST", headers: { "content-type": "application/connect+proto" } });
    expect(res.status).toBe(404);
  });
});

describe("a service whose store does not answer", () => {
  let h: Harness;
  const { store, state } = storeThatCanFail();
  beforeAll(async () => {
    h = await startHarness(undefined, {}, store);
  });
  afterAll(() => h.close());

  it("is alive but not ready: /healthz 200, /readyz 503", async () => {
    const healthz = await fetch(`${h.httpUrl}/healthz`);
    expect([healthz.status, await healthz.json()]).toEqual([200, { status: "ok" }]);
    const readyz = await fetch(`${h.httpUrl}/readyz`);
    expect([readyz.status, await readyz.json()]).toEqual([503, { status: "not ready" }]);
  });

  it("Check answers NOT_SERVING on both listeners", async () => {
    for (const [, makeTransport] of healthTransports) {
      const client = createClient(Health, makeTransport(h));
      expect((await client.check({})).status).toBe(ServingStatus.NOT_SERVING);
      expect((await client.check({ service: SERVICE })).status).toBe(ServingStatus.NOT_SERVING);
    }
  });

  it("Watch sends NOT_SERVING, then SERVING once the store answers again", async () => {
    const transport = createGrpcTransport({ baseUrl: h.grpcUrl });
    const watched = watchStatuses(transport, 2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    state.down = false;
    expect(await watched).toEqual([ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
    expect((await fetch(`${h.httpUrl}/readyz`)).status).toBe(200);
  });
});

describe("shutdown", () => {
  it("ends open health watches at once instead of waiting out the shutdown timeout", async () => {
    const h = await startHarness();
    const ended = healthTransports.map(async ([, makeTransport]) => {
      const transport = makeTransport(h);
      const statuses: ServingStatus[] = [];
      try {
        for await (const res of createClient(Health, transport).watch({}, { timeoutMs: 20_000 })) statuses.push(res.status);
      } catch (e) {
        // The h2c listener may drop the connection before the end of the stream arrives.
        expect(ConnectError.from(e).code).not.toBe(Code.DeadlineExceeded);
      }
      return statuses;
    });
    // Both watches are open once the first message arrived: wait for the poll to run at least once.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const started = performance.now();
    await h.close();
    expect(performance.now() - started).toBeLessThan(3000);
    for (const statuses of await Promise.all(ended)) expect(statuses).toEqual([ServingStatus.SERVING]);
  }, 15_000);
});
