import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useState } from "preact/hooks";
import { ActorKind, type AuditEvent } from "../../../gen/identity/admin/v1/admin_pb.js";
import { admin } from "../api.js";
import { when } from "../format.js";
import { errorText, useI18n } from "../i18n.js";
import { TableHead } from "../table-head.js";
import { usePages } from "../use-call.js";

export function AuditTable({ events }: { events: AuditEvent[] }) {
  const { t, language } = useI18n();
  if (events.length === 0) return <p>{t("audit.none")}</p>;
  return (
    <table>
      <TableHead names={[t("audit.time"), t("audit.type"), t("audit.actor"), t("audit.user"), t("audit.app"), t("audit.address"), t("audit.outcome"), t("audit.details")]} />
      <tbody>
        {events.map((e) => (
          <tr key={e.id}>
            <td>{when(e.time, language)}</td>
            <td>{e.type}</td>
            <td>{e.actor ? `${t(`actor.${ActorKind[e.actor.kind] as "USER"}`)} ${e.actor.id}` : ""}</td>
            <td>{e.userId && <a href={`#/users/${encodeURIComponent(e.userId)}`}>{e.userId}</a>}</td>
            <td>{e.appId}</td>
            <td>{e.clientAddress}</td>
            <td>{e.outcome}</td>
            <td>
              {Object.entries(e.details)
                .map(([k, v]) => `${k}=${v}`)
                .join(" ")}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface Filters {
  actorId: string;
  type: string;
  userId: string;
  from: string;
  to: string;
}

const PAGE_SIZE = 50;
const instant = (local: string) => (local ? timestampFromDate(new Date(local)) : undefined);

export function Audit() {
  const { t } = useI18n();
  const [filters, setFilters] = useState<Filters>({ actorId: "", type: "", userId: "", from: "", to: "" });
  // The filters last submitted: the list, and its next page, are theirs, not the form's as typed since.
  const [applied, setApplied] = useState(filters);
  const page = usePages(
    (pageToken) =>
      admin
        .listAuditEvents({
          actorId: applied.actorId.trim(),
          type: applied.type.trim(),
          userId: applied.userId.trim(),
          startTime: instant(applied.from),
          endTime: instant(applied.to),
          pageSize: PAGE_SIZE,
          pageToken,
        })
        .then((res) => ({ items: res.events, next: res.nextPageToken })),
    [applied],
  );
  const field = (name: keyof Filters, label: string, type = "text") => (
    <label>
      {label}
      <input name={name} type={type} value={filters[name]} onInput={(e) => setFilters({ ...filters, [name]: e.currentTarget.value })} />
    </label>
  );
  return (
    <section>
      <h1>{t("audit.title")}</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({ ...filters });
        }}
      >
        {field("actorId", t("audit.actor"))}
        {field("type", t("audit.type"))}
        {field("userId", t("audit.user"))}
        {field("from", t("audit.from"), "datetime-local")}
        {field("to", t("audit.to"), "datetime-local")}
        <button type="submit">{t("audit.filter")}</button>
      </form>
      {page.error ? <p class="error">{errorText(t, page.error)}</p> : <AuditTable events={page.items} />}
      {page.next && (
        <button type="button" onClick={page.more}>
          {t("audit.more")}
        </button>
      )}
    </section>
  );
}
