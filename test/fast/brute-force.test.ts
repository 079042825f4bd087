// Issue 9, item 4, the service's side: password and API-key guesses are counted per account and
// per client address before they are evaluated, and failures look the same whether or not the user
// exists. (Which address a request comes from is the listener's: attack-brute-force.test.ts.)
import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { as, byPassword, CLIENT_ADDRESS, DEMO_APPID, refusal, refusalOf, startFast, type Fast } from "../support/fast.js";

const app = { id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "s" };
const API_KEY = "internal-key-for-brute-force-tests";

let f: Fast;
beforeAll(async () => {
  f = await startFast({ apps: [app], limits: { loginsPerAddress: 1000 }, internalCallers: [{ name: "orders", keySha256: createHash("sha256").update(API_KEY).digest("hex") }] });
});

let counter = 0;
const nextAddress = () => `203.0.113.${++counter % 250}`;
const from = (address: string) => ({ headers: { [CLIENT_ADDRESS]: address } });

const passwordLogin = (username: string, password: string, address = nextAddress(), extra: { bindCode?: string } = {}) =>
  f.client.login({ ...byPassword(username, password), ...extra }, from(address));
const register = async (username: string) => (await passwordLogin(username, "correct horse battery", nextAddress(), { bindCode: f.mintCode().code })).tokens!.accessToken;

/** A call's outcome: "OK" when it succeeded, else its refusal's reason, code and message. */
const outcome = (call: Promise<unknown>) =>
  call.then(
    () => ({ reason: "OK" }),
    (e: unknown) => {
      const { code, reason, message } = refusalOf(e);
      return { code, reason, message };
    },
  );
const tally = async (calls: Promise<unknown>[]) => {
  const counts: Record<string, number> = {};
  for (const { reason } of await Promise.all(calls.map(outcome))) counts[reason ?? "?"] = (counts[reason ?? "?"] ?? 0) + 1;
  return counts;
};

describe("enumeration", () => {
  const known = "alice_known";
  beforeAll(async () => {
    await register(known);
  });

  const attempt = async (username: string) => {
    const start = performance.now();
    const { code, reason, message } = await refusal(passwordLogin(username, "not the password"));
    return { ms: performance.now() - start, code, reason, message };
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
    const shape = ({ code, reason, message }: (typeof unknown)[number]) => ({ code, reason, message });
    expect(new Set([...unknown, ...wrong].map((a) => JSON.stringify(shape(a)))).size).toBe(1);
    expect(shape(wrong[0]!)).toMatchObject({ code: Code.Unauthenticated, reason: "BAD_CREDENTIALS" });
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
  it("of 12 parallel wrong passwords for one username, 5 are tried; then even the right one waits out the window", async () => {
    const name = `parallel_${counter++}`;
    await register(name);
    expect(await tally(Array.from({ length: 12 }, (_, i) => passwordLogin(name, `wrong guess ${i}`)))).toEqual({ BAD_CREDENTIALS: 5, RATE_LIMITED: 7 });
    const limited = await refusal(passwordLogin(name, "correct horse battery"));
    expect([limited.code, limited.reason]).toEqual([Code.ResourceExhausted, "RATE_LIMITED"]);
    const retryAfter = Number(limited.metadata.retryAfterSeconds);
    expect(retryAfter).toBeGreaterThan(0);
    f.clock.advance(retryAfter * 1000);
    expect((await outcome(passwordLogin(name, "correct horse battery"))).reason).toBe("OK");
  });

  it("a burst of 40 wrong passwords with the right one among them gets no more than 5 tried", async () => {
    const name = `burst_${counter++}`;
    await register(name);
    const burst = Array.from({ length: 40 }, (_, i) => `wrong guess ${i}`).concat("correct horse battery");
    const counts = await tally(burst.map((password) => passwordLogin(name, password)));
    expect(counts.RATE_LIMITED).toBeGreaterThanOrEqual(36);
  });

  it("of 40 parallel wrong passwords from one address, across usernames, 30 are tried, until the window has passed", async () => {
    const address = nextAddress();
    const spray = (n: number) => tally(Array.from({ length: n }, (_, i) => passwordLogin(`sprayed_${counter++}_${i}`, "wrong password", address)));
    // 30 failures per 15 minutes per address (DEFAULT_PASSWORD_LIMITS), below the request limit.
    expect(await spray(40)).toEqual({ BAD_CREDENTIALS: 30, RATE_LIMITED: 10 });
    f.clock.advance(15 * 60_000);
    expect(await spray(1)).toEqual({ BAD_CREDENTIALS: 1 });
  }, 30_000);

  it("SetPassword's currentPassword: of 12 parallel wrong ones, 5 are tried", async () => {
    const access = await register(`setter_${counter++}`);
    const calls = Array.from({ length: 12 }, (_, i) => f.client.setPassword({ currentPassword: `wrong guess ${i}`, newPassword: "a new password" }, as(access, { [CLIENT_ADDRESS]: nextAddress() })));
    expect(await tally(calls)).toEqual({ BAD_CREDENTIALS: 5, RATE_LIMITED: 7 });
  });

  it("a junk bindCode answers, and counts, alike for a known and an unknown username", async () => {
    const [known, unknown] = [`bound_${counter++}`, `unbound_${counter++}`];
    await register(known);
    const attempt = async (username: string) => JSON.stringify(await outcome(passwordLogin(username, "not the password", nextAddress(), { bindCode: `junk-${counter++}` })));
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
    const getUser = (key: string, client: string) => f.client.getUser({ userId: "000000000000000000000000" }, { headers: { "x-api-key": key, [CLIENT_ADDRESS]: client } });
    expect(await tally(Array.from({ length: 12 }, (_, i) => getUser(`guess-${i}`, address)))).toEqual({ API_KEY_INVALID: 10, RATE_LIMITED: 2 });
    const limited = await refusal(getUser(API_KEY, address));
    expect([limited.code, limited.reason]).toEqual([Code.ResourceExhausted, "RATE_LIMITED"]);
    expect(Number(limited.metadata.retryAfterSeconds)).toBeGreaterThan(0);
    expect((await outcome(getUser(API_KEY, other))).reason).toBe("USER_NOT_FOUND");
  });
});
