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

// What JSON.parse lets by and a verifier that agrees with puewatch refuses (docs/report-schema.md): a name
// twice in one object (JSON.parse keeps the last, another reader the first: the signed bytes would not say
// which was meant) and an integer past 2^53 - 1 (rounded without a word). The text is walked once first.
// (The reference accepted both, so a report naming two sites verified here: found by the signing audit.)
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
function strict(text) {
  let i = 0;
  const space = () => { while (" \t\n\r".includes(text[i]) && i < text.length) i++; };
  const expect = (c) => { if (text[i] !== c) throw new Error(`expected ${c} at offset ${i}`); i++; };
  const string = () => {
    const start = i;
    expect('"');
    while (text[i] !== '"') { if (i >= text.length) throw new Error("unterminated string"); i += text[i] === "\\" ? 2 : 1; }
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = () => {
    space();
    if (text[i] === "{" || text[i] === "[") {
      const object = text[i++] === "{", names = new Set();
      space();
      if (text[i] === (object ? "}" : "]")) { i++; return; }
      for (;;) {
        if (object) {
          space();
          const name = string();
          if (names.has(name)) throw new Error(`duplicate key ${JSON.stringify(name)}`);
          names.add(name);
          space();
          expect(":");
        }
        value();
        space();
        if (text[i] === ",") { i++; continue; }
        expect(object ? "}" : "]");
        return;
      }
    }
    if (text[i] === '"') { string(); return; }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m) {
      // Digits past 2^53 - 1 are fine where they are a double's (its exact value, or its shortest digits as
      // JavaScript writes them: 18446744073709552000 for 2^64), as puewatch reads them (city/reportfile.py).
      const n = Number(m[0]);
      if (!m[1] && !m[2] && !Number.isSafeInteger(n) &&
          !(Number.isFinite(n) && (BigInt(n) === BigInt(m[0]) || String(n) === m[0]))) {
        throw new Error(`integer ${m[0]} is beyond 2^53 - 1 and no double's digits`);
      }
      i += m[0].length;
      return;
    }
    for (const word of ["true", "false", "null"]) if (text.startsWith(word, i)) { i += word.length; return; }
    throw new Error(`not JSON at offset ${i}`);
  };
  value();
  space();
  if (i !== text.length) throw new Error(`data after the JSON value at offset ${i}`);
}

const [command, path, arg] = process.argv.slice(2);
const text = readFileSync(path, "utf8");
const report = JSON.parse(text);

if (command === "verify") {
  try {
    strict(text);
  } catch (e) {
    console.log(`BAD: ${e.message}`);
    process.exit(1);
  }
  const publicKey = createPublicKey(readFileSync(arg));
  const sig = report.signature ?? {};
  const problems = [];
  // Standard base64 with padding only: Buffer.from takes URL-safe, unpadded and spaced text too.
  // Canonical too: the unused bits of its last character zero, as every encoder writes them.
  if (!/^[A-Za-z0-9+/]{86}==$/.test(sig.value ?? "") ||
      Buffer.from(sig.value, "base64").toString("base64") !== sig.value) {
    problems.push("value is not 64 bytes of canonical standard base64");
  }
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
