"""The agent's spool: every point is on disk before it is sent, until a 2xx.

A `puewatch.diskqueue.DiskQueue` of line-protocol batches (layout, crash safety, bound and
recovery are described there). Each sampling tick appends its lines to the open record with
one write(2), so a `kill -9` loses nothing already sampled; the shipper seals the open record
every flush interval, or sooner once it holds `segment_max_bytes`, and sends the sealed
records oldest first, one per HTTP request. Batches the collector refuses go to
`spool_dir/rejected/` as plain line protocol.
"""

from __future__ import annotations

import threading
from pathlib import Path

from puewatch.diskqueue import DiskQueue, Record

__all__ = ["Segment", "Spool"]

Segment = Record  # one sealed batch


class Spool(DiskQueue):
    def __init__(self, directory: str | Path, max_bytes: int, segment_max_bytes: int, rejected_max_bytes: int) -> None:
        super().__init__(directory, max_bytes, rejected_max_bytes, rejected_suffix=".lp")
        self.segment_max_bytes = segment_max_bytes
        self.seal_wanted = threading.Event()  # the open batch is full: the shipper seals it now

    def append(self, lines: list[str]) -> int:
        """Append one tick's lines to the open batch; returns how many were stored."""
        if not lines:
            return 0
        stored = self.extend(("\n".join(lines) + "\n").encode(), len(lines))
        if self.open_bytes >= self.segment_max_bytes:
            self.seal_wanted.set()
        return stored

    def seal(self) -> Record | None:
        self.seal_wanted.clear()
        return super().seal()

    @property
    def lost_points(self) -> int:
        """Points that will never reach the collector: dropped, and refused by it (4xx)."""
        return self.dropped_points + self.rejected_points
