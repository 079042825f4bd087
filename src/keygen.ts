// `npm run keygen [ES256|EdDSA]`: prints a fresh private signing key as a JWK for the config's
// signingKeys (the first key signs; keep older ones listed until their tokens have expired).
import { generateSigningKey, type SigningAlgorithm } from "./auth/access-tokens.js";

const alg = (process.argv[2] ?? "ES256") as SigningAlgorithm;
if (alg !== "ES256" && alg !== "EdDSA") {
  console.error("usage: npm run keygen [ES256|EdDSA]");
  process.exit(2);
}
const { privateJwk } = await generateSigningKey(alg);
console.log(JSON.stringify(privateJwk));
