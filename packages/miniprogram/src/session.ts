// The tokens the kit holds, with expiry times taken from `expiresIn` and the local clock, stored
// with the platform's storage under a key per app.
import type { Platform } from "./platform.js";

/** The user as the service answers it (proto3 JSON); fields the service leaves empty are absent. */
export interface User {
  id: string;
  version?: number;
  nickname?: string;
  avatarUrl?: string;
  gender?: string;
  birthday?: string;
  phoneNumber?: string;
  purePhoneNumber?: string;
  countryCode?: string;
  email?: string;
  inviteCode?: string;
  attributes?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface Tokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  refreshExpiresIn?: number;
}

export interface Session {
  accessToken: string;
  refreshToken: string;
  /** Local-clock milliseconds when the access token was received and when it expires. */
  receivedAt: number;
  expiresAt: number;
  /** false for the pending session of an explicit-registration app: only BindPhone, Oauth, Logout. */
  registered: boolean;
  user?: User;
}

// Refresh when this share of the token's life, capped at a minute, is left.
const REFRESH_AHEAD_SHARE = 0.1;
const REFRESH_AHEAD_MAX_MS = 60_000;

export function sessionOf(tokens: Tokens, registered: boolean, user: User | undefined): Session {
  const now = Date.now();
  return { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, receivedAt: now, expiresAt: now + tokens.expiresIn * 1000, registered, user };
}

export function refreshDue(session: Session): boolean {
  const ahead = Math.min((session.expiresAt - session.receivedAt) * REFRESH_AHEAD_SHARE, REFRESH_AHEAD_MAX_MS);
  return Date.now() >= session.expiresAt - ahead;
}

export function isTokens(value: unknown): value is Tokens {
  const t = value as Tokens | undefined;
  return !!t && typeof t.accessToken === "string" && typeof t.refreshToken === "string" && typeof t.expiresIn === "number";
}

export function createSessionStore(platform: Platform, appId: string) {
  const key = `identity:${appId}`;
  return {
    /** The stored session, or undefined when there is none or it is not one of ours. */
    load(): Session | undefined {
      let s: Session | undefined;
      try {
        s = platform.getItem(key) as Session | undefined;
      } catch {
        return undefined;
      }
      return s && typeof s.accessToken === "string" && typeof s.refreshToken === "string" && typeof s.expiresAt === "number" ? s : undefined;
    },
    save(session: Session): void {
      try {
        platform.setItem(key, session);
      } catch {
        // Storage full or refused: the session still works until the app is closed.
      }
    },
    clear(): void {
      try {
        platform.removeItem(key);
      } catch {
        // Nothing stored to remove.
      }
    },
  };
}
