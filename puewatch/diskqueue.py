"""One on-disk queue of batches: ordered, bounded, crash-safe; used by the agent's spool and
the collector's StoreWriter. Standard library only: the agent on GPU nodes stays small.

A record is an opaque payload (`bytes`) and a point count; the queue never looks inside.
One file per record in the queue directory:

    <seq>-<points>.rec    a sealed record, sent (or written) in seq order
    <seq>.open            the record being filled by `extend()` (the agent's current batch)
    *.part                a record being written by `put()`; never acknowledged, removed at start
    rejected/             payloads the receiver refused, as given (`<seq>-<points><suffix>`),
                          kept for the operator within their own byte budget, newest kept

A record file is one or more pieces, each `encode_record()`: a header line (magic, payload
length, points, CRC-32) and the payload. `extend()` appends one piece with one write(2), so a
`kill -9` loses nothing it returned; at start an open record is cut back to its last whole
piece and sealed. `put()` writes a whole record to a .part file, fsyncs it, renames it into
place and fsyncs the directory: once `put()` returns, the record survives a power cut.
`seal()` does the same for the open record. Records are never rewritten, so a record sent
again after a crash or a timeout is byte-identical.

The queue is bounded in bytes on disk: to make room the oldest records are dropped first
(never the one being sent), each dropped point is counted and logged; when nothing older can
go, the new data is dropped and counted. A full disk (ENOSPC) is handled the same way; any
other write error (an unwritable directory, EIO, a file size limit) drops only the new data
(counted, logged once with its reason): dropping a queued record could not help it. A record
found damaged when it is read gives its whole pieces up to the damage; the rest is dropped and
counted, and the file kept in rejected/ as <name>.damaged.
A caller that must not lose what it already acknowledged (the collector's durable writes)
calls `put(..., evict=False)`: nothing is dropped, `QueueFull` says the bound or the disk is
full, and the caller refuses the new data instead (503). `held=True` marks a record whose
payload the caller also keeps in memory and delivers itself: `peek_seq()`/`oldest()` pass
over it until `unhold()`.

A queue directory left by the older spools (the agent's `seg-<seq>.lp`/`open-<seq>.lp`, the
collector's `batch-<seq>-<points>.lp`) is converted at `open()`, in order; any other file is
logged once and left alone.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import re
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from puewatch.errors import UserError
from puewatch.spoolfiles import fsync_dir, write_durable

__all__ = ["DiskQueue", "QueueFull", "Record", "decode_record", "encode_record"]

log = logging.getLogger("puewatch.diskqueue")

_MAGIC = b"PWQ1"
_HEADER_MAX = 64  # bytes: magic, three numbers, spaces, newline
_REC = ".rec"
_OPEN = ".open"
_PART = ".part"
_REC_NAME = re.compile(r"^(\d{16})-(\d+)\.rec$")
_OPEN_NAME = re.compile(r"^(\d{16})\.open$")
# The older spools' names (agent: seg-/open-, collector: batch-<seq>-<points>).
_LEGACY_NAME = re.compile(r"^(seg|open|batch)-(\d{16})(?:-(\d+))?\.lp$")
# A file in rejected/ that the queue wrote (now or before the upgrade): its seq, for pruning.
_REJECTED_NAME = re.compile(r"^(?:seg-|batch-)?(\d{16})(?:-\d+)*(?:\.\w+)+$")


def encode_record(payload: bytes, points: int) -> bytes:
    """The on-disk encoding of a record (or of one piece of the open record)."""
    return b"%s %d %d %08x\n" % (_MAGIC, len(payload), points, zlib.crc32(payload)) + payload


def decode_record(data: bytes) -> tuple[bytes, int, int]:
    """The inverse of `encode_record` over a file of pieces: (payload, points, good_bytes),
    the pieces joined up to the first one cut short or damaged (good_bytes < len(data))."""
    pieces, points, pos = [], 0, 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + _HEADER_MAX)
        parts = data[pos:end].split(b" ") if end > 0 else []
        try:
            magic, length, n, crc = parts
            length, n, crc = int(length), int(n), int(crc, 16)
        except ValueError:
            break
        payload = data[end + 1 : end + 1 + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        pieces.append(payload)
        points += n
        pos = end + 1 + length
    return b"".join(pieces), points, pos


# Why the oldest record goes when the disk is full (the log; see _evict_oldest).
_DISK_FULL = "is on a full disk (no space left)"


class QueueFull(Exception):
    """`put(..., evict=False)` found no room: the bound is reached or the disk is full (`disk_full`).
    Nothing was dropped or counted: the caller keeps the data or refuses it (ingest: 503)."""

    def __init__(self, message: str, disk_full: bool) -> None:
        super().__init__(message)
        self.disk_full = disk_full


@dataclass(order=True)
class Record:
    seq: int
    points: int = field(compare=False)
    size: int = field(compare=False)  # bytes on disk
    path: Path = field(compare=False)
    # The caller holds the payload in memory and delivers it itself (the collector's durable
    # writes): peek_seq()/oldest() pass over it until unhold().
    held: bool = field(default=False, compare=False)


def _rec_name(seq: int, points: int) -> str:
    return f"{seq:016d}-{points}{_REC}"


def _is_full(exc: OSError) -> bool:
    """A full disk or quota: what dropping the oldest record can help."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


class DiskQueue:
    """Records in seq order on disk; thread-safe. Counters: dropped_* (the bound, the disk,
    unreadable files) and rejected_* (set aside by the caller)."""

    def __init__(self, directory: str | Path, max_bytes: int, rejected_max_bytes: int, *, rejected_suffix: str = ".bin") -> None:
        if max_bytes <= 0:
            raise UserError(f"spool max_bytes must be positive, not {max_bytes}")
        self.dir = Path(directory)
        self.rejected_dir = self.dir / "rejected"
        self.max_bytes = max_bytes
        self.rejected_max_bytes = rejected_max_bytes
        self.rejected_suffix = rejected_suffix
        self.dropped_points = 0
        self.dropped_batches = 0
        self.rejected_points = 0
        self.rejected_batches = 0
        self.rejected_pruned_points = 0  # set aside, then deleted to keep rejected/ within its budget
        self._lock = threading.RLock()
        self._records: list[Record] = []  # sealed, sorted by seq
        self._records_bytes = 0
        self._records_points = 0
        self._in_flight: list[Record] = []  # being sent: never evicted meanwhile
        self._held = 0  # records with held=True
        self._writing_bytes = 0  # records being written by put(evict=False), outside the lock
        self._next_seq = 1
        # The open record (extend/seal), and one being sealed outside the lock.
        self._fd: int | None = None
        self._open_seq = 0
        self._open_bytes = 0
        self._open_points = 0
        self._sealing_bytes = 0
        self._sealing_points = 0
        self._drop_logged = False
        self._seal_logged = self._done_logged = False  # unwritable directory: each logged once

    # -- start-up -------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and take over what an earlier run (of this or the older code) left."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.rejected_dir.mkdir(exist_ok=True)
            names = sorted(os.listdir(self.dir))
        except OSError as exc:
            raise UserError(f"spool directory {self.dir}: {exc.strerror}") from None
        converted = recovered = 0
        for name in names:  # first turn older and unfinished files into records
            path = self.dir / name
            if name.endswith(_PART):
                log.warning("spool %s: removing %s, a record cut short before it was acknowledged", self.dir, name)
                path.unlink(missing_ok=True)
            elif m := _OPEN_NAME.match(name):
                recovered += self._seal_file(path, int(m[1]), *_recover_open(path))
            elif m := _LEGACY_NAME.match(name):
                try:
                    converted += self._convert_legacy(path, m[1], int(m[2]), m[3])
                except OSError as exc:
                    raise UserError(
                        f"spool {path}: cannot convert this batch of the older spool format: {exc.strerror}; "
                        f"free the disk or fix its permissions, or move the file out of {self.dir} to start without it"
                    ) from None
        for name in sorted(os.listdir(self.dir)):
            path = self.dir / name
            if m := _REC_NAME.match(name):
                self._insert(Record(int(m[1]), int(m[2]), path.stat().st_size, path))
            elif name != self.rejected_dir.name:
                log.warning("spool %s: ignoring unexpected file %s (not written by puewatch; move it elsewhere)", self.dir, name)
        rejected = [int(m[1]) for n in os.listdir(self.rejected_dir) if (m := _REJECTED_NAME.match(n))]
        self._next_seq = max([r.seq for r in self._records] + rejected, default=0) + 1
        fsync_dir(self.dir)
        if self._records:
            log.info(
                "spool %s: %d batch(es), %d point(s), %d bytes from an earlier run%s%s",
                self.dir, len(self._records), self._records_points, self._records_bytes,
                f"; {recovered} recovered from an open batch" if recovered else "",
                f"; {converted} converted from the older spool format" if converted else "",
            )

    def _convert_legacy(self, path: Path, kind: str, seq: int, points: str | None) -> int:
        """A file of the older spools (all line protocol): the agent's seg-/open- (points = lines,
        an open one cut back to its last whole line) or the collector's batch-<seq>-<points>."""
        data = path.read_bytes()
        if kind == "open":
            data = data[: data.rfind(b"\n") + 1]
        n = int(points) if points is not None else data.count(b"\n")
        if data:
            # Durable before the old file goes: a crash in between converts it again, identically.
            write_durable(self.dir / _rec_name(seq, n), encode_record(data, n))
        path.unlink()
        return 1 if data else 0

    def _seal_file(self, path: Path, seq: int, points: int, size: int) -> int:
        """Make an open record file (already cut back to whole pieces) a sealed one."""
        if size == 0:
            path.unlink()
            return 0
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path, self.dir / _rec_name(seq, points))
        return 1

    # -- adding ---------------------------------------------------------------------------------

    def next_seq(self) -> int:
        """A sequence number for a record that `put()` will store later (the caller's order)."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            return seq

    def put(self, payload: bytes, points: int, seq: int | None = None, *, evict: bool = True,
            held: bool = False) -> Record | None:
        """Store a whole record durably, in order by seq (default: after every other); None
        when it was dropped (counted and logged). With evict=False nothing already queued is
        dropped to make room and the new record is not dropped either: `QueueFull` is raised
        instead (the bound, or a full disk), and nothing is counted."""
        data = encode_record(payload, points)
        if not evict:
            return self._put_or_refuse(data, points, seq, held)
        with self._lock:
            seq = self.next_seq() if seq is None else seq
            if len(data) > self.max_bytes:
                self._drop_new(points, 1, f"batch {seq} of {len(data)} bytes is larger than the whole spool ({self.max_bytes} bytes)")
                return None
            while self.bytes + len(data) > self.max_bytes:
                if not self._evict_oldest(before_seq=seq, why=self._at_bound()):
                    # Everything on disk is newer (or being sent): the new batch is the oldest.
                    self._drop_new(points, 1, f"spool limit of {self.max_bytes} bytes reached, batch {seq}")
                    return None
            path = self.dir / _rec_name(seq, points)
            for attempt in (1, 2):
                try:
                    write_durable(path, data)
                    break
                except OSError as exc:
                    # A full disk: free room by dropping the oldest record, then try once more.
                    full = _is_full(exc)
                    if attempt == 2 or not full or not self._evict_oldest(seq, why=_DISK_FULL):
                        self._drop_new(points, 1, f"cannot write {path}: {exc.strerror}")
                        # A full disk: logged once, then counted, until a record is written again.
                        self._drop_logged = self._drop_logged or full
                        return None
            rec = Record(seq, points, len(data), path)
            self._insert(rec)
            self._drop_logged = False
            return rec

    def _put_or_refuse(self, data: bytes, points: int, seq: int | None, held: bool) -> Record:
        with self._lock:
            seq = self.next_seq() if seq is None else seq
            if self.bytes + len(data) > self.max_bytes:
                raise QueueFull(f"spool {self.dir} holds {self.bytes} of its {self.max_bytes} bytes", disk_full=False)
            path = self.dir / _rec_name(seq, points)
            # Reserved while the file is written outside the lock (the bound holds meanwhile).
            self._writing_bytes += len(data)
        try:
            write_durable(path, data)
        except OSError as exc:
            full = _is_full(exc)
            raise QueueFull(f"cannot write {path}: {exc.strerror}", disk_full=full) from None
        finally:
            with self._lock:
                self._writing_bytes -= len(data)
        rec = Record(seq, points, len(data), path, held)
        with self._lock:
            self._insert(rec)
        return rec

    def unhold(self, rec: Record) -> None:
        """The caller no longer delivers this record itself: it takes its turn from the disk."""
        with self._lock:
            if rec.held:
                rec.held = False
                self._held -= 1

    def extend(self, payload: bytes, points: int) -> int:
        """Append to the open record with one write(2) (safe from kill -9 once it returns; fsync'd
        at `seal()`); returns the points stored (0: dropped and counted)."""
        if not payload:
            return 0
        data = encode_record(payload, points)
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                while self.bytes + len(data) > self.max_bytes and self._evict_oldest(why=self._at_bound()):
                    pass
                if self.bytes + len(data) > self.max_bytes:
                    self._drop_new(points, 0, f"spool limit of {self.max_bytes} bytes reached")
                    return 0
            err = self._write_open(data)
            if err is not None:
                # Only a full disk is helped by dropping the oldest batch; any other error (a read-only or
                # unwritable directory, EIO) would lose a good batch for nothing.
                full = _is_full(err)
                if not (full and self._evict_oldest(why=_DISK_FULL) and self._write_open(data) is None):
                    self._drop_new(points, 0, "spool disk full" if full else f"cannot write: {err.strerror}")
                    return 0
            self._open_points += points
            self._drop_logged = False
        return points

    def _write_open(self, data: bytes) -> OSError | None:
        """Append `data` to the open record: None when written, else the error (nothing of it kept)."""
        try:
            if self._fd is None:
                self._open_seq = self.next_seq()
                path = self.dir / f"{self._open_seq:016d}{_OPEN}"
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                self._open_bytes = 0
                self._open_points = 0
            written = os.write(self._fd, data)
            while written < len(data):
                # A short write: the rest again, which either goes on or fails with the reason (a full
                # disk, a file size limit); then the except below cuts the piece off.
                more = os.write(self._fd, data[written:])
                if more == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += more
            self._open_bytes += written
            return None
        except OSError as exc:
            # (Logged by the caller once per episode, with what it dropped: not once per tick.)
            if self._fd is not None:
                try:
                    os.ftruncate(self._fd, self._open_bytes)
                except OSError:
                    pass
            return exc

    def seal(self) -> Record | None:
        """Close the open record: fsync, rename to <seq>-<points>.rec (atomic), fsync the directory."""
        with self._lock:
            fd, seq, size, points = self._fd, self._open_seq, self._open_bytes, self._open_points
            if fd is None or size == 0:
                return None
            self._fd = None
            self._open_bytes = self._open_points = 0
            self._sealing_bytes, self._sealing_points = size, points
        # Outside the lock: extend() goes on into the next open record meanwhile.
        rec = None
        try:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            open_path, path = self.dir / f"{seq:016d}{_OPEN}", self.dir / _rec_name(seq, points)
            try:
                os.rename(open_path, path)
            except OSError as exc:
                # (An unwritable directory.) The batch is whole and fsync'd: it is queued and sent from
                # where it is, not left for the next start to find; the next start would seal it as well.
                if not self._seal_logged:
                    log.error("spool %s: cannot seal batch %d: %s; it is sent as it is (logged once)", self.dir, seq,
                              exc.strerror)
                    self._seal_logged = True
                path = open_path
            else:
                fsync_dir(self.dir)
                self._seal_logged = False
            rec = Record(seq, points, size, path)
        finally:
            with self._lock:
                # On an error the file stays as it is, and the next start recovers it.
                self._sealing_bytes = self._sealing_points = 0
                if rec is not None:
                    self._insert(rec)
        return rec

    # -- taking ---------------------------------------------------------------------------------

    def _first(self) -> Record | None:
        """The oldest record not held by the caller (lock held)."""
        if not self._held:
            return self._records[0] if self._records else None
        return next((r for r in self._records if not r.held), None)

    def peek_seq(self) -> int | None:
        """The seq of the oldest record (not held), or None."""
        with self._lock:
            rec = self._first()
            return rec.seq if rec is not None else None

    def oldest(self) -> Record | None:
        """The next record to send (not held), marked in flight so that it is never dropped meanwhile."""
        with self._lock:
            rec = self._first()
            self._in_flight = [rec] if rec is not None else []
            return rec

    def oldest_run(self, max_bytes: int, before_seq: int | None = None) -> list[Record]:
        """The next records to send as one delivery: the oldest (as `oldest()`) and the ones right
        after it, none held, none at or after before_seq, up to max_bytes in all (at least one);
        all marked in flight. [] when there is none."""
        with self._lock:
            run: list[Record] = []
            size = 0
            i = 0
            if self._held:  # the oldest not held, as _first()
                while i < len(self._records) and self._records[i].held:
                    i += 1
            for rec in self._records[i:]:
                if rec.held or (before_seq is not None and rec.seq >= before_seq) or (run and size + rec.size > max_bytes):
                    break
                run.append(rec)
                size += rec.size
            self._in_flight = run
            return list(run)

    def read(self, rec: Record) -> bytes | None:
        """The record's payload; None when it cannot be read (then it is dropped, counted, logged,
        and a damaged file is moved to rejected/ as <name>.damaged for the operator)."""
        try:
            data = rec.path.read_bytes()
        except OSError as exc:
            self._lose(rec, f"cannot read {rec.path}: {exc.strerror}")
            return None
        payload, points, good = decode_record(data)
        if good == len(data) and points == rec.points:
            return payload
        aside = self.rejected_dir / (rec.path.name + ".damaged")
        salvaged = good != len(data) and 0 < points < rec.points
        if not salvaged:
            # Nothing whole to keep, or whole pieces that disagree with the record's name.
            self._lose(rec, f"{rec.path} is damaged (a whole record holds {good} of its {len(data)} bytes)")
        else:
            # Whole pieces (each with its checksum) and then damage: the pieces are delivered, as the
            # open record's are at a start, and only the points after the damage are dropped.
            lost = rec.points - points
            with self._lock:
                if any(r is rec for r in self._records):
                    self._records_points -= lost
                rec.points = points
                self.dropped_points += lost
            log.error("spool %s: %s is damaged after byte %d of %d: its first %d point(s) are sent, the %d after "
                      "the damage are dropped (the file is kept as %s)", self.dir, rec.path.name, good, len(data),
                      points, lost, aside)
        try:
            os.rename(rec.path, aside)
        except OSError:
            pass
        return payload if salvaged else None

    def done(self, rec: Record) -> None:
        """The record was delivered: delete it. (A delete lost in a crash, or refused by an unwritable
        directory, only sends it again at the next start: the same points, which a store keeps once.)"""
        with self._lock:
            self._remove(rec)
            self._in_flight = [r for r in self._in_flight if r is not rec]
        try:
            rec.path.unlink(missing_ok=True)
        except OSError as exc:
            if not self._done_logged:
                log.error("spool %s: cannot delete delivered batch %s: %s; the next start sends it again "
                          "(logged once)", self.dir, rec.path.name, exc.strerror)
                self._done_logged = True

    def release(self) -> None:
        """The records in flight stay (delivery failed; they are tried again)."""
        with self._lock:
            self._in_flight = []

    def reject(self, rec: Record, payload: bytes) -> Path | None:
        """The receiver refused the record for good: set it aside and take it off the queue."""
        kept = self.set_aside(rec.seq, payload, rec.points)
        self.done(rec)
        return kept

    def set_aside(self, seq: int, payload: bytes, points: int) -> Path | None:
        """Keep a refused payload in rejected/ as given (never overwriting an older one), newest
        kept within rejected_max_bytes, and count it; returns where, or None when it could not be kept."""
        with self._lock:
            self.rejected_points += points
            self.rejected_batches += 1
            stem = f"{seq:016d}-{points}"
            path = self.rejected_dir / f"{stem}{self.rejected_suffix}"
            k = 1
            while path.exists():
                k += 1
                path = self.rejected_dir / f"{stem}-{k}{self.rejected_suffix}"
            try:
                write_durable(path, payload)
                pruned = _prune_oldest(self.rejected_dir, self.rejected_max_bytes)
            except OSError as exc:
                log.error("spool %s: cannot keep rejected batch %d: %s", self.dir, seq, exc.strerror)
                return None
            if pruned:
                # Never unseen: the oldest set-aside lines deleted to keep the newest within the budget (found
                # by the store audit: they went without a word).
                points = sum(p for _, p in pruned)
                self.rejected_pruned_points += points
                log.warning("spool %s: rejected/ passed its budget of %d bytes: deleted the %d oldest file(s) set "
                            "aside there (%d point(s): %s)", self.dir, self.rejected_max_bytes, len(pruned), points,
                            ", ".join(name for name, _ in pruned[:5]) + (" ..." if len(pruned) > 5 else ""))
            return path

    # -- dropping (lock held) -------------------------------------------------------------------

    def _at_bound(self) -> str:
        return f"reached its bound of {self.max_bytes} bytes"

    def _evict_oldest(self, before_seq: int | None = None, why: str = "") -> bool:
        """Drop the oldest record not in flight (and older than before_seq); False if none. `why`: what makes room
        needed, for the log (the byte bound, or the disk: a full disk read "spool ... full", as if the bound was
        reached: found by the operator audit)."""
        rec = next((r for r in self._records if not r.held and all(r is not f for f in self._in_flight)), None)
        if rec is None or (before_seq is not None and rec.seq > before_seq):
            return False
        try:
            rec.path.unlink(missing_ok=True)
        except OSError as exc:
            # Nothing freed (a read-only directory): the batch stays queued, and is sent when it can be.
            if not self._drop_logged:
                log.error("spool %s: cannot drop the oldest batch %s to make room: %s", self.dir, rec.path.name,
                          exc.strerror)
            return False
        self._remove(rec)
        self.dropped_points += rec.points
        self.dropped_batches += 1
        log.warning(
            "spool %s %s: dropped the oldest batch %s (%d point(s), %d bytes); %d point(s) dropped so far",
            self.dir, why or "full", rec.path.name, rec.points, rec.size, self.dropped_points,
        )
        return True

    def count_dropped(self, points: int, batches: int) -> None:
        """Count points the caller dropped itself (and logged)."""
        with self._lock:
            self.dropped_points += points
            self.dropped_batches += batches

    def drop(self, points: int, batches: int, why: str) -> None:
        """Count (and log, once per episode) new points the caller could not queue."""
        with self._lock:
            self._drop_new(points, batches, why)

    def _drop_new(self, points: int, batches: int, why: str) -> None:
        self.dropped_points += points
        self.dropped_batches += batches
        if not self._drop_logged:  # once per episode: a full spool would log every tick
            log.error("spool %s: %s: dropping new points (%d so far); is the receiver away for long?", self.dir, why, self.dropped_points)
            self._drop_logged = batches == 0

    def _lose(self, rec: Record, why: str) -> None:
        with self._lock:
            self._remove(rec)
            self._in_flight = [r for r in self._in_flight if r is not rec]
            self.dropped_points += rec.points
            self.dropped_batches += 1
        log.error("spool %s: %s; its %d point(s) are dropped", self.dir, why, rec.points)

    def _insert(self, rec: Record) -> None:
        self._held += rec.held
        bisect.insort(self._records, rec)
        self._records_bytes += rec.size
        self._records_points += rec.points

    def _remove(self, rec: Record) -> None:
        i = bisect.bisect_left(self._records, rec)
        if i < len(self._records) and self._records[i] is rec:
            del self._records[i]
            self._held -= rec.held
            self._records_bytes -= rec.size
            self._records_points -= rec.points

    # -- state ----------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Bytes on disk: sealed records, the open one and one being sealed."""
        with self._lock:
            return self._records_bytes + self._open_bytes + self._sealing_bytes + self._writing_bytes

    @property
    def open_bytes(self) -> int:
        with self._lock:
            return self._open_bytes

    @property
    def records(self) -> int:
        with self._lock:
            return len(self._records)

    def sealed(self) -> list[Record]:
        """The sealed records now, oldest first (a copy: the queue may take them meanwhile)."""
        with self._lock:
            return list(self._records)

    @property
    def records_points(self) -> int:
        with self._lock:
            return self._records_points

    @property
    def points(self) -> int:
        """Points waiting: sealed records, the open one and one being sealed."""
        with self._lock:
            return self._records_points + self._open_points + self._sealing_points

    def close(self) -> None:
        """Close the open record as it is (the next start seals it)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _recover_open(path: Path) -> tuple[int, int]:
    """Cut an open record back to its last whole piece (a write cut short by a crash or a full
    disk); returns (points, bytes) kept."""
    data = path.read_bytes()
    _, points, good = decode_record(data)
    if good != len(data):
        log.warning("spool: %s ended in a piece cut short (%d bytes), cut back", path.name, len(data) - good)
        with open(path, "r+b") as f:
            f.truncate(good)
    return points, good


def _prune_oldest(directory: Path, max_bytes: int) -> list[tuple[str, int]]:
    """Delete the oldest rejected files (by seq) until the rest fit in max_bytes; files the queue
    did not write are left alone. Returns each deleted file's name and points (from its name,
    `{seq}-{points}...`; 0 where it does not say)."""
    files = sorted((int(m[1]), p) for p in directory.iterdir() if (m := _REJECTED_NAME.match(p.name)))
    sizes = {p: p.stat().st_size for _, p in files}
    total = sum(sizes.values())
    pruned = []
    for _, p in files:
        if total <= max_bytes:
            break
        total -= sizes[p]
        p.unlink(missing_ok=True)
        m = re.search(r"\d{16}-(\d+)", p.name)
        pruned.append((p.name, int(m[1]) if m else 0))
    return pruned
