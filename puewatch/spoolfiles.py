"""Durable files for on-disk spools (the agent's and the collector's StoreWriter).

Both spools keep batches as sequence-numbered files that must survive a crash or
a power cut once they are acknowledged: a file is written, fsync'd, renamed into
place (atomic) and its directory fsync'd. Batches set aside as rejected are kept
for the operator within their own byte budget, newest kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_dir", "prune_oldest", "write_durable"]


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


def prune_oldest(directory: Path, pattern: str, max_bytes: int, key: Callable[[Path], object]) -> int:
    """Delete the oldest files (by `key`) matching `pattern` until the rest fit in max_bytes; returns how many."""
    files = sorted(directory.glob(pattern), key=key)
    sizes = {}
    for f in files:
        try:
            sizes[f] = f.stat().st_size
        except FileNotFoundError:
            pass
    total = sum(sizes.values())
    removed = 0
    for f in files:
        if total <= max_bytes:
            break
        total -= sizes.get(f, 0)
        f.unlink(missing_ok=True)
        removed += 1
    return removed
