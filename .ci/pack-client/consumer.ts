// TypeScript in a project that installed the package's tarball, typechecked with tsc against its
// .d.ts: the client, the error helpers, and the middleware's request typing in both frameworks.
import type { IncomingMessage } from "node:http";
import Fastify from "fastify";
import { Code, createCheckLogin, createIdentityClient, type IdentityClient, reasonOf, type TokenCheck, UserStatus, type VerifiedIdentity } from "@identity-service/client";
import { identityAuth as expressAuth } from "@identity-service/client/express";
import { identityAuth as fastifyAuth } from "@identity-service/client/fastify";

const client: IdentityClient = createIdentityClient({ baseUrl: "http://localhost:9090", transport: "grpc", apiKey: "k" });
const check: TokenCheck = createCheckLogin(client, { timeoutMs: 2000 });

export async function disable(userId: string): Promise<number | undefined> {
  const res = await client.updateUser({ user: { id: userId, status: UserStatus.DISABLED }, updateMask: { paths: ["status"] } });
  return res.user?.version;
}

export function branch(err: unknown): string {
  return reasonOf(err) ?? String(Code.Unknown);
}

const app = Fastify();
app.get("/me", { onRequest: fastifyAuth({ check }) }, async (request) => {
  const identity: VerifiedIdentity | undefined = request.identity;
  return { userId: identity?.userId, expires: identity?.expireTime.toISOString() };
});

export const middleware: (req: IncomingMessage & { identity?: VerifiedIdentity }, res: import("node:http").ServerResponse, next: () => void) => void = expressAuth({ check, optional: true });

// The types are real, not any: these must not compile.
// @ts-expect-error "grpc-web" is no transport of createIdentityClient
createIdentityClient({ baseUrl: "http://localhost:8080", transport: "grpc-web" });
// @ts-expect-error a VerifiedIdentity has no token
export const leaked: string = ({} as VerifiedIdentity).accessToken;
