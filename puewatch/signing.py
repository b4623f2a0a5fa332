"""Ed25519 signatures on reports, so a city can tell a site's report from an edited copy.

What is signed is the report without its `signature` member in the JSON
Canonicalization Scheme (RFC 8785, "JCS"; docs/report-schema.md): sorted keys,
no whitespace, UTF-8, and numbers as JavaScript writes them (1.0 is `1`). Any
language with a JCS library rebuilds the same bytes, so a report re-serialised
by another JSON library (pretty printing, 1.0 -> 1) keeps its signature, while
any change to a value, an added or a removed field breaks it. The signature
names its canonicalization (`"canonicalization": "RFC8785"`); reports signed
before that, over Python's own JSON formatting, are recognised and refused with
a way out (re-sign), not silently accepted.

The key id is the first 16 hex characters of the SHA-256 of the raw 32-byte
public key: short enough to read out on the phone, and a city holding many
sites' keys picks the right one by it.

`sign_report()` is the library entry point (`puewatch report --sign KEY` calls
it); `keys_new_main`, `sign_main` and `verify_main` are the CLI handlers.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from puewatch.core.site import site_key
from puewatch.errors import UserError
from puewatch.spoolfiles import write_file
from puewatch.terminal import shown

ALG = "ed25519"
CANONICALIZATION = "RFC8785"
# The largest integer every JSON reader holds exactly (an IEEE double's 53-bit significand).
MAX_SAFE_INTEGER = 2**53 - 1
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class KeyFileError(UserError):
    """A key file is missing, unreadable or not an Ed25519 key (exit status 2)."""


class SignatureInvalid(UserError):
    """Verification failed: no signature, another key, or the report changed (exit status 1)."""

    exit_code = 1


class CanonicalizationError(UserError):
    """A report holds a value RFC 8785 cannot represent (exit status 2)."""


def short_digits(digits: str) -> str:
    """A number's digits for a message: a 400-digit one is named by its first and last digits and its length."""
    return digits if len(digits) <= 40 else f"{digits[:20]}…{digits[-6:]} ({len(digits)} characters)"


class BeyondDouble(float):
    """A JSON number beyond the largest double (1e400): infinite, as Python reads it, but named as the file
    writes it (it was refused as "inf", which the file never said: found by the signature audit). Not finite,
    so no check takes it for a number; signing refuses it naming where it is."""

    text: str

    def __new__(cls, text: str) -> BeyondDouble:
        value = super().__new__(cls, text)
        value.text = short_digits(text)
        return value

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def canonical_bytes(report: dict[str, Any]) -> bytes:
    """The bytes that are signed: the report without `signature`, in RFC 8785 (JCS) form.

    Raises CanonicalizationError (a UserError naming the value) for what JCS cannot
    represent: NaN/Infinity (the schema writes an unknown value as null) and integers
    beyond 2^53 - 1 in magnitude (a JavaScript reader would round them).
    """
    body = {k: v for k, v in report.items() if k != "signature"}
    try:
        return rfc8785.dumps(body)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        where = _first_unrepresentable(body, "")
        raise CanonicalizationError(f"the report holds a value RFC 8785 cannot represent: {where or exc}") from None


def digest(document: dict[str, Any]) -> str:
    """SHA-256 (lower-case hex) of the bytes a signature covers: `canonical_bytes(document)`.

    A voucher statement names the site's signed report by it: the same bytes in any language,
    however the file was re-indented or re-serialised; the signature itself is left out (Ed25519
    is deterministic, so the key id beside the digest pins the signed file)."""
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


def _first_unrepresentable(value: Any, where: str) -> str | None:
    """Where the first value JCS refuses is, and why (for the error message), or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if abs(value) <= MAX_SAFE_INTEGER:
            return None
        digits = short_digits(str(value))
        try:
            exact = float(value) == value
        except OverflowError:
            return f"{where or 'the report'}: integer {digits} is beyond the largest double (a JSON number is an IEEE double)"
        if exact:  # an int made in Python, never one read from a file (reportfile._json_integer)
            return f"{where or 'the report'}: integer {digits} is beyond 2^53 - 1 in magnitude (as a float it can be signed)"
        return (f"{where or 'the report'}: integer {digits} is beyond 2^53 - 1 in magnitude and no double's digits "
                "(a JSON number is an IEEE double: readers in other languages would read another value)")
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        if isinstance(value, BeyondDouble):
            return f"{where or 'the report'}: number {value.text} is beyond the largest double (a JSON number is an IEEE double)"
        return f"{where or 'the report'}: {value} is not a JSON number (use null)"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where or 'the report'}: a string with a lone surrogate is not valid Unicode"
        return None
    if isinstance(value, dict):
        for k in value:
            found = _first_unrepresentable(k, f"{where}: a key" if where else "a key")
            if found:
                return found
        items: Any = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return f"{where or 'the report'}: {type(value).__name__} is not a JSON value"
    for sub_where, sub in items:
        found = _first_unrepresentable(sub, sub_where)
        if found:
            return found
    return None


def legacy_canonical_bytes_pre_rfc8785(report: dict[str, Any]) -> bytes:
    """The bytes puewatch signed before RFC 8785 (Python's json, sorted keys, no whitespace).

    Kept ONLY to recognise an old signature and tell its holder to re-sign; never to accept
    one (other languages cannot rebuild these bytes: Python writes 1.0 where JavaScript writes 1).
    """
    body = {k: v for k, v in report.items() if k != "signature"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return b""
    return text.encode("utf-8", "surrogatepass")


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex characters of SHA-256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read an unencrypted PEM PKCS#8 Ed25519 private key (as `puewatch keys new` writes). One that group or
    others may read is used, and said on standard error (anyone who can read it can sign the site's reports:
    found by the signing audit; `keys new` writes 0600)."""
    data = _read_key_file(path, "private key")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & 0o077:
        print(f"warning: {path}: the private key is readable by group or others (mode {mode & 0o777:04o}): anyone "
              "who can read it can sign the site's reports; make it 0600", file=sys.stderr)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{path}: the private key is encrypted; puewatch reads unencrypted PKCS#8 keys (mode 0600)") from None
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read a PEM SubjectPublicKeyInfo Ed25519 public key (a `.pub` file from `puewatch keys new`): one
    block and nothing else (a file of two keys was read as its first, the other dropped without a word, and
    `city --pubkeys` then called that site's reports signed by an unknown key: found by the signing audit)."""
    data = _read_key_file(path, "public key")
    blocks = data.count(b"-----BEGIN ")
    text = data.strip()
    whole = text.startswith(b"-----BEGIN PUBLIC KEY-----") and text.endswith(b"-----END PUBLIC KEY-----")
    if b"-----BEGIN PUBLIC KEY-----" in data and (blocks > 1 or not whole):
        # (A file with no public key block at all, a private key given for the public one, is `not a PEM
        # public key` below.)
        what = f"{blocks} PEM blocks" if blocks > 1 else "text before or after its PEM block"
        raise KeyFileError(f"{path}: a public key file holds one PEM public key and nothing else; it has {what}")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return key


def _public_key_files(directory: str | Path) -> list[tuple[Path, Ed25519PublicKey]]:
    """Every `*.pub` in `directory`, each read once, in name order; a bad file, or none, is an error."""
    d = Path(directory)
    if not d.is_dir():
        raise KeyFileError(f"{d}: public key directory not found")
    files = [(path, load_public_key(path)) for path in sorted(d.glob("*.pub"))]
    if not files:
        raise KeyFileError(f"{d}: no *.pub public keys in this directory")
    return files


def _by_key_id(files: list[tuple[Path, Ed25519PublicKey]]) -> dict[str, tuple[Path, Ed25519PublicKey]]:
    keys: dict[str, tuple[Path, Ed25519PublicKey]] = {}
    for path, key in files:
        keys.setdefault(key_id(key), (path, key))
    return keys


def load_public_keys(directory: str | Path) -> dict[str, tuple[Path, Ed25519PublicKey]]:
    """Every `*.pub` in `directory`, by key id. Two files holding one key are fine; a bad file is an error."""
    return _by_key_id(_public_key_files(directory))


class KeyRing(dict):
    """The public keys of a directory (`load_public_keys`), key id -> key, and which site's each is: a file
    named after a site (`SITE.pub`) is that site's key, and `verify_report` then accepts a report or a
    statement of that site only with it. Without the binding, a report saying `site: B` signed with site
    A's key was valid, and passed while B's real report failed (found by the city audit)."""

    def __init__(self, keys: dict[str, tuple[Path, Ed25519PublicKey]], files: dict[str, tuple[str, str]]) -> None:
        super().__init__({kid: key for kid, (_, key) in keys.items()})
        # The site a file names, as puewatch tells sites apart (core.site.site_key) -> (its file's name, the key id
        # it holds). By the exact name, a report of "FRA1" or "fra1 " signed with another site's key was valid,
        # while the city summed it as fra1 (found by the signature audit).
        self.site_files = files

    @classmethod
    def load(cls, directory: str | Path) -> KeyRing:
        found = _public_key_files(directory)
        # Every file names its site, also a second one holding a key already held; two names of one site must
        # hold one key (which of two would be the site's own is not for the verifier to guess).
        files: dict[str, tuple[str, str]] = {}
        for path, key in found:
            site, kid = site_key(path.stem), key_id(key)
            other = files.setdefault(site, (path.name, kid))
            if other[1] != kid:
                raise KeyFileError(f"{path} and {Path(directory) / other[0]} name one site ({site!r}: names that differ "
                                   "in letter case, spaces or Unicode form are one site) but hold different keys")
        return cls(_by_key_id(found), files)

    def own_key(self, site: str) -> tuple[str, str] | None:
        """The key file of `site`, and the key id it holds, or None where no file names the site."""
        return self.site_files.get(site_key(site))


def _read_key_file(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read {what}: {exc.strerror}") from None


def sign_report(report: dict[str, Any], private_key: Ed25519PrivateKey | str | Path) -> dict[str, Any]:
    """A copy of `report` with `signature` = {alg, key_id, value, canonicalization} over its RFC 8785 form.

    `private_key` is a key object or the path of a PEM key file. An existing
    signature is replaced (it is not part of what is signed). The input is not changed.
    """
    if not isinstance(private_key, Ed25519PrivateKey):
        private_key = load_private_key(private_key)
    value = private_key.sign(canonical_bytes(report))
    signed = {k: v for k, v in report.items() if k != "signature"}
    signed["signature"] = {
        "alg": ALG,
        "key_id": key_id(private_key.public_key()),
        "value": base64.b64encode(value).decode("ascii"),
        "canonicalization": CANONICALIZATION,
    }
    return signed


@dataclass(frozen=True)
class Verification:
    """The outcome of checking one report's signature.

    status: "valid", "invalid", "unsigned", "unknown key" (signed with a key we do not hold) or
    "unverified" (signed, and no public keys were given: see signature_status).
    """

    status: str
    key_id: str | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "valid"


def _signature_parts(report: dict[str, Any], what: str = "report") -> tuple[str, bytes, str | None] | Verification:
    """The key id, raw signature and canonicalization (None: absent, as before RFC 8785) of a well-formed signature.
    `what` names the document in the reasons: a report, a statement."""
    sig = report.get("signature")
    if sig is None:
        return Verification("unsigned", None, f"the {what} has no signature")
    if not isinstance(sig, dict):
        return Verification("invalid", None, "malformed signature: not an object")
    kid = sig.get("key_id")
    kid = kid if isinstance(kid, str) else None
    if sig.get("alg") != ALG:
        return Verification("invalid", kid, f"unsupported signature algorithm {sig.get('alg')!r} (expected {ALG!r})")
    canon = sig.get("canonicalization")
    if "canonicalization" in sig and canon is None:
        return Verification("invalid", kid, f"malformed signature: canonicalization is null (expected {CANONICALIZATION!r})")
    if canon is not None and canon != CANONICALIZATION:
        return Verification("invalid", kid, f"unsupported canonicalization {canon!r} (expected {CANONICALIZATION!r})")
    if kid is None or not re.fullmatch(r"[0-9a-f]{16}", kid):
        return Verification("invalid", kid, "malformed signature: key_id must be 16 lower-case hex characters")
    value = sig.get("value")
    try:
        raw = base64.b64decode(value if isinstance(value, str) else "", validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 64:
        return Verification("invalid", kid, "malformed signature: value must be a base64 Ed25519 signature (64 bytes)")
    if base64.b64encode(raw).decode("ascii") != value:
        # Its unused last bits set: one signature, many spellings, which strict decoders (Rust's, Go's Strict
        # encoding) refuse while lax ones accept (found by the signature audit). Every encoder writes them zero.
        return Verification("invalid", kid, "malformed signature: value is not canonical base64 (its unused last "
                                            "bits must be zero, as every encoder writes them)")
    return kid, raw, canon


def verify_report(report: dict[str, Any], public_keys: dict[str, Ed25519PublicKey], what: str = "report") -> Verification:
    """Check the document's signature against the keys we hold (key id -> public key); `what` names it in the
    reasons (a report, a statement)."""
    parts = _signature_parts(report, what)
    if isinstance(parts, Verification):
        return parts
    kid, raw, canon = parts
    key = public_keys.get(kid)
    if key is None:
        held = ", ".join(sorted(public_keys)) or "none"
        return Verification("unknown key", kid, f"signed with key id {kid}, which is not among the public keys given ({held})")
    if canon is None:
        return _diagnose_pre_rfc8785(report, key, kid, raw, what)
    try:
        key.verify(raw, canonical_bytes(report))
    except CanonicalizationError as exc:
        return Verification("invalid", kid, f"bad signature: {exc}")
    except InvalidSignature:
        return Verification(
            "invalid", kid, f"bad signature: the {what} is not what key {kid} signed (a field was changed, added or removed)"
        )
    site = report.get("site")
    own = public_keys.own_key(site) if isinstance(public_keys, KeyRing) and isinstance(site, str) else None
    if own is not None and own[1] != kid:
        return Verification("invalid", kid, f"signed with key id {kid}, but site {site!r} has its own key, {own[0]} "
                                            f"(key id {own[1]}): a document of one site signed with another's key")
    return Verification("valid", kid, f"signature valid, key id {kid}")


def signature_status(document: dict[str, Any], public_keys: dict[str, Ed25519PublicKey] | None,
                     what: str = "report") -> Verification:
    """The one rule for a document's signature where public keys may not have been given (None): with
    keys, verify_report; without, "unsigned", "invalid" where the signature is malformed (no key can
    make it valid), else "unverified", which no rule counts as valid."""
    if public_keys is not None:
        return verify_report(document, public_keys, what)
    parts = _signature_parts(document, what)
    if isinstance(parts, Verification):
        return parts
    return Verification("unverified", parts[0], "signed, but no public keys were given (--pubkeys DIR)")


def _diagnose_pre_rfc8785(report: dict[str, Any], key: Ed25519PublicKey, kid: str, raw: bytes, what: str = "report"
                          ) -> Verification:
    """A signature without `canonicalization`: say whether it is an old puewatch one (never valid now), or an
    RFC 8785 one whose `canonicalization` was taken out (it was called a changed document: found by the
    signature audit)."""
    try:
        key.verify(raw, legacy_canonical_bytes_pre_rfc8785(report))
    except InvalidSignature:
        try:
            key.verify(raw, canonical_bytes(report))
        except (InvalidSignature, CanonicalizationError):
            pass
        else:
            return Verification(
                "invalid", kid,
                f"malformed signature: it has no \"canonicalization\"; key {kid} did sign the {what}'s RFC 8785 form, "
                f"so put \"canonicalization\": \"{CANONICALIZATION}\" back in its signature",
            )
        return Verification(
            "invalid", kid,
            f"bad signature: the signature has no \"canonicalization\" (expected {CANONICALIZATION!r}), and the {what} "
            f"is not what key {kid} signed in puewatch's pre-RFC 8785 canonical form either (a field was changed, "
            "added or removed)",
        )
    return Verification(
        "invalid", kid,
        f"signed with puewatch's pre-RFC 8785 canonical form (Python's JSON formatting, no \"canonicalization\" in "
        f"the signature; key id {kid}), which other languages cannot rebuild and puewatch no longer accepts: "
        f"re-sign the {what} where its key is kept: puewatch sign {what.upper()} --key KEY.key -o SIGNED.json",
    )


# ---- CLI handlers -------------------------------------------------------------------------------


def keys_new_main(args: argparse.Namespace) -> int:
    """`puewatch keys new --out DIR [--name NAME]`."""
    name = args.name
    if not _KEY_NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (no '/'), at most 64 characters")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create directory: {exc.strerror}") from None
    key_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for p in (key_path, pub_path):
        if p.exists():
            raise UserError(f"{p}: already exists; refusing to overwrite a key (choose another --name or remove it)")
    private = Ed25519PrivateKey.generate()
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(key_path, key_pem, 0o600)
    _write_new(pub_path, pub_pem, 0o644)
    kid = key_id(private.public_key())
    print(kid)
    print(f"private key {key_path} (keep it on the site; mode 0600)", file=sys.stderr)
    print(f"public key  {pub_path} (give it to whoever verifies the reports)", file=sys.stderr)
    return 0


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never replace a key another run has just written; the mode is set at creation,
    # so the private key is never readable by others, not even for an instant.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UserError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot create: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it further; make it exactly `mode`
        os.write(fd, data)
    finally:
        os.close(fd)


def sign_main(args: argparse.Namespace) -> int:
    """`puewatch sign REPORT --key KEY [-o OUT]`."""
    from puewatch.city.reportfile import load_document

    report = load_document(args.report)  # a report or a voucher statement
    signed = sign_report(report, load_private_key(args.key))
    text = json.dumps(signed, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if args.output and args.output != "-":
        out = Path(args.output)
        write_file(out, text)
        print(shown(f"signed {args.report} (site {report['site']}) with key id {signed['signature']['key_id']} -> {out}"),
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def verify_main(args: argparse.Namespace) -> int:
    """`puewatch verify DOCUMENT --pubkey KEY.pub`: a report or a voucher statement (told apart by
    `schema`); exit 0 when valid, 1 when not, 2 on bad input."""
    from puewatch.city.reportfile import load_document
    from puewatch.city.statementfile import SCHEMA as STATEMENT

    document = load_document(args.report)
    key = load_public_key(args.pubkey)
    kid = key_id(key)
    # A document no signature can cover (a value RFC 8785 cannot represent) is bad input, exit 2, as for `sign`
    # and for a duplicate key (it exited 1 as a bad signature: found by the signature audit).
    canonical_bytes(document)
    result = verify_report(document, {kid: key}, "statement" if document.get("schema") == STATEMENT else "report")
    if result.status == "unknown key":
        raise SignatureInvalid(
            f"{args.report}: signed with key id {result.key_id}, but {args.pubkey} is key id {kid}: "
            "signed with another key"
        )
    if not result.ok:
        raise SignatureInvalid(f"{args.report}: {result.reason}")
    what = (f"voucher statement for tenant {document['tenant']}, site {document['site']}"
            if document.get("schema") == STATEMENT else f"site {document['site']}")
    print(shown(f"OK: {args.report}: {what}, {document['period_start']}..{document['period_end']}, "
                f"signature valid (key id {kid})"))
    return 0
