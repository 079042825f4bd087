// The package's public surface.
export * from "./gen/identity/v1/identity_pb.js";
export type { TokenCheck, VerifiedIdentity } from "./identity.js";
export { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions, type StreamState, type TokenVerifierStats, type WhenStreamDown } from "./token-verifier.js";
