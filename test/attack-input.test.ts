// Issue 9, item 3: hostile input shapes against the real listeners (JSON on HTTP/1.1, gRPC on h2c).
import http2 from "node:http2";
import net from "node:net";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { GetUserRequestSchema, IdentityService } from "../gen/identity/v1/identity_pb.js";
import { DEMO_APPID, login, reasonOf, rpc, SERVICE, startHarness, type Harness, type RpcResult } from "./support/harness.js";
import { STACK_FRAME } from "./support/attack.js";

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
    const objects = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
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

/** One uncompressed gRPC message: flag 0, 4 bytes of length, the message. */
function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function lowerFirst(s: string) {
  return s[0]!.toLowerCase() + s.slice(1);
}

describe("body limits and slow clients (small limits)", () => {
  const LIMIT = 1024;
  const TIMEOUTS = { headersTimeoutMs: 500, requestTimeoutMs: 1000, keepAliveTimeoutMs: 1000 };
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ apps: [app], limits: { maxBodyBytes: LIMIT, ...TIMEOUTS } });
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
