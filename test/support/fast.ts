// The fast test level: the real service and routes (createRoutes), in memory through
// createRouterTransport, on the memory store, a steppable clock and in-process platforms. For the
// service's branches; wire behaviour stays with the real-listener suites (harness.ts).
import { type Code, ConnectError, createClient, createRouterTransport, type CallOptions, type Client, type Interceptor } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { generateSigningKey } from "../../src/auth/access-tokens.js";
import { defaultConfigFile, loadConfig, WECHAT_PLATFORMS, type ConfigFile } from "../../src/config/config.js";
import { createServiceDeps, DEMO_APP } from "../../src/main.js";
import { createRoutes } from "../../src/server/routes.js";
import { createServices } from "../../src/service/identity-service.js";
import { kClientAddress } from "../../src/service/interceptors.js";
import type { RevocationFeed } from "../../src/service/revocation-feed.js";
import { encryptOpenData } from "../../src/simulator/crypto.js";
import { createClock, type Clock, type LoginCodeRequest, type WechatState } from "../../src/simulator/wechat-state.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { createFakePlatforms } from "./fake-platforms.js";

import { DEMO_APPID } from "./harness.js";

export { DEMO_APPID };
/** The client address every call comes from, unless its CLIENT_ADDRESS header names another. */
export const TEST_ADDRESS = "192.0.2.1";
/** A test's own header: the in-memory transport has no socket to take the address from. */
export const CLIENT_ADDRESS = "x-test-client-address";

export interface Fast {
  client: Client<typeof IdentityService>;
  health: Client<typeof Health>;
  /** Every `now` of the service, the session library, the tokens and WeChat's codes: time moves only when a test moves it. */
  clock: Clock;
  store: MemoryStore;
  /** The revocation feed WatchRevocations streams follow; close() ends them, as shutdown does. */
  feed: RevocationFeed;
  /** WeChat's side: mintLoginCode, mintPhoneCode, currentSessionKey, ... */
  wechat: WechatState;
  /** A login code for the demo app unless `appid` says otherwise. */
  mintCode(request?: Partial<LoginCodeRequest>): { code: string; openid: string; unionid?: string };
  /** The service's log lines as pino writes them (JSON with a level), for expectCleanLogs. */
  logs: string[];
  /** Open data as WeChat hands it to the mini-program: under the user's current session_key, with the app's watermark unless `data` has one. */
  encrypt(openid: string, data: object, appid?: string): { encryptedData: string; iv: string };
  /** Mints a code and logs in with it. */
  login(request?: Partial<LoginCodeRequest>, appId?: string): Promise<LoggedIn>;
}

export interface LoggedIn {
  openid: string;
  res: Awaited<ReturnType<Client<typeof IdentityService>["login"]>>;
  userId: string;
  access: string;
  refresh: string;
}

/** Dev mode's configuration by default; pass a config file (as a JSON value) to run with it. */
export async function startFast(file?: object): Promise<Fast> {
  const config = file ? loadConfig({ IDENTITY_CONFIG: "fast.json" }, () => JSON.stringify(file)).file! : defaultConfigFile([{ ...DEMO_APP, legacyId: 1 }]);
  const clock = createClock(() => START);
  const store = new MemoryStore({ now: clock.now });
  const fake = createFakePlatforms(secretsOf(config, WECHAT_PLATFORMS), secretsOf(config, ["qq-miniprogram"]), clock);
  const logs: string[] = [];
  const line = (level: number) => (obj: object, msg?: string) => void logs.push(JSON.stringify({ level, ...obj, msg }));
  const log = { info: line(30), error: line(50) };
  const { deps } = createServiceDeps({ file: config, apps: config.apps, store, platforms: fake.clients, keys: [await signingKey], now: clock.now, log });
  const { identity: service, admin } = createServices(deps);
  const { routes, options } = createRoutes({ service, admin, ready: async () => true, maxBodyBytes: config.limits.maxBodyBytes, log, closing: new AbortController().signal });
  const transport = createRouterTransport(routes, { router: { ...options, interceptors: [clientAddress, ...options.interceptors] } });
  const client = createClient(IdentityService, transport);
  const mintCode = (request: Partial<LoginCodeRequest> = {}) => fake.wechat.mintLoginCode({ appid: DEMO_APPID, ...request });
  return {
    client,
    health: createClient(Health, transport),
    clock,
    store,
    feed: deps.revocations.feed,
    wechat: fake.wechat,
    logs,
    mintCode,
    encrypt(openid, data, appid = DEMO_APPID) {
      const watermark = { appid, timestamp: Math.floor(clock.now() / 1000) };
      return encryptOpenData(fake.wechat.currentSessionKey(appid, openid)!, JSON.stringify({ watermark, ...data }));
    },
    async login(request, appId = "demo") {
      const minted = mintCode(request);
      const res = await client.login({ appId, ...byCode(minted.code) });
      return { openid: minted.openid, res, userId: res.user?.id ?? "", access: res.tokens!.accessToken, refresh: res.tokens!.refreshToken };
    },
  };
}

/** A LoginRequest's credential, the oneof spelled out. */
export const byCode = (code: string) => ({ credential: { case: "code" as const, value: code } });
export const byPassword = (username: string, password: string) => ({ credential: { case: "password" as const, value: { username, password } } });

/** Call options carrying a bearer token (and any other headers). */
export function as(token: string, headers: Record<string, string> = {}): CallOptions {
  return { headers: { authorization: `Bearer ${token}`, ...headers } };
}

/** What a refused call said: its code, ErrorInfo reason and metadata. Fails the test if the call succeeded. */
export async function refusal(call: Promise<unknown>): Promise<Refusal> {
  return refusalOf(
    await call.then(
      () => {
        throw new Error("the call succeeded");
      },
      (e: unknown) => e,
    ),
  );
}

export interface Refusal {
  code: Code;
  reason: string | undefined;
  metadata: Record<string, string>;
  message: string;
}

/** A call's error as a client branches on it (for Promise.allSettled's rejections). */
export function refusalOf(e: unknown): Refusal {
  const error = ConnectError.from(e);
  const info = error.findDetails(ErrorInfoSchema)[0];
  return { code: error.code, reason: info?.reason, metadata: info?.metadata ?? {}, message: error.rawMessage };
}

// A fixed instant, not the real time: every clock of the service and its store is the test's.
const START = Date.UTC(2026, 0, 1);
const signingKey = generateSigningKey().then(({ key }) => key);

const clientAddress: Interceptor = (next) => (req) => {
  req.contextValues.set(kClientAddress, req.header.get(CLIENT_ADDRESS) ?? TEST_ADDRESS);
  return next(req);
};

function secretsOf(file: ConfigFile, platforms: readonly string[]): Record<string, string> {
  return Object.fromEntries(file.apps.filter((a) => platforms.includes(a.platform)).map((a) => [a.appid, "secret" in a ? a.secret : ""]));
}
