// AdminService from the browser, Connect JSON over the page's own origin. The operator's access
// token is in an HttpOnly cookie the page cannot read; the console header makes the service accept it.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AdminService } from "../../gen/identity/admin/v1/admin_pb.js";

const CONSOLE_HEADER = "x-identity-console";

export type Role = "viewer" | "support" | "admin";

export interface Operator {
  userId: string;
  name: string;
  role: Role;
}

const RANK: Record<Role, number> = { viewer: 1, support: 2, admin: 3 };

/** Whether the operator's role allows what needs `needed`; the service checks again on every call. */
export const may = (operator: Operator, needed: Role) => RANK[operator.role] >= RANK[needed];

/** Called when a call finds the session gone (expired, revoked): the console shows sign-in again. */
let onSignedOut: () => void = () => undefined;
export const whenSignedOut = (handler: () => void) => {
  onSignedOut = handler;
};

const consoleHeader: Interceptor = (next) => async (req) => {
  req.header.set(CONSOLE_HEADER, "1");
  try {
    return await next(req);
  } catch (e) {
    if (ConnectError.from(e).code === Code.Unauthenticated) onSignedOut();
    throw e;
  }
};

export const admin = createClient(
  AdminService,
  createConnectTransport({
    baseUrl: location.origin,
    interceptors: [consoleHeader],
    fetch: (input, init) => fetch(input, { ...init, credentials: "same-origin" }),
  }),
);

/** The failure's ErrorInfo reason (e.g. ROLE_REQUIRED), or its Connect code's name. */
export function reasonOf(e: unknown): string {
  const error = ConnectError.from(e);
  return error.findDetails(ErrorInfoSchema)[0]?.reason ?? Code[error.code] ?? "UNKNOWN";
}

/** A failure of the session routes, as the reason they answer. */
export class SessionError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

async function session(method: "GET" | "POST" | "DELETE", body?: object): Promise<Operator | null> {
  const res = await fetch("/console/session", {
    method,
    credentials: "same-origin",
    headers: { [CONSOLE_HEADER]: "1", ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  if (res.status === 204) return null;
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw new SessionError(typeof answer.reason === "string" ? answer.reason : "UNKNOWN");
  return answer.operator as Operator;
}

export const signIn = (appId: string, username: string, password: string) => session("POST", { appId, username, password });
export const currentOperator = () => session("GET").catch(() => null);
export const signOut = () => session("DELETE");
