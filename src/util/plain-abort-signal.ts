/**
 * An abort signal that is not an AbortSignal, for consumers that only read `aborted` and `reason`
 * and add and remove abort listeners: Connect, which links each call's context to the request
 * signal, and the WeChat client's exchange().
 *
 * Not an AbortSignal: on Node 20 each one got a hidden class of its own and about a kilobyte that
 * reached the old generation (docs/performance.md, "Plain abort signals").
 */
export class PlainAbortSignal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] = [];

  addEventListener(_type: "abort", listener: () => void): void {
    this.listeners.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    this.listeners = this.listeners.filter((l) => l !== listener);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    for (const listener of this.listeners) listener.call(this);
  }

  /** Typed as what its consumers accept; they use only the members above. */
  asAbortSignal(): AbortSignal {
    return this as unknown as AbortSignal;
  }
}
