import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance, FastifyRequest, HTTPMethods } from "fastify";
import { WECHAT_PATHS } from "./protocol.js";

// What happens to requests on their way to the simulated APIs: injected faults, and a count of
// calls per path so tests can see how often the service really went to WeChat (or QQ).
// Paths are full request paths as served, prefix included ("/qq/sns/jscode2session").

export interface Fault {
  /** Wait this long before doing anything else. */
  delayMs?: number;
  /** Answer 200 with this errcode instead of the real answer. */
  errcode?: number;
  /** Answer this HTTP status with a plain-text body instead of the real answer. */
  status?: number;
  /** Do the real work, then destroy the socket without answering. */
  drop?: boolean;
  /** Destroy the socket before doing anything: a connection reset that spent nothing. */
  reset?: boolean;
  /**
   * Do the real work, then answer 200 with a broken body: "truncated" sends half of it and cuts
   * the connection, "garbage" sends text that is not JSON.
   */
  body?: "truncated" | "garbage";
}

export type FaultBook = ReturnType<typeof createFaultBook>;

export function createFaultBook() {
  /** The API paths the simulator serves, as routes declare them: the only paths a fault can target. */
  const served = new Set<string>();
  const queues = new Map<string, { fault: Fault; remaining: number }[]>();
  return {
    /** Called by the route wrapper for every API path it registers. */
    serve(path: string): void {
      served.add(path);
    },

    serves(path: string): boolean {
      return served.has(path);
    },

    servedPaths(): string[] {
      return [...served];
    },

    add(path: string, fault: Fault, times: number): void {
      const queue = queues.get(path) ?? [];
      queue.push({ fault, remaining: times });
      queues.set(path, queue);
    },

    clear(): void {
      queues.clear();
    },

    /** The fault for the next request to `path`, if any; faults for one path apply in the order added. */
    take(path: string): Fault | undefined {
      const queue = queues.get(path);
      const head = queue?.[0];
      if (queue === undefined || head === undefined) return undefined;
      head.remaining -= 1;
      if (head.remaining === 0) queue.shift();
      return head.fault;
    },
  };
}

export type CallCounter = ReturnType<typeof createCallCounter>;

/** `listed` paths always appear in the snapshot, zero included; any other path once it has been called. */
export function createCallCounter(listed: readonly string[] = WECHAT_PATHS) {
  const counts = new Map<string, number>();
  return {
    count(path: string): void {
      counts.set(path, (counts.get(path) ?? 0) + 1);
    },

    /** The WeChat mini-program paths, zero included, so callers need no defaults for them; others as called. */
    snapshot(): Record<string, number> {
      const snapshot: Record<string, number> = Object.fromEntries(listed.map((path) => [path, 0]));
      for (const [path, count] of counts) snapshot[path] = count;
      return snapshot;
    },

    reset(): void {
      counts.clear();
    },
  };
}

/** What every simulated API route needs, whatever it serves. */
export interface ApiRouteDeps {
  faults: FaultBook;
  calls: CallCounter;
  /** Aborted on close, so a delayed answer does not hold the server open. */
  closing: AbortSignal;
}

/**
 * Serves a simulated API at `path` the way the real one misbehaves on demand: every call is
 * counted, a queued fault is applied (delay, HTTP status, drop after the work is done), and
 * otherwise `answer` speaks, with the fault so it can turn an `errcode` into its API's error.
 */
export function routeWithFaults(
  app: FastifyInstance,
  deps: ApiRouteDeps,
  route: { path: string; methods: HTTPMethods[]; contentType?: string },
  answer: (request: FastifyRequest, fault: Fault | undefined) => object | string,
): void {
  deps.faults.serve(route.path);
  app.route({
    method: route.methods,
    url: route.path,
    handler: async (request, reply) => {
      deps.calls.count(route.path);
      const fault = deps.faults.take(route.path);
      if (fault !== undefined) request.log.info({ path: route.path, fault }, "injecting simulated fault");
      if (fault?.delayMs !== undefined) {
        // On close the wait ends early and the real answer goes out, so close() is not held up.
        await sleep(fault.delayMs, undefined, { signal: deps.closing }).catch(() => undefined);
      }
      if (fault?.reset === true) {
        reply.hijack();
        request.raw.socket.resetAndDestroy();
        return;
      }
      if (fault?.status !== undefined) {
        return reply.code(fault.status).type("text/plain").send(`simulated HTTP ${fault.status}`);
      }
      const body = answer(request, fault);
      if (fault?.drop === true) {
        // The work is done (a code is spent), but the caller never hears about it.
        reply.hijack();
        request.raw.socket.destroy();
        return;
      }
      if (fault?.body === "garbage") return reply.type("text/html").send("<html>502 Bad Gateway</html>");
      const text = typeof body === "string" ? body : JSON.stringify(body);
      if (fault?.body === "truncated") {
        // Promise the whole body, send half of it, and hang up.
        reply.hijack();
        reply.raw.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        reply.raw.write(text.slice(0, Math.floor(text.length / 2)), () => request.raw.socket.destroy());
        return;
      }
      if (route.contentType) reply.type(route.contentType);
      return body;
    },
  });
}
