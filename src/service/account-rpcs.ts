import type { ServiceImpl } from "@connectrpc/connect";
import type { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import type { Caller } from "./caller.js";
import { apiError, fieldInvalid } from "./errors.js";
import type { ServiceContext } from "./service-context.js";
import { userToWire } from "./user-view.js";

// A signed-in user ending or narrowing its own account (AdminService does the same for operators).

/** How recent the sign-in must be to delete the account: a token stolen hours ago cannot. */
const REAUTH_WINDOW_MS = 10 * 60_000;

export function createAccountRpcs({ lifecycle, now }: ServiceContext, { authenticate }: Caller): Pick<ServiceImpl<typeof IdentityService>, "deleteAccount" | "unlinkIdentity" | "unbindPhone"> {
  return {
    async deleteAccount(req, ctx) {
      const { session, user } = await authenticate(ctx);
      if (!req.confirm) throw fieldInvalid("confirm", "must be true: deleting an account cannot be undone");
      if (now() - session.createdAt.getTime() > REAUTH_WINDOW_MS) {
        throw apiError("REAUTH_REQUIRED", "deleting the account needs a sign-in of the last 10 minutes; Login again, then retry", { maxAgeSeconds: String(REAUTH_WINDOW_MS / 1000) });
      }
      await lifecycle.deleteUser(user!);
      return {};
    },

    async unlinkIdentity(req, ctx) {
      const { userId } = await authenticate(ctx);
      return { user: userToWire(await lifecycle.unlinkIdentity(userId, req.platform, req.appid)) };
    },

    async unbindPhone(_req, ctx) {
      const { userId } = await authenticate(ctx);
      return { user: userToWire(await lifecycle.unbindPhone(userId)) };
    },
  };
}
