// The outermost interceptor, through Connect's real router in memory.
import { Code, ConnectError, createClient, createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { TokenError } from "../../src/auth/errors.js";
import { createOutermostInterceptor, type Logger } from "../../src/service/interceptors.js";
import { DuplicateKeyError, StoreUnavailableError } from "../../src/store/store.js";

/** A client of `impl` behind the outermost interceptor, and the lines it logged. */
function behindInterceptor(impl: Partial<ServiceImpl<typeof IdentityService>>) {
  const lines: Array<{ level: string; obj: Record<string, unknown> }> = [];
  const log: Logger = {
    info: (obj) => void lines.push({ level: "info", obj: obj as Record<string, unknown> }),
    error: (obj) => void lines.push({ level: "error", obj: obj as Record<string, unknown> }),
  };
  const transport = createRouterTransport((router) => router.service(IdentityService, impl), { router: { interceptors: [createOutermostInterceptor(log)] } });
  return { client: createClient(IdentityService, transport), lines };
}

function clientThrowing(error: unknown) {
  const { client, lines } = behindInterceptor({
    async getUser() {
      throw error;
    },
  });
  const call = () => client.getUser({}).catch((e: unknown) => ConnectError.from(e));
  return { call, lines };
}

const reason = (e: unknown) => (e as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason;

describe("outermost interceptor", () => {
  it("turns a bug into a generic INTERNAL, logged once with its stack, leaking nothing", async () => {
    const { call, lines } = clientThrowing(new TypeError("cannot read x of undefined; session_key=c2VjcmV0"));
    const error = await call();
    expect([(error as ConnectError).code, reason(error)]).toEqual([Code.Internal, "INTERNAL"]);
    expect((error as ConnectError).rawMessage).not.toContain("session_key");
    const errors = lines.filter((l) => l.level === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0]!.obj).toMatchObject({ rpc: "GetUser", err: { type: "TypeError" } });
    expect(lines.filter((l) => l.level === "info")).toEqual([{ level: "info", obj: expect.objectContaining({ rpc: "GetUser", code: "Internal", reason: "INTERNAL" }) }]);
  });

  it("maps the parts' typed errors to codes and reasons without logging them as failures", async () => {
    const cases: Array<[unknown, Code, string]> = [
      [new TokenError("expired"), Code.Unauthenticated, "TOKEN_EXPIRED"],
      [new DuplicateKeyError("phone"), Code.AlreadyExists, "PHONE_TAKEN"],
      [new DuplicateKeyError("username"), Code.AlreadyExists, "USERNAME_TAKEN"],
    ];
    for (const [thrown, code, why] of cases) {
      const { call, lines } = clientThrowing(thrown);
      const error = await call();
      expect([(error as ConnectError).code, reason(error)]).toEqual([code, why]);
      expect(lines.filter((l) => l.level === "error")).toHaveLength(0);
    }
  });

  it("maps and logs a server stream's failure when the stream fails, after the messages it sent", async () => {
    const { client, lines } = behindInterceptor({
      async *watchRevocations() {
        yield { cursor: "r1.1" };
        throw new StoreUnavailableError(new Error("connection refused"));
      },
    });
    const cursors: string[] = [];
    const error = await (async () => {
      for await (const m of client.watchRevocations({})) cursors.push(m.cursor);
    })().catch((e: unknown) => ConnectError.from(e));
    expect(cursors).toEqual(["r1.1"]);
    expect([(error as ConnectError).code, reason(error)]).toEqual([Code.Unavailable, "STORE_UNAVAILABLE"]);
    expect(lines.filter((l) => l.level === "info")).toEqual([{ level: "info", obj: expect.objectContaining({ rpc: "WatchRevocations", code: "Unavailable", reason: "STORE_UNAVAILABLE" }) }]);
  });

  it("answers an unreachable store with UNAVAILABLE, and logs it", async () => {
    const { call, lines } = clientThrowing(new StoreUnavailableError(new Error("connection refused")));
    const error = await call();
    expect([(error as ConnectError).code, reason(error)]).toEqual([Code.Unavailable, "STORE_UNAVAILABLE"]);
    expect(lines.filter((l) => l.level === "error")).toHaveLength(1);
  });
});
