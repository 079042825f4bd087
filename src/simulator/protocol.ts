import { randomBytes } from "node:crypto";

// What the simulated WeChat looks like on the wire: its paths, its errcodes and its error bodies.

export const WECHAT_PATHS = ["/sns/jscode2session", "/cgi-bin/stable_token", "/wxa/business/getuserphonenumber", "/wxa/checksession", "/wxa/msg_sec_check"] as const;
export type WechatPath = (typeof WECHAT_PATHS)[number];

// errmsg texts as the real API spells them (wechat-api.md §0–4).
const ERRMSG = {
  [-1]: "system error",
  40001: "invalid credential, access_token is invalid or not latest",
  40002: "invalid grant_type",
  40003: "invalid openid",
  40013: "invalid appid",
  40014: "invalid access_token",
  40029: "invalid code",
  40129: "invalid scene",
  40066: "invalid url",
  40125: "invalid appsecret",
  40163: "code been used",
  40226: "code blocked",
  41001: "access_token missing",
  41002: "appid missing",
  41004: "appsecret missing",
  41008: "missing code",
  42001: "access_token expired",
  42003: "code expired",
  43002: "require POST method",
  44002: "empty post data",
  45011: "api minute-quota reach limit mustslower retry next minute",
  47001: "data format error",
  87008: "invalid sig_method",
  87009: "invalid signature",
} as const satisfies Record<number, string>;
export type Errcode = keyof typeof ERRMSG;

export interface WechatErrorBody {
  errcode: number;
  errmsg: string;
}

/** A WeChat error answer; the route wrapper turns it into a 200 with an errcode body. */
export class WechatApiError extends Error {
  constructor(readonly errcode: Errcode) {
    super(ERRMSG[errcode]);
    this.name = "WechatApiError";
  }
}

/** Any errcode, including ones injected as faults that the table does not know. */
export function errorBody(errcode: number): WechatErrorBody {
  const text = (ERRMSG as Record<number, string>)[errcode] ?? "simulated error";
  // The real errmsg carries a changing request id, so clients cannot (and must not) match on it.
  const rid = [4, 4, 4].map((n) => randomBytes(n).toString("hex")).join("-");
  return { errcode, errmsg: `${text}, rid: ${rid}` };
}
