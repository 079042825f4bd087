import { createCipheriv, createHmac, randomBytes } from "node:crypto";
/** URL-safe random text carrying `bytes` bytes of entropy. */
export function randomToken(bytes) {
    return randomBytes(bytes).toString("base64url");
}
/** Shaped like a real openid: "o" followed by 27 URL-safe characters. */
export function randomOpenid() {
    return `o${randomToken(20)}`;
}
/** A session_key is the base64 of 16 random bytes (24 characters). */
export function randomSessionKey() {
    return randomBytes(16).toString("base64");
}
/** checkSessionKey's signature: HMAC-SHA256 keyed with the session_key string, over "". */
export function sessionSignature(sessionKey) {
    return createHmac("sha256", Buffer.from(sessionKey, "utf8")).update("").digest("hex");
}
/** Open data as a mini-program receives it: AES-128-CBC/PKCS#7 under the base64-decoded session_key. */
export function encryptOpenData(sessionKey, plaintext) {
    const iv = randomBytes(16);
    const cipher = createCipheriv("aes-128-cbc", Buffer.from(sessionKey, "base64"), iv);
    const encrypted = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return { encryptedData: encrypted.toString("base64"), iv: iv.toString("base64") };
}
