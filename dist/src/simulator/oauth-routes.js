import { z } from "zod";
import { appid, postControl, requireKnownApp, userId } from "./control-routes.js";
import { WechatApiError } from "./protocol.js";
import { field, registerApiRoutes, required } from "./wechat-routes.js";
// WeChat's web and app OAuth (wechat-api.md §7d): official-account pages, mobile apps and website
// QR login all end with the app's server trading the redirect's code at sns/oauth2/access_token.
// Same api.weixin.qq.com root and same apps as the mini-program side: an appid is just an appid.
//
//   GET  /sns/oauth2/access_token  {access_token, expires_in, refresh_token, openid, scope, unionid?}
//   POST /sim/oauth-code           {"appid", "openid"?, "unionid"?, "scope"?} -> {"code", "openid", "unionid"}
//
// The user access/refresh tokens it hands out are random and accepted nowhere: neither refresh_token
// nor sns/userinfo is simulated.
export const OAUTH_SCOPES = ["snsapi_base", "snsapi_userinfo", "snsapi_login"];
const oauthCodeBody = z.strictObject({
    appid,
    openid: userId.optional(),
    unionid: userId.optional(),
    scope: z.enum(OAUTH_SCOPES).default("snsapi_userinfo"),
});
export function registerOauthRoutes(app, deps) {
    const { state } = deps;
    registerApiRoutes(app, deps, [
        {
            path: "/sns/oauth2/access_token",
            methods: ["GET"],
            handler: ({ query }) => {
                const appidParam = required(query, "appid", 41002);
                const secret = required(query, "secret", 41004);
                const code = required(query, "code", 41008);
                if (field(query, "grant_type") !== "authorization_code")
                    throw new WechatApiError(40002);
                state.authenticateApp(appidParam, secret);
                return state.redeemOauthCode(appidParam, code);
            },
        },
    ]);
    postControl(app, "/sim/oauth-code", oauthCodeBody, (input) => {
        requireKnownApp(state, input.appid);
        const minted = state.mintOauthCode(input);
        return { code: minted.code, openid: minted.openid, unionid: minted.unionid ?? null };
    });
}
