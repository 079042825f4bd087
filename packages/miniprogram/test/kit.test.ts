// The kit in a mini-program's runtime against the real service: logins, the phone button, tokens
// refreshed once for many callers, sign-out on a dead session, offline blips and the request cap.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { build, transform } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, injectFault, login as serviceLogin, reasonOf, rpc, simPost } from "../../../test/support/harness.js";
import { bundleOptions } from "../build.mjs";
import { APPIDS, useService } from "./harness-config.js";
import { clock, createDevice, createRealm, type Device, FORBIDDEN_GLOBALS, type Kit, kitSource, refusal } from "./support.js";

let h: Harness;
let kit: typeof Kit;
useService((started, loaded) => {
  h = started;
  kit = loaded;
});

const device = (appid = APPIDS.mp, openid?: string) => createDevice({ sim: h.sim, appid, ...(openid ? { openid } : {}) });
const identityOn = (d: Device, appId = "mp", extra: object = {}) => kit.createIdentity({ baseUrl: h.httpUrl, appId, platform: d.api, ...extra });
/** A fresh device whose kit has logged in to the auto-registering app. */
async function signedIn() {
  const d = device();
  const identity = identityOn(d);
  await identity.login();
  return { d, identity };
}
const phoneCode = async (appid = APPIDS.mp, phoneNumber = `139${String(Math.floor(Math.random() * 1e8)).padStart(8, "0")}`) => ({
  code: (await simPost(h.sim, "/sim/phone-code", { appid, phoneNumber })).code as string,
  phoneNumber,
});

describe("the bundle runs where mini-programs run", () => {
  it("is ES2017 syntax: esbuild lowers nothing when asked for ES2017, and prints it as it would for esnext", async () => {
    const code = await kitSource();
    const [as2017, asNext] = await Promise.all([transform(code, { target: "es2017" }), transform(code, { target: "esnext" })]);
    expect(as2017.code).toBe(asNext.code);
  });

  it("names none of the globals a mini-program runtime lacks, and is under 10 KB minified", async () => {
    // Minified as `npm run size` measures it, so that comments don't count; in bytes, as it prints.
    const out = (await build({ ...bundleOptions, minify: true, write: false })).outputFiles![0]!;
    for (const name of FORBIDDEN_GLOBALS) expect(out.text, name).not.toMatch(new RegExp(`\\b${name}\\b`));
    expect(out.contents.length).toBeLessThan(10_240);
  });

  it("runs in a realm that has none of them", async () => {
    const realm = await createRealm();
    const probe = FORBIDDEN_GLOBALS.filter((name) => name !== "allSettled").map((name) => `typeof ${name}`);
    const seen = realm.evaluate(`module.exports = [${probe.join(", ")}, typeof Promise.allSettled, typeof Promise.prototype.finally]`, "probe.js");
    expect(new Set(seen as string[])).toEqual(new Set(["undefined"]));
  });

  it("refuses bad options with a clear TypeError", () => {
    expect(() => kit.createIdentity({ baseUrl: "id.example.com", appId: "mp", platform: device().api })).toThrow(/baseUrl/);
    expect(() => kit.createIdentity({ baseUrl: h.httpUrl, appId: "mp", platform: {} as never })).toThrow(/platform/);
  });
});

describe("login", () => {
  it("first login: wx.login's code, fetched at creation, signs a new user in and is stored per app", async () => {
    const d = device();
    const identity = identityOn(d);
    const result = await identity.login();
    expect(result).toMatchObject({ registered: true, firstLogin: true, user: { id: expect.any(String) } });
    expect(identity.isLoggedIn()).toBe(true);
    expect(identity.user?.id).toBe(result.user?.id);
    expect(d.state.logins).toBe(1);
    expect(d.storage.get("identity:mp")).toMatchObject({ accessToken: expect.any(String), registered: true });
  });

  it("returning login: a relaunch restores the session without a login; a new login finds the same user", async () => {
    const d = device();
    const first = await identityOn(d).login();
    const relaunched = identityOn(d);
    expect(relaunched.isLoggedIn()).toBe(true);
    expect(relaunched.user?.id).toBe(first.user?.id);
    expect((await relaunched.call<{ user: { id: string } }>("GetUser", {})).user.id).toBe(first.user?.id);
    // Logged in with a valid session_key: no wx.login at launch (it would rotate the key).
    expect(d.state.logins).toBe(1);

    const again = await identityOn(device(APPIDS.mp, d.openid)).login();
    expect(again).toMatchObject({ registered: true, firstLogin: false, user: { id: first.user?.id } });
  });

  it("explicit registration: login gives a pending session, phoneLogin registers the user with the number", async () => {
    const d = device(APPIDS.gated);
    const identity = identityOn(d, "gated");
    expect(await identity.login()).toMatchObject({ registered: false });
    expect(identity.isLoggedIn()).toBe(false);
    const notYet = await refusal(identity.call("GetUser", {}));
    expect(notYet).toBeInstanceOf(kit.IdentityError);
    expect([notYet.code, notYet.reason]).toEqual(["failed_precondition", "NOT_REGISTERED"]);

    const phone = await phoneCode(APPIDS.gated);
    const result = await identity.phoneLogin({ code: phone.code });
    expect(result.user?.phoneNumber).toBe(phone.phoneNumber);
    expect(identity.isLoggedIn()).toBe(true);
    // BindPhone's tokens are a user's: the next expiry is a Refresh, no longer a Login.
    clock.device += 61_000;
    clock.server += 61_000;
    expect((await identity.call<{ user: { id: string } }>("GetUser", {})).user.id).toBe(result.user?.id);
    expect([d.count("Refresh"), d.count("Login")]).toEqual([1, 1]);
  });

  it("phoneLogin on a fresh device logs in with the prefetched code, then binds the phone", async () => {
    const d = device();
    const identity = identityOn(d);
    const phone = await phoneCode();
    const result = await identity.phoneLogin({ code: phone.code, errMsg: "getPhoneNumber:ok" });
    expect(result).toMatchObject({ registered: true, firstLogin: true, user: { phoneNumber: phone.phoneNumber } });
    expect(d.state.logins).toBe(1);
  });

  it("the legacy phone button on a fresh device decrypts: its code was fetched before the tap", async () => {
    const d = device();
    const identity = identityOn(d);
    await identity.prefetch();
    // The button's data, encrypted with the key of the latest code: the prefetched one.
    const detail = await simPost(h.sim, "/sim/encrypt", { appid: APPIDS.mp, openid: d.openid, data: { phoneNumber: "13900139000", purePhoneNumber: "13900139000", countryCode: "86" } });
    const result = await identity.phoneLogin(detail);
    expect(result.user?.phoneNumber).toBe("13900139000");
    expect([d.state.logins, d.count("BindPhone")]).toEqual([1, 1]);
  });

  it("an explicit app's pending session, which has no refresh token, is renewed by a Login before phoneLogin registers it", async () => {
    const d = device(APPIDS.gated);
    const identity = identityOn(d, "gated");
    await identity.login();
    clock.device += 61_000;
    clock.server += 61_000;
    const result = await identity.phoneLogin({ code: (await phoneCode(APPIDS.gated)).code });
    expect(result.registered).toBe(true);
    expect([d.count("Refresh"), d.count("Login")]).toEqual([0, 2]);
    expect(identity.isLoggedIn()).toBe(true);
  });

  it("WeChat's rate limit is RATE_LIMITED, not retried; a stored value that is not a session is no session", async () => {
    await injectFault(h.sim, { path: "/sns/jscode2session", errcode: 45011 });
    const d = device();
    const limited = await refusal(identityOn(d).login());
    expect([limited.code, limited.reason, limited.status, limited.retryAfter]).toEqual(["resource_exhausted", "RATE_LIMITED", 429, 60]);
    expect(d.count("Login")).toBe(1);
    d.storage.set("identity:mp", { accessToken: 1 });
    expect(identityOn(d).isLoggedIn()).toBe(false);
  });

  it("a refused phone button is PHONE_NOT_GRANTED, before any request", async () => {
    const d = device();
    const denied = await refusal(identityOn(d).phoneLogin({ errMsg: "getPhoneNumber:fail user deny" }));
    expect([denied.code, denied.reason, denied.message]).toEqual(["canceled", "PHONE_NOT_GRANTED", "getPhoneNumber:fail user deny"]);
    expect(d.count("Login")).toBe(0);
    expect(d.calls).toEqual([]);
  });

  it("session_key rotation: SESSION_KEY_STALE logs in again with the code already held and retries once", async () => {
    const d = device();
    await identityOn(d).login();
    // WeChat let the session_key lapse: at the next launch checkSession fails, so the kit fetches
    // a code early (the device's key is now that code's, the service still has the old one).
    d.state.sessionValid = false;
    const identity = identityOn(d);
    await identity.prefetch();
    expect(d.state.logins).toBe(2);
    const phone = await simPost(h.sim, "/sim/encrypt", { appid: APPIDS.mp, openid: d.openid, data: { phoneNumber: "13800138000", purePhoneNumber: "13800138000", countryCode: "86" } });
    const number = await identity.getPhone(phone);
    expect(number).toMatchObject({ phoneNumber: "13800138000", countryCode: "86" });
    // The phone flow called no wx.login itself: Login reused the held code.
    expect(d.state.logins).toBe(2);
    expect(d.count("GetPhone")).toBe(2);
    expect(d.count("Login")).toBe(2);
  });
});

describe("tokens", () => {
  it("ten calls at launch with an expired access token make exactly one Refresh", async () => {
    const d = device();
    await identityOn(d).login();
    clock.device += 61_000;
    clock.server += 61_000;
    const identity = identityOn(d);
    const results = await Promise.all(Array.from({ length: 10 }, () => identity.call("GetUser", {})));
    expect(results).toHaveLength(10);
    expect(d.count("Refresh")).toBe(1);
    expect(d.count("GetUser")).toBe(10);
  });

  it("a TOKEN_EXPIRED the device's clock did not see coming: one Refresh, each call retried once", async () => {
    const { d, identity } = await signedIn();
    clock.server += 61_000;
    await Promise.all(Array.from({ length: 10 }, () => identity.call("GetUser", {})));
    expect(d.count("Refresh")).toBe(1);
    expect(d.count("GetUser")).toBe(20);
  });

  it("refresh-token reuse: the session is ended, the tokens cleared and signed out raised once", async () => {
    const { d, identity } = await signedIn();
    const signedOut: string[] = [];
    identity.onSignedOut((error) => signedOut.push(error.reason));
    // Someone else spends the refresh token first (a copied storage, say).
    const stolen = (d.storage.get("identity:mp") as { refreshToken: string }).refreshToken;
    expect((await rpc(h.httpUrl, "Refresh", { refreshToken: stolen })).status).toBe(200);
    clock.device += 61_000;
    clock.server += 61_000;
    const [a, b] = await Promise.all([refusal(identity.call("GetUser", {})), refusal(identity.call("GetUser", {}))]);
    expect([a.reason, b.reason]).toEqual(["REFRESH_TOKEN_REUSED", "REFRESH_TOKEN_REUSED"]);
    expect(signedOut).toEqual(["REFRESH_TOKEN_REUSED"]);
    expect(identity.isLoggedIn()).toBe(false);
    expect(d.storage.has("identity:mp")).toBe(false);
    expect((await refusal(identity.call("GetUser", {}))).reason).toBe("TOKEN_MISSING");
  });

  it("a session left unused past its refresh token's life: Refresh is refused and the user signed out", async () => {
    const { d, identity } = await signedIn();
    const reasons: string[] = [];
    identity.onSignedOut((error) => reasons.push(error.reason));
    clock.device += 31 * 86_400_000;
    clock.server += 31 * 86_400_000;
    const error = await refusal(identity.call("GetUser", {}));
    expect([error.code, error.reason, reasons]).toEqual(["unauthenticated", "SESSION_EXPIRED", ["SESSION_EXPIRED"]]);
    expect(d.count("Refresh")).toBe(1);
    expect(d.storage.has("identity:mp")).toBe(false);
  });

  it("logout everywhere from another session: the next call is signed out", async () => {
    const { d, identity } = await signedIn();
    let signedOut = 0;
    const unsubscribe = identity.onSignedOut(() => signedOut++);
    const other = await serviceLogin(h, { appid: APPIDS.mp, openid: d.openid }, "mp");
    expect((await rpc(h.httpUrl, "Logout", { allSessions: true }, other.access)).status).toBe(200);
    const error = await refusal(identity.call("GetUser", {}));
    expect([error.code, error.reason, error.status]).toEqual(["unauthenticated", "TOKEN_REVOKED", 401]);
    expect(signedOut).toBe(1);
    expect(identity.isLoggedIn()).toBe(false);
    unsubscribe();
  });

  it("logout ends the session on the service and forgets the tokens", async () => {
    const { d, identity } = await signedIn();
    const { accessToken } = d.storage.get("identity:mp") as { accessToken: string };
    await identity.logout();
    expect(identity.isLoggedIn()).toBe(false);
    expect(d.storage.has("identity:mp")).toBe(false);
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, accessToken))).toBe("TOKEN_REVOKED");
  });

  it("logout with an expired access token still ends the session, without a Refresh first", async () => {
    const { d, identity } = await signedIn();
    const { refreshToken } = d.storage.get("identity:mp") as { refreshToken: string };
    clock.device += 61_000;
    clock.server += 61_000;
    await identity.logout({ allSessions: true });
    expect(d.count("Refresh")).toBe(0);
    expect((await rpc(h.httpUrl, "Refresh", { refreshToken })).status).toBe(401);
  });

  it("a login while a Refresh is in flight keeps the login's session", async () => {
    const { d, identity } = await signedIn();
    clock.device += 61_000;
    clock.server += 61_000;
    Object.assign(d.state, { slowPath: "/Refresh", slowMs: 1000 });
    const calling = identity.call("GetUser", {});
    await identity.login();
    const after = (d.storage.get("identity:mp") as { accessToken: string }).accessToken;
    await calling;
    expect(d.count("Refresh")).toBe(1);
    expect((d.storage.get("identity:mp") as { accessToken: string }).accessToken).toBe(after);
  });

  it("an offline blip keeps the tokens: calls retry with backoff and succeed", async () => {
    const { d, identity } = await signedIn();
    const stored = d.storage.get("identity:mp");
    await expect(identity.request({ url: "https://api.example.com", success: () => {} })).rejects.toThrow(/promise/);
    d.state.offline = 2;
    await identity.call("GetUser", {});
    expect(d.count("GetUser")).toBe(3);
    expect(d.storage.get("identity:mp")).toEqual(stored);
  });

  it("offline longer than the timeout: NETWORK after about the timeout, and still logged in", async () => {
    const { d, identity } = await signedIn();
    d.state.offline = 1000;
    const started = Date.now();
    const error = await refusal(identity.call("GetUser", {}, { timeout: 1200 }));
    expect([error.code, error.reason]).toEqual(["unavailable", "NETWORK"]);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(identity.isLoggedIn()).toBe(true);
    expect(d.storage.has("identity:mp")).toBe(true);
    d.state.offline = 0;
  });

  it("a 503 from the service (WeChat busy) is retried: the same code logs in on the second try", async () => {
    const d = device();
    const identity = identityOn(d);
    await injectFault(h.sim, { path: "/sns/jscode2session", errcode: -1, times: 2 });
    expect((await identity.login()).registered).toBe(true);
    expect(d.count("Login")).toBe(2);
    expect(d.state.logins).toBe(1);
  });
});

describe("request(): the app's own backend", () => {
  let backend: Server;
  let backendUrl: string;
  const seen: string[] = [];
  let expireNext = 0;
  beforeAll(async () => {
    backend = createServer((req, res) => {
      seen.push(req.headers.authorization ?? "");
      // Refuse Login as the service does: a Connect error with ErrorInfo and retry-after.
      if (req.url === "/identity.v1.IdentityService/Login") {
        const info = { type: "google.rpc.ErrorInfo", value: "", debug: { reason: "RATE_LIMITED", domain: "identity.v1", metadata: { retryAfterSeconds: "30" } } };
        res.writeHead(429, { "content-type": "application/json", "retry-after": "30" }).end(JSON.stringify({ code: "resource_exhausted", message: "slow down", details: [info] }));
        return;
      }
      // Refuse as @identity-service/client's middleware does: a flat {code, reason}.
      if (req.url === "/expiring" && expireNext > 0) {
        expireNext--;
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ code: "unauthenticated", reason: "TOKEN_EXPIRED" }));
        return;
      }
      setTimeout(() => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true, path: req.url })), 60);
    });
    await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
    backendUrl = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => backend.close(resolve)));

  it("carries the bearer and never has more than 10 requests in flight; the rest queue", async () => {
    const { d, identity } = await signedIn();
    const { accessToken } = d.storage.get("identity:mp") as { accessToken: string };
    seen.length = 0;
    const answers = await Promise.all(Array.from({ length: 25 }, (_, i) => identity.request({ url: `${backendUrl}/orders/${i}` })));
    expect(answers.map((a) => a.statusCode)).toEqual(Array(25).fill(200));
    expect(answers[7]!.data).toEqual({ ok: true, path: "/orders/7" });
    expect(d.state.maxInFlight).toBe(10);
    expect(new Set(seen)).toEqual(new Set([`Bearer ${accessToken}`]));
  });

  it("an error's retryAfter comes from the retry-after header", async () => {
    const identity = kit.createIdentity({ baseUrl: backendUrl, appId: "mp", platform: device().api });
    const error = await refusal(identity.login());
    expect([error.code, error.reason, error.retryAfter, error.metadata.retryAfterSeconds, error.message]).toEqual(["resource_exhausted", "RATE_LIMITED", 30, "30", "slow down"]);
  });

  it("a lost answer is retried for a GET, but not for a POST unless the call says retry", async () => {
    const { d, identity } = await signedIn();
    d.state.offline = 1;
    expect((await identity.request({ url: `${backendUrl}/orders` })).statusCode).toBe(200);
    d.state.offline = 1;
    expect((await refusal(identity.request({ url: `${backendUrl}/orders`, method: "POST", data: { sku: 1 } }))).reason).toBe("NETWORK");
    d.state.offline = 1;
    expect((await identity.request({ url: `${backendUrl}/orders`, method: "POST", data: { sku: 1 }, retry: true })).statusCode).toBe(200);
  });

  it("a backend's TOKEN_EXPIRED refreshes once and retries with the new token", async () => {
    const { d, identity } = await signedIn();
    expireNext = 1;
    seen.length = 0;
    const answer = await identity.request({ url: `${backendUrl}/expiring`, method: "POST", data: { sku: 1 } });
    expect(answer.statusCode).toBe(200);
    expect(d.count("Refresh")).toBe(1);
    expect(seen).toHaveLength(2);
    expect(seen[0]).not.toBe(seen[1]);
  });
});

describe("profile and errors", () => {
  it("updateProfile builds the mask from the fields given, and errors carry code, reason and field", async () => {
    const d = device();
    const identity = identityOn(d);
    const { user } = await identity.login();
    const updated = await identity.updateProfile({ nickname: "小明", avatarUrl: "https://cdn.example.com/a.png" });
    expect(updated).toMatchObject({ nickname: "小明", avatarUrl: "https://cdn.example.com/a.png", version: (user?.version ?? 0) + 1 });
    expect(identity.user?.nickname).toBe("小明");

    const blank = await refusal(identity.updateProfile({ nickname: "\u200b" }));
    expect([blank.code, blank.reason, blank.status, blank.metadata.field]).toEqual(["invalid_argument", "FIELD_INVALID", 400, "user.nickname"]);
    const stale = await refusal(identity.updateProfile({ nickname: "x" }, { expectedVersion: 0 }));
    expect([stale.code, stale.reason]).toEqual(["aborted", "VERSION_CONFLICT"]);
    const local = await refusal(identity.updateProfile({ roles: ["admin"] } as never));
    expect([local.reason, local.metadata.field]).toEqual(["FIELD_INVALID", "roles"]);
  });
});
