// The revocation list's judgement and its bound: entries live one token lifetime (plus skew) past
// their revoke_time, and a token it can no longer judge is said to be unknown, never accepted.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { RevocationReason, RevocationSchema } from "../src/gen/identity/v1/identity_pb.js";
import { createRevocationList, MAX_CLOCK_SKEW_SECONDS } from "../src/revocation-list.js";
import { userRevoked } from "./support/revocation-feed.js";

const T = 1_800_000_000; // seconds
const HOUR = 3600;
const session = (sid: string, atSeconds: number) =>
  create(RevocationSchema, { target: { case: "sessionId", value: sid }, revokeTime: timestampFromMs(atSeconds * 1000), reason: RevocationReason.LOGOUT });
const token = (sid: string, iat: number, lifetime = HOUR, sub = "u1") => ({ sid, sub, iat, exp: iat + lifetime });

describe("revocation list", () => {
  it("refuses a revoked session's tokens whenever issued, and a user's only up to revoke_time", () => {
    const list = createRevocationList();
    list.add(session("s1", T));
    list.add(userRevoked("u2", T * 1000 + 500));
    expect(list.verdict(token("s1", T - 10))).toBe("TOKEN_REVOKED");
    expect(list.verdict(token("s1", T + 10))).toBe("TOKEN_REVOKED");
    expect(list.verdict(token("s2", T, HOUR, "u2"))).toBe("ACCOUNT_DISABLED");
    expect(list.verdict(token("s2", T + 1, HOUR, "u2"))).toBeNull();
    expect(list.verdict(token("s3", T - 10))).toBeNull();
    // A later logout of all sessions outranks the disabling, as the service checks sessions first.
    list.add(userRevoked("u2", (T + 5) * 1000, RevocationReason.LOGOUT_ALL));
    expect(list.verdict(token("s2", T, HOUR, "u2"))).toBe("TOKEN_REVOKED");
  });

  it("drops entries a token lifetime and the skew after revoke_time, and then calls longer-lived tokens unknown", () => {
    const list = createRevocationList();
    list.add(session("s1", T));
    list.add(userRevoked("u2", T * 1000));
    // Nothing is dropped before a token has shown how long tokens live.
    list.prune((T + 10 * HOUR) * 1000);
    expect(list.size).toEqual({ sessions: 1, users: 1 });
    expect(list.verdict(token("s9", T + 10 * HOUR))).toBeNull();
    // Lifetime now one hour: the entries go once no token issued before them can be alive.
    list.prune((T + HOUR + MAX_CLOCK_SKEW_SECONDS - 1) * 1000);
    expect(list.size).toEqual({ sessions: 1, users: 1 });
    list.prune((T + HOUR + MAX_CLOCK_SKEW_SECONDS + 1) * 1000);
    expect(list.size).toEqual({ sessions: 0, users: 0 });
    // A token living longer than assumed, issued before what was dropped: this list can't tell.
    expect(list.verdict(token("s1", T - 10, 4 * HOUR))).toBe("UNKNOWN");
    expect(list.verdict(token("s1", T + MAX_CLOCK_SKEW_SECONDS + 1, 4 * HOUR))).toBeNull();
    // Without iat, a token can't be placed after anything dropped.
    expect(list.verdict({ sid: "s4", exp: T + 2 * HOUR })).toBe("UNKNOWN");
  });
});
