// Issue 9, item 3: hostile input shapes against the real listeners (JSON on HTTP/1.1, gRPC on h2c).
import http2 from "node:http2";
import net from "node:net";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { GetUserRequestSchema, IdentityService } from "../gen/identity/v1/identity_pb.js";
import { DEMO_APPID, login, reasonOf, rpc, SERVICE, startHarness, type Harness, type RpcResult } from "./support/harness.js";
import { expectCleanLogs, STACK_FRAME } from "./support/attack.js";

const app = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s" };
const OPERATORS = [{ $gt: "" }, { $where: "sleep(1000)" }, { $regex: ".*" }, { $ne: null }];

// Every string field of every RPC, as a path into the JSON request.
const STRING_FIELDS: Record<string, string[][]> = {
  Login: [["appId"], ["code"], ["password", "username"], ["password", "password"], ["bindCode"], ["inviterId"], ["inviteCode"], ["idToken"], ["nonce"]],
  Oauth: [["encryptedData"], ["iv"], ["rawData"], ["signature"]],
  GetPhone: [["code"], ["encryptedData"], ["iv"]],
  BindPhone: [["code"], ["encryptedData"], ["iv"]],
  Refresh: [["refreshToken"]],
  CheckLogin: [["accessToken"]],
  GetUser: [["userId"]],
  UpdateUser: [["user", "id"], ["user", "nickname"], ["user", "avatarUrl"], ["user", "birthday"], ["user", "email"], ["user", "username"], ["updateMask"]],
  SetPassword: [["username"], ["currentPassword"], ["newPassword"]],
};

function nest(path: string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = path;
  return { [head!]: rest.length ? nest(rest, value) : value };
}

/** No 500, no stack trace: a clear client error with an ErrorInfo reason. */
function expectClientError(res: RpcResult, reasons: string[]) {
  expect(res.status, res.text).toBe(400);
  expect(reasons).toContain(reasonOf(res));
  expect(res.text).not.toMatch(STACK_FRAME);
}

const prototypeSnapshot = () => ({
  object: Object.getOwnPropertyNames(Object.prototype).sort(),
  array: Object.getOwnPropertyNames(Array.prototype).sort(),
  function: Object.getOwnPropertyNames(Function.prototype).sort(),
});

describe("input shapes (default limits)", () => {
  let h: Harness;
  let me: Awaited<ReturnType<typeof login>>;
  beforeAll(async () => {
    h = await startHarness({ apps: [app] });
    me = await login(h);
  });
  afterAll(() => h.close());

  const getMe = async () => (await rpc(h.httpUrl, "GetUser", {}, me.access)).json.user;
  const update = (body: unknown) => rpc(h.httpUrl, "UpdateUser", body, me.access);

  it("refuses MongoDB operator objects in every string field of every RPC as FIELD_INVALID", async () => {
    for (const [method, paths] of Object.entries(STRING_FIELDS)) {
      for (const path of paths) {
        for (const operator of OPERATORS) {
          const res = await rpc(h.httpUrl, method, nest(path, operator), me.access);
          expectClientError(res, ["FIELD_INVALID"]);
          // Named by the top-level field, as its proto name.
          const info = res.json.details.find((d: any) => d.type === "google.rpc.ErrorInfo");
          expect(info.debug.metadata.field, `${method} ${path.join(".")}`).toBe(IdentityService.method[lowerFirst(method) as "login"].input.fields.find((f) => f.jsonName === path[0])!.name);
        }
      }
    }
  });

  it("refuses attribute keys starting with $ or holding dots, at every nesting level", async () => {
    const before = await getMe();
    for (const key of ["$gt", "$where", "a.b", "$set.x"]) {
      for (let depth = 0; depth < 5; depth++) {
        let attributes: unknown = { [key]: 1 };
        for (let i = 0; i < depth; i++) attributes = i % 2 ? { outer: attributes } : { list: [attributes] };
        expectClientError(await update({ user: { attributes }, updateMask: "attributes" }), ["FIELD_INVALID"]);
      }
    }
    expect((await getMe()).version).toBe(before.version);
  });

  it("refuses __proto__, constructor and prototype keys anywhere in the body, and pollutes nothing", async () => {
    const before = prototypeSnapshot();
    const user = await getMe();
    const bodies: string[] = [];
    for (const key of ["__proto__", "constructor", "prototype"]) {
      const payload = `{"${key}":{"polluted":"yes","isAdmin":true}}`;
      bodies.push(`{${payload.slice(1, -1)},"user":{"nickname":"x"}}`);
      bodies.push(`{"user":${payload}}`);
      bodies.push(`{"user":{"attributes":${payload}},"updateMask":"attributes"}`);
      bodies.push(`{"user":{"attributes":{"a":{"b":[${payload}]}}},"updateMask":"attributes"}`);
      bodies.push(`{"user":{"attributes":{"a":{"b":{"c":{"d":${payload}}}}}},"updateMask":"attributes"}`);
      bodies.push(`{"updateMask":${payload}}`);
    }
    for (const body of bodies) expectClientError(await update(body), ["FIELD_INVALID"]);
    for (const method of ["Login", "Refresh", "CheckLogin"]) {
      expectClientError(await rpc(h.httpUrl, method, `{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}`), ["FIELD_INVALID"]);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(prototypeSnapshot()).toEqual(before);
    const after = await getMe();
    expect([after.version, after.attributes, after.nickname]).toEqual([user.version, user.attributes, user.nickname]);
  });

  it("refuses or ignores fields a caller may not set, verified by reading the user back", async () => {
    const other = await login(h);
    const before = await getMe();
    // Privileged fields are refused outright.
    for (const smuggled of [{ roles: ["admin"] }, { status: "USER_STATUS_DISABLED" }]) {
      const res = await update({ user: { nickname: "sneaky", ...smuggled } });
      expect([res.status, reasonOf(res)]).toEqual([403, "FIELD_NOT_ALLOWED"]);
    }
    // Another user's id is refused.
    expect(reasonOf(await update({ user: { id: other.body.user.id, nickname: "sneaky" } }))).toBe("PERMISSION_DENIED");
    // Read-only fields named in the mask are refused...
    for (const path of ["version", "create_time", "identities", "inviter_id", "has_password", "id"]) {
      expectClientError(await update({ user: { nickname: "sneaky" }, updateMask: `nickname,${path}` }), ["FIELD_INVALID"]);
    }
    expect((await getMe()).version).toBe(before.version);
    // ...and ignored when only sent along.
    const res = await update({
      user: {
        nickname: "honest",
        version: 999,
        createTime: "2000-01-01T00:00:00Z",
        inviterId: other.body.user.id,
        hasPassword: true,
        identities: [{ platform: "wechat-miniprogram", appid: DEMO_APPID, openid: other.openid }],
        phoneNumber: "+8613800000000",
      },
    });
    expect(res.status, res.text).toBe(200);
    const after = await getMe();
    expect(after).toEqual({ ...before, nickname: "honest", version: before.version + 1, updateTime: after.updateTime });
    expect(after.roles).toEqual(before.roles);
    // Login takes no user fields at all.
    for (const smuggled of [{ roles: ["admin"] }, { status: "USER_STATUS_ACTIVE" }, { user: { roles: ["admin"] } }, { userId: other.body.user.id }, { hasPassword: true }]) {
      expectClientError(await rpc(h.httpUrl, "Login", { code: "whatever", ...smuggled }), ["FIELD_INVALID"]);
    }
  });

  it("refuses 10,000 levels of nesting in a field and in attributes, without a 500", async () => {
    const arrays = (n: number) => "[".repeat(n) + "]".repeat(n);
    const objects = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
    for (const deep of [arrays(10_000), objects(10_000)]) {
      expectClientError(await rpc(h.httpUrl, "Login", `{"code":${deep}}`), ["REQUEST_INVALID", "FIELD_INVALID"]);
      expectClientError(await update(`{"user":{"attributes":{"x":${deep}}},"updateMask":"attributes"}`), ["REQUEST_INVALID", "FIELD_INVALID"]);
    }
    // 9 levels of attributes: over the attributes limit, with a clear reason.
    expectClientError(await update({ user: { attributes: JSON.parse(objects(9)) }, updateMask: "attributes" }), ["FIELD_INVALID"]);
  });

  it("refuses huge and non-numeric numbers as FIELD_INVALID, and -0 is just 0", async () => {
    const big = "9".repeat(100);
    for (const body of [
      `{"user":{"nickname":"n"},"expectedVersion":1e309}`,
      `{"user":{"nickname":"n"},"expectedVersion":18446744073709551616}`,
      `{"user":{"nickname":"n"},"expectedVersion":"NaN"}`,
      `{"user":{"nickname":"n"},"expectedVersion":"Infinity"}`,
      `{"user":{"nickname":"n"},"expectedVersion":${big}}`,
      `{"user":{"nickname":"n"},"expectedVersion":-${big}}`,
      `{"user":{"nickname":"n"},"expectedVersion":1.5}`,
      `{"user":{"gender":${big}}}`,
      `{"user":{"attributes":{"x":1e309}},"updateMask":"attributes"}`,
      `{"user":{"attributes":{"x":[-1e309]}},"updateMask":"attributes"}`,
    ]) {
      expectClientError(await update(body), ["FIELD_INVALID"]);
    }
    const version = (await getMe()).version;
    // -0 is 0: a stale version, not a parse error.
    const zero = await update(`{"user":{"nickname":"n"},"expectedVersion":-0}`);
    expect([zero.status, reasonOf(zero)]).toEqual([409, "VERSION_CONFLICT"]);
    // 2**64 is a finite double: an attribute may hold it, and the user reads back fine.
    expect((await update(`{"user":{"attributes":{"x":18446744073709551616}},"updateMask":"attributes"}`)).status).toBe(200);
    const after = await getMe();
    expect([after.version, after.attributes]).toEqual([version + 1, { x: 2 ** 64 }]);
  });

  it("answers content-type confusion with 415 or REQUEST_INVALID, never 500", async () => {
    const url = `${h.httpUrl}/${SERVICE}/GetUser`;
    const auth = { authorization: `Bearer ${me.access}` };
    const post = async (body: string | Uint8Array | FormData | Blob, contentType?: string) => {
      const res = await fetch(url, { method: "POST", body, headers: { ...auth, ...(contentType ? { "content-type": contentType } : {}) } });
      return { status: res.status, text: await res.text() };
    };
    const binary = toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { userId: "someone" }));
    const json = JSON.stringify({ userId: me.body.user.id });
    for (const [body, contentType] of [
      [json, "application/proto"],
      [binary, "application/json"],
      ["\u00ff\u00fe{", "application/json"],
    ] as const) {
      const res = await post(body, contentType);
      expect(res.status, `${contentType}: ${res.text}`).toBe(400);
      expect(JSON.parse(res.text).details[0].debug.reason).toBe("REQUEST_INVALID");
    }
    const form = new FormData();
    form.set("userId", "x");
    for (const [body, contentType] of [
      [json, "text/plain"],
      [json, "multipart/form-data; boundary=x"],
      [form, undefined],
      [json, "application/x-www-form-urlencoded"],
      [json, "application/json; charset=utf-16"],
      [json, "application/json; charset=latin1"],
      [new Blob([binary]), undefined],
    ] as const) {
      expect((await post(body, contentType)).status, String(contentType)).toBe(415);
    }
    for (const contentType of ["application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"]) {
      expect((await post(json, contentType)).status, contentType).toBe(200);
    }
    expect((await post(binary, "application/proto")).status).toBe(403);
  });

  it("gRPC: refuses non-finite numbers and unsafe keys in attributes, a binary Struct key __proto__ too, and the user stays as it was", async () => {
    const client = createClient(IdentityService, createGrpcTransport({ baseUrl: h.grpcUrl }));
    const headers = { authorization: `Bearer ${me.access}` };
    const before = await client.getUser({}, { headers });
    const hostile: JsonObject[] = [{ x: Infinity }, { x: [Number.NaN] }, { $where: "1" }, { "a.b": 1 }];
    for (const attributes of hostile) {
      const err = await client.updateUser({ user: { attributes }, updateMask: { paths: ["attributes"] } }, { headers }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
      expect((err as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe("FIELD_INVALID");
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // protobuf-es drops an own "__proto__" key when encoding, so the Struct is written by hand:
    // {"__proto__": {"polluted": "yes"}, "keep": 1}. The decoder keeps the key as data (since
    // @bufbuild/protobuf 2.14), and the attribute rules refuse it, as they do in JSON.
    const ld = (tag: number[], body: Buffer) => Buffer.concat([Buffer.from(tag), Buffer.from([body.length]), body]);
    const str = (tag: number, text: string) => ld([tag], Buffer.from(text));
    const polluting = ld([0x0a], Buffer.concat([str(0x0a, "polluted"), ld([0x12], str(0x1a, "yes"))]));
    const entry = ld([0x0a], Buffer.concat([str(0x0a, "__proto__"), ld([0x12], ld([0x2a], polluting))]));
    const keep = ld([0x0a], Buffer.concat([str(0x0a, "keep"), ld([0x12], Buffer.from([0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]))]));
    const message = Buffer.concat([ld([0x0a], ld([0x92, 0x01], Buffer.concat([entry, keep]))), ld([0x12], str(0x0a, "attributes"))]);
    const { trailers } = await h2Request(h.grpcUrl, `/${SERVICE}/UpdateUser`, { "content-type": "application/grpc", te: "trailers", ...headers }, grpcFrame(message));
    expect(trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(decodeURIComponent(String(trailers["grpc-message"]))).toMatch(/__proto__/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const after = await client.getUser({}, { headers });
    expect(after.user?.version).toBe(before.user!.version);
    expect(after.user?.attributes).toEqual(before.user?.attributes);
  });

  it("refuses a message that does not decode as REQUEST_INVALID in every form Connect reads (GET, compressed, enveloped)", async () => {
    for (const form of FORMS) {
      const garbage = form.format === "json" ? Buffer.from("{") : Buffer.from([0xff, 0xff, 0xff]);
      expect(await form.send(h, "GetUser", form.pack(garbage), me.access), form.name).toMatchObject({ code: Code.InvalidArgument, reason: "REQUEST_INVALID" });
    }
  });

  it("refuses __proto__ keys in every JSON form, and pollutes nothing", async () => {
    const before = prototypeSnapshot();
    const body = Buffer.from(`{"__proto__":{"polluted":"yes"},"userId":"x"}`);
    for (const form of FORMS.filter((f) => f.format === "json")) {
      expect(await form.send(h, "GetUser", form.pack(body), me.access), form.name).toMatchObject({ code: Code.InvalidArgument, reason: "FIELD_INVALID" });
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(prototypeSnapshot()).toEqual(before);
  });

  it("refuses a payload that does not decompress, or a compressed envelope with no compression named, as REQUEST_INVALID", async () => {
    for (const form of FORMS.filter((f) => f.compressed)) {
      expect(await form.send(h, "GetUser", Buffer.from("not gzip at all"), me.access), form.name).toMatchObject({ code: Code.InvalidArgument, reason: "REQUEST_INVALID" });
    }
    const flagged = grpcFrame(Buffer.from([0x0a, 0x00]), 1);
    const { trailers } = await h2Request(h.grpcUrl, `/${SERVICE}/GetUser`, { "content-type": "application/grpc", te: "trailers" }, flagged);
    expect(grpcOutcome(trailers)).toMatchObject({ code: Code.InvalidArgument, reason: "REQUEST_INVALID" });
  });

  it("refuses a gzip bomb as REQUEST_TOO_LARGE in every compressed form", async () => {
    const bomb = (format: Format) =>
      format === "json" ? Buffer.from(JSON.stringify({ userId: "a".repeat(5_000_000) })) : Buffer.from(toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { userId: "a".repeat(5_000_000) })));
    for (const form of FORMS.filter((f) => f.compressed)) {
      expect(await form.send(h, "GetUser", form.pack(bomb(form.format)), me.access), form.name).toMatchObject({ code: Code.InvalidArgument, reason: "REQUEST_TOO_LARGE" });
    }
  });

  it("serves a valid request in every form Connect reads", async () => {
    const request = create(GetUserRequestSchema, { userId: me.body.user.id });
    for (const form of FORMS) {
      const message = form.format === "json" ? Buffer.from(JSON.stringify({ userId: me.body.user.id })) : Buffer.from(toBinary(GetUserRequestSchema, request));
      expect(await form.send(h, "GetUser", form.pack(message), me.access), form.name).toMatchObject({ code: undefined });
    }
  });

  it("gRPC on h2c: a message that is not protobuf is REQUEST_INVALID, not INTERNAL", async () => {
    const message = Buffer.from(JSON.stringify({ userId: "x" }));
    const { trailers } = await h2Request(h.grpcUrl, `/${SERVICE}/GetUser`, { "content-type": "application/grpc", te: "trailers" }, grpcFrame(message));
    expect(trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(decodeURIComponent(String(trailers["grpc-message"]))).toMatch(/not a valid binary/);
  });
});

/** One HTTP/2 request, read whole: status, headers and trailers merged into `trailers` for gRPC's trailers-only answers. */
async function h2Request(base: string, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array) {
  const session = http2.connect(base);
  try {
    return await new Promise<{ status: number; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": path, ...headers });
      let status = 0;
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        trailers = { ...h };
      });
      stream.on("trailers", (t) => (trailers = { ...trailers, ...t }));
      stream.on("data", () => undefined);
      stream.on("end", () => resolve({ status, trailers }));
      stream.on("error", reject);
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

/** How a call came out: no code when it succeeded. */
interface Outcome {
  code: Code | undefined;
  reason: string | undefined;
}

const outcomeOf = (error: ConnectError | undefined): Outcome => ({ code: error?.code, reason: error?.findDetails(ErrorInfoSchema)[0]?.reason });

async function connectOutcome(res: Response): Promise<Outcome> {
  const bytes = new Uint8Array(await res.arrayBuffer());
  expect(Buffer.from(bytes).toString("latin1")).not.toMatch(STACK_FRAME);
  return res.status === 200 ? outcomeOf(undefined) : outcomeOf(errorFromJsonBytes(bytes, undefined, new ConnectError(`HTTP ${res.status}`, Code.Unknown)));
}

/** gRPC's status, from trailers (or headers, for a trailers-only answer). */
function grpcOutcome(trailers: Headers | http2.IncomingHttpHeaders): Outcome {
  const headers = trailers instanceof Headers ? trailers : new Headers(Object.entries(trailers).filter((e): e is [string, string] => !e[0].startsWith(":") && typeof e[1] === "string"));
  if (!headers.has("grpc-status")) return { code: Code.Unknown, reason: "no grpc-status" };
  return outcomeOf(findTrailerError(headers));
}

/** gRPC-Web carries its trailers in a last frame flagged 0x80. */
async function grpcWebOutcome(res: Response): Promise<Outcome> {
  const body = Buffer.from(await res.arrayBuffer());
  let trailers = new Headers(res.headers);
  for (let at = 0; at + 5 <= body.length; at += 5 + body.readUInt32BE(at + 1)) {
    if (body[at]! & 0x80) trailers = trailerParse(body.subarray(at + 5, at + 5 + body.readUInt32BE(at + 1)));
  }
  return grpcOutcome(trailers);
}

type Format = "json" | "proto";
interface Form {
  name: string;
  format: Format;
  /** Whether the form declares a compression (gzip or br), which `pack` applies. */
  compressed: boolean;
  pack(message: Uint8Array): Uint8Array;
  send(h: Harness, method: string, payload: Uint8Array, token?: string): Promise<Outcome>;
}

const gzip = (b: Uint8Array) => gzipSync(b);
const bearer = (token?: string): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

const connectPost = (format: Format, encoding: "gzip" | "br"): Form => ({
  name: `Connect POST ${format}, ${encoding}`,
  format,
  compressed: true,
  pack: encoding === "gzip" ? gzip : (b) => brotliCompressSync(b),
  send: async (h, method, payload, token) =>
    connectOutcome(
      await fetch(`${h.httpUrl}/${SERVICE}/${method}`, { method: "POST", headers: { "content-type": `application/${format}`, "content-encoding": encoding, ...bearer(token) }, body: payload }),
    ),
});

const connectGet = (format: Format, compressed: boolean): Form => ({
  name: `Connect GET ${format}${compressed ? ", gzip" : ""}`,
  format,
  compressed,
  pack: compressed ? gzip : (b) => b,
  send: async (h, method, payload, token) => {
    const message = format === "json" && !compressed ? `message=${encodeURIComponent(Buffer.from(payload).toString("utf8"))}` : `base64=1&message=${Buffer.from(payload).toString("base64url")}`;
    const query = `encoding=${format}${compressed ? "&compression=gzip" : ""}&${message}`;
    return connectOutcome(await fetch(`${h.httpUrl}/${SERVICE}/${method}?${query}`, { headers: bearer(token) }));
  },
});

const grpcWeb = (format: Format): Form => ({
  name: `gRPC-Web ${format}, gzip, on HTTP/1.1`,
  format,
  compressed: true,
  pack: gzip,
  send: async (h, method, payload, token) =>
    grpcWebOutcome(
      await fetch(`${h.httpUrl}/${SERVICE}/${method}`, {
        method: "POST",
        headers: { "content-type": `application/grpc-web+${format}`, "grpc-encoding": "gzip", ...bearer(token) },
        body: grpcFrame(payload, 1),
      }),
    ),
});

const grpcH2c = (format: Format): Form => ({
  name: `gRPC ${format}, gzip, on h2c`,
  format,
  compressed: true,
  pack: gzip,
  send: async (h, method, payload, token) =>
    grpcOutcome(
      (await h2Request(h.grpcUrl, `/${SERVICE}/${method}`, { "content-type": `application/grpc+${format}`, te: "trailers", "grpc-encoding": "gzip", ...bearer(token) }, grpcFrame(payload, 1)))
        .trailers,
    ),
});

/** Every way Connect reads a message besides a plain POST body: a GET's query, compressed bodies, compressed envelopes. */
const FORMS: Form[] = [
  connectPost("json", "gzip"),
  connectPost("json", "br"),
  connectPost("proto", "gzip"),
  connectGet("json", false),
  connectGet("proto", false),
  connectGet("json", true),
  connectGet("proto", true),
  grpcWeb("proto"),
  grpcWeb("json"),
  grpcH2c("proto"),
  grpcH2c("json"),
];

/** One gRPC message: flags (1: compressed), 4 bytes of length, the message. */
function grpcFrame(message: Uint8Array, flags = 0): Buffer {
  const prefix = Buffer.from([flags, 0, 0, 0, 0]);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function lowerFirst(s: string) {
  return s[0]!.toLowerCase() + s.slice(1);
}

describe("body limits and slow clients (small limits)", () => {
  const LIMIT = 1024;
  const TIMEOUTS = { headersTimeoutMs: 500, requestTimeoutMs: 1000, keepAliveTimeoutMs: 1000 };
  const STREAMS = 4;
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ apps: [app], limits: { maxBodyBytes: LIMIT, maxConcurrentStreams: STREAMS, ...TIMEOUTS } });
  });
  afterAll(() => h.close());

  it("JSON: limit−1 and limit bytes are read, limit+1 is REQUEST_TOO_LARGE", async () => {
    for (const size of [LIMIT - 1, LIMIT, LIMIT + 1]) {
      const shell = JSON.stringify({ userId: "" });
      const body = JSON.stringify({ userId: "a".repeat(size - shell.length) });
      expect(Buffer.byteLength(body)).toBe(size);
      const res = await rpc(h.httpUrl, "GetUser", body);
      expect(reasonOf(res), `${size} bytes`).toBe(size > LIMIT ? "REQUEST_TOO_LARGE" : "TOKEN_MISSING");
    }
  });

  // Connect binary counts the message; gRPC counts the message and its 5-byte envelope prefix.
  const binaryCases: [string, () => Transport, number][] = [
    ["Connect binary on HTTP/1.1", () => createConnectTransport({ baseUrl: h.httpUrl, httpVersion: "1.1", useBinaryFormat: true }), 0],
    ["gRPC on h2c", () => createGrpcTransport({ baseUrl: h.grpcUrl }), 5],
  ];
  it.each(binaryCases)("%s: limit−1 and limit bytes are read, limit+1 is REQUEST_TOO_LARGE", async (_name, transport, envelope) => {
    const client = createClient(IdentityService, transport());
    for (const size of [LIMIT - 1, LIMIT, LIMIT + 1]) {
      // Field tag (1 byte) + length (2 bytes for 128..16383) + the id.
      const userId = "a".repeat(size - envelope - 3);
      expect(toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { userId })).length + envelope).toBe(size);
      const err = ConnectError.from(await client.getUser({ userId }).catch((e: unknown) => e));
      expect(err.findDetails(ErrorInfoSchema)[0]?.reason, `${size} bytes`).toBe(size > LIMIT ? "REQUEST_TOO_LARGE" : "TOKEN_MISSING");
    }
  });

  it("compressed: limit−1 and limit bytes after decompression are read, limit+1 is REQUEST_TOO_LARGE", async () => {
    const [json, grpc] = [connectPost("json", "gzip"), grpcH2c("proto")];
    for (const size of [LIMIT - 1, LIMIT, LIMIT + 1]) {
      const expected = size > LIMIT ? "REQUEST_TOO_LARGE" : "TOKEN_MISSING";
      const shell = JSON.stringify({ userId: "" });
      expect((await json.send(h, "GetUser", json.pack(Buffer.from(JSON.stringify({ userId: "a".repeat(size - shell.length) }))))).reason, `JSON, ${size} bytes`).toBe(expected);
      // The envelope's 5-byte prefix counts, as it does uncompressed.
      const binary = toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { userId: "a".repeat(size - 5 - 3) }));
      expect((await grpc.send(h, "GetUser", grpc.pack(binary))).reason, `gRPC, ${size} bytes`).toBe(expected);
    }
  });

  it("HTTP/1.1: a client trickling its headers is cut off by headersTimeoutMs", async () => {
    const { closedAfterMs, received } = await trickle(h.httpUrl, `POST /${SERVICE}/GetUser HTTP/1.1\r\nHost: x\r\nX-Slow: ${"a".repeat(200)}`);
    expect(closedAfterMs).toBeGreaterThanOrEqual(TIMEOUTS.headersTimeoutMs - 50);
    expect(closedAfterMs).toBeLessThan(TIMEOUTS.headersTimeoutMs + 2500);
    expect(received).toMatch(/^HTTP\/1\.1 408|^$/);
  });

  it("HTTP/1.1: a client trickling its body is cut off by requestTimeoutMs", async () => {
    const head = `POST /${SERVICE}/GetUser HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n`;
    const { closedAfterMs } = await trickle(h.httpUrl, `{"userId":"${"a".repeat(480)}"}`, head);
    expect(closedAfterMs).toBeGreaterThanOrEqual(TIMEOUTS.requestTimeoutMs - 50);
    expect(closedAfterMs).toBeLessThan(TIMEOUTS.requestTimeoutMs + 2500);
  });

  it("HTTP/1.1: an idle keep-alive connection is closed after keepAliveTimeoutMs", async () => {
    const { closedAfterMs, received } = await trickle(h.httpUrl, "", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(received).toMatch(/^HTTP\/1\.1 200/);
    expect(closedAfterMs).toBeGreaterThanOrEqual(TIMEOUTS.keepAliveTimeoutMs - 50);
    expect(closedAfterMs).toBeLessThan(TIMEOUTS.keepAliveTimeoutMs + 2500);
  });

  it("h2c: a client trickling its preface, or opening no stream, is cut off by headersTimeoutMs", async () => {
    const trickled = await trickle(h.grpcUrl, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    expect(trickled.closedAfterMs).toBeLessThan(TIMEOUTS.headersTimeoutMs + 2500);
    // A whole preface and an empty SETTINGS frame, then nothing.
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]).toString("latin1");
    const silent = await trickle(h.grpcUrl, "", `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n${settings}`);
    expect(silent.closedAfterMs).toBeGreaterThanOrEqual(TIMEOUTS.headersTimeoutMs - 50);
    expect(silent.closedAfterMs).toBeLessThan(TIMEOUTS.headersTimeoutMs + 2500);
  });

  it("h2c: a stream trickling its body is reset after requestTimeoutMs, and the session serves on", async () => {
    const session = http2.connect(h.grpcUrl);
    session.on("error", () => undefined);
    try {
      const stream = session.request({ ":method": "POST", ":path": `/${SERVICE}/GetUser`, "content-type": "application/json" });
      stream.on("error", () => undefined);
      stream.resume();
      const start = Date.now();
      const timer = setInterval(() => stream.writable && stream.write("a"), 100);
      await Promise.race([new Promise((resolve) => stream.once("close", resolve)), new Promise((resolve) => setTimeout(resolve, TIMEOUTS.requestTimeoutMs + 3000))]);
      clearInterval(timer);
      const closedAfterMs = Date.now() - start;
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(closedAfterMs).toBeGreaterThanOrEqual(TIMEOUTS.requestTimeoutMs - 50);
      expect(closedAfterMs).toBeLessThan(TIMEOUTS.requestTimeoutMs + 1000);
      const status = await new Promise<number>((resolve, reject) => {
        const next = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/json" });
        next.on("response", (headers) => resolve(Number(headers[":status"])));
        next.on("error", reject);
        next.resume();
        next.end("{}");
      });
      expect(status).toBe(200);
      expectCleanLogs(h, []);
    } finally {
      session.close();
    }
  });

  it("h2c: advertises maxConcurrentStreams, ends a connection that opens more, and a client that keeps to it is served", async () => {
    const { settings, goaway } = await openStreams(h.grpcUrl, `/${SERVICE}/GetUser`, STREAMS + 3);
    expect(settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(STREAMS);
    // Client streams have odd ids 1, 3, 5, ...: none past the limit was processed.
    expect(goaway?.lastStreamId).toBe(2 * STREAMS - 1);
    // A client queues its calls beyond the limit: all of them are answered.
    const client = createClient(IdentityService, createGrpcTransport({ baseUrl: h.grpcUrl }));
    // Once it knows the limit (its first call brings the server's SETTINGS).
    await client.getUser({}).catch(() => undefined);
    const reasons = await Promise.all(Array.from({ length: 3 * STREAMS }, () => client.getUser({}).catch((e: unknown) => ConnectError.from(e).findDetails(ErrorInfoSchema)[0]?.reason ?? String(e))));
    expect(new Set(reasons)).toEqual(new Set(["TOKEN_MISSING"]));
  });

  it("h2c: a session idle after its calls is closed after keepAliveTimeoutMs", async () => {
    const session = http2.connect(h.grpcUrl);
    const closed = new Promise<number>((resolve) => session.once("close", () => resolve(Date.now())));
    session.on("error", () => undefined);
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/json" });
      stream.on("response", (headers) => resolve(Number(headers[":status"])));
      stream.on("error", reject);
      stream.resume();
      stream.end("{}");
    });
    expect(status).toBe(200);
    const idleFrom = Date.now();
    const closedAfterMs = (await closed) - idleFrom;
    expect(closedAfterMs).toBeGreaterThanOrEqual(TIMEOUTS.keepAliveTimeoutMs - 100);
    expect(closedAfterMs).toBeLessThan(TIMEOUTS.keepAliveTimeoutMs + 2500);
  });
}, 30_000);

/**
 * A raw TCP client that writes `head` at once, then `slow` a byte every 100 ms, and reports when the
 * server closed the connection (measured from the end of `head`) and what it answered.
 */
async function trickle(base: string, slow: string, head = ""): Promise<{ closedAfterMs: number; received: string }> {
  const { hostname, port } = new URL(base);
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  socket.on("error", () => undefined);
  socket.write(head, "latin1");
  const start = Date.now();
  let i = 0;
  const timer = setInterval(() => {
    if (i < slow.length && socket.writable) socket.write(slow[i++]!, "latin1");
  }, 100);
  const limit = setTimeout(() => socket.destroy(), 15_000);
  await new Promise<void>((resolve) => socket.once("close", () => resolve()));
  clearInterval(timer);
  clearTimeout(limit);
  return { closedAfterMs: Date.now() - start, received };
}

const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;

/**
 * A raw HTTP/2 client that opens `count` streams at once (HEADERS without END_STREAM, as a Node
 * client never would past the server's limit) and reports the server's SETTINGS and its GOAWAY
 * (within 500 ms), if any.
 */
async function openStreams(base: string, path: string, count: number): Promise<{ settings: Map<number, number>; goaway?: { lastStreamId: number; code: number } }> {
  const { hostname, port } = new URL(base);
  const socket = net.connect(Number(port), hostname);
  socket.on("error", () => undefined);
  const frameOf = (type: number, flags: number, streamId: number, payload: Buffer) => {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head.writeUInt8(type, 3);
    head.writeUInt8(flags, 4);
    head.writeUInt32BE(streamId, 5);
    return Buffer.concat([head, payload]);
  };
  const literal = (value: string) => Buffer.concat([Buffer.from([value.length]), Buffer.from(value)]);
  // HPACK: :method POST and :scheme http from the static table, :path and :authority literal, content-type a new literal.
  const block = Buffer.concat([Buffer.from([0x83, 0x86, 0x04]), literal(path), Buffer.from([0x01]), literal("x"), Buffer.from([0x00]), literal("content-type"), literal("application/json")]);
  const settings = new Map<number, number>();
  let goaway: { lastStreamId: number; code: number } | undefined;
  let buffered = Buffer.alloc(0);
  let opened = false;
  const done = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
      const length = buffered.readUIntBE(0, 3);
      const [type, flags] = [buffered[3]!, buffered[4]!];
      const payload = buffered.subarray(9, 9 + length);
      buffered = buffered.subarray(9 + length);
      if (type === 0x4 && !(flags & 0x1)) {
        for (let at = 0; at + 6 <= payload.length; at += 6) settings.set(payload.readUInt16BE(at), payload.readUInt32BE(at + 2));
        socket.write(frameOf(0x4, 0x1, 0, Buffer.alloc(0)));
        if (!opened) {
          opened = true;
          for (let i = 0; i < count; i++) socket.write(frameOf(0x1, 0x4, 2 * i + 1, block));
          setTimeout(() => socket.destroy(), 500);
        }
      }
      if (type === 0x7) goaway = { lastStreamId: payload.readUInt32BE(0) & 0x7fffffff, code: payload.readUInt32BE(4) };
    }
  });
  socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frameOf(0x4, 0, 0, Buffer.alloc(0))]));
  await done;
  return { settings, ...(goaway ? { goaway } : {}) };
}
