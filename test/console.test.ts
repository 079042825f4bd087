// The operator console in a real Chromium (playwright-core with the system's browser): an operator
// signs in, finds users, disables, revokes and deletes, and each effect is checked through the
// public API. With CONSOLE_SCREENSHOTS=1 (`npm run screenshots`) it also writes docs/console/*.png.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, login, reasonOf, rpc, simPost, startHarness, type Harness } from "./support/harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
// On CI the browser is installed by .ci/run: a missing one is a failure there, never a silent skip.
if (!hasChromium && process.env.CI) throw new Error(`no Chromium at ${CHROMIUM}: .ci/run installs it (apt-get install chromium), or set CHROMIUM_PATH`);
const SCREENSHOTS = process.env.CONSOLE_SCREENSHOTS ? "docs/console" : "";

const SERVICE_KEY = "svc-key-0123456789abcdef";
const VIEWER_KEY = "viewer-key-0123456789abc";
const sha = (key: string) => createHash("sha256").update(key).digest("hex");
const PASSWORD = "correct horse battery";
const XSS = "<img src=x onerror=alert(1)>";
const FORMULA = "=HYPERLINK(1)";
const PHONE = "13912345678";
const CONSOLE_HEADER = { "x-identity-console": "1" };

const config = {
  apps: [{ id: "demo", platform: "wechat-miniprogram", appid: DEMO_APPID, secret: "demo-secret" }],
  store: "memory",
  internalCallers: [
    { name: "gateway", keySha256: sha(SERVICE_KEY) },
    { name: "ops-viewer", keySha256: sha(VIEWER_KEY), role: "viewer" },
  ],
};

let h: Harness;
let browser: Browser;

/** A user who signs in with a password; with an operator role when `role` is given (as docs/configuration.md makes the first operator). */
async function passwordUser(username: string, role?: string, on: Harness = h) {
  const me = await login(on);
  expect((await rpc(on.httpUrl, "SetPassword", { username, newPassword: PASSWORD }, me.access)).status).toBe(200);
  if (role) {
    const res = await rpc(on.httpUrl, "UpdateUser", { user: { id: me.body.user.id, roles: [role] }, updateMask: "roles" }, undefined, { "x-api-key": SERVICE_KEY });
    expect(res.status).toBe(200);
  }
  return me;
}

/** An end user from a mini-program login, with the nickname given. */
async function endUser(nickname: string) {
  const me = await login(h);
  expect((await rpc(h.httpUrl, "UpdateUser", { user: { nickname }, updateMask: "nickname" }, me.access)).status).toBe(200);
  return me;
}

/** A page with every console error, page error and dialog recorded. */
async function openPage(context: BrowserContext) {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("response", (r) => r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`));
  page.on("dialog", (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  return { page, problems };
}

async function signIn(page: Page, username: string, shot?: string) {
  const res = await page.goto(`${h.httpUrl}/console/`);
  await page.getByLabel("Username").waitFor();
  if (shot) await screenshot(page, shot);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  return res!;
}

async function screenshot(page: Page, name: string) {
  if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/${name}.png` });
}

async function search(page: Page, query: string) {
  await page.getByRole("link", { name: "Users" }).click();
  await page.getByPlaceholder(/Exact id/).fill(query);
  await page.getByRole("button", { name: "Search" }).click();
}

/** Clicks an action, gives a reason (and the typed confirmation), confirms, and waits for the answer. */
async function act(page: Page, action: string, typed?: string) {
  await page.getByRole("button", { name: action, exact: true }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel(/Reason/).fill("console test");
  if (typed) await dialog.getByLabel(/Type the user id/).fill(typed);
  await dialog.getByRole("button", { name: "Confirm" }).click();
  await expect.poll(() => dialog.count()).toBe(0);
}

beforeAll(async () => {
  h = await startHarness(config);
});

afterAll(() => h?.close());

describe.skipIf(!hasChromium)(`the console in Chromium${hasChromium ? "" : ` (skipped: no Chromium at ${CHROMIUM}; apt-get install chromium, or set CHROMIUM_PATH)`}`, () => {
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    if (SCREENSHOTS) await mkdir(SCREENSHOTS, { recursive: true });
  }, 60_000);

  afterAll(() => browser?.close());

  it("an admin signs in, finds users, disables, revokes and deletes; each effect holds on the public API", { timeout: 120_000 }, async () => {
    await passwordUser("opsadmin", "identity-admin");
    const victim = await endUser(XSS);
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: PHONE });
    expect((await rpc(h.httpUrl, "BindPhone", { code }, victim.access)).status).toBe(200);
    const formula = await endUser(FORMULA);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US", acceptDownloads: true });
    const { page, problems } = await openPage(context);

    const first = await signIn(page, "opsadmin", "sign-in");
    expect(first.headers()["content-security-policy"]).toContain("script-src 'self'");
    expect(first.headers()["x-frame-options"]).toBe("DENY");
    await expect.poll(() => page.getByTestId("total-users").textContent()).toBe("3");
    // The token is in an HttpOnly cookie: the page's script sees no cookie at all.
    expect(await page.evaluate("document.cookie")).toBe("");
    await screenshot(page, "dashboard");

    // The formula nickname, exported: guarded with a leading ' and quoted.
    await search(page, formula.openid);
    const download = page.waitForEvent("download");
    await page.getByRole("button", { name: "Export CSV" }).click();
    const csv = await readFile((await (await download).path())!, "utf8");
    expect(csv).toContain(`"'${FORMULA.replaceAll('"', '""')}"`);
    expect(csv.split("\r\n")[1]).toMatch(new RegExp(`^"${formula.body.user.id}",`));

    // Found by each exact key: its id, its phone number, its openid.
    const row = page.locator("tbody tr");
    for (const query of [victim.body.user.id, PHONE, victim.openid]) {
      await search(page, query);
      await expect.poll(() => row.locator("td").first().textContent()).toBe(victim.body.user.id);
      expect(await row.count()).toBe(1);
    }
    // Back and Forward: the form and the results follow the URL's search.
    const queryField = page.getByPlaceholder(/Exact id/);
    await page.goBack();
    await expect.poll(() => queryField.inputValue()).toBe("");
    expect(await row.count()).toBe(0);
    await page.goForward();
    await expect.poll(() => row.locator("td").first().textContent()).toBe(victim.body.user.id);
    expect(await queryField.inputValue()).toBe(victim.openid);
    expect(await row.locator("td").nth(1).textContent()).toBe(XSS);
    await screenshot(page, "search");
    await row.getByRole("link").click();
    await expect.poll(() => page.getByTestId("user-nickname").textContent()).toBe(XSS);
    // Text, not markup: no img element made of it, no alert (a dialog would be recorded).
    expect(await page.locator("main img").count()).toBe(0);
    await screenshot(page, "user");

    await act(page, "Unbind phone");
    expect((await rpc(h.httpUrl, "GetUser", {}, victim.access)).json.user.phoneNumber).toBe("");

    await act(page, "Disable");
    expect(reasonOf(await rpc(h.httpUrl, "Refresh", { refreshToken: victim.refresh }))).toBe("ACCOUNT_DISABLED");
    await act(page, "Enable");
    // Enabled, the user signs in again; revoking then ends that new session too.
    const back = await login(h, { openid: victim.openid });
    expect(back.body.user.id).toBe(victim.body.user.id);
    await act(page, "Revoke all sessions");
    await expect.poll(() => page.getByRole("status").textContent()).toContain("Sessions revoked:");
    expect(reasonOf(await rpc(h.httpUrl, "CheckLogin", {}, back.access))).toBe("TOKEN_REVOKED");

    await act(page, "Delete user", victim.body.user.id);
    await expect.poll(() => page.url()).toMatch(/#\/users$/);
    const again = await login(h, { openid: victim.openid });
    expect(again.body.firstLogin).toBe(true);
    expect(again.body.user.id).not.toBe(victim.body.user.id);

    await page.getByRole("link", { name: "Apps" }).click();
    await expect.poll(() => page.locator("tbody td").first().textContent()).toBe("demo");
    await screenshot(page, "apps");
    await page.getByRole("link", { name: "Audit log" }).click();
    await expect.poll(() => page.getByRole("cell", { name: "user.deleted" }).count()).toBeGreaterThan(0);
    await screenshot(page, "audit");

    // In Chinese too, the choice surviving a reload.
    await page.getByLabel("Language").selectOption("zh-CN");
    await page.reload();
    await expect.poll(() => page.getByRole("heading", { level: 1 }).textContent()).toBe("审计日志");

    await page.getByRole("button", { name: "退出登录" }).click();
    await expect.poll(() => page.getByRole("button", { name: "登录", exact: true }).count()).toBe(1);
    expect(problems).toEqual([]);
    await context.close();
  });

  it("a viewer sees no changes to make, and the service refuses one forced through the cookie", { timeout: 60_000 }, async () => {
    await passwordUser("opsviewer", "identity-viewer");
    const user = await endUser("someone");
    const context = await browser.newContext({ locale: "en-US" });
    const { page } = await openPage(context);
    await signIn(page, "opsviewer");
    await page.goto(`${h.httpUrl}/console/#/users/${user.body.user.id}`);
    await expect.poll(() => page.getByTestId("user-nickname").textContent()).toBe("someone");
    // Every change the page offers a support or admin operator (the user has an identity to unlink).
    expect(await page.getByRole("button", { name: /Delete|Disable|Enable|Revoke|Unbind|Unlink/ }).count()).toBe(0);
    expect(await page.locator("tbody tr").count()).toBeGreaterThan(0);
    const forced = await page.evaluate(
      async ([userId, header]) => {
        const call = (headers: Record<string, string>) =>
          fetch("/identity.admin.v1.AdminService/DeleteUser", { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ userId, reason: "forced" }) }).then(
            async (r) => [r.status, ((await r.json()) as { code: string }).code],
          );
        return [await call(header!), await call({})];
      },
      [user.body.user.id, CONSOLE_HEADER] as const,
    );
    // With the console header the cookie is the viewer's credential (and too weak); without it, no credential at all.
    expect(forced).toEqual([
      [403, "permission_denied"],
      [401, "unauthenticated"],
    ]);
    expect((await rpc(h.httpUrl, "CheckLogin", {}, user.access)).status).toBe(200);
    // The cookie's session ended elsewhere (as when its token expires): the next call shows the sign-in again.
    const [cookie] = await context.cookies();
    expect((await rpc(h.httpUrl, "Logout", {}, cookie!.value)).status).toBe(200);
    await page.getByRole("link", { name: "Apps" }).click();
    await expect.poll(() => page.getByRole("button", { name: "Sign in" }).count()).toBe(1);
    await context.close();
  });

  it("refuses a user who is not an operator at sign-in, and ends the session it opened", { timeout: 60_000 }, async () => {
    const me = await passwordUser("plainuser");
    const context = await browser.newContext({ locale: "en-US" });
    const { page } = await openPage(context);
    await signIn(page, "plainuser");
    await expect.poll(() => page.getByRole("alert").textContent()).toBe("Not an operator, or this needs a higher role.");
    expect(await context.cookies()).toEqual([]);
    const audit = await fetch(`${h.httpUrl}/identity.admin.v1.AdminService/ListAuditEvents`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": VIEWER_KEY },
      body: JSON.stringify({ userId: me.body.user.id }),
    });
    const { events } = (await audit.json()) as { events: { type: string; details?: Record<string, string> }[] };
    // Newest first: the password login the console made, then the logout that ended it.
    expect(events.slice(0, 2).map((e) => e.type)).toEqual(["logout", "login"]);
    await context.close();
  });
});

describe("the console's routes", () => {
  it("redirects /console to /console/ and answers bad sign-ins with a reason, never a 500 or a token", async () => {
    const redirect = await fetch(`${h.httpUrl}/console`, { redirect: "manual" });
    expect([redirect.status, redirect.headers.get("location")]).toEqual([301, "/console/"]);
    const post = (body: string, headers: Record<string, string> = CONSOLE_HEADER) =>
      fetch(`${h.httpUrl}/console/session`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body }).then(async (r) => [
        r.status,
        ((await r.json()) as { reason: string }).reason,
      ]);
    expect(await post(JSON.stringify({ username: "nobody1", password: "wrong password" }))).toEqual([401, "BAD_CREDENTIALS"]);
    expect(await post(JSON.stringify({ username: "nobody1", password: "wrong password" }), {})).toEqual([403, "PERMISSION_DENIED"]);
    for (const body of ["null", "[]", "{", '{"username":1,"password":"x"}', '{"appId":{},"username":"a","password":"b"}', "{}"]) {
      expect(await post(body)).toEqual([400, "FIELD_INVALID"]);
    }
    const nobody = await fetch(`${h.httpUrl}/console/session`, { headers: CONSOLE_HEADER });
    expect([nobody.status, await nobody.json()]).toEqual([200, { operator: null }]);
  });

  it("answers Login's rate limit at sign-in as 429 RATE_LIMITED with its retry-after", async () => {
    const attempt = () =>
      fetch(`${h.httpUrl}/console/session`, {
        method: "POST",
        headers: { "content-type": "application/json", ...CONSOLE_HEADER },
        body: JSON.stringify({ username: "guessed1", password: "wrong password" }),
      });
    // Five wrong guesses at one account in the window (the service's default), then the limit.
    for (let i = 0; i < 5; i++) expect((await attempt()).status).toBe(401);
    const limited = await attempt();
    expect([limited.status, ((await limited.json()) as { reason: string }).reason]).toEqual([429, "RATE_LIMITED"]);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("serves the built files with the security headers, hashed assets as immutable", async () => {
    const index = await fetch(`${h.httpUrl}/console/`);
    const html = await index.text();
    expect([index.status, index.headers.get("content-type"), index.headers.get("cache-control")]).toEqual([200, "text/html; charset=utf-8", "no-cache"]);
    expect(index.headers.get("content-security-policy")).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    // Nothing inline for the CSP to refuse: every script and style is a file of its own.
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)|<style|\sstyle=/);
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    const asset = await fetch(`${h.httpUrl}${script}`);
    expect([asset.status, asset.headers.get("content-type"), asset.headers.get("cache-control"), asset.headers.get("x-content-type-options")]).toEqual([
      200,
      "text/javascript; charset=utf-8",
      "public, max-age=31536000, immutable",
      "nosniff",
    ]);
    for (const path of ["/console/nope.js", "/console/../package.json", "/console/assets/", "/console/index.html"]) {
      expect([path, (await fetch(`${h.httpUrl}${path}`)).status]).toEqual([path, 404]);
    }
  });

  it("gives an operator a cookie, never the token in the answer, and signs out server-side", async () => {
    const me = await passwordUser("opscookie", "identity-support");
    const res = await fetch(`${h.httpUrl}/console/session`, {
      method: "POST",
      headers: { "content-type": "application/json", ...CONSOLE_HEADER },
      body: JSON.stringify({ username: "opscookie", password: PASSWORD }),
    });
    const body = await res.json();
    expect(body).toEqual({ operator: { userId: me.body.user.id, name: "opscookie", role: "support" } });
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^identity_console=[^;]+; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Strict$/);
    const token = cookie.split(";")[0]!.split("=")[1]!;
    expect(JSON.stringify(body)).not.toContain(token);
    const headers = { cookie: `identity_console=${token}`, ...CONSOLE_HEADER };
    const signedIn = (await fetch(`${h.httpUrl}/console/session`, { headers }).then((r) => r.json())) as { operator: { role: string } };
    expect(signedIn.operator.role).toBe("support");
    const out = await fetch(`${h.httpUrl}/console/session`, { method: "DELETE", headers });
    expect([out.status, out.headers.get("set-cookie")]).toEqual([204, "identity_console=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"]);
    expect(reasonOf(await rpc(h.httpUrl, "CheckLogin", {}, token))).toBe("TOKEN_REVOKED");
  });

  it("over https, as a trusted proxy tells it, the cookie is __Host- and Secure; a client's own claim changes nothing", async () => {
    const proxied = await startHarness({ ...config, trustProxy: ["127.0.0.1"] });
    try {
      await passwordUser("opshttps", "identity-viewer", proxied);
      const cookieVia = async (server: Harness) => {
        const res = await fetch(`${server.httpUrl}/console/session`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-forwarded-proto": "https", ...CONSOLE_HEADER },
          body: JSON.stringify({ username: "opshttps", password: PASSWORD }),
        });
        return res.headers.get("set-cookie")?.replace(/=[^;]+;/, "=…;");
      };
      expect(await cookieVia(proxied)).toMatch(/^__Host-identity_console=…; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
      // Over https only the __Host- name counts: a plain cookie there could come from a sibling host or from http.
      const { access } = await passwordUser("opshttps2", "identity-viewer", proxied);
      const operatorWith = async (cookie: string) => {
        const res = await fetch(`${proxied.httpUrl}/console/session`, { headers: { cookie, "x-forwarded-proto": "https", ...CONSOLE_HEADER } });
        return ((await res.json()) as { operator: { role: string } | null }).operator?.role ?? null;
      };
      expect([await operatorWith(`__Host-identity_console=${access}`), await operatorWith(`identity_console=${access}`)]).toEqual(["viewer", null]);
      await passwordUser("opshttps", "identity-viewer");
      expect(await cookieVia(h)).toMatch(/^identity_console=…; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Strict$/);
    } finally {
      await proxied.close();
    }
  });

  it("a page on another origin, even a CORS-allowed one, gets no preflight for AdminService or the session routes", async () => {
    const origin = "https://app.example.com";
    const allowing = await startHarness({ ...config, cors: { origins: [origin], credentials: true, maxAgeSeconds: 60 } });
    try {
      const allowOrigin = async (path: string) => {
        const res = await fetch(`${allowing.httpUrl}${path}`, {
          method: "OPTIONS",
          headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type, x-identity-console" },
        });
        return res.headers.get("access-control-allow-origin");
      };
      // The same preflight is granted on IdentityService: the refusals below are CORS's scope, not a broken request.
      expect(await allowOrigin("/identity.v1.IdentityService/CheckLogin")).toBe(origin);
      for (const path of ["/identity.admin.v1.AdminService/DeleteUser", "/console/session"]) expect([path, await allowOrigin(path)]).toEqual([path, null]);
    } finally {
      await allowing.close();
    }
  });

  it("the cookie is no credential on IdentityService, nor on AdminService without the console header", async () => {
    const me = await passwordUser("opsscope", "identity-admin");
    const cookie = { cookie: `identity_console=${me.access}` };
    expect(reasonOf(await rpc(h.httpUrl, "GetUser", {}, undefined, { ...cookie, ...CONSOLE_HEADER }))).toBe("TOKEN_MISSING");
    const listApps = (headers: Record<string, string>) =>
      fetch(`${h.httpUrl}/identity.admin.v1.AdminService/ListApps`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: "{}" }).then((r) => r.status);
    expect([await listApps(cookie), await listApps({ ...cookie, ...CONSOLE_HEADER })]).toEqual([401, 200]);
  });
});
