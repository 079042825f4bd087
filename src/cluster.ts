// WORKERS above 1: a node:cluster primary forks the workers, each running startApp on the same
// listeners (the primary accepts and hands connections round-robin), and answers for the group:
// one banner, /metrics summed over every worker, restarts, and one graceful stop.
import cluster, { type Worker } from "node:cluster";
import { pino } from "pino";
import { AggregatorRegistry, type Registry } from "prom-client";

/** What a worker reports once it listens: the banner's facts, nothing that closes. */
export interface WorkerInfo {
  httpUrl: string;
  grpcUrl: string;
  devMode: boolean;
  generatedKey: boolean;
  store: "memory" | "mongodb";
}

type Message = { type: "identity:ready"; app: WorkerInfo } | { type: "identity:metrics-request"; id: number } | { type: "identity:metrics"; id: number; body?: string; error?: string };

/** A worker that stayed up this long had started fine: its crash restarts the backoff. */
const STABLE_MS = 30_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** Longer than a worker's own drain (startApp's 5 s shutdown timeout) plus closing the store. */
const STOP_TIMEOUT_MS = 15_000;

export interface PrimaryOptions {
  workers: number;
  logLevel: string;
  /** The banner to print once every worker listens. */
  banner(app: WorkerInfo): string;
  /** Where the primary's log lines go; stdout by default. */
  logStream?: { write(line: string): void };
}

/** Forks the workers and supervises them until SIGTERM or SIGINT; resolves with the exit code. */
export function runPrimary(options: PrimaryOptions): Promise<number> {
  const log = pino({ level: options.logLevel, base: { pid: process.pid, role: "primary" } }, options.logStream ?? process.stdout);
  const aggregator = new AggregatorRegistry();
  const started = new Set<Worker>();
  /** Every forked worker not yet exited, with when it was forked (cluster.workers may lag an exit). */
  const upSince = new Map<Worker, number>();
  const restarts: NodeJS.Timeout[] = [];
  let crashes = 0;
  let stopping = false;
  /** Set when the group stops for a failure, or a worker had to be killed: the primary exits 1. */
  let stopFailed = false;
  let resolveExit: (code: number) => void;
  const exit = new Promise<number>((resolve) => (resolveExit = resolve));

  // Workers fork the same entry with the same environment: they load the same configuration.
  const fork = () => {
    const worker = cluster.fork();
    upSince.set(worker, Date.now());
    return worker;
  };

  cluster.on("message", (worker, message: Message) => {
    if (message.type === "identity:ready") {
      started.add(worker);
      log.info({ worker: worker.id, workerPid: worker.process.pid }, "worker listening");
      if (started.size === options.workers && !stopping) console.log(`${options.banner(message.app)}\n  workers                    ${options.workers} (node:cluster)`);
    } else if (message.type === "identity:metrics-request") {
      aggregator.clusterMetrics().then(
        (body) => worker.send({ type: "identity:metrics", id: message.id, body } satisfies Message),
        (e: unknown) => worker.send({ type: "identity:metrics", id: message.id, error: e instanceof Error ? e.message : String(e) } satisfies Message),
      );
    }
  });

  cluster.on("exit", (worker, code, signal) => {
    const ranMs = Date.now() - (upSince.get(worker) ?? Date.now());
    upSince.delete(worker);
    if (stopping) {
      if (code !== 0 && started.has(worker)) {
        log.warn({ worker: worker.id, code, signal }, "worker did not stop cleanly");
        stopFailed = true;
      }
      if (!upSince.size) resolveExit(stopFailed ? 1 : 0);
      return;
    }
    if (!started.has(worker)) {
      // Bad config, an unreachable store, a port in use: every fork would fail the same way.
      console.error(`identity: worker ${worker.id} exited (${signal ?? `code ${code}`}) before it listened; stopping all workers`);
      stop(1);
      return;
    }
    started.delete(worker);
    crashes = ranMs > STABLE_MS ? 0 : crashes + 1;
    const delayMs = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, crashes - 1));
    log.error({ worker: worker.id, workerPid: worker.process.pid, code, signal, restartInMs: delayMs }, "worker died; starting another");
    restarts.push(setTimeout(fork, delayMs));
  });

  const stop = (code = 0) => {
    if (stopping) return;
    stopping = true;
    stopFailed = code !== 0;
    for (const timer of restarts) clearTimeout(timer);
    const live = [...upSince.keys()];
    log.info({ workers: live.length }, "shutdown started: stopping every worker");
    if (!live.length) return resolveExit(code);
    for (const worker of live) worker.process.kill("SIGTERM");
    setTimeout(() => {
      log.error("workers did not stop in time; killing them");
      for (const worker of upSince.keys()) worker.process.kill("SIGKILL");
      stopFailed = true;
    }, STOP_TIMEOUT_MS).unref();
  };
  process.on("SIGTERM", () => stop());
  process.on("SIGINT", () => stop());

  for (let i = 0; i < options.workers; i++) fork();
  return exit;
}

/** In a worker: tells the primary it listens. */
export function reportReady(app: WorkerInfo): void {
  process.send!({ type: "identity:ready", app: { httpUrl: app.httpUrl, grpcUrl: app.grpcUrl, devMode: app.devMode, generatedKey: app.generatedKey, store: app.store } } satisfies Message);
}

/** In a worker: /metrics for the whole group, gathered by the primary from every worker's registry. */
export function clusterMetrics(registry: Registry): () => Promise<{ contentType: string; body: string }> {
  AggregatorRegistry.setRegistries([registry]);
  new AggregatorRegistry(); // answers the primary's requests for this worker's metrics
  const pending = new Map<number, (message: Message & { type: "identity:metrics" }) => void>();
  let next = 0;
  process.on("message", (message: Message) => {
    if (message.type === "identity:metrics") pending.get(message.id)?.(message);
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = next++;
      // prom-client's primary gives up on a silent worker after 5 s.
      const timer = setTimeout(() => settle({ type: "identity:metrics", id, error: "the primary did not answer" }), 6000);
      const settle = (message: Message & { type: "identity:metrics" }) => {
        clearTimeout(timer);
        pending.delete(id);
        if (message.body === undefined) reject(new Error(`cluster metrics: ${message.error}`));
        else resolve({ contentType: registry.contentType, body: message.body });
      };
      pending.set(id, settle);
      process.send!({ type: "identity:metrics-request", id } satisfies Message);
    });
}
