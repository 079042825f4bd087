// What a caller branches on when a call fails: the gRPC/Connect code and the service's ErrorInfo
// reason (AIP-193), never the message text. The same on every transport.
import { ConnectError } from "@connectrpc/connect";
import { type BadRequest_FieldViolation, BadRequestSchema, type ErrorInfo, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** The domain of the service's ErrorInfo; another domain's (a proxy's, a mesh's) is not ours to read. */
export const ERROR_DOMAIN = "identity.v1";

/** The service's ErrorInfo on a failure; undefined for anything else (a network error, a timeout, a bug in the caller). */
export function errorInfoOf(err: unknown): ErrorInfo | undefined {
  // instanceof also matches a ConnectError from another copy of @connectrpc/connect.
  if (!(err instanceof ConnectError)) return undefined;
  return err.findDetails(ErrorInfoSchema).find((info) => info.domain === ERROR_DOMAIN);
}

/** The UPPER_SNAKE reason (`TOKEN_EXPIRED`, `FIELD_INVALID`, ...) of a refusal by the service, else undefined. */
export function reasonOf(err: unknown): string | undefined {
  return errorInfoOf(err)?.reason;
}

/** The ErrorInfo's metadata (`field` of FIELD_INVALID, `retryAfterSeconds` of RATE_LIMITED, ...); empty when there is none. */
export function metadataOf(err: unknown): Record<string, string> {
  return errorInfoOf(err)?.metadata ?? {};
}

/** The BadRequest field violations of an INVALID_ARGUMENT refusal: which field, and what is wrong with it. */
export function fieldViolationsOf(err: unknown): BadRequest_FieldViolation[] {
  if (!(err instanceof ConnectError)) return [];
  return err.findDetails(BadRequestSchema).flatMap((bad) => bad.fieldViolations);
}
