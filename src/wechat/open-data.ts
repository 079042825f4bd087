import { createDecipheriv, createHash, createHmac, timingSafeEqual } from "node:crypto";

// WeChat's open-data crypto (wechat-api.md §4–6): data a mini-program gets from WeChat, encrypted
// or signed with the user's session_key. Errors say what went wrong, never with key or plaintext.

export type OpenDataErrorKind = "malformed" | "decrypt_failed" | "watermark_mismatch";

export class OpenDataError extends Error {
  constructor(
    readonly kind: OpenDataErrorKind,
    detail: string,
  ) {
    super(`open data: ${kind} (${detail})`);
  }
}

// Node's base64 decoder skips characters it does not know; this makes it refuse them instead.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function base64(value: string, name: string): Buffer {
  if (!BASE64.test(value)) throw new OpenDataError("malformed", `${name} is not base64`);
  return Buffer.from(value, "base64");
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Decrypts encryptedData (AES-128-CBC, PKCS#7, key = the base64-decoded session_key) and checks its watermark is `appid`'s. */
export function decryptOpenData(sessionKey: string, encryptedData: string, iv: string, appid: string): Record<string, unknown> {
  const key = base64(sessionKey, "session_key");
  const ivBytes = base64(iv, "iv");
  const ciphertext = base64(encryptedData, "encryptedData");
  if (key.length !== 16) throw new OpenDataError("malformed", "session_key is not 16 bytes");
  if (ivBytes.length !== 16) throw new OpenDataError("malformed", "iv is not 16 bytes");
  if (ciphertext.length === 0 || ciphertext.length % 16 !== 0) throw new OpenDataError("malformed", "encryptedData is not whole AES blocks");

  let data: unknown;
  try {
    const decipher = createDecipheriv("aes-128-cbc", key, ivBytes);
    const plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    data = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plaintext));
  } catch {
    // A wrong key mostly fails the padding; a wrong iv garbles the first block into text that is not JSON.
    throw new OpenDataError("decrypt_failed", "bad padding or not JSON");
  }
  if (!isObject(data)) throw new OpenDataError("decrypt_failed", "not a JSON object");
  const { watermark } = data;
  if (!isObject(watermark) || watermark.appid !== appid) throw new OpenDataError("watermark_mismatch", "watermark is missing or names another app");
  return data;
}

/** Whether `signature` is sha1(rawData + session_key), compared in constant time. */
export function rawDataSignatureMatches(rawData: string, sessionKey: string, signature: string): boolean {
  const expected = Buffer.from(
    createHash("sha1")
      .update(rawData + sessionKey, "utf8")
      .digest("hex"),
  );
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** HMAC-SHA256 as WeChat signs with it: keyed with the key string itself (UTF-8, not decoded), lowercase hex. */
export function hmacSha256Hex(key: string, message: string): string {
  return createHmac("sha256", Buffer.from(key, "utf8")).update(message, "utf8").digest("hex");
}

/** checkSessionKey's signature: the session_key's HMAC of the empty string. */
export function sessionKeySignature(sessionKey: string): string {
  return hmacSha256Hex(sessionKey, "");
}
