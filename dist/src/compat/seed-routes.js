import { registerApplet } from "./applet.js";
import { registerMultiPlatform } from "./multi-platform.js";
import { registerOpenIdLogin } from "./open-id-login.js";
import { registerPasswordLogin } from "./password-login.js";
import { registerSmallapp } from "./smallapp.js";
export async function registerSeedRoutes(app, config, deps) {
    if (config.smallapp)
        await registerSmallapp(app, deps);
    if (config.passwordLogin)
        await registerPasswordLogin(app, deps);
    if (config.applet)
        await registerApplet(app, deps);
    if (config.multiPlatform)
        await registerMultiPlatform(app, config.multiPlatform, deps);
    if (config.openIdLogin)
        await registerOpenIdLogin(app, deps);
}
