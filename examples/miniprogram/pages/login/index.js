// Sign-in: one tap on the phone button, or WeChat alone where the app registers users itself.
const app = getApp();

// What the user sees for the reasons a sign-in can fail with (the kit's README has them all).
const MESSAGES = {
  PHONE_NOT_GRANTED: "需要授权手机号才能继续",
  NETWORK: "网络不可用，请稍后重试",
  PHONE_TAKEN: "该手机号已绑定其他账号",
  RATE_LIMITED: "操作太频繁，请稍后再试",
};

Page({
  data: { busy: false, error: "" },

  onShow() {
    if (app.identity.isLoggedIn()) return wx.redirectTo({ url: "/pages/profile/index" });
    // A login code ready before the tap: the button's handler must not call wx.login itself.
    app.identity.prefetch();
  },

  // bindgetphonenumber: e.detail has code (or legacy encryptedData and iv), or only errMsg when denied.
  async onPhone(e) {
    await this.signIn(() => app.identity.phoneLogin(e.detail));
  },

  async onWechat() {
    await this.signIn(() => app.identity.login());
  },

  async signIn(run) {
    this.setData({ busy: true, error: "" });
    try {
      const { registered } = await run();
      // An app with explicit registration wants the phone number first.
      if (!registered) return this.setData({ busy: false, error: "请使用手机号登录" });
      wx.redirectTo({ url: "/pages/profile/index" });
    } catch (error) {
      this.setData({ busy: false, error: MESSAGES[error.reason] || error.message });
    }
  },
});
