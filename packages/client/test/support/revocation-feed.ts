// A real Connect server (h2c on port 0) whose WatchRevocations the test drives message by message,
// and whose CheckLogin forwards to the real service, so a verifier's fallback gets real answers.
import { createHash } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { IdentityService, RevocationReason, RevocationSchema, WatchRevocationsResponseSchema, type Revocation, type WatchRevocationsResponse } from "../../src/gen/identity/v1/identity_pb.js";

export const API_KEY = "verifier-test-internal-key-0123456789";
export const ISSUER = "identity";

/** A service config with one internal caller holding API_KEY, an app that signs users up and one that does not. */
export const serviceConfig = (extra: object = {}) => ({
  apps: [
    { id: "demo", platform: "wechat-miniprogram", appid: "wx0000000000000001", secret: "s" },
    // Unknown users get a pending session: a token without sub.
    { id: "explicit", platform: "wechat-miniprogram", appid: "wx0000000000000002", secret: "s", registration: "explicit" },
  ],
  internalCallers: [{ name: "verifier", keySha256: createHash("sha256").update(API_KEY).digest("hex") }],
  ...extra,
});

/** One open WatchRevocations call, as the server sees it. */
export interface FeedStream {
  cursor: string;
  apiKey: string | null;
  send(message: MessageInitShape<typeof WatchRevocationsResponseSchema>): void;
  /** Ends the call with an error, as a crashing instance would. */
  fail(): void;
  /** Resolves when the client has gone away. */
  gone: Promise<void>;
}

export interface Feed {
  grpcUrl: string;
  /** Resolves with the next WatchRevocations call (or one already waiting). */
  nextStream(): Promise<FeedStream>;
  checkLoginCalls: number;
  close(): Promise<void>;
}

export async function startFeed(serviceGrpcUrl: string): Promise<Feed> {
  const service = createClient(IdentityService, createGrpcTransport({ baseUrl: serviceGrpcUrl }));
  const waiting: FeedStream[] = [];
  const takers: Array<(s: FeedStream) => void> = [];
  const feed = { checkLoginCalls: 0 } as Feed;

  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(IdentityService, {
        async *watchRevocations(req, ctx) {
          const queue: Array<WatchRevocationsResponse | Error> = [];
          let wake: (() => void) | undefined;
          const push = (item: WatchRevocationsResponse | Error) => {
            queue.push(item);
            wake?.();
          };
          const gone = new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          const stream: FeedStream = {
            cursor: req.cursor,
            apiKey: ctx.requestHeader.get("x-api-key"),
            send: (message) => push(create(WatchRevocationsResponseSchema, message)),
            fail: () => push(new ConnectError("instance going away", Code.Unavailable)),
            gone,
          };
          const taker = takers.shift();
          if (taker) taker(stream);
          else waiting.push(stream);
          while (!ctx.signal.aborted) {
            const item = queue.shift();
            if (item instanceof Error) throw item;
            if (item) yield item;
            else await Promise.race([new Promise<void>((resolve) => (wake = resolve)), gone]);
          }
        },
        checkLogin(req, ctx) {
          feed.checkLoginCalls++;
          return service.checkLogin(req, { headers: { "x-api-key": ctx.requestHeader.get("x-api-key") ?? "" } });
        },
      }),
  });
  const server = http2.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });

  feed.grpcUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  feed.nextStream = () => {
    const ready = waiting.shift();
    return ready ? Promise.resolve(ready) : new Promise((resolve) => takers.push(resolve));
  };
  feed.close = async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return feed;
}

/** The end of a replay: caught up, with a heartbeat interval. */
export const caughtUp = (cursor: string, heartbeatMs = 5000, revocations: Revocation[] = []): MessageInitShape<typeof WatchRevocationsResponseSchema> => ({
  revocations,
  cursor,
  caughtUp: true,
  heartbeatInterval: durationFromMs(heartbeatMs),
});

export const sessionRevoked = (accessToken: string, reason = RevocationReason.LOGOUT, at = Date.now()) =>
  create(RevocationSchema, { target: { case: "sessionId", value: String(decodeJwt(accessToken).sid) }, revokeTime: timestampFromMs(at), reason });

export const userRevoked = (userId: string, atMs: number, reason = RevocationReason.USER_DISABLED) =>
  create(RevocationSchema, { target: { case: "userId", value: userId }, revokeTime: timestampFromMs(atMs), reason });
