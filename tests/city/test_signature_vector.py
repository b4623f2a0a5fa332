"""The signature test vector in docs/report-schema.md is what puewatch computes (so the doc cannot drift)."""

from __future__ import annotations

import json

from city_support import run_cli, signature_vector
from cryptography.hazmat.primitives import serialization

from puewatch.signing import canonical_bytes, key_id, load_private_key, load_public_key, sign_report, verify_report


def test_the_documented_vector_is_what_puewatch_computes(tmp_path):
    v = signature_vector()
    (tmp_path / "vector.key").write_text(v["private_pem"])
    (tmp_path / "vector.pub").write_text(v["public_pem"])
    private, public = load_private_key(tmp_path / "vector.key"), load_public_key(tmp_path / "vector.pub")

    # the key: the public key is the private key's, with the raw bytes and key id the doc states
    assert private.public_key() == public
    assert public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex() == v["raw_public_hex"]
    assert key_id(public) == v["key_id"]

    # the signed bytes: the doc's line, of the length it states
    signed_doc = json.loads(v["report_json"])
    assert canonical_bytes(signed_doc) == v["signed_bytes"]
    assert len(v["signed_bytes"]) == v["signed_length"]

    # the signature: signing the report again gives the doc's file, byte for byte as `puewatch sign` writes it
    unsigned = {k: x for k, x in signed_doc.items() if k != "signature"}
    (tmp_path / "unsigned.json").write_text(json.dumps(unsigned, indent=2, ensure_ascii=False), encoding="utf-8")
    out = run_cli("sign", tmp_path / "unsigned.json", "--key", tmp_path / "vector.key")
    assert out.returncode == 0, out.stderr
    assert out.stdout == v["report_json"]
    assert sign_report(unsigned, private) == signed_doc
    assert verify_report(signed_doc, {v["key_id"]: public}).ok

    (tmp_path / "vector.json").write_text(v["report_json"], encoding="utf-8")
    ok = run_cli("verify", tmp_path / "vector.json", "--pubkey", tmp_path / "vector.pub")
    assert ok.returncode == 0, ok.stderr
