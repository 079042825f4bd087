// Calls that an attacker makes, on both listeners, and what a refusal must look like there.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { expect } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_pb.js";
import { reasonOf, rpc, type Harness, type RpcResult } from "./harness.js";

/** A stack frame as Node prints one: never in an answer. */
export const STACK_FRAME = /\bat .*\.[cm]?[jt]s:\d+/;

export const b64url = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

export function grpcClient(h: Harness): Client<typeof IdentityService> {
  return createClient(IdentityService, createGrpcTransport({ baseUrl: h.grpcUrl }));
}

export interface WireRefusal {
  code: Code;
  reason: string | undefined;
  message: string;
}

/** CheckLogin with `token` as the bearer over gRPC (h2c); the refusal, or null when it was accepted. */
export async function grpcCheck(client: Client<typeof IdentityService>, token: string): Promise<WireRefusal | null> {
  try {
    await client.checkLogin({}, { headers: { authorization: `Bearer ${token}` } });
    return null;
  } catch (e) {
    const error = ConnectError.from(e);
    return { code: error.code, reason: error.findDetails(ErrorInfoSchema)[0]?.reason, message: error.rawMessage };
  }
}

/** The JSON answer is a clean refusal: `status`, `reason`, no stack trace. */
export function expectJsonRefusal(res: RpcResult, status: number, reason: string): void {
  expect({ status: res.status, reason: reasonOf(res) }).toEqual({ status, reason });
  expect(res.text).not.toMatch(STACK_FRAME);
}

/** CheckLogin with `token` is refused with `reason` over JSON on HTTP/1.1 and gRPC on h2c. */
export async function expectRefusedEverywhere(h: Harness, client: Client<typeof IdentityService>, token: string, reason: string, code = Code.Unauthenticated): Promise<void> {
  const status = code === Code.Unauthenticated ? 401 : code === Code.PermissionDenied ? 403 : 400;
  expectJsonRefusal(await rpc(h.httpUrl, "CheckLogin", {}, token), status, reason);
  const refusal = await grpcCheck(client, token);
  expect(refusal && { code: refusal.code, reason: refusal.reason }).toEqual({ code, reason });
  expect(refusal!.message).not.toMatch(STACK_FRAME);
}

/** Nothing the service logged is at error level (a bug) or carries any of `secrets`. */
export function expectCleanLogs(h: { logs: string[] }, secrets: string[]): void {
  const text = h.logs.join("\n");
  for (const secret of secrets) expect(text).not.toContain(secret);
  const bugs = h.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
  expect(bugs).toEqual([]);
}
