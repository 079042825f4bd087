import { createPrivateKey, createPublicKey, createSign, createVerify } from "node:crypto";
import { shanghaiTimestamp } from "./shanghai-time.js";
export class AlipayError extends Error {
    kind;
    subCode;
    constructor(kind, 
    /** Alipay's sub_code (e.g. "isv.code-invalid"), when it sent one; never secret. */
    subCode) {
        super(`alipay oauth.token: ${kind}${subCode === undefined ? "" : ` (${subCode})`}`);
        this.kind = kind;
        this.subCode = subCode;
        this.name = "AlipayError";
    }
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
export function kindOfAlipayError(code, subCode) {
    if (subCode === CODE_INVALID)
        return "code_invalid";
    if (code === SYSTEM_BUSY || subCode?.startsWith("isp."))
        return "unavailable";
    if ((code !== undefined && MISCONFIGURED_CODES.has(code)) || subCode?.startsWith("isv.") || subCode?.startsWith("aop.")) {
        return "misconfigured";
    }
    return "unexpected";
}
/** The text RSA2 signs: non-empty params except `sign`, sorted by key (code-unit order = ASCII), `k=v` joined by `&`, values raw. */
export function signingContent(params) {
    return Object.keys(params)
        .filter((key) => key !== "sign" && params[key] !== "")
        .sort()
        .map((key) => `${key}=${params[key]}`)
        .join("&");
}
function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/**
 * The raw text of top-level member `name`'s value in a JSON object text, exactly as sent: Alipay signs
 * those bytes, and re-serialising the parsed value may not reproduce them (escapes, spacing, numbers).
 * The text must already have passed JSON.parse. Undefined if the member is absent or appears twice.
 */
export function rawMember(json, name) {
    let found;
    let depth = 0;
    let i = 0;
    /** Index just past the string literal that starts at `at` (a quote). */
    const skipString = (at) => {
        let j = at + 1;
        while (json[j] !== '"')
            j += json[j] === "\\" ? 2 : 1;
        return j + 1;
    };
    const skipSpace = (at) => {
        let j = at;
        while (j < json.length && " \t\r\n".includes(json[j]))
            j++;
        return j;
    };
    while (i < json.length) {
        const ch = json[i];
        if (ch === '"') {
            const end = skipString(i);
            const afterKey = skipSpace(end);
            if (depth === 1 && json[afterKey] === ":") {
                // A top-level key: its value runs until the depth falls back to 1 at a ',' or the closing '}'.
                const key = JSON.parse(json.slice(i, end));
                const start = skipSpace(afterKey + 1);
                let j = start;
                let inner = 0;
                while (j < json.length) {
                    const c = json[j];
                    if (c === '"') {
                        j = skipString(j);
                        continue;
                    }
                    if (c === "{" || c === "[")
                        inner++;
                    else if (c === "}" || c === "]") {
                        if (inner === 0)
                            break;
                        inner--;
                    }
                    else if (c === "," && inner === 0)
                        break;
                    j++;
                }
                if (key === name) {
                    if (found !== undefined)
                        return undefined;
                    found = json.slice(start, j).trimEnd();
                }
                i = j;
                continue;
            }
            i = end;
            continue;
        }
        if (ch === "{" || ch === "[")
            depth++;
        else if (ch === "}" || ch === "]")
            depth--;
        i++;
    }
    return found;
}
function parseKeys(app) {
    try {
        return { privateKey: createPrivateKey(app.privateKeyPem), alipayKey: createPublicKey(app.alipayPublicKeyPem) };
    }
    catch {
        // Node's message could quote part of the PEM; say only that the keys are unusable.
        throw new AlipayError("misconfigured");
    }
}
function signRsa2(content, key) {
    return createSign("RSA-SHA256").update(content, "utf8").sign(key, "base64");
}
function verifyRsa2(content, signature, key) {
    try {
        return createVerify("RSA-SHA256").update(content, "utf8").verify(key, signature, "base64");
    }
    catch {
        return false;
    }
}
export function createAlipayClient(options) {
    const now = options.now ?? Date.now;
    /** POSTs once. Auth codes are single use, so nothing here is ever retried. */
    async function send(body, signal) {
        const timeout = AbortSignal.timeout(options.timeoutMs);
        try {
            const response = await fetch(options.gatewayUrl, {
                method: "POST",
                headers: { "content-type": "application/x-www-form-urlencoded;charset=utf-8" },
                body,
                signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
            });
            const text = await response.text();
            if (!response.ok)
                throw new AlipayError("unavailable");
            return text;
        }
        catch (e) {
            if (e instanceof AlipayError)
                throw e;
            throw new AlipayError("unavailable");
        }
    }
    return {
        /** Redeems a my.getAuthCode authCode; userId is `user_id` (2088…) or, for newer apps, `open_id`. */
        async oauthToken(app, authCode, signal) {
            const { privateKey, alipayKey } = parseKeys(app);
            const params = {
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
            let body;
            try {
                body = JSON.parse(text);
            }
            catch {
                throw new AlipayError("bad_response");
            }
            if (!isObject(body))
                throw new AlipayError("bad_response");
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
                const fields = (isObject(error) ? error : node);
                const code = typeof fields.code === "string" ? fields.code : undefined;
                const subCode = typeof fields.sub_code === "string" ? fields.sub_code : undefined;
                throw new AlipayError(kindOfAlipayError(code, subCode), subCode);
            }
            const raw = rawMember(text, RESPONSE_NODE);
            if (!isObject(node) || raw === undefined || sign === undefined || !verifyRsa2(raw, sign, alipayKey)) {
                throw new AlipayError("bad_response");
            }
            const userId = [node.user_id, node.open_id].find((id) => typeof id === "string" && id !== "");
            if (userId === undefined)
                throw new AlipayError("bad_response");
            return { userId };
        },
    };
}
