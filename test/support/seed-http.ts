// Plain HTTP as a seed's mini-program speaks it: JSON or form bodies, GET with a query.
import { expect } from "vitest";
import { resultOf, type RpcResult } from "./harness.js";
import { STACK_FRAME } from "./attack.js";

export type SeedResult = RpcResult;

type Body = Record<string, unknown>;

async function call(url: string, init: RequestInit): Promise<SeedResult> {
  return resultOf(await fetch(url, init));
}

export function postJson(base: string, path: string, body: Body | string, headers: Record<string, string> = {}): Promise<SeedResult> {
  return call(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
}

/** As the seeds' curl examples send it: application/x-www-form-urlencoded. */
export function postForm(base: string, path: string, body: Record<string, string>, headers: Record<string, string> = {}): Promise<SeedResult> {
  return call(`${base}${path}`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...headers }, body: new URLSearchParams(body).toString() });
}

export function get(base: string, path: string, query: Record<string, string>): Promise<SeedResult> {
  return call(`${base}${path}?${new URLSearchParams(query)}`, { method: "GET" });
}

/** Checks each documented field is present with its documented type ("null" allowed where listed). */
export function expectShape(value: Record<string, unknown>, shape: Record<string, string>): void {
  for (const [field, types] of Object.entries(shape)) {
    expect(value, `field ${field}`).toHaveProperty(field);
    const actual = value[field] === null ? "null" : Array.isArray(value[field]) ? "array" : typeof value[field];
    expect(types.split("|"), `type of ${field}`).toContain(actual);
  }
}

/** No answer may carry anything that looks like a stack trace. */
export function expectNoStack(res: SeedResult): void {
  expect(res.text).not.toMatch(STACK_FRAME);
}
