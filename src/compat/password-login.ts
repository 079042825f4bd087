// Seed 001: POST /login with username and password, and a wx.login `code` that binds (or, for an
// unknown username, registers) the WeChat identity. `{status: 0, data: {_id, sessionId, __v}}`.
import type { FastifyInstance } from "fastify";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { defaultApp, fieldsOf, messageOf, mountSeed, text, withRetryHint, type SeedDeps } from "./shared.js";

const fail = (msg: string) => ({ status: 1, msg });

export async function registerPasswordLogin(server: FastifyInstance, { invoke, apps }: SeedDeps): Promise<void> {
  const appKey = defaultApp(apps)?.id ?? "";
  await mountSeed(server, { badInput: fail, serverError: () => fail(messageOf("INTERNAL")) }, (scope) => {
    scope.post("/login", async (request, reply) => {
      const fields = fieldsOf(request);
      // phone and role_id are read (a wrong type is refused) but not stored: a phone number is bound
      // only through WeChat's phone button, and roles are the operator's to give.
      for (const ignored of ["phone", "role_id"]) text(fields, ignored);
      const email = text(fields, "email");
      const credential = { case: "password" as const, value: { username: text(fields, "username"), password: text(fields, "password") } };
      const res = await invoke(IdentityService.method.login, { appId: appKey, credential, bindCode: text(fields, "code") }, request);
      if (!res.ok) {
        withRetryHint(reply, res);
        return fail(messageOf(res.reason));
      }
      let user = res.message.user!;
      const sessionId = res.message.tokens!.accessToken;
      if (email && res.message.firstLogin) {
        // The sign-in has happened; an email UpdateUser refuses is dropped rather than failing it.
        const updated = await invoke(IdentityService.method.updateUser, { user: { email }, updateMask: { paths: ["email"] } }, request, sessionId);
        if (updated.ok) user = updated.message.user!;
      }
      return { status: 0, data: { _id: user.id, sessionId, __v: user.version } };
    });
  });
}
