/**
 * gRPC server reflection (grpc.reflection.v1 and its predecessor v1alpha, which older grpcurl
 * versions ask), so that `grpcurl`, `buf curl` and Postman can list and call the server's methods
 * without a copy of proto/. Answers from the descriptors Buf generated, embedded in the stubs:
 * each file comes with the files it imports.
 */
import { createRegistry, toBinary, type DescFile, type MessageInitShape, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import type { ServiceImpl } from "@connectrpc/connect";
import * as v1 from "@distributed-ps/common/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "@distributed-ps/common/gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC's NOT_FOUND, for the error_code of an ErrorResponse. */
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/** The request and response shapes both versions share (v1 was v1alpha renamed). */
type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type Answer = MessageInitShape<typeof v1.ServerReflectionResponseSchema>["messageResponse"];

/** The types of the served files and the files themselves, by name. */
interface Schema {
  readonly registry: Registry;
  readonly files: ReadonlyMap<string, DescFile>;
}

/** Answers one request from `schema`, listing `services`. */
function answer(schema: Schema, services: readonly string[], req: Request): Answer {
  const notFound = (what: string): Answer => ({ case: "errorResponse", value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } });
  const files = (file: DescFile): Answer => ({ case: "fileDescriptorResponse", value: { fileDescriptorProto: withImports(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) } });
  const m = req.messageRequest;
  switch (m.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } };
    case "fileByFilename": {
      const file = schema.files.get(m.value);
      return file === undefined ? notFound(`file "${m.value}"`) : files(file);
    }
    case "fileContainingSymbol": {
      const file = fileOfSymbol(schema.registry, m.value);
      return file === undefined ? notFound(`symbol "${m.value}"`) : files(file);
    }
    case "fileContainingExtension":
    case "allExtensionNumbersOfType":
      // The services' messages declare no extensions.
      return { case: "errorResponse", value: { errorCode: NOT_FOUND, errorMessage: "this server's messages have no extensions" } };
    default:
      return { case: "errorResponse", value: { errorCode: UNIMPLEMENTED, errorMessage: "unknown reflection request" } };
  }
}

/** The file declaring a message, enum, service or method (`package.Service.Method`). */
function fileOfSymbol(registry: Registry, symbol: string): DescFile | undefined {
  const type = registry.get(symbol);
  if (type !== undefined) return type.kind === "extension" ? undefined : type.file;
  const dot = symbol.lastIndexOf(".");
  const service = dot > 0 ? registry.getService(symbol.slice(0, dot)) : undefined;
  return service?.methods.some((m) => m.name === symbol.slice(dot + 1)) ? service.file : undefined;
}

/** `file` first, then every file it imports, transitively, once each. */
function withImports(file: DescFile): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.set(f.name, f);
    f.dependencies.forEach(visit);
  };
  visit(file);
  return [...seen.values()];
}

export interface Reflection {
  readonly v1: ServiceImpl<typeof v1.ServerReflection>;
  readonly v1alpha: ServiceImpl<typeof v1alpha.ServerReflection>;
}

/** Reflection over `served` (every service the server answers, these two included). */
export function createReflection(served: readonly GenService<never>[]): Reflection {
  const all = [...served, v1.ServerReflection, v1alpha.ServerReflection];
  const files = new Map(all.flatMap((s) => withImports(s.file)).map((f) => [f.proto.name, f]));
  const schema: Schema = { registry: createRegistry(...files.values()), files };
  const names = [...new Set(all.map((s) => s.typeName))];
  async function* info(requests: AsyncIterable<Request>) {
    for await (const req of requests) {
      yield { validHost: req.host, originalRequest: req, messageResponse: answer(schema, names, req) };
    }
  }
  return {
    v1: { serverReflectionInfo: (requests) => info(requests) as AsyncIterable<never> },
    v1alpha: { serverReflectionInfo: (requests) => info(requests) as AsyncIterable<never> },
  };
}

export const reflectionServices = { v1: v1.ServerReflection, v1alpha: v1alpha.ServerReflection };
