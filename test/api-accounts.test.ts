// Password accounts, linking a WeChat identity to them, and invites, through the real listeners.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../src/store/memory-store.js";
import { login, mintCode, reasonOf, rpc, startHarness, type Harness } from "./support/harness.js";

let h: Harness;
const store = new MemoryStore();
beforeAll(async () => {
  h = await startHarness(undefined, {}, store);
});
afterAll(() => h.close());

let n = 0;
const username = () => `user_${Date.now().toString(36)}_${n++}`;
const passwordLogin = async (name: string, password: string, extra: object = {}, headers: Record<string, string> = {}) =>
  rpc(h.httpUrl, "Login", { appId: "demo", password: { username: name, password }, ...extra }, undefined, headers);

describe("password accounts", () => {
  it("registers with a username, a password and a wx.login code, then signs in with the password alone", async () => {
    const name = username();
    const { code, openid } = await mintCode(h.sim);
    const first = await passwordLogin(name, "correct horse battery", { bindCode: code });
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ registered: true, firstLogin: true, openid, user: { username: name, hasPassword: true } });
    expect(first.json.user.identities[0].openid).toBe(openid);
    expect(first.text).not.toContain("scrypt");

    const again = await passwordLogin(name.toUpperCase(), "correct horse battery");
    expect(again.json).toMatchObject({ registered: true, firstLogin: false, user: { id: first.json.user.id } });
    expect((await rpc(h.httpUrl, "CheckLogin", {}, again.json.tokens.accessToken)).json.user.id).toBe(first.json.user.id);
    // The same WeChat user signing in with a code lands on the same account.
    const wechat = await login(h, { openid });
    expect(wechat.body.user.id).toBe(first.json.user.id);
  });

  it("answers a wrong password and an unknown username alike", async () => {
    const name = username();
    await passwordLogin(name, "correct horse battery", { bindCode: (await mintCode(h.sim)).code });
    const wrong = await passwordLogin(name, "wrong password!");
    const unknown = await passwordLogin(username(), "wrong password!");
    expect([wrong.status, reasonOf(wrong)]).toEqual([401, "BAD_CREDENTIALS"]);
    expect([unknown.status, reasonOf(unknown)]).toEqual([401, "BAD_CREDENTIALS"]);
    expect(wrong.json.message).toBe(unknown.json.message);
  });

  it("enforces username and password rules with clear errors", async () => {
    const short = await passwordLogin("ab", "whatever123");
    expect([reasonOf(short), short.json.details[0].debug.metadata.field]).toEqual(["FIELD_INVALID", "password.username"]);
    const weak = await passwordLogin(username(), "short", { bindCode: (await mintCode(h.sim)).code });
    expect([reasonOf(weak), weak.json.details[0].debug.metadata.field]).toEqual(["FIELD_INVALID", "password.password"]);
  });

  it("links the WeChat identity of a bindCode to the account, but not one that is another user's", async () => {
    const name = username();
    const registered = await passwordLogin(name, "correct horse battery", { bindCode: (await mintCode(h.sim)).code });
    const fresh = await mintCode(h.sim, { openid: `o_link_${Date.now()}` });
    const linked = await passwordLogin(name, "correct horse battery", { bindCode: fresh.code });
    expect(linked.json.user.identities.map((i: { openid: string }) => i.openid)).toContain(fresh.openid);
    expect(linked.json.user.id).toBe(registered.json.user.id);

    const someoneElse = await login(h);
    const taken = await passwordLogin(name, "correct horse battery", { bindCode: (await mintCode(h.sim, { openid: someoneElse.openid })).code });
    expect([taken.status, reasonOf(taken)]).toEqual([409, "IDENTITY_TAKEN"]);
  });

  it("lets a WeChat user set a password, and change it only with the current one", async () => {
    const me = await login(h);
    expect(me.body.user.hasPassword).toBe(false);
    const name = username();
    const set = await rpc(h.httpUrl, "SetPassword", { username: name, newPassword: "first password" }, me.access);
    expect(set.json.user).toMatchObject({ username: name, hasPassword: true, version: 1 });
    expect((await passwordLogin(name, "first password")).json.user.id).toBe(me.body.user.id);

    const noCurrent = await rpc(h.httpUrl, "SetPassword", { newPassword: "second password" }, me.access);
    expect(reasonOf(noCurrent)).toBe("BAD_CREDENTIALS");
    const changed = await rpc(h.httpUrl, "SetPassword", { currentPassword: "first password", newPassword: "second password" }, me.access);
    expect(changed.status).toBe(200);
    expect(reasonOf(await passwordLogin(name, "first password"))).toBe("BAD_CREDENTIALS");
    expect((await passwordLogin(name, "second password")).status).toBe(200);

    const other = await login(h);
    const taken = await rpc(h.httpUrl, "SetPassword", { username: name.toUpperCase(), newPassword: "third password" }, other.access);
    expect([taken.status, reasonOf(taken)]).toEqual([409, "USERNAME_TAKEN"]);
  });

  it("of parallel first SetPassword calls exactly one wins; the others neither rename the account nor replace its password", async () => {
    const me = await login(h);
    const names = Array.from({ length: 12 }, () => username());
    const results = await Promise.all(names.map((name, i) => rpc(h.httpUrl, "SetPassword", { username: name, newPassword: `password number ${i}` }, me.access)));
    const won = results.flatMap((r, i) => (r.status === 200 ? [i] : []));
    expect(won).toHaveLength(1);
    // A loser that read the account before the winner wrote sees a conflict; one that read it after
    // is asked for the current password, as a later call would be.
    for (const r of results) if (r.status !== 200) expect([[409, "VERSION_CONFLICT"], [401, "BAD_CREDENTIALS"]]).toContainEqual([r.status, reasonOf(r)]);
    const winner = won[0]!;
    expect((await rpc(h.httpUrl, "GetUser", {}, me.access)).json.user).toMatchObject({ username: names[winner], version: 1 });
    expect((await passwordLogin(names[winner]!, `password number ${winner}`)).status).toBe(200);
  });

  it("limits failures per account, and then refuses even the right password for a while", async () => {
    const name = username();
    await passwordLogin(name, "correct horse battery", { bindCode: (await mintCode(h.sim)).code });
    for (let i = 0; i < 5; i++) expect(reasonOf(await passwordLogin(name, `wrong ${i} password`))).toBe("BAD_CREDENTIALS");
    const limited = await passwordLogin(name, "correct horse battery");
    expect([limited.status, reasonOf(limited)]).toEqual([429, "RATE_LIMITED"]);
    expect(Number(limited.json.details[0].debug.metadata.retryAfterSeconds)).toBeGreaterThan(0);
  });
});

describe("invites", () => {
  it("gives every user a distinct invite code without ambiguous characters", async () => {
    const users = await Promise.all(Array.from({ length: 10 }, () => login(h)));
    const codes = users.map((u) => u.body.user.inviteCode as string);
    for (const code of codes) expect(code).toMatch(/^[2-9A-HJKMNP-Z]{8}$/);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it("records the inviter on the first login only, by invite code or by id", async () => {
    const inviter = await login(h);
    const { code, openid } = await mintCode(h.sim);
    const invited = await rpc(h.httpUrl, "Login", { appId: "demo", code, inviteCode: inviter.body.user.inviteCode.toLowerCase() });
    expect(invited.json.user.inviterId).toBe(inviter.body.user.id);

    const another = await login(h);
    const later = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim, { openid })).code, inviterId: another.body.user.id });
    expect(later.json.user.inviterId).toBe(inviter.body.user.id);

    const byId = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim)).code, inviterId: inviter.body.user.id });
    expect(byId.json.user.inviterId).toBe(inviter.body.user.id);
  });

  it("refuses an unknown inviter before spending the code", async () => {
    const { code } = await mintCode(h.sim);
    const unknown = await rpc(h.httpUrl, "Login", { appId: "demo", code, inviteCode: "ZZZZ2222" });
    expect([unknown.status, reasonOf(unknown), unknown.json.details[0].debug.metadata.field]).toEqual([400, "FIELD_INVALID", "invite_code"]);
    expect((await rpc(h.httpUrl, "Login", { appId: "demo", code })).status).toBe(200);
    const badId = await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim)).code, inviterId: "000000000000000000000000" });
    expect(reasonOf(badId)).toBe("FIELD_INVALID");
  });
});

describe("firstLogin", () => {
  it("is true exactly once per user, whichever way the user came", async () => {
    const { openid, code } = await mintCode(h.sim);
    const results = [await rpc(h.httpUrl, "Login", { appId: "demo", code })];
    for (let i = 0; i < 3; i++) results.push(await rpc(h.httpUrl, "Login", { appId: "demo", code: (await mintCode(h.sim, { openid })).code }));
    expect(results.map((r) => r.json.firstLogin)).toEqual([true, false, false, false]);
  });
});

describe("status", () => {
  it("shuts a disabled user out: no login, no refresh, and its live sessions stop working", async () => {
    const me = await login(h);
    const user = (await store.users.get(me.body.user.id))!;
    await store.users.replace({ ...user, status: "disabled" });
    for (const [method, body, token] of [
      ["CheckLogin", {}, me.access],
      ["GetUser", {}, me.access],
      ["GetPhone", { code: "any-code" }, me.access],
      ["UpdateUser", { user: { nickname: "x" } }, me.access],
      ["Refresh", { refreshToken: me.refresh }, undefined],
      ["Login", { appId: "demo", code: (await mintCode(h.sim, { openid: me.openid })).code }, undefined],
    ] as const) {
      const res = await rpc(h.httpUrl, method, body, token);
      expect([method, res.status, reasonOf(res)]).toEqual([method, 403, "ACCOUNT_DISABLED"]);
    }
  });
});

describe("limits per client address", () => {
  it("refuses a spray of passwords over many usernames from one address", async () => {
    const own = await startHarness();
    try {
      const spray = (i: number) => rpc(own.httpUrl, "Login", { appId: "demo", password: { username: `spray_${i}`, password: "guess guess" } });
      for (let i = 0; i < 30; i++) expect(reasonOf(await spray(i))).toBe("BAD_CREDENTIALS");
      const limited = await spray(30);
      expect([limited.status, reasonOf(limited)]).toEqual([429, "RATE_LIMITED"]);
      // A forged X-Forwarded-For is not trusted.
      const forged = await rpc(own.httpUrl, "Login", { appId: "demo", password: { username: "spray_x", password: "guess guess" } }, undefined, { "x-forwarded-for": "203.0.113.9" });
      expect(reasonOf(forged)).toBe("RATE_LIMITED");
    } finally {
      await own.close();
    }
    // 31 password checks at the production scrypt cost, about 150 ms each here and more in a loaded CI.
  }, 30_000);
});
