"""`puewatch token add`: a writer's line in the collector's token file, with a fresh random token.

The token is written to two files, both mode 600, and printed nowhere: the collector's token
file (appended, `name token [scope]`) and the writer's own copy (the token alone, the
agent's `[output] token_file` or Telegraf's token), which the operator moves to the node.
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
from pathlib import Path

from puewatch.collector.ingest import _NAME_RE, _parse_tokens
from puewatch.collector.scopes import AGENT, FEEDER, Scope, parse_scope
from puewatch.errors import UserError

TOKEN_BYTES = 32  # 256 random bits, 43 characters of base64url


def add_main(args: argparse.Namespace) -> int:
    name: str = args.name
    if not _NAME_RE.fullmatch(name):
        raise UserError(f"writer name {name!r} must be 1-128 of A-Z a-z 0-9 _ . : @ -")
    if args.feeder is not None and args.nodes is not None:
        raise UserError("give --feeder (a feeder's meters) or --nodes (a relay's nodes), not both")
    column = (f"{FEEDER}:{args.feeder}" if args.feeder is not None
              else f"{AGENT}:{args.nodes}" if args.nodes is not None else "")
    try:
        scope = parse_scope(column) if column else Scope(AGENT)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    path = Path(args.file)
    existing = ""
    if path.exists():
        try:
            existing = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read the token file: {getattr(exc, 'strerror', None) or exc}") from None
        written = any(line.strip() and not line.strip().startswith("#") for line in existing.splitlines())
        names = _parse_tokens(existing, str(path), {}) if written else {}
        if name in names:
            raise UserError(f"{path}: {name!r} already has a token; remove its line to replace it")
    elif not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such directory for the token file")
    own = Path(args.out) if args.out else path.parent / f"{name}.token"
    token = secrets.token_urlsafe(TOKEN_BYTES)
    # The writer's copy first, never over an existing file: a failure leaves the token file as it was.
    try:
        fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{own}: exists; give --out for the writer's copy of its token") from None
    except OSError as exc:
        raise UserError(f"{own}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    line = " ".join([name, token, column]).rstrip() + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            if mode & 0o077:  # a file of secrets: the collector warns about it too
                os.fchmod(f.fileno(), 0o600)
            f.write(("\n" if existing and not existing.endswith("\n") else "") + line)
    except OSError as exc:
        own.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the token file: {exc.strerror}") from None
    what = (f"feeder token {name!r} (meters {', '.join(scope.meters)})" if scope.kind == FEEDER
            else f"agent token {name!r} (nodes matching {', '.join(scope.nodes)})" if scope.nodes
            else f"agent token {name!r} (node {name})")
    print(f"added the {what} to {path}" + (f" (mode {mode:o} -> 600)" if mode & 0o077 else ""))
    use = ("Telegraf's `token` of [[outputs.influxdb_v2]]" if scope.kind == FEEDER
           else "the agent's `[output] token_file` (agent/CONFIG.md), mode 600")
    print(f"the writer's copy of the token: {own} (mode 600); install it on the writer as {use}, then delete this copy")
    print("restart the collector to load the new token")
    return 0


def check(conf, config_path: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the token file's content for `--check-config`: every bad line, the
    scopes (a feeder naming a meter the site does not feed through ingest), ingest meters no feeder
    names, a file others can read. A file missing or unreadable is `configcheck.file_problems`' to say.
    `conf` None (the configuration has problems of its own): the lines only, the file named in the
    raw [ingest] table."""
    from puewatch.collector.scopes import WriteScopes
    from puewatch.configcheck import credential_dir

    errors: list[str] = []
    warnings: list[str] = []
    if conf is not None:
        token_file, credential = conf.ingest.token_file, conf.ingest.token_credential
    else:
        token_file, credential = _raw_token_sources(config_path)
    sources = []
    if token_file:
        sources.append(Path(token_file))
    if credential and credential_dir():
        sources.append(Path(credential_dir()) / credential)
    scopes: dict[str, Scope] = {}
    names: dict[str, Path] = {}
    read_any = False
    for path in sources:
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            errors.append(f"{path}: the token file is not UTF-8 text")
            continue
        except OSError:
            continue
        if not text:
            continue
        read_any = True
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"{path}: the token file is readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        for name in _parse_tokens(text, str(path), scopes, errors):
            if name in names:
                errors.append(f"{path}: a writer of this file is also defined in {names[name]}")
            names.setdefault(name, path)
    if read_any and conf is not None:
        site = conf.site_model()
        ws = WriteScopes(scopes, conf.meters, site.name)
        errors += ws.meter_problems(conf.meters)  # each names its file and line (the scope's `where`)
        warnings += [f"meter {m} is fed through ingest but no token is its feeder (feeder:{m} in the token file): "
                     "its writes will be refused (403)" for m in ws.unfed_meters()]
    return errors, warnings


def _raw_token_sources(config_path: str) -> tuple[str | None, str | None]:
    """[ingest] token_file and token_credential as written, from a configuration that does not validate."""
    import tomllib

    try:
        with open(config_path, "rb") as fh:
            ingest = tomllib.load(fh).get("ingest")
    except (OSError, ValueError):
        return None, None
    if not isinstance(ingest, dict):
        return None, None
    token_file, credential = ingest.get("token_file"), ingest.get("token_credential")
    return (token_file if isinstance(token_file, str) else None, credential if isinstance(credential, str) else None)
