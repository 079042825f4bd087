// The reason registry: one Connect code per reason, whichever path raises it.
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { apiError, REASONS, toConnectError, type Reason } from "../../src/service/errors.js";
import { DuplicateKeyError } from "../../src/store/store.js";

const reasonOf = (error: ReturnType<typeof apiError>) => error.findDetails(ErrorInfoSchema)[0]?.reason;

describe("reasons", () => {
  it("carry their registry code wherever they come from", () => {
    for (const reason of Object.keys(REASONS) as Reason[]) {
      const error = apiError(reason, "x");
      expect([error.code, reasonOf(error)]).toEqual([REASONS[reason], reason]);
    }
    for (const kind of ["phone", "username", "identity", "unionid", "invite", "unknown"] as const) {
      const { error } = toConnectError(new DuplicateKeyError(kind));
      expect(error.code).toBe(REASONS[reasonOf(error) as Reason]);
    }
    expect(toConnectError(new DuplicateKeyError("unionid")).error.code).toBe(Code.FailedPrecondition);
  });
});
