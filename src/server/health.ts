// grpc.health.v1.Health (the standard gRPC health protocol) over the readiness the composition
// root passes in. Check answers once; Watch polls and sends a message whenever the status changes.
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import { type Health, HealthCheckResponse_ServingStatus as ServingStatus, HealthCheckResponseSchema } from "../../gen/health/v1/health_pb.js";
import { apiError } from "../service/errors.js";

/** True when the app can serve requests (its store answers); never rejects, never left pending for long. */
export type Readiness = () => Promise<boolean>;

export interface HealthOptions {
  ready: Readiness;
  /** Full names of the services whose health is the app's; "" (the whole server) is always known. */
  services: string[];
  /** Aborted when the server begins to shut down: every Watch then ends with OK. */
  closing: AbortSignal;
  /** How often Watch asks `ready` again. */
  pollMs?: number;
}

const POLL_MS = 1000;

export function createHealthService(options: HealthOptions): ServiceImpl<typeof Health> {
  const known = new Set(["", ...options.services]);
  const pollMs = options.pollMs ?? POLL_MS;
  // A readiness function that throws says "not ready", never INTERNAL.
  const { ready } = options;
  const servingStatus = async () => ((await ready()) ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);

  return {
    async check(req) {
      // As grpc-go: an unknown service name is NOT_FOUND.
      if (!known.has(req.service)) throw apiError("SERVICE_UNKNOWN", `unknown service ${req.service}`, { service: req.service });
      return { status: await servingStatus() };
    },

    async *watch(req, ctx) {
      // Ends when the client cancels (or its deadline passes) or the server shuts down.
      const signal = AbortSignal.any([ctx.signal, options.closing]);
      let last: ServingStatus | undefined;
      while (!signal.aborted) {
        // The protocol: an unknown service is SERVICE_UNKNOWN, and the call stays open.
        const status = known.has(req.service) ? await servingStatus() : ServingStatus.SERVICE_UNKNOWN;
        if (status !== last && !signal.aborted) {
          last = status;
          yield { status };
        }
        try {
          await sleep(pollMs, undefined, { signal });
        } catch {
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
