import { createPublicKey, createSign, createVerify, generateKeyPairSync, type KeyObject, randomBytes, randomInt } from "node:crypto";
import type { Clock } from "./wechat-state.js";

// Alipay's side of mini-program login (wechat-api.md §7b): the open-platform gateway's
// alipay.system.oauth.token, with app public keys, single-use auth codes and a gateway key of its own
// that signs every answer. It is Alipay, not us: the RSA2 rules are written out here again on purpose.

const CODE_TTL_MS = 3 * 60_000;
const ACCESS_TOKEN_TTL_S = 3600;
const REFRESH_TOKEN_TTL_S = 30 * 86_400;

export const ALIPAY_GATEWAY_PATH = "/alipay/gateway.do";
const OAUTH_METHOD = "alipay.system.oauth.token";
const RESPONSE_NODE = "alipay_system_oauth_token_response";
const TIMESTAMP = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;

// Top-level codes and their msg, as the gateway spells them.
const MSG: Record<string, string> = {
  "20000": "Service Currently Unavailable",
  "20001": "Insufficient Token Permissions",
  "40001": "Missing Required Arguments",
  "40002": "Invalid Arguments",
  "40004": "Business Failed",
  "40006": "Insufficient Permissions",
};

const SUB_MSG: Record<string, string> = {
  "isv.code-invalid": "授权码code无效",
  "isv.invalid-app-id": "无效的AppID参数",
  "isv.invalid-signature": "验签出错",
  "isv.invalid-signature-type": "无效的签名类型",
  "isv.invalid-method": "不存在的方法名",
  "isv.invalid-timestamp": "非法的时间戳参数",
  "isv.grant-type-invalid": "grant_type参数不正确",
  "isv.missing-app-id": "缺少AppID参数",
  "isv.missing-method": "缺少方法名参数",
  "isv.missing-signature": "缺少签名参数",
  "isp.unknow-error": "系统繁忙",
  "aop.invalid-auth-token": "无效的访问令牌",
  "isv.insufficient-isv-permissions": "ISV权限不足",
};

/** The sub_code an injected fault with only a top-level code carries. */
const FAULT_SUB_CODE: Record<string, string> = {
  "20000": "isp.unknow-error",
  "20001": "aop.invalid-auth-token",
  "40006": "isv.insufficient-isv-permissions",
};

/** An Alipay error answer: error_response {code, msg, sub_code, sub_msg}. */
class AlipayGatewayError extends Error {
  constructor(
    readonly subCode: string,
    readonly code = "40002",
  ) {
    super(subCode);
    this.name = "AlipayGatewayError";
  }
}

interface AuthCode {
  appid: string;
  userId?: string;
  openId?: string;
  expiresAt: number;
  used: boolean;
}

export interface AuthCodeRequest {
  appid: string;
  userId?: string;
  openId?: string;
}

export type AlipayGateway = ReturnType<typeof createAlipayGateway>;

/** A user_id as Alipay hands them out: "2088" and 12 more digits. */
function randomUserId(): string {
  return `2088${String(randomInt(0, 1e12)).padStart(12, "0")}`;
}

export function createAlipayGateway(apps: Record<string, string>, clock: Clock) {
  const appKeys = new Map<string, KeyObject>();
  for (const [appid, pem] of Object.entries(apps)) {
    try {
      appKeys.set(appid, createPublicKey(pem));
    } catch {
      throw new Error(`alipayApps: the public key for ${appid} is not a PEM public key`);
    }
  }
  const codes = new Map<string, AuthCode>();
  // Made on first use, so a simulator that never sees Alipay never pays for an RSA key.
  let gatewayKeys: { privateKey: KeyObject; publicKeyPem: string } | undefined;
  const gatewayKey = () => {
    if (gatewayKeys === undefined) {
      const pair = generateKeyPairSync("rsa", { modulusLength: 2048 });
      gatewayKeys = {
        privateKey: pair.privateKey,
        publicKeyPem: pair.publicKey.export({ type: "spki", format: "pem" }).toString(),
      };
    }
    return gatewayKeys;
  };

  /** The answer text: `{"<node>":<node json>,"sign":"<RSA2 over exactly that node json>"}`. */
  function signedAnswer(nodeName: string, node: object): string {
    const nodeText = JSON.stringify(node);
    const sign = createSign("RSA-SHA256").update(nodeText, "utf8").sign(gatewayKey().privateKey, "base64");
    return `{${JSON.stringify(nodeName)}:${nodeText},"sign":${JSON.stringify(sign)}}`;
  }

  function checkSignature(params: Record<string, string>, key: KeyObject): void {
    const sign = params.sign;
    if (sign === undefined || sign === "") throw new AlipayGatewayError("isv.missing-signature", "40001");
    if (params.sign_type !== "RSA2") throw new AlipayGatewayError("isv.invalid-signature-type");
    // RSA2 per the current OpenAPI rules: every non-empty parameter but `sign`, sorted, raw values.
    const content = Object.keys(params)
      .filter((name) => name !== "sign" && params[name] !== "")
      .sort()
      .map((name) => `${name}=${params[name]}`)
      .join("&");
    let valid: boolean;
    try {
      valid = createVerify("RSA-SHA256").update(content, "utf8").verify(key, sign, "base64");
    } catch {
      valid = false;
    }
    if (!valid) throw new AlipayGatewayError("isv.invalid-signature");
  }

  function errorAnswer(code: string, subCode: string | undefined): string {
    const node: Record<string, string> = { code, msg: MSG[code] ?? "Business Failed" };
    if (subCode !== undefined) Object.assign(node, { sub_code: subCode, sub_msg: SUB_MSG[subCode] ?? "模拟错误" });
    return signedAnswer("error_response", node);
  }

  function forgetExpired(): void {
    const now = clock.now();
    for (const [code, record] of codes) if (record.expiresAt <= now) codes.delete(code);
  }

  function redeem(appid: string, code: string | undefined): AuthCode {
    const record = code === undefined ? undefined : codes.get(code);
    // Unknown, another app's, used and expired codes all look the same from outside.
    if (record === undefined || record.appid !== appid || record.used || record.expiresAt <= clock.now()) {
      throw new AlipayGatewayError("isv.code-invalid");
    }
    record.used = true;
    return record;
  }

  return {
    get publicKeyPem(): string {
      return gatewayKey().publicKeyPem;
    },

    isKnownApp(appid: string): boolean {
      return appKeys.has(appid);
    },

    /** What my.getAuthCode gives the mini-program: a code for one user of one app. */
    mintAuthCode(request: AuthCodeRequest): { code: string; userId?: string; openId?: string } {
      forgetExpired();
      const code = randomBytes(16).toString("hex");
      const id = request.openId !== undefined ? { openId: request.openId } : { userId: request.userId ?? randomUserId() };
      codes.set(code, { appid: request.appid, ...id, expiresAt: clock.now() + CODE_TTL_MS, used: false });
      return { code, ...id };
    },

    /** Answers one gateway request (query and form parameters merged) with the body text Alipay would send. */
    handle(params: Record<string, string>): string {
      try {
        const appid = params.app_id;
        if (appid === undefined || appid === "") throw new AlipayGatewayError("isv.missing-app-id", "40001");
        const key = appKeys.get(appid);
        if (key === undefined) throw new AlipayGatewayError("isv.invalid-app-id");
        checkSignature(params, key);
        if (params.method === undefined || params.method === "") throw new AlipayGatewayError("isv.missing-method", "40001");
        if (params.method !== OAUTH_METHOD) throw new AlipayGatewayError("isv.invalid-method");
        if (!TIMESTAMP.test(params.timestamp ?? "")) throw new AlipayGatewayError("isv.invalid-timestamp");
        if (params.grant_type !== "authorization_code") throw new AlipayGatewayError("isv.grant-type-invalid");
        const record = redeem(appid, params.code);
        const user = record.openId !== undefined ? { open_id: record.openId } : { user_id: record.userId };
        return signedAnswer(RESPONSE_NODE, {
          ...user,
          access_token: `authbseB${randomBytes(16).toString("hex")}`,
          expires_in: String(ACCESS_TOKEN_TTL_S),
          refresh_token: `authbseB${randomBytes(16).toString("hex")}`,
          re_expires_in: String(REFRESH_TOKEN_TTL_S),
          auth_start: new Date(clock.now() + 8 * 3600_000).toISOString().slice(0, 19).replace("T", " "),
        });
      } catch (error) {
        if (error instanceof AlipayGatewayError) return errorAnswer(error.code, error.subCode);
        throw error;
      }
    },

    /** What an injected fault answers: a signed error_response with this `code` (sub_code only where one is usual). */
    faultAnswer(code: string): string {
      return errorAnswer(code, FAULT_SUB_CODE[code]);
    },
  };
}
