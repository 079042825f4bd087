import { fromJson, type DescMessage, type JsonReadOptions, type JsonValue } from "@bufbuild/protobuf";
import { Code, type ConnectRouter } from "@connectrpc/connect";
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
    const isJson = /^application\/json\b/i.test(req.header.get("content-type") ?? "");
    return handler({ ...req, header, body: readGuarded(body, declared, maxBodyBytes, isJson ? handler.method.input : undefined, jsonOptions) });
  };
  return Object.assign(guarded, handler);
}

async function* readGuarded(
  body: AsyncIterable<Uint8Array>,
  declared: number,
  maxBodyBytes: number,
  jsonSchema: DescMessage | undefined,
  jsonOptions: Partial<JsonReadOptions>,
): AsyncGenerator<Uint8Array> {
  if (declared > maxBodyBytes) throw tooLarge(maxBodyBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > maxBodyBytes) throw tooLarge(maxBodyBytes);
    if (jsonSchema) chunks.push(chunk);
    else yield chunk;
  }
  if (!jsonSchema) return;
  const bytes = Buffer.concat(chunks);
  checkJsonBody(bytes, jsonSchema, jsonOptions);
  yield bytes;
}

function checkJsonBody(bytes: Uint8Array, schema: DescMessage, jsonOptions: Partial<JsonReadOptions>): void {
  let json: JsonValue;
  try {
    json = JSON.parse(Buffer.from(bytes).toString("utf8")) as JsonValue;
  } catch {
    throw apiError(Code.InvalidArgument, "REQUEST_INVALID", "the request body is not valid JSON");
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw apiError(Code.InvalidArgument, "REQUEST_INVALID", "the request body must be a JSON object");
  }
  try {
    fromJson(schema, json, jsonOptions);
  } catch {
    // Name the first top-level field that does not decode on its own.
    const field = Object.keys(json).find((key) => !decodes(schema, { [key]: json[key] ?? null }, jsonOptions));
    const error = field
      ? apiError(Code.InvalidArgument, "FIELD_INVALID", `${field}: wrong type or value for ${schema.typeName}`, { field })
      : apiError(Code.InvalidArgument, "REQUEST_INVALID", `the request body is not a valid ${schema.typeName}`);
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
  return apiError(Code.InvalidArgument, "REQUEST_TOO_LARGE", `the request body is larger than ${maxBodyBytes} bytes`, { limit: String(maxBodyBytes) });
}

function isByteStream(body: UniversalServerRequest["body"]): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}
