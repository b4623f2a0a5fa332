"""`--check-config`, one way for the agent and the collector.

Every problem in the file is reported at once (`config.check_file`). The files the
configuration names (tokens, passwords, TLS certificates and keys, CA bundles) are checked
alike in both daemons: one that does not exist is a warning saying what it is for and how to
create it, not a failure, because a systemd credential (`/run/credentials/...`) exists only
while the service runs and a sample names files not yet made; one that exists but cannot be
read, or is empty, is an error (the daemon would not start).
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puewatch import config as cfg
from puewatch.terminal import shown


@dataclass
class NamedFile:
    """A file a configuration names: its key, path, what it holds and how to create it."""

    key: str
    path: str
    what: str
    how: str
    directory: bool = False  # a directory the daemon writes in (created at start where it is missing)


def _directory_problems(source: str, f: NamedFile) -> tuple[list[str], list[str]]:
    """A directory the daemon writes in: an error where it can never be one (it, or a folder above it, is a
    file), a warning where it exists and this user cannot write in it (the service's user may); nothing is
    created."""
    p = Path(f.path)
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [f"{source}: {f.key}: {f.path}: {existing} is not a directory, so {f.what} cannot be made there"], []
    if existing == p and not os.access(p, os.W_OK | os.X_OK):
        # (One not made yet is left to the service: systemd makes a StateDirectory= as the service starts.)
        return [], [f"{source}: {f.key}: this user cannot write in {p} ({f.what}); {f.how}"]
    return [], []


def file_problems(source: str, files: list[NamedFile]) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the files a configuration names."""
    errors, warnings = [], []
    for f in files:
        if f.directory:
            e, w = _directory_problems(source, f)
            errors += e
            warnings += w
            continue
        p = Path(f.path)
        if not p.exists():
            warnings.append(f"{source}: {f.key}: {f.path} does not exist yet ({f.what}); {f.how}")
            continue
        try:
            with p.open("rb") as fh:
                head = fh.read(1 << 20)
        except OSError as exc:
            errors.append(f"{source}: {f.key}: cannot read {f.path}: {exc.strerror}")
            continue
        if not head:
            errors.append(f"{source}: {f.key}: {f.path} is empty ({f.what})")
            continue
        try:
            # Every file a configuration names is text (tokens, passwords, PEM): one that is not made the daemon
            # stop at start with a traceback while --check-config said OK (found by the input audit). The end of
            # a file read whole is checked too (a character the 1 MiB read cut in two is not an error).
            codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 1 << 20)
        except UnicodeDecodeError as exc:
            errors.append(f"{source}: {f.key}: {f.path} is not UTF-8 text ({exc.reason} at byte {exc.start}; "
                          f"{f.what})")
    return errors, warnings


def run(command: str, path: str, model: type, summary: Callable[[Any], str],
        named_files: Callable[[Any], list[NamedFile]],
        content: Callable[[Any, str], tuple[list[str], list[str]]] | None = None) -> int:
    """Check `path` against `model`, print every error and warning (stderr) and the verdict (stdout):
    exit status 0 when it is valid (warnings allowed), 2 otherwise. `content(conf, path)`: (errors,
    warnings) about what the named files hold (the collector's token file and its scopes), also
    when the configuration has problems of its own (conf None then): all of them at once."""
    conf, errors = cfg.check_file(path, model)
    warnings: list[str] = []
    if conf is not None:
        file_errors, warnings = file_problems(path, named_files(conf))
        errors += file_errors
    if content is not None:
        content_errors, content_warnings = content(conf, path)
        errors += content_errors
        warnings += content_warnings
    # A config's names (a site's, a meter's) are printed as `shown` prints them: escaped where they hold
    # characters that move or reorder a terminal's text.
    for w in warnings:
        print(f"puewatch {command}: warning: {shown(w)}", file=sys.stderr)
    for e in errors:
        print(f"puewatch {command}: error: {shown(e)}", file=sys.stderr)
    if errors:
        print(f"{shown(path)}: {len(errors)} problem(s)" + (f", {len(warnings)} warning(s)" if warnings else ""))
        return 2
    print(f"{shown(path)}: OK ({shown(summary(conf))})" + (f"; {len(warnings)} warning(s) above" if warnings else ""))
    return 0


def credential_dir() -> str | None:
    """systemd's `$CREDENTIALS_DIRECTORY`, set only for a service with `LoadCredential=`."""
    return os.environ.get("CREDENTIALS_DIRECTORY") or None
