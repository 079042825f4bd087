// The operator console on the HTTP listener: its built files at /console/, and the sign-in that keeps
// the operator's access token in an HttpOnly cookie, out of the page's JavaScript. The cookie counts
// only on AdminService, and only with a header a cross-site form cannot send (docs/console.md).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AdminService } from "../../gen/identity/admin/v1/admin_pb.js";
import { IdentityService, type User } from "../../gen/identity/v1/identity_pb.js";
import type { Invoke } from "../compat/invoke.js";
import { withRetryHint } from "../compat/shared.js";
import type { OperatorRole } from "../config/config.js";
import { strongestRole } from "../service/admin-service.js";
import { describeError } from "../util/log-safety.js";

/** `npm run build` writes it: console/dist/ next to src/, dist/console/dist/ next to dist/src/. */
const CONSOLE_DIR = fileURLToPath(new URL("../../console/dist/", import.meta.url));

/** The header the console sends with every call: custom, so a foreign origin needs a preflight, which AdminService's paths refuse. */
const CONSOLE_HEADER = "x-identity-console";

const ADMIN_PREFIX = `/${AdminService.typeName}/`;
const COOKIE = "identity_console";
/** The cookie's name over https: `__Host-` binds it to this host and path /, Secure (RFC 6265bis). */
const SECURE_COOKIE = `__Host-${COOKIE}`;

/** What every /console/ answer carries: no inline code, nothing from elsewhere but https images, no framing. */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

interface ConsoleFile {
  body: Buffer;
  type: string;
  /** Vite names assets by their content hash: those never change; index.html is checked each time. */
  immutable: boolean;
}

/**
 * Before the Connect routes (a hook applies to routes added after it): a console call's cookie
 * becomes the bearer token, when the call names no other credential and carries the console header.
 */
export function acceptConsoleCookie(app: FastifyInstance): void {
  app.addHook("onRequest", async (request) => {
    if (!request.url.startsWith(ADMIN_PREFIX) || request.headers[CONSOLE_HEADER] !== "1") return;
    if (request.headers.authorization || request.headers["x-api-key"]) return;
    const token = tokenOf(request);
    if (token) request.raw.headers.authorization = `Bearer ${token}`;
  });
}

/** The files at /console/ and the session routes. */
export async function registerConsole(app: FastifyInstance, invoke: Invoke): Promise<void> {
  const files = readConsoleFiles(CONSOLE_DIR);
  if (files.size === 0) app.log.warn({ dir: CONSOLE_DIR }, "the console is not built (npm run build): /console/ answers 404");
  await app.register(async (scope) => {
    scope.addHook("onSend", async (_request, reply) => {
      reply.headers(SECURITY_HEADERS);
    });
    // A body that does not parse, or is over the size limit, is the client's: a reason, never a stack.
    scope.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
      const status = error.statusCode ?? 500;
      if (status < 500) return refuse(reply, status, status === 413 ? "REQUEST_TOO_LARGE" : "FIELD_INVALID");
      request.log.error({ err: describeError(error) }, "console route failed unexpectedly");
      return refuse(reply, 500, "INTERNAL");
    });
    scope.get("/console", async (_request, reply) => reply.redirect("/console/", 301));
    for (const [path, file] of files) {
      scope.get(path, async (_request, reply) =>
        reply
          .type(file.type)
          .header("cache-control", file.immutable ? "public, max-age=31536000, immutable" : "no-cache")
          .send(file.body),
      );
    }

    scope.post("/console/session", async (request, reply) => {
      if (request.headers[CONSOLE_HEADER] !== "1") return refuse(reply, 403, "PERMISSION_DENIED");
      const body = request.body as Record<string, unknown> | null;
      const [appId = "", username, password] = ["appId", "username", "password"].map((k) => body?.[k]);
      if (typeof appId !== "string" || typeof username !== "string" || typeof password !== "string" || !username || !password) {
        return refuse(reply, 400, "FIELD_INVALID");
      }
      const res = await invoke(IdentityService.method.login, { appId, credential: { case: "password", value: { username, password } } }, request);
      if (!res.ok) {
        withRetryHint(reply, res);
        return refuse(reply, res.status, res.reason);
      }
      const token = res.message.tokens!.accessToken;
      const operator = operatorOf(res.message.user);
      if (!operator) {
        // Not an operator: the session just opened is of no use here, so it ends at once.
        await invoke(IdentityService.method.logout, {}, request, token);
        return refuse(reply, 403, "ROLE_REQUIRED");
      }
      setCookie(request, reply, token, Number(res.message.tokens!.expiresIn));
      return { operator };
    });

    // Who is signed in, for a page (re)loading: from the cookie alone, never answering the token.
    // No one (no cookie, an expired or revoked session, a role taken away) is an answer, not a failure.
    scope.get("/console/session", async (request, reply) => {
      reply.header("cache-control", "no-store");
      const token = consoleTokenOf(request);
      const res = token ? await invoke(IdentityService.method.checkLogin, {}, request, token) : null;
      const operator = res?.ok ? operatorOf(res.message.user) : null;
      if (token && !operator) clearCookie(request, reply);
      return { operator };
    });

    scope.delete("/console/session", async (request, reply) => {
      const token = consoleTokenOf(request);
      // Ended server-side, so a copy of the cookie is worthless too; an already dead session is fine.
      if (token) await invoke(IdentityService.method.logout, {}, request, token);
      clearCookie(request, reply);
      return reply.code(204).send();
    });
  });
}

interface Operator {
  userId: string;
  name: string;
  role: OperatorRole;
}

function operatorOf(user: User | undefined): Operator | null {
  const role = strongestRole(user?.roles ?? []);
  return user && role ? { userId: user.id, name: user.nickname || user.username, role } : null;
}

function refuse(reply: FastifyReply, status: number, reason: string) {
  return reply.code(status).send({ reason });
}

/** The cookie's token, for the session routes: only with the console header, as on AdminService. */
function consoleTokenOf(request: FastifyRequest): string {
  return request.headers[CONSOLE_HEADER] === "1" ? tokenOf(request) : "";
}

/** Over https only the `__Host-` cookie: a plain one there may have been set by a sibling host or over http. */
function tokenOf(request: FastifyRequest): string {
  const wanted = cookieName(request).name;
  const cookies = request.headers.cookie ?? "";
  for (const part of cookies.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === wanted) return value.join("=");
  }
  return "";
}

function cookieName(request: FastifyRequest): { name: string; attributes: string } {
  const secure = request.protocol === "https";
  return { name: secure ? SECURE_COOKIE : COOKIE, attributes: `Path=/; HttpOnly; SameSite=Strict${secure ? "; Secure" : ""}` };
}

function setCookie(request: FastifyRequest, reply: FastifyReply, token: string, maxAgeSeconds: number): void {
  const { name, attributes } = cookieName(request);
  reply.header("cache-control", "no-store").header("set-cookie", `${name}=${token}; Max-Age=${maxAgeSeconds}; ${attributes}`);
}

function clearCookie(request: FastifyRequest, reply: FastifyReply): void {
  const { name, attributes } = cookieName(request);
  reply.header("set-cookie", `${name}=; Max-Age=0; ${attributes}`);
}

/** Every built file by its URL path, read once at start-up: no request ever names a file on disk. */
function readConsoleFiles(dir: string): Map<string, ConsoleFile> {
  const files = new Map<string, ConsoleFile>();
  if (!existsSync(join(dir, "index.html"))) return files;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const type = TYPES[extname(entry.name)];
    if (!entry.isFile() || !type) continue;
    const path = relative(dir, join(entry.parentPath, entry.name)).split("\\").join("/");
    const file = { body: readFileSync(join(entry.parentPath, entry.name)), type, immutable: path.startsWith("assets/") };
    files.set(path === "index.html" ? "/console/" : `/console/${path}`, file);
  }
  return files;
}
