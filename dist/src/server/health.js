// grpc.health.v1.Health (the standard gRPC health protocol) over the readiness the composition
// root passes in. Check answers once; Watch polls and sends a message whenever the status changes.
import { create } from "@bufbuild/protobuf";
import { setTimeout as sleep } from "node:timers/promises";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus, HealthCheckResponseSchema } from "../../gen/health/v1/health_pb.js";
import { apiError } from "../service/errors.js";
const POLL_MS = 1000;
export function createHealthService(options) {
    const known = new Set(["", ...options.services]);
    const pollMs = options.pollMs ?? POLL_MS;
    // A readiness function that throws says "not ready", never INTERNAL.
    const { ready } = options;
    const servingStatus = async () => ((await ready()) ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    return {
        async check(req) {
            // As grpc-go: an unknown service name is NOT_FOUND.
            if (!known.has(req.service))
                throw apiError("SERVICE_UNKNOWN", `unknown service ${req.service}`, { service: req.service });
            return { status: await servingStatus() };
        },
        async *watch(req, ctx) {
            // Ends when the client cancels (or its deadline passes) or the server shuts down.
            const signal = AbortSignal.any([ctx.signal, options.closing]);
            let last;
            while (!signal.aborted) {
                // The protocol: an unknown service is SERVICE_UNKNOWN, and the call stays open.
                const status = known.has(req.service) ? await servingStatus() : ServingStatus.SERVICE_UNKNOWN;
                if (status !== last && !signal.aborted) {
                    last = status;
                    yield { status };
                }
                try {
                    await sleep(pollMs, undefined, { signal });
                }
                catch {
                    return;
                }
            }
        },
        async list() {
            const status = await servingStatus();
            return { statuses: Object.fromEntries([...known].map((service) => [service, create(HealthCheckResponseSchema, { status })])) };
        },
    };
}
