import { admin } from "../api.js";
import { errorText, useI18n } from "../i18n.js";
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
        <thead>
          <tr>
            <th>{t("apps.id")}</th>
            <th>{t("apps.platform")}</th>
            <th>{t("apps.appid")}</th>
            <th>{t("apps.registration")}</th>
            <th>{t("apps.default")}</th>
            <th>{t("apps.legacyId")}</th>
            <th>{t("apps.defaultRoles")}</th>
            <th>{t("apps.nicknameCheck")}</th>
          </tr>
        </thead>
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
