// The package's public surface; the middleware are subpaths (./fastify, ./express) so that neither
// framework is loaded unless used.
export * from "./gen/identity/v1/identity_pb.js";
export * from "./gen/health/v1/health_pb.js";
export { BadRequestSchema, ErrorInfoSchema, type BadRequest, type BadRequest_FieldViolation, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
// The same copy the client throws, for `err instanceof ConnectError` and `err.code === Code.Unauthenticated`.
export { Code, ConnectError } from "@connectrpc/connect";
export type { TokenCheck, VerifiedIdentity } from "./identity.js";
export { createCheckLogin, createIdentityClient, type CheckLoginOptions, type IdentityClient, type IdentityClientOptions } from "./client.js";
export { ERROR_DOMAIN, errorInfoOf, fieldViolationsOf, metadataOf, reasonOf } from "./errors.js";
export { authenticateRequest, bearerToken, type AuthOutcome, type IdentityAuthOptions, type Refusal, type RefusalBody } from "./http-auth.js";
export { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions, type StreamState, type TokenVerifierStats, type WhenStreamDown } from "./token-verifier.js";
