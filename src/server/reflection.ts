// gRPC server reflection (grpc.reflection.v1), so buf curl and grpcurl work without a schema.
// v1alpha too, for the clients that ask it first or only. The descriptors are the generated ones,
// what is served is exactly what the handlers speak, with their comments put back. A bidi stream: HTTP/2 only.
import { clone, create, createRegistry, fromBinary, toBinary, type DescFile, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, SourceCodeInfoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { ServerReflection, ServerReflectionResponseSchema, type ServerReflectionRequest, type ServerReflectionResponse } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { apiError } from "../service/errors.js";

/** A generated `*_source.ts` file's export. */
export interface SourceInfo {
  file: string;
  /** google.protobuf.SourceCodeInfo, binary, base64. */
  sourceCodeInfo: string;
}

/**
 * Reflection over `services` (the reflection service itself included, as grpc-go does) and
 * `extraFiles`: files no service imports that clients still want to resolve, such as the
 * google.rpc error details. `sources` are the comments (gen/**\/*_source.ts) to serve with each file.
 */

export function createReflectionService(services: DescService[], extraFiles: DescFile[] = [], sources: SourceInfo[] = []): ServiceImpl<typeof ServerReflection> {
  const listed = [...services, ServerReflection, ServerReflectionV1alpha];
  const files = new Map<string, DescFile>();
  const collect = (file: DescFile): void => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(collect);
  };
  [...listed.map((s) => s.file), ...extraFiles].forEach(collect);
  const registry = createRegistry(...files.values());
  const comments = new Map(sources.map((s) => [s.file, s.sourceCodeInfo]));
  const encode = (file: DescFile): Uint8Array => {
    const source = comments.get(file.proto.name);
    if (source === undefined) return toBinary(FileDescriptorProtoSchema, file.proto);
    const proto = clone(FileDescriptorProtoSchema, file.proto);
    proto.sourceCodeInfo = fromBinary(SourceCodeInfoSchema, Buffer.from(source, "base64"));
    return toBinary(FileDescriptorProtoSchema, proto);
  };
  const encoded = new Map([...files].map(([name, file]) => [name, encode(file)]));

  /** The file and its transitive imports, leaving out imports this stream has sent already (as grpc-go does). */
  const withDependencies = (file: DescFile, sent: Set<string>): Uint8Array[] => {
    const out: Uint8Array[] = [];
    const queue = [file];
    const seen = new Set<string>();
    for (let next = queue.shift(); next; next = queue.shift()) {
      const name = next.proto.name;
      if (seen.has(name)) continue;
      seen.add(name);
      if (next === file || !sent.has(name)) out.push(encoded.get(name)!);
      sent.add(name);
      queue.push(...next.dependencies);
    }
    return out;
  };

  /** The file declaring a type, service, extension, or a method or field of one. */
  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const found = registry.get(symbol);
    if (found) return found.file;
    const dot = symbol.lastIndexOf(".");
    const parent = dot > 0 ? registry.get(symbol.slice(0, dot)) : undefined;
    const member = symbol.slice(dot + 1);
    if (parent?.kind === "service" && parent.methods.some((m) => m.name === member)) return parent.file;
    if (parent?.kind === "message" && (parent.fields.some((f) => f.name === member) || parent.oneofs.some((o) => o.name === member))) return parent.file;
    return undefined;
  };

  const answer = (req: ServerReflectionRequest, sent: Set<string>): ServerReflectionResponse => {
    const respond = (messageResponse: MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]) =>
      create(ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse });
    const notFound = (what: string) => respond({ case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } });
    const fileResponse = (file: DescFile | undefined, what: string) =>
      file ? respond({ case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file, sent) } }) : notFound(what);

    const { messageRequest: request } = req;
    switch (request.case) {
      case "fileByFilename":
        return fileResponse(files.get(request.value), `file ${request.value}`);
      case "fileContainingSymbol":
        return fileResponse(fileOfSymbol(request.value), `symbol ${request.value}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = request.value;
        const extendee = registry.getMessage(containingType);
        return fileResponse(extendee && registry.getExtensionFor(extendee, extensionNumber)?.file, `extension ${containingType}(${extensionNumber})`);
      }
      case "allExtensionNumbersOfType": {
        const baseTypeName = request.value;
        if (!registry.getMessage(baseTypeName)) return notFound(`type ${baseTypeName}`);
        const extensionNumber = [...registry].flatMap((d) => (d.kind === "extension" && d.extendee.typeName === baseTypeName ? [d.number] : []));
        return respond({ case: "allExtensionNumbersResponse", value: { baseTypeName, extensionNumber } });
      }
      case "listServices":
        return respond({ case: "listServicesResponse", value: { service: listed.map((s) => ({ name: s.typeName })) } });
      default:
        throw apiError("REQUEST_INVALID", "the reflection request names no message_request");
    }
  };

  return {
    async *serverReflectionInfo(requests) {
      // Which files this stream has sent, so an import is sent once per stream.
      const sent = new Set<string>();
      for await (const req of requests) yield answer(req, sent);
    },
  };
}

/** The same implementation under v1alpha's name: its messages are v1's, field for field, so the wire is the same. */
export const asV1alpha = (impl: ServiceImpl<typeof ServerReflection>): ServiceImpl<typeof ServerReflectionV1alpha> => impl as unknown as ServiceImpl<typeof ServerReflectionV1alpha>;
