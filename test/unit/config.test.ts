import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/config.js";

const app = { id: "demo", platform: "wechat-miniprogram", appid: "wx0000000000000001", secret: "s" };
const withFile = (file: unknown, env: Record<string, string> = {}) => loadConfig({ IDENTITY_CONFIG: "/etc/identity.json", ...env }, () => (typeof file === "string" ? file : JSON.stringify(file)));

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("has defaults for every variable and no file in dev mode", () => {
    const config = loadConfig({}, () => {
      throw new Error("no file should be read");
    });
    expect(config).toMatchObject({ port: 8080, grpcPort: 9090, wechatSimPort: 8090, mongodbDb: "identity", wechatSimulator: false, file: null });
    expect(config.mongodbUri).toBeUndefined();
  });

  it("binds dev mode to loopback, a configured service to every interface, and HOST to what it says", () => {
    expect(loadConfig({}, () => "").host).toBe("127.0.0.1");
    expect(withFile({ apps: [app] }).host).toBe("0.0.0.0");
    expect(loadConfig({ HOST: "0.0.0.0" }, () => "").host).toBe("0.0.0.0");
    expect(withFile({ apps: [app] }, { HOST: "10.0.0.5" }).host).toBe("10.0.0.5");
  });

  it('refuses production without a config file, and takes "store": "memory" in one', () => {
    expect(problemsOf(() => loadConfig({ NODE_ENV: "production" }, () => ""))[0]).toMatch(/^IDENTITY_CONFIG: /);
    expect(withFile({ apps: [app], store: "memory" }, { NODE_ENV: "production" }).file?.store).toBe("memory");
    expect(problemsOf(() => withFile({ apps: [app], store: "mongo" }))[0]).toMatch(/^store: /);
  });

  it("fills the file's defaults", () => {
    const { file } = withFile({ apps: [app] });
    expect(file?.apps[0]).toMatchObject({ registration: "auto", defaultRoles: ["member"] });
    expect(file?.tokens).toEqual({ accessTtlSeconds: 7200, refreshTtlSeconds: 2_592_000, refreshGraceSeconds: 10, sessionMaxAgeSeconds: 7_776_000, maxSessionsPerUser: 10 });
    expect(file?.limits.maxBodyBytes).toBe(65_536);
  });

  it("reads WORKERS: one process by default, a count, auto for every core; several need MongoDB and a real config", () => {
    const mongo = { MONGODB_URI: "mongodb://db:27017/" };
    expect(withFile({ apps: [app] }).workers).toBe(1);
    expect(withFile({ apps: [app] }, { WORKERS: "1" }).workers).toBe(1);
    expect(withFile({ apps: [app] }, { ...mongo, WORKERS: "3" }).workers).toBe(3);
    expect(withFile({ apps: [app] }, { ...mongo, WORKERS: "auto" }).workers).toBe(availableParallelism());
    for (const bad of ["0", "-2", "1.5", "two", "257"])
      expect(problemsOf(() => withFile({ apps: [app] }, { ...mongo, WORKERS: bad }))).toEqual([`WORKERS: "${bad}" must be a number of processes (1-256) or auto`]);
    expect(problemsOf(() => withFile({ apps: [app], store: "memory" }, { WORKERS: "2" }))[0]).toMatch(/^WORKERS: 2 workers need MONGODB_URI/);
    expect(problemsOf(() => loadConfig({ ...mongo, WORKERS: "2" }, () => ""))[0]).toMatch(/^WORKERS: needs a config file with signingKeys/);
    expect(problemsOf(() => withFile({ apps: [app] }, { ...mongo, WORKERS: "2", WECHAT_SIMULATOR: "1" }))[0]).toMatch(/^WORKERS: needs a config file/);
  });

  it("names every bad variable at once", () => {
    const problems = problemsOf(() => loadConfig({ PORT: "http", GRPC_PORT: "70000", MONGODB_URI: "postgres://x", WECHAT_SIMULATOR: "yes", LOG_LEVEL: "loud" }, () => ""));
    expect(problems.map((p) => p.split(":")[0])).toEqual(["PORT", "GRPC_PORT", "MONGODB_URI", "WECHAT_SIMULATOR", "LOG_LEVEL"]);
  });

  it("names the field of the file that is wrong, in one line", () => {
    const error = (() => {
      try {
        withFile({ apps: [{ ...app, appid: "123", registration: "sometimes" }], tokens: { accessTtlSeconds: 5 } });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.message).not.toContain("\n");
    expect(error!.problems.map((p) => p.split(":")[0]).sort()).toEqual(["apps[0].appid", "apps[0].registration", "tokens.accessTtlSeconds"]);
  });

  it("reads operator roles on keys, the audit retention and the content check, refusing what cannot work", () => {
    const key = { name: "ops", keySha256: "a".repeat(64) };
    const file = withFile({
      apps: [app],
      internalCallers: [
        { ...key, role: "support" },
        { ...key, name: "svc" },
      ],
    }).file!;
    expect(file.internalCallers.map((c) => c.role)).toEqual(["support", undefined]);
    expect(file.auditRetentionDays).toBe(180);
    expect(problemsOf(() => withFile({ apps: [app], internalCallers: [{ ...key, role: "root" }] }))[0]).toMatch(/^internalCallers\[0\]\.role: /);
    expect(problemsOf(() => withFile({ apps: [app], auditRetentionDays: 0 }))[0]).toMatch(/^auditRetentionDays: /);
    const officialAccount = { ...app, platform: "wechat-official-account", contentCheck: { nickname: "on" } };
    expect(problemsOf(() => withFile({ apps: [officialAccount] }))).toEqual(["apps[0].contentCheck.nickname: WeChat's content check serves mini-programs only"]);
    expect(problemsOf(() => withFile({ apps: [{ ...app, contentCheck: { review: "maybe" } }] }))[0]).toMatch(/^apps\[0\]\.contentCheck\.review: /);
  });

  it("refuses unknown keys, duplicate apps, two defaults, no apps", () => {
    expect(problemsOf(() => withFile({ apps: [app], sekret: 1 }))[0]).toMatch(/^\(config file\)/);
    expect(problemsOf(() => withFile({ apps: [app, { ...app, appid: "wx0000000000000002" }] }))[0]).toMatch(/^apps\[1\]\.id/);
    expect(
      problemsOf(() =>
        withFile({
          apps: [
            { ...app, default: true },
            { ...app, id: "b", appid: "wx0000000000000002", default: true },
          ],
        }),
      )[0],
    ).toMatch(/^apps:/);
    expect(problemsOf(() => withFile({ apps: [] }))[0]).toMatch(/^apps:/);
  });

  it("says when the file can't be read or is not JSON", () => {
    expect(
      problemsOf(() =>
        loadConfig({ IDENTITY_CONFIG: "/nope" }, () => {
          throw new Error("ENOENT");
        }),
      )[0],
    ).toMatch(/^IDENTITY_CONFIG: cannot read/);
    expect(problemsOf(() => withFile("{apps"))[0]).toMatch(/^IDENTITY_CONFIG: .* is not JSON/);
  });

  it("never repeats a secret in a problem", () => {
    const problems = problemsOf(() => withFile({ apps: [{ ...app, secret: 12345678 }] }));
    expect(problems.join(" ")).not.toContain("12345678");
  });
});

// The shipped deploy files must agree with each other and with what the service does.
describe("deploy/", () => {
  const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

  it("trusts X-Forwarded-For from exactly nginx's fixed compose address", () => {
    const { file } = loadConfig({ IDENTITY_CONFIG: "deploy/identity.example.json" }, read);
    const nginxAddress = /nginx:[\s\S]*?ipv4_address:\s*([\d.]+)/.exec(read("deploy/compose.yaml"))?.[1];
    expect(nginxAddress).toBeDefined();
    expect(file?.trustProxy).toEqual([nginxAddress]);
    expect(read("deploy/nginx.conf")).toMatch(/proxy_set_header X-Forwarded-For \$remote_addr;/);
    for (const path of ["deploy/nginx.conf", "docs/deployment.md"]) expect(read(path)).not.toMatch(/ignores\s+X-Forwarded-For/);
  });

  it("keeps /metrics off the proxy's public HTTP listener", () => {
    const http = read("deploy/nginx.conf")
      .split(/^server \{/m)
      .find((block) => /listen 8080;/.test(block))!;
    expect(http).toMatch(/location \/metrics \{\s*return 404;\s*\}/);
  });
});
