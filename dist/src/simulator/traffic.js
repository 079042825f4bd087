import { setTimeout as sleep } from "node:timers/promises";
import { WECHAT_PATHS } from "./protocol.js";
export function createFaultBook() {
    /** The API paths the simulator serves, as routes declare them: the only paths a fault can target. */
    const served = new Set();
    const queues = new Map();
    return {
        /** Called by the route wrapper for every API path it registers. */
        serve(path) {
            served.add(path);
        },
        serves(path) {
            return served.has(path);
        },
        servedPaths() {
            return [...served];
        },
        add(path, fault, times) {
            const queue = queues.get(path) ?? [];
            queue.push({ fault, remaining: times });
            queues.set(path, queue);
        },
        clear() {
            queues.clear();
        },
        /** The fault for the next request to `path`, if any; faults for one path apply in the order added. */
        take(path) {
            const queue = queues.get(path);
            const head = queue?.[0];
            if (queue === undefined || head === undefined)
                return undefined;
            head.remaining -= 1;
            if (head.remaining === 0)
                queue.shift();
            return head.fault;
        },
    };
}
/** `listed` paths always appear in the snapshot, zero included; any other path once it has been called. */
export function createCallCounter(listed = WECHAT_PATHS) {
    const counts = new Map();
    return {
        count(path) {
            counts.set(path, (counts.get(path) ?? 0) + 1);
        },
        /** The WeChat mini-program paths, zero included, so callers need no defaults for them; others as called. */
        snapshot() {
            const snapshot = Object.fromEntries(listed.map((path) => [path, 0]));
            for (const [path, count] of counts)
                snapshot[path] = count;
            return snapshot;
        },
        reset() {
            counts.clear();
        },
    };
}
/**
 * Serves a simulated API at `path` the way the real one misbehaves on demand: every call is
 * counted, a queued fault is applied (delay, HTTP status, drop after the work is done), and
 * otherwise `answer` speaks, with the fault so it can turn an `errcode` into its API's error.
 */
export function routeWithFaults(app, deps, route, answer) {
    deps.faults.serve(route.path);
    app.route({
        method: route.methods,
        url: route.path,
        handler: async (request, reply) => {
            deps.calls.count(route.path);
            const fault = deps.faults.take(route.path);
            if (fault !== undefined)
                request.log.info({ path: route.path, fault }, "injecting simulated fault");
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
            if (fault?.body === "garbage")
                return reply.type("text/html").send("<html>502 Bad Gateway</html>");
            const text = typeof body === "string" ? body : JSON.stringify(body);
            if (fault?.body === "truncated") {
                // Promise the whole body, send half of it, and hang up.
                reply.hijack();
                reply.raw.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
                reply.raw.write(text.slice(0, Math.floor(text.length / 2)), () => request.raw.socket.destroy());
                return;
            }
            if (route.contentType)
                reply.type(route.contentType);
            return body;
        },
    });
}
