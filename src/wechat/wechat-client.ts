import { Agent, type Dispatcher } from "undici";
import { PlainAbortSignal } from "../util/plain-abort-signal.js";
import { createBreaker, type Breaker } from "./circuit-breaker.js";
import { sessionKeySignature } from "./open-data.js";

// Talks to api.weixin.qq.com (or anything that speaks like it: the simulator, a proxy, and QQ's
// api.q.qq.com, whose jscode2session has WeChat's path, fields and errcodes; use code2Session there).
// WeChat answers errors as HTTP 200 with {errcode, errmsg}; branch on errcode, never errmsg.

export type WechatErrorKind = "code_invalid" | "code_used" | "user_blocked" | "rate_limited" | "unavailable" | "misconfigured" | "token_invalid" | "circuit_open" | "unexpected";

export class WechatError extends Error {
  constructor(
    readonly kind: WechatErrorKind,
    readonly api: string,
    readonly errcode?: number,
    /** For circuit_open: when the API will be tried again. */
    readonly retryAfterMs?: number,
    /** For unavailable: what failed, for the server log (ECONNREFUSED, ENOTFOUND, timeout, http_502, bad_response, ...). */
    readonly detail?: string,
  ) {
    super(`wechat ${api}: ${kind}${errcode === undefined ? "" : ` (errcode ${errcode})`}${detail ? ` (${detail})` : ""}`);
  }
}

const ERRCODE_KINDS: Record<number, WechatErrorKind> = {
  [-1]: "unavailable",
  40029: "code_invalid",
  // sns/oauth2/access_token's "code expired": a code the client must get again, like 40029.
  42003: "code_invalid",
  40163: "code_used",
  40226: "user_blocked",
  45009: "rate_limited",
  45011: "rate_limited",
  40001: "token_invalid",
  42001: "token_invalid",
  // "invalid access_token": ours was refused, so it is expired and fetched again, like 40001.
  40014: "token_invalid",
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

/** checksession's answer for a session_key that is not (or no longer) the user's: a result, not a failure. */
const INVALID_SIGNATURE = 87009;

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

/** Who signed in through WeChat's web/app OAuth (official account, mobile app, website QR). */
export interface OauthIdentity {
  openid: string;
  /** Only when the app is bound to an Open Platform account (and, on official-account pages, for snsapi_userinfo). */
  unionid?: string;
  /** What the user granted, e.g. snsapi_base, snsapi_userinfo, snsapi_login. */
  scope: string;
}

export interface StableToken {
  accessToken: string;
  /** Seconds. */
  expiresIn: number;
}

export interface PhoneNumber {
  /** With the country code for numbers outside mainland China. */
  phoneNumber: string;
  purePhoneNumber: string;
  countryCode: string;
  /** The app the number was verified for; empty if WeChat sent no watermark. */
  watermarkAppid: string;
}

export interface ContentVerdict {
  suggest: "pass" | "review" | "risky";
  label: number;
  traceId: string;
}

export interface WechatClientOptions {
  /** e.g. https://api.weixin.qq.com, or the simulator's URL. */
  baseUrl: string;
  /** Per attempt. */
  timeoutMs: number;
  /** Extra attempts for failures that are safe to retry. */
  retries: number;
  retryDelayMs?: number;
  /** For one call, all attempts and waits together; a later attempt gets only what is left. Default: no cap beyond the attempts'. */
  budgetMs?: number;
  /** Per API: consecutive failures (timeouts, lost connections, 5xx, -1) that make calls fail fast for coolDownMs. */
  breaker?: { failures: number; coolDownMs: number };
  /** Told about every HTTP attempt (retries included), e.g. to feed metrics. */
  observe?: UpstreamObserver;
}

/**
 * Hears about one HTTP attempt to an upstream API. `api` is the client's name for the API
 * (e.g. "jscode2session"); `outcome` is "ok", WeChat's errcode as a string (e.g. "40029"), or
 * "network", "timeout", "aborted" (the caller's signal), "http_<status>", "bad_response" (a 200
 * that is not a JSON object). Both are bounded sets: never user data or errmsg.
 */
export type UpstreamObserver = (api: string, outcome: string, seconds: number) => void;

type Failure = { ok: false; error: WechatError; sent: boolean };
type Attempt = { ok: true; body: Record<string, unknown> } | Failure;

/** After a failed attempt (`tries` retries so far): try again, or throw this error. */
type RetryPolicy = (failure: Failure, tries: number) => "retry" | WechatError;

/**
 * For an API that redeems a single-use code. Retries only what can't have spent the code
 * (connection never made) or what WeChat said it did not do (-1, busy); a "code used" after
 * such a retry is reported as unavailable, since our own first attempt may have spent it.
 */
const CODE_SAFE: RetryPolicy = ({ error, sent }, tries) => {
  if (tries > 0 && error.kind === "code_used") return new WechatError("unavailable", error.api, error.errcode);
  return error.errcode === -1 || !sent ? "retry" : error;
};

/** For reads and idempotent calls: doing them twice is harmless, so any -1, timeout, lost connection or 5xx is retried. */
const REPEATABLE: RetryPolicy = ({ error }) => (error.kind === "unavailable" ? "retry" : error);

interface HttpRequest {
  method: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
}

const GET: HttpRequest = { method: "GET" };
const postJson = (body: object): HttpRequest => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

export function createWechatClient(options: WechatClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");
  // undici's dispatcher, not fetch, whose streams cost a login a third of its CPU (docs/performance.md).
  const dispatcher = new Agent({ keepAliveTimeout: 10_000 });

  /** One HTTP request, told to options.observe with its outcome and duration. */
  async function attempt(api: string, url: string, init: HttpRequest, timeoutMs: number, signal?: AbortSignal): Promise<Attempt> {
    const started = performance.now();
    const [outcome, result] = await send(api, url, init, timeoutMs, signal);
    options.observe?.(api, outcome, (performance.now() - started) / 1000);
    return result;
  }

  async function send(api: string, url: string, init: HttpRequest, timeoutMs: number, signal?: AbortSignal): Promise<[outcome: string, result: Attempt]> {
    const limit = attemptSignal(timeoutMs, signal);
    try {
      return await sendWithin(api, url, init, limit);
    } finally {
      limit.release();
    }
  }

  async function sendWithin(api: string, url: string, init: HttpRequest, limit: AttemptSignal): Promise<[outcome: string, result: Attempt]> {
    const unavailable = (outcome: string, sent: boolean, detail = outcome): [string, Attempt] => [
      outcome,
      { ok: false, error: new WechatError("unavailable", api, undefined, undefined, detail), sent },
    ];
    // A failure while waiting is our timeout or the caller's abort before it is anything else.
    const cut = (otherwise: string) => (limit.timedOut() ? "timeout" : limit.signal.aborted ? "aborted" : otherwise);
    let answer: Answer;
    try {
      answer = await exchange(dispatcher, url, init, limit.signal);
    } catch (e) {
      const { code, cause } = e as { code?: string; cause?: { code?: string } };
      const reason = cause?.code ?? code;
      const outcome = cut("network");
      // The metric keeps "network" (few values); the log line names the system's code.
      return unavailable(outcome, !(reason && NOT_SENT_CODES.has(reason)), outcome === "network" && reason && /^[A-Z0-9_]{1,40}$/.test(reason) ? reason : outcome);
    }
    if (answer.status < 200 || answer.status > 299) return unavailable(`http_${answer.status}`, true);
    const body = jsonObjectOf(answer.body);
    if (!body) return unavailable(cut("bad_response"), true);
    const errcode = body.errcode;
    if (typeof errcode === "number" && errcode !== 0) {
      return [String(errcode), { ok: false, error: new WechatError(kindOfErrcode(errcode), api, errcode), sent: true }];
    }
    return ["ok", { ok: true, body }];
  }

  const breakers = new Map<string, Breaker>();
  const breakerOf = (api: string): Breaker | undefined => {
    if (!options.breaker) return undefined;
    const breaker = breakers.get(api) ?? createBreaker(options.breaker);
    breakers.set(api, breaker);
    return breaker;
  };

  /** One call through the API's breaker: fails fast while it is open. */
  async function call(api: string, url: string, init: HttpRequest, policy: RetryPolicy, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const breaker = breakerOf(api);
    if (breaker && !breaker.admit()) {
      options.observe?.(api, "circuit_open", 0);
      throw new WechatError("circuit_open", api, undefined, breaker.retryAfterMs());
    }
    try {
      const body = await attempts(api, url, init, policy, signal);
      breaker?.succeeded();
      return body;
    } catch (e) {
      // A caller that gave up (a short deadline, say) must not open the breaker for everyone.
      if (signal?.aborted) breaker?.released();
      else if (e instanceof WechatError && e.kind === "unavailable") breaker?.failed();
      else breaker?.succeeded();
      throw e;
    }
  }

  /** Sends a request until it succeeds or `policy` says stop, with at most options.retries extra attempts, within the budget. */
  async function attempts(api: string, url: string, init: HttpRequest, policy: RetryPolicy, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const retryDelayMs = options.retryDelayMs ?? 100;
    const deadline = performance.now() + (options.budgetMs ?? Infinity);
    for (let tries = 0; ; tries++) {
      const result = await attempt(api, url, init, Math.max(1, Math.ceil(Math.min(options.timeoutMs, deadline - performance.now()))), signal);
      if (result.ok) return result.body;
      const verdict = policy(result, tries);
      if (verdict !== "retry") throw verdict;
      if (tries >= options.retries || signal?.aborted || deadline - performance.now() <= retryDelayMs) throw result.error;
      await delay(retryDelayMs);
    }
  }

  return {
    /** Drops the pooled connections at shutdown, with any request still out (a token refresh no caller waits for). */
    close: () => dispatcher.destroy(),

    /** auth.code2Session: exchanges a wx.login code for openid, session_key and (maybe) unionid. */
    async code2Session(app: WechatApp, code: string, signal?: AbortSignal): Promise<Code2SessionResult> {
      const query = new URLSearchParams({ appid: app.appid, secret: app.secret, js_code: code, grant_type: "authorization_code" });
      const body = await call("jscode2session", `${base}/sns/jscode2session?${query}`, GET, CODE_SAFE, signal);
      const { openid, session_key: sessionKey, unionid } = body;
      if (typeof openid !== "string" || !openid || typeof sessionKey !== "string" || !sessionKey) {
        throw new WechatError("unexpected", "jscode2session");
      }
      return { openid, sessionKey, ...(typeof unionid === "string" && unionid ? { unionid } : {}) };
    },

    /**
     * sns/oauth2/access_token: exchanges an OAuth redirect code (official-account page, mobile-app SDK,
     * website QR login) for the user's openid, unionid and granted scope. WeChat also sends a user
     * access_token and refresh_token; we have no use for them, so they are dropped here unread.
     */
    async oauth2AccessToken(app: WechatApp, code: string, signal?: AbortSignal): Promise<OauthIdentity> {
      const query = new URLSearchParams({ appid: app.appid, secret: app.secret, code, grant_type: "authorization_code" });
      const body = await call("oauth2_access_token", `${base}/sns/oauth2/access_token?${query}`, GET, CODE_SAFE, signal);
      const { openid, unionid, scope } = body;
      if (typeof openid !== "string" || !openid || typeof scope !== "string") {
        throw new WechatError("unexpected", "oauth2_access_token");
      }
      return { openid, scope, ...(typeof unionid === "string" && unionid ? { unionid } : {}) };
    },

    /** getStableAccessToken in normal mode: the same token until WeChat renews it, so asking twice is harmless. */
    async stableToken(app: WechatApp, signal?: AbortSignal): Promise<StableToken> {
      const init = postJson({ grant_type: "client_credential", appid: app.appid, secret: app.secret, force_refresh: false });
      const body = await call("stable_token", `${base}/cgi-bin/stable_token`, init, REPEATABLE, signal);
      const { access_token: accessToken, expires_in: expiresIn } = body;
      if (typeof accessToken !== "string" || !accessToken || typeof expiresIn !== "number" || !(expiresIn > 0)) {
        throw new WechatError("unexpected", "stable_token");
      }
      return { accessToken, expiresIn };
    },

    /**
     * Redeems a phone-number button code. A refused token (40001/42001) is the caller's to renew,
     * so it surfaces as token_invalid without a retry here.
     */
    async getPhoneNumber(accessToken: string, code: string, signal?: AbortSignal): Promise<PhoneNumber> {
      const query = new URLSearchParams({ access_token: accessToken });
      const url = `${base}/wxa/business/getuserphonenumber?${query}`;
      const body = await call("getuserphonenumber", url, postJson({ code }), CODE_SAFE, signal);
      // Anything but an object reads as an answer with no fields, so the checks below refuse it.
      const { phoneNumber, purePhoneNumber, countryCode, watermark } = (body.phone_info ?? {}) as Record<string, unknown>;
      // WeChat's field table says countryCode is a string; its example sends the number 86.
      const country = typeof countryCode === "string" || typeof countryCode === "number" ? String(countryCode) : undefined;
      if (typeof phoneNumber !== "string" || !phoneNumber || typeof purePhoneNumber !== "string" || country === undefined) {
        throw new WechatError("unexpected", "getuserphonenumber");
      }
      const watermarkAppid = (watermark as { appid?: unknown } | null | undefined)?.appid;
      return { phoneNumber, purePhoneNumber, countryCode: country, watermarkAppid: typeof watermarkAppid === "string" ? watermarkAppid : "" };
    },

    /**
     * msg_sec_check v2, scene 1 (profile): WeChat's verdict on a text the user wrote, as "pass",
     * "review" (possibly not allowed) or "risky"; `label` is its category code (100 normal).
     */
    async msgSecCheck(accessToken: string, openid: string, content: string, signal?: AbortSignal): Promise<ContentVerdict> {
      const query = new URLSearchParams({ access_token: accessToken });
      const body = await call("msg_sec_check", `${base}/wxa/msg_sec_check?${query}`, postJson({ content, version: 2, scene: 1, openid }), REPEATABLE, signal);
      const { suggest, label } = (body.result ?? {}) as Record<string, unknown>;
      if (suggest !== "pass" && suggest !== "review" && suggest !== "risky") throw new WechatError("unexpected", "msg_sec_check");
      return { suggest, label: typeof label === "number" ? label : 0, traceId: typeof body.trace_id === "string" ? body.trace_id : "" };
    },

    /** Whether `sessionKey` is still the user's current session_key; false once WeChat has rotated or expired it. */
    async checkSessionKey(accessToken: string, openid: string, sessionKey: string, signal?: AbortSignal): Promise<boolean> {
      const query = new URLSearchParams({ access_token: accessToken, signature: sessionKeySignature(sessionKey), openid, sig_method: "hmac_sha256" });
      try {
        await call("checksession", `${base}/wxa/checksession?${query}`, GET, REPEATABLE, signal);
        return true;
      } catch (e) {
        // 87009 is WeChat's definite "no" for this key, not a failure of the call.
        if (e instanceof WechatError && e.errcode === INVALID_SIGNATURE) return false;
        throw e;
      }
    },
  };
}

export type WechatClient = ReturnType<typeof createWechatClient>;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** WeChat's answers are a few hundred bytes; one that runs past this is not WeChat's. */
const MAX_ANSWER_BYTES = 1 << 20;

/** An HTTP answer: its status and whole body, or a null body when it broke off or ran too long. */
interface Answer {
  status: number;
  body: Buffer | null;
}

/**
 * One HTTP exchange through undici's dispatcher, the body gathered into one buffer. Rejects with
 * undici's error when no answer came, as its request() does; a later failure leaves the body null.
 * Not request(), whose body stream cost about 40 µs a call (docs/performance.md).
 */
function exchange(dispatcher: Dispatcher, url: string, init: HttpRequest, signal: PlainAbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const { origin, pathname, search } = new URL(url);
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let size = 0;
    const chunks: Buffer[] = [];
    const onAbort = () => controller?.abort(signal.reason as Error);
    const settle = () => signal.removeEventListener("abort", onAbort);
    const handler: Dispatcher.DispatchHandler = {
      // Called when the request goes out on a socket; an abort before that is applied here.
      onRequestStart(c) {
        if (!controller) signal.addEventListener("abort", onAbort);
        controller = c;
        if (signal.aborted) c.abort(signal.reason as Error);
      },
      onResponseStart(_c, statusCode) {
        status = statusCode;
      },
      onResponseData(c, chunk) {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) c.abort(new Error("the answer is too large"));
        else chunks.push(chunk);
      },
      onResponseEnd() {
        settle();
        resolve({ status, body: Buffer.concat(chunks) });
      },
      onResponseError(_c, error) {
        settle();
        if (status) resolve({ status, body: null });
        else reject(error);
      },
    };
    try {
      dispatcher.dispatch({ origin, path: pathname + search, method: init.method, headers: init.headers, body: init.body }, handler);
    } catch (e) {
      settle();
      reject(e);
    }
  });
}

/** The JSON object in a body, or null when it is not one. */
function jsonObjectOf(body: Buffer | null): Record<string, unknown> | null {
  if (!body) return null;
  try {
    const value: unknown = JSON.parse(body.toString("utf8"));
    return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

interface AttemptSignal {
  signal: PlainAbortSignal;
  timedOut(): boolean;
  /** Clears the timer and the link to the caller's signal. */
  release(): void;
}

/**
 * Aborts after timeoutMs or when the caller's signal does, and is released when the attempt ends:
 * AbortSignal.timeout/any outlived the call (docs/performance.md). exchange() only listens to it.
 */
function attemptSignal(timeoutMs: number, caller?: AbortSignal): AttemptSignal {
  const signal = new PlainAbortSignal();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    signal.abort(new DOMException("the attempt timed out", "TimeoutError"));
  }, timeoutMs);
  const follow = () => signal.abort(caller!.reason);
  if (caller?.aborted) follow();
  else caller?.addEventListener("abort", follow, { once: true });
  return {
    signal,
    timedOut: () => timedOut,
    release() {
      clearTimeout(timer);
      caller?.removeEventListener("abort", follow);
    },
  };
}
