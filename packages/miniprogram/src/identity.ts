// createIdentity: login and the phone button, the tokens kept fresh and shared by every call,
// sign-out when the session is over, and the app's own requests with the same bearer.
import { errorOf, type HttpResponse, IdentityError, jsonOf, localError, reasonOf, SIGNED_OUT_REASONS } from "./errors.js";
import { adaptPlatform, type HttpRequest, type MiniProgramApi } from "./platform.js";
import { createSessionStore, isTokens, refreshDue, type Session, sessionOf, type Tokens, type User } from "./session.js";
import { createSend } from "./transport.js";

export interface IdentityOptions {
  /** The service's address, e.g. "https://id.example.com". */
  baseUrl: string;
  /** The app's key in the service's config (`apps[].id`) or its appid. */
  appId: string;
  /** The runtime's API object: `wx`, `qq`, `my`, `tt` or `uni`. */
  platform: MiniProgramApi;
  /** Milliseconds a call may take, retries included (default 15000). */
  timeout?: number;
  /** Requests on the wire at once, across the kit and `request()` (default 10, WeChat's limit). */
  maxInFlight?: number;
  /** uni-app's login provider (default "weixin"). */
  provider?: string;
}

export interface LoginResult {
  user: User | undefined;
  /** false: an explicit-registration app's new user, who must bind a phone (phoneLogin) first. */
  registered: boolean;
  firstLogin: boolean;
}

/** The phone button's `e.detail`: `code` (current flow) or legacy `encryptedData` and `iv`. */
export interface PhoneDetail {
  code?: string;
  encryptedData?: string;
  iv?: string;
  errMsg?: string;
}

export interface PhoneNumber {
  phoneNumber: string;
  purePhoneNumber: string;
  countryCode: string;
}

/** What updateProfile may set; an empty value clears the field. */
export interface Profile {
  nickname?: string;
  avatarUrl?: string;
  gender?: "GENDER_UNSPECIFIED" | "GENDER_MALE" | "GENDER_FEMALE";
  birthday?: string;
  email?: string;
  attributes?: Record<string, unknown>;
}

/** wx.request's options, for the app's own backend. */
export interface RequestOptions {
  url: string;
  method?: string;
  data?: unknown;
  header?: Record<string, string>;
  timeout?: number;
  dataType?: string;
  responseType?: string;
  /**
   * Retry after a network error or a 502/503/504. Default: only for GET, HEAD, OPTIONS, PUT and
   * DELETE, since a POST whose answer was lost may have been carried out.
   */
  retry?: boolean;
  /** Refused: request() returns a promise. */
  success?: unknown;
  fail?: unknown;
  complete?: unknown;
}

const PROFILE_FIELDS = ["nickname", "avatarUrl", "gender", "birthday", "email", "attributes"];
// A login code lives 5 minutes; one older than this may die on its way to WeChat.
const CODE_FRESH_MS = 4 * 60_000;
const SERVICE_PATH = "/identity.v1.IdentityService/";
const IDEMPOTENT = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"];
const REFRESH_RETRY_MS = 8000;

function phoneBody(detail: PhoneDetail | undefined): Record<string, string> {
  const { code, encryptedData, iv, errMsg } = detail || {};
  if (typeof code === "string" && code) return { code };
  if (typeof encryptedData === "string" && typeof iv === "string") return { encryptedData, iv };
  throw localError("PHONE_NOT_GRANTED", errMsg || "the phone button gave no code");
}

function tokensOf(body: { tokens?: unknown }): Tokens {
  if (!isTokens(body.tokens)) throw localError("BAD_RESPONSE", "the answer has no tokens");
  return body.tokens;
}

export function createIdentity(options: IdentityOptions) {
  const { baseUrl, appId, platform: api } = options || ({} as IdentityOptions);
  if (typeof baseUrl !== "string" || !/^https?:\/\/./.test(baseUrl)) throw new TypeError("createIdentity: baseUrl must be an http(s) address");
  if (typeof appId !== "string" || !appId) throw new TypeError("createIdentity: appId is required");
  if (!api || typeof api.request !== "function" || typeof api.getStorageSync !== "function") {
    throw new TypeError("createIdentity: platform must be wx, qq, my, tt or uni");
  }
  const timeout = options.timeout || 15_000;
  const platform = adaptPlatform(api, options.provider);
  const send = createSend(platform, options.maxInFlight || 10);
  const store = createSessionStore(platform, appId);
  const rpcUrl = baseUrl.replace(/\/+$/, "") + SERVICE_PATH;

  let session = store.load();
  let refreshing: Promise<Session> | undefined;
  let cachedCode: { code: string; at: number } | undefined;
  let fetchingCode: Promise<void> | undefined;
  const listeners: Array<(error: IdentityError) => void> = [];

  function adopt(tokens: Tokens, registered: boolean, user: User | undefined): Session {
    session = sessionOf(tokens, registered, user);
    store.save(session);
    return session;
  }

  function signOut(from: Session, error: IdentityError): void {
    // A call that set out with an older session says nothing about the current one.
    if (session !== from) return;
    session = undefined;
    store.clear();
    for (const listener of listeners.slice()) listener(error);
  }

  function post(method: string, body: unknown, token?: string): HttpRequest {
    const header: Record<string, string> = { "content-type": "application/json" };
    if (token) header.authorization = `Bearer ${token}`;
    return { url: rpcUrl + method, method: "POST", data: JSON.stringify(body || {}), header };
  }

  function bodyOf<T>(res: HttpResponse): T {
    if (res.statusCode !== 200) throw errorOf(res);
    const body = jsonOf(res.data);
    if (!body) throw localError("BAD_RESPONSE", "the answer is not JSON");
    return body as T;
  }

  /** Stores the user an answer carried with the session held now. */
  function keepUser(user: User | undefined): void {
    if (!session || !user) return;
    session.user = user;
    store.save(session);
  }

  function held(): Session {
    if (!session) throw new IdentityError("unauthenticated", "TOKEN_MISSING", "not logged in: call login() first", 401);
    return session;
  }

  /** Renews `used`: Refresh, or for a pending session (which has no refresh token) a new Login. */
  async function renew(used: Session): Promise<Session> {
    if (!used.refreshToken) {
      await login();
      return held();
    }
    // A retry within the service's refreshGraceSeconds (10 s by default) gets the same new tokens;
    // later, a Refresh whose answer was lost would count as reuse and end the session.
    const res = await send(post("Refresh", { refreshToken: used.refreshToken }), Math.min(timeout, REFRESH_RETRY_MS));
    // A login or logout meanwhile wins over what this refresh brings.
    if (session !== used) return held();
    if (res.statusCode === 200) {
      return adopt(tokensOf(bodyOf(res)), used.registered, used.user);
    }
    const error = errorOf(res);
    // Whatever the reason, a refresh token the service refuses will never work again.
    if (res.statusCode === 401) signOut(used, error);
    throw error;
  }

  /** One renewal at a time, shared by every call that needs it. */
  function refreshFrom(used: Session): Promise<Session> {
    if (session && session !== used) return Promise.resolve(session);
    if (!refreshing) {
      const done = () => {
        refreshing = undefined;
      };
      refreshing = renew(used);
      refreshing.then(done, done);
    }
    return refreshing;
  }

  /** The session to call with, refreshed first when its access token is about to expire. */
  async function current(): Promise<Session> {
    const s = held();
    if (!refreshDue(s)) return s;
    try {
      return await refreshFrom(s);
    } catch (error) {
      // Offline while the old token still works: use it, and refresh on a later call.
      if (session === s && Date.now() < s.expiresAt) return s;
      throw error;
    }
  }

  /** Sends with the bearer: on TOKEN_EXPIRED refreshes once and retries once; signs out on a dead session. */
  async function withToken(s: Session, sendWith: (token: string) => Promise<HttpResponse>): Promise<HttpResponse> {
    let used = s;
    let res = await sendWith(used.accessToken);
    if (res.statusCode === 401 && reasonOf(res) === "TOKEN_EXPIRED") {
      used = await refreshFrom(used);
      res = await sendWith(used.accessToken);
    }
    if (res.statusCode === 401) {
      const error = errorOf(res);
      if (SIGNED_OUT_REASONS.indexOf(error.reason) >= 0) signOut(used, error);
    }
    return res;
  }

  async function call<T = Record<string, unknown>>(method: string, body?: unknown, opts: { timeout?: number } = {}): Promise<T> {
    if (typeof method !== "string" || !/^[A-Z][A-Za-z]*$/.test(method)) throw new TypeError(`call: no IdentityService method "${method}"`);
    const s = await current();
    return bodyOf<T>(await withToken(s, (token) => send(post(method, body, token), opts.timeout || timeout)));
  }

  /**
   * Caches a login code now, so that a later login (or re-login) needs no platform.login() call.
   * Never rejects: a code it could not get is fetched again at login.
   */
  function prefetch(): Promise<void> {
    const done = () => {
      fetchingCode = undefined;
    };
    fetchingCode ??= (async () => {
      if (cachedCode && Date.now() - cachedCode.at < CODE_FRESH_MS) return;
      // A new code rotates the session_key the service holds: with a user's session, only fetch
      // when that key is dead anyway. A pending one will need a Login (it cannot Refresh).
      if (session?.registered && (await platform.checkSession())) return;
      cachedCode = { code: await platform.login(), at: Date.now() };
    })().then(done, done);
    return fetchingCode;
  }

  async function takeCode(): Promise<{ code: string; cached: boolean }> {
    await fetchingCode;
    const kept = cachedCode;
    cachedCode = undefined;
    if (kept && Date.now() - kept.at < CODE_FRESH_MS) return { code: kept.code, cached: true };
    return { code: await platform.login(), cached: false };
  }

  async function login(extra: { inviteCode?: string; inviterId?: string } = {}): Promise<LoginResult> {
    let { code, cached } = await takeCode();
    for (;;) {
      const res = await send(post("Login", { appId, code, inviteCode: extra.inviteCode, inviterId: extra.inviterId }), timeout);
      const reason = cached && res.statusCode !== 200 ? reasonOf(res) : undefined;
      // A cached code may have died meanwhile (its 5 minutes, or used elsewhere): one fresh one.
      if (reason === "CODE_INVALID" || reason === "CODE_USED") {
        code = await platform.login();
        cached = false;
        continue;
      }
      const body = bodyOf<{ tokens?: unknown; registered?: boolean; firstLogin?: boolean; user?: User }>(res);
      adopt(tokensOf(body), body.registered === true, body.user);
      return { user: body.user, registered: body.registered === true, firstLogin: body.firstLogin === true };
    }
  }

  /** Runs a call that decrypts with the session_key; when the service's key is stale, logs in again and retries once. */
  async function withFreshKey<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof IdentityError) || error.reason !== "SESSION_KEY_STALE") throw error;
      await login();
      return run();
    }
  }

  async function bindPhone(detail: PhoneDetail): Promise<User | undefined> {
    const body = phoneBody(detail);
    const res = await withFreshKey(() => call<{ user?: User; tokens?: unknown }>("BindPhone", body));
    // A pending session became a user's: it comes with new tokens.
    if (isTokens(res.tokens)) adopt(res.tokens, true, res.user);
    else keepUser(res.user);
    return res.user;
  }

  // Early, so that the phone button's handler never has to call wx.login (which rotates the session_key).
  prefetch();

  return {
    /** The signed-in user as last answered, or undefined. */
    get user(): User | undefined {
      return session?.registered ? session.user : undefined;
    },
    /** Whether a registered user's session is held (a pending one is not logged in). */
    isLoggedIn: () => !!session && session.registered,
    /** Calls `listener` when the session ends for good (revoked, reused, expired); returns an unsubscribe. */
    onSignedOut(listener: (error: IdentityError) => void): () => void {
      listeners.push(listener);
      return () => {
        const at = listeners.indexOf(listener);
        if (at >= 0) listeners.splice(at, 1);
      };
    },
    prefetch,
    login,
    /** The access token, refreshed if due, for platform calls request() does not cover (wx.uploadFile, wx.connectSocket). */
    token: () => current().then((s) => s.accessToken),
    /** Signs in (if needed) and binds the phone from the button's e.detail; registers an explicit app's new user. */
    async phoneLogin(detail: PhoneDetail): Promise<LoginResult> {
      phoneBody(detail);
      const first = session ? undefined : await login();
      const user = await bindPhone(detail);
      return { user, registered: true, firstLogin: !!first && first.firstLogin };
    },
    bindPhone,
    getPhone: (detail: PhoneDetail) => {
      const body = phoneBody(detail);
      return withFreshKey(() => call<PhoneNumber>("GetPhone", body));
    },
    async updateProfile(profile: Profile, opts: { expectedVersion?: number } = {}): Promise<User | undefined> {
      const user: Record<string, unknown> = {};
      for (const field of Object.keys(profile || {})) {
        if (PROFILE_FIELDS.indexOf(field) < 0) throw new IdentityError("invalid_argument", "FIELD_INVALID", `updateProfile: ${field} cannot be set`, 0, { field });
        const value = (profile as Record<string, unknown>)[field];
        if (value !== undefined) user[field] = value;
      }
      const mask = Object.keys(user);
      if (mask.length === 0) throw new IdentityError("invalid_argument", "FIELD_INVALID", "updateProfile: nothing to update");
      const res = await call<{ user?: User }>("UpdateUser", { user, updateMask: mask.join(","), expectedVersion: opts.expectedVersion });
      keepUser(res.user);
      return res.user;
    },
    /** Ends this session (or all the user's) on the service; the tokens are forgotten either way. */
    async logout(opts: { allSessions?: boolean } = {}): Promise<void> {
      const s = session;
      if (!s) return;
      session = undefined;
      store.clear();
      // An expired access token still ends its session, so no refresh first.
      const res = await send(post("Logout", { allSessions: !!opts.allSessions }, s.accessToken), timeout);
      if (res.statusCode !== 200 && res.statusCode !== 401) throw errorOf(res);
    },
    call,
    /** wx.request for the app's own backend, with the bearer and the same token rules; resolves with any HTTP status. */
    async request(req: RequestOptions): Promise<HttpResponse> {
      if (!req || typeof req.url !== "string") throw new TypeError("request: url is required");
      // Silently never calling them would be worse than saying so.
      if (req.success || req.fail || req.complete) throw new TypeError("request: returns a promise; no success/fail/complete");
      const header = req.header || {};
      const method = req.method || "GET";
      const build = (token?: string): HttpRequest => ({
        url: req.url,
        method,
        data: req.data,
        header: token ? Object.assign({}, header, { authorization: `Bearer ${token}` }) : header,
        dataType: req.dataType,
        responseType: req.responseType,
      });
      const t = req.timeout || timeout;
      const retry = req.retry === undefined ? IDEMPOTENT.indexOf(method.toUpperCase()) >= 0 : req.retry;
      const s = session ? await current().catch(() => session) : undefined;
      return s ? withToken(s, (token) => send(build(token), t, retry)) : send(build(), t, retry);
    },
  };
}

export type Identity = ReturnType<typeof createIdentity>;
