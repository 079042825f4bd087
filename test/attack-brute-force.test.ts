// Issue 9, item 4: brute force and enumeration. Sprays of Login (code and password) and Refresh are
// limited per trusted client address; failures look the same whether or not the user exists.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { IdentityService } from "../gen/identity/v1/identity_pb.js";
import { DEMO_APPID, mintCode, reasonOf, rpc, startHarness, type Harness } from "./support/harness.js";

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

  it("password failures are limited per address even across usernames, below the request limit", async () => {
    const own = await startHarness({ apps: [app], limits: { loginsPerAddress: 1000 } });
    try {
      let first: number | undefined;
      for (let i = 0; i < 40 && first === undefined; i++) {
        const res = await sprays["password Login"](own, { "x-forwarded-for": nextAddress() });
        if (reasonOf(res) === "RATE_LIMITED") first = i;
        else expect(reasonOf(res)).toBe("BAD_CREDENTIALS");
      }
      // 30 failures per 15 minutes per address (DEFAULT_PASSWORD_LIMITS); then refused before any scrypt.
      expect(first).toBe(30);
    } finally {
      await own.close();
    }
  }, 60_000);
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

describe("enumeration", () => {
  let h: Harness;
  const known = "alice_known";
  beforeAll(async () => {
    h = await startHarness({ apps: [app] });
    const { code } = await mintCode(h.sim);
    const res = await rpc(h.httpUrl, "Login", { password: { username: known, password: "correct horse battery" }, bindCode: code });
    expect(res.status, res.text).toBe(200);
  });
  afterAll(() => h.close());

  const attempt = async (username: string) => {
    const start = performance.now();
    const res = await rpc(h.httpUrl, "Login", { password: { username, password: "not the password" } }, undefined, { "x-forwarded-for": nextAddress() });
    return { ms: performance.now() - start, status: res.status, code: res.json.code, reason: reasonOf(res), message: res.json.message };
  };
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

  it("an unknown username and a wrong password answer alike, in similar time", async () => {
    const unknown: Awaited<ReturnType<typeof attempt>>[] = [];
    const wrong: typeof unknown = [];
    // Interleaved, so load from other tests hits both alike; 5 is the per-account failure budget.
    for (let i = 0; i < 5; i++) {
      unknown.push(await attempt(`nobody_${i}_${counter++}`));
      wrong.push(await attempt(known));
    }
    const shape = ({ status, code, reason, message }: (typeof unknown)[number]) => ({ status, code, reason, message });
    expect(new Set([...unknown, ...wrong].map((a) => JSON.stringify(shape(a)))).size).toBe(1);
    expect(shape(wrong[0]!)).toMatchObject({ status: 401, reason: "BAD_CREDENTIALS" });
    // Both pay one scrypt: without the decoy an unknown name answers in about a millisecond.
    const [u, w] = [median(unknown.map((a) => a.ms)), median(wrong.map((a) => a.ms))];
    expect(Math.min(u, w) / Math.max(u, w), `medians ${u.toFixed(1)} ms vs ${w.toFixed(1)} ms`).toBeGreaterThan(0.4);
  });

  it("an unknown username is locked out after the same number of failures as a known one", async () => {
    const ghost = `ghost_${counter++}`;
    const reasons: (string | undefined)[] = [];
    for (let i = 0; i < 6; i++) reasons.push((await attempt(ghost)).reason);
    expect(reasons).toEqual([...Array(5).fill("BAD_CREDENTIALS"), "RATE_LIMITED"]);
    // The known account has spent its 5 in the test above.
    expect((await attempt(known)).reason).toBe("RATE_LIMITED");
  });
});

describe("guesses counted before they are evaluated", () => {
  const API_KEY = "internal-key-for-brute-force-tests";
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ apps: [app], trustProxy: ["127.0.0.1"], internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }] });
  });
  afterAll(() => h.close());

  const passwordLogin = (username: string, password: string, address: string, extra: object = {}) =>
    rpc(h.httpUrl, "Login", { password: { username, password }, ...extra }, undefined, { "x-forwarded-for": address });
  const register = async (username: string) => {
    const res = await passwordLogin(username, "correct horse battery", nextAddress(), { bindCode: (await mintCode(h.sim)).code });
    expect(res.status, res.text).toBe(200);
    return res.json.tokens.accessToken as string;
  };
  const tally = (results: { status: number; json: unknown }[]) => {
    const counts: Record<string, number> = {};
    for (const r of results) {
      const key = r.status === 200 ? "OK" : (reasonOf(r as Parameters<typeof reasonOf>[0]) ?? String(r.status));
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  };

  it("of 12 parallel wrong passwords for one username, 5 are tried; then even the right one waits", async () => {
    const name = `parallel_${counter++}`;
    await register(name);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => passwordLogin(name, `wrong guess ${i}`, nextAddress())));
    expect(tally(results)).toEqual({ BAD_CREDENTIALS: 5, RATE_LIMITED: 7 });
    expect(reasonOf(await passwordLogin(name, "correct horse battery", nextAddress()))).toBe("RATE_LIMITED");
  });

  it("a burst of 40 wrong passwords with the right one among them gets no more than 5 tried", async () => {
    const name = `burst_${counter++}`;
    await register(name);
    const burst = Array.from({ length: 40 }, (_, i) => `wrong guess ${i}`).concat("correct horse battery");
    const counts = tally(await Promise.all(burst.map((password) => passwordLogin(name, password, nextAddress()))));
    expect(counts.RATE_LIMITED).toBeGreaterThanOrEqual(36);
  });

  it("of 40 parallel wrong passwords from one address, across usernames, 30 are tried", async () => {
    const address = nextAddress();
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => passwordLogin(`sprayed_${counter++}_${i}`, "wrong password", address)));
    expect(tally(results)).toEqual({ BAD_CREDENTIALS: 30, RATE_LIMITED: 10 });
  }, 30_000);

  it("SetPassword's currentPassword: of 12 parallel wrong ones, 5 are tried", async () => {
    const access = await register(`setter_${counter++}`);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => rpc(h.httpUrl, "SetPassword", { currentPassword: `wrong guess ${i}`, newPassword: "a new password" }, access, { "x-forwarded-for": nextAddress() })),
    );
    expect(tally(results)).toEqual({ BAD_CREDENTIALS: 5, RATE_LIMITED: 7 });
  });

  it("a junk bindCode answers, and counts, alike for a known and an unknown username", async () => {
    const [known, unknown] = [`bound_${counter++}`, `unbound_${counter++}`];
    await register(known);
    const attempt = async (username: string) => {
      const res = await passwordLogin(username, "not the password", nextAddress(), { bindCode: `junk-${counter++}` });
      return JSON.stringify({ status: res.status, code: res.json.code, reason: reasonOf(res), message: res.json.message });
    };
    const forKnown: string[] = [];
    const forUnknown: string[] = [];
    for (let i = 0; i < 6; i++) {
      forKnown.push(await attempt(known));
      forUnknown.push(await attempt(unknown));
    }
    expect(forUnknown).toEqual(forKnown);
    expect(forKnown.map((a) => JSON.parse(a).reason)).toEqual([...Array(5).fill("CODE_INVALID"), "RATE_LIMITED"]);
  });

  it("wrong x-api-key values are limited per address, and then even the right key from it waits", async () => {
    const [address, other] = [nextAddress(), nextAddress()];
    const getUser = (key: string, from: string) => rpc(h.httpUrl, "GetUser", { userId: "000000000000000000000000" }, undefined, { "x-api-key": key, "x-forwarded-for": from });
    const wrong = await Promise.all(Array.from({ length: 12 }, (_, i) => getUser(`guess-${i}`, address)));
    expect(tally(wrong)).toEqual({ API_KEY_INVALID: 10, RATE_LIMITED: 2 });
    const limited = await getUser(API_KEY, address);
    expect([limited.status, reasonOf(limited)]).toEqual([429, "RATE_LIMITED"]);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(reasonOf(await getUser(API_KEY, other))).toBe("USER_NOT_FOUND");
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
      .flatMap((f) => readFileSync(f, "utf8").split("\n").map((line) => ({ f, line })))
      .filter(({ f, line }) => SECRETISH.test(line) && !(ALLOWED[f] && line.includes(ALLOWED[f])));
    expect(found).toEqual([]);
  });
});
