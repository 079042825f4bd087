// Plain HTTP to a simulator, for the simulator's own tests.
import { expect } from "vitest";

export type Json = { [key: string]: any };

export function simHttp(base: () => string) {
  async function call(path: string, init?: RequestInit): Promise<{ status: number; body: Json; text: string }> {
    const response = await fetch(`${base()}${path}`, init);
    const text = await response.text();
    let body: Json = {};
    try {
      body = JSON.parse(text) as Json;
    } catch {
      // a fault's plain-text body
    }
    return { status: response.status, body, text };
  }

  function postJson(path: string, body: unknown) {
    return call(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  }

  /** A control-API call that must succeed. */
  async function control(path: string, body: unknown): Promise<Json> {
    const { status, body: answer } = await postJson(path, body);
    expect(status).toBe(200);
    return answer;
  }

  return { call, postJson, control };
}
