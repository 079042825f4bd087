import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { WECHAT_PLATFORMS } from "../config/config.js";
import { fieldsOf, messageOf, mountSeed, text, withRetryHint } from "./shared.js";
const PATH = "/app/app/weChatApplet/getWeChatAppletOpenId";
// The seed's "获取微信openid失败": WeChat would not say who this is.
const OPENID_FAILURES = new Set(["CODE_INVALID", "CODE_USED", "USER_BLOCKED_BY_PLATFORM", "UPSTREAM_UNAVAILABLE", "RATE_LIMITED"]);
const answer = (code, msg, data = null) => ({ code, msg, data });
export async function registerOpenIdLogin(server, { invoke, apps }) {
    const wechatApps = apps.filter((a) => WECHAT_PLATFORMS.includes(a.platform));
    await mountSeed(server, { badInput: (msg) => answer(440007, `请求失败: ${msg}`), serverError: () => answer(440007, "请求失败") }, (scope) => {
        scope.post(PATH, async (request, reply) => {
            const fields = fieldsOf(request);
            const code = text(fields, "code");
            if (!code)
                return answer(2004, "获取openid时code不能为空");
            const appid = text(fields, "appid");
            const app = wechatApps.find((a) => a.appid === appid);
            if (!app)
                return answer(440007, `请求失败: ${messageOf("APP_NOT_FOUND")}`);
            const res = await invoke(IdentityService.method.login, { appId: app.id, credential: { case: "code", value: code } }, request);
            if (!res.ok) {
                withRetryHint(reply, res);
                return OPENID_FAILURES.has(res.reason) ? answer(200, "获取微信openid失败") : answer(440007, `请求失败: ${messageOf(res.reason)}`);
            }
            const { registered, openid, tokens } = res.message;
            if (!registered)
                return answer(2000, "微信openid未绑定用户", { openId: openid });
            return answer(0, "success", { openId: openid, expire: tokens.expiresIn, token: tokens.accessToken });
        });
    });
}
