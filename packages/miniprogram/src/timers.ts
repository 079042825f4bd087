// The timers every mini-program runtime has; declared here because the build typechecks against
// ES2017 alone, with no host (DOM or Node) types.
declare const setTimeout: (fn: () => void, ms: number) => unknown;
declare const clearTimeout: (id: unknown) => void;

/** Runs `fn` after `ms`; the returned function cancels it. */
export function setTimer(fn: () => void, ms: number): () => void {
  const id = setTimeout(fn, ms);
  return () => clearTimeout(id);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimer(resolve, ms));
}
