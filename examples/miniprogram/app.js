// The identity kit, created once for the whole app: every page reaches it as getApp().identity.
const { createIdentity } = require("@identity-service/miniprogram");

// The one line to change: where the identity service listens. Over plain http, tick
// 详情 → 本地设置 → 不校验合法域名 in DevTools; a published app needs https and a listed domain.
const SERVICE_URL = "http://localhost:8080";

App({
  onLaunch() {
    // appId: the app's key in the service's config ("demo" in the service's dev mode).
    this.identity = createIdentity({ baseUrl: SERVICE_URL, appId: "demo", platform: wx });
    // Revoked, reused or expired for good: back to the login page (a network blip never lands here).
    this.identity.onSignedOut(() => wx.reLaunch({ url: "/pages/login/index" }));
  },
});
