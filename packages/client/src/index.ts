// The package's public surface.
export * from "./gen/identity/v1/identity_pb.js";
export type { TokenCheck, VerifiedIdentity } from "./identity.js";
