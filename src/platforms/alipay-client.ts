import { createPrivateKey, createPublicKey, createSign, createVerify, type KeyObject } from "node:crypto";
import { shanghaiTimestamp } from "./shanghai-time.js";

// Talks to the Alipay open-platform gateway (or the simulator) for mini-program login:
// alipay.system.oauth.token turns a my.getAuthCode authCode into the user's id (wechat-api.md §7b).
// Requests are signed RSA2 with the app's private key; answers are checked against Alipay's public key.

export type AlipayErrorKind =
  /** The auth code is wrong, used, expired or another app's (isv.code-invalid). */
  | "code_invalid"
  /** Our side is wrong: app id, keys, signature, permissions. */
  | "misconfigured"
  /** The answer is not one Alipay signed, or lacks what it must carry. */
  | "bad_response"
  /** Network, timeout, HTTP error or Alipay's own "system busy". */
  | "unavailable"
  /** An error Alipay documents for other situations; nothing to branch on. */
  | "unexpected";

export class AlipayError extends Error {
  constructor(
    readonly kind: AlipayErrorKind,
    /** Alipay's sub_code (e.g. "isv.code-invalid"), when it sent one; never secret. */
    readonly subCode?: string,
  ) {
    super(`alipay oauth.token: ${kind}${subCode === undefined ? "" : ` (${subCode})`}`);
    this.name = "AlipayError";
  }
}

export interface AlipayApp {
  appid: string;
  /** The app's RSA private key (PKCS#8 or PKCS#1 PEM, 2048 bits or more). */
  privateKeyPem: string;
  /** The "Alipay public key" from the open-platform console, as PEM. */
  alipayPublicKeyPem: string;
}

export interface AlipayClientOptions {
  /** e.g. https://openapi.alipay.com/gateway.do, or the simulator's `${url}/alipay/gateway.do`. */
  gatewayUrl: string;
  timeoutMs: number;
  /** Clock for the request timestamp; defaults to Date.now. */
  now?: () => number;
}

const METHOD = "alipay.system.oauth.token";
const RESPONSE_NODE = "alipay_system_oauth_token_response";
const ERROR_NODE = "error_response";

const CODE_INVALID = "isv.code-invalid";
/** Alipay's top-level `code` for "service currently unavailable"; its sub_codes start with isp. */
const SYSTEM_BUSY = "20000";
/** Top-level codes that mean our request or setup is wrong (missing/invalid arguments, permissions, token). */
const MISCONFIGURED_CODES = new Set(["20001", "40001", "40002", "40006"]);

/** What an error answer means for us; branches on sub_code and code, never on msg/sub_msg. */
export function kindOfAlipayError(code: string | undefined, subCode: string | undefined): AlipayErrorKind {
  if (subCode === CODE_INVALID) return "code_invalid";
  if (code === SYSTEM_BUSY || subCode?.startsWith("isp.")) return "unavailable";
  if ((code !== undefined && MISCONFIGURED_CODES.has(code)) || subCode?.startsWith("isv.") || subCode?.startsWith("aop.")) {
    return "misconfigured";
  }
  return "unexpected";
}

/** The text RSA2 signs: non-empty params except `sign`, sorted by key (code-unit order = ASCII), `k=v` joined by `&`, values raw. */
export function signingContent(params: Record<string, string>): string {
  return Object.keys(params)
    .filter((key) => key !== "sign" && params[key] !== "")
    .sort()
    .map((key) => `${key}=${params[key]}`)
    .join("&");
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The raw text of top-level member `name`'s value in a JSON object text, exactly as sent: Alipay signs
 * those bytes, and re-serialising the parsed value may not reproduce them (escapes, spacing, numbers).
 * The text must already have passed JSON.parse. Undefined if the member is absent or appears twice.
 */
export function rawMember(json: string, name: string): string | undefined {
  let found: string | undefined;
  let depth = 0;
  let i = 0;
  /** Index just past the string literal that starts at `at` (a quote). */
  const skipString = (at: number): number => {
    let j = at + 1;
    while (json[j] !== '"') j += json[j] === "\\" ? 2 : 1;
    return j + 1;
  };
  const skipSpace = (at: number): number => {
    let j = at;
    while (j < json.length && " \t\r\n".includes(json[j]!)) j++;
    return j;
  };
  while (i < json.length) {
    const ch = json[i]!;
    if (ch === '"') {
      const end = skipString(i);
      const afterKey = skipSpace(end);
      if (depth === 1 && json[afterKey] === ":") {
        // A top-level key: its value runs until the depth falls back to 1 at a ',' or the closing '}'.
        const key = JSON.parse(json.slice(i, end)) as string;
        const start = skipSpace(afterKey + 1);
        let j = start;
        let inner = 0;
        while (j < json.length) {
          const c = json[j]!;
          if (c === '"') {
            j = skipString(j);
            continue;
          }
          if (c === "{" || c === "[") inner++;
          else if (c === "}" || c === "]") {
            if (inner === 0) break;
            inner--;
          } else if (c === "," && inner === 0) break;
          j++;
        }
        if (key === name) {
          if (found !== undefined) return undefined;
          found = json.slice(start, j).trimEnd();
        }
        i = j;
        continue;
      }
      i = end;
      continue;
    }
    if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") depth--;
    i++;
  }
  return found;
}

function parseKeys(app: AlipayApp): { privateKey: KeyObject; alipayKey: KeyObject } {
  try {
    return { privateKey: createPrivateKey(app.privateKeyPem), alipayKey: createPublicKey(app.alipayPublicKeyPem) };
  } catch {
    // Node's message could quote part of the PEM; say only that the keys are unusable.
    throw new AlipayError("misconfigured");
  }
}

function signRsa2(content: string, key: KeyObject): string {
  return createSign("RSA-SHA256").update(content, "utf8").sign(key, "base64");
}

function verifyRsa2(content: string, signature: string, key: KeyObject): boolean {
  try {
    return createVerify("RSA-SHA256").update(content, "utf8").verify(key, signature, "base64");
  } catch {
    return false;
  }
}

export function createAlipayClient(options: AlipayClientOptions) {
  const now = options.now ?? Date.now;

  /** POSTs once. Auth codes are single use, so nothing here is ever retried. */
  async function send(body: URLSearchParams, signal?: AbortSignal): Promise<string> {
    // Linked by hand: the caller's signal may be the service's plain one (docs/performance.md),
    // which AbortSignal.any refuses; and the timer goes with the attempt.
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(new Error("alipay timeout")), options.timeoutMs);
    const follow = () => attempt.abort(signal?.reason);
    if (signal?.aborted) follow();
    else signal?.addEventListener("abort", follow, { once: true });
    try {
      const response = await fetch(options.gatewayUrl, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded;charset=utf-8" },
        body,
        signal: attempt.signal,
      });
      const text = await response.text();
      if (!response.ok) throw new AlipayError("unavailable");
      return text;
    } catch (e) {
      if (e instanceof AlipayError) throw e;
      throw new AlipayError("unavailable");
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", follow);
    }
  }

  return {
    /** Redeems a my.getAuthCode authCode; userId is `user_id` (2088…) or, for newer apps, `open_id`. */
    async oauthToken(app: AlipayApp, authCode: string, signal?: AbortSignal): Promise<{ userId: string }> {
      const { privateKey, alipayKey } = parseKeys(app);
      const params: Record<string, string> = {
        app_id: app.appid,
        method: METHOD,
        format: "JSON",
        charset: "utf-8",
        sign_type: "RSA2",
        timestamp: shanghaiTimestamp(now()),
        version: "1.0",
        grant_type: "authorization_code",
        code: authCode,
      };
      params.sign = signRsa2(signingContent(params), privateKey);
      const text = await send(new URLSearchParams(params), signal);

      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new AlipayError("bad_response");
      }
      if (!isObject(body)) throw new AlipayError("bad_response");
      const sign = typeof body.sign === "string" && body.sign !== "" ? body.sign : undefined;

      const node = body[RESPONSE_NODE];
      const error = body[ERROR_NODE];
      if (isObject(error) || (isObject(node) && node.code !== undefined && node.code !== "10000")) {
        // An error answer only makes the login fail, which anyone on the path could do anyway, so an
        // unsigned one is believed; a signed one must verify, as it is then claiming to be Alipay's.
        const nodeName = isObject(error) ? ERROR_NODE : RESPONSE_NODE;
        const raw = rawMember(text, nodeName);
        if (sign !== undefined && (raw === undefined || !verifyRsa2(raw, sign, alipayKey))) {
          throw new AlipayError("bad_response");
        }
        const fields = (isObject(error) ? error : node) as Record<string, unknown>;
        const code = typeof fields.code === "string" ? fields.code : undefined;
        const subCode = typeof fields.sub_code === "string" ? fields.sub_code : undefined;
        throw new AlipayError(kindOfAlipayError(code, subCode), subCode);
      }

      const raw = rawMember(text, RESPONSE_NODE);
      if (!isObject(node) || raw === undefined || sign === undefined || !verifyRsa2(raw, sign, alipayKey)) {
        throw new AlipayError("bad_response");
      }
      const userId = [node.user_id, node.open_id].find((id): id is string => typeof id === "string" && id !== "");
      if (userId === undefined) throw new AlipayError("bad_response");
      return { userId };
    },
  };
}

export type AlipayClient = ReturnType<typeof createAlipayClient>;
