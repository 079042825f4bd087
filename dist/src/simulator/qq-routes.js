import { loginCodeBody, mintLoginCode, postControl } from "./control-routes.js";
import { code2SessionHandler, registerApiRoutes } from "./wechat-routes.js";
import { createWechatState } from "./wechat-state.js";
// QQ mini-programs (api.q.qq.com), served under /qq. QQ's jscode2session is WeChat's, path, fields
// and errcodes alike (wechat-api.md §7a), so this is the WeChat login code flow again, with its own
// apps, codes and session keys. The service reaches it through its WeChat client, baseUrl <sim>/qq.
//
//   GET  /qq/sns/jscode2session   faults and /sim/calls go by this full path
//   POST /sim/qq/login-code       {"appid", "openid"?, "unionid"?, "sessionKey"?} -> {"code", "openid", "unionid"}
export const QQ_PREFIX = "/qq";
// QQ documents no "blocked user" answer (40226), so its control API offers none.
const qqLoginCodeBody = loginCodeBody.omit({ blocked: true });
export function registerQqRoutes(app, deps) {
    const state = createWechatState(deps.apps, deps.clock);
    const routes = [{ path: "/sns/jscode2session", methods: ["GET"], handler: code2SessionHandler(state) }];
    registerApiRoutes(app, deps, routes, QQ_PREFIX);
    postControl(app, "/sim/qq/login-code", qqLoginCodeBody, (input) => mintLoginCode(state, input));
}
