import { createContextKey } from "@connectrpc/connect";
import { fieldInvalid } from "./errors.js";
import { checkCode } from "./wechat-data.js";
/**
 * An identity a client asserted without a code (seed 003's app login), set only by a seed route the
 * operator allowed to trust it. Never settable over the Connect API: context values are server-side.
 */
export const kAssertedSignIn = createContextKey(undefined, { description: "client-asserted sign-in" });
/** Exchanges a login credential with the app's platform. */
export function createPlatformLogin({ wechat, qq, alipay, apple }) {
    const secretOf = (app) => ({ appid: app.appid, secret: app.secret ?? "" });
    return async function signIn(app, credential, signal) {
        if (app.platform === "apple") {
            if (!credential.idToken || credential.idToken.length > 8192)
                throw fieldInvalid("id_token", "the identity token from Sign in with Apple is required");
            const { sub } = await apple.verify(credential.idToken, { audience: [app.appid], ...(credential.nonce ? { nonce: credential.nonce } : {}) });
            return { openid: sub };
        }
        if (credential.idToken)
            throw fieldInvalid("id_token", `a ${app.platform} app signs in with a code`);
        checkCode("code", credential.code);
        switch (app.platform) {
            case "wechat-miniprogram":
                return wechat.code2Session(secretOf(app), credential.code, signal);
            case "qq-miniprogram": {
                const { openid, sessionKey } = await qq.code2Session(secretOf(app), credential.code, signal);
                return { openid, sessionKey };
            }
            case "wechat-official-account":
            case "wechat-app":
            case "wechat-website": {
                const { openid, unionid } = await wechat.oauth2AccessToken(secretOf(app), credential.code, signal);
                return { openid, ...(unionid ? { unionid } : {}) };
            }
            case "alipay-miniprogram": {
                const keys = { appid: app.appid, privateKeyPem: app.privateKey ?? "", alipayPublicKeyPem: app.alipayPublicKey ?? "" };
                return { openid: (await alipay.oauthToken(keys, credential.code, signal)).userId };
            }
        }
    };
}
