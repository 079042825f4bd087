import { Fragment } from "preact";
import { useState } from "preact/hooks";
import { type User, UserStatus } from "../../../gen/identity/v1/identity_pb.js";
import { admin, may, type Operator, reasonOf } from "../api.js";
import { ConfirmDialog, type ConfirmRequest } from "../confirm.js";
import { safeAvatar, when } from "../format.js";
import { errorText, useI18n } from "../i18n.js";
import { TableHead } from "../table-head.js";
import { currentRoute, go } from "../route.js";
import { useCall } from "../use-call.js";
import { AuditTable } from "./audit.js";

export function UserPage({ userId, operator }: { userId: string; operator: Operator }) {
  const { t, language } = useI18n();
  const detail = useCall(() => admin.getUserDetail({ userId }), [userId]);
  const trail = useCall(() => admin.listAuditEvents({ userId, pageSize: 50 }), [userId]);
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const [notice, setNotice] = useState<{ text: string; error?: boolean } | null>(null);
  if (detail.error) return <p class="error">{errorText(t, detail.error)}</p>;
  const user = detail.data?.user;
  if (!user) return <p>{t("loading")}</p>;

  /** Asks first; then runs the change, says how it went and shows the user as it now is. */
  const ask = (action: string, change: (reason: string) => Promise<string | undefined>, typeToConfirm?: string) =>
    setConfirm({
      action,
      ...(typeToConfirm ? { typeToConfirm } : {}),
      run: async (reason) => {
        try {
          setNotice({ text: (await change(reason)) ?? t("action.done") });
        } catch (e) {
          setNotice({ text: errorText(t, reasonOf(e)), error: true });
        }
        // Unless the change led away (a deleted user has no page to show).
        if (currentRoute().path[1] === userId) {
          detail.reload();
          trail.reload();
        }
      },
    });
  const disabled = user.status === UserStatus.DISABLED;
  const support = may(operator, "support");
  const avatar = safeAvatar(user.avatarUrl);
  return (
    <section>
      <p>
        <a href="#/users">{t("detail.back")}</a>
      </p>
      <h1 data-testid="user-nickname">{user.nickname || user.id}</h1>
      {notice && (
        <p class={notice.error ? "error" : "notice"} role="status">
          {notice.text}
        </p>
      )}
      <h2>{t("detail.profile")}</h2>
      <Profile user={user} avatar={avatar} />
      <h2>{t("detail.actions")}</h2>
      <div class="buttons">
        {support && (
          <>
            <button type="button" onClick={() => ask(t("action.revoke"), async (reason) => t("action.revoked", { count: (await admin.revokeSessions({ userId, reason })).revokedCount }))}>
              {t("action.revoke")}
            </button>
            <button
              type="button"
              onClick={() =>
                ask(disabled ? t("action.enable") : t("action.disable"), async (reason) => {
                  await admin.setUserStatus({ userId, status: disabled ? UserStatus.ACTIVE : UserStatus.DISABLED, reason });
                  return undefined;
                })
              }
            >
              {disabled ? t("action.enable") : t("action.disable")}
            </button>
            {user.phoneNumber && (
              <button type="button" onClick={() => ask(t("action.unbindPhone"), async (reason) => void (await admin.unbindPhone({ userId, reason })))}>
                {t("action.unbindPhone")}
              </button>
            )}
          </>
        )}
        {may(operator, "admin") && (
          <button
            type="button"
            class="danger"
            onClick={() =>
              ask(
                t("action.delete"),
                async (reason) => {
                  await admin.deleteUser({ userId, reason });
                  go("/users");
                  return undefined;
                },
                user.id,
              )
            }
          >
            {t("action.delete")}
          </button>
        )}
      </div>
      <h2>{t("detail.identities")}</h2>
      <table>
        <TableHead names={[t("identity.platform"), t("identity.appid"), t("identity.openid"), t("identity.unionid"), ...(support ? [""] : [])]} />
        <tbody>
          {user.identities.map((identity) => (
            <tr key={`${identity.platform}/${identity.appid}`}>
              <td>{identity.platform}</td>
              <td>{identity.appid}</td>
              <td>{identity.openid}</td>
              <td>{identity.unionid}</td>
              {support && (
                <td>
                  <button
                    type="button"
                    onClick={() =>
                      ask(`${t("action.unlink")} ${identity.platform} ${identity.appid}`, async (reason) => {
                        await admin.unlinkIdentity({ userId, platform: identity.platform, appid: identity.appid, reason });
                        return undefined;
                      })
                    }
                  >
                    {t("action.unlink")}
                  </button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      <h2>{t("detail.sessions")}</h2>
      <table>
        <TableHead names={[t("session.app"), t("session.platform"), t("session.created"), t("session.lastRefreshed"), t("session.expires"), t("session.revoked"), t("session.address")]} />
        <tbody>
          {detail.data!.sessions.map((s) => (
            <tr key={s.id}>
              <td>{s.appId}</td>
              <td>{s.platform}</td>
              <td>{when(s.createTime, language)}</td>
              <td>{when(s.lastRefreshTime, language)}</td>
              <td>{when(s.expireTime, language)}</td>
              <td>{s.revokeTime ? `${when(s.revokeTime, language)} (${s.revokeReason})` : ""}</td>
              <td>{s.clientAddress}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>{t("detail.audit")}</h2>
      {trail.error ? <p class="error">{errorText(t, trail.error)}</p> : <AuditTable events={trail.data?.events ?? []} />}
      {confirm && <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />}
    </section>
  );
}

function Profile({ user, avatar }: { user: User; avatar: string | null }) {
  const { t, language } = useI18n();
  const rows: [string, string][] = [
    [t("user.id"), user.id],
    [t("user.nickname"), user.nickname],
    [t("user.phone"), user.phoneNumber],
    [t("user.username"), user.username],
    [t("user.email"), user.email],
    [t("user.roles"), user.roles.join(", ")],
    [t("user.status"), t(`status.${UserStatus[user.status] as "ACTIVE"}`)],
    [t("user.inviteCode"), user.inviteCode],
    [t("user.hasPassword"), user.hasPassword ? t("yes") : t("no")],
    [t("user.created"), when(user.createTime, language)],
    [t("user.updated"), when(user.updateTime, language)],
  ];
  return (
    <dl class="profile">
      {avatar && (
        <>
          <dt>{t("user.avatar")}</dt>
          <dd>
            <img src={avatar} alt="" width={48} height={48} referrerpolicy="no-referrer" />
          </dd>
        </>
      )}
      {rows.map(([name, value]) => (
        <Fragment key={name}>
          <dt>{name}</dt>
          <dd>{value}</dd>
        </Fragment>
      ))}
    </dl>
  );
}
