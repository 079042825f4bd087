import { describe, expect, it } from "vitest";
import { describeError, describeRequest } from "../../src/util/log-safety.js";

describe("log safety", () => {
  it("keeps quoted values, bearer credentials and JWTs out of an error's message and stack", () => {
    const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzaWQiOiJ4In0.c2ln";
    const error = new TypeError(`Headers.append: "Bearer secret-one\u0000" is an invalid header value; Bearer secret-two; ${jwt}`);
    const text = JSON.stringify(describeError(error));
    for (const secret of ["secret-one", "secret-two", jwt]) expect(text).not.toContain(secret);
    expect(text).toContain("TypeError");
  });

  it("logs a request's method and path, never its query", () => {
    expect(describeRequest({ method: "GET", url: "/applet/login/getUserInfo?token=secret" })).toEqual({ method: "GET", path: "/applet/login/getUserInfo" });
  });
});
