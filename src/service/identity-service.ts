import type { ServiceImpl } from "@connectrpc/connect";
import type { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { createCaller } from "./caller.js";
import { createLoginRpcs } from "./login-rpcs.js";
import { createRevocationRpcs } from "./revocation-rpcs.js";
import { createServiceContext, type IdentityServiceDeps } from "./service-context.js";
import { createSessionRpcs } from "./session-rpcs.js";
import { createUserRpcs } from "./user-rpcs.js";
import { createWechatRpcs } from "./wechat-rpcs.js";

// The IdentityService: one file per group of RPCs, sharing one context (limiters, resolved deps)
// and one way of telling who calls.

export type { App } from "../config/config.js";
export type { IdentityServiceDeps, InternalCaller, PasswordLimits, RateLimits } from "./service-context.js";

export function createIdentityService(deps: IdentityServiceDeps): ServiceImpl<typeof IdentityService> {
  const context = createServiceContext(deps);
  const caller = createCaller(context);
  return {
    ...createLoginRpcs(context, caller),
    ...createWechatRpcs(context, caller),
    ...createSessionRpcs(context, caller),
    ...createUserRpcs(context, caller),
    ...createRevocationRpcs(context, caller),
  };
}
