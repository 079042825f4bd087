import { Gender, UserStatus, type User } from "../../gen/identity/v1/identity_pb.js";
import type { JsonObject, JsonValue, UserRecord } from "../store/store.js";
import { apiError, fieldInvalid } from "./errors.js";

/** What an UpdateUser asks for: fields to set, and optional fields to clear. */
export interface ProfilePatch {
  set: Partial<Pick<UserRecord, ProfileField | PrivilegedField>>;
  unset: ProfileField[];
}

type ProfileField = "nickname" | "avatarUrl" | "gender" | "birthday" | "email" | "username" | "attributes";
type PrivilegedField = "roles" | "status";

export const LIMITS = {
  nicknameChars: 64,
  urlChars: 1024,
  emailChars: 254,
  attributesBytes: 8 * 1024,
  attributesDepth: 8,
  attributeKeyChars: 64,
};

// Mask paths (proto names, as FieldMask carries them) that an end user may set.
const USER_FIELDS: Record<string, ProfileField> = {
  nickname: "nickname",
  avatar_url: "avatarUrl",
  gender: "gender",
  birthday: "birthday",
  email: "email",
  username: "username",
  attributes: "attributes",
};
const ROLE = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/;
const MAX_ROLES = 16;

// Only internal callers may set these.
const privileged: Record<string, (user: User) => Partial<Pick<UserRecord, PrivilegedField>>> = {
  roles({ roles }) {
    if (roles.length > MAX_ROLES || !roles.every((r) => ROLE.test(r))) {
      throw fieldInvalid("user.roles", `at most ${MAX_ROLES} roles of 1-32 of A-Z, a-z, 0-9, _ -, starting with a letter`);
    }
    return { roles: [...new Set(roles)] };
  },
  status({ status }) {
    if (status === UserStatus.ACTIVE) return { status: "active" };
    if (status === UserStatus.DISABLED) return { status: "disabled" };
    throw fieldInvalid("user.status", "must be USER_STATUS_ACTIVE or USER_STATUS_DISABLED");
  },
};
const READ_ONLY_FIELDS = new Set(["id", "version", "phone_number", "pure_phone_number", "country_code", "invite_code", "inviter_id", "has_password", "identities", "create_time", "update_time"]);

const USERNAME = /^[A-Za-z][A-Za-z0-9_.-]{2,31}$/;

/** The one username rule, for Login, SetPassword and UpdateUser alike. */
export function checkUsername(field: string, username: string): void {
  if (!USERNAME.test(username)) throw fieldInvalid(field, "must be 3-32 of A-Z, a-z, 0-9, _ . -, starting with a letter");
}
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
// The nickname rule (README "Nicknames"): no control characters (C0/C1, line and paragraph
// separators, bidi overrides that reorder the text around them), and at least one visible
// character: spaces, zero-width and other ignorable characters, lone combining marks, Hangul
// fillers (U+3164, U+FFA0) and the blank Braille pattern (U+2800) alone are no name.
const NICKNAME_CONTROL = /[\p{Cc}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/u;
const INVISIBLE_ONLY = /^[\p{White_Space}\p{Cf}\p{M}\p{Default_Ignorable_Code_Point}\u2800\u3164\uffa0\u115f\u1160]*$/u;

/** The one nickname rule, for every path where a user chose the name: FIELD_INVALID on `field` when it breaks it. */
function checkNickname(field: string, nickname: string): string {
  if ([...nickname].length > LIMITS.nicknameChars) throw fieldInvalid(field, `at most ${LIMITS.nicknameChars} characters`);
  if (NICKNAME_CONTROL.test(nickname) || INVISIBLE_ONLY.test(nickname)) {
    throw fieldInvalid(field, "must be visible text without control characters");
  }
  return nickname;
}

/** The same rule for a platform's profile, which the user cannot fix: controls stripped, cut to the limit, "" when nothing visible is left. */
export function cleanNickname(nickname: string): string {
  const clean = [...nickname]
    .filter((c) => !NICKNAME_CONTROL.test(c))
    .slice(0, LIMITS.nicknameChars)
    .join("");
  return INVISIBLE_ONLY.test(clean) ? "" : clean;
}
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** The mask's paths, or when the mask is empty, every field the request sets. */
export function updatePaths(user: User, maskPaths: string[]): string[] {
  if (maskPaths.length) return maskPaths;
  const set: string[] = [];
  if (user.nickname) set.push("nickname");
  if (user.avatarUrl) set.push("avatar_url");
  if (user.gender !== Gender.UNSPECIFIED) set.push("gender");
  if (user.birthday) set.push("birthday");
  if (user.email) set.push("email");
  if (user.username) set.push("username");
  if (user.attributes && Object.keys(user.attributes).length) set.push("attributes");
  if (user.roles.length) set.push("roles");
  if (user.status) set.push("status");
  if (!set.length) throw fieldInvalid("update_mask", "nothing to update: name fields in update_mask or set them in user");
  return set;
}

/** Validates every named field; an empty value clears an optional field. Roles and status need `internal`. */
export function planProfilePatch(user: User, paths: string[], now: Date, { internal = false } = {}): ProfilePatch {
  const patch: ProfilePatch = { set: {}, unset: [] };
  for (const path of new Set(paths)) {
    // Own keys only: a mask path like "constructor" must not reach Object.prototype.
    const setPrivileged = Object.hasOwn(privileged, path) ? privileged[path] : undefined;
    if (setPrivileged) {
      if (!internal) throw apiError("FIELD_NOT_ALLOWED", `user.${path} can be changed only by internal services`, { field: `user.${path}` });
      Object.assign(patch.set, setPrivileged(user));
      continue;
    }
    const field = Object.hasOwn(USER_FIELDS, path) ? USER_FIELDS[path] : undefined;
    if (!field) {
      throw fieldInvalid("update_mask", READ_ONLY_FIELDS.has(path) ? `${path} cannot be updated` : `unknown field ${path}`);
    }
    const value = validators[field](user, now);
    if (value === undefined) patch.unset.push(field);
    else Object.assign(patch.set, { [field]: value });
  }
  return patch;
}

const validators: Record<ProfileField, (user: User, now: Date) => UserRecord[ProfileField] | undefined> = {
  nickname({ nickname }) {
    if (!nickname) return undefined;
    return checkNickname("user.nickname", nickname);
  },
  avatarUrl({ avatarUrl }) {
    if (!avatarUrl) return undefined;
    const url = avatarUrl.length <= LIMITS.urlChars && URL.canParse(avatarUrl) ? new URL(avatarUrl) : null;
    if (!url || !["https:", "http:"].includes(url.protocol)) throw fieldInvalid("user.avatarUrl", `must be an http(s) URL of at most ${LIMITS.urlChars} characters`);
    return avatarUrl;
  },
  gender({ gender }) {
    if (gender === Gender.UNSPECIFIED) return undefined;
    if (gender === Gender.MALE) return "male";
    if (gender === Gender.FEMALE) return "female";
    throw fieldInvalid("user.gender", "must be GENDER_MALE, GENDER_FEMALE or GENDER_UNSPECIFIED");
  },
  birthday({ birthday }, now) {
    if (!birthday) return undefined;
    const m = DATE.exec(birthday);
    const date = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
    const real = date && date.toISOString().slice(0, 10) === birthday;
    if (!real || date.getUTCFullYear() < 1900 || date > now) throw fieldInvalid("user.birthday", "must be a past date as YYYY-MM-DD, not before 1900");
    return birthday;
  },
  email({ email }) {
    if (!email) return undefined;
    if (email.length > LIMITS.emailChars || !EMAIL.test(email)) throw fieldInvalid("user.email", "must be an email address");
    return email;
  },
  username({ username }) {
    if (!username) return undefined;
    checkUsername("user.username", username);
    return username;
  },
  attributes({ attributes }) {
    if (!attributes || !Object.keys(attributes).length) return undefined;
    checkJson(attributes, 1);
    if (Buffer.byteLength(JSON.stringify(attributes)) > LIMITS.attributesBytes) {
      throw fieldInvalid("user.attributes", `at most ${LIMITS.attributesBytes} bytes as JSON`);
    }
    return attributes;
  },
};

// Keys must be safe as MongoDB field names and as plain-object keys.
function checkJson(value: JsonValue, depth: number): void {
  if (depth > LIMITS.attributesDepth) throw fieldInvalid("user.attributes", `nested at most ${LIMITS.attributesDepth} levels`);
  if (Array.isArray(value)) {
    for (const v of value) checkJson(v, depth + 1);
    return;
  }
  // A binary Struct can carry Infinity, which no JSON answer can then hold: every read would fail.
  if (typeof value === "number" && !Number.isFinite(value)) throw fieldInvalid("user.attributes", "numbers must be finite");
  if (value === null || typeof value !== "object") return;
  for (const [key, child] of Object.entries(value as JsonObject)) {
    if (!key || key.length > LIMITS.attributeKeyChars || key.startsWith("$") || key.includes(".") || key.includes("\0") || FORBIDDEN_KEYS.has(key)) {
      throw fieldInvalid("user.attributes", `key "${key.slice(0, LIMITS.attributeKeyChars)}" is not allowed: 1-${LIMITS.attributeKeyChars} characters, no leading $, no dots`);
    }
    checkJson(child, depth + 1);
  }
}
