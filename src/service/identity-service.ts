import type { ServiceImpl } from "@connectrpc/connect";
import type { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { createAccountRpcs } from "./account-rpcs.js";
import type { AuditedMethod } from "./audit.js";
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
  const service: ServiceImpl<typeof IdentityService> = {
    ...createLoginRpcs(context, caller),
    ...createWechatRpcs(context, caller),
    ...createSessionRpcs(context, caller),
    ...createUserRpcs(context, caller),
    ...createAccountRpcs(context, caller),
    ...createRevocationRpcs(context, caller),
  };
  return context.auditWriter.audited(service, AUDITED);
}

/** The calls the audit log records, each as one event once its outcome is known (see audit.ts). */
const AUDITED: Partial<Record<keyof ServiceImpl<typeof IdentityService>, AuditedMethod>> = {
  login: { type: "login", activity: true, failureReasons: ["BAD_CREDENTIALS"] },
  oauth: { type: "profile.filled", activity: true },
  bindPhone: { type: "phone.bound", activity: true },
  refresh: { type: "session.refreshed", activity: true, quietSuccess: true },
  logout: { type: "logout" },
  setPassword: { type: "password.set" },
  updateUser: { type: "user.updated" },
  deleteAccount: { type: "user.deleted" },
  unlinkIdentity: { type: "identity.unlinked" },
  unbindPhone: { type: "phone.unbound" },
};
