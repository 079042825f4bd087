// The lazy request logger writes the same lines as the pino child it stands in for.
import { Writable } from "node:stream";
import { fastify, type FastifyBaseLogger } from "fastify";
import { describe, expect, it } from "vitest";
import { lazyChildLogger } from "../../src/server/request-logger.js";
import { describeError } from "../../src/util/log-safety.js";

function loggers() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  // fastify's pino as main.ts configures it: redaction and an err serializer; no timestamps, so lines compare.
  const parent = fastify({
    logger: { level: "info", timestamp: false, redact: { paths: ["token", "*.token"], censor: "[redacted]" }, serializers: { err: describeError as never }, stream },
  }).log;
  const flush = () => new Promise((resolve) => setImmediate(resolve));
  return { parent, lines, flush };
}

describe("lazyChildLogger", () => {
  it("writes each kind of line as pino's child would", async () => {
    const { parent, lines, flush } = loggers();
    // Made once, so both runs log the same stacks.
    const [boom, alone] = [new Error("boom"), new Error("an error alone")];
    const write = (log: FastifyBaseLogger) => {
      log.info({ rpc: "CheckLogin", code: "ok", ms: 0.42 }, "rpc");
      log.error({ rpc: "Login", err: boom, token: "secret" }, "rpc failed unexpectedly");
      log.warn("a message alone");
      log.error(alone);
      log.debug({ below: "the level" }, "not written");
      log.child({ extra: 1 }).info({ nested: true }, "from a grandchild");
    };
    write(parent.child({ reqId: "req-1" }));
    await flush();
    const expected = lines.splice(0);
    write(lazyChildLogger(parent, { reqId: "req-1" }, {}));
    await flush();
    expect(expected).toHaveLength(5);
    expect(expected.join("")).not.toContain("secret");
    expect(lines).toEqual(expected);
  });

  it("makes no child for object lines, and one, kept, for anything else", () => {
    const { parent } = loggers();
    let children = 0;
    const child = parent.child.bind(parent);
    parent.child = ((...args: Parameters<typeof child>) => {
      children++;
      return child(...args);
    }) as typeof parent.child;
    const log = lazyChildLogger(parent, { reqId: "req-2" }, {});
    log.info({ rpc: "Health" }, "rpc");
    expect(children).toBe(0);
    log.info("text");
    log.info("more text");
    log.info({ rpc: "Health" }, "rpc");
    expect(children).toBe(1);
    expect(log.level).toBe("info");
  });

  it("makes a real child when the route sets its own level", () => {
    const { parent } = loggers();
    expect(lazyChildLogger(parent, { reqId: "req-3" }, { level: "debug" }).level).toBe("debug");
  });
});
