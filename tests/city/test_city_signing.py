"""Ed25519 keys, `puewatch sign` and `puewatch verify`: the round trip and every kind of tampering."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import stat

import pytest
import rfc8785
from city_support import make_report, run_cli, write_json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from puewatch.city.reportfile import parse_report
from puewatch.signing import (
    CanonicalizationError,
    canonical_bytes,
    key_id,
    legacy_canonical_bytes_pre_rfc8785,
    load_private_key,
    load_public_key,
    sign_report,
    signature_status,
    verify_report,
)


@pytest.fixture(scope="module")
def keypair():
    private = Ed25519PrivateKey.generate()
    return private, {key_id(private.public_key()): private.public_key()}


def _whole_floats_as_ints(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    return value


def test_canonical_form_is_the_one_in_the_schema():
    report = make_report("北京-1")
    report["signature"] = {"alg": "ed25519", "key_id": "x", "value": "y", "canonicalization": "RFC8785"}
    # docs/report-schema.md: RFC 8785 of the report without `signature`. For this report's numbers
    # (none below 1e-6 or from 1e21 up) ES6 and Python's repr differ only in whole floats: 1.0 is `1`.
    body = {k: v for k, v in report.items() if k != "signature"}
    expected = json.dumps(
        _whole_floats_as_ints(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert canonical_bytes(report) == expected
    assert "北京-1".encode() in expected and b'"alpha"' not in expected
    assert expected.startswith(b'{"annual":true,"category":2,"clf":0.2,')  # sorted, no whitespace
    assert b'"it_energy_wh":1000000,' in expected  # the float 1000000.0, as JavaScript writes it


def test_signature_is_checkable_with_cryptography_and_rfc8785_alone(keypair):
    private, _ = keypair
    signed = sign_report(make_report(), private)
    sig = signed["signature"]
    assert sig == {"alg": "ed25519", "key_id": sig["key_id"], "value": sig["value"], "canonicalization": "RFC8785"}
    raw_pub = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert sig["key_id"] == hashlib.sha256(raw_pub).hexdigest()[:16]
    body = {k: v for k, v in signed.items() if k != "signature"}
    private.public_key().verify(base64.b64decode(sig["value"]), rfc8785.dumps(body))  # raises if wrong


def test_whole_floats_sign_as_the_integers_another_language_writes(keypair):
    private, keys = keypair
    signed = sign_report(make_report(completeness=1.0), private)
    assert isinstance(signed["completeness"], float)
    # what JSON.stringify(JSON.parse(...)) does to the file: 1.0 -> 1, 1270000.0 -> 1270000
    as_js_writes = json.loads(json.dumps(_whole_floats_as_ints(signed)))
    assert as_js_writes["completeness"] == 1 and isinstance(as_js_writes["completeness"], int)
    assert verify_report(as_js_writes, keys).ok


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("pue", float("nan"), "pue: nan is not a JSON number (use null)"),
        ("facility_energy_wh", float("inf"), "facility_energy_wh: inf is not a JSON number"),
        ("resets", 2**53, "resets: integer 9007199254740992 is beyond 2^53 - 1"),
    ],
)
def test_values_rfc8785_cannot_represent_are_refused_at_signing(keypair, field, value, says):
    private, keys = keypair
    report = make_report()
    if field == "resets":
        report["meters"][0]["resets"] = value
        says = "meters[0]." + says
    else:
        report[field] = value
    with pytest.raises(CanonicalizationError) as exc:
        sign_report(report, private)
    assert says in str(exc.value) and "RFC 8785" in str(exc.value)
    # the same value in a report that claims a signature: invalid, with the reason, not a traceback
    signed = sign_report(make_report(), private)
    signed["pue"] = float("nan")
    result = verify_report(signed, keys)
    assert result.status == "invalid" and "pue: nan is not a JSON number" in result.reason


def test_a_large_whole_float_survives_a_javascript_rewrite(keypair, tmp_path):
    """1e16 (beyond 2^53) is written 10000000000000000 by JavaScript; read back, it is that double."""
    private, keys = keypair
    signed = sign_report(make_report(facility_energy_wh=1e16), private)
    text = json.dumps(signed).replace("1e+16", "10000000000000000")
    assert "10000000000000000," in text
    assert verify_report(parse_report(text, "t.json"), keys).ok
    not_a_double = text.replace("10000000000000000,", "10000000000000001,", 1)
    result = verify_report(parse_report(not_a_double, "t.json"), keys)
    assert result.status == "invalid" and "integer 10000000000000001 is beyond 2^53 - 1" in result.reason


def test_a_whole_double_in_its_shortest_digits_is_that_double(keypair):
    """2^64 (a 64-bit register's modulus in Wh) is written 18446744073709552000 by JavaScript and by RFC 8785
    itself, digits that are not its exact value: read back, it is that double (found by the cross-language
    audit: verify called such a report tampered with). 2^64 - 1 written out is no double's digits: refused."""
    private, keys = keypair
    signed = sign_report(make_report(facility_energy_wh=2.0**64), private)
    text = json.dumps(signed)
    assert "1.8446744073709552e+19" in text
    for digits in ("18446744073709552000", "18446744073709551616"):  # shortest (JS, RFC 8785), exact
        rewritten = parse_report(text.replace("1.8446744073709552e+19", digits), "t.json")
        assert rewritten["facility_energy_wh"] == 2.0**64 and verify_report(rewritten, keys).ok
    assert b"18446744073709552000" in canonical_bytes(signed)
    uint64 = parse_report(text.replace("1.8446744073709552e+19", "18446744073709551615"), "t.json")
    result = verify_report(uint64, keys)
    assert result.status == "invalid" and "integer 18446744073709551615 is beyond 2^53 - 1" in result.reason


def test_round_trip_does_not_change_the_input(keypair):
    private, keys = keypair
    report = make_report()
    before = copy.deepcopy(report)
    signed = sign_report(report, private)
    assert report == before and "signature" not in report
    assert verify_report(signed, keys).status == "valid"
    # through a file and back, pretty-printed, then compact: still valid
    again = json.loads(json.dumps(json.loads(json.dumps(signed, indent=4)), separators=(",", ":")))
    assert verify_report(again, keys).ok
    # re-signing replaces the signature rather than signing the old one
    resigned = sign_report(signed, private)
    assert verify_report(resigned, keys).ok


def _tamper_number(r):
    r["facility_energy_wh"] = r["facility_energy_wh"] - 1.0


def _tamper_nested(r):
    r["monthly"][3]["pue"] = 1.19


def _tamper_add(r):
    r["note"] = "edited"


def _tamper_remove(r):
    del r["wue"]


def _tamper_bool(r):
    r["annual"] = False


def _tamper_float_repr(r):
    r["pue"] = r["pue"] + 1e-15  # a difference only in the last bits


def _tamper_key_id(r):
    r["signature"]["key_id"] = "0" * 16


@pytest.mark.parametrize(
    "tamper", [_tamper_number, _tamper_nested, _tamper_add, _tamper_remove, _tamper_bool, _tamper_float_repr]
)
def test_any_change_breaks_the_signature(keypair, tamper):
    private, keys = keypair
    signed = sign_report(make_report(), private)
    tamper(signed)
    result = verify_report(signed, keys)
    assert result.status == "invalid"
    assert "bad signature" in result.reason


def test_reordering_keys_still_verifies(keypair):
    private, keys = keypair
    signed = sign_report(make_report(), private)
    reordered = dict(reversed(list(signed.items())))
    reordered["monthly"] = [dict(reversed(list(m.items()))) for m in reordered["monthly"]]
    assert list(reordered) != list(signed)
    assert verify_report(reordered, keys).ok


def test_unsigned_other_key_and_malformed(keypair):
    private, keys = keypair
    assert verify_report(make_report(), keys).status == "unsigned"
    other = sign_report(make_report(), Ed25519PrivateKey.generate())
    res = verify_report(other, keys)
    assert res.status == "unknown key" and res.key_id == other["signature"]["key_id"]
    signed = sign_report(make_report(), private)
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        s = copy.deepcopy(signed)
        s["signature"]["value"] = bad
        assert verify_report(s, keys).status == "invalid"
        assert "malformed signature" in verify_report(s, keys).reason
    s = copy.deepcopy(signed)
    s["signature"]["alg"] = "rsa"
    assert "unsupported signature algorithm" in verify_report(s, keys).reason
    s = copy.deepcopy(signed)
    _tamper_key_id(s)
    assert verify_report(s, keys).status == "unknown key"


def _signed_the_old_way(report, private):
    """A report as puewatch signed it before RFC 8785: Python's json bytes, no `canonicalization`."""
    value = private.sign(legacy_canonical_bytes_pre_rfc8785(report))
    return {**report, "signature": {"alg": "ed25519", "key_id": key_id(private.public_key()),
                                    "value": base64.b64encode(value).decode("ascii")}}


def test_a_pre_rfc8785_signature_is_named_and_refused_with_the_way_out(keypair):
    private, keys = keypair
    old = _signed_the_old_way(make_report(), private)
    assert legacy_canonical_bytes_pre_rfc8785(old) != canonical_bytes(old)  # 1270000.0 vs 1270000
    result = verify_report(old, keys)
    assert result.status == "invalid"
    assert "signed with puewatch's pre-RFC 8785 canonical form" in result.reason
    assert "puewatch sign REPORT --key KEY.key" in result.reason
    # tampered after the old signing: a bad signature, and it says the old form did not match either
    old["pue"] = 1.2
    result = verify_report(old, keys)
    assert result.status == "invalid" and result.reason.startswith("bad signature")
    assert "pre-RFC 8785 canonical form either" in result.reason
    # re-signing gives a valid RFC 8785 signature
    assert verify_report(sign_report(old, private), keys).ok


def test_an_unknown_canonicalization_is_refused(keypair):
    private, keys = keypair
    signed = sign_report(make_report(), private)
    signed["signature"]["canonicalization"] = "python-json"
    result = verify_report(signed, keys)
    assert result.status == "invalid" and "unsupported canonicalization 'python-json'" in result.reason


# ---- the commands -----------------------------------------------------------------------------


def test_keys_new_files_modes_and_key_id(tmp_path):
    out = run_cli("keys", "new", "--out", tmp_path / "keys", "--name", "site-a")
    assert out.returncode == 0, out.stderr
    key_path, pub_path = tmp_path / "keys" / "site-a.key", tmp_path / "keys" / "site-a.pub"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pub_path).st_mode) == 0o644
    assert key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert pub_path.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    private, public = load_private_key(key_path), load_public_key(pub_path)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert out.stdout.strip() == hashlib.sha256(raw).hexdigest()[:16] == key_id(private.public_key())
    again = run_cli("keys", "new", "--out", tmp_path / "keys", "--name", "site-a")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert load_public_key(pub_path) == public  # untouched
    bad = run_cli("keys", "new", "--out", tmp_path / "keys", "--name", "../evil")
    assert bad.returncode == 2 and "--name" in bad.stderr


def test_sign_and_verify_commands(tmp_path):
    keys = tmp_path / "keys"
    assert run_cli("keys", "new", "--out", keys, "--name", "alpha").returncode == 0
    assert run_cli("keys", "new", "--out", keys, "--name", "beta").returncode == 0
    report = write_json(tmp_path / "report.json", make_report())
    signed = tmp_path / "signed.json"
    out = run_cli("sign", report, "--key", keys / "alpha.key", "-o", signed)
    assert out.returncode == 0, out.stderr
    ok = run_cli("verify", signed, "--pubkey", keys / "alpha.pub")
    assert ok.returncode == 0 and ok.stdout.startswith(f"OK: {signed}: site alpha"), ok.stderr

    unsigned = run_cli("verify", report, "--pubkey", keys / "alpha.pub")
    assert unsigned.returncode == 1 and "no signature" in unsigned.stderr
    other = run_cli("verify", signed, "--pubkey", keys / "beta.pub")
    assert other.returncode == 1 and "signed with another key" in other.stderr

    doc = json.loads(signed.read_text())
    doc["monthly"][0]["pue"] = 1.01
    tampered = write_json(tmp_path / "tampered.json", doc)
    bad = run_cli("verify", tampered, "--pubkey", keys / "alpha.pub")
    assert bad.returncode == 1 and "bad signature" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

    # to standard output; the same report signed twice gives the same signature (Ed25519 is deterministic)
    stdout = run_cli("sign", report, "--key", keys / "alpha.key")
    assert stdout.returncode == 0
    assert json.loads(stdout.stdout)["signature"] == json.loads(signed.read_text())["signature"]

    # signed before RFC 8785: exit 1, one line saying what it is and how to re-sign
    old = _signed_the_old_way(make_report(), load_private_key(keys / "alpha.key"))
    old_path = write_json(tmp_path / "old.json", old)
    out = run_cli("verify", old_path, "--pubkey", keys / "alpha.pub")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "pre-RFC 8785 canonical form" in out.stderr and "puewatch sign" in out.stderr
    resigned = tmp_path / "resigned.json"
    assert run_cli("sign", old_path, "--key", keys / "alpha.key", "-o", resigned).returncode == 0
    assert run_cli("verify", resigned, "--pubkey", keys / "alpha.pub").returncode == 0

    # a value RFC 8785 cannot represent: exit 2, one line naming it
    big = make_report()
    big["meters"][0]["resets"] = 2**53 + 1
    bad_value = run_cli("sign", write_json(tmp_path / "big.json", big), "--key", keys / "alpha.key")
    assert bad_value.returncode == 2 and len(bad_value.stderr.strip().splitlines()) == 1
    assert "meters[0].resets: integer 9007199254740993 is beyond 2^53 - 1" in bad_value.stderr

    notakey = run_cli("verify", signed, "--pubkey", keys / "alpha.key")
    assert notakey.returncode == 2 and "not a PEM public key" in notakey.stderr
    nokey = run_cli("sign", report, "--key", keys / "missing.key")
    assert nokey.returncode == 2 and "private key file not found" in nokey.stderr


def test_signature_status_without_keys(keypair):
    """Without public keys a well-formed signature is "unverified"; a malformed one is "invalid"
    (no key could make it valid), and a document without one is "unsigned", named as what it is."""
    private, public = keypair
    signed = sign_report(make_report(), private)
    status = signature_status(signed, None)
    assert (status.status, status.key_id) == ("unverified", signed["signature"]["key_id"])
    assert not status.ok and "--pubkeys" in status.reason
    assert signature_status(signed, public).status == "valid"
    bad = copy.deepcopy(signed)
    bad["signature"]["key_id"] = "XYZ"
    assert signature_status(bad, None).status == "invalid"
    bad = copy.deepcopy(signed)
    bad["signature"]["alg"] = "rsa"
    assert "unsupported signature algorithm" in signature_status(bad, None).reason
    assert signature_status({**signed, "signature": "abc"}, None).status == "invalid"
    unsigned = signature_status(make_report(), None, "statement")
    assert (unsigned.status, unsigned.reason) == ("unsigned", "the statement has no signature")


# ---- found by the signature audit (stop 45) -------------------------------------------------------


def test_only_a_double_s_digits_as_ecmascript_writes_them_are_that_double(keypair):
    """From 1e21 on ECMAScript writes a double with an exponent, so there only the exact value's digits are a
    double's: 12345678901234566000000000 (Python's repr padded) verified here while the JavaScript verifier
    refused it. A number past the largest double (1e400, an integer of 401 digits) is refused when read, named
    as the file writes it (it was called "inf", or printed whole with advice to write it as a float)."""
    from puewatch.city.reportfile import ReportError

    private, keys = keypair
    double = 1.2345678901234566e25
    signed = sign_report(make_report(facility_energy_wh=double), private)
    text = json.dumps(signed)
    exact = parse_report(text.replace(repr(double), str(int(double))), "t.json")
    assert exact["facility_energy_wh"] == double and verify_report(exact, keys).ok
    padded = parse_report(text.replace(repr(double), "12345678901234566000000000"), "t.json")
    result = verify_report(padded, keys)
    assert result.status == "invalid" and "integer 12345678901234566000000000 is beyond 2^53 - 1" in result.reason
    assert "no double's digits" in result.reason
    for number, shown, kind in (("1e400", "1e400", "number"),
                                ("-1" + "0" * 400, "-1000000000000000000…000000 (402 characters)", "integer")):
        says = f"{kind} {shown} is beyond the largest double"
        extra = parse_report(text.replace('"site": "alpha"', f'"site": "alpha", "x": {number}', 1), "t.json")
        result = verify_report(extra, keys)
        assert result.status == "invalid" and f"x: {says}" in result.reason and "inf" not in result.reason
        with pytest.raises(ReportError) as exc:  # where a figure is read: named, as the file writes it
            parse_report(text.replace(repr(double), number), "t.json")
        assert str(exc.value).endswith(f"facility_energy_wh: must be a number or null, got {shown}")


def test_what_no_verifier_reads_alike_is_refused_in_words(keypair, tmp_path):
    """A byte order mark, a document nested deeper than any report, a lone surrogate in a key: each refused
    naming what is wrong (a BOM got Python's decoder hint, a key's surrogate a codec traceback line)."""
    from puewatch.city.reportfile import MAX_DEPTH, ReportError

    private, keys = keypair
    text = json.dumps(sign_report(make_report(), private))
    with pytest.raises(ReportError) as exc:
        parse_report("\ufeff" + text, "bom.json")
    assert "starts with a UTF-8 byte order mark (BOM)" in str(exc.value)
    deep = {**json.loads(text), "x": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}
    with pytest.raises(ReportError) as exc:
        parse_report(json.dumps(deep), "deep.json")
    assert f"nested deeper than {MAX_DEPTH} levels" in str(exc.value) and "report: x[0][0]" in str(exc.value)
    shallow = {**json.loads(text), "x": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))}
    assert parse_report(json.dumps(shallow), "ok.json")["x"]
    report = make_report()
    report["meters"][0]["x\udc00"] = 1
    with pytest.raises(CanonicalizationError) as exc:
        sign_report(report, private)
    assert "meters[0]: a key: a string with a lone surrogate is not valid Unicode" in str(exc.value)


def test_a_signature_missing_its_canonicalization_or_spelt_two_ways_is_malformed(keypair):
    """Its canonicalization taken out, an RFC 8785 signature was called a changed document; it is said to be
    missing, and that the key signed the document's RFC 8785 form. A value whose last character's unused bits are
    set decodes to the same signature: refused, as strict decoders (Rust's, Go's) refuse it."""
    private, keys = keypair
    signed = sign_report(make_report(), private)
    s = copy.deepcopy(signed)
    del s["signature"]["canonicalization"]
    result = verify_report(s, keys)
    assert result.status == "invalid" and "it has no \"canonicalization\"" in result.reason
    assert "did sign the report's RFC 8785 form" in result.reason
    s["signature"]["canonicalization"] = None
    assert "canonicalization is null" in verify_report(s, keys).reason
    s = copy.deepcopy(signed)
    value = s["signature"]["value"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    s["signature"]["value"] = value[:-3] + alphabet[alphabet.index(value[-3]) ^ 1] + "=="
    assert base64.b64decode(s["signature"]["value"]) == base64.b64decode(value)
    result = verify_report(s, keys)
    assert result.status == "invalid" and "not canonical base64" in result.reason


def test_verify_calls_a_document_no_signature_can_cover_bad_input(tmp_path):
    """An integer no double holds: `sign` exited 2, `verify` 1 as a bad signature; both 2 now, naming it."""
    keys = tmp_path / "keys"
    assert run_cli("keys", "new", "--out", keys, "--name", "alpha").returncode == 0
    signed = sign_report(make_report(), load_private_key(keys / "alpha.key"))
    text = json.dumps(signed).replace('"resets": 0', '"resets": 9007199254740993', 1)
    assert "9007199254740993" in text
    out = run_cli("verify", write_json(tmp_path / "big.json", json.loads(text)), "--pubkey", keys / "alpha.pub")
    assert out.returncode == 2 and "meters[0].resets: integer 9007199254740993" in out.stderr, out.stderr
