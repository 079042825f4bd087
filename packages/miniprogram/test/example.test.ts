// examples/miniprogram as DevTools would run it, minus the UI: app.js and its pages loaded in a
// mini-program realm with a fake wx, App, Page and getApp, `require` of the kit answered by the
// bundle, and only SERVICE_URL changed; the handlers the buttons are bound to, against dev mode.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_APPID, type Harness, rpc, simPost, startHarness } from "../../../test/support/harness.js";
import { createDevice, createRealm, type Device } from "./support.js";

const root = new URL("../../../examples/miniprogram/", import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), "utf8");

interface PageInstance {
  data: Record<string, unknown>;
  setData(patch: Record<string, unknown>): void;
  [handler: string]: unknown;
}

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

/** Launches the example on a device: App() runs onLaunch, each page is one instance. */
async function launch(d: Device) {
  const navigations: string[] = [];
  const pages: Record<string, PageInstance> = {};
  let app: Record<string, unknown> = {};
  let current = "";
  const wx = Object.assign(Object.create(null), d.api, {
    redirectTo: ({ url }: { url: string }) => navigations.push(url),
    reLaunch: ({ url }: { url: string }) => navigations.push(url),
  });
  const realm = await createRealm({
    wx,
    App: (definition: Record<string, unknown>) => {
      app = definition;
    },
    Page: (definition: Record<string, unknown>) => {
      pages[current] = Object.assign({}, definition, {
        data: { ...(definition.data as object) },
        setData(this: PageInstance, patch: Record<string, unknown>) {
          Object.assign(this.data, patch);
        },
      }) as PageInstance;
    },
    getApp: () => app,
  });
  const app_js = read("app.js");
  expect(app_js).toMatch(/const SERVICE_URL = "http:\/\/localhost:8080";/);
  const requireKit = (name: string) => {
    if (name !== "@identity-service/miniprogram") throw new Error(`the example requires ${name}`);
    return realm.kit;
  };
  realm.evaluate(app_js.replace(/const SERVICE_URL = ".*";/, `const SERVICE_URL = "${h.httpUrl}";`), "app.js", requireKit);
  (app.onLaunch as () => void).call(app);
  for (const page of ["pages/login/index", "pages/profile/index"]) {
    current = page;
    realm.evaluate(read(`${page}.js`), `${page}.js`, requireKit);
  }
  const call = (page: string, handler: string, event?: object) => (pages[page]![handler] as (e?: object) => unknown).call(pages[page], event);
  return { app, pages, navigations, call };
}

describe("examples/miniprogram", () => {
  it("the phone button signs a new user in; the profile page saves the nickname; logout returns to login", async () => {
    const d = createDevice({ sim: h.sim, appid: DEMO_APPID });
    const example = await launch(d);
    example.call("pages/login/index", "onShow");
    const { code } = await simPost(h.sim, "/sim/phone-code", { appid: DEMO_APPID, phoneNumber: "13700137000" });
    await example.call("pages/login/index", "onPhone", { detail: { code, errMsg: "getPhoneNumber:ok" } });
    expect(example.pages["pages/login/index"]!.data.error).toBe("");
    expect(example.navigations).toEqual(["/pages/profile/index"]);
    // No wx.login inside the button's handler: the code came from onLaunch's prefetch.
    expect(d.state.logins).toBe(1);

    example.call("pages/profile/index", "onShow");
    expect(example.pages["pages/profile/index"]!.data.phoneNumber).toBe("13700137000");
    await example.call("pages/profile/index", "onNickname", { detail: { value: "小红" } });
    const { accessToken } = d.storage.get("identity:demo") as { accessToken: string };
    expect((await rpc(h.httpUrl, "GetUser", {}, accessToken)).json.user.nickname).toBe("小红");

    await example.call("pages/profile/index", "onNickname", { detail: { value: "\u3164" } });
    expect(example.pages["pages/profile/index"]!.data.error).toBe("这个昵称不能用，请换一个");

    await example.call("pages/profile/index", "onLogout");
    expect(example.navigations.at(-1)).toBe("/pages/login/index");
    expect(d.storage.has("identity:demo")).toBe(false);
  });

  it("a denied phone button shows the page's message and sends nothing", async () => {
    const d = createDevice({ sim: h.sim, appid: DEMO_APPID });
    const example = await launch(d);
    await example.call("pages/login/index", "onPhone", { detail: { errMsg: "getPhoneNumber:fail user deny" } });
    expect(example.pages["pages/login/index"]!.data).toMatchObject({ busy: false, error: "需要授权手机号才能继续" });
    expect(d.count("Login")).toBe(0);
    expect(d.calls).toEqual([]);
  });
});
