// Every request the kit makes (RPCs, refreshes, the app's own calls) goes through one queue that
// keeps at most `maxInFlight` on the wire (WeChat refuses more than 10 at once), and retries what
// never got an answer, or got a gateway's 502/503/504, with backoff inside the caller's timeout.
import { type HttpResponse, IdentityError, localError } from "./errors.js";
import type { HttpRequest, Platform } from "./platform.js";
import { sleep } from "./timers.js";

const RETRY_STATUSES = [502, 503, 504];
const FIRST_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 3000;

type Send = (req: HttpRequest, timeoutMs: number, retry?: boolean) => Promise<HttpResponse>;

/** Runs tasks with at most `max` at once; the rest wait in order. */
export function createLimiter(max: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async function limit<T>(task: () => Promise<T>): Promise<T> {
    if (active < max) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await task();
    } finally {
      // The slot passes straight to the next in line, so `active` never overshoots.
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

export function createSend(platform: Platform, maxInFlight: number): Send {
  const limit = createLimiter(maxInFlight);
  return async function send(req, timeoutMs, retry = true) {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      let answer: HttpResponse | undefined;
      let failure: unknown;
      try {
        // Time spent in the queue counts against the caller's timeout too.
        answer = await limit<HttpResponse>(() => {
          const left = deadline - Date.now();
          return left > 0 ? platform.request(req, left) : Promise.reject(localError("NETWORK", "request:fail timeout (queued)"));
        });
        if (RETRY_STATUSES.indexOf(answer.statusCode) < 0) return answer;
      } catch (error) {
        if (!(error instanceof IdentityError)) throw error;
        failure = error;
      }
      const backoff = Math.min(FIRST_BACKOFF_MS * 2 ** attempt, MAX_BACKOFF_MS) * (0.5 + Math.random() / 2);
      if (!retry || Date.now() + backoff >= deadline) {
        if (answer) return answer;
        throw failure;
      }
      await sleep(backoff);
    }
  };
}
