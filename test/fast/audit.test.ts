// The audit writer's failure rule: a call whose change is stored answers as it would have, and the
// event it could not write goes to the log instead.
import { beforeAll, describe, expect, it } from "vitest";
import { as, startFast, type Fast } from "../support/fast.js";

describe("an audit log that cannot be written", () => {
  let f: Fast;
  beforeAll(async () => {
    f = await startFast();
  });

  it("fails no call: the event goes to the log, without the client address", async () => {
    const append = f.store.audit.append;
    f.store.audit.append = async () => {
      throw new Error("audit store down");
    };
    try {
      const me = await f.login();
      expect((await f.client.logout({}, as(me.access))).$typeName).toBe("identity.v1.LogoutResponse");
    } finally {
      f.store.audit.append = append;
    }
    const lost = f.logs.map((line) => JSON.parse(line)).filter((line) => line.msg === "audit event not written");
    expect(lost.map((line) => [line.level, line.event.type, line.event.outcome])).toEqual([
      [50, "login", "ok"],
      [50, "logout", "ok"],
    ]);
    expect(lost.every((line) => line.event.address === undefined)).toBe(true);
    const me = await f.login();
    expect((await f.store.audit.list({ subjectUserId: me.userId }, 10)).map((e) => e.type)).toEqual(["login"]);
  });

  it("writes a user's activity once a day however often it refreshes, and counts it active", async () => {
    const record = f.store.activity.record;
    const days: string[] = [];
    f.store.activity.record = async (day, appKey, userId, registered) => {
      days.push(day);
      return record.call(f.store.activity, day, appKey, userId, registered);
    };
    try {
      const me = await f.login();
      let refresh = me.refresh;
      for (let i = 0; i < 3; i++) refresh = (await f.client.refresh({ refreshToken: refresh })).tokens!.refreshToken;
      expect(days).toHaveLength(1);
      const [today] = await f.store.activity.daily(days[0]!, days[0]!);
      expect(today).toMatchObject({ appKey: "demo", registered: expect.any(Number) });
      expect(today!.active).toBeGreaterThanOrEqual(1);
    } finally {
      f.store.activity.record = record;
    }
  });

  it("records a Login retried with the same code under its user, marked as replayed", async () => {
    const { code } = f.mintCode();
    const request = { appId: "demo", credential: { case: "code" as const, value: code } };
    const first = await f.client.login(request);
    await f.client.login(request);
    const events = await f.store.audit.list({ subjectUserId: first.user!.id }, 10);
    expect(events.map((e) => [e.type, e.details])).toEqual([
      ["login", { method: "wechat-miniprogram", replayed: "true" }],
      ["login", { method: "wechat-miniprogram" }],
    ]);
  });
});
