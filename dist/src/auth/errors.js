export class TokenError extends Error {
    kind;
    constructor(kind) {
        super(`token ${kind}`);
        this.kind = kind;
    }
}
/** The session's user may not sign in (status disabled). */
export class AccountDisabledError extends Error {
    constructor() {
        super("account disabled");
    }
}
