import { useState } from "preact/hooks";
import { SearchKey } from "../../../gen/identity/admin/v1/admin_pb.js";
import { type User, UserStatus } from "../../../gen/identity/v1/identity_pb.js";
import { admin } from "../api.js";
import { toCsv } from "../csv.js";
import { when } from "../format.js";
import { errorText, useI18n } from "../i18n.js";
import { go } from "../route.js";
import { TableHead } from "../table-head.js";
import { usePages } from "../use-call.js";

const KEYS = ["UNSPECIFIED", "ID", "PHONE", "USERNAME", "OPENID", "UNIONID", "INVITE_CODE"] as const;

export function Users({ query, keyName }: { query: string; keyName: string }) {
  const { t, language } = useI18n();
  const [typed, setTyped] = useState(query);
  const [key, setKey] = useState(keyName);
  // What the URL asks for (query and keyName), never the form's unsubmitted fields.
  const result = usePages(
    query
      ? (pageToken) =>
          admin.searchUsers({ query, key: SearchKey[keyName as keyof typeof SearchKey] ?? SearchKey.UNSPECIFIED, pageToken }).then((res) => ({ items: res.users, next: res.nextPageToken }))
      : null,
    [query, keyName],
  );
  const statusText = (u: User) => t(`status.${UserStatus[u.status] as "ACTIVE"}`);
  const columns: [string, (u: User) => string][] = [
    [t("user.id"), (u) => u.id],
    [t("user.nickname"), (u) => u.nickname],
    [t("user.phone"), (u) => u.phoneNumber],
    [t("user.username"), (u) => u.username],
    [t("user.email"), (u) => u.email],
    [t("user.status"), statusText],
    [t("user.roles"), (u) => u.roles.join(" ")],
    [t("user.created"), (u) => when(u.createTime, language)],
  ];
  const exportCsv = () => {
    const csv = toCsv([columns.map(([name]) => name), ...result.items.map((u) => columns.map(([, cell]) => cell(u)))]);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([csv], { type: "text/csv;charset=utf-8" }));
    link.download = "users.csv";
    link.click();
    URL.revokeObjectURL(link.href);
  };
  return (
    <section>
      <h1>{t("users.title")}</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          go(`/users?${new URLSearchParams({ q: typed.trim(), key })}`);
        }}
      >
        <input name="query" aria-label={t("users.query")} placeholder={t("users.query")} value={typed} maxLength={128} required onInput={(e) => setTyped(e.currentTarget.value)} />
        <label>
          {t("users.key")}
          <select name="key" value={key} onChange={(e) => setKey(e.currentTarget.value)}>
            {KEYS.map((k) => (
              <option key={k} value={k}>
                {t(`key.${k}`)}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">{t("users.search")}</button>
      </form>
      {result.error && <p class="error">{errorText(t, result.error)}</p>}
      {query && !result.error && result.answered && result.items.length === 0 && <p>{t("users.none")}</p>}
      {result.items.length > 0 && (
        <>
          <table>
            <TableHead names={columns.map(([name]) => name)} />
            <tbody>
              {result.items.map((u) => (
                <tr key={u.id}>
                  <td>
                    <a href={`#/users/${encodeURIComponent(u.id)}`}>{u.id}</a>
                  </td>
                  {columns.slice(1).map(([name, cell]) => (
                    <td key={name}>{cell(u)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          <div class="buttons">
            {result.next && (
              <button type="button" onClick={result.more}>
                {t("users.more")}
              </button>
            )}
            <button type="button" onClick={exportCsv}>
              {t("users.export")}
            </button>
          </div>
        </>
      )}
    </section>
  );
}
