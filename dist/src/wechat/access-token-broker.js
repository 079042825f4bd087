import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { WechatError } from "./wechat-client.js";
export function createAccessTokenBroker({ credentials, fetchToken, now = Date.now, refreshAheadMs = 240_000, leaseMs = 15_000, pollMs = 50, onRefresh }) {
    const owner = randomBytes(8).toString("hex");
    const memory = new Map();
    const inFlight = new Map();
    const usable = (expiresAt) => typeof expiresAt === "number" && expiresAt - now() > refreshAheadMs;
    async function refresh(app) {
        const giveUpAt = now() + 2 * leaseMs;
        for (;;) {
            const stored = await credentials.get(app.appid);
            if (stored?.accessToken && usable(stored.expiresAt?.getTime()))
                return remember(app.appid, stored.accessToken, stored.expiresAt.getTime());
            if (await credentials.acquireLease(app.appid, owner, new Date(now() + leaseMs), new Date(now())))
                return fetchUnderLease(app);
            if (now() > giveUpAt)
                throw new WechatError("unavailable", "stable_token");
            await sleep(pollMs);
        }
    }
    async function fetchUnderLease(app) {
        try {
            // Another instance may have stored a token between our read and our lease.
            const stored = await credentials.get(app.appid);
            if (stored?.accessToken && usable(stored.expiresAt?.getTime())) {
                await credentials.saveToken(app.appid, owner, stored.accessToken, stored.expiresAt);
                return remember(app.appid, stored.accessToken, stored.expiresAt.getTime());
            }
            const fetched = await fetchToken(app);
            onRefresh?.(app.appid);
            const expiresAt = now() + fetched.expiresIn * 1000;
            await credentials.saveToken(app.appid, owner, fetched.accessToken, new Date(expiresAt));
            return remember(app.appid, fetched.accessToken, expiresAt);
        }
        catch (e) {
            // Let the others try at once instead of waiting for the lease to lapse.
            await credentials.acquireLease(app.appid, owner, new Date(0), new Date(now())).catch(() => undefined);
            throw e;
        }
    }
    function remember(appid, token, expiresAt) {
        memory.set(appid, { token, expiresAt });
        return token;
    }
    /** The app's token; a caller whose `signal` aborts stops waiting, while the shared fetch goes on for the others. */
    async function token(app, signal) {
        const cached = memory.get(app.appid);
        if (cached && usable(cached.expiresAt))
            return cached.token;
        let flight = inFlight.get(app.appid);
        if (!flight) {
            flight = refresh(app).finally(() => inFlight.delete(app.appid));
            inFlight.set(app.appid, flight);
        }
        return signal ? untilAborted(flight, signal) : flight;
    }
    return {
        token,
        /** Runs a call with the app's token; a refused token is expired (if still current) and the call retried once. */
        async withToken(app, call, signal) {
            const first = await token(app, signal);
            try {
                return await call(first);
            }
            catch (e) {
                if (!(e instanceof WechatError && e.kind === "token_invalid"))
                    throw e;
                if (memory.get(app.appid)?.token === first)
                    memory.delete(app.appid);
                await credentials.expireToken(app.appid, first);
                return call(await token(app, signal));
            }
        },
    };
}
function untilAborted(promise, signal) {
    if (signal.aborted)
        return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
}
