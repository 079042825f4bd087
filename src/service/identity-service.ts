import type { ServiceImpl } from "@connectrpc/connect";
import type { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import type { AdminService } from "../../gen/identity/admin/v1/admin_pb.js";
import { createAccountRpcs } from "./account-rpcs.js";
import { createAdminService } from "./admin-service.js";
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

/** IdentityService and AdminService over one context: the same limiters, callers and audit writer. */
export function createServices(deps: IdentityServiceDeps): { identity: ServiceImpl<typeof IdentityService>; admin: ServiceImpl<typeof AdminService> } {
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
  return { identity: context.auditWriter.audited(service, AUDITED), admin: createAdminService(context, caller) };
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
  deleteAccount: { type: "user.deleted", factOnly: true },
  unlinkIdentity: { type: "identity.unlinked" },
  unbindPhone: { type: "phone.unbound" },
};
