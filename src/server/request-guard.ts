import { fromBinary, fromJson, type BinaryReadOptions, type DescMessage, type JsonReadOptions, type JsonValue, type Message } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { Compression, UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { Readable } from "node:stream";
import { apiError } from "../service/errors.js";

// Connect reads and decodes the body before any interceptor runs, so its own errors for an
// oversized or undecodable body carry no ErrorInfo. This guard runs first: it reads each message
// as Connect would (from a GET's query, a compressed body, compressed envelopes), checks it, and
// hands Connect the checked message uncompressed, so the body limit holds after decompression.
// Its refusals travel through the body stream Connect reads, so every protocol serializes them.

export interface GuardOptions {
  maxBodyBytes: number;
  /** The compressions the router accepts. */
  compressions: Compression[];
  jsonOptions: Partial<JsonReadOptions>;
}

/** Replaces the router's handlers with guarded ones (call after registering services). */
export function guardRouter(router: ConnectRouter, options: GuardOptions): void {
  router.handlers.splice(0, router.handlers.length, ...router.handlers.map((h) => guardHandler(h, options)));
}

function guardHandler(handler: UniversalHandler, options: GuardOptions): UniversalHandler {
  const { maxBodyBytes, compressions } = options;
  const schema = handler.method.input;
  const checks = { json: (bytes: Uint8Array) => checkJsonBody(bytes, schema, options.jsonOptions), proto: (bytes: Uint8Array) => checkBinary(bytes, schema) };
  const answersGet = handler.method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
  const guarded = (req: UniversalServerRequest) => {
    if (req.method === "GET") return handler((answersGet && fromQuery(req, options, checks)) || req);
    const body = req.body;
    if (!isByteStream(body)) return handler(req);
    const framing = framingOf(req.header.get("content-type") ?? "");
    const compression = framing ? compressionNamed(req.header.get(framing.encodingHeader), compressions) : null;
    // An encoding Connect does not speak: Connect refuses it before reading the body.
    if (compression === undefined) return handler(req);
    // Connect sizes a buffer from the declared length before reading (never let it for one over
    // the limit), and a decompressed body has another length: then the length is the guard's.
    // Otherwise the request's headers go on as they are (no copy on the common path).
    const declared = Number(req.header.get("content-length") ?? 0);
    let header = req.header;
    if (compression || declared > maxBodyBytes) {
      header = new Headers(req.header);
      header.delete("content-length");
    }
    let accept: Accept = (bytes) => bytes;
    if (framing) {
      if (compression) handOver(header, framing, compression.name);
      const check = framing.json ? checks.json : checks.proto;
      accept = framing.enveloped
        ? (bytes) => unwrapEnvelopes(bytes, maxBodyBytes, compression, check)
        : async (bytes) => {
            const message = compression ? await decompress(compression, bytes, maxBodyBytes, maxBodyBytes) : bytes;
            check(message);
            return message;
          };
    }
    return handler({ ...req, header, body: readGuarded(body, declared, maxBodyBytes, accept) });
  };
  return Object.assign(guarded, handler);
}

/** Turns the body read into the body Connect gets, checked, or throws the refusal. */
type Accept = (bytes: Uint8Array) => Uint8Array | Promise<Uint8Array>;
type BodyCheck = (bytes: Uint8Array) => void;

interface Framing {
  /** gRPC, gRPC-Web and Connect streaming frame each message as 1 flag byte + 4 bytes of length + the message. */
  enveloped: boolean;
  json: boolean;
  /** The header naming the request's compression, and the one naming those the client takes back. */
  encodingHeader: string;
  acceptHeader: string;
}

const UNARY_HEADERS = { encodingHeader: "content-encoding", acceptHeader: "accept-encoding" };

/** How Connect reads a POST body of this content type; undefined for types it does not speak (it answers 415). */
function framingOf(contentType: string): Framing | undefined {
  const unary = /^application\/(json|proto)\b/i.exec(contentType);
  if (unary) return { enveloped: false, json: unary[1]!.toLowerCase() === "json", ...UNARY_HEADERS };
  const stream = /^application\/connect\+(json|proto)\b/i.exec(contentType);
  if (stream) return { enveloped: true, json: stream[1]!.toLowerCase() === "json", encodingHeader: "connect-content-encoding", acceptHeader: "connect-accept-encoding" };
  const grpc = /^application\/grpc(?:-web)?(?:\+(json|proto))?(?:;|$)/i.exec(contentType);
  if (grpc) return { enveloped: true, json: grpc[1]?.toLowerCase() === "json", encodingHeader: "grpc-encoding", acceptHeader: "grpc-accept-encoding" };
  return undefined;
}

/** The compression a request names: null for none, undefined for one Connect does not accept. */
function compressionNamed(name: string | null, compressions: Compression[]): Compression | null | undefined {
  if (name === null || name === "identity") return null;
  return compressions.find((c) => c.name === name);
}

/** Connect gets the message uncompressed, and answers in the request's compression when the client names none it takes. */
function handOver(header: Headers, framing: Pick<Framing, "encodingHeader" | "acceptHeader">, name: string): void {
  header.delete(framing.encodingHeader);
  if (!header.get(framing.acceptHeader)) header.set(framing.acceptHeader, name);
}

/**
 * A Connect GET carries its message in the query (`encoding`, `base64`, `compression`). Decoded
 * here as Connect would, it goes on as the POST Connect answers alike, so it meets the same checks.
 * Undefined when Connect refuses the query itself (415 or an unknown compression).
 */
function fromQuery(req: UniversalServerRequest, options: GuardOptions, checks: Record<"json" | "proto", BodyCheck>): UniversalServerRequest | undefined {
  const query = new URL(req.url).searchParams;
  const encoding = query.get("encoding");
  if (encoding !== "json" && encoding !== "proto") return undefined;
  const compression = compressionNamed(query.get("compression"), options.compressions);
  if (compression === undefined) return undefined;
  const header = new Headers(req.header);
  for (const name of ["content-length", "content-encoding"]) header.delete(name);
  header.set("content-type", `application/${encoding}`);
  if (compression) handOver(header, UNARY_HEADERS, compression.name);
  return { ...req, method: "POST", header, body: queryMessage(query, compression, options.maxBodyBytes, checks[encoding]) };
}

async function* queryMessage(query: URLSearchParams, compression: Compression | null, maxBodyBytes: number, check: BodyCheck): AsyncGenerator<Uint8Array> {
  const text = query.get("message") ?? "";
  let message: Uint8Array;
  try {
    message = query.get("base64") === "1" ? base64Decode(text) : new TextEncoder().encode(text);
  } catch {
    throw apiError("REQUEST_INVALID", "the message parameter is not base64");
  }
  if (compression) message = await decompress(compression, message, maxBodyBytes, maxBodyBytes);
  else if (message.byteLength > maxBodyBytes) throw tooLarge(maxBodyBytes);
  check(message);
  yield message;
}

// How much of an oversized body is still read and dropped before answering, so that the request
// ends cleanly and the answer (with gRPC's trailers) arrives whole. Beyond it the stream is cut.
const DRAIN_BYTES = 1024 * 1024;

/** Reads the whole (bounded) unary body, accepts it, then hands it to Connect in one piece. */
async function* readGuarded(body: AsyncIterable<Uint8Array>, declared: number, maxBodyBytes: number, accept: Accept): AsyncGenerator<Uint8Array> {
  yield await accept(await readBoundedBody(body, declared, maxBodyBytes));
}

/** The whole body, or the refusal of one over the limit (its length declared or read). */
export async function readBoundedBody(body: AsyncIterable<Uint8Array>, declared: number, maxBodyBytes: number): Promise<Uint8Array> {
  if (declared > maxBodyBytes + DRAIN_BYTES) throw tooLarge(maxBodyBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Past the cap the rest is only dropped: the request ends cleanly and the answer arrives whole.
  const take = (chunk: Uint8Array) => {
    size += chunk.byteLength;
    if (size <= maxBodyBytes) chunks.push(chunk);
    return size <= maxBodyBytes + DRAIN_BYTES;
  };
  await (body instanceof Readable ? readByEvents(body, take) : readByIterator(body, take));
  if (size > maxBodyBytes) throw tooLarge(maxBodyBytes);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

// A Node request is read by its events: its async iterator, with the end-of-stream tracking it
// sets up, cost a small body more than all the rest of its reading (profiled). Past the cap the
// stream flows on with nothing listening, so Node drops the rest.
function readByEvents(stream: Readable, take: (chunk: Uint8Array) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error?: unknown) => {
      stream.off("data", onData).off("end", settle).off("error", settle).off("close", onClose);
      if (error) reject(error);
      else resolve();
    };
    const onData = (chunk: Uint8Array) => {
      if (take(chunk)) return;
      settle();
      stream.resume();
    };
    const onClose = () => settle(new ConnectError("the client went away before the request was read", Code.Canceled));
    stream.on("data", onData).once("end", settle).once("error", settle).once("close", onClose);
  });
}

async function readByIterator(body: AsyncIterable<Uint8Array>, take: (chunk: Uint8Array) => boolean): Promise<void> {
  // Not for-await: leaving that loop early would destroy the request, and with it an HTTP/1.1
  // socket before the answer is out. Past the cap the rest is dropped in the background (Node
  // dumps an unread body itself, but not one the app has begun to read), bounded by the server's
  // request timeout.
  const reader = body[Symbol.asyncIterator]();
  for (let next = await reader.next(); !next.done; next = await reader.next()) {
    if (!take(next.value)) {
      void discardRest(reader);
      return;
    }
  }
}

async function discardRest(reader: AsyncIterator<Uint8Array>): Promise<void> {
  try {
    while (!(await reader.next()).done);
  } catch {
    // The client went away or the stream was reset: nothing left to drop.
  }
}

const COMPRESSED = 0b1;

/**
 * Checks each whole envelope's message (decompressed) and frames it again uncompressed; the
 * messages together, with their 5-byte prefixes, stay within the limit. A truncated tail is left
 * to Connect to report. A body with nothing compressed goes on as it came.
 */
async function unwrapEnvelopes(bytes: Uint8Array, maxBodyBytes: number, compression: Compression | null, check: BodyCheck): Promise<Uint8Array> {
  const out: Uint8Array[] = [];
  let size = 0;
  let at = 0;
  let decompressed = false;
  for (; at + 5 <= bytes.byteLength; ) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, 5);
    const flags = view.getUint8(0);
    const length = view.getUint32(1);
    // Connect sizes a buffer from the declared length; refuse a claim over the limit.
    if (length > maxBodyBytes) throw tooLarge(maxBodyBytes);
    if (at + 5 + length > bytes.byteLength) break;
    // A client's envelope carries no flag but "compressed" (end-stream and trailers are the server's).
    if (flags & ~COMPRESSED) throw apiError("REQUEST_INVALID", "a request message carries flags no client sends");
    let message = bytes.subarray(at + 5, at + 5 + length);
    if (flags & COMPRESSED) {
      if (!compression) throw apiError("REQUEST_INVALID", "a message is marked compressed, but the request names no compression");
      message = await decompress(compression, message, maxBodyBytes - size - 5, maxBodyBytes);
      decompressed = true;
    }
    check(message);
    const prefix = new Uint8Array(5);
    new DataView(prefix.buffer).setUint32(1, message.byteLength);
    out.push(prefix, message);
    size += 5 + message.byteLength;
    at += 5 + length;
  }
  if (!decompressed) return bytes;
  out.push(bytes.subarray(at));
  return Buffer.concat(out);
}

/** At most `room` bytes decompressed (the rest of the body limit). */
async function decompress(compression: Compression, bytes: Uint8Array, room: number, maxBodyBytes: number): Promise<Uint8Array> {
  if (room < 0) throw tooLarge(maxBodyBytes);
  let message: Uint8Array;
  try {
    message = await compression.decompress(bytes, Math.max(1, room));
  } catch (e) {
    if (ConnectError.from(e).code === Code.ResourceExhausted) throw tooLarge(maxBodyBytes);
    throw apiError("REQUEST_INVALID", `the request body does not decompress as ${compression.name}`);
  }
  if (message.byteLength > room) throw tooLarge(maxBodyBytes);
  return message;
}

/** The checked message, decoded, or the refusal with its reason (as the guard refuses it for Connect). */
export function decodeUnaryBody(bytes: Uint8Array, schema: DescMessage, binary: boolean, jsonOptions: Partial<JsonReadOptions>, binaryOptions?: Partial<BinaryReadOptions>): Message {
  return binary ? checkBinary(bytes, schema, binaryOptions) : checkJsonBody(bytes, schema, jsonOptions);
}

// Connect answers a body that does not decode as binary with INTERNAL (a 500); it is the caller's fault.
function checkBinary(bytes: Uint8Array, schema: DescMessage, binaryOptions?: Partial<BinaryReadOptions>): Message {
  try {
    return fromBinary(schema, bytes, binaryOptions);
  } catch {
    throw apiError("REQUEST_INVALID", `the request body is not a valid binary ${schema.typeName}`);
  }
}

// Deeper than any request message (attributes allow 8 levels inside 3); far below the stack's reach.
const MAX_JSON_DEPTH = 32;
// JSON.parse makes these own keys; copied into a plain object they would replace its prototype.
const PROTOTYPE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** The first thing in the parsed body no request may hold, as an error; undefined when there is none. Iterative: the body may nest 100,000 deep. */
function refuseShape(json: JsonValue, topField: (key: string) => string) {
  const stack: { value: JsonValue; depth: number; field: string | undefined }[] = [{ value: json, depth: 0, field: undefined }];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { value, depth, field } = item;
    if (typeof value === "number" && !Number.isFinite(value)) {
      return apiError("FIELD_INVALID", `${field}: a number out of range`, { field: field ?? "" });
    }
    if (value === null || typeof value !== "object") continue;
    if (depth >= MAX_JSON_DEPTH) return apiError("REQUEST_INVALID", `the request body is nested deeper than ${MAX_JSON_DEPTH} levels`);
    if (Array.isArray(value)) {
      for (const child of value) stack.push({ value: child, depth: depth + 1, field });
      continue;
    }
    for (const key of Object.keys(value)) {
      const name = field ?? topField(key);
      if (PROTOTYPE_KEYS.has(key)) return apiError("FIELD_INVALID", `${name}: the key "${key}" is not allowed`, { field: name });
      stack.push({ value: value[key] ?? null, depth: depth + 1, field: name });
    }
  }
  return undefined;
}

function checkJsonBody(bytes: Uint8Array, schema: DescMessage, jsonOptions: Partial<JsonReadOptions>): Message {
  let json: JsonValue;
  try {
    json = JSON.parse(Buffer.from(bytes).toString("utf8")) as JsonValue;
  } catch {
    throw apiError("REQUEST_INVALID", "the request body is not valid JSON");
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw apiError("REQUEST_INVALID", "the request body must be a JSON object");
  }
  const protoName = (key: string) => schema.fields.find((f) => f.jsonName === key || f.name === key)?.name ?? key;
  const refused = refuseShape(json, protoName);
  if (refused) throw refused;
  try {
    return fromJson(schema, json, jsonOptions);
  } catch {
    // Name the first top-level field that does not decode on its own, by its proto name as elsewhere.
    const key = Object.keys(json).find((k) => !decodes(schema, { [k]: json[k] ?? null }, jsonOptions));
    const field = key === undefined ? undefined : protoName(key);
    const error = field
      ? apiError("FIELD_INVALID", `${field}: wrong type or value for ${schema.typeName}`, { field })
      : apiError("REQUEST_INVALID", `the request body is not a valid ${schema.typeName}`);
    throw error;
  }
}

function decodes(schema: DescMessage, json: JsonValue, jsonOptions: Partial<JsonReadOptions>): boolean {
  try {
    fromJson(schema, json, jsonOptions);
    return true;
  } catch {
    return false;
  }
}

function tooLarge(maxBodyBytes: number) {
  return apiError("REQUEST_TOO_LARGE", `the request body is larger than ${maxBodyBytes} bytes`, { limit: String(maxBodyBytes) });
}

function isByteStream(body: UniversalServerRequest["body"]): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}
