import { randomOpenid, randomSessionKey, randomToken } from "./crypto.js";
import { WechatApiError } from "./protocol.js";

// WeChat's side of the world: apps, codes, session keys and access tokens, with WeChat's rules.
// Failures throw WechatApiError; the HTTP layer turns them into errcode bodies. QQ's mini-program
// login works the same way, so the simulated QQ is a second, separate instance of this state.

const CODE_TTL_MS = 5 * 60_000;
const TOKEN_TTL_MS = 7200_000;
/** What sns/oauth2/access_token says the user access_token lasts (seconds). */
const OAUTH_TOKEN_TTL_S = 7200;
/** Stable tokens are renewed this long before they expire; old and new overlap meanwhile. */
const TOKEN_RENEW_WINDOW_MS = 300_000;

export interface Clock {
  now(): number;
  advance(ms: number): void;
}

/** The options' clock plus whatever /sim/clock has added, so expiry can be tested without waiting. */
export function createClock(base: () => number): Clock {
  let offsetMs = 0;
  return {
    now: () => base() + offsetMs,
    advance: (ms) => {
      offsetMs += ms;
    },
  };
}

export interface LoginCodeRequest {
  appid: string;
  openid?: string;
  unionid?: string;
  sessionKey?: string;
  blocked?: boolean;
}

/** A code from the official-account, mobile-app or website OAuth authorize step. */
export interface OauthCodeRequest {
  appid: string;
  openid?: string;
  unionid?: string;
  scope: string;
}

export interface PhoneCodeRequest {
  appid: string;
  phoneNumber: string;
  countryCode: string;
}

interface Expiring {
  expiresAt: number;
}

interface LoginCode {
  openid: string;
  unionid?: string;
  sessionKey: string;
  blocked: boolean;
}

interface OauthCode {
  openid: string;
  unionid?: string;
  scope: string;
}

interface PhoneCode extends Expiring {
  appid: string;
  phoneNumber: string;
  countryCode: string;
  issuedAt: number;
  used: boolean;
}

interface AccessToken extends Expiring {
  value: string;
  appid: string;
  revoked: boolean;
}

// An expired code answers 40029 just like an unknown one, so forgetting it changes nothing a
// client can see and keeps a long-running dev simulator from growing without bound.
/**
 * Drops expired codes. Every code lives CODE_TTL_MS and the clock only moves forward, so a Map's
 * insertion order is expiry order: stop at the first live one instead of walking them all.
 */
function forgetExpired(codes: Map<string, Expiring>, now: number): void {
  for (const [code, record] of codes) {
    if (record.expiresAt > now) return;
    codes.delete(code);
  }
}

/**
 * Single-use codes bound to one app, valid for 5 minutes, redeemed the way jscode2session and
 * sns/oauth2/access_token redeem them: unknown, foreign or expired is 40029, used again is 40163.
 */
function createCodeBook<T>(clock: Clock) {
  const codes = new Map<string, Expiring & { appid: string; used: boolean; grant: T }>();
  return {
    mint(appid: string, grant: T): string {
      forgetExpired(codes, clock.now());
      const code = randomToken(24);
      codes.set(code, { appid, grant, used: false, expiresAt: clock.now() + CODE_TTL_MS });
      return code;
    },

    redeem(appid: string, code: string): T {
      const record = codes.get(code);
      // A code minted for another app is, to this app, a code that does not exist.
      if (record === undefined || record.appid !== appid) throw new WechatApiError(40029);
      if (record.used) throw new WechatApiError(40163);
      if (record.expiresAt <= clock.now()) throw new WechatApiError(40029);
      record.used = true;
      return record.grant;
    },
  };
}

export type WechatState = ReturnType<typeof createWechatState>;

export interface ContentWords {
  risky: string[];
  review: string[];
}

export function createWechatState(apps: Record<string, string>, clock: Clock) {
  const secrets = new Map(Object.entries(apps));
  const loginCodes = createCodeBook<LoginCode>(clock);
  const oauthCodes = createCodeBook<OauthCode>(clock);
  const phoneCodes = new Map<string, PhoneCode>();
  /** `appid openid` -> the user's current session_key (one valid key per user, as in WeChat). */
  const sessionKeys = new Map<string, string>();
  const tokens = new Map<string, AccessToken>();
  /** appid -> the token stable_token hands out in normal mode. */
  const latestTokens = new Map<string, AccessToken>();
  /** What msg_sec_check finds in a text: any of these words (case-insensitive) makes it risky, or for review. */
  const contentWords: ContentWords = { risky: [], review: [] };

  const userKey = (appid: string, openid: string) => `${appid} ${openid}`;
  const seconds = (ms: number) => Math.floor(ms / 1000);

  function issueToken(appid: string, now: number): AccessToken {
    const token = { value: randomToken(96), appid, expiresAt: now + TOKEN_TTL_MS, revoked: false };
    tokens.set(token.value, token);
    latestTokens.set(appid, token);
    return token;
  }

  return {
    isKnownApp(appid: string): boolean {
      return secrets.has(appid);
    },

    authenticateApp(appid: string, secret: string): void {
      const expected = secrets.get(appid);
      if (expected === undefined) throw new WechatApiError(40013);
      if (expected !== secret) throw new WechatApiError(40125);
    },

    /** What wx.login does: a new code, and a new current session_key for the user. */
    mintLoginCode(request: LoginCodeRequest): { code: string; openid: string; unionid?: string } {
      const openid = request.openid ?? randomOpenid();
      const sessionKey = request.sessionKey ?? randomSessionKey();
      sessionKeys.set(userKey(request.appid, openid), sessionKey);
      const code = loginCodes.mint(request.appid, {
        openid,
        unionid: request.unionid,
        sessionKey,
        blocked: request.blocked ?? false,
      });
      return { code, openid, unionid: request.unionid };
    },

    redeemLoginCode(appid: string, code: string): { openid: string; session_key: string; unionid?: string } {
      const record = loginCodes.redeem(appid, code);
      // The code is spent even though the user is refused.
      if (record.blocked) throw new WechatApiError(40226);
      const body = { openid: record.openid, session_key: record.sessionKey };
      return record.unionid === undefined ? body : { ...body, unionid: record.unionid };
    },

    /** What the OAuth authorize page (or the app SDK, or the website QR scan) hands the redirect. */
    mintOauthCode(request: OauthCodeRequest): { code: string; openid: string; unionid?: string } {
      const openid = request.openid ?? randomOpenid();
      const code = oauthCodes.mint(request.appid, { openid, unionid: request.unionid, scope: request.scope });
      return { code, openid, unionid: request.unionid };
    },

    /** sns/oauth2/access_token. The user tokens are made up and kept nowhere: nothing here accepts them back. */
    redeemOauthCode(appid: string, code: string) {
      const grant = oauthCodes.redeem(appid, code);
      const body = {
        access_token: randomToken(64),
        expires_in: OAUTH_TOKEN_TTL_S,
        refresh_token: randomToken(64),
        openid: grant.openid,
        scope: grant.scope,
      };
      return grant.unionid === undefined ? body : { ...body, unionid: grant.unionid };
    },

    currentSessionKey(appid: string, openid: string): string | undefined {
      return sessionKeys.get(userKey(appid, openid));
    },

    mintPhoneCode(request: PhoneCodeRequest): string {
      forgetExpired(phoneCodes, clock.now());
      const code = randomToken(32);
      const now = clock.now();
      phoneCodes.set(code, { ...request, issuedAt: now, expiresAt: now + CODE_TTL_MS, used: false });
      return code;
    },

    redeemPhoneCode(appid: string, code: string) {
      const record = phoneCodes.get(code);
      // Unknown, foreign, used and expired codes all get the same answer from WeChat.
      if (record === undefined || record.appid !== appid || record.used || record.expiresAt <= clock.now()) {
        throw new WechatApiError(40029);
      }
      record.used = true;
      const prefix = `+${record.countryCode}`;
      return {
        phoneNumber: record.phoneNumber,
        purePhoneNumber: record.phoneNumber.startsWith(prefix) ? record.phoneNumber.slice(prefix.length) : record.phoneNumber,
        countryCode: Number(record.countryCode),
        watermark: { timestamp: seconds(record.issuedAt), appid },
      };
    },

    /** getStableAccessToken for an authenticated app. */
    stableToken(appid: string, forceRefresh: boolean): { access_token: string; expires_in: number } {
      const now = clock.now();
      let token = latestTokens.get(appid);
      if (forceRefresh) {
        // A forced refresh is for a leaked token: everything issued before stops working at once.
        for (const old of tokens.values()) if (old.appid === appid) old.revoked = true;
        token = issueToken(appid, now);
      } else if (token === undefined || token.expiresAt - now <= TOKEN_RENEW_WINDOW_MS) {
        // The previous token is left alone: it stays valid until its own expiry.
        token = issueToken(appid, now);
      }
      // Rounded down, as WeChat never promises more than it has (at most 7200).
      return { access_token: token.value, expires_in: Math.floor((token.expiresAt - now) / 1000) };
    },

    /** Replaces the words msg_sec_check looks for. */
    setContentWords(words: ContentWords): void {
      contentWords.risky = words.risky.map((w) => w.toLowerCase());
      contentWords.review = words.review.map((w) => w.toLowerCase());
    },

    /** msg_sec_check's verdict on a text of a user who has a session in the app (40003 otherwise). */
    judgeContent(appid: string, openid: string, content: string): { suggest: "pass" | "review" | "risky"; label: number } {
      if (!sessionKeys.has(userKey(appid, openid))) throw new WechatApiError(40003);
      const text = content.toLowerCase();
      // Labels as WeChat numbers them: 100 normal, 20006 illegal, 21000 other.
      if (contentWords.risky.some((w) => text.includes(w))) return { suggest: "risky", label: 20006 };
      if (contentWords.review.some((w) => text.includes(w))) return { suggest: "review", label: 21000 };
      return { suggest: "pass", label: 100 };
    },

    /** The appid an access_token belongs to. */
    authorize(accessToken: string | undefined): string {
      if (accessToken === undefined) throw new WechatApiError(41001);
      const token = tokens.get(accessToken);
      if (token === undefined || token.revoked) throw new WechatApiError(40001);
      if (token.expiresAt <= clock.now()) throw new WechatApiError(42001);
      return token.appid;
    },
  };
}
