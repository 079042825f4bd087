import type { App } from "../config/config.js";
import type { AccessTokenBroker } from "../wechat/access-token-broker.js";
import type { WechatClient } from "../wechat/wechat-client.js";
import { apiError } from "./errors.js";

// WeChat's content-security check (msg_sec_check v2, scene 1 "profile") on what a user writes
// into its profile. It fails closed: when WeChat cannot answer, the change is refused as
// UPSTREAM_UNAVAILABLE (retryable) rather than stored unchecked, since a nickname can wait a
// retry and a published one cannot be taken back.

/** On for WeChat mini-programs unless the app's contentCheck.nickname says "off"; no other platform has the check. */
export function nicknameCheckOn(app: App): boolean {
  return app.platform === "wechat-miniprogram" && app.contentCheck?.nickname !== "off";
}

export function createContentCheck({ wechat, broker }: { wechat: WechatClient; broker: AccessTokenBroker }) {
  return {
    /** Refuses a nickname WeChat finds risky (or, when the app says so, one it sends for review): INVALID_ARGUMENT / CONTENT_RISKY. */
    async checkNickname(app: App, openid: string, nickname: string, signal?: AbortSignal): Promise<void> {
      if (!nicknameCheckOn(app) || !("secret" in app)) return;
      const verdict = await broker.withToken(app, (token) => wechat.msgSecCheck(token, openid, nickname, signal), signal);
      const refused = verdict.suggest === "risky" || (verdict.suggest === "review" && "contentCheck" in app && app.contentCheck?.review === "refuse");
      if (refused) throw apiError("CONTENT_RISKY", "WeChat's content check refused this nickname; choose another", { field: "user.nickname", suggest: verdict.suggest, label: String(verdict.label) });
    },
  };
}
