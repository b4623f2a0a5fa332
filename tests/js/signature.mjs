// An independent signer and verifier of puewatch report signatures, written from
// docs/report-schema.md alone: RFC 8785 (the `canonicalize` package, Erdtman's reference
// implementation) and Node's built-in Ed25519. tests/city/test_signing_interop.py runs it.
//
//   node signature.mjs verify REPORT PUBLIC.pem      exit 0 and "OK <key id>", or exit 1 and "BAD: <why>"
//   node signature.mjs sign REPORT PRIVATE.pem       the signed report on standard output
//   node signature.mjs rewrite REPORT [--pretty]     JSON.stringify(JSON.parse(REPORT)) on standard output
//   node signature.mjs canonical REPORT              the signed bytes (the report without `signature`, JCS)
import { createHash, createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import canonicalize from "canonicalize";

function signedBytes(report) {
  const { signature, ...body } = report;
  return Buffer.from(canonicalize(body), "utf8");
}

// The first 16 hex characters of SHA-256 over the raw 32-byte Ed25519 public key.
function keyId(publicKey) {
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url");
  return createHash("sha256").update(raw).digest("hex").slice(0, 16);
}

const [command, path, arg] = process.argv.slice(2);
const report = JSON.parse(readFileSync(path, "utf8"));

if (command === "verify") {
  const publicKey = createPublicKey(readFileSync(arg));
  const sig = report.signature ?? {};
  const problems = [];
  if (sig.alg !== "ed25519") problems.push(`alg ${sig.alg}`);
  if (sig.canonicalization !== "RFC8785") problems.push(`canonicalization ${sig.canonicalization}`);
  if (sig.key_id !== keyId(publicKey)) problems.push(`key_id ${sig.key_id} is not ${keyId(publicKey)}`);
  if (!verify(null, signedBytes(report), publicKey, Buffer.from(sig.value ?? "", "base64"))) {
    problems.push("Ed25519 signature does not match the RFC 8785 bytes");
  }
  if (problems.length) {
    console.log(`BAD: ${problems.join("; ")}`);
    process.exit(1);
  }
  console.log(`OK ${sig.key_id}`);
} else if (command === "sign") {
  const privateKey = createPrivateKey(readFileSync(arg));
  const { signature, ...body } = report;
  const value = sign(null, signedBytes(body), privateKey).toString("base64");
  const signed = {
    ...body,
    signature: { alg: "ed25519", key_id: keyId(createPublicKey(privateKey)), value, canonicalization: "RFC8785" },
  };
  process.stdout.write(JSON.stringify(signed) + "\n");
} else if (command === "rewrite") {
  process.stdout.write(JSON.stringify(report, null, arg === "--pretty" ? 2 : undefined) + "\n");
} else if (command === "canonical") {
  process.stdout.write(signedBytes(report));
} else {
  console.error(`unknown command ${command}`);
  process.exit(2);
}
