import { createHash } from "node:crypto";
import { createRemoteJWKSet, errors, jwtVerify } from "jose";
export class AppleTokenError extends Error {
    kind;
    constructor(kind) {
        super(`apple identity token: ${kind}`);
        this.kind = kind;
        this.name = "AppleTokenError";
    }
}
/** Apple sends booleans as "true"/"false" strings in some tokens and as JSON booleans in others. */
function flag(value) {
    if (value === true || value === "true")
        return true;
    if (value === false || value === "false")
        return false;
    return undefined;
}
function sha256Hex(value) {
    return createHash("sha256").update(value, "utf8").digest("hex");
}
/** The kind for what jwtVerify threw; jose's error classes (and codes) are its API, the messages are not. */
function kindOf(error) {
    if (error instanceof errors.JWTExpired)
        return "expired";
    // Fetching the JWKS: a timeout, a non-200 or unparsable answer (plain JOSEError), a malformed key set.
    if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid)
        return "unavailable";
    if (error instanceof errors.JOSEError)
        return error.code === errors.JOSEError.code ? "unavailable" : "invalid";
    // jose wraps everything about the token in its own errors; anything else is fetch failing (network).
    return "unavailable";
}
export function createAppleVerifier(options) {
    const issuer = options.issuer ?? "https://appleid.apple.com";
    // Fetched on first use, cached, and refetched (at most every 30 s) when a token names an unknown kid.
    const keys = createRemoteJWKSet(new URL(options.jwksUrl));
    return {
        async verify(idToken, expected) {
            if (expected.audience.length === 0)
                throw new TypeError("audience must list at least one client id");
            let payload;
            try {
                ({ payload } = await jwtVerify(idToken, keys, {
                    algorithms: ["RS256"],
                    issuer,
                    audience: expected.audience,
                    requiredClaims: ["sub", "exp", "iat"],
                    ...(options.now ? { currentDate: new Date(options.now()) } : {}),
                }));
            }
            catch (error) {
                throw new AppleTokenError(kindOf(error));
            }
            if (expected.nonce !== undefined) {
                const claim = payload.nonce;
                if (typeof claim !== "string" || (claim !== expected.nonce && claim !== sha256Hex(expected.nonce))) {
                    throw new AppleTokenError("invalid");
                }
            }
            const { sub, email } = payload;
            if (typeof sub !== "string" || sub === "")
                throw new AppleTokenError("invalid");
            const emailVerified = flag(payload.email_verified);
            return {
                sub,
                ...(typeof email === "string" && email !== "" ? { email } : {}),
                ...(emailVerified === undefined ? {} : { emailVerified }),
            };
        },
    };
}
