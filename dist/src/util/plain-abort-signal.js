/**
 * An abort signal that is not an AbortSignal, for consumers that only read `aborted` and `reason`
 * and add and remove abort listeners: Connect, which links each call's context to the request
 * signal, and the WeChat client's exchange().
 *
 * Why not an AbortSignal: Node 20 makes one by swapping an EventTarget's prototype and then adding
 * fields, and V8 gives every such object a hidden class of its own (`%HaveSameMap` is false for any
 * two). Each signal then costs about a kilobyte that outlives the young generation and feeds the
 * old generation's collections, whose pauses set the tail latency. Node 22 builds them with a
 * constructor (nodejs/node#52408) and shares the class.
 */
export class PlainAbortSignal {
    aborted = false;
    reason = undefined;
    listeners = [];
    addEventListener(_type, listener) {
        this.listeners.push(listener);
    }
    removeEventListener(_type, listener) {
        this.listeners = this.listeners.filter((l) => l !== listener);
    }
    abort(reason) {
        if (this.aborted)
            return;
        this.aborted = true;
        this.reason = reason;
        for (const listener of this.listeners)
            listener.call(this);
    }
    /** Typed as what its consumers accept; they use only the members above. */
    asAbortSignal() {
        return this;
    }
}
