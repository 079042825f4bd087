// The seed-compatible REST profiles the configuration turns on, each in its own scope.
import type { FastifyInstance } from "fastify";
import type { SeedRoutesConfig } from "../config/config.js";
import { registerApplet } from "./applet.js";
import { registerMultiPlatform } from "./multi-platform.js";
import { registerOpenIdLogin } from "./open-id-login.js";
import { registerPasswordLogin } from "./password-login.js";
import type { SeedDeps } from "./shared.js";
import { registerSmallapp } from "./smallapp.js";

export type { SeedApp } from "./shared.js";

export async function registerSeedRoutes(app: FastifyInstance, config: SeedRoutesConfig, deps: SeedDeps): Promise<void> {
  if (config.smallapp) await registerSmallapp(app, deps);
  if (config.passwordLogin) await registerPasswordLogin(app, deps);
  if (config.applet) await registerApplet(app, deps);
  if (config.multiPlatform) await registerMultiPlatform(app, config.multiPlatform, deps);
  if (config.openIdLogin) await registerOpenIdLogin(app, deps);
}
