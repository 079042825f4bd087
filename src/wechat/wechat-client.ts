// Talks to api.weixin.qq.com (or anything that speaks like it: the simulator, a proxy).
// WeChat answers errors as HTTP 200 with {errcode, errmsg}; branch on errcode, never errmsg.

export type WechatErrorKind =
  | "code_invalid"
  | "code_used"
  | "user_blocked"
  | "rate_limited"
  | "unavailable"
  | "misconfigured"
  | "token_invalid"
  | "unexpected";

export class WechatError extends Error {
  constructor(
    readonly kind: WechatErrorKind,
    readonly api: string,
    readonly errcode?: number,
  ) {
    super(`wechat ${api}: ${kind}${errcode === undefined ? "" : ` (errcode ${errcode})`}`);
  }
}

const ERRCODE_KINDS: Record<number, WechatErrorKind> = {
  [-1]: "unavailable",
  40029: "code_invalid",
  40163: "code_used",
  40226: "user_blocked",
  45009: "rate_limited",
  45011: "rate_limited",
  40001: "token_invalid",
  42001: "token_invalid",
  // Our configuration is wrong: bad appid/secret, grant type, IP whitelist, frozen secret, permission.
  40002: "misconfigured",
  40013: "misconfigured",
  40125: "misconfigured",
  40164: "misconfigured",
  40243: "misconfigured",
  41002: "misconfigured",
  41004: "misconfigured",
  48001: "misconfigured",
};

export function kindOfErrcode(errcode: number): WechatErrorKind {
  return ERRCODE_KINDS[errcode] ?? "unexpected";
}

// Failures that happen before a byte of the request left this machine: retrying can't double-spend a code.
const NOT_SENT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CONNECT_TIMEOUT"]);

export interface WechatApp {
  appid: string;
  secret: string;
}

export interface Code2SessionResult {
  openid: string;
  sessionKey: string;
  unionid?: string;
}

export interface WechatClientOptions {
  /** e.g. https://api.weixin.qq.com, or the simulator's URL. */
  baseUrl: string;
  /** Per attempt. */
  timeoutMs: number;
  /** Extra attempts for failures that are safe to retry. */
  retries: number;
  retryDelayMs?: number;
}

type Attempt = { ok: true; body: Record<string, unknown> } | { ok: false; error: WechatError; sent: boolean };

export function createWechatClient(options: WechatClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");

  async function attempt(api: string, url: string, init: RequestInit, signal?: AbortSignal): Promise<Attempt> {
    const timeout = AbortSignal.timeout(options.timeoutMs);
    let response: Response;
    try {
      response = await fetch(url, { ...init, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    } catch (e) {
      const code = (e as { cause?: { code?: string } }).cause?.code;
      return { ok: false, error: new WechatError("unavailable", api), sent: !(code && NOT_SENT_CODES.has(code)) };
    }
    let body: unknown;
    try {
      body = response.ok ? await response.json() : undefined;
    } catch {
      body = undefined;
    }
    if (!body || typeof body !== "object") return { ok: false, error: new WechatError("unavailable", api), sent: true };
    const errcode = (body as { errcode?: unknown }).errcode;
    if (typeof errcode === "number" && errcode !== 0) {
      return { ok: false, error: new WechatError(kindOfErrcode(errcode), api, errcode), sent: true };
    }
    return { ok: true, body: body as Record<string, unknown> };
  }

  /**
   * Calls an API that redeems a single-use code. Retries only what can't have spent the code
   * (connection never made) or what WeChat said it did not do (-1, busy); a "code used" after
   * such a retry is reported as unavailable, since our own first attempt may have spent it.
   */
  async function callWithCode(api: string, url: string, init: RequestInit, signal?: AbortSignal): Promise<Record<string, unknown>> {
    for (let tries = 0; ; tries++) {
      const result = await attempt(api, url, init, signal);
      if (result.ok) return result.body;
      const { error } = result;
      if (tries > 0 && error.kind === "code_used") throw new WechatError("unavailable", api, error.errcode);
      const retryable = error.errcode === -1 || !result.sent;
      if (!retryable || tries >= options.retries || signal?.aborted) throw error;
      await delay(options.retryDelayMs ?? 100);
    }
  }

  return {
    /** auth.code2Session: exchanges a wx.login code for openid, session_key and (maybe) unionid. */
    async code2Session(app: WechatApp, code: string, signal?: AbortSignal): Promise<Code2SessionResult> {
      const query = new URLSearchParams({ appid: app.appid, secret: app.secret, js_code: code, grant_type: "authorization_code" });
      const body = await callWithCode("jscode2session", `${base}/sns/jscode2session?${query}`, { method: "GET" }, signal);
      const { openid, session_key: sessionKey, unionid } = body;
      if (typeof openid !== "string" || !openid || typeof sessionKey !== "string" || !sessionKey) {
        throw new WechatError("unexpected", "jscode2session");
      }
      return { openid, sessionKey, ...(typeof unionid === "string" && unionid ? { unionid } : {}) };
    },
  };
}

export type WechatClient = ReturnType<typeof createWechatClient>;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
