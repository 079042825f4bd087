// Seed 001 (POST /login: username, password, wx.login code) replayed against the real HTTP listener.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintCode, rpc, startHarness, type Harness } from "./support/harness.js";
import { expectNoStack, expectShape, postForm, postJson } from "./support/seed-http.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

let counter = 0;
const username = () => `seed001u${Date.now() % 1e6}${counter++}`;

describe("seed 001 /login", () => {
  it("registers with a wx.login code and answers {status: 0, data: {_id, sessionId, __v}}", async () => {
    const name = username();
    const res = await postJson(h.httpUrl, "/login", { username: name, password: "correct horse", email: "a@example.com", phone: "13800000000", role_id: "admin", code: (await mintCode(h.sim)).code });
    expect(res.status).toBe(200);
    expect(res.json.status).toBe(0);
    expectShape(res.json.data, { _id: "string", sessionId: "string", __v: "number" });
    const me = await rpc(h.httpUrl, "GetUser", {}, res.json.data.sessionId);
    // email is kept; phone and role_id are not the client's to set.
    expect(me.json.user).toMatchObject({ id: res.json.data._id, username: name, email: "a@example.com", phoneNumber: "", roles: ["member"] });
  });

  it("signs in again with a form body, without a code", async () => {
    const name = username();
    const first = await postJson(h.httpUrl, "/login", { username: name, password: "correct horse", code: (await mintCode(h.sim)).code });
    const again = await postForm(h.httpUrl, "/login", { username: name, password: "correct horse" });
    expect(again.json).toMatchObject({ status: 0, data: { _id: first.json.data._id } });
  });

  it("answers a junk code alike for a known and an unknown username", async () => {
    const name = username();
    await postJson(h.httpUrl, "/login", { username: name, password: "correct horse", code: (await mintCode(h.sim)).code });
    const known = await postJson(h.httpUrl, "/login", { username: name, password: "wrong horse", code: "junk-code-1" });
    const unknown = await postJson(h.httpUrl, "/login", { username: username(), password: "wrong horse", code: "junk-code-2" });
    expect([unknown.status, unknown.json]).toEqual([known.status, known.json]);
    expect(known.json.status).toBe(1);
  });

  it("answers {status: 1, msg} for a wrong password, an unknown user and wrong types, never a 500", async () => {
    const name = username();
    await postJson(h.httpUrl, "/login", { username: name, password: "correct horse", code: (await mintCode(h.sim)).code });
    expect((await postJson(h.httpUrl, "/login", { username: name, password: "wrong horse" })).json).toEqual({ status: 1, msg: "用户名或密码不正确!" });
    expect((await postJson(h.httpUrl, "/login", { username: username(), password: "whatever1" })).json).toEqual({ status: 1, msg: "用户名或密码不正确!" });
    for (const body of [
      { username: 12345, password: "x" },
      { username: name, password: ["a"] },
      { username: name, password: "correct horse", code: { x: 1 } },
    ]) {
      const res = await postJson(h.httpUrl, "/login", body);
      expect([res.status, res.json.status, typeof res.json.msg]).toEqual([200, 1, "string"]);
      expectNoStack(res);
    }
  });
});
