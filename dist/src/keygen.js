// `npm run keygen [ES256|EdDSA]`: prints a fresh private signing key as a JWK for the config's
// signingKeys (the first key signs; keep older ones listed until their tokens have expired).
// `npm run keygen api-key [name]`: prints a fresh internal-caller key and the config entry for it
// (only the key's SHA-256 goes in the config; the key itself goes to the internal service).
import { createHash, randomBytes } from "node:crypto";
import { generateSigningKey } from "./auth/access-tokens.js";
const [kind = "ES256", name = "internal"] = process.argv.slice(2);
if (kind === "api-key") {
    const key = randomBytes(32).toString("base64url");
    console.log(JSON.stringify({ key, configEntry: { name, keySha256: createHash("sha256").update(key).digest("hex") } }));
}
else if (kind === "ES256" || kind === "EdDSA") {
    console.log(JSON.stringify((await generateSigningKey(kind)).privateJwk));
}
else {
    console.error("usage: npm run keygen [ES256|EdDSA]  |  npm run keygen api-key [name]");
    process.exit(2);
}
