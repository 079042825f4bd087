// `node .ci/smoke.mjs [DIR]`: boots the compiled service in DIR (default: here) in dev mode with the
// node running this script, and checks /healthz, one Login through the dev-mode simulator and the console at /console/.
// Plain JavaScript on purpose: it runs where only the production dependencies are installed.
import { spawn } from "node:child_process";
import { resolve } from "node:path";

const dir = resolve(process.argv[2] ?? ".");
const child = spawn(process.execPath, ["dist/src/main.js"], {
  cwd: dir,
  // Dev mode (no config, no NODE_ENV=production), kernel-chosen ports, embedded store.
  env: { ...process.env, NODE_ENV: "", IDENTITY_CONFIG: "", MONGODB_URI: "", HOST: "127.0.0.1", PORT: "0", GRPC_PORT: "0", WECHAT_SIM_PORT: "0", LOG_LEVEL: "warn" },
  stdio: ["ignore", "pipe", "inherit"],
});
const fail = (message) => {
  console.error(`smoke (node ${process.version}): ${message}`);
  child.kill("SIGKILL");
  process.exit(1);
};
const timer = setTimeout(() => fail("no dev-mode banner within 30 s"), 30_000);
child.once("exit", (code) => fail(`the service exited with ${code}`));

// The banner names the listeners it got: wait for both URLs.
const urls = await new Promise((done) => {
  let out = "";
  child.stdout.on("data", (chunk) => {
    out += chunk;
    const http = /JSON \/ Connect \(HTTP\/1\.1\)\s+(http:\S+)/.exec(out)?.[1];
    const sim = /WeChat simulator\s+(http:\S+)/.exec(out)?.[1];
    if (http && sim) done({ http, sim });
  });
});
clearTimeout(timer);

const post = async (url, body) => {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  const json = await res.json();
  if (!res.ok) fail(`${url} answered ${res.status}: ${JSON.stringify(json)}`);
  return json;
};
const health = await fetch(`${urls.http}/healthz`, { signal: AbortSignal.timeout(10_000) });
if (!health.ok) fail(`/healthz answered ${health.status}`);
const { code } = await post(`${urls.sim}/sim/login-code`, { appid: "wx0000000000000001" });
const login = await post(`${urls.http}/identity.v1.IdentityService/Login`, { appId: "demo", code });
if (!login.tokens?.accessToken || !login.user?.id) fail(`Login answered without tokens or user: ${JSON.stringify(login)}`);
const consolePage = await fetch(`${urls.http}/console/`, { signal: AbortSignal.timeout(10_000) });
if (!consolePage.ok || !(await consolePage.text()).includes("/console/assets/")) fail(`/console/ answered ${consolePage.status} without the built console`);

child.removeAllListeners("exit");
child.kill("SIGTERM");
console.log(`smoke (node ${process.version}): /healthz, Login and /console/ passed on ${dir}`);
