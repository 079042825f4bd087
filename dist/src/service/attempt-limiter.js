// Counts events (failures, or requests) per key in a fixed window, in this process's memory: limits
// hold per instance (with N instances an attacker gets N times the budget; the README says so).
export function createAttemptLimiter({ max, windowMs }, now = Date.now) {
    const windows = new Map();
    function current(key) {
        const window = windows.get(key);
        if (window && window.resetAt > now())
            return window;
        windows.delete(key);
        return undefined;
    }
    return {
        /** Seconds until the key may try again; 0 when it may now. */
        retryAfter(key) {
            const window = current(key);
            return window && window.failures >= max ? Math.ceil((window.resetAt - now()) / 1000) : 0;
        },
        /**
         * Counts one failure. Returns `undo`, which takes it back: a caller counts an attempt before
         * its outcome is known (so parallel attempts cannot overrun the limit) and undoes it when the
         * attempt turns out not to be a failure. An undo in a later window changes nothing.
         */
        fail(key) {
            const window = current(key) ?? { failures: 0, resetAt: now() + windowMs };
            window.failures++;
            windows.set(key, window);
            // Bounded memory: drop lapsed windows now and then.
            if (windows.size > 10_000)
                for (const [k, w] of windows)
                    if (w.resetAt <= now())
                        windows.delete(k);
            let undone = false;
            return () => {
                if (undone || windows.get(key) !== window)
                    return;
                undone = true;
                window.failures--;
            };
        },
        /** Counts one event; the seconds to wait when the key is already at its limit (then nothing is counted). */
        take(key) {
            const wait = this.retryAfter(key);
            if (!wait)
                this.fail(key);
            return wait;
        },
        succeed(key) {
            windows.delete(key);
        },
    };
}
