"""A damaged embedded store for the integrity tests: a real SQLite file with pages overwritten in the middle."""

from __future__ import annotations

import random
from pathlib import Path

from puewatch.collector.stores.embedded import EmbeddedStore


def corrupt_middle(path: Path, nbytes: int = 256 * 1024) -> None:
    size = path.stat().st_size
    assert size > 3 * nbytes
    with open(path, "r+b") as f:
        f.seek(size // 2 - nbytes // 2)
        f.write(random.Random(7).randbytes(nbytes))


def make_store(path: Path, points: int = 200_000) -> None:
    """An embedded store of a few MiB: 4 series of `points // 4` rows."""
    store = EmbeddedStore(path)
    for s in range(4):
        store.write("".join(f"m,s={s} v={k} {k * 10**9}\n" for k in range(points // 4)).encode())
    store.close()
