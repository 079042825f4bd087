import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Language } from "./i18n.js";

export const when = (ts: Timestamp | undefined, language: Language) => (ts ? timestampDate(ts).toLocaleString(language) : "");

/** A user-provided avatar URL, only when it is https (no javascript:, no data:, no plain http). */
export function safeAvatar(url: string): string | null {
  try {
    return new URL(url).protocol === "https:" ? url : null;
  } catch {
    return null;
  }
}
