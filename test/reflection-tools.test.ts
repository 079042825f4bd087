// What the tools people already use need from the h2c listener: reflection under v1alpha as well as
// v1 (older grpcurl, grpcio-reflection), the proto comments in the served descriptors (grpcurl
// describe), and UNIMPLEMENTED for a call to nothing. grpcurl itself runs when it is on PATH.
import { execFile } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { promisify } from "node:util";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection, type ServerReflectionRequestSchema, type ServerReflectionResponse } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Health } from "../gen/health/v1/health_pb.js";
import { SERVICE, startHarness, type Harness } from "./support/harness.js";

// A comment from identity.proto, read from the file so the test follows it.
const proto = readFileSync(new URL("../proto/identity/v1/identity.proto", import.meta.url), "utf8");
const serviceComment = proto.split("\n")[proto.split("\n").findIndex((l) => l.startsWith("service IdentityService")) - 1]!.replace(/^\/\/ ?/, "");

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

/** One v1alpha reflection stream, a request per entry. */
async function reflectV1alpha(requests: Array<MessageInitShape<typeof ServerReflectionRequestSchema>["messageRequest"]>): Promise<ServerReflectionResponse[]> {
  const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: h.grpcUrl }));
  async function* send() {
    for (const messageRequest of requests) yield { host: "localhost", messageRequest };
  }
  const answers: ServerReflectionResponse[] = [];
  for await (const res of client.serverReflectionInfo(send())) answers.push(res);
  return answers;
}

const filesOf = (res: ServerReflectionResponse): FileDescriptorProto[] =>
  res.messageResponse.case === "fileDescriptorResponse" ? res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b)) : [];

describe("reflection v1alpha", () => {
  it("lists the services and resolves the file declaring IdentityService", async () => {
    const [listed, file] = await reflectV1alpha([
      { case: "listServices", value: "" },
      { case: "fileContainingSymbol", value: SERVICE },
    ]);
    expect(listed!.messageResponse.case).toBe("listServicesResponse");
    const names = listed!.messageResponse.case === "listServicesResponse" ? listed!.messageResponse.value.service.map((s) => s.name) : [];
    expect(names).toEqual([SERVICE, "identity.admin.v1.AdminService", Health.typeName, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);
    const [identity] = filesOf(file!);
    expect(identity?.name).toBe("identity/v1/identity.proto");
    expect(identity?.service.map((s) => s.name)).toEqual(["IdentityService"]);
  });

  it("serves the proto comments with the descriptors", async () => {
    expect(serviceComment.length).toBeGreaterThan(10);
    const [answer] = await reflectV1alpha([{ case: "fileByFilename", value: "identity/v1/identity.proto" }]);
    const [identity] = filesOf(answer!);
    // Path [6, 0]: the file's first service.
    const location = identity?.sourceCodeInfo?.location.find((l) => l.path.join() === "6,0");
    expect(location?.leadingComments).toContain(serviceComment);
  });
});

describe("a call to a service or method the listener does not serve", () => {
  /** A grpc-js unary call to `path` with an empty message. */
  const callGrpcJs = (path: string) =>
    new Promise<grpc.ServiceError>((resolve, reject) => {
      const client = new grpc.Client(h.grpcUrl.replace(/^http:\/\//, ""), grpc.credentials.createInsecure());
      client.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (err) => {
          client.close();
          err ? resolve(err) : reject(new Error(`${path} answered`));
        },
      );
    });

  it.each([`/${SERVICE}/NoSuchMethod`, "/no.such.Service/Method"])("answers %s with UNIMPLEMENTED to grpc-js", async (path) => {
    const err = await callGrpcJs(path);
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(err.details).toContain(path);
  });

  it("still answers a Connect request with 404, on h2c as on HTTP/1.1", async () => {
    const res = await fetch(`${h.httpUrl}/${SERVICE}/NoSuchMethod`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(res.status).toBe(404);
    const session = http2.connect(h.grpcUrl);
    try {
      const stream = session.request({ ":method": "POST", ":path": `/${SERVICE}/NoSuchMethod`, "content-type": "application/json" });
      stream.end("{}");
      const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
      expect(headers[":status"]).toBe(404);
      stream.resume();
    } finally {
      session.close();
    }
  });
});

const run = promisify(execFile);
// grpcurl speaks reflection through grpc-go, as most tools do; CI installs it, a laptop may not have it.
const grpcurl = await run("grpcurl", ["-version"]).then(
  () => true,
  (e: NodeJS.ErrnoException) => {
    console.log(`grpcurl tests skipped: grpcurl is not on PATH (${e.code}); GOBIN=/tmp/gobin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest`);
    return false;
  },
);

describe.skipIf(!grpcurl)("grpcurl", () => {
  const grpcurlOut = async (...args: string[]) => (await run("grpcurl", ["-plaintext", ...args], { timeout: 30_000 })).stdout;
  const address = () => h.grpcUrl.replace(/^http:\/\//, "");

  it("lists the services", async () => {
    const listed = (await grpcurlOut(address(), "list")).trim().split("\n");
    expect(listed).toEqual([Health.typeName, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "identity.admin.v1.AdminService", SERVICE]);
  });

  it("describes IdentityService with its comments", async () => {
    const described = await grpcurlOut(address(), "describe", SERVICE);
    expect(described).toContain(`// ${serviceComment}`);
    expect(described).toContain("rpc Login");
  });
});

// grpcio-reflection, the standard Python client (v1alpha only), through a DescriptorPool and
// message classes built from the reflected descriptors: CI makes the venv, a laptop may not have it.
const python = process.env.IDENTITY_PYTHON ?? `${process.env.XDG_CACHE_HOME ?? `${process.env.HOME}/.cache`}/identity-ci/pyvenv/bin/python`;
const pythonReady = await run(python, ["-c", "import grpc, grpc_reflection.v1alpha.proto_reflection_descriptor_database, grpc_status, google.rpc.error_details_pb2"]).then(
  () => true,
  (e: Error) => {
    console.log(
      `Python reflection test skipped: ${python} lacks the packages (${e.message.split("\n").at(-2) ?? e.message}); python3 -m venv ${python.replace(/\/bin\/python$/, "")} && ${python.replace(/python$/, "pip")} install grpcio==1.76.0 grpcio-reflection==1.76.0 grpcio-status==1.76.0 googleapis-common-protos==1.72.0 protobuf==6.33.1`,
    );
    return false;
  },
);

describe.skipIf(!pythonReady)("grpcio-reflection (Python)", () => {
  it("lists the services, finds IdentityService's methods and calls through reflected descriptors", async () => {
    const script = new URL("./python/reflection_client.py", import.meta.url).pathname;
    const { stdout } = await run(python, [script, h.grpcUrl.replace(/^http:\/\//, "")], { timeout: 60_000 });
    const found = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(found.services).toEqual([SERVICE, "identity.admin.v1.AdminService", Health.typeName, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);
    expect(found.methods).toEqual(expect.arrayContaining(["Login", "CheckLogin"]));
    expect(found.health).toBe("SERVING");
    expect(found.checkLogin).toEqual({ code: "UNAUTHENTICATED", reasons: ["TOKEN_MISSING"] });
  });
});
