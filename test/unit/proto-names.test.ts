import type { DescMessage } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { file_identity_admin_v1_admin } from "../../gen/identity/admin/v1/admin_pb.js";
import { file_identity_v1_identity } from "../../gen/identity/v1/identity_pb.js";

// buf accepts two proto3 fields whose names match once lowercased without underscores (`app_id`
// and `appid`), but protoc refuses the file and Go's runtime will not load it (ghz found one).
function clashes(message: DescMessage): string[] {
  const seen = new Map<string, string>();
  const found: string[] = [];
  for (const field of message.fields) {
    const folded = field.name.toLowerCase().replaceAll("_", "");
    const other = seen.get(folded);
    if (other) found.push(`${message.typeName}: ${other} and ${field.name}`);
    seen.set(folded, field.name);
  }
  return [...found, ...message.nestedMessages.flatMap(clashes)];
}

describe("the contract's field names", () => {
  it("never clash the way protoc and Go refuse", () => {
    const files = [file_identity_v1_identity, file_identity_admin_v1_admin];
    expect(files.flatMap((file) => file.messages.flatMap(clashes))).toEqual([]);
  });
});
