import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { TokenError } from "../auth/errors.js";
import { noteOf, SYSTEM_ACTOR } from "./audit.js";
import { MAX_TOKEN_CHARS, type Caller } from "./caller.js";
import { fieldInvalid } from "./errors.js";
import { kClientAddress } from "./interceptors.js";
import { tokensToWire, type ServiceContext } from "./service-context.js";
import { userToWire } from "./user-view.js";

// A session's life after Login: refreshed, checked (by its client or an internal service), ended.

export function createSessionRpcs(
  { sessions, rates, limit }: ServiceContext,
  { authenticate, internalCallerOf }: Caller,
): Pick<ServiceImpl<typeof IdentityService>, "refresh" | "logout" | "checkLogin"> {
  return {
    async refresh(req, ctx) {
      limit(rates.refreshAddress, ctx.values.get(kClientAddress), "too many refreshes from this address");
      if (!req.refreshToken || req.refreshToken.length > MAX_TOKEN_CHARS) throw fieldInvalid("refresh_token", "a refresh token is required");
      const note = noteOf(ctx);
      try {
        const { tokens, session } = await sessions.refresh(req.refreshToken);
        Object.assign(note, { subjectUserId: session.userId ?? undefined, appKey: session.appKey });
        return { tokens: tokensToWire(tokens) };
      } catch (e) {
        // The service, not the caller, ended the session: someone else holds its refresh token.
        if (e instanceof TokenError && e.kind === "reused") Object.assign(note, { subjectUserId: e.userId, actor: SYSTEM_ACTOR, type: "refresh_token.reused" });
        throw e;
      }
    },

    async logout(req, ctx) {
      // An expired access token still ends its session (sessions.authenticate).
      const { session, userId } = await authenticate(ctx, { allowPending: true, ending: true });
      if (req.allSessions && userId) await sessions.revokeAllOfUser(userId);
      else await sessions.revoke(session.id);
      return {};
    },

    async checkLogin(req, ctx) {
      // Internal services introspect any user's token, on every request of theirs: not limited per user.
      const internal = internalCallerOf(ctx) !== null;
      if (internal && !req.accessToken) throw fieldInvalid("access_token", "the token to introspect is required");
      const { session, claims, user } = await authenticate(ctx, { ...(req.accessToken ? { token: req.accessToken } : {}), limited: !internal });
      return { user: userToWire(user!), sessionId: session.id, expireTime: timestampFromMs(claims.exp * 1000), appId: session.appKey };
    },
  };
}
