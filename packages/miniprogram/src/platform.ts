// One adapter over the mini-program runtimes: WeChat's `wx`, QQ's `qq` and Douyin's `tt` share
// wx's shapes; Alipay's `my` names its fields differently; uni-app's `uni` wants a login provider.
import { type HttpResponse, localError } from "./errors.js";
import { setTimer } from "./timers.js";

/** What a platform API calls back with: fields vary by platform, so all are optional. */
export interface PlatformResult {
  code?: string;
  authCode?: string;
  errMsg?: string;
  errorMessage?: string;
  statusCode?: number;
  status?: number;
  header?: Record<string, string>;
  headers?: Record<string, string>;
  data?: unknown;
}

interface CallOptions {
  success?: (res: PlatformResult) => void;
  fail?: (res: PlatformResult) => void;
  [option: string]: unknown;
}

export interface RequestTask {
  abort?: () => void;
}

/** The part of `wx`, `qq`, `my`, `tt` or `uni` the kit uses. */
export interface MiniProgramApi {
  request(options: CallOptions): RequestTask | undefined;
  login?(options: CallOptions): void;
  getAuthCode?(options: CallOptions): void;
  checkSession?(options: CallOptions): void;
  getProvider?: unknown;
  getStorageSync(key: unknown): unknown;
  setStorageSync(key: unknown, data?: unknown): void;
  removeStorageSync(key: unknown): void;
}

export interface HttpRequest {
  url: string;
  method: string;
  data?: unknown;
  header: Record<string, string>;
  dataType?: string;
  responseType?: string;
}

/** The runtime as the kit sees it, the same on every platform. */
export interface Platform {
  /** Resolves with any HTTP answer; rejects (NETWORK) only when there was none. */
  request(req: HttpRequest, timeoutMs: number): Promise<HttpResponse>;
  /** A fresh single-use login code. */
  login(): Promise<string>;
  /** Whether the session_key of the latest login code is still valid (always true where there is none). */
  checkSession(): Promise<boolean>;
  getItem(key: string): unknown;
  setItem(key: string, value: unknown): void;
  removeItem(key: string): void;
}

/** Calls `api[name]` (as a method: some runtimes need their `this`) and waits for its callbacks. */
function invoke(api: MiniProgramApi, name: "login" | "getAuthCode" | "checkSession", options: Record<string, unknown>): Promise<PlatformResult> {
  return new Promise((resolve, reject) => api[name]!(Object.assign({}, options, { success: resolve, fail: reject })));
}

function failureText(res: PlatformResult | undefined): string {
  return (res && (res.errMsg || res.errorMessage)) || "request failed";
}

/**
 * Alipay is told by `my.getAuthCode`, uni-app by `uni.getProvider`; the others answer like wx.
 * `provider` is uni-app's login provider ("weixin", "qq", "alipay", "toutiao").
 */
export function adaptPlatform(api: MiniProgramApi, provider = "weixin"): Platform {
  const alipay = typeof api.getAuthCode === "function";
  const uni = typeof api.getProvider === "function";
  const key = (k: string) => (alipay ? { key: k } : k);

  function request(req: HttpRequest, timeoutMs: number): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let task: RequestTask | undefined;
      // The platform's own timeout is the first line; this one holds where it is ignored.
      const clear = setTimer(() => {
        task?.abort?.();
        settle({ errMsg: "request:fail timeout" }, false);
      }, timeoutMs + 1000);
      const settle = (res: PlatformResult, ok: boolean) => {
        if (settled) return;
        settled = true;
        clear();
        // Alipay fails with the answer attached when the status is not 2xx (its error 19).
        const statusCode = res && (typeof res.statusCode === "number" ? res.statusCode : res.status);
        if (typeof statusCode === "number" && (ok || statusCode > 0)) {
          resolve({ statusCode, data: res.data, header: res.header || res.headers || {} });
        } else {
          reject(localError("NETWORK", failureText(res)));
        }
      };
      task = api.request({
        url: req.url,
        method: req.method,
        data: req.data,
        [alipay ? "headers" : "header"]: req.header,
        timeout: timeoutMs,
        dataType: req.dataType || "json",
        responseType: req.responseType || "text",
        success: (res: PlatformResult) => settle(res, true),
        fail: (res: PlatformResult) => settle(res, false),
      });
    });
  }

  async function login(): Promise<string> {
    if (!alipay && !api.login) throw localError("PLATFORM_LOGIN_FAILED", "the platform has no login()");
    let res: PlatformResult;
    try {
      // force is tt.login's default, said anyway: with force false a user not signed in to Douyin gets only an anonymousCode.
      res = alipay ? await invoke(api, "getAuthCode", { scopes: "auth_base" }) : await invoke(api, "login", uni ? { provider } : { force: true });
    } catch (failure) {
      throw localError("PLATFORM_LOGIN_FAILED", failureText(failure as PlatformResult));
    }
    const code = alipay ? res.authCode : res.code;
    if (!code) throw localError("PLATFORM_LOGIN_FAILED", "login gave no code");
    return code;
  }

  function checkSession(): Promise<boolean> {
    if (alipay || !api.checkSession) return Promise.resolve(true);
    return invoke(api, "checkSession", uni ? { provider } : {}).then(
      () => true,
      () => false,
    );
  }

  return {
    request,
    login,
    checkSession,
    getItem: (k) => {
      const value = api.getStorageSync(key(k));
      // Alipay wraps the value in {data}; wx answers "" for a key never set.
      return alipay ? (value as { data?: unknown } | undefined)?.data : value;
    },
    setItem: (k, value) => (alipay ? api.setStorageSync({ key: k, data: value }) : api.setStorageSync(k, value)),
    removeItem: (k) => api.removeStorageSync(key(k)),
  };
}
