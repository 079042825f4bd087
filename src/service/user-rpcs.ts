import type { ServiceImpl } from "@connectrpc/connect";
import type { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import type { SessionRecord, UserRecord } from "../store/store.js";
import { noteOf } from "./audit.js";
import type { Caller } from "./caller.js";
import { apiError, fieldInvalid } from "./errors.js";
import type { ServiceContext } from "./service-context.js";
import { planProfilePatch, updatePaths } from "./user-update.js";
import { userToWire } from "./user-view.js";

// A user read or edited by itself (bearer token) or by an internal service (x-api-key, any user).

export function createUserRpcs(
  { users, accounts, sessions, contentCheck, appOf, now }: ServiceContext,
  { authenticate, internalCallerOf }: Caller,
): Pick<ServiceImpl<typeof IdentityService>, "getUser" | "updateUser"> {
  return {
    async getUser(req, ctx) {
      if (internalCallerOf(ctx)) {
        if (!req.userId) throw fieldInvalid("user_id", "required for an internal caller");
        const user = await users.get(req.userId);
        if (!user) throw apiError("USER_NOT_FOUND", "no user has this id");
        return { user: userToWire(user) };
      }
      const { userId, user } = await authenticate(ctx);
      if (req.userId && req.userId !== userId) {
        throw apiError("PERMISSION_DENIED", "an end user may read only itself");
      }
      return { user: userToWire(user!) };
    },

    async updateUser(req, ctx) {
      const wanted = req.user;
      if (!wanted) throw fieldInvalid("user", "the fields to set are required");
      const internal = internalCallerOf(ctx) !== null;
      let userId: string;
      let signedIn: { session: SessionRecord; user: UserRecord } | undefined;
      if (internal) {
        if (!wanted.id) throw fieldInvalid("user.id", "required for an internal caller");
        userId = wanted.id;
        // As stored and as ListAuditEvents looks it up: ids are lower-case hex.
        noteOf(ctx).subjectUserId = userId.toLowerCase();
      } else {
        const auth = await authenticate(ctx);
        userId = auth.userId;
        signedIn = { session: auth.session, user: auth.user! };
        if (wanted.id && wanted.id !== userId) throw apiError("PERMISSION_DENIED", "an end user may update only itself");
      }
      if (req.expectedVersion !== undefined && req.expectedVersion < 0) throw fieldInvalid("expected_version", "must not be negative");
      const patch = planProfilePatch(wanted, updatePaths(wanted, req.updateMask?.paths ?? []), new Date(now()), { internal });
      // What users write about themselves goes through the app's content check; internal services are trusted.
      const { nickname } = patch.set;
      if (signedIn && nickname !== undefined && nickname !== signedIn.user.nickname) {
        const app = appOf(signedIn.session.appKey);
        const openid = signedIn.user.identities.find((i) => i.platform === app?.platform && i.appid === app?.appid)?.openid;
        if (app && openid) await contentCheck.checkNickname(app, openid, nickname, ctx.signal);
      }
      if (patch.set.status) noteOf(ctx).details.status = patch.set.status;
      // Told to verifiers before it is written: should the write then fail, the user's tokens end anyway (errs closed).
      if (patch.set.status) {
        // By the stored id: an internal caller's id may be upper-case hex, which verifiers (and the sessions' userId) never are.
        const current = await users.get(userId);
        if (current) await sessions.beforeStatusChange(current.id, current.status, patch.set.status);
      }
      const updated = await accounts.update(
        userId,
        (user) => {
          const next: UserRecord = { ...user, ...patch.set };
          for (const field of patch.unset) {
            if (field === "attributes") next.attributes = {};
            else delete next[field];
          }
          return next;
        },
        req.expectedVersion,
        { anyStatus: internal },
      );
      return { user: userToWire(updated) };
    },
  };
}
