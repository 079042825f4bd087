// @identity-service/miniprogram: the identity service's client for mini-programs.
export { createIdentity, type Identity, type IdentityOptions, type LoginResult, type PhoneDetail, type PhoneNumber, type Profile, type RequestOptions } from "./identity.js";
export { IdentityError, SIGNED_OUT_REASONS } from "./errors.js";
export type { MiniProgramApi } from "./platform.js";
export type { User } from "./session.js";
