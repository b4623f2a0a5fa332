"""Signatures another language can check and make: tests/js/signature.mjs, written from the schema
alone (RFC 8785 by the `canonicalize` npm package, Ed25519 by Node's crypto), against puewatch.

Node and npm are needed: without them these tests fail (see tests/js_signature.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from city_support import make_report, run_cli, signature_vector, write_json
from js_signature import js, node_ready

from puewatch.city.reportfile import load_report
from puewatch.signing import canonical_bytes, key_id, load_private_key, load_public_key, sign_report


@pytest.fixture(scope="module")
def node() -> str:
    return node_ready()


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    out = run_cli("keys", "new", "--out", d, "--name", "site")
    assert out.returncode == 0, out.stderr
    return d


def awkward_report() -> dict:
    """A report whose numbers and keys are where JSON writers differ."""
    report = make_report("Zürich-Ost 北京", completeness=1.0)  # 1.0 and the energies: whole floats
    # 2^64 (a 64-bit register's modulus in Wh) and 1.2345678901234567e20: whole doubles beyond 2^53 that
    # JavaScript and RFC 8785 write in their shortest digits, 18446744073709552000, not the exact value
    report["source"]["numbers"] = [0.1, 1e-7, 1e21, 1.5e300, 5e-324, -0.0, 2.0**53, 9007199254740991, 123456789.125,
                                   2.0**64, 1.2345678901234567e20]
    # RFC 8785 sorts keys by UTF-16 code units: U+1F600 (D83D DE00) before U+E000, unlike code points
    report["source"]["keys"] = {"\ue000": 1, "\U0001f600": 2, "a": 3, "B": 4}
    report["source"]["text"] = 'tab\t quote" back\\ nul\x00 del\x7f line-sep\u2028'
    return report


def test_javascript_rebuilds_the_signed_bytes(node, tmp_path):
    path = write_json(tmp_path / "r.json", awkward_report())
    out = js(node, "canonical", path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.encode("utf-8") == canonical_bytes(load_report(path))


def test_the_javascript_verifier_accepts_a_puewatch_signed_report(node, keys, tmp_path):
    report = write_json(tmp_path / "r.json", awkward_report())
    signed = tmp_path / "signed.json"
    out = run_cli("sign", report, "--key", keys / "site.key", "-o", signed)
    assert out.returncode == 0, out.stderr
    out = js(node, "verify", signed, keys / "site.pub")
    assert out.returncode == 0 and out.stdout.strip() == f"OK {key_id(load_public_key(keys / 'site.pub'))}", out.stdout


@pytest.mark.parametrize("pretty", [False, True], ids=["compact", "pretty"])
def test_a_report_rewritten_by_javascript_still_verifies_in_puewatch(node, keys, tmp_path, pretty):
    signed = write_json(tmp_path / "signed.json", sign_report(awkward_report(), keys / "site.key"))
    assert '"completeness": 1.0' in signed.read_text()
    out = js(node, "rewrite", signed, *(["--pretty"] if pretty else []))
    assert out.returncode == 0, out.stderr
    assert '"completeness":1,' in out.stdout.replace(" ", "")  # JavaScript wrote 1.0 as 1
    assert "18446744073709552000," in out.stdout and "123456789012345670000" in out.stdout
    rewritten = tmp_path / "rewritten.json"
    rewritten.write_text(out.stdout, encoding="utf-8")
    ok = run_cli("verify", rewritten, "--pubkey", keys / "site.pub")
    assert ok.returncode == 0 and ok.stdout.startswith(f"OK: {rewritten}: site Zürich-Ost 北京"), ok.stderr


def test_a_report_signed_in_javascript_verifies_in_puewatch(node, keys, tmp_path):
    report = write_json(tmp_path / "r.json", awkward_report())
    out = js(node, "sign", report, keys / "site.key")  # the PEM PKCS#8 file `puewatch keys new` wrote
    assert out.returncode == 0, out.stderr
    signed = tmp_path / "signed-in-js.json"
    signed.write_text(out.stdout, encoding="utf-8")
    ok = run_cli("verify", signed, "--pubkey", keys / "site.pub")
    assert ok.returncode == 0, ok.stderr
    # Ed25519 is deterministic: the same signature as puewatch's own
    ours = sign_report(json.loads(report.read_text()), load_private_key(keys / "site.key"))
    assert json.loads(out.stdout)["signature"] == ours["signature"]


def _change_one_number(path: Path) -> Path:
    doc = json.loads(path.read_text(encoding="utf-8"))
    # A month and the total with it: a tamper the report's own sums cannot see (validate_report), the signature can.
    doc["monthly"][3]["facility_energy_wh"] += 1.0
    doc["facility_energy_wh"] += 1.0
    return write_json(path.with_name("tampered-" + path.name), doc)


def test_a_changed_number_fails_both_ways(node, keys, tmp_path):
    by_puewatch = write_json(tmp_path / "py.json", sign_report(awkward_report(), keys / "site.key"))
    out = js(node, "verify", _change_one_number(by_puewatch), keys / "site.pub")
    assert out.returncode == 1 and "Ed25519 signature does not match" in out.stdout, out.stdout

    report = write_json(tmp_path / "r.json", awkward_report())
    by_js = tmp_path / "js.json"
    by_js.write_text(js(node, "sign", report, keys / "site.key").stdout, encoding="utf-8")
    assert js(node, "verify", by_js, keys / "site.pub").returncode == 0
    bad = run_cli("verify", _change_one_number(by_js), "--pubkey", keys / "site.pub")
    assert bad.returncode == 1 and "bad signature: the report is not what key" in bad.stderr, bad.stderr


def test_the_javascript_verifier_accepts_the_documented_vector(node, tmp_path):
    v = signature_vector()
    (tmp_path / "vector.json").write_text(v["report_json"], encoding="utf-8")
    (tmp_path / "vector.pub").write_text(v["public_pem"])
    out = js(node, "verify", tmp_path / "vector.json", tmp_path / "vector.pub")
    assert out.returncode == 0 and out.stdout.strip() == f"OK {v['key_id']}", out.stdout
    assert js(node, "canonical", tmp_path / "vector.json").stdout.encode("utf-8") == v["signed_bytes"]


def _flip_low_bit(char: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return alphabet[alphabet.index(char) ^ 1]


def test_the_javascript_verifier_refuses_what_puewatch_refuses(node, keys, tmp_path):
    """Found by the signing audit: the reference JavaScript verifier (JSON.parse, Buffer.from) said OK to a signed
    report that names two sites (a duplicate key: which one is meant depends on the reader), to a signature in
    URL-safe or unpadded base64, and to an integer past 2^53 - 1 edited into it; puewatch refused each. Both
    refuse them now, and both still accept the file as signed."""
    signed = tmp_path / "signed.json"
    out = run_cli("sign", write_json(tmp_path / "r.json", make_report("site-a", completeness=1.0)), "--key",
                  keys / "site.key", "-o", signed)
    assert out.returncode == 0, out.stderr
    text = signed.read_text(encoding="utf-8")
    value = json.loads(text)["signature"]["value"]
    cases = {
        "two sites": text.replace('"site": "site-a"', '"site": "evil", "site": "site-a"', 1),
        "url-safe": text.replace(value, value.replace("+", "-").replace("/", "_")) if ("+" in value or "/" in value)
        else text.replace(value, value.rstrip("=")),
        "unpadded": text.replace(value, value.rstrip("=")),
        "big integer": text.replace('"site": "site-a"', '"site": "site-a", "x": 9007199254740993', 1),
        # Found by the signature audit (stop 45): accepted by puewatch, refused by this verifier, and the other way.
        "padded digits past 1e21": text.replace('"site": "site-a"', '"site": "site-a", "x": 12345678901234566000000000',
                                                1),
        "non-canonical base64": text.replace(value, value[:-3] + _flip_low_bit(value[-3]) + "=="),
    }
    assert js(node, "verify", signed, keys / "site.pub").returncode == 0
    assert run_cli("verify", signed, "--pubkey", keys / "site.pub").returncode == 0
    for name, bad in cases.items():
        assert bad != text, name
        path = tmp_path / f"{name}.json"
        path.write_text(bad, encoding="utf-8")
        by_js = js(node, "verify", path, keys / "site.pub")
        assert by_js.returncode == 1 and by_js.stdout.startswith("BAD: "), (name, by_js.stdout)
        assert run_cli("verify", path, "--pubkey", keys / "site.pub").returncode != 0, name


def test_a_public_key_file_holds_one_key_and_a_readable_private_key_is_said(keys, tmp_path):
    """Found by the signing audit: a .pub of two keys was read as its first (the other site's reports then
    'signed by an unknown key'), junk around the PEM block was taken; a private key any user could read was
    used without a word."""
    from puewatch.signing import KeyFileError

    pub = (keys / "site.pub").read_text()
    other = run_cli("keys", "new", "--out", tmp_path, "--name", "other")
    assert other.returncode == 0, other.stderr
    for name, text in (("two", pub + (tmp_path / "other.pub").read_text()), ("junk", "junk\n" + pub)):
        path = tmp_path / f"{name}.pub"
        path.write_text(text)
        with pytest.raises(KeyFileError, match="holds one PEM public key and nothing else"):
            load_public_key(path)
    loose = tmp_path / "loose.key"
    loose.write_bytes((keys / "site.key").read_bytes())
    loose.chmod(0o644)
    out = run_cli("sign", write_json(tmp_path / "r.json", make_report("site-a", completeness=1.0)), "--key", loose,
                  "-o", tmp_path / "s.json")
    assert out.returncode == 0 and "the private key is readable by group or others (mode 0644)" in out.stderr
