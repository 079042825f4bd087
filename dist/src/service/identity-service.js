import { hash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { IdentityService, TokensSchema } from "../../gen/identity/v1/identity_pb.js";
import { AccountDisabledError, TokenError } from "../auth/errors.js";
import { hashPassword, verifyPassword } from "../auth/passwords.js";
import { identityKey, inviteKey, phoneKey, usernameKey } from "../store/store.js";
import { WechatError } from "../wechat/wechat-client.js";
import { createAccountLibrary } from "./accounts.js";
import { createAttemptLimiter } from "./attempt-limiter.js";
import { kClientAddress } from "./interceptors.js";
import { createPlatformLogin, kAssertedSignIn } from "./platform-login.js";
import { apiError, fieldInvalid, toConnectError } from "./errors.js";
import { checkUsername, cleanNickname, planProfilePatch, updatePaths } from "./user-update.js";
import { userToWire } from "./user-view.js";
import { codeKey, CODE_LIFETIME_MS, createWechatData, phoneFromOpenData } from "./wechat-data.js";
const DEFAULT_RATE_LIMITS = { loginsPerAddress: 600, loginsPerApp: 30_000, phoneCallsPerUser: 20, callsPerUser: 600, refreshesPerAddress: 600 };
const MINUTE = 60_000;
const DEFAULT_PASSWORD_LIMITS = {
    perAccount: { max: 5, windowMs: 15 * 60_000 },
    perAddress: { max: 30, windowMs: 15 * 60_000 },
};
const PASSWORD_CHARS = { min: 8, max: 128 };
/** Wrong `x-api-key` values per client address: a configured caller sends its one key, so a few wrong ones are a probe. */
const API_KEY_FAILURES_PER_ADDRESS = { max: 10, windowMs: 15 * 60_000 };
/** Failures that are nobody's guess: the platform or the store did not answer. */
const OUTAGE_CODES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.ResourceExhausted, Code.Internal]);
const MAX_TOKEN_CHARS = 4096;
/** WeChat's placeholder profile since 2022: not a name anyone chose. */
const PLACEHOLDER_NICKNAME = "微信用户";
export function createIdentityService({ apps, users, sessions, replays, platforms, broker, passwordLimits = DEFAULT_PASSWORD_LIMITS, internalCallers = [], rateLimits = DEFAULT_RATE_LIMITS, now = Date.now, }) {
    const callersByKeyHash = new Map(internalCallers.map((c) => [c.keySha256, c.name]));
    const rates = {
        loginAddress: createAttemptLimiter({ max: rateLimits.loginsPerAddress, windowMs: MINUTE }, now),
        loginApp: createAttemptLimiter({ max: rateLimits.loginsPerApp, windowMs: MINUTE }, now),
        phone: createAttemptLimiter({ max: rateLimits.phoneCallsPerUser, windowMs: MINUTE }, now),
        user: createAttemptLimiter({ max: rateLimits.callsPerUser, windowMs: MINUTE }, now),
        refreshAddress: createAttemptLimiter({ max: rateLimits.refreshesPerAddress, windowMs: MINUTE }, now),
    };
    const { wechat } = platforms;
    const signIn = createPlatformLogin(platforms);
    const accountFailures = createAttemptLimiter(passwordLimits.perAccount, now);
    const addressFailures = createAttemptLimiter(passwordLimits.perAddress, now);
    const apiKeyFailures = createAttemptLimiter(API_KEY_FAILURES_PER_ADDRESS, now);
    const appsByName = new Map();
    for (const app of apps)
        appsByName.set(app.id, app).set(app.appid, app);
    const accounts = createAccountLibrary({ users, now });
    const wechatData = createWechatData({ wechat, broker, replays, now });
    function resolveApp(appId) {
        if (!appId) {
            if (apps.length === 1 && apps[0])
                return apps[0];
            throw fieldInvalid("app_id", "required when more than one app is configured");
        }
        const app = appsByName.get(appId);
        if (!app)
            throw apiError("APP_NOT_FOUND", `no app "${appId.slice(0, 64)}" is configured`, { appId: appId.slice(0, 64) });
        return app;
    }
    /** The WeChat mini-program a session was opened for: encrypted data and phone codes exist only there. */
    function wechatAppOf(session) {
        const app = appsByName.get(session.appId);
        // A session of an app no longer configured is over.
        if (!app)
            throw new TokenError("revoked");
        if (app.platform !== "wechat-miniprogram" || !app.secret) {
            throw apiError("PLATFORM_UNSUPPORTED", `this needs a WeChat mini-program session; "${app.id}" is ${app.platform}`);
        }
        return { ...app, secret: app.secret };
    }
    /**
     * The caller's live session and, for a user's session, its user, who must be active: a disabled
     * user's sessions stop working everywhere at once.
     */
    async function authenticate(ctx, { allowPending = false, token = bearerOf(ctx), limited = true, ending = false } = {}) {
        if (token.length > MAX_TOKEN_CHARS)
            throw new TokenError("invalid");
        const auth = await sessions.authenticate(token, { ending });
        const { userId } = auth.session;
        if (!userId && !allowPending) {
            throw apiError("NOT_REGISTERED", "this session has no user yet: call Oauth or BindPhone first");
        }
        if (limited)
            limit(rates.user, `session:${userId ?? auth.session.id}`, "too many requests for this user");
        return { ...auth, userId: userId ?? "", user: userId ? await accounts.activeUser(userId) : null };
    }
    /**
     * The internal service presenting `x-api-key`, or null for an end user; a wrong key is refused and
     * counted against the client address. An address at its limit is refused before its key is looked
     * up, even a right one: otherwise its guesses would go on being answered.
     */
    function internalCallerOf(ctx) {
        const key = ctx.requestHeader.get("x-api-key");
        if (key === null)
            return null;
        const address = ctx.values.get(kClientAddress);
        const wait = apiKeyFailures.retryAfter(address);
        if (wait)
            throw rateLimited(wait, "too many wrong x-api-key values from this address");
        // A lookup by the key's SHA-256, not a comparison of the key: timing can at most tell how a
        // guess's hash relates to a stored hash, which says nothing about the key (preimage resistance).
        const name = key.length <= 256 ? callersByKeyHash.get(hash("sha256", key, "hex")) : undefined;
        if (!name) {
            apiKeyFailures.fail(address);
            throw apiError("API_KEY_INVALID", "this x-api-key is not a configured internal caller's");
        }
        return name;
    }
    /** Counts one request against `limiter`; RESOURCE_EXHAUSTED / RATE_LIMITED with a retry hint when over. */
    function limit(limiter, key, message) {
        const wait = limiter.take(key);
        if (wait)
            throw rateLimited(wait, message);
    }
    /** An identity as a user record holds it, bound now. */
    function identityRecord({ platform, appid, openid, unionid }) {
        return { platform, appid, openid, ...(unionid ? { unionid } : {}), createdAt: new Date(now()) };
    }
    function identityOf(session, unionid = session.unionid) {
        return identityRecord({ ...session, unionid });
    }
    /** Answers a retried Login from the first one, or says the code is spent once the client has moved on. */
    async function replayLogin(record, code) {
        const replayed = await sessions.replay(record.sessionId, code);
        if (!replayed)
            throw new WechatError("code_used", "jscode2session", 40163);
        const user = replayed.session.userId ? await accounts.activeUser(replayed.session.userId) : null;
        return { tokens: tokensToWire(replayed.tokens), registered: record.registered, firstLogin: record.firstLogin, ...(user ? { user: userToWire(user) } : {}), openid: record.openid };
    }
    async function phoneOf(app, session, req, signal) {
        if (req.code)
            return wechatData.phoneFromCode(app, session, req.code, signal);
        if (!req.encryptedData && !req.iv)
            throw fieldInvalid("code", "the phone button's code (or the legacy encryptedData and iv) is required");
        return phoneFromOpenData(await wechatData.decrypt(app, session, req, signal));
    }
    /** A pending session's user, found or created from what the platform told us, and its first full tokens. */
    async function register(app, session, identity, profile, extraKeys = []) {
        const found = await accounts.findOrCreate(identity, { create: true, defaultRoles: app.defaultRoles, profile, extraKeys });
        if (!found)
            throw apiError("INTERNAL", "internal error");
        if (found.user.status === "disabled")
            throw new AccountDisabledError();
        const { tokens } = await sessions.promote(session, found.user.id);
        return { ...found, tokens: tokensToWire(tokens) };
    }
    function identityFrom(app, platform) {
        return identityRecord({ platform: app.platform, appid: app.appid, openid: platform.openid, unionid: platform.unionid });
    }
    function openSession(app, userId, identity, sessionKey, loginCode) {
        return sessions.open({ appId: app.id, userId, platform: identity.platform, appid: identity.appid, openid: identity.openid, unionid: identity.unionid, sessionKey }, loginCode || undefined);
    }
    /** The inviter named by id or invite code; refused when unknown. */
    async function inviterOf(req) {
        if (req.inviterId && req.inviteCode)
            throw fieldInvalid("invite_code", "give inviter_id or invite_code, not both");
        if (req.inviterId) {
            if (!(await users.get(req.inviterId)))
                throw fieldInvalid("inviter_id", "no user has this id");
            return req.inviterId.toLowerCase();
        }
        if (!req.inviteCode)
            return undefined;
        const [inviter] = req.inviteCode.length <= 16 ? await users.findByKeys([inviteKey(req.inviteCode)]) : [];
        if (!inviter)
            throw fieldInvalid("invite_code", "no user has this invite code");
        return inviter.id;
    }
    /**
     * Counts a password guess against the username and the client address before the hash is
     * verified, so however many arrive at once, at most the limit of them is ever evaluated (per
     * instance); RATE_LIMITED, counting nothing, when either is at its limit. The guess stays a
     * failure unless the caller says otherwise: `succeed` (the password was right) clears the
     * username's failures and takes back the address's count, as a right password never counted;
     * `cancel` takes both back, for an attempt that ended on an outage before any password was tried.
     */
    function reserveGuess(username, ctx) {
        const accountKey = `account:${username.toLowerCase()}`;
        const addressKey = `address:${ctx.values.get(kClientAddress)}`;
        const wait = Math.max(accountFailures.retryAfter(accountKey), addressFailures.retryAfter(addressKey));
        if (wait)
            throw rateLimited(wait, "too many failed sign-ins");
        const undoAccount = accountFailures.fail(accountKey);
        const undoAddress = addressFailures.fail(addressKey);
        return {
            succeed() {
                accountFailures.succeed(accountKey);
                undoAddress();
            },
            cancel() {
                undoAccount();
                undoAddress();
            },
        };
    }
    function checkNewPassword(field, password, username) {
        if ([...password].length < PASSWORD_CHARS.min || [...password].length > PASSWORD_CHARS.max) {
            throw fieldInvalid(field, `must be ${PASSWORD_CHARS.min}-${PASSWORD_CHARS.max} characters`);
        }
        if (password.toLowerCase() === username.toLowerCase())
            throw fieldInvalid(field, "must not be the username");
    }
    /**
     * Username and password. A wrong pair is BAD_CREDENTIALS whether or not the username exists
     * (same answer, same time, same count). With a bindCode, the code's platform identity is linked
     * to the account; an unknown username with a bindCode registers one, when the app registers users.
     * The bindCode is spent first, for every username: a refused code then answers, and counts, the
     * same whether or not the username exists.
     */
    async function passwordLogin(app, credential, bindCode, inviterId, ctx) {
        const { username = "", password = "" } = credential ?? {};
        checkUsername("password.username", username);
        if (!password || password.length > PASSWORD_CHARS.max)
            throw fieldInvalid("password.password", `required, at most ${PASSWORD_CHARS.max} characters`);
        const guess = reserveGuess(username, ctx);
        let platform;
        let account;
        try {
            platform = bindCode ? await signIn(app, { code: bindCode, idToken: "", nonce: "" }, ctx.signal) : null;
            [account] = await users.findByKeys([usernameKey(username)]);
        }
        catch (e) {
            // A refused code counts like a wrong password; an outage is not the caller's failure.
            if (OUTAGE_CODES.has(toConnectError(e).error.code))
                guess.cancel();
            throw e;
        }
        const matches = await verifyPassword(password, account?.passwordHash);
        if (!matches && !(account === undefined && platform && app.registration === "auto")) {
            throw apiError("BAD_CREDENTIALS", "the username or password is not right");
        }
        guess.succeed();
        if (account?.status === "disabled")
            throw new AccountDisabledError();
        const identity = platform ? identityFrom(app, platform) : null;
        let user;
        let created = false;
        if (account) {
            user = identity ? await linkIdentity(account, identity) : account;
        }
        else {
            // Registration: the bindCode's identity gets this username and password.
            checkNewPassword("password.password", password, username);
            const passwordHash = await hashPassword(password);
            const found = await accounts.findOrCreate(identity, { create: true, defaultRoles: app.defaultRoles, profile: { username, passwordHash, ...(inviterId ? { inviterId } : {}) } });
            if (!found)
                throw apiError("INTERNAL", "internal error");
            created = found.created;
            user = found.created ? found.user : await addPassword(found.user, username, passwordHash);
        }
        const { tokens } = await openSession(app, user.id, identity ?? identityRecord({ platform: "password", appid: app.appid, openid: user.id }), platform?.sessionKey);
        return { tokens: tokensToWire(tokens), registered: true, firstLogin: created, user: userToWire(user), openid: identity?.openid ?? "" };
    }
    /** Binds a platform identity to a password account, unless it is another user's. */
    async function linkIdentity(account, identity) {
        const [holder] = await users.findByKeys([identityKey(identity.platform, identity.appid, identity.openid)]);
        if (holder && holder.id !== account.id)
            throw apiError("IDENTITY_TAKEN", "this WeChat account is bound to another user");
        return accounts.bindIdentity(account, identity);
    }
    /** Gives an existing platform user the username and password it registers with. */
    async function addPassword(user, username, passwordHash) {
        // Checked on the record being written, so a parallel registration cannot rename the account.
        return accounts.update(user.id, (u) => {
            if (u.username)
                throw apiError("ACCOUNT_CONFLICT", "this WeChat account already has a username; sign in with it");
            return { ...u, username, passwordHash };
        });
    }
    return {
        async login(req, ctx) {
            const app = resolveApp(req.appId);
            limit(rates.loginAddress, ctx.values.get(kClientAddress), "too many sign-ins from this address");
            limit(rates.loginApp, app.id, "too many sign-ins to this app");
            // Checked before any code is spent, so a client can fix it and retry with the same code.
            const inviterId = await inviterOf(req);
            const { credential } = req;
            if (credential.case === "password")
                return passwordLogin(app, credential.value, req.bindCode, inviterId, ctx);
            if (req.bindCode)
                throw fieldInvalid("bind_code", "only used with a password login");
            const code = credential.case === "code" ? credential.value : "";
            const idToken = credential.case === "idToken" ? credential.value : "";
            const replayKey = code ? codeKey("login", app.appid, code) : "";
            const earlier = replayKey ? (await replays.recall(replayKey)) : null;
            if (earlier)
                return replayLogin(earlier, code);
            let platform;
            try {
                platform = ctx.values.get(kAssertedSignIn) ?? (await signIn(app, { code, idToken, nonce: req.nonce }, ctx.signal));
            }
            catch (e) {
                // A parallel Login with the same code may have redeemed it a moment ago.
                const late = replayKey && e instanceof WechatError && e.kind === "code_used" ? (await replays.recall(replayKey)) : null;
                if (late)
                    return replayLogin(late, code);
                throw e;
            }
            const identity = identityFrom(app, platform);
            const found = await accounts.findOrCreate(identity, { create: app.registration === "auto", defaultRoles: app.defaultRoles, profile: inviterId ? { inviterId } : {} });
            if (found?.user.status === "disabled")
                throw new AccountDisabledError();
            const { session, tokens } = await openSession(app, found?.user.id ?? null, identity, platform.sessionKey, code);
            const record = { sessionId: session.id, registered: Boolean(found), firstLogin: found?.created ?? false, openid: identity.openid };
            if (replayKey)
                await replays.remember(replayKey, record, new Date(now() + CODE_LIFETIME_MS));
            return {
                tokens: tokensToWire(tokens),
                registered: record.registered,
                firstLogin: record.firstLogin,
                ...(found ? { user: userToWire(found.user) } : {}),
                openid: identity.openid,
            };
        },
        async setPassword(req, ctx) {
            const { userId, user: caller } = await authenticate(ctx);
            const user = caller;
            if (user.passwordHash) {
                const wrong = () => apiError("BAD_CREDENTIALS", "the current password is not right");
                // No current password is no guess (none is empty): refused without spending the budget.
                if (!req.currentPassword)
                    throw wrong();
                const guess = reserveGuess(user.username ?? user.id, ctx);
                if (!(await verifyPassword(req.currentPassword, user.passwordHash)))
                    throw wrong();
                guess.succeed();
            }
            const username = user.username ?? req.username;
            if (!username)
                throw fieldInvalid("username", "required: this account has no username yet");
            if (req.username && req.username.toLowerCase() !== username.toLowerCase())
                throw fieldInvalid("username", "this account has a username already; change it with UpdateUser");
            checkUsername("username", username);
            checkNewPassword("new_password", req.newPassword, username);
            const passwordHash = await hashPassword(req.newPassword);
            return { user: userToWire(await accounts.setPassword(user, username, passwordHash)) };
        },
        async oauth(req, ctx) {
            const { session, user: caller } = await authenticate(ctx, { allowPending: true });
            const app = wechatAppOf(session);
            const data = await wechatData.decrypt(app, session, req, ctx.signal);
            if (data.openId !== session.openid) {
                // Someone else's data on this session: end it, as seed 000's 8527 does.
                await sessions.revoke(session.id);
                throw apiError("SESSION_MISMATCH", "the data belongs to another WeChat user; this session has been ended, Login again");
            }
            const unionid = typeof data.unionId === "string" && data.unionId ? data.unionId : session.unionid;
            const identity = identityOf(session, unionid);
            const profile = profileOf(data);
            if (!caller) {
                const registered = await register(app, session, identity, profile);
                return { user: userToWire(registered.user), created: registered.created, tokens: registered.tokens };
            }
            const bound = await accounts.bindIdentity(caller, identity);
            // Fill what the user has not set; never overwrite their own edits.
            const user = await accounts.update(bound.id, (u) => {
                const missing = Object.fromEntries(Object.entries(profile).filter(([field]) => u[field] === undefined));
                return Object.keys(missing).length ? { ...u, ...missing } : u;
            });
            return { user: userToWire(user), created: false };
        },
        async getPhone(req, ctx) {
            const { session } = await authenticate(ctx);
            limit(rates.phone, session.openid, "too many phone number requests");
            return phoneOf(wechatAppOf(session), session, req, ctx.signal);
        },
        async bindPhone(req, ctx) {
            // An expired access token still ends its session (sessions.authenticate).
            const { session, userId } = await authenticate(ctx, { allowPending: true, ending: true });
            limit(rates.phone, session.openid, "too many phone number requests");
            const app = wechatAppOf(session);
            const phone = await phoneOf(app, session, req, ctx.signal);
            if (!userId) {
                const { user, tokens } = await register(app, session, identityOf(session), phone, [phoneKey(phone)]);
                return { user: userToWire(await accounts.update(user.id, (u) => withPhone(u, phone))), tokens };
            }
            return { user: userToWire(await accounts.update(userId, (u) => withPhone(u, phone))) };
        },
        async refresh(req, ctx) {
            limit(rates.refreshAddress, ctx.values.get(kClientAddress), "too many refreshes from this address");
            if (!req.refreshToken || req.refreshToken.length > MAX_TOKEN_CHARS)
                throw fieldInvalid("refresh_token", "a refresh token is required");
            return { tokens: tokensToWire(await sessions.refresh(req.refreshToken)) };
        },
        async logout(req, ctx) {
            // An expired access token still ends its session (sessions.authenticate).
            const { session, userId } = await authenticate(ctx, { allowPending: true, ending: true });
            if (req.allSessions && userId)
                await sessions.revokeAllOfUser(userId);
            else
                await sessions.revoke(session.id);
            return {};
        },
        async checkLogin(req, ctx) {
            // Internal services introspect any user's token, on every request of theirs: not limited per user.
            const internal = internalCallerOf(ctx) !== null;
            if (internal && !req.accessToken)
                throw fieldInvalid("access_token", "the token to introspect is required");
            const { session, claims, user } = await authenticate(ctx, { ...(req.accessToken ? { token: req.accessToken } : {}), limited: !internal });
            return { user: userToWire(user), sessionId: session.id, expireTime: timestampFromMs(claims.exp * 1000), appId: session.appId };
        },
        async getUser(req, ctx) {
            if (internalCallerOf(ctx)) {
                if (!req.userId)
                    throw fieldInvalid("user_id", "required for an internal caller");
                const user = await users.get(req.userId);
                if (!user)
                    throw apiError("USER_NOT_FOUND", "no user has this id");
                return { user: userToWire(user) };
            }
            const { userId, user } = await authenticate(ctx);
            if (req.userId && req.userId !== userId) {
                throw apiError("PERMISSION_DENIED", "an end user may read only itself");
            }
            return { user: userToWire(user) };
        },
        async updateUser(req, ctx) {
            const wanted = req.user;
            if (!wanted)
                throw fieldInvalid("user", "the fields to set are required");
            const internal = internalCallerOf(ctx) !== null;
            let userId;
            if (internal) {
                if (!wanted.id)
                    throw fieldInvalid("user.id", "required for an internal caller");
                userId = wanted.id;
            }
            else {
                ({ userId } = await authenticate(ctx));
                if (wanted.id && wanted.id !== userId)
                    throw apiError("PERMISSION_DENIED", "an end user may update only itself");
            }
            if (req.expectedVersion !== undefined && req.expectedVersion < 0)
                throw fieldInvalid("expected_version", "must not be negative");
            const patch = planProfilePatch(wanted, updatePaths(wanted, req.updateMask?.paths ?? []), new Date(now()), { internal });
            const updated = await accounts.update(userId, (user) => {
                const next = { ...user, ...patch.set };
                for (const field of patch.unset) {
                    if (field === "attributes")
                        next.attributes = {};
                    else
                        delete next[field];
                }
                return next;
            }, req.expectedVersion, { anyStatus: internal });
            return { user: userToWire(updated) };
        },
    };
}
function rateLimited(seconds, message) {
    return apiError("RATE_LIMITED", `${message}; retry in ${seconds} s`, { retryAfterSeconds: String(seconds) });
}
/** The same record when the phone is already the user's, so binding it again writes nothing. */
function withPhone(user, phone) {
    const same = user.phoneNumber === phone.phoneNumber && user.purePhoneNumber === phone.purePhoneNumber && user.countryCode === phone.countryCode;
    return same ? user : { ...user, ...phone };
}
/** The profile fields of a decrypted wx.getUserProfile / getUserInfo payload worth keeping. */
function profileOf(data) {
    const profile = {};
    const nickname = typeof data.nickName === "string" ? cleanNickname(data.nickName) : "";
    if (nickname && nickname !== PLACEHOLDER_NICKNAME)
        profile.nickname = nickname;
    if (typeof data.avatarUrl === "string" && /^https?:\/\//.test(data.avatarUrl) && data.avatarUrl.length <= 1024)
        profile.avatarUrl = data.avatarUrl;
    if (data.gender === 1)
        profile.gender = "male";
    if (data.gender === 2)
        profile.gender = "female";
    return profile;
}
/** The bearer token; "" when there is no authorization header. */
function bearerOf(ctx) {
    const header = ctx.requestHeader.get("authorization");
    if (!header)
        return "";
    const match = /^Bearer +(\S+) *$/i.exec(header);
    if (!match?.[1])
        throw new TokenError("invalid");
    return match[1];
}
function tokensToWire(tokens) {
    return create(TokensSchema, { ...tokens, tokenType: "Bearer" });
}
