// The kit as a mini-program runs it: bundled from src/ exactly as the build ships it, evaluated in a
// node:vm context that has only what the runtimes promise (console and timers; no fetch, URL,
// Headers, TextEncoder, AbortController, nor built-ins newer than ES2017), with a fake platform
// object, handed to createIdentity, whose requests are real HTTP to the real service and simulator.
import { randomBytes } from "node:crypto";
import vm from "node:vm";
import { build } from "esbuild";
import { mintCode, simPost } from "../../../test/support/harness.js";
import { bundleOptions } from "../build.mjs";
import type * as Kit from "../src/index.js";

export type { Kit };
export type Dialect = "wx" | "qq" | "my" | "tt" | "uni";

/** The clocks tests move: the device's (the kit's Date.now) and the service's, separately. */
export const clock = { device: 0, server: 0 };
export const serverNow = () => Date.now() + clock.server;

let bundle: Promise<string> | undefined;
/** The bundle's source, built once per test file. */
export function kitSource(): Promise<string> {
  bundle ??= build({ ...bundleOptions, write: false }).then((out) => out.outputFiles![0]!.text);
  return bundle;
}

// Built-ins past ES2017 that a mini-program's JavaScript engine may lack; deleted in the context.
const NEWER_BUILTINS = [
  "Promise.allSettled",
  "Promise.any",
  "Promise.prototype.finally",
  "Object.fromEntries",
  "Object.hasOwn",
  "Array.prototype.flat",
  "Array.prototype.flatMap",
  "Array.prototype.at",
  "String.prototype.replaceAll",
  "String.prototype.matchAll",
  "String.prototype.trimStart",
  "String.prototype.trimEnd",
  "globalThis.structuredClone",
  "globalThis.queueMicrotask",
];

/**
 * A fresh mini-program "realm": the kit loaded as `require` of miniprogram_dist/index.js gives it,
 * and `evaluate` to run other CommonJS files (an example's pages) in the same realm. `globals` adds
 * what the runtime would have besides (wx, App, Page, getApp).
 */
export async function createRealm(globals: Record<string, unknown> = {}) {
  const source = await kitSource();
  const context = vm.createContext({ console, setTimeout, clearTimeout, ...globals, __deviceMs: () => clock.device });
  vm.runInContext(
    `(() => {
      const now = Date.now, offset = __deviceMs;
      Date.now = () => now() + offset();
      for (const path of ${JSON.stringify(NEWER_BUILTINS)}) {
        const parts = path.split("."), name = parts.pop();
        delete parts.reduce((o, p) => o[p], globalThis)[name];
      }
      delete globalThis.__deviceMs;
      // globalThis itself is ES2020 too: last, since the lines above need it.
      delete globalThis.globalThis;
    })()`,
    context,
  );
  function evaluate(code: string, filename: string, require: (name: string) => unknown = () => undefined): unknown {
    const module = { exports: {} };
    const load = vm.runInContext(`(function (require, module, exports) {${code}\n})`, context, { filename });
    load(require, module, module.exports);
    return module.exports;
  }
  return { kit: evaluate(source, "miniprogram_dist/index.js") as typeof Kit, evaluate };
}

export async function loadKit(): Promise<typeof Kit> {
  return (await createRealm()).kit;
}

/** Names a host promises nowhere in a mini-program; none may appear in the bundle. */
export const FORBIDDEN_GLOBALS = ["fetch", "Headers", "TextEncoder", "TextDecoder", "AbortController", "AbortSignal", "URL", "URLSearchParams", "allSettled", "globalThis", "window", "process"];

export interface RecordedCall {
  url: string;
  method: string;
  header: Record<string, string>;
  data: unknown;
}

/** What the kit hands a platform call: wx.request's fields, login's options and the callbacks. */
interface CallOptions {
  url: string;
  method: string;
  data?: unknown;
  header?: Record<string, string>;
  headers?: Record<string, string>;
  timeout?: number;
  dataType?: string;
  provider?: string;
  force?: boolean;
  scopes?: string;
  success?: (res: object) => void;
  fail?: (res: object) => void;
}

export interface DeviceOptions {
  sim: string;
  dialect?: Dialect;
  /** The platform appid (the simulator mints codes per appid). */
  appid: string;
  openid?: string;
}

/**
 * One phone running the mini-program: its platform object (`api`), storage, and what it did.
 * `offline` fails the next N requests as a lost network would.
 */
export function createDevice(options: DeviceOptions) {
  const dialect = options.dialect ?? "wx";
  const openid = options.openid ?? `o${randomBytes(12).toString("hex")}`;
  const storage = new Map<string, unknown>();
  const calls: RecordedCall[] = [];
  // slowPath/slowMs hold back the requests whose URL ends so (to make a race certain).
  const state = { offline: 0, inFlight: 0, maxInFlight: 0, logins: 0, sessionValid: true, lastCode: "", slowPath: "", slowMs: 0 };
  const alipay = dialect === "my";
  // Alipay's user id: 2088 and 12 digits.
  const userId = `2088${BigInt(`0x${openid.slice(1, 13)}`)
    .toString()
    .padStart(12, "0")
    .slice(-12)}`;

  async function mint(): Promise<string> {
    state.logins++;
    const minted =
      dialect === "qq"
        ? await simPost(options.sim, "/sim/qq/login-code", { appid: options.appid, openid })
        : alipay
          ? await simPost(options.sim, "/sim/alipay/auth-code", { appid: options.appid, userId })
          : await mintCode(options.sim, { appid: options.appid, openid });
    state.lastCode = minted.code;
    return minted.code;
  }

  function request(o: CallOptions) {
    // Each platform's own field names: Alipay's `headers` in and `status`/`headers` out.
    const header: Record<string, string> = (alipay ? o.headers : o.header) ?? {};
    if (alipay && o.header) throw new Error("my.request takes headers, not header");
    if (!alipay && o.headers) throw new Error(`${dialect}.request takes header, not headers`);
    calls.push({ url: o.url, method: o.method, header, data: o.data });
    const controller = new AbortController();
    const fail = (message: string) => o.fail?.(alipay ? { error: 12, errorMessage: message } : { errMsg: `request:fail ${message}` });
    if (state.offline > 0) {
      state.offline--;
      setTimeout(() => fail("network is down"), 5);
      return { abort() {} };
    }
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    const body = o.data === undefined || typeof o.data === "string" ? o.data : JSON.stringify(o.data);
    const held = state.slowPath && o.url.endsWith(state.slowPath) ? state.slowMs : 0;
    new Promise((resolve) => setTimeout(resolve, held))
      .then(() => fetch(o.url, { method: o.method, headers: header, body, signal: AbortSignal.any([controller.signal, AbortSignal.timeout(o.timeout ?? 60_000)]) }))
      .then(async (res) => {
        const text = await res.text();
        let data: unknown = text;
        if (o.dataType === "json") {
          try {
            data = JSON.parse(text);
          } catch {}
        }
        const headers = Object.fromEntries(res.headers);
        state.inFlight--;
        if (!alipay) return o.success?.({ statusCode: res.status, header: headers, data, errMsg: "request:ok" });
        // Alipay calls fail, with the answer, for any status outside 2xx (its error 19).
        if (res.status >= 200 && res.status < 300) o.success?.({ status: res.status, headers, data });
        else o.fail?.({ error: 19, errorMessage: "http status error", status: res.status, headers, data });
      })
      .catch((error: Error) => {
        state.inFlight--;
        fail(error.name === "TimeoutError" ? "timeout" : error.message);
      });
    return { abort: () => controller.abort() };
  }

  const callback = (o: CallOptions, work: () => Promise<object>) => {
    work().then(
      (res) => o.success?.(res),
      (error: Error) => o.fail?.({ errMsg: `fail ${error.message}` }),
    );
  };

  const api: Record<string, unknown> = {
    request,
    checkSession: (o: CallOptions) => setTimeout(() => (state.sessionValid ? o.success?.({ errMsg: "checkSession:ok" }) : o.fail?.({ errMsg: "checkSession:fail session expired" })), 1),
    getStorageSync: (key: string) => (storage.has(key) ? storage.get(key) : ""),
    setStorageSync: (key: string, value: unknown) => void storage.set(key, JSON.parse(JSON.stringify(value))),
    removeStorageSync: (key: string) => void storage.delete(key),
  };
  if (dialect === "wx" || dialect === "qq") api.login = (o: CallOptions) => callback(o, async () => ({ code: await mint(), errMsg: "login:ok" }));
  if (dialect === "tt") {
    // With force false, a user not signed in to Douyin gets only an anonymousCode.
    api.login = (o: CallOptions) => callback(o, async () => (o.force === false ? { anonymousCode: "anon", isLogin: false } : { code: await mint(), anonymousCode: "anon", isLogin: true }));
  }
  if (dialect === "uni") {
    api.getProvider = () => undefined;
    api.login = (o: CallOptions) =>
      callback(o, async () => {
        if (o.provider !== "weixin") throw new Error(`provider ${o.provider} is not this app's`);
        return { code: await mint(), errMsg: "login:ok" };
      });
  }
  if (alipay) {
    delete api.checkSession;
    api.getAuthCode = (o: CallOptions) =>
      callback(o, async () => {
        if (o.scopes !== "auth_base") throw new Error("scopes");
        return { authCode: await mint() };
      });
    // Alipay's storage takes {key} and {key, data}, and answers {data}.
    api.getStorageSync = ({ key }: { key: string }) => ({ data: storage.get(key) ?? null });
    api.setStorageSync = ({ key, data }: { key: string; data: unknown }) => void storage.set(key, JSON.parse(JSON.stringify(data)));
    api.removeStorageSync = ({ key }: { key: string }) => void storage.delete(key);
  }

  return {
    api: api as unknown as Kit.MiniProgramApi,
    openid,
    userId,
    storage,
    calls,
    state,
    /** How many calls went to this IdentityService method. */
    count: (method: string) => calls.filter((c) => c.url.endsWith(`/identity.v1.IdentityService/${method}`)).length,
  };
}

export type Device = ReturnType<typeof createDevice>;

/** The error a promise rejects with (fails the test if it resolves). */
export async function refusal(promise: Promise<unknown>): Promise<Kit.IdentityError> {
  return promise.then(
    () => {
      throw new Error("expected a refusal, the call succeeded");
    },
    (error: unknown) => error as Kit.IdentityError,
  );
}
