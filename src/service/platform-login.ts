import { createContextKey } from "@connectrpc/connect";
import type { App } from "../config/config.js";
import type { AlipayClient } from "../platforms/alipay-client.js";
import type { AppleVerifier } from "../platforms/apple-verifier.js";
import type { WechatClient } from "../wechat/wechat-client.js";
import { fieldInvalid } from "./errors.js";
import { checkCode } from "./wechat-data.js";

/** Who the platform says signed in. */
export interface PlatformSignIn {
  openid: string;
  /**
   * The WeChat open-platform id, shared by one person's mini-program, official-account, app and
   * website identities: the key that makes them one user. Only WeChat's, so no other platform's
   * id can ever merge into a WeChat user.
   */
  unionid?: string;
  /** WeChat/QQ mini-program session_key, kept server-side for decryption. */
  sessionKey?: string;
}

/**
 * An identity a client asserted without a code (seed 003's app login), set only by a seed route the
 * operator allowed to trust it. Never settable over the Connect API: context values are server-side.
 */
export const kAssertedSignIn = createContextKey<{ openid: string } | undefined>(undefined, { description: "client-asserted sign-in" });

export interface PlatformCredential {
  code: string;
  idToken: string;
  nonce: string;
}

export interface PlatformClients {
  wechat: WechatClient;
  qq: WechatClient;
  alipay: AlipayClient;
  apple: AppleVerifier;
}

/** Exchanges a login credential with the app's platform. */
export function createPlatformLogin({ wechat, qq, alipay, apple }: PlatformClients) {
  return async function signIn(app: App, credential: PlatformCredential, signal?: AbortSignal): Promise<PlatformSignIn> {
    if (app.platform === "apple") {
      if (!credential.idToken || credential.idToken.length > 8192) throw fieldInvalid("id_token", "the identity token from Sign in with Apple is required");
      const { sub } = await apple.verify(credential.idToken, { audience: [app.appid], ...(credential.nonce ? { nonce: credential.nonce } : {}) });
      return { openid: sub };
    }
    if (credential.idToken) throw fieldInvalid("id_token", `a ${app.platform} app signs in with a code`);
    checkCode("code", credential.code);
    switch (app.platform) {
      case "wechat-miniprogram":
        return wechat.code2Session(app, credential.code, signal);
      case "qq-miniprogram": {
        const { openid, sessionKey } = await qq.code2Session(app, credential.code, signal);
        return { openid, sessionKey };
      }
      case "wechat-official-account":
      case "wechat-app":
      case "wechat-website": {
        const { openid, unionid } = await wechat.oauth2AccessToken(app, credential.code, signal);
        return { openid, ...(unionid ? { unionid } : {}) };
      }
      case "alipay-miniprogram": {
        const keys = { appid: app.appid, privateKeyPem: app.privateKey, alipayPublicKeyPem: app.alipayPublicKey };
        return { openid: (await alipay.oauthToken(keys, credential.code, signal)).userId };
      }
    }
  };
}

export type PlatformLogin = ReturnType<typeof createPlatformLogin>;
