// The profile: WeChat's avatar and nickname fill-in components, saved with updateProfile.
const app = getApp();

// The service stores an https avatarUrl, not the temporary file chooseAvatar gives: upload it to
// your own storage first. Set this to your upload endpoint (it answers {"url": "https://..."}).
const AVATAR_UPLOAD_URL = "";

Page({
  data: { nickname: "", avatarUrl: "", phoneNumber: "", error: "" },

  onShow() {
    const user = app.identity.user;
    if (!user) return wx.reLaunch({ url: "/pages/login/index" });
    this.setData({ nickname: user.nickname || "", avatarUrl: user.avatarUrl || "", phoneNumber: user.phoneNumber || "" });
  },

  // <button open-type="chooseAvatar">: a temporary local path.
  async onChooseAvatar(e) {
    const path = e.detail.avatarUrl;
    this.setData({ avatarUrl: path });
    if (!AVATAR_UPLOAD_URL) return;
    try {
      await this.save({ avatarUrl: await uploadAvatar(path) });
    } catch {
      this.setData({ error: "头像上传失败，请重试" });
    }
  },

  // <input type="nickname">: WeChat's nickname suggestion arrives on blur (or as typed).
  async onNickname(e) {
    const nickname = e.detail.value;
    if (nickname && nickname !== app.identity.user?.nickname) await this.save({ nickname });
  },

  async save(fields) {
    try {
      const user = await app.identity.updateProfile(fields);
      this.setData({ nickname: user?.nickname || "", error: "" });
    } catch (error) {
      // FIELD_INVALID: the service's own rules; CONTENT_RISKY: WeChat's content check.
      const refused = error.reason === "FIELD_INVALID" || error.reason === "CONTENT_RISKY";
      this.setData({ error: refused ? "这个昵称不能用，请换一个" : error.message });
    }
  },

  async onLogout() {
    await app.identity.logout().catch(() => undefined);
    wx.reLaunch({ url: "/pages/login/index" });
  },
});

// wx.uploadFile to your own backend, with the same bearer the kit uses.
async function uploadAvatar(filePath) {
  const token = await app.identity.token();
  return new Promise((resolve, reject) =>
    wx.uploadFile({
      url: AVATAR_UPLOAD_URL,
      filePath,
      name: "file",
      header: { authorization: `Bearer ${token}` },
      success: (res) => resolve(JSON.parse(res.data).url),
      fail: reject,
    }),
  );
}
