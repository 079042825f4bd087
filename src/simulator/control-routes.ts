import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { encryptOpenData } from "./crypto.js";
import type { CallCounter, FaultBook } from "./traffic.js";
import type { Clock, WechatState } from "./wechat-state.js";

// The simulator's own control API (/sim/*): what a mini-program and a test harness would do to
// WeChat from the outside. Plain JSON, 400 with a message naming the field for bad input.

export interface ControlRouteDeps {
  state: WechatState;
  faults: FaultBook;
  calls: CallCounter;
  clock: Clock;
}

export const appid = z.string().min(1);
export const userId = z.string().min(1).max(128);

export const loginCodeBody = z.strictObject({
  appid,
  openid: userId.optional(),
  unionid: userId.optional(),
  sessionKey: z
    .string()
    .regex(/^[A-Za-z0-9+/]{22}==$/, "must be the base64 of 16 bytes")
    .optional(),
  blocked: z.boolean().optional(),
});

const phoneCodeBody = z.strictObject({
  appid,
  phoneNumber: z.string().regex(/^\+?[0-9]{4,20}$/, "must be digits, optionally after a +"),
  countryCode: z
    .string()
    .regex(/^[0-9]{1,4}$/, "must be 1 to 4 digits")
    .default("86"),
});

const encryptBody = z.strictObject({
  appid,
  openid: userId,
  data: z.record(z.string(), z.unknown()),
});

const faultBody = z
  .strictObject({
    // Checked against the paths the simulator serves when the fault is added.
    path: z.string(),
    errcode: z.int().optional(),
    status: z.int().min(200).max(599).optional(),
    delayMs: z.int().min(0).max(60_000).optional(),
    drop: z.boolean().optional(),
    reset: z.boolean().optional(),
    body: z.enum(["truncated", "garbage"]).optional(),
    times: z.int().min(1).default(1),
  })
  .refine((f) => outcomesOf(f) <= 1, { message: "give at most one of errcode, status, drop, reset, body" })
  .refine((f) => outcomesOf(f) === 1 || f.delayMs !== undefined, { message: "give errcode, status, drop, reset, body or delayMs" });

/** How many ways of answering a fault names (a delay is not one: it goes before any of them). */
function outcomesOf(f: { errcode?: number; status?: number; drop?: boolean; reset?: boolean; body?: string }): number {
  return [f.errcode !== undefined, f.status !== undefined, f.drop === true, f.reset === true, f.body !== undefined].filter(Boolean).length;
}

const clockBody = z.strictObject({ advanceMs: z.int().min(0) });

const secWordsBody = z.strictObject({
  risky: z.array(z.string().min(1).max(100)).max(1000).default([]),
  review: z.array(z.string().min(1).max(100)).max(1000).default([]),
});

export class ControlError extends Error {
  constructor(
    readonly status: 400 | 404,
    message: string,
  ) {
    super(message);
    this.name = "ControlError";
  }
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message)).join("; ");
}

function parseBody<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(typeof raw === "string" ? raw : "");
  } catch {
    throw new ControlError(400, "body must be JSON");
  }
  const result = schema.safeParse(json);
  if (!result.success) throw new ControlError(400, describeIssues(result.error));
  return result.data;
}

/** A JSON-in, JSON-out control endpoint whose body `schema` validates; a ControlError becomes its status. */
export function postControl<S extends z.ZodType>(app: FastifyInstance, url: string, schema: S, handle: (input: z.output<S>) => object): void {
  app.post(url, async (request, reply) => {
    try {
      return handle(parseBody(schema, request.body));
    } catch (error) {
      if (error instanceof ControlError) return reply.code(error.status).send({ error: error.message });
      throw error;
    }
  });
}

export function requireKnownApp(state: WechatState, id: string): void {
  if (!state.isKnownApp(id)) throw new ControlError(404, `unknown appid ${id}`);
}

/** What wx.login (or qq.login) hands the mini-program, for `state`'s platform. */
export function mintLoginCode(state: WechatState, input: z.output<typeof loginCodeBody>): object {
  requireKnownApp(state, input.appid);
  const minted = state.mintLoginCode(input);
  return { code: minted.code, openid: minted.openid, unionid: minted.unionid ?? null };
}

export function registerControlRoutes(app: FastifyInstance, deps: ControlRouteDeps): void {
  const { state, faults, calls, clock } = deps;
  const requireApp = (id: string) => requireKnownApp(state, id);
  const post = <S extends z.ZodType>(url: string, schema: S, handle: (input: z.output<S>) => object) => postControl(app, url, schema, handle);

  post("/sim/login-code", loginCodeBody, (input) => mintLoginCode(state, input));

  post("/sim/phone-code", phoneCodeBody, (input) => {
    requireApp(input.appid);
    return { code: state.mintPhoneCode(input) };
  });

  post("/sim/encrypt", encryptBody, (input) => {
    requireApp(input.appid);
    const sessionKey = state.currentSessionKey(input.appid, input.openid);
    if (sessionKey === undefined) {
      throw new ControlError(404, `no session for openid ${input.openid}; mint a login code first`);
    }
    const watermark = { appid: input.appid, timestamp: Math.floor(clock.now() / 1000) };
    // The data goes in as given, so a test can plant a wrong watermark on purpose.
    return encryptOpenData(sessionKey, JSON.stringify({ watermark, ...input.data }));
  });

  post("/sim/faults", faultBody, ({ path, times, ...fault }) => {
    if (!faults.serves(path)) {
      throw new ControlError(400, `path: must be one of ${faults.servedPaths().join(", ")}`);
    }
    faults.add(path, fault, times);
    return { ok: true };
  });

  // The words msg_sec_check finds risky or for review, replacing the earlier ones.
  post("/sim/sec-words", secWordsBody, (words) => {
    state.setContentWords(words);
    return { ok: true };
  });

  post("/sim/clock", clockBody, ({ advanceMs }) => {
    clock.advance(advanceMs);
    return { ok: true, now: clock.now() };
  });

  app.delete("/sim/faults", async () => {
    faults.clear();
    return { ok: true };
  });

  app.get("/sim/calls", async () => ({ counts: calls.snapshot() }));

  app.delete("/sim/calls", async () => {
    calls.reset();
    return { ok: true };
  });
}
