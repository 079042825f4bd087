import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { CredentialStore } from "../store/store.js";
import { WechatError, type WechatApp } from "./wechat-client.js";

// One access token per appid, shared by every instance through the store. Each instance keeps it
// in memory too; only the holder of the store's lease fetches a new one, the others wait and read
// it. A token WeChat refuses (40001/42001) is expired in the store only if it is still the stored
// one, so an instance holding an older token can't throw away a newer one.

export interface BrokerOptions {
  credentials: CredentialStore;
  fetchToken: (app: WechatApp, signal?: AbortSignal) => Promise<{ accessToken: string; expiresIn: number }>;
  now?: () => number;
  /**
   * Refresh when less than this is left. Below WeChat's own 5-minute overlap, so a refresh always
   * gets a new token rather than the same one back.
   */
  refreshAheadMs?: number;
  /** How long a refresher may hold the lease (longer than one fetch with its retries). */
  leaseMs?: number;
  /** How often a waiting instance looks for the refresher's token. */
  pollMs?: number;
  /** Told each time this instance got a new token from the platform (not when it read one from the store). */
  onRefresh?: (appid: string) => void;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

export function createAccessTokenBroker({ credentials, fetchToken, now = Date.now, refreshAheadMs = 240_000, leaseMs = 15_000, pollMs = 50, onRefresh }: BrokerOptions) {
  const owner = randomBytes(8).toString("hex");
  const memory = new Map<string, CachedToken>();
  const inFlight = new Map<string, Promise<string>>();
  const usable = (expiresAt: number | null | undefined) => typeof expiresAt === "number" && expiresAt - now() > refreshAheadMs;

  async function refresh(app: WechatApp): Promise<string> {
    const giveUpAt = now() + 2 * leaseMs;
    for (;;) {
      const stored = await credentials.get(app.appid);
      if (stored?.accessToken && usable(stored.expiresAt?.getTime())) return remember(app.appid, stored.accessToken, stored.expiresAt!.getTime());
      if (await credentials.acquireLease(app.appid, owner, new Date(now() + leaseMs), new Date(now()))) return fetchUnderLease(app);
      if (now() > giveUpAt) throw new WechatError("unavailable", "stable_token");
      await sleep(pollMs);
    }
  }

  async function fetchUnderLease(app: WechatApp): Promise<string> {
    try {
      // Another instance may have stored a token between our read and our lease.
      const stored = await credentials.get(app.appid);
      if (stored?.accessToken && usable(stored.expiresAt?.getTime())) {
        await credentials.saveToken(app.appid, owner, stored.accessToken, stored.expiresAt!);
        return remember(app.appid, stored.accessToken, stored.expiresAt!.getTime());
      }
      const fetched = await fetchToken(app);
      onRefresh?.(app.appid);
      const expiresAt = now() + fetched.expiresIn * 1000;
      await credentials.saveToken(app.appid, owner, fetched.accessToken, new Date(expiresAt));
      return remember(app.appid, fetched.accessToken, expiresAt);
    } catch (e) {
      // Let the others try at once instead of waiting for the lease to lapse.
      await credentials.acquireLease(app.appid, owner, new Date(0), new Date(now())).catch(() => undefined);
      throw e;
    }
  }

  function remember(appid: string, token: string, expiresAt: number): string {
    memory.set(appid, { token, expiresAt });
    return token;
  }

  /** The app's token; a caller whose `signal` aborts stops waiting, while the shared fetch goes on for the others. */
  async function token(app: WechatApp, signal?: AbortSignal): Promise<string> {
    const cached = memory.get(app.appid);
    if (cached && usable(cached.expiresAt)) return cached.token;
    let flight = inFlight.get(app.appid);
    if (!flight) {
      flight = refresh(app).finally(() => inFlight.delete(app.appid));
      inFlight.set(app.appid, flight);
    }
    return signal ? untilAborted(flight, signal) : flight;
  }

  return {
    token,

    /** Runs a call with the app's token; a refused token is expired (if still current) and the call retried once. */
    async withToken<T>(app: WechatApp, call: (accessToken: string) => Promise<T>, signal?: AbortSignal): Promise<T> {
      const first = await token(app, signal);
      try {
        return await call(first);
      } catch (e) {
        if (!(e instanceof WechatError && e.kind === "token_invalid")) throw e;
        if (memory.get(app.appid)?.token === first) memory.delete(app.appid);
        await credentials.expireToken(app.appid, first);
        return call(await token(app, signal));
      }
    },
  };
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export type AccessTokenBroker = ReturnType<typeof createAccessTokenBroker>;
