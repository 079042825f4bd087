import { hash } from "node:crypto";
import { decryptOpenData, OpenDataError, rawDataSignatureMatches } from "../wechat/open-data.js";
import { WechatError } from "../wechat/wechat-client.js";
import { apiError, fieldInvalid } from "./errors.js";
/** How long WeChat's one-time codes live: a retry inside it gets the first answer again. */
export const CODE_LIFETIME_MS = 5 * 60_000;
const MAX_ENCRYPTED_CHARS = 32 * 1024;
const MAX_IV_CHARS = 64;
const MAX_RAW_DATA_CHARS = 16 * 1024;
const MAX_CODE_CHARS = 256;
/** Keys for one-time codes: hashed, so the store never holds a redeemable code. */
export function codeKey(kind, appid, code) {
    return `${kind}:${appid}:${hash("sha256", code, "base64url")}`;
}
export function checkCode(field, code) {
    if (!code || code.length > MAX_CODE_CHARS || /\s/.test(code))
        throw fieldInvalid(field, "a WeChat code is required");
}
export function createWechatData({ wechat, broker, replays, now }) {
    /**
     * Why decryption failed, as the client can act on it: a session_key WeChat has since rotated
     * (wx.login again) is told apart from data that is simply bad, when WeChat can be asked.
     */
    async function failure(app, session, sessionKey, reason, message, signal) {
        const valid = await broker.withToken(app, (token) => wechat.checkSessionKey(token, session.openid, sessionKey, signal), signal).catch(() => true);
        if (!valid) {
            throw apiError("SESSION_KEY_STALE", "WeChat has replaced this session's session_key: call wx.login, Login again, then retry");
        }
        throw apiError(reason, message);
    }
    return {
        /** Decrypts data a mini-program got from WeChat with the session's session_key, checking signature and watermark. */
        async decrypt(app, session, input, signal) {
            if (!input.encryptedData || input.encryptedData.length > MAX_ENCRYPTED_CHARS)
                throw fieldInvalid("encrypted_data", "the encryptedData WeChat gave is required");
            if (!input.iv || input.iv.length > MAX_IV_CHARS)
                throw fieldInvalid("iv", "the iv WeChat gave is required");
            if (Boolean(input.rawData) !== Boolean(input.signature))
                throw fieldInvalid(input.rawData ? "signature" : "raw_data", "raw_data and signature go together");
            if (input.rawData && input.rawData.length > MAX_RAW_DATA_CHARS)
                throw fieldInvalid("raw_data", "too long");
            const { sessionKey } = session;
            if (!sessionKey) {
                throw apiError("SESSION_KEY_STALE", "this session has no WeChat session_key: call wx.login, Login again, then retry");
            }
            if (input.rawData && !rawDataSignatureMatches(input.rawData, sessionKey, input.signature ?? "")) {
                return failure(app, session, sessionKey, "SIGNATURE_INVALID", "signature does not match raw_data for this session", signal);
            }
            try {
                return decryptOpenData(sessionKey, input.encryptedData, input.iv, app.appid);
            }
            catch (e) {
                if (!(e instanceof OpenDataError))
                    throw e;
                if (e.kind === "malformed")
                    throw fieldInvalid("encrypted_data", "encryptedData and iv must be WeChat's base64 values");
                if (e.kind === "watermark_mismatch")
                    throw apiError("DECRYPT_FAILED", "the data belongs to another app (watermark)");
                return failure(app, session, sessionKey, "DECRYPT_FAILED", "the data could not be decrypted with this session's session_key", signal);
            }
        },
        /**
         * A phone-number button code redeemed through WeChat. The answer is kept for the code's life,
         * for this session's user only, so a retry neither fails with 40029 nor pays for a second call.
         */
        async phoneFromCode(app, session, code, signal) {
            checkCode("code", code);
            const key = codeKey("phone", app.appid, code);
            const earlier = async () => {
                const kept = await replays.recall(key);
                return kept && kept.openid === session.openid ? kept.phone : null;
            };
            const kept = await earlier();
            if (kept)
                return kept;
            let info;
            try {
                info = await broker.withToken(app, (token) => wechat.getPhoneNumber(token, code, signal), signal);
            }
            catch (e) {
                // A parallel request with the same code may have redeemed it a moment ago.
                if (e instanceof WechatError && e.kind === "code_invalid") {
                    const late = await earlier();
                    if (late)
                        return late;
                }
                throw e;
            }
            if (info.watermarkAppid && info.watermarkAppid !== app.appid)
                throw apiError("CODE_INVALID", "the phone code belongs to another app");
            const phone = { phoneNumber: info.phoneNumber, purePhoneNumber: info.purePhoneNumber, countryCode: info.countryCode };
            await replays.remember(key, { openid: session.openid, phone: phone }, new Date(now() + CODE_LIFETIME_MS));
            return phone;
        },
    };
}
/** The phone fields of decrypted legacy getPhoneNumber data. */
export function phoneFromOpenData(data) {
    const { phoneNumber, purePhoneNumber, countryCode } = data;
    if (typeof phoneNumber !== "string" || !phoneNumber)
        throw apiError("DECRYPT_FAILED", "the decrypted data has no phone number");
    return {
        phoneNumber,
        purePhoneNumber: typeof purePhoneNumber === "string" && purePhoneNumber ? purePhoneNumber : phoneNumber,
        countryCode: typeof countryCode === "string" || typeof countryCode === "number" ? String(countryCode) : "86",
    };
}
