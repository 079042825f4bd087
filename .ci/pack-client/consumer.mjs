// Plain Node ESM in a project that installed the package's tarball: every entry point loads, and the
// client's transport really runs (a call to a closed port is UNAVAILABLE, with no reason of ours).
import { createServer } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createCheckLogin, createIdentityClient, ErrorInfoSchema, IdentityService, reasonOf } from "@identity-service/client";
import { identityAuth as expressAuth } from "@identity-service/client/express";
import { identityAuth as fastifyAuth } from "@identity-service/client/fastify";

const fail = (message) => {
  console.error(`pack consumer: ${message}`);
  process.exit(1);
};
if (IdentityService.typeName !== "identity.v1.IdentityService") fail(`IdentityService is ${IdentityService.typeName}`);
for (const [name, fn] of Object.entries({ expressAuth, fastifyAuth })) if (typeof fn({ check: async () => fail("called") }) !== "function") fail(`${name} gave no handler`);

const refused = new ConnectError("refused", Code.Unauthenticated, undefined, [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { domain: "identity.v1", reason: "TOKEN_EXPIRED" }) }]);
if (reasonOf(refused) !== "TOKEN_EXPIRED") fail(`reasonOf gave ${reasonOf(refused)}`);

const server = createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const baseUrl = `http://127.0.0.1:${server.address().port}`;
await new Promise((resolve) => server.close(resolve));
for (const transport of ["grpc", "connect"]) {
  const err = await createCheckLogin(createIdentityClient({ baseUrl, transport }))
    .call(null, "token")
    .then(
      () => fail(`${transport}: a closed port answered`),
      (e) => e,
    );
  if (!(err instanceof ConnectError) || err.code !== Code.Unavailable || reasonOf(err) !== undefined) fail(`${transport}: ${err}`);
}
console.log("pack consumer: ESM imports and calls work");
