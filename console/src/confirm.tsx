// A modal confirmation for every change an operator makes: a reason for the audit log and, for
// the irreversible ones, the user id typed again.
import { useEffect, useRef, useState } from "preact/hooks";
import { useI18n } from "./i18n.js";

export interface ConfirmRequest {
  action: string;
  /** The text the operator must type to confirm (the user id, for a deletion). */
  typeToConfirm?: string;
  run: (reason: string) => Promise<void>;
}

export function ConfirmDialog({ request, onClose }: { request: ConfirmRequest; onClose: () => void }) {
  const { t } = useI18n();
  const dialog = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState("");
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => dialog.current?.showModal(), []);
  const ready = reason.trim() !== "" && (!request.typeToConfirm || typed === request.typeToConfirm) && !busy;
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!ready) return;
    setBusy(true);
    try {
      await request.run(reason.trim());
    } finally {
      onClose();
    }
  };
  return (
    <dialog ref={dialog} onClose={onClose} aria-labelledby="confirm-title">
      <form onSubmit={submit}>
        <h2 id="confirm-title">{t("confirm.title", { action: request.action })}</h2>
        <label>
          {t("confirm.reason")}
          <input name="reason" value={reason} maxLength={200} required onInput={(e) => setReason(e.currentTarget.value)} />
        </label>
        {request.typeToConfirm && (
          <label>
            {t("confirm.typeId")}
            <input name="confirm" value={typed} autocomplete="off" onInput={(e) => setTyped(e.currentTarget.value)} />
          </label>
        )}
        <div class="buttons">
          <button type="button" onClick={onClose}>
            {t("confirm.cancel")}
          </button>
          <button type="submit" class="danger" disabled={!ready}>
            {t("confirm.ok")}
          </button>
        </div>
      </form>
    </dialog>
  );
}
