import { admin } from "../api.js";
import { errorText, useI18n } from "../i18n.js";
import { TableHead } from "../table-head.js";
import { useCall } from "../use-call.js";

export function Dashboard() {
  const { t } = useI18n();
  const { data, error } = useCall(() => admin.getStats({}), []);
  if (error) return <p class="error">{errorText(t, error)}</p>;
  if (!data) return <p>{t("loading")}</p>;
  return (
    <section>
      <h1>{t("dashboard.title")}</h1>
      <p class="stat">
        {t("dashboard.totalUsers")}: <strong data-testid="total-users">{String(data.totalUsers)}</strong>
      </p>
      {data.apps.map((app) => {
        const peak = Math.max(1, ...app.days.map((d) => Math.max(d.newUsers, d.activeUsers)));
        return (
          <article key={app.appId}>
            <h2>
              {t("dashboard.app")} {app.appId}: {String(app.totalUsers)} {t("dashboard.appUsers")}
            </h2>
            <table>
              <TableHead names={[t("dashboard.date"), t("dashboard.newUsers"), t("dashboard.activeUsers")]} />
              <tbody>
                {[...app.days].reverse().map((day) => (
                  <tr key={day.date}>
                    <td>{day.date}</td>
                    <td>
                      <meter min={0} max={peak} value={day.newUsers} /> {day.newUsers}
                    </td>
                    <td>
                      <meter min={0} max={peak} value={day.activeUsers} /> {day.activeUsers}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </article>
        );
      })}
    </section>
  );
}
