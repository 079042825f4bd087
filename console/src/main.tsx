// The operator console: sign-in, then the pages, each a hash route (#/users/…).
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { currentOperator, type Operator, SessionError, signIn, signOut, whenSignedOut } from "./api.js";
import { errorText, I18n, initialLanguage, type Language, LANGUAGES, rememberLanguage, translator, useI18n } from "./i18n.js";
import { Apps } from "./pages/apps.js";
import { Audit } from "./pages/audit.js";
import { Dashboard } from "./pages/dashboard.js";
import { UserPage } from "./pages/user.js";
import { Users } from "./pages/users.js";
import { currentRoute } from "./route.js";
import "./style.css";

function Console() {
  const [language, setLanguage] = useState<Language>(initialLanguage);
  // Kept at once, not in an effect: a reload right after the switch must find it.
  const choose = (chosen: Language) => {
    rememberLanguage(chosen);
    setLanguage(chosen);
  };
  const i18n = useMemo(() => ({ t: translator(language), language, setLanguage: choose }), [language]);
  // undefined: still asking the service whether the cookie holds a session.
  const [operator, setOperator] = useState<Operator | null | undefined>(undefined);
  useEffect(() => {
    document.documentElement.lang = language;
    document.title = i18n.t("app.title");
  }, [language]);
  useEffect(() => {
    whenSignedOut(() => setOperator(null));
    void currentOperator().then(setOperator);
  }, []);
  return (
    <I18n.Provider value={i18n}>{operator === undefined ? null : operator ? <Shell operator={operator} onSignOut={() => setOperator(null)} /> : <SignIn onSignedIn={setOperator} />}</I18n.Provider>
  );
}

function LanguageSwitch() {
  const { t, language, setLanguage } = useI18n();
  return (
    <label class="language">
      {t("nav.language")}
      <select name="language" value={language} onChange={(e) => setLanguage(e.currentTarget.value as Language)}>
        {Object.entries(LANGUAGES).map(([code, { label }]) => (
          <option key={code} value={code}>
            {label}
          </option>
        ))}
      </select>
    </label>
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (operator: Operator) => void }) {
  const { t } = useI18n();
  const [fields, setFields] = useState({ appId: "", username: "", password: "" });
  const [error, setError] = useState("");
  const submit = async (event: Event) => {
    event.preventDefault();
    setError("");
    try {
      const operator = await signIn(fields.appId.trim(), fields.username.trim(), fields.password);
      if (operator) onSignedIn(operator);
    } catch (e) {
      setError(e instanceof SessionError ? e.reason : "UNAVAILABLE");
    }
  };
  const field = (name: keyof typeof fields, label: string, type: string, autocomplete: string) => (
    <label>
      {label}
      <input name={name} type={type} autocomplete={autocomplete} value={fields[name]} required={name !== "appId"} onInput={(e) => setFields({ ...fields, [name]: e.currentTarget.value })} />
    </label>
  );
  return (
    <main class="sign-in">
      <LanguageSwitch />
      <form onSubmit={submit}>
        <h1>{t("signIn.title")}</h1>
        {field("appId", t("signIn.app"), "text", "off")}
        {field("username", t("signIn.username"), "text", "username")}
        {field("password", t("signIn.password"), "password", "current-password")}
        {error && (
          <p class="error" role="alert">
            {errorText(t, error)}
          </p>
        )}
        <button type="submit">{t("signIn.submit")}</button>
        <p class="hint">{t("signIn.hint")}</p>
      </form>
    </main>
  );
}

function Shell({ operator, onSignOut }: { operator: Operator; onSignOut: () => void }) {
  const { t } = useI18n();
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const follow = () => setRoute(currentRoute());
    addEventListener("hashchange", follow);
    return () => removeEventListener("hashchange", follow);
  }, []);
  const [page = "", id] = route.path;
  const nav: [string, string][] = [
    ["", t("nav.dashboard")],
    ["users", t("nav.users")],
    ["apps", t("nav.apps")],
    ["audit", t("nav.audit")],
  ];
  return (
    <>
      <header>
        <strong>{t("app.title")}</strong>
        <nav>
          {nav.map(([to, label]) => (
            <a key={to} href={`#/${to}`} aria-current={page === to ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span class="operator">
          {operator.name} ({t(`role.${operator.role}`)})
        </span>
        <LanguageSwitch />
        <button type="button" onClick={() => signOut().finally(onSignOut)}>
          {t("nav.signOut")}
        </button>
      </header>
      <main>
        {page === "" && <Dashboard />}
        {/* Keyed by the search, so the form and the results are the URL's search after Back or Forward. */}
        {page === "users" && !id && <Users key={route.params.toString()} query={route.params.get("q") ?? ""} keyName={route.params.get("key") ?? "UNSPECIFIED"} />}
        {page === "users" && id && <UserPage userId={id} operator={operator} />}
        {page === "apps" && <Apps />}
        {page === "audit" && <Audit />}
      </main>
    </>
  );
}

render(<Console />, document.getElementById("app")!);
