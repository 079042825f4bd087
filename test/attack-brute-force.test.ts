// Issue 9, item 4: brute force on the wire. Sprays of Login (code and password) and Refresh are
// limited per trusted client address, whichever listener they arrive on. (Guess counting and
// enumeration are the service's: test/fast/brute-force.test.ts.)
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { IdentityService } from "../gen/identity/v1/identity_pb.js";
import { DEMO_APPID, reasonOf, rpc, startHarness, type Harness } from "./support/harness.js";

const app = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s" };
const BUDGET = 3;
const limits = { loginsPerAddress: BUDGET, refreshesPerAddress: BUDGET };

let counter = 0;
const nextAddress = () => `203.0.113.${++counter % 250}`;
// A well-formed refresh token of no session: each try costs the service a store read.
const fakeRefresh = () => `${"0".repeat(23)}${counter++ % 10}.${"A".repeat(43)}`;

const sprays = {
  "code Login": (h: Harness, headers: Record<string, string>) => rpc(h.httpUrl, "Login", { code: `guess-${counter++}` }, undefined, headers),
  "password Login": (h: Harness, headers: Record<string, string>) => rpc(h.httpUrl, "Login", { password: { username: `nobody${counter++}`, password: "wrong-password" } }, undefined, headers),
  Refresh: (h: Harness, headers: Record<string, string>) => rpc(h.httpUrl, "Refresh", { refreshToken: fakeRefresh() }, undefined, headers),
};

describe("sprays from one untrusted address", () => {
  // Each spray gets its own service: the two Login kinds share loginsPerAddress.
  it.each(Object.keys(sprays))("%s: a rotated X-Forwarded-For does not reset the limit", async (kind) => {
    const own = await startHarness({ apps: [app], limits });
    try {
      const reasons: (string | undefined)[] = [];
      for (let i = 0; i <= BUDGET; i++) reasons.push(reasonOf(await sprays[kind as keyof typeof sprays](own, { "x-forwarded-for": nextAddress() })));
      expect(reasons.slice(0, BUDGET)).not.toContain("RATE_LIMITED");
      expect(reasons[BUDGET]).toBe("RATE_LIMITED");
      // The same address on the gRPC listener shares the budget.
      const client = createClient(IdentityService, createGrpcTransport({ baseUrl: own.grpcUrl }));
      const call = kind === "Refresh" ? client.refresh({ refreshToken: fakeRefresh() }, { headers: { "x-forwarded-for": nextAddress() } }) : client.login({ credential: { case: "code", value: "x" } });
      const err = ConnectError.from(await call.catch((e: unknown) => e));
      expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("RATE_LIMITED");
      expect(Number(err.metadata.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      await own.close();
    }
  });
});

describe("behind a trusted proxy", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ apps: [app], limits, trustProxy: ["127.0.0.1"] });
  });
  afterAll(() => h.close());

  it.each(["code Login", "Refresh"] as const)("%s: each forwarded client address gets its own budget", async (kind) => {
    const [a, b] = [nextAddress(), nextAddress()];
    for (let i = 0; i < BUDGET; i++) expect(reasonOf(await sprays[kind](h, { "x-forwarded-for": a }))).not.toBe("RATE_LIMITED");
    expect(reasonOf(await sprays[kind](h, { "x-forwarded-for": a }))).toBe("RATE_LIMITED");
    // A spoofed hop before the client's own address changes nothing: the proxy appends the real one.
    expect(reasonOf(await sprays[kind](h, { "x-forwarded-for": `${nextAddress()}, ${a}` }))).toBe("RATE_LIMITED");
    expect(reasonOf(await sprays[kind](h, { "x-forwarded-for": b }))).not.toBe("RATE_LIMITED");
  });
});

describe("secret comparisons", () => {
  // A secret-derived value compared with === leaks, through timing, how much of a guess matches.
  // Hash-keyed Map lookups are fine (see identity-service.ts); comparisons go through timingSafeEqual.
  const ALLOWED: Record<string, string> = {
    // Compare-and-swap on a hash the caller just matched in constant time (sessions.ts sameHash).
    "src/store/memory-store.ts": "session.refreshHash !== rotation.expectedHash",
  };
  // camelCase names like refreshHash or secret; not constants like INVALID_SIGNATURE (an error code).
  const ID = String.raw`(?:\b[a-z]\w*(?:Hash|Hmac|Signature|Secret|Digest)\w*|\b(?:hash|hmac|signature|secret|digest)\w*)`;
  const SECRETISH = new RegExp(String.raw`${ID}(?:\.\w+)*\s*[!=]==|[!=]==\s*(?:\w+\.)*${ID}`);

  it("no === on hashes, HMACs, signatures or secrets in the service's source", () => {
    const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []));
    // The simulator plays WeChat in tests; it guards no secret of ours.
    const found = files("src")
      .filter((f) => !f.startsWith(join("src", "simulator")))
      .flatMap((f) =>
        readFileSync(f, "utf8")
          .split("\n")
          .map((line) => ({ f, line })),
      )
      .filter(({ f, line }) => SECRETISH.test(line) && !(ALLOWED[f] && line.includes(ALLOWED[f])));
    expect(found).toEqual([]);
  });
});
