// One set of handlers, every transport: Connect (JSON and binary) and gRPC-Web on HTTP/1.1;
// gRPC, Connect and gRPC-Web on h2c; @grpc/grpc-js; and buf curl as an engineer runs it.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { CheckLoginRequestSchema, IdentityService } from "../gen/identity/v1/identity_pb.js";
import { login, mintCode, startHarness, type Harness } from "./support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

/** Options every transport takes: compressing what it sends, and Connect's GET for reads. */
type TransportOptions = { sendCompression?: Compression; compressMinBytes?: number; useHttpGet?: boolean };

// Each with its deadline header set past what a Node timer holds (2^31-1 ms).
const CONNECT_DEADLINE = { "connect-timeout-ms": "9999999999" };
const GRPC_DEADLINE = { "grpc-timeout": "99999999H" };
const transports: Array<[string, (options?: TransportOptions) => Transport, Record<string, string>]> = [
  ["Connect JSON on HTTP/1.1", (o) => createConnectTransport({ baseUrl: h.httpUrl, httpVersion: "1.1", useBinaryFormat: false, ...o }), CONNECT_DEADLINE],
  ["Connect binary on HTTP/1.1", (o) => createConnectTransport({ baseUrl: h.httpUrl, httpVersion: "1.1", useBinaryFormat: true, ...o }), CONNECT_DEADLINE],
  ["gRPC-Web on HTTP/1.1", (o) => createGrpcWebTransport({ baseUrl: h.httpUrl, httpVersion: "1.1", ...o }), GRPC_DEADLINE],
  ["gRPC on h2c", (o) => createGrpcTransport({ baseUrl: h.grpcUrl, ...o }), GRPC_DEADLINE],
  ["Connect on h2c", (o) => createConnectTransport({ baseUrl: h.grpcUrl, httpVersion: "2", ...o }), CONNECT_DEADLINE],
  ["gRPC-Web on h2c", (o) => createGrpcWebTransport({ baseUrl: h.grpcUrl, httpVersion: "2", ...o }), GRPC_DEADLINE],
];

describe.each(transports)("%s", (name, makeTransport, farDeadline) => {
  it("logs in, checks the login and reads the user", async () => {
    const client = createClient(IdentityService, makeTransport());
    const { code, openid } = await mintCode(h.sim);
    const res = await client.login({ appId: "demo", credential: { case: "code", value: code } });
    expect(res.registered).toBe(true);
    expect(res.openid).toBe(openid);
    const headers = { authorization: `Bearer ${res.tokens!.accessToken}` };
    const check = await client.checkLogin({}, { headers });
    expect(check.user?.id).toBe(res.user?.id);
    const got = await client.getUser({}, { headers });
    expect(got.user?.identities[0]?.openid).toBe(openid);
  });

  it("logs in and reads the user with gzip-compressed requests (Connect GET too)", async () => {
    const gzip = { sendCompression: compressionGzip, compressMinBytes: 0 };
    const client = createClient(IdentityService, makeTransport(gzip));
    const { code, openid } = await mintCode(h.sim);
    const res = await client.login({ appId: "demo", credential: { case: "code", value: code } });
    expect(res.openid).toBe(openid);
    const headers = { authorization: `Bearer ${res.tokens!.accessToken}` };
    expect((await client.getUser({ userId: res.user!.id }, { headers })).user?.id).toBe(res.user?.id);
    if (name.startsWith("Connect")) {
      for (const options of [{ useHttpGet: true }, { ...gzip, useHttpGet: true }]) {
        const reader = createClient(IdentityService, makeTransport(options));
        expect((await reader.getUser({ userId: res.user!.id }, { headers })).user?.id, JSON.stringify(options)).toBe(res.user?.id);
      }
    }
  });

  it("serves a call whose deadline is past what a timer holds, with no TimeoutOverflowWarning", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const client = createClient(IdentityService, makeTransport());
      const { code } = await mintCode(h.sim);
      const res = await client.login({ appId: "demo", credential: { case: "code", value: code } }, { headers: farDeadline });
      expect(res.registered).toBe(true);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).not.toContain("TimeoutOverflowWarning");
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("carries the code and the ErrorInfo reason", async () => {
    const client = createClient(IdentityService, makeTransport());
    const error = await client.getUser({}).catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
    expect((error as ConnectError).findDetails(ErrorInfoSchema)[0]).toMatchObject({ domain: "identity.v1", reason: "TOKEN_MISSING" });
  });

  it("refuses an oversized body with INVALID_ARGUMENT / REQUEST_TOO_LARGE", async () => {
    const client = createClient(IdentityService, makeTransport());
    const error = await client.login({ appId: "demo", credential: { case: "code", value: "x".repeat(100_000) } }).catch((e: unknown) => ConnectError.from(e));
    expect((error as ConnectError).code).toBe(Code.InvalidArgument);
    expect((error as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("REQUEST_TOO_LARGE");
  });

  it("cuts a body far over the limit without wedging the listener", async () => {
    const client = createClient(IdentityService, makeTransport());
    const error = await client.login({ appId: "demo", credential: { case: "code", value: "x".repeat(3_000_000) } }).catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).not.toBe(Code.Internal);
    const { code } = await mintCode(h.sim);
    expect((await client.login({ appId: "demo", credential: { case: "code", value: code } })).registered).toBe(true);
  });
});

// A Connect unary POST without a deadline is answered by the bridge's fast path (connect-unary.ts);
// with a deadline header the same call goes through Connect's own handler. Both must answer alike.
describe("the unary fast path", () => {
  const answer = async (path: string, body: string | Uint8Array, headers: Record<string, string>) => {
    const res = await fetch(`${h.httpUrl}/${path}`, { method: "POST", headers, body });
    const header = Object.fromEntries([...res.headers].filter(([name]) => name !== "date"));
    return { status: res.status, header, body: Buffer.from(await res.arrayBuffer()).toString("base64") };
  };
  const both = async (path: string, body: string | Uint8Array, headers: Record<string, string>) => {
    const fast = await answer(path, body, headers);
    expect(fast).toEqual(await answer(path, body, { ...headers, "connect-timeout-ms": "60000" }));
    return fast;
  };
  const json = { "content-type": "application/json" };

  it("answers successes, refusals and the guard's errors as Connect's handler does", async () => {
    const { access } = await login(h);
    const checked = await both("identity.v1.IdentityService/CheckLogin", "{}", { ...json, authorization: `Bearer ${access}` });
    expect(checked.status).toBe(200);
    expect(Buffer.from(checked.body, "base64").toString()).toContain('"user"');
    const binary = await both("identity.v1.IdentityService/CheckLogin", toBinary(CheckLoginRequestSchema, create(CheckLoginRequestSchema)), {
      "content-type": "application/proto",
      authorization: `Bearer ${access}`,
    });
    expect(binary.header["content-type"]).toBe("application/proto");
    const cases: Array<[string, string]> = [
      ["{}", "TOKEN_MISSING"],
      ["{not json", "REQUEST_INVALID"],
      ['{"userId": 7}', "FIELD_INVALID"],
      [JSON.stringify({ userId: "x".repeat(100_000) }), "REQUEST_TOO_LARGE"],
    ];
    for (const [body, reason] of cases) {
      const refused = await both("identity.v1.IdentityService/GetUser", body, json);
      expect(refused.header["content-type"]).toBe("application/json");
      expect(JSON.parse(Buffer.from(refused.body, "base64").toString()).details[0].debug.reason).toBe(reason);
    }
    expect((await both("grpc.health.v1.Health/Check", "{}", json)).status).toBe(200);
  });
});

/** A grpc-js client for the service, serializing with protobuf-es. */
function grpcJsClient(address: string) {
  const serialize = (schema: DescMessage) => (m: any) => Buffer.from(toBinary(schema, m));
  const deserialize = (schema: DescMessage) => (b: Buffer) => fromBinary(schema, b);
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of IdentityService.methods) {
    definition[method.name] = {
      path: `/${IdentityService.typeName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: serialize(method.input),
      requestDeserialize: deserialize(method.input),
      responseSerialize: serialize(method.output),
      responseDeserialize: deserialize(method.output),
    };
  }
  const Client = grpc.makeGenericClientConstructor(definition, "IdentityService");
  return new Client(address, grpc.credentials.createInsecure());
}

describe("@grpc/grpc-js", () => {
  it("checks a token with bearer metadata and gets UNAUTHENTICATED without one", async () => {
    const { access, body } = await login(h);
    const client = grpcJsClient(new URL(h.grpcUrl).host);
    const call = (metadata: grpc.Metadata) =>
      new Promise<any>((resolve, reject) => {
        (client as any).CheckLogin(create(CheckLoginRequestSchema, {}), metadata, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
      });
    try {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${access}`);
      const res = await call(metadata);
      expect(res.user.id).toBe(body.user.id);
      const err = await call(new grpc.Metadata()).catch((e: grpc.ServiceError) => e);
      expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  });
});

describe("buf curl", () => {
  it("calls GetUser over gRPC with the schema from proto/", async () => {
    const { access, body } = await login(h);
    const { stdout } = await promisify(execFile)(
      "npx",
      [
        "--no-install",
        "buf",
        "curl",
        "--schema",
        "proto",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-H",
        `authorization: Bearer ${access}`,
        "-d",
        "{}",
        `${h.grpcUrl}/identity.v1.IdentityService/GetUser`,
      ],
      { timeout: 30_000 },
    );
    expect(JSON.parse(stdout).user.id).toBe(body.user.id);
  });
});
