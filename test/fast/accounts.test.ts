// Password accounts, linking a WeChat identity to them, invites and account status, in memory.
import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { as, byCode, byPassword, refusal, refusalOf, startFast, type Fast } from "../support/fast.js";

let f: Fast;
beforeAll(async () => {
  f = await startFast();
});

let n = 0;
const username = () => `user_${n++}`;
const passwordLogin = (name: string, password: string, extra: { bindCode?: string } = {}) => f.client.login({ appId: "demo", ...byPassword(name, password), ...extra });

describe("password accounts", () => {
  it("registers with a username, a password and a wx.login code, then signs in with the password alone", async () => {
    const name = username();
    const { code, openid } = f.mintCode();
    const first = await passwordLogin(name, "correct horse battery", { bindCode: code });
    expect(first).toMatchObject({ registered: true, firstLogin: true, openid, user: { username: name, hasPassword: true } });
    expect(first.user!.identities[0]!.openid).toBe(openid);

    const again = await passwordLogin(name.toUpperCase(), "correct horse battery");
    expect(again).toMatchObject({ registered: true, firstLogin: false, user: { id: first.user!.id } });
    expect((await f.client.checkLogin({}, as(again.tokens!.accessToken))).user!.id).toBe(first.user!.id);
    // The same WeChat user signing in with a code lands on the same account.
    expect((await f.login({ openid })).userId).toBe(first.user!.id);
  });

  it("answers a wrong password and an unknown username alike", async () => {
    const name = username();
    await passwordLogin(name, "correct horse battery", { bindCode: f.mintCode().code });
    const wrong = await refusal(passwordLogin(name, "wrong password!"));
    const unknown = await refusal(passwordLogin(username(), "wrong password!"));
    expect([wrong.code, wrong.reason]).toEqual([Code.Unauthenticated, "BAD_CREDENTIALS"]);
    expect([unknown.code, unknown.reason]).toEqual([Code.Unauthenticated, "BAD_CREDENTIALS"]);
    expect(wrong.message).toBe(unknown.message);
  });

  it("enforces username and password rules with clear errors", async () => {
    const short = await refusal(passwordLogin("ab", "whatever123"));
    expect([short.reason, short.metadata.field]).toEqual(["FIELD_INVALID", "password.username"]);
    const weak = await refusal(passwordLogin(username(), "short", { bindCode: f.mintCode().code }));
    expect([weak.reason, weak.metadata.field]).toEqual(["FIELD_INVALID", "password.password"]);
  });

  it("links the WeChat identity of a bindCode to the account, but not one that is another user's", async () => {
    const name = username();
    const registered = await passwordLogin(name, "correct horse battery", { bindCode: f.mintCode().code });
    const fresh = f.mintCode({ openid: "o_link_fresh" });
    const linked = await passwordLogin(name, "correct horse battery", { bindCode: fresh.code });
    expect(linked.user!.identities.map((i) => i.openid)).toContain(fresh.openid);
    expect(linked.user!.id).toBe(registered.user!.id);

    const someoneElse = await f.login();
    const taken = await refusal(passwordLogin(name, "correct horse battery", { bindCode: f.mintCode({ openid: someoneElse.openid }).code }));
    expect([taken.code, taken.reason]).toEqual([Code.AlreadyExists, "IDENTITY_TAKEN"]);
  });

  it("lets a WeChat user set a password, and change it only with the current one", async () => {
    const me = await f.login();
    expect(me.res.user!.hasPassword).toBe(false);
    const name = username();
    const set = await f.client.setPassword({ username: name, newPassword: "first password" }, as(me.access));
    expect(set.user).toMatchObject({ username: name, hasPassword: true, version: 1 });
    expect((await passwordLogin(name, "first password")).user!.id).toBe(me.userId);

    expect((await refusal(f.client.setPassword({ newPassword: "second password" }, as(me.access)))).reason).toBe("BAD_CREDENTIALS");
    await f.client.setPassword({ currentPassword: "first password", newPassword: "second password" }, as(me.access));
    expect((await refusal(passwordLogin(name, "first password"))).reason).toBe("BAD_CREDENTIALS");
    expect((await passwordLogin(name, "second password")).user!.id).toBe(me.userId);

    const other = await f.login();
    const taken = await refusal(f.client.setPassword({ username: name.toUpperCase(), newPassword: "third password" }, as(other.access)));
    expect([taken.code, taken.reason]).toEqual([Code.AlreadyExists, "USERNAME_TAKEN"]);
  });

  it("of parallel first SetPassword calls exactly one wins; the others neither rename the account nor replace its password", async () => {
    const me = await f.login();
    const names = Array.from({ length: 12 }, () => username());
    const results = await Promise.allSettled(names.map((name, i) => f.client.setPassword({ username: name, newPassword: `password number ${i}` }, as(me.access))));
    const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    expect(won).toHaveLength(1);
    // A loser that read the account before the winner wrote sees a conflict; one that read it after
    // is asked for the current password, as a later call would be.
    for (const r of results) {
      if (r.status === "rejected") {
        const { code, reason } = refusalOf(r.reason);
        expect([
          [Code.Aborted, "VERSION_CONFLICT"],
          [Code.Unauthenticated, "BAD_CREDENTIALS"],
        ]).toContainEqual([code, reason]);
      }
    }
    const winner = won[0]!;
    expect((await f.client.getUser({}, as(me.access))).user).toMatchObject({ username: names[winner], version: 1 });
    expect((await passwordLogin(names[winner]!, `password number ${winner}`)).user!.id).toBe(me.userId);
  });
});

describe("invites", () => {
  it("gives every user a distinct invite code without ambiguous characters", async () => {
    const users = await Promise.all(Array.from({ length: 10 }, () => f.login()));
    const codes = users.map((u) => u.res.user!.inviteCode);
    for (const code of codes) expect(code).toMatch(/^[2-9A-HJKMNP-Z]{8}$/);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it("records the inviter on the first login only, by invite code or by id", async () => {
    const inviter = await f.login();
    const { code, openid } = f.mintCode();
    const invited = await f.client.login({ appId: "demo", ...byCode(code), inviteCode: inviter.res.user!.inviteCode.toLowerCase() });
    expect(invited.user!.inviterId).toBe(inviter.userId);

    const another = await f.login();
    const later = await f.client.login({ appId: "demo", ...byCode(f.mintCode({ openid }).code), inviterId: another.userId });
    expect(later.user!.inviterId).toBe(inviter.userId);

    const byId = await f.client.login({ appId: "demo", ...byCode(f.mintCode().code), inviterId: inviter.userId });
    expect(byId.user!.inviterId).toBe(inviter.userId);
  });

  it("refuses an unknown inviter before spending the code", async () => {
    const { code } = f.mintCode();
    const unknown = await refusal(f.client.login({ appId: "demo", ...byCode(code), inviteCode: "ZZZZ2222" }));
    expect([unknown.code, unknown.reason, unknown.metadata.field]).toEqual([Code.InvalidArgument, "FIELD_INVALID", "invite_code"]);
    expect((await f.client.login({ appId: "demo", ...byCode(code) })).registered).toBe(true);
    const badId = await refusal(f.client.login({ appId: "demo", ...byCode(f.mintCode().code), inviterId: "000000000000000000000000" }));
    expect(badId.reason).toBe("FIELD_INVALID");
  });
});

describe("firstLogin", () => {
  it("is true exactly once per user, whichever way the user came", async () => {
    const { openid, code } = f.mintCode();
    const results = [await f.client.login({ appId: "demo", ...byCode(code) })];
    for (let i = 0; i < 3; i++) results.push(await f.client.login({ appId: "demo", ...byCode(f.mintCode({ openid }).code) }));
    expect(results.map((r) => r.firstLogin)).toEqual([true, false, false, false]);
  });
});

describe("status", () => {
  it("shuts a disabled user out: no login, no refresh, and its live sessions stop working", async () => {
    const me = await f.login();
    const user = (await f.store.users.get(me.userId))!;
    await f.store.users.replace({ ...user, status: "disabled" });
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["CheckLogin", () => f.client.checkLogin({}, as(me.access))],
      ["GetUser", () => f.client.getUser({}, as(me.access))],
      ["GetPhone", () => f.client.getPhone({ code: "any-code" }, as(me.access))],
      ["UpdateUser", () => f.client.updateUser({ user: { nickname: "x" } }, as(me.access))],
      ["Refresh", () => f.client.refresh({ refreshToken: me.refresh })],
      ["Login", () => f.client.login({ appId: "demo", ...byCode(f.mintCode({ openid: me.openid }).code) })],
    ];
    for (const [method, call] of calls) {
      const { code, reason } = await refusal(call());
      expect([method, code, reason]).toEqual([method, Code.PermissionDenied, "ACCOUNT_DISABLED"]);
    }
  });
});
