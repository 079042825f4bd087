// The Connect API as one value: what both listeners serve, what the seed routes invoke, and what
// tests run in memory with createRouterTransport(routes, { router: options }).
import type { JsonReadOptions, JsonWriteOptions } from "@bufbuild/protobuf";
import type { ConnectRouter, ConnectRouterOptions, Interceptor, ServiceImpl } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { sourceInfo as errorDetailsSource } from "../../gen/google/rpc/error_details_source.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { sourceInfo as reflectionSource } from "../../gen/grpc/reflection/v1/reflection_source.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { sourceInfo as reflectionV1alphaSource } from "../../gen/grpc/reflection/v1alpha/reflection_source.js";
import { sourceInfo as healthSource } from "../../gen/health/v1/health_source.js";
import { sourceInfo as identitySource } from "../../gen/identity/v1/identity_source.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { AdminService } from "../../gen/identity/admin/v1/admin_pb.js";
import { sourceInfo as adminSource } from "../../gen/identity/admin/v1/admin_source.js";
import type { RpcSample } from "../metrics/metrics.js";
import { createOutermostInterceptor, type Logger } from "../service/interceptors.js";
import { createHealthService, type Readiness } from "./health.js";
import { asV1alpha, createReflectionService } from "./reflection.js";
import { guardRouter } from "./request-guard.js";

export interface RoutesDeps {
  service: ServiceImpl<typeof IdentityService>;
  /** The operator side, served next to it on both listeners. */
  admin: ServiceImpl<typeof AdminService>;
  ready: Readiness;
  maxBodyBytes: number;
  /** For calls whose context carries no request logger. */
  log: Logger;
  recordRpc?: (sample: RpcSample) => void;
  /** Aborted when shutdown begins: health watches end then. */
  closing: AbortSignal;
  /** Server reflection is a bidi stream, which needs HTTP/2: only the h2c listener asks for it. */
  reflection?: boolean;
}

export interface Routes {
  routes(router: ConnectRouter): void;
  options: ConnectRouterOptions & { interceptors: Interceptor[] };
}

// The request compressions both listeners accept (the request guard decompresses them itself).
const COMPRESSIONS = [compressionGzip, compressionBrotli];

// Always emit scalar fields, so a JSON client sees `"registered": false` rather than nothing.
const JSON_OPTIONS: Partial<JsonReadOptions & JsonWriteOptions> = { alwaysEmitImplicit: true };

export function createRoutes(deps: RoutesDeps): Routes {
  return {
    routes(router) {
      router.service(IdentityService, deps.service);
      router.service(AdminService, deps.admin);
      router.service(Health, createHealthService({ ready: deps.ready, services: [IdentityService.typeName, AdminService.typeName], closing: deps.closing }));
      guardRouter(router, { maxBodyBytes: deps.maxBodyBytes, compressions: COMPRESSIONS, jsonOptions: JSON_OPTIONS });
      // After the guard, which reads a whole request body before passing it on: a bidi stream has no whole body.
      if (deps.reflection) {
        const sources = [identitySource, adminSource, healthSource, errorDetailsSource, reflectionSource, reflectionV1alphaSource];
        const reflection = createReflectionService([IdentityService, AdminService, Health], [file_google_rpc_error_details], sources);
        router.service(ServerReflection, reflection);
        router.service(ServerReflectionV1alpha, asV1alpha(reflection));
      }
    },
    options: {
      interceptors: [createOutermostInterceptor(deps.log, deps.recordRpc)],
      jsonOptions: JSON_OPTIONS,
      acceptCompression: COMPRESSIONS,
      readMaxBytes: deps.maxBodyBytes,
    },
  };
}
