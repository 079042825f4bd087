import { z } from "zod";
import { ALIPAY_GATEWAY_PATH, createAlipayGateway } from "./alipay-gateway.js";
import { ControlError, postControl } from "./control-routes.js";
import { routeWithFaults } from "./traffic.js";
const authCodeBody = z
    .strictObject({
    appid: z.string().min(1),
    userId: z.string().min(1).max(128).optional(),
    openId: z.string().min(1).max(128).optional(),
})
    .refine((b) => b.userId === undefined || b.openId === undefined, { message: "give at most one of userId, openId" });
/** Query and form parameters as one map, the form winning, as the gateway's servlet sees them. */
function gatewayParams(query, body) {
    const params = {};
    for (const [name, value] of Object.entries((query ?? {}))) {
        if (typeof value === "string")
            params[name] = value;
    }
    if (typeof body === "string")
        for (const [name, value] of new URLSearchParams(body))
            params[name] = value;
    return params;
}
/** Registers the gateway and its control routes; returns the gateway, for its public key. */
export function registerAlipayRoutes(app, deps) {
    const gateway = createAlipayGateway(deps.apps, deps.clock);
    const path = ALIPAY_GATEWAY_PATH;
    // Sent as built: the signature covers these exact bytes.
    routeWithFaults(app, deps, { path, methods: ["GET", "POST"], contentType: "application/json;charset=utf-8" }, (request, fault) => fault?.errcode !== undefined ? gateway.faultAnswer(String(fault.errcode)) : gateway.handle(gatewayParams(request.query, request.body)));
    postControl(app, "/sim/alipay/auth-code", authCodeBody, (input) => {
        if (!gateway.isKnownApp(input.appid))
            throw new ControlError(404, `unknown Alipay appid ${input.appid}`);
        return gateway.mintAuthCode(input);
    });
    app.get("/sim/alipay/public-key", async () => ({ publicKeyPem: gateway.publicKeyPem }));
    return gateway;
}
