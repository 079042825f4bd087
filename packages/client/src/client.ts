import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "./gen/health/v1/health_pb.js";
import { IdentityService } from "./gen/identity/v1/identity_pb.js";
import type { TokenCheck, VerifiedIdentity } from "./identity.js";

export interface IdentityClientOptions {
  /** The service's address: the h2c listener (GRPC_PORT, 9090) for "grpc", the HTTP/1.1 one (PORT, 8080) for "connect". */
  baseUrl: string;
  /**
   * "grpc": gRPC over HTTP/2 (h2c for http://, TLS for https://), for the GRPC_PORT listener.
   * "connect": the Connect protocol over HTTP/1.1 (or HTTP/2 with `httpVersion: "2"`), for the PORT listener.
   */
  transport: "grpc" | "connect";
  /** An internal caller's key, sent as `x-api-key` on every call. */
  apiKey?: string;
  /** "connect" only: "2" speaks Connect to the h2c listener instead. Default "1.1". */
  httpVersion?: "1.1" | "2";
  /** Protobuf binary rather than JSON on the wire. Default: binary for "grpc", JSON for "connect" (readable in a proxy's logs). */
  useBinaryFormat?: boolean;
  /** A deadline for every call that sets none, in ms (also streams: leave unset if you watch revocations). */
  defaultTimeoutMs?: number;
  /** Run after the x-api-key one: tracing, logging, retries. */
  interceptors?: Interceptor[];
}

export type IdentityClient = Client<typeof IdentityService> & {
  /** grpc.health.v1.Health on the same connection. */
  readonly health: Client<typeof Health>;
  /** Whether calls carry an `x-api-key` (CheckLogin then introspects any user's token, unlimited per user). */
  readonly internal: boolean;
};

/** A typed client of identity.v1.IdentityService (and Health) over gRPC or Connect. */
export function createIdentityClient(options: IdentityClientOptions): IdentityClient {
  const apiKey = options.apiKey || undefined;
  const interceptors = [...(apiKey ? [apiKeyInterceptor(apiKey)] : []), ...(options.interceptors ?? [])];
  const common = { baseUrl: options.baseUrl, interceptors, defaultTimeoutMs: options.defaultTimeoutMs };
  let transport: Transport;
  if (options.transport === "grpc") {
    transport = createGrpcTransport({ ...common, useBinaryFormat: options.useBinaryFormat ?? true });
  } else if (options.transport === "connect") {
    transport = createConnectTransport({ ...common, httpVersion: options.httpVersion ?? "1.1", useBinaryFormat: options.useBinaryFormat ?? false });
  } else {
    throw new TypeError(`transport must be "grpc" or "connect", not ${JSON.stringify(options.transport)}`);
  }
  return Object.assign(createClient(IdentityService, transport), { health: createClient(Health, transport), internal: apiKey !== undefined });
}

function apiKeyInterceptor(apiKey: string): Interceptor {
  return (next) => (req) => {
    req.header.set("x-api-key", apiKey);
    return next(req);
  };
}

export interface CheckLoginOptions {
  /** The deadline of each CheckLogin, in ms, so a slow service cannot hold requests forever. Default 5000. */
  timeoutMs?: number;
}

/**
 * A TokenCheck that asks the service (CheckLogin): it also knows about logouts and disabled users,
 * at the cost of a call per request. With an API key the token goes in the request, as an internal
 * caller's introspection; without, as the user's own bearer (counted against the user's limit).
 */
export function createCheckLogin(client: IdentityClient, options: CheckLoginOptions = {}): TokenCheck {
  const timeoutMs = options.timeoutMs ?? 5000;
  return async (accessToken, callOptions) => {
    const res = await client.checkLogin(client.internal ? { accessToken } : {}, { timeoutMs, signal: callOptions?.signal, headers: client.internal ? {} : { authorization: `Bearer ${accessToken}` } });
    const identity: VerifiedIdentity = {
      userId: res.user?.id ?? "",
      sessionId: res.sessionId,
      appId: res.appId,
      expireTime: res.expireTime ? timestampDate(res.expireTime) : new Date(0),
    };
    if (res.user) identity.user = res.user;
    return identity;
  };
}
