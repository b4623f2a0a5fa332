"""The on-disk spool: every point is on disk before it is sent, until a 2xx.

Layout of the spool directory:

    open-<seq>.lp     the segment being filled; each sampling tick appends its lines
                      with one write(), so a `kill -9` loses nothing already sampled
    seg-<seq>.lp      sealed segments (fsync'd, then atomically renamed), sent in seq order
    rejected/         segments the collector refused with a 4xx (kept for the operator)

A segment is one HTTP batch; its bytes are never rewritten, so a batch re-sent
after a crash or a timeout is byte-identical (same timestamps, same tags) and
InfluxDB stores it once. At start-up, left-over open segments are cut back to
their last complete line and sealed.

The spool is bounded in bytes: when it is full the oldest sealed segments are
dropped first (never the one being sent), and every dropped point is counted.
A full disk (ENOSPC) is handled the same way; if nothing can be dropped, the
new lines are dropped and counted.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from puewatch.spoolfiles import fsync_dir as _fsync_dir
from puewatch.spoolfiles import prune_oldest

log = logging.getLogger("puewatch.agent.spool")

_OPEN = "open-"
_SEALED = "seg-"
_SUFFIX = ".lp"


@dataclass
class Segment:
    seq: int
    path: Path
    size: int
    points: int


def _name(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:016d}{_SUFFIX}"


def _seq(path: Path) -> int:
    return int(path.name.split("-", 1)[1][: -len(_SUFFIX)])


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int, segment_max_bytes: int, rejected_max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_max_bytes = segment_max_bytes
        self.rejected_max_bytes = rejected_max_bytes
        self.rejected_dir = self.dir / "rejected"
        self._lock = threading.RLock()
        self._sealed: deque[Segment] = deque()
        self._sealed_bytes = 0  # sum of the sealed segments' sizes: append() checks it every tick
        self._in_flight: Segment | None = None
        self._fd: int | None = None
        self._open_seq = 0
        self._open_size = 0
        self._open_points = 0
        self._sealing_bytes = 0
        self._next_seq = 1
        self.dropped_points = 0
        self.rejected_points = 0
        self._full_logged = False
        self.seal_wanted = threading.Event()

    # -- start-up ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and recover what an earlier run left behind."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.rejected_dir.mkdir(exist_ok=True)
        except OSError as exc:
            from puewatch.errors import UserError

            raise UserError(f"spool directory {self.dir}: {exc.strerror}") from None
        recovered = 0
        for path in sorted(self.dir.glob(f"{_OPEN}*{_SUFFIX}"), key=_seq):
            recovered += self._recover_open(path)
        sealed = sorted(self.dir.glob(f"{_SEALED}*{_SUFFIX}"), key=_seq)
        for path in sealed:
            data = path.read_bytes()
            self._sealed.append(Segment(_seq(path), path, len(data), data.count(b"\n")))
            self._sealed_bytes += len(data)
        if self._sealed:
            self._next_seq = self._sealed[-1].seq + 1
        _fsync_dir(self.dir)
        if self._sealed:
            log.info(
                "spool %s: %d segment(s), %d point(s), %d bytes waiting from an earlier run%s",
                self.dir,
                len(self._sealed),
                sum(s.points for s in self._sealed),
                self.bytes,
                f" ({recovered} recovered from open segments)" if recovered else "",
            )

    def _recover_open(self, path: Path) -> int:
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1  # a write cut short leaves a partial last line: drop it
        if cut == 0:
            path.unlink()
            return 0
        if cut != len(data):
            log.warning("spool: %s ended in a partial line (%d bytes), cut back", path.name, len(data) - cut)
            with open(path, "r+b") as f:
                f.truncate(cut)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path, self.dir / _name(_SEALED, _seq(path)))
        return 1

    # -- the sampling side ----------------------------------------------------------------------

    def append(self, lines: list[str]) -> int:
        """Append lines (one tick's points) to the open segment; returns how many were stored."""
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode()
        n = len(lines)
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                self._make_room(len(data))
                if self.bytes + len(data) > self.max_bytes:
                    self._drop_new(n, f"spool limit of {self.max_bytes} bytes reached")
                    return 0
            if not self._write(data):
                # The disk is full: free space by dropping the oldest segments, then try once more.
                if not (self._evict_one() and self._write(data)):
                    self._drop_new(n, "spool disk full")
                    return 0
            self._open_points += n
            self._full_logged = False
            if self._open_size >= self.segment_max_bytes:
                self.seal_wanted.set()
        return n

    def _write(self, data: bytes) -> bool:
        try:
            if self._fd is None:
                self._open_seq = self._next_seq
                self._next_seq += 1
                self._fd = os.open(self.dir / _name(_OPEN, self._open_seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                self._open_size = 0
                self._open_points = 0
            written = os.write(self._fd, data)
            if written == len(data):
                self._open_size += written
                return True
            # A short write: the disk filled up mid-way. Cut the partial line off.
            os.ftruncate(self._fd, self._open_size)
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                log.error("spool: cannot write %s: %s", self.dir, exc.strerror)
            if self._fd is not None:
                try:
                    os.ftruncate(self._fd, self._open_size)
                except OSError:
                    pass
            return False

    def _drop_new(self, n: int, why: str) -> None:
        self.dropped_points += n
        if not self._full_logged:
            log.error("%s: dropping new points (%d so far); is the collector away for long?", why, self.dropped_points)
            self._full_logged = True

    def _make_room(self, need: int) -> None:
        while self.bytes + need > self.max_bytes and self._evict_one():
            pass

    def _evict_one(self) -> bool:
        """Drop the oldest sealed segment that is not being sent. Call with the lock held."""
        for seg in self._sealed:
            if seg is self._in_flight:
                continue
            self._sealed.remove(seg)
            self._sealed_bytes -= seg.size
            try:
                seg.path.unlink()
            except FileNotFoundError:
                pass
            self.dropped_points += seg.points
            log.warning(
                "spool full: dropped the oldest batch %s (%d points, %d bytes); %d points dropped so far",
                seg.path.name,
                seg.points,
                seg.size,
                self.dropped_points,
            )
            return True
        return False

    # -- the shipping side ---------------------------------------------------------------------

    def seal(self) -> Segment | None:
        """Close the open segment: fsync, then rename it to seg-<seq>.lp (atomic), then fsync the directory."""
        self.seal_wanted.clear()
        with self._lock:
            fd, seq, size, points = self._fd, self._open_seq, self._open_size, self._open_points
            if fd is None or size == 0:
                return None
            self._fd = None
            self._open_size = 0
            self._open_points = 0
            self._sealing_bytes = size
        # Outside the lock: sampling goes on into the next open segment meanwhile.
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        src = self.dir / _name(_OPEN, seq)
        dst = self.dir / _name(_SEALED, seq)
        os.rename(src, dst)
        _fsync_dir(self.dir)
        seg = Segment(seq, dst, size, points)
        with self._lock:
            self._sealing_bytes = 0
            self._sealed.append(seg)
            self._sealed_bytes += size
        return seg

    def oldest(self) -> Segment | None:
        """The next segment to send (marked in flight so it is never evicted mid-send)."""
        with self._lock:
            self._in_flight = self._sealed[0] if self._sealed else None
            return self._in_flight

    def read(self, seg: Segment) -> bytes:
        return seg.path.read_bytes()

    def done(self, seg: Segment) -> None:
        """The collector acknowledged the segment."""
        with self._lock:
            if seg in self._sealed:
                self._sealed.remove(seg)
                self._sealed_bytes -= seg.size
            self._in_flight = None
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass

    def reject(self, seg: Segment) -> None:
        """The collector refused the segment (4xx): move it aside and count its points as dropped."""
        with self._lock:
            if seg in self._sealed:
                self._sealed.remove(seg)
                self._sealed_bytes -= seg.size
            self._in_flight = None
            self.rejected_points += seg.points
            self.dropped_points += seg.points
        try:
            os.rename(seg.path, self.rejected_dir / seg.path.name)
        except OSError:
            seg.path.unlink(missing_ok=True)
        # Keep the newest rejected batches for the operator, within their own byte budget.
        prune_oldest(self.rejected_dir, f"*{_SUFFIX}", self.rejected_max_bytes, _seq)

    def release(self) -> None:
        with self._lock:
            self._in_flight = None

    # -- state ------------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._sealed_bytes + self._open_size + self._sealing_bytes

    @property
    def segments(self) -> int:
        with self._lock:
            return len(self._sealed)

    @property
    def pending_points(self) -> int:
        with self._lock:
            return sum(s.points for s in self._sealed) + self._open_points

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

