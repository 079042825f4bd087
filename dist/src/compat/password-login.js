import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { defaultApp, fieldsOf, messageOf, mountSeed, text, withRetryHint } from "./shared.js";
const fail = (msg) => ({ status: 1, msg });
export async function registerPasswordLogin(server, { invoke, apps }) {
    const appId = defaultApp(apps)?.id ?? "";
    await mountSeed(server, { badInput: fail, serverError: () => fail(messageOf("INTERNAL")) }, (scope) => {
        scope.post("/login", async (request, reply) => {
            const fields = fieldsOf(request);
            // phone and role_id are read (a wrong type is refused) but not stored: a phone number is bound
            // only through WeChat's phone button, and roles are the operator's to give.
            for (const ignored of ["phone", "role_id"])
                text(fields, ignored);
            const email = text(fields, "email");
            const credential = { case: "password", value: { username: text(fields, "username"), password: text(fields, "password") } };
            const res = await invoke(IdentityService.method.login, { appId, credential, bindCode: text(fields, "code") }, request);
            if (!res.ok) {
                withRetryHint(reply, res);
                return fail(messageOf(res.reason));
            }
            let user = res.message.user;
            const sessionId = res.message.tokens.accessToken;
            if (email && res.message.firstLogin) {
                // The sign-in has happened; an email UpdateUser refuses is dropped rather than failing it.
                const updated = await invoke(IdentityService.method.updateUser, { user: { email }, updateMask: { paths: ["email"] } }, request, sessionId);
                if (updated.ok)
                    user = updated.message.user;
            }
            return { status: 0, data: { _id: user.id, sessionId, __v: user.version } };
        });
    });
}
