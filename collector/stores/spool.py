"""`StoreWriter`: ordered, bounded, on-disk spool in front of any `Store`.

    writer = StoreWriter(store, "/var/lib/puewatch/spool", max_bytes=1 << 30)
    writer.submit(batch)             # a typed Batch, or line protocol bytes with their line count; never blocks
    ...
    writer.close(timeout_s=10)       # flush what it can; the rest stays on disk

What happens to a batch:

1. `submit()` gives it a sequence number and puts it on a bounded in-memory queue
   (no disk I/O). If that queue is full, the batch goes straight to the on-disk
   spool instead, so `submit()` never waits for the store.
2. One writer thread writes batches to the store in sequence order, taking the
   lower sequence number of the queue's head and the spool's oldest file, so
   batches reach the store in the order they were submitted even when some
   went through the disk.
3. `StoreUnavailable` (down, timeout, 5xx, 429): the batch is written to the
   spool, and while the store stays away every queued batch follows it to disk
   (so a crash during an outage loses nothing). The writer retries the oldest
   spooled batch with capped exponential backoff and jitter, and replays the
   spool oldest first once the store answers again.
4. `StoreRejected` (4xx): the batch can never be stored; it is counted as
   rejected, kept in `spool_dir/rejected/` (its own byte budget, newest kept)
   and the store's message is logged. The writer goes on with the next batch.

On disk: one file per batch, `batch-<seq>-<points>.lp`, written to a `.part`
file, fsync'd and renamed into place (see `puewatch.spoolfiles`), so after a
crash a batch file is complete or absent. The point count in the name keeps the
counts exact across restarts. A new StoreWriter on the same directory replays
the files left there first (their sequence numbers are lower than any new one).

The spool is bounded in bytes: to make room, the oldest batches are dropped
first (never the one being written), each dropped point is counted in
`dropped_points` and logged. A batch larger than the whole spool is dropped
and counted. Files are never rewritten, so a batch replayed after a timeout
(the store may have stored it and failed to answer) is byte-identical, and
InfluxDB (and the embedded store) keep it once: same series, same timestamp.

What travels: a typed `puewatch.core.batch.Batch` (SNMP readings, the pipeline's
derived series) or line protocol bytes (agents' bodies, as validated by ingest). The
store gets a batch through `write_batch()` where it has one (the embedded store stores
its columns as they are, the InfluxDB stores encode it to line protocol then), bytes
through `write()`. On disk a batch is `batch.encode()`d (raw columns behind a small
JSON header: no text formatting or parsing on the way to the disk and back); bytes are
kept as they are, and an old spool file of line protocol reads back as such. A batch
the store refused is kept in `rejected/` as line protocol, for the operator to read.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from puewatch.core import batch as typed
from puewatch.errors import UserError
from puewatch.spoolfiles import fsync_dir, prune_oldest, write_durable

from .base import Store, StoreRejected, StoreUnavailable

log = logging.getLogger("puewatch.collector.stores.spool")

__all__ = ["StoreWriter"]

_PREFIX = "batch-"
_SUFFIX = ".lp"


def _file_name(seq: int, points: int) -> str:
    return f"{_PREFIX}{seq:016d}-{points}{_SUFFIX}"


def _parse_name(path: Path) -> tuple[int, int] | None:
    name = path.name
    if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)):
        return None
    try:
        seq, points = name[len(_PREFIX) : -len(_SUFFIX)].split("-")
        return int(seq), int(points)
    except ValueError:
        return None


def _seq_key(path: Path) -> int:
    parsed = _parse_name(path)
    return parsed[0] if parsed else -1


# -- what a batch is on its way: typed, or line protocol bytes ------------------------------------


def _memory_size(body: bytes | typed.Batch) -> int:
    return len(body) if isinstance(body, bytes) else body.nbytes()


def _to_disk(body: bytes | typed.Batch) -> bytes:
    """The one encoding for the disk: a typed batch `encode()`d, line protocol as it is."""
    return body if isinstance(body, bytes) else typed.encode(body)


def _from_disk(data: bytes, points: int) -> bytes | typed.Batch:
    return typed.decode(data, points) if data.startswith(typed.MAGIC) else data


def _join(bodies: list[bytes | typed.Batch]) -> bytes | typed.Batch:
    """Consecutive batches as one write: bytes joined, or one Batch when any is typed."""
    if all(isinstance(b, bytes) for b in bodies):
        return b"".join(b if b.endswith(b"\n") else b + b"\n" for b in bodies)
    out = typed.Batch()
    for b in bodies:
        if isinstance(b, bytes):
            out.add_line_protocol(b, b.count(b"\n") or 1)
        else:
            out.extend(b)
    return out


def _store_write(store: Store, body: bytes | typed.Batch) -> None:
    """A typed batch through the store's `write_batch` where it has one, else as line protocol."""
    if isinstance(body, bytes):
        store.write(body)
    elif hasattr(store, "write_batch"):
        store.write_batch(body)
    else:
        store.write(body.to_line_protocol())


def _line_protocol(body: bytes | typed.Batch) -> bytes:
    return body if isinstance(body, bytes) else body.to_line_protocol()


@dataclass(order=True)
class _Batch:
    seq: int
    points: int = field(compare=False)
    size: int = field(compare=False)
    body: bytes | typed.Batch | None = field(default=None, compare=False, repr=False)  # in memory
    path: Path | None = field(default=None, compare=False)  # on disk


class StoreWriter:
    """Writes batches to `store` in order from one thread, spooling to `spool_dir` while it is away."""

    def __init__(
        self,
        store: Store,
        spool_dir: str | Path,
        max_bytes: int,
        *,
        queue_max_batches: int = 1000,
        queue_max_bytes: int = 64 << 20,
        rejected_max_bytes: int = 64 << 20,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        on_write: Callable[[float, int], None] | None = None,
        coalesce_max_bytes: int = 4 << 20,
        start: bool = True,
    ) -> None:
        if max_bytes <= 0:
            raise UserError(f"spool max_bytes must be positive, not {max_bytes}")
        self.store = store
        self.dir = Path(spool_dir)
        self.rejected_dir = self.dir / "rejected"
        self.max_bytes = max_bytes
        self.queue_max_batches = queue_max_batches
        self.queue_max_bytes = queue_max_bytes
        self.rejected_max_bytes = rejected_max_bytes
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.on_write = on_write  # called with (seconds, points) after each successful store write
        # Consecutive batches waiting in memory are written as one request up to this size:
        # fewer, larger writes cost the store less per point (one WAL sync per request).
        self.coalesce_max_bytes = coalesce_max_bytes

        # Counters (read them with stats(); exported on /metrics).
        self.points_written = 0
        self.batches_written = 0
        self.write_seconds = 0.0  # the last successful write
        self.write_seconds_sum = 0.0
        self.dropped_points = 0
        self.dropped_batches = 0
        self.rejected_points = 0
        self.rejected_batches = 0
        self.store_errors = 0
        self.last_error: str | None = None

        self._cond = threading.Condition()
        self._queue: deque[_Batch] = deque()
        self._queue_bytes = 0
        self._spool: list[_Batch] = []  # on disk, sorted by seq
        self._spool_bytes = 0
        self._in_flight: _Batch | None = None
        self._busy = False  # the writer thread is working outside the lock
        self._retry_at = 0.0  # monotonic time before which the store is not tried (backoff)
        self._failures = 0
        self._closing = False
        self._stopped = False
        self._next_seq = 1
        self._thread: threading.Thread | None = None
        self._recover()
        if start:
            self.start()

    # -- start-up -------------------------------------------------------------------------------

    def _recover(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.rejected_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(f"spool directory {self.dir}: {exc.strerror}") from None
        for part in self.dir.glob("*.part"):
            # A batch that was being written when the process died: it was never acknowledged.
            log.warning("spool %s: removing incomplete file %s", self.dir, part.name)
            part.unlink(missing_ok=True)
        found = []
        for path in self.dir.glob(f"{_PREFIX}*{_SUFFIX}"):
            parsed = _parse_name(path)
            if parsed is None:
                log.warning("spool %s: ignoring unexpected file %s", self.dir, path.name)
                continue
            found.append(_Batch(parsed[0], parsed[1], path.stat().st_size, path=path))
        found.sort()
        self._spool = found
        self._spool_bytes = sum(b.size for b in found)
        seqs = [b.seq for b in found] + [s for s in (_seq_key(p) for p in self.rejected_dir.glob(f"*{_SUFFIX}"))]
        self._next_seq = max(seqs, default=0) + 1
        if found:
            log.info(
                "spool %s: %d batch(es), %d point(s), %d bytes from an earlier run; replaying them first",
                self.dir, len(found), sum(b.points for b in found), self._spool_bytes,
            )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"store-writer {self.store.name}", daemon=True)
            self._thread.start()

    # -- the submitting side (event loop) -------------------------------------------------------

    def submit(self, body: bytes | typed.Batch, points: int | None = None) -> None:
        """Hand a batch over (a typed Batch, or ns line protocol and its line count); never waits for the store."""
        if not body:
            return
        size = _memory_size(body)
        with self._cond:
            if self._closing:
                raise RuntimeError(f"StoreWriter for {self.store.name} is closed")
            seq = self._next_seq
            self._next_seq += 1
            batch = _Batch(seq, len(body) if points is None else points, size, body=body)
            if len(self._queue) < self.queue_max_batches and self._queue_bytes + size <= self.queue_max_bytes:
                self._queue.append(batch)
                self._queue_bytes += size
            else:
                # The writer is far behind (store slow or down): straight to disk, in order by seq.
                self._spool_batch(batch)
            self._cond.notify_all()

    # -- the spool (call with the lock held) ----------------------------------------------------

    def _spool_batch(self, batch: _Batch) -> None:
        assert batch.body is not None
        data = _to_disk(batch.body)
        size = batch.size = len(data)
        if size > self.max_bytes:
            self._count_drop(batch, f"batch of {size} bytes is larger than the whole spool ({self.max_bytes} bytes)")
            return
        while self._spool_bytes + size > self.max_bytes:
            victim = next((b for b in self._spool if b is not self._in_flight), None)
            if victim is None or victim.seq > batch.seq:
                # Everything on disk is newer (or being written): the new batch is the oldest, drop it.
                self._count_drop(batch, "spool full")
                return
            self._remove(victim)
            victim.path.unlink(missing_ok=True)
            self._count_drop(victim, "spool full, dropped the oldest batch")
        path = self.dir / _file_name(batch.seq, batch.points)
        try:
            write_durable(path, data)
        except OSError as exc:
            self._count_drop(batch, f"cannot write {path}: {exc.strerror}")
            return
        batch.path = path
        batch.body = None
        bisect.insort(self._spool, batch)
        self._spool_bytes += size

    def _remove(self, batch: _Batch) -> None:
        i = bisect.bisect_left(self._spool, batch)
        if i < len(self._spool) and self._spool[i] is batch:
            del self._spool[i]
            self._spool_bytes -= batch.size

    def _count_drop(self, batch: _Batch, why: str) -> None:
        self.dropped_points += batch.points
        self.dropped_batches += 1
        log.warning(
            "spool %s: %s: %d point(s) of batch %d dropped; %d point(s) dropped so far",
            self.dir, why, batch.points, batch.seq, self.dropped_points,
        )

    # -- the writer thread ----------------------------------------------------------------------

    def _next(self) -> _Batch | list[_Batch] | None:
        """The batch with the lowest sequence number, memory or disk (or a run of consecutive
        batches from memory); None to stop. Lock held."""
        while True:
            if self._stopped:
                return None
            now = time.monotonic()
            if self._retry_at > now:
                # The store is away: everything queued follows the failed batch to disk.
                while self._queue:
                    b = self._queue.popleft()
                    self._queue_bytes -= b.size
                    self._spool_batch(b)
                self._cond.notify_all()
                self._cond.wait(self._retry_at - now)
                continue
            head_q = self._queue[0] if self._queue else None
            head_s = self._spool[0] if self._spool else None
            if head_s is not None and (head_q is None or head_s.seq < head_q.seq):
                self._in_flight = head_s
                return head_s
            if head_q is not None:
                self._queue.popleft()
                self._queue_bytes -= head_q.size
                self._in_flight = head_q
                group = [head_q]
                size = head_q.size
                # Later batches in memory join it while nothing older waits on disk.
                while self._queue and size + self._queue[0].size <= self.coalesce_max_bytes:
                    nxt = self._queue[0]
                    if self._spool and self._spool[0].seq < nxt.seq:
                        break
                    self._queue.popleft()
                    self._queue_bytes -= nxt.size
                    size += nxt.size
                    group.append(nxt)
                return group if len(group) > 1 else head_q
            if self._closing:
                return None
            self._cond.notify_all()  # idle: wake flush()
            self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next()
                if batch is None:
                    self._spill_queue()
                    self._cond.notify_all()
                    return
                self._busy = True
            try:
                if isinstance(batch, list):
                    self._write_group(batch)
                else:
                    self._write(batch)
            except Exception:  # never let the thread die: keep the batch on disk
                log.exception("store writer %s: unexpected error", self.store.name)
                with self._cond:
                    for b in batch if isinstance(batch, list) else [batch]:
                        self._failed(b, "unexpected error (see the log)")
            finally:
                with self._cond:
                    self._in_flight = None
                    self._busy = False
                    self._cond.notify_all()

    def _write_group(self, group: list[_Batch]) -> None:
        """Consecutive in-memory batches as one store write. Refused as a whole (4xx), they are
        written again one by one, so that only the batch at fault is set aside."""
        body = _join([b.body for b in group])
        points = sum(b.points for b in group)
        t0 = time.perf_counter()
        try:
            _store_write(self.store, body)
        except StoreUnavailable as exc:
            with self._cond:
                self._failed(group[0], str(exc))
                self._in_flight = None  # on disk now: the oldest, first to go if the spool is full
                for b in group[1:]:
                    self._spool_batch(b)
            return
        except StoreRejected:
            for b in group:
                self._write(b)
            return
        self._written(time.perf_counter() - t0, points, len(group))

    def _written(self, seconds: float, points: int, batches: int, on_disk: _Batch | None = None) -> None:
        """Bookkeeping after a successful store write (lock not held)."""
        with self._cond:
            if on_disk is not None:
                self._remove(on_disk)
            self.points_written += points
            self.batches_written += batches
            self.write_seconds = seconds
            self.write_seconds_sum += seconds
            if self._failures:
                log.info("store %s answers again after %d failed attempt(s)", self.store.name, self._failures)
            self._failures = 0
            self._retry_at = 0.0
        if on_disk is not None:
            on_disk.path.unlink(missing_ok=True)
        if self.on_write is not None:
            try:
                self.on_write(seconds, points)
            except Exception:
                log.exception("on_write hook failed")

    def _write(self, batch: _Batch) -> None:
        if batch.body is not None:
            body = batch.body
        else:
            assert batch.path is not None
            try:
                body = _from_disk(batch.path.read_bytes(), batch.points)
            except (OSError, typed.BatchError) as exc:
                with self._cond:
                    self._remove(batch)
                    self._count_drop(batch, f"cannot read {batch.path}: {getattr(exc, 'strerror', None) or exc}")
                return
        t0 = time.perf_counter()
        try:
            _store_write(self.store, body)
        except StoreUnavailable as exc:
            with self._cond:
                self._failed(batch, str(exc))
            return
        except StoreRejected as exc:
            with self._cond:
                self._rejected(batch, body, str(exc))
            return
        self._written(time.perf_counter() - t0, batch.points, 1, batch if batch.path is not None else None)

    def _failed(self, batch: _Batch, message: str) -> None:
        """StoreUnavailable: keep the batch (on disk) and back off. Lock held."""
        self.store_errors += 1
        self.last_error = message
        if batch.body is not None:
            self._spool_batch(batch)
        self._failures += 1
        delay = min(self.backoff_max_s, self.backoff_min_s * 2 ** min(self._failures - 1, 30))
        delay *= random.uniform(0.5, 1.0)  # jitter: many collectors must not retry in lockstep
        self._retry_at = time.monotonic() + delay
        level = logging.WARNING if self._failures == 1 or self._failures % 20 == 0 else logging.DEBUG
        log.log(level, "store %s unavailable (attempt %d, retry in %.1f s; %d batch(es) spooled): %s",
                self.store.name, self._failures, delay, len(self._spool), message)

    def _rejected(self, batch: _Batch, body: bytes | typed.Batch, message: str) -> None:
        """StoreRejected: set the batch aside in rejected/ and count it. Lock held."""
        self.rejected_points += batch.points
        self.rejected_batches += 1
        self.last_error = message
        name = _file_name(batch.seq, batch.points)
        try:
            if batch.path is not None and isinstance(body, bytes):
                self._remove(batch)
                os.rename(batch.path, self.rejected_dir / name)
                fsync_dir(self.dir)
            else:
                write_durable(self.rejected_dir / name, _line_protocol(body))
                if batch.path is not None:
                    self._remove(batch)
                    batch.path.unlink(missing_ok=True)
            prune_oldest(self.rejected_dir, f"*{_SUFFIX}", self.rejected_max_bytes, _seq_key)
        except OSError as exc:
            log.error("spool %s: cannot keep rejected batch %d: %s", self.dir, batch.seq, exc.strerror)
            if batch.path is not None:
                batch.path.unlink(missing_ok=True)
        log.error("store %s rejected batch %d (%d point(s), kept in %s): %s; %d point(s) rejected so far",
                  self.store.name, batch.seq, batch.points, self.rejected_dir, message, self.rejected_points)

    def _spill_queue(self) -> None:
        """Shutdown: whatever is still in memory goes to disk, for the next start. Lock held."""
        while self._queue:
            b = self._queue.popleft()
            self._queue_bytes -= b.size
            self._spool_batch(b)

    # -- shutdown and state ---------------------------------------------------------------------

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every submitted batch is in the store (True) or timeout_s passes (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._spool or self._busy:
                if self._stopped or self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is None else min(remaining, 0.5))
            return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Stop accepting batches, write what the store takes within timeout_s, keep the rest on
        disk for the next start, stop the thread and close the store. True when nothing is left."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        done = self.flush(timeout_s) if self._thread is not None else False
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        with self._cond:
            self._spill_queue()
        try:
            self.store.close()
        except Exception:
            log.exception("closing store %s", self.store.name)
        if not done and self._spool:
            log.warning("spool %s: %d batch(es), %d point(s) kept on disk for the next start",
                        self.dir, len(self._spool), sum(b.points for b in self._spool))
        return done

    def stats(self) -> dict[str, float | int | bool | str | None]:
        with self._cond:
            return {
                "points_written": self.points_written,
                "batches_written": self.batches_written,
                "write_seconds": self.write_seconds,
                "write_seconds_sum": self.write_seconds_sum,
                "queue_batches": len(self._queue),
                "queue_bytes": self._queue_bytes,
                "spool_batches": len(self._spool),
                "spool_bytes": self._spool_bytes,
                "spool_points": sum(b.points for b in self._spool),
                "dropped_points": self.dropped_points,
                "dropped_batches": self.dropped_batches,
                "rejected_points": self.rejected_points,
                "rejected_batches": self.rejected_batches,
                "store_errors": self.store_errors,
                "store_up": self._failures == 0,
                "last_error": self.last_error,
            }

    @property
    def spool_bytes(self) -> int:
        return self._spool_bytes

    @property
    def spool_batches(self) -> int:
        return len(self._spool)
