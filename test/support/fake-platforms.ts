// The platforms in process: WeChat's rules are the simulator's own state (single-use per-app codes,
// expiry on the test's clock, session keys, stable tokens), answered through the client interfaces
// the service uses, so a fast test spends no HTTP on them.
import type { AlipayClient } from "../../src/platforms/alipay-client.js";
import type { AppleVerifier } from "../../src/platforms/apple-verifier.js";
import type { PlatformClients } from "../../src/service/platform-login.js";
import { WechatApiError } from "../../src/simulator/protocol.js";
import { createWechatState, type Clock, type WechatState } from "../../src/simulator/wechat-state.js";
import { kindOfErrcode, WechatError, type WechatClient } from "../../src/wechat/wechat-client.js";

export interface FakePlatforms {
  clients: PlatformClients;
  /** WeChat's side, for minting login and phone codes (mintLoginCode, mintPhoneCode, ...). */
  wechat: WechatState;
}

/** The apps of each platform as appid -> secret. */
export function createFakePlatforms(wechatApps: Record<string, string>, qqApps: Record<string, string>, clock: Clock): FakePlatforms {
  const wechat = createWechatState(wechatApps, clock);
  const qq = fakeWechatClient(createWechatState(qqApps, clock));
  return { wechat, clients: { wechat: fakeWechatClient(wechat), qq, alipay: unsupported<AlipayClient>("alipay"), apple: unsupported<AppleVerifier>("apple") } };
}

/** Runs one WeChat API against the state, throwing what the real client throws for its errcode. */
function answer<T>(api: string, run: () => T): T {
  try {
    return run();
  } catch (e) {
    if (e instanceof WechatApiError) throw new WechatError(kindOfErrcode(e.errcode), api, e.errcode);
    throw e;
  }
}

function fakeWechatClient(state: WechatState): WechatClient {
  return {
    close: async () => undefined,
    async code2Session(app, code) {
      return answer("jscode2session", () => {
        state.authenticateApp(app.appid, app.secret);
        const { openid, session_key: sessionKey, unionid } = state.redeemLoginCode(app.appid, code);
        return { openid, sessionKey, ...(unionid ? { unionid } : {}) };
      });
    },
    async oauth2AccessToken(app, code) {
      return answer("oauth2_access_token", () => {
        state.authenticateApp(app.appid, app.secret);
        const { openid, scope, unionid } = state.redeemOauthCode(app.appid, code) as { openid: string; scope: string; unionid?: string };
        return { openid, scope, ...(unionid ? { unionid } : {}) };
      });
    },
    async stableToken(app) {
      return answer("stable_token", () => {
        state.authenticateApp(app.appid, app.secret);
        const { access_token: accessToken, expires_in: expiresIn } = state.stableToken(app.appid, false);
        return { accessToken, expiresIn };
      });
    },
    async msgSecCheck(accessToken, openid, content) {
      return answer("msg_sec_check", () => ({ ...state.judgeContent(state.authorize(accessToken), openid, content), traceId: "fake" }));
    },
    async getPhoneNumber(accessToken, code) {
      return answer("getuserphonenumber", () => {
        const info = state.redeemPhoneCode(state.authorize(accessToken), code);
        return { phoneNumber: info.phoneNumber, purePhoneNumber: info.purePhoneNumber, countryCode: String(info.countryCode), watermarkAppid: info.watermark.appid };
      });
    },
    async checkSessionKey(accessToken, openid, sessionKey) {
      return answer("checksession", () => {
        return state.currentSessionKey(state.authorize(accessToken), openid) === sessionKey;
      });
    },
  };
}

/** The fast level has no Alipay or Apple apps; their suites run against the simulator over HTTP. */
function unsupported<T>(platform: string): T {
  return new Proxy({}, { get: (_target, name) => () => Promise.reject(new Error(`${platform}.${String(name)} is not faked at the fast level`)) }) as T;
}
