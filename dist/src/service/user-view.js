import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Gender, UserSchema, UserStatus } from "../../gen/identity/v1/identity_pb.js";
export const GENDER_TO_WIRE = { male: Gender.MALE, female: Gender.FEMALE };
/** What a user may see of a record: never the password hash, never session keys (sessions hold those). */
export function userToWire(user) {
    return create(UserSchema, {
        id: user.id,
        version: user.version,
        nickname: user.nickname ?? "",
        avatarUrl: user.avatarUrl ?? "",
        gender: user.gender ? GENDER_TO_WIRE[user.gender] : Gender.UNSPECIFIED,
        birthday: user.birthday ?? "",
        phoneNumber: user.phoneNumber ?? "",
        purePhoneNumber: user.purePhoneNumber ?? "",
        countryCode: user.countryCode ?? "",
        email: user.email ?? "",
        username: user.username ?? "",
        roles: user.roles,
        status: user.status === "disabled" ? UserStatus.DISABLED : UserStatus.ACTIVE,
        inviteCode: user.inviteCode ?? "",
        inviterId: user.inviterId ?? "",
        hasPassword: Boolean(user.passwordHash),
        identities: user.identities.map((i) => ({
            platform: i.platform,
            appid: i.appid,
            openid: i.openid,
            unionid: i.unionid ?? "",
            createTime: timestampFromDate(i.createdAt),
        })),
        attributes: user.attributes,
        createTime: timestampFromDate(user.createdAt),
        updateTime: timestampFromDate(user.updatedAt),
    });
}
