import { fromBinary, fromJson, type DescMessage, type JsonReadOptions, type JsonValue } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { apiError } from "../service/errors.js";

// Connect reads and decodes the body before any interceptor runs, so its own errors for an
// oversized or undecodable body carry no ErrorInfo. This guard runs first and answers those
// cases itself, through the body stream Connect reads, so every protocol serializes them.

/** Replaces the router's handlers with guarded ones (call after registering services). */
export function guardRouter(router: ConnectRouter, maxBodyBytes: number, jsonOptions: Partial<JsonReadOptions>): void {
  router.handlers.splice(0, router.handlers.length, ...router.handlers.map((h) => guardHandler(h, maxBodyBytes, jsonOptions)));
}

function guardHandler(handler: UniversalHandler, maxBodyBytes: number, jsonOptions: Partial<JsonReadOptions>): UniversalHandler {
  const guarded = (req: UniversalServerRequest) => {
    const body = req.body;
    if (!isByteStream(body)) return handler(req);
    const declared = Number(req.header.get("content-length") ?? 0);
    let header = req.header;
    if (declared > maxBodyBytes) {
      // Connect would size a buffer from the declared length before reading; never let it.
      header = new Headers(req.header);
      header.delete("content-length");
    }
    const contentType = req.header.get("content-type") ?? "";
    const schema = handler.method.input;
    const check: BodyCheck = /^application\/json\b/i.test(contentType)
      ? (bytes) => checkJsonBody(bytes, schema, jsonOptions)
      : /^application\/proto\b/i.test(contentType)
        ? (bytes) => checkBinary(bytes, schema)
        : ENVELOPED.test(contentType)
          ? (bytes) => checkEnvelope(bytes, maxBodyBytes, /^application\/grpc(-web)?\+json\b/i.test(contentType) ? (m) => checkJsonBody(m, schema, jsonOptions) : (m) => checkBinary(m, schema))
          : () => undefined;
    return handler({ ...req, header, body: readGuarded(body, declared, maxBodyBytes, check) });
  };
  return Object.assign(guarded, handler);
}

type BodyCheck = (bytes: Uint8Array) => void;

// gRPC and gRPC-Web frame each message as 1 flag byte + 4 bytes of length + the message.
const ENVELOPED = /^application\/grpc/i;

// How much of an oversized body is still read and dropped before answering, so that the request
// ends cleanly and the answer (with gRPC's trailers) arrives whole. Beyond it the stream is cut.
const DRAIN_BYTES = 1024 * 1024;

/** Reads the whole (bounded) unary body, checks it, then hands it to Connect in one piece. */
async function* readGuarded(body: AsyncIterable<Uint8Array>, declared: number, maxBodyBytes: number, check: BodyCheck): AsyncGenerator<Uint8Array> {
  if (declared > maxBodyBytes + DRAIN_BYTES) throw tooLarge(maxBodyBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Not for-await: leaving that loop early would destroy the request, and with it an HTTP/1.1
  // socket before the answer is out. Past the cap the rest is dropped in the background (Node
  // dumps an unread body itself, but not one the app has begun to read), bounded by the server's
  // request timeout.
  const reader = body[Symbol.asyncIterator]();
  for (let next = await reader.next(); !next.done; next = await reader.next()) {
    size += next.value.byteLength;
    if (size > maxBodyBytes + DRAIN_BYTES) {
      void discardRest(reader);
      throw tooLarge(maxBodyBytes);
    }
    if (size <= maxBodyBytes) chunks.push(next.value);
  }
  if (size > maxBodyBytes) throw tooLarge(maxBodyBytes);
  const bytes = Buffer.concat(chunks);
  check(bytes);
  yield bytes;
}

async function discardRest(reader: AsyncIterator<Uint8Array>): Promise<void> {
  try {
    while (!(await reader.next()).done);
  } catch {
    // The client went away or the stream was reset: nothing left to drop.
  }
}

/**
 * Connect sizes a buffer from the first envelope's declared length; refuse a claim over the limit.
 * An uncompressed message is checked as a bare body would be (a compressed one is Connect's to judge).
 */
function checkEnvelope(bytes: Uint8Array, maxBodyBytes: number, checkMessage: BodyCheck): void {
  if (bytes.byteLength < 5) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 5);
  const length = view.getUint32(1);
  if (length > maxBodyBytes) throw tooLarge(maxBodyBytes);
  if ((view.getUint8(0) & 1) === 0 && bytes.byteLength >= 5 + length) checkMessage(bytes.subarray(5, 5 + length));
}

// Connect answers a body that does not decode as binary with INTERNAL (a 500); it is the caller's fault.
function checkBinary(bytes: Uint8Array, schema: DescMessage): void {
  try {
    fromBinary(schema, bytes);
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

function checkJsonBody(bytes: Uint8Array, schema: DescMessage, jsonOptions: Partial<JsonReadOptions>): void {
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
    fromJson(schema, json, jsonOptions);
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
