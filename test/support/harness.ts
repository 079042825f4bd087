// Starts the real service (both listeners, the simulator) on port 0 and talks to it as clients do.
import { loadConfig } from "../../src/config/config.js";
import { DEMO_APP, startApp, type RunningApp } from "../../src/main.js";
import type { Store } from "../../src/store/store.js";

export const DEMO_APPID: string = DEMO_APP.appid;
export const SERVICE = "identity.v1.IdentityService";

export interface Harness extends RunningApp {
  sim: string;
  /** Every log line the service wrote. */
  logs: string[];
}

/** Dev mode by default; pass a config file to run with it (and the simulator). */
export async function startHarness(file?: object, env: Record<string, string> = {}, store?: Store, now?: () => number): Promise<Harness> {
  const logs: string[] = [];
  const config = loadConfig(
    {
      HOST: "127.0.0.1",
      PORT: "0",
      GRPC_PORT: "0",
      WECHAT_SIM_PORT: "0",
      LOG_LEVEL: "info",
      ...(file ? { IDENTITY_CONFIG: "test-config.json", WECHAT_SIMULATOR: "1" } : {}),
      ...env,
    },
    () => JSON.stringify(file),
  );
  const app = await startApp(config, { logStream: { write: (line) => void logs.push(line) }, ...(store ? { store } : {}), ...(now ? { now } : {}) });
  return { ...app, sim: app.simulatorUrl!, logs };
}

export interface RpcResult {
  status: number;
  json: any;
  text: string;
  headers: Headers;
}

/** A Connect unary call as plain JSON over HTTP/1.1, the way wx.request makes it. */
export async function rpc(base: string, method: string, body: unknown, token?: string, headers: Record<string, string> = {}): Promise<RpcResult> {
  const res = await fetch(`${base}/${SERVICE}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return resultOf(res);
}

/** An HTTP answer read whole, its body parsed when it is JSON. */
export async function resultOf(res: Response): Promise<RpcResult> {
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** The ErrorInfo reason as a plain JSON client reads it. */
export function reasonOf(res: RpcResult): string | undefined {
  const info = (res.json?.details ?? []).find((d: any) => d.type === "google.rpc.ErrorInfo");
  return info?.debug?.reason;
}

export async function simPost(sim: string, path: string, body: unknown): Promise<any> {
  const res = await fetch(`${sim}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`simulator ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

export async function mintCode(sim: string, body: { appid?: string; openid?: string; unionid?: string; sessionKey?: string; blocked?: boolean } = {}) {
  return (await simPost(sim, "/sim/login-code", { appid: DEMO_APPID, ...body })) as { code: string; openid: string; unionid: string | null };
}

export async function injectFault(
  sim: string,
  fault: { path: string; errcode?: number; status?: number; delayMs?: number; times?: number; drop?: boolean; reset?: boolean; body?: "truncated" | "garbage" },
) {
  await simPost(sim, "/sim/faults", fault);
}

/** Mints a code and logs in with it. */
export async function login(h: { httpUrl: string; sim: string }, mint: Parameters<typeof mintCode>[1] = {}, appKey = "demo") {
  const minted = await mintCode(h.sim, mint);
  const res = await rpc(h.httpUrl, "Login", { appId: appKey, code: minted.code });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
  return { ...minted, res, body: res.json, access: res.json.tokens.accessToken as string, refresh: res.json.tokens.refreshToken as string };
}
