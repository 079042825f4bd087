// WeChat's open-data crypto: the official vectors, the ways decryption must fail, and a round trip with the simulator.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encryptOpenData } from "../../src/simulator/crypto.js";
import { createWechatSimulator, type WechatSimulator } from "../../src/simulator/simulator.js";
import { decryptOpenData, hmacSha256Hex, OpenDataError, rawDataSignatureMatches, sessionKeySignature } from "../../src/wechat/open-data.js";
import { DEMO_APPID, mintCode, simPost } from "../support/harness.js";

// The sample of WeChat's "开放数据校验与解密" doc (signature.html, aes-sample).
const SAMPLE = {
  appid: "wx4f4bc4dec97d474b",
  sessionKey: "tiihtNczf5v6AKRyjwEUhQ==",
  encryptedData:
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==",
  iv: "r7BXXKkLb8qrSNn05n0qiA==",
};

// The rawData example of the same doc.
const RAW = {
  rawData:
    '{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}',
  sessionKey: "HyVFkGl5F5OQWJZZaNzBBg==",
  signature: "75e81ceda165f4ffa64f4068af58c64b8f54b88c",
};

const KEY = "a2V5a2V5a2V5a2V5a2V5aw==";

/** The error kind decryption ends with, checking its message gives nothing secret away. */
function failure(sessionKey: string, encryptedData: string, iv: string, appid: string): string {
  try {
    decryptOpenData(sessionKey, encryptedData, iv, appid);
    return "ok";
  } catch (e) {
    if (!(e instanceof OpenDataError)) throw e;
    for (const secret of [sessionKey, encryptedData].filter(Boolean)) expect(e.message).not.toContain(secret);
    return e.kind;
  }
}

function flipFirstByte(base64: string): string {
  const bytes = Buffer.from(base64, "base64");
  bytes[0]! ^= 0x01;
  return bytes.toString("base64");
}

describe("decryptOpenData", () => {
  it("decrypts the official sample", () => {
    const data = decryptOpenData(SAMPLE.sessionKey, SAMPLE.encryptedData, SAMPLE.iv, SAMPLE.appid);
    expect(data).toMatchObject({
      openId: "oGZUI0egBJY1zhBYw2KhdUfwVJJE",
      nickName: "Band",
      unionId: "ocMvos6NjeKLIBqg5Mr9QjxrP1FA",
      watermark: { appid: "wx4f4bc4dec97d474b", timestamp: 1477314187 },
    });
  });

  it("refuses a wrong key, a tampered iv and plaintext that is not a JSON object", () => {
    expect(failure(KEY, SAMPLE.encryptedData, SAMPLE.iv, SAMPLE.appid)).toBe("decrypt_failed");
    // Only the first block changes, so the padding still checks out: the JSON must catch it.
    expect(failure(SAMPLE.sessionKey, SAMPLE.encryptedData, flipFirstByte(SAMPLE.iv), SAMPLE.appid)).toBe("decrypt_failed");
    for (const plaintext of ["[1]", "null", "not json"]) {
      const sealed = encryptOpenData(KEY, plaintext);
      expect(failure(KEY, sealed.encryptedData, sealed.iv, SAMPLE.appid)).toBe("decrypt_failed");
    }
  });

  it("refuses data whose watermark is missing or names another app", () => {
    expect(failure(SAMPLE.sessionKey, SAMPLE.encryptedData, SAMPLE.iv, "wx0000000000000002")).toBe("watermark_mismatch");
    for (const data of [{ openId: "o1" }, { watermark: "wx4f4bc4dec97d474b" }, { watermark: { timestamp: 1 } }]) {
      const sealed = encryptOpenData(KEY, JSON.stringify(data));
      expect(failure(KEY, sealed.encryptedData, sealed.iv, SAMPLE.appid)).toBe("watermark_mismatch");
    }
  });

  it("refuses input that is not base64 of the right lengths", () => {
    const { sessionKey, encryptedData, iv, appid } = SAMPLE;
    expect(failure("tiihtNczf5v6AKRy", encryptedData, iv, appid)).toBe("malformed");
    expect(failure("tiihtNczf5v6AKRyjwEUhQ=!", encryptedData, iv, appid)).toBe("malformed");
    expect(failure(sessionKey, encryptedData, "r7BXXKkLb8qrSNn0", appid)).toBe("malformed");
    expect(failure(sessionKey, encryptedData.slice(0, -4), iv, appid)).toBe("malformed");
    expect(failure(sessionKey, "", iv, appid)).toBe("malformed");
    expect(failure(sessionKey, encryptedData.replace("+", " "), iv, appid)).toBe("malformed");
  });
});

describe("round trip with the simulator", () => {
  let sim: WechatSimulator;
  beforeAll(async () => {
    sim = createWechatSimulator({ apps: { [DEMO_APPID]: "s3cret" } });
    await sim.listen(0, "127.0.0.1");
  });
  afterAll(() => sim.close());

  it("decrypts what /sim/encrypt sealed with the user's session_key", async () => {
    const { openid } = await mintCode(sim.url, { sessionKey: KEY });
    const data = { phoneNumber: "13580006666", purePhoneNumber: "13580006666", countryCode: "86" };
    const sealed = await simPost(sim.url, "/sim/encrypt", { appid: DEMO_APPID, openid, data });
    expect(decryptOpenData(KEY, sealed.encryptedData, sealed.iv, DEMO_APPID)).toEqual({
      ...data,
      watermark: { appid: DEMO_APPID, timestamp: expect.any(Number) },
    });
    expect(failure(KEY, sealed.encryptedData, sealed.iv, "wx0000000000000002")).toBe("watermark_mismatch");
  });
});

describe("signatures", () => {
  it("checks rawData against sha1(rawData + session_key)", () => {
    expect(rawDataSignatureMatches(RAW.rawData, RAW.sessionKey, RAW.signature)).toBe(true);
    expect(rawDataSignatureMatches(RAW.rawData, RAW.sessionKey, RAW.signature.replace(/^7/, "8"))).toBe(false);
    expect(rawDataSignatureMatches(`${RAW.rawData} `, RAW.sessionKey, RAW.signature)).toBe(false);
    expect(rawDataSignatureMatches(RAW.rawData, KEY, RAW.signature)).toBe(false);
    expect(rawDataSignatureMatches(RAW.rawData, RAW.sessionKey, RAW.signature.slice(1))).toBe(false);
    expect(rawDataSignatureMatches(RAW.rawData, RAW.sessionKey, "")).toBe(false);
  });

  it("keys HMAC-SHA256 with the session_key string, as checkSessionKey's doc example shows", () => {
    expect(hmacSha256Hex("o0q0otL8aEzpcZL/FT9WsQ==", '{"foo":"bar"}')).toBe("654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b");
    // openssl dgst -sha256 -hmac 'a2V5a2V5a2V5a2V5a2V5aw==' < /dev/null
    expect(sessionKeySignature(KEY)).toBe("a84e54fffa84bd26837830dafcbe9a029097561a51989931819070a511096f48");
  });
});
