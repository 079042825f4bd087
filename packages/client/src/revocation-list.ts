import { RevocationReason, type Revocation } from "./gen/identity/v1/identity_pb.js";

/** How far another instance's clock may run ahead of ours, as the service allows for `iat`. */
export const MAX_CLOCK_SKEW_SECONDS = 60;

/** The claims a revocation is judged against. */
export interface RevocableClaims {
  sid: string;
  sub?: string;
  /** Seconds since the epoch; a token without one counts as issued before any revocation. */
  iat?: number;
  exp: number;
}

export type RevocationVerdict = "TOKEN_REVOKED" | "ACCOUNT_DISABLED" | "UNKNOWN" | null;

interface UserCutoffs {
  /** Tokens issued at or before this second are revoked (all sessions ended). */
  revokedThrough?: number;
  /** Tokens issued at or before this second belong to a disabled user. */
  disabledThrough?: number;
}

/**
 * What the revocation stream has said, kept only while a token it refuses could still be alive:
 * an entry lives for the longest token lifetime seen (plus clock skew) after its revoke_time.
 */
export function createRevocationList() {
  const sessions = new Map<string, number>();
  const users = new Map<string, UserCutoffs>();
  // Longest exp - iat seen: before any token is seen nothing is dropped (the stream's replay
  // already bounds what it sends to one token lifetime).
  let horizonSeconds = 0;
  // The latest revoke_time dropped: a token issued before it (a longer lifetime than we assumed)
  // can no longer be judged here.
  let droppedThrough = Number.NEGATIVE_INFINITY;

  return {
    add(revocation: Revocation): void {
      const at = Number(revocation.revokeTime?.seconds ?? 0n);
      const { target } = revocation;
      if (target.case === "sessionId") sessions.set(target.value, Math.max(at, sessions.get(target.value) ?? at));
      else if (target.case === "userId") {
        const cutoffs = users.get(target.value) ?? {};
        const key = revocation.reason === RevocationReason.USER_DISABLED ? "disabledThrough" : "revokedThrough";
        cutoffs[key] = Math.max(at, cutoffs[key] ?? at);
        users.set(target.value, cutoffs);
      }
    },

    /** Why the token is refused, null when nothing refuses it, UNKNOWN when this list can't tell. */
    verdict(claims: RevocableClaims): RevocationVerdict {
      const iat = claims.iat ?? Number.NEGATIVE_INFINITY;
      if (claims.iat !== undefined && claims.exp - claims.iat > horizonSeconds) horizonSeconds = claims.exp - claims.iat;
      if (iat <= droppedThrough + MAX_CLOCK_SKEW_SECONDS) return "UNKNOWN";
      // The service checks the session before the user, so a revoked session says TOKEN_REVOKED.
      if (sessions.has(claims.sid)) return "TOKEN_REVOKED";
      const cutoffs = claims.sub === undefined ? undefined : users.get(claims.sub);
      if (cutoffs === undefined) return null;
      if (iat <= (cutoffs.revokedThrough ?? Number.NEGATIVE_INFINITY)) return "TOKEN_REVOKED";
      if (iat <= (cutoffs.disabledThrough ?? Number.NEGATIVE_INFINITY)) return "ACCOUNT_DISABLED";
      return null;
    },

    /** Drops entries no live token can fall under any more. */
    prune(nowMs: number): void {
      if (!horizonSeconds) return;
      const before = nowMs / 1000 - horizonSeconds - MAX_CLOCK_SKEW_SECONDS;
      const drop = (at: number) => {
        if (at >= before) return false;
        droppedThrough = Math.max(droppedThrough, at);
        return true;
      };
      for (const [id, at] of sessions) if (drop(at)) sessions.delete(id);
      for (const [id, cutoffs] of users) {
        if (cutoffs.revokedThrough !== undefined && drop(cutoffs.revokedThrough)) delete cutoffs.revokedThrough;
        if (cutoffs.disabledThrough !== undefined && drop(cutoffs.disabledThrough)) delete cutoffs.disabledThrough;
        if (cutoffs.revokedThrough === undefined && cutoffs.disabledThrough === undefined) users.delete(id);
      }
    },

    get size() {
      return { sessions: sessions.size, users: users.size };
    },
  };
}

export type RevocationList = ReturnType<typeof createRevocationList>;
