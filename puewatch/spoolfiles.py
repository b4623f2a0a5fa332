"""Durable files: the on-disk queue's records (`puewatch.diskqueue`), reports, pages.

A file that must survive a crash or a power cut once written is written to a
.part file, fsync'd, renamed into place (atomic) and its directory fsync'd.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_durable", "write_file"]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes, sync_dir: bool = True, mode: int = 0o600) -> None:
    """Write `data` to `path` so that after a crash the file is either complete or absent."""
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def write_file(path: str | Path, text: str) -> None:
    """Write a document (report, page) whole or not at all; a failure is a one-line UserError."""
    from puewatch.errors import UserError

    path = Path(path)
    try:
        write_durable(path, text.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror}") from None
