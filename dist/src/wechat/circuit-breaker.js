// A circuit breaker for one upstream API: after `failures` failures in a row it opens, and calls
// fail fast for `coolDownMs`; then one call at a time goes out as a probe, and the first answer
// that shows the API is back closes it again. No timers: the state moves when calls ask.
export function createBreaker({ failures, coolDownMs, now = Date.now }) {
    let inARow = 0;
    let openUntil = 0;
    let probing = false;
    const tripped = () => failures > 0 && inARow >= failures;
    return {
        /** Whether a call may go out now. When true, the caller must report it with one of the three below. */
        admit() {
            if (!tripped())
                return true;
            if (now() < openUntil || probing)
                return false;
            probing = true;
            return true;
        },
        /** The API answered (even with an error of the caller's making, such as an invalid code). */
        succeeded() {
            inARow = 0;
            probing = false;
        },
        /** The API did not answer usably: timeout, lost connection, 5xx, busy. */
        failed() {
            inARow += 1;
            probing = false;
            if (tripped())
                openUntil = now() + coolDownMs;
        },
        /** The call said nothing about the API (e.g. the caller gave up first). */
        released() {
            probing = false;
        },
        /** Milliseconds until a probe may go out (0 when one may go now). */
        retryAfterMs() {
            return Math.max(0, openUntil - now());
        },
    };
}
