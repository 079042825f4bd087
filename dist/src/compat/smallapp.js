import { decodeJwt } from "jose";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { fieldsOf, integer, messageOf, mountSeed, SeedInputError, text, tokenOf, withRetryHint } from "./shared.js";
const OAUTH_CODES = {
    // The client's session and ours disagree (or ours is gone): the seed's answer is "log in again".
    SESSION_MISMATCH: 8527,
    TOKEN_MISSING: 8527,
    TOKEN_INVALID: 8527,
    TOKEN_EXPIRED: 8527,
    TOKEN_REVOKED: 8527,
    REFRESH_TOKEN_REUSED: 8527,
    // The data cannot be read with this session's key: log in again for a fresh one.
    DECRYPT_FAILED: 8524,
    SIGNATURE_INVALID: 8524,
    SESSION_KEY_STALE: 8524,
};
// Failures while saving the user: 8526 when registering (a pending session), 8525 when updating one.
const SAVE_FAILURES = new Set(["ACCOUNT_CONFLICT", "IDENTITY_TAKEN", "PHONE_TAKEN", "USERNAME_TAKEN", "STORE_UNAVAILABLE", "VERSION_CONFLICT", "INTERNAL"]);
const fail = (code, msg) => ({ code, msg });
export async function registerSmallapp(server, { invoke, apps }) {
    /** The app whose legacyId is the seed's numeric app_id. */
    function appOf(fields) {
        const appId = integer(fields, "app_id");
        if (appId === undefined)
            throw new SeedInputError("app_id");
        return apps.find((a) => a.legacyId === appId);
    }
    const answer = (reply, failure, code = failure.status) => {
        withRetryHint(reply, failure);
        return fail(code, messageOf(failure.reason));
    };
    const noApp = () => fail(404, messageOf("APP_NOT_FOUND"));
    await mountSeed(server, { badInput: (msg) => fail(400, msg), serverError: () => fail(500, messageOf("INTERNAL")) }, (scope) => {
        scope.post("/api/smallapp/login", async (request, reply) => {
            const fields = fieldsOf(request);
            const app = appOf(fields);
            if (!app)
                return noApp();
            const res = await invoke(IdentityService.method.login, { appId: app.id, credential: { case: "code", value: text(fields, "code") } }, request);
            if (!res.ok)
                return answer(reply, res);
            const { tokens, registered, user } = res.message;
            return { code: 0, msg: "ok", token: tokens?.accessToken ?? "", oauthed: registered, ...(registered && user ? { user: profileOf(user) } : {}) };
        });
        scope.post("/api/smallapp/oauth", async (request, reply) => {
            const fields = fieldsOf(request);
            if (!appOf(fields))
                return noApp();
            const token = tokenOf(request, fields, ["_user_token", "token"]);
            const input = { encryptedData: text(fields, "encryptedData"), iv: text(fields, "iv"), rawData: text(fields, "rawData"), signature: text(fields, "signature") };
            const res = await invoke(IdentityService.method.oauth, input, request, token);
            if (!res.ok) {
                const code = OAUTH_CODES[res.reason] ?? (SAVE_FAILURES.has(res.reason) ? (isPending(token) ? 8526 : 8525) : res.status);
                return answer(reply, res, code);
            }
            const { user, tokens } = res.message;
            // A pending session that became a user's has a new token; the one the client holds has ended.
            return { code: 0, msg: "ok", ...profileOf(user), ...(tokens ? { token: tokens.accessToken } : {}) };
        });
    });
}
function profileOf(user) {
    return { nickname: user.nickname, avatar: user.avatarUrl, mobile: user.purePhoneNumber };
}
/** A pending session's token names no user (`sub`); read only to pick the seed's error code. */
function isPending(token) {
    try {
        return decodeJwt(token).sub === undefined;
    }
    catch {
        return false;
    }
}
