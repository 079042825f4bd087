import { admin } from "../api.js";
import { errorText, useI18n } from "../i18n.js";
import { TableHead } from "../table-head.js";
import { useCall } from "../use-call.js";

export function Apps() {
  const { t } = useI18n();
  const { data, error } = useCall(() => admin.listApps({}), []);
  if (error) return <p class="error">{errorText(t, error)}</p>;
  if (!data) return <p>{t("loading")}</p>;
  return (
    <section>
      <h1>{t("apps.title")}</h1>
      <table>
        <TableHead names={[t("apps.id"), t("apps.platform"), t("apps.appid"), t("apps.registration"), t("apps.default"), t("apps.legacyId"), t("apps.defaultRoles"), t("apps.nicknameCheck")]} />
        <tbody>
          {data.apps.map((app) => (
            <tr key={app.id}>
              <td>{app.id}</td>
              <td>{app.platform}</td>
              <td>{app.appid}</td>
              <td>{app.registration}</td>
              <td>{app.default ? t("yes") : t("no")}</td>
              <td>{app.legacyId || ""}</td>
              <td>{app.defaultRoles.join(", ")}</td>
              <td>{app.nicknameCheck ? t("yes") : t("no")}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
