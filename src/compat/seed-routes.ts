// The seed-compatible REST profiles the configuration turns on, each in its own scope.
import type { FastifyInstance } from "fastify";
import type { SeedRoutesConfig } from "../config/config.js";
import type { SeedDeps } from "./shared.js";
import { registerSmallapp } from "./smallapp.js";

export type { SeedApp } from "./shared.js";

export async function registerSeedRoutes(app: FastifyInstance, config: SeedRoutesConfig, deps: SeedDeps): Promise<void> {
  if (config.smallapp) await registerSmallapp(app, deps);
}
