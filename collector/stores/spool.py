"""`StoreWriter`: ordered, bounded, on-disk spool in front of any `Store`.

    writer = StoreWriter(store, "/var/lib/puewatch/spool", max_bytes=1 << 30)
    writer.submit(body, points)      # never blocks the event loop
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
   spooled batch after `puewatch.backoff.Backoff` (exponential, full jitter,
   capped, reset on success), and replays the spool oldest first once the store
   answers again.
4. A poison batch is isolated (`_isolate`, `collector/stores/isolate.py`): when the
   store refuses a batch (`StoreRejected`, 4xx), or the batch takes the store down
   `poison_strikes` times (it answered a ping before the write and none after it:
   influxd 1.6.7 panics on `m \\\\="="`), the batch is written again in halves down
   to the lines at fault.
   Only those lines are set aside in `spool_dir/rejected/` (line protocol, its own
   byte budget, newest kept), counted in `rejected_points` one per line and logged
   once each with the store's message; the other lines are stored, and the writer
   goes on with the next batch. A store without `ping()` cannot be told from a dead
   one: there only refusals are isolated.
5. A 401/403 refuses the writer, not the lines (a wrong or expired store password or
   token), and so does a 404 (no such database or bucket: dropped, not created yet, or
   mistyped): the data is fine and was acknowledged, so it is handled as "cannot write now":
   the batch stays spooled and is retried with backoff, the collector is degraded
   (`store_unauthorized` or `store_not_found`, logged once, on /metrics and in STATUS) and
   recovers by itself with the first write the store takes once the operator fixes it.

On disk: a `puewatch.diskqueue.DiskQueue` (one file per batch, written durably:
after a crash a batch file is complete or absent; the point count kept with it,
so counts stay exact across restarts). A new StoreWriter on the same directory
replays the batches left there first (their sequence numbers are lower than any
new one). The queue is bounded in bytes: to make room the oldest batches are
dropped first (never the one being written), each dropped point is counted in
`dropped_points` and logged; a batch larger than the whole spool is dropped and
counted. Files are never rewritten, so a batch replayed after a timeout (the
store may have stored it and failed to answer) is byte-identical, and InfluxDB
(and the embedded store) keep it once: same series, same timestamp.

Durable mode (`durable=True`, the collector's raw writer: what ingest acknowledges):
`commit()` returns a future that is done once the batch is on disk. A committer thread
takes every batch waiting (up to `group_max_bytes`) and writes them as one record, one
fsync of the file and one of the directory (group commit: batches arriving during a sync
share the next one; a batch waits at most for the group in progress and its own). The
record is `held`: the batch also joins the in-memory queue above and the record is deleted
once the store has it (a crash in between writes it again at the next start: stored once,
same series and time). Nothing is ever dropped to make room: a batch the spool cannot take
(bound reached, disk full) fails with `Backpressure` (503 + Retry-After), counted as refused.

What travels: a typed `puewatch.core.batch.Batch` (SNMP readings, the pipeline's
derived series) or line protocol bytes (agents' bodies, as validated by ingest). The
store gets a batch through `write_batch()` where it has one (the embedded store stores
its columns as they are, the InfluxDB stores encode it to line protocol then), bytes
through `write()`. On disk a batch is `batch.encode()`d (raw columns behind a small
JSON header: no text formatting or parsing on the way to the disk and back) as one
record of the queue; bytes are kept as they are. A batch
the store refused is kept in `rejected/` as line protocol, for the operator to read.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from puewatch.backoff import Backoff
from puewatch.core import batch as typed
from puewatch.diskqueue import DiskQueue, QueueFull, Record, decode_record

from .base import Store, StoreCorrupt, StoreFull, StoreRejected, StoreUnavailable
from .isolate import bisect_write, split_lines

log = logging.getLogger("puewatch.collector.stores.spool")

__all__ = ["Backpressure", "StoreWriter"]

# Refused lines of one batch logged one by one; the rest as a count (all are in rejected/).
_LOGGED_LINES_MAX = 10

# What a client is told to wait before sending again when the spool cannot take its batch (503).
RETRY_AFTER_S = 5


class Backpressure(Exception):
    """The batch was not taken: nothing was acknowledged, stored or dropped; the sender keeps it and
    sends it again after `retry_after_s` (ingest answers 503 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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


def _on_disk(batch) -> Record | None:
    """The batch's record on disk (read back from the spool, or held for a durable batch), if any."""
    return batch if isinstance(batch, Record) else batch.rec


@dataclass
class _Batch:
    """A batch waiting in memory."""

    seq: int
    points: int
    size: int
    body: bytes | typed.Batch = field(repr=False)
    rec: Record | None = None  # durable mode: its record on disk (held), deleted once the store has it


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
        poison_strikes: int = 2,
        durable: bool = False,
        group_max_bytes: int = 16 << 20,
        health=None,
        memory_on_full_disk_bytes: int = 0,
        disk_full_reason: str = "spool_disk_full",
        start: bool = True,
    ) -> None:
        self.store = store
        self.spool = DiskQueue(spool_dir, max_bytes, rejected_max_bytes, rejected_suffix=".lp")
        self.dir = self.spool.dir
        self.rejected_dir = self.spool.rejected_dir
        self.max_bytes = max_bytes
        self.queue_max_batches = queue_max_batches
        self.queue_max_bytes = queue_max_bytes
        self.backoff = Backoff(backoff_min_s, backoff_max_s)
        self._backoff_s = (backoff_min_s, backoff_max_s)
        # A batch that takes the store down this many times is isolated (see `_isolate`); the
        # batch that failed last and its count so far:
        self.poison_strikes = poison_strikes
        self._suspect: tuple[int, int] | None = None
        # Spooled records up to this seq are written one at a time: a write of several failed on them,
        # and strikes and isolation are counted per batch (see `_write_records`).
        self._alone_until_seq = 0
        self._ping: Callable[[], bool] | None = getattr(store, "ping", None)
        self.on_write = on_write  # called with (seconds, points) after each successful store write
        # Consecutive batches waiting in memory are written as one request up to this size:
        # fewer, larger writes cost the store less per point (one WAL sync per request).
        self.coalesce_max_bytes = coalesce_max_bytes
        # Durable mode: every batch is on disk (fsync'd) before commit()'s future is done; the
        # spool never drops a batch to make room, a batch it cannot take is refused (Backpressure).
        self.durable = durable
        self.group_max_bytes = group_max_bytes
        # Told about a full disk or a corrupt store (`collector.health.Health`: degrade/recover).
        self.health = health
        self._full = False  # this writer degraded the collector for a full spool (see _written)
        # Not durable: while the spool's disk is full, batches that would go to disk are held in
        # memory (in seq order, up to this many bytes; then the oldest held is dropped, counted,
        # logged once) instead of the oldest batches on disk being dropped for room; 0: old behaviour.
        self.memory_on_full_disk_bytes = memory_on_full_disk_bytes
        self.disk_full_reason = disk_full_reason  # the health reason while batches are held so
        self._held: list[_Batch] = []  # in seq order
        self._held_bytes = 0
        self._held_episode = False  # the disk is (was last found) full and batches are held
        self._held_drop_logged = False
        self._disk_full_message = ""
        self.held_dropped_points = 0  # part of dropped_points
        self.refused_points = 0  # durable: points refused with Backpressure (never acknowledged)
        self.refused_batches = 0
        self.commits = 0  # durable: group commits (one fsync'd record each)
        self.commit_batches = 0  # batches they held
        self.commit_seconds_sum = 0.0
        self.commit_seconds_max = 0.0

        # Counters (read them with stats(); exported on /metrics). Dropped and rejected: the spool's.
        self.points_written = 0
        self.batches_written = 0
        self.write_seconds = 0.0  # the last successful write
        self.write_seconds_sum = 0.0
        self.store_errors = 0
        self.last_error: str | None = None

        self._cond = threading.Condition()
        self._queue: deque[_Batch] = deque()
        self._queue_bytes = 0
        self._busy = False  # the writer thread is working outside the lock
        self._retry_at = 0.0  # monotonic time before which the store is not tried (backoff)
        self._closing = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        # Durable mode: batches waiting for the next group commit, (body, points, future or None).
        self._pending_cond = threading.Condition()
        self._pending: deque[tuple[bytes | typed.Batch, int, concurrent.futures.Future | None]] = deque()
        self._committing = 0  # batches taken by the committer, not yet on disk or refused
        self._commit_stop = False
        self._committer: threading.Thread | None = None
        self.spool.open()  # the batches of an earlier run come first: their seqs are lower
        if start:
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"store-writer {self.store.name}", daemon=True)
            self._thread.start()
        if self.durable and self._committer is None:
            self._committer = threading.Thread(target=self._commit_run, name=f"group-commit {self.store.name}", daemon=True)
            self._committer.start()

    def spooled_line_protocol(self) -> Iterator[bytes]:
        """The line protocol of the batches an earlier run left in the spool, oldest first: acknowledged
        (204) and not yet in the store, so the field types ingest starts with must include theirs
        (`collector.main.ingest_field_types`). Call before `start()`, while no batch leaves the spool.
        Typed batches are left out: they hold the collector's own series, whose types the schema fixes.
        A record that cannot be read or is damaged is passed over here; the writer drops and counts it
        when it gets to it (`DiskQueue.read`)."""
        for rec in self.spool.sealed():
            try:
                data = rec.path.read_bytes()
            except OSError:
                continue
            payload, _points, good = decode_record(data)
            if good == len(data) and payload and not payload.startswith(typed.MAGIC):
                yield payload

    # -- the submitting side (event loop) -------------------------------------------------------

    def commit(self, body: bytes | typed.Batch, points: int | None = None) -> concurrent.futures.Future:
        """Durable mode: hand a batch over; the future is done once the batch is on disk (fsync'd, with
        the other batches of its group commit), or fails with `Backpressure` (not taken: the spool is
        full or its disk is). Never waits itself."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if not body:
            fut.set_result(None)
            return fut
        self._enqueue(body, len(body) if points is None else points, fut)
        return fut

    def _enqueue(self, body: bytes | typed.Batch, points: int, fut: concurrent.futures.Future | None) -> None:
        with self._pending_cond:
            if self._commit_stop:
                raise RuntimeError(f"StoreWriter for {self.store.name} is closed")
            self._pending.append((body, points, fut))
            self._pending_cond.notify()

    def submit(self, body: bytes | typed.Batch, points: int | None = None) -> None:
        """Hand a batch over (a typed Batch, or ns line protocol and its line count); never waits for the store.
        Durable mode: it goes to disk with the next group commit, unacknowledged."""
        if not body:
            return
        if self.durable:
            self._enqueue(body, len(body) if points is None else points, None)
            return
        size = _memory_size(body)
        with self._cond:
            if self._closing:
                raise RuntimeError(f"StoreWriter for {self.store.name} is closed")
            batch = _Batch(self.spool.next_seq(), len(body) if points is None else points, size, body)
            if len(self._queue) < self.queue_max_batches and self._queue_bytes + size <= self.queue_max_bytes:
                self._queue.append(batch)
                self._queue_bytes += size
            else:
                # The writer is far behind (store slow or down): straight to disk, in order by seq.
                self._spool_batch(batch)
            self._cond.notify_all()

    def _spool_batch(self, batch: _Batch) -> None:
        """To disk, in order by seq (full: the oldest goes, counted by the spool); a durable batch is
        there already: it only takes its turn from the disk now."""
        if batch.rec is not None:
            self.spool.unhold(batch.rec)
            return
        if not self.memory_on_full_disk_bytes:
            self.spool.put(_to_disk(batch.body), batch.points, batch.seq)
            return
        if self._put_unless_disk_full(batch):
            self._held_to_disk()  # room again: what memory held goes to disk too
        else:
            self._hold(batch)

    # -- a full disk under a non-durable spool: batches held in memory (lock held) ---------------

    def _put_unless_disk_full(self, batch: _Batch) -> bool:
        """To disk; False (nothing written, nothing dropped) when the disk is full. The byte bound
        still drops the oldest batches first, counted: that bound is the operator's choice."""
        try:
            self.spool.put(_to_disk(batch.body), batch.points, batch.seq, evict=False)
        except QueueFull as exc:
            if exc.disk_full:
                self._disk_full_message = str(exc)
                return False
            self.spool.put(_to_disk(batch.body), batch.points, batch.seq)
        return True

    def _hold(self, batch: _Batch) -> None:
        bisect.insort(self._held, batch, key=lambda b: b.seq)
        self._held_bytes += batch.size
        if not self._held_episode:
            self._held_episode = True
            message = (f"{self._disk_full_message}; batches are held in memory (up to "
                       f"{self.memory_on_full_disk_bytes} bytes) until the disk or the store takes them")
            if self.health is not None:
                self.health.degrade(self.disk_full_reason, message)
            else:
                log.error("spool %s: %s", self.dir, message)
        while self._held_bytes > self.memory_on_full_disk_bytes and len(self._held) > 1:
            old = self._held.pop(0)
            self._held_bytes -= old.size
            self.held_dropped_points += old.points
            self.spool.count_dropped(old.points, 1)
            if not self._held_drop_logged:  # once per episode, then counted
                self._held_drop_logged = True
                log.error("spool %s: the disk is full and %d bytes are held in memory: dropping the oldest "
                          "held batches (%d point(s) so far; counted in dropped_points)",
                          self.dir, self.memory_on_full_disk_bytes, self.held_dropped_points)

    def _held_to_disk(self) -> None:
        while self._held:
            if not self._put_unless_disk_full(self._held[0]):
                return
            b = self._held.pop(0)
            self._held_bytes -= b.size
        self._held_ended()

    def _held_ended(self) -> None:
        """Nothing is held in memory any more: the episode ends (logged once, health recovered)."""
        if not self._held_episode or self._held:
            return
        self._held_episode = self._held_drop_logged = False
        if self.health is not None:
            self.health.recover(self.disk_full_reason)
        else:
            log.warning("spool %s: no batch is held in memory any more", self.dir)

    # -- the group committer (durable mode) -----------------------------------------------------

    def _commit_run(self) -> None:
        """Take every batch waiting (up to group_max_bytes) and put it on disk as one record with one
        fsync of the file and one of the directory: the batches that arrive while a group is being
        synced wait for the next group, so a batch waits at most for the group in progress and its own."""
        while True:
            with self._pending_cond:
                while not self._pending and not self._commit_stop:
                    self._pending_cond.wait()
                if not self._pending:
                    return
                group = [self._pending.popleft()]
                size = _memory_size(group[0][0])
                while self._pending and size + _memory_size(self._pending[0][0]) <= self.group_max_bytes:
                    item = self._pending.popleft()
                    size += _memory_size(item[0])
                    group.append(item)
                self._committing = len(group)
            try:
                self._commit_group(group)
            except Exception as exc:  # never let the thread die; nothing of this group was acknowledged
                log.exception("store writer %s: group commit failed", self.store.name)
                self._refuse(group, Backpressure(f"cannot write the batch to the spool: {exc}"))
            finally:
                with self._pending_cond:
                    self._committing = 0
                    self._pending_cond.notify_all()

    def _commit_group(self, group: list) -> None:
        body = _join([b for b, _, _ in group]) if len(group) > 1 else group[0][0]
        points = sum(p for _, p, _ in group)
        payload = _to_disk(body)
        t0 = time.perf_counter()
        seq = self.spool.next_seq()  # one committer: records reach the queue in seq order
        try:
            rec = self.spool.put(payload, points, seq, evict=False, held=True)
        except QueueFull as exc:
            reason = "spool_disk_full" if exc.disk_full else "spool_full"
            if self.health is not None:
                self._full = True
                self.health.degrade(reason, f"{exc}; ingest answers 503 until there is room")
            self._refuse(group, Backpressure(f"the collector cannot take more now: {exc}"))
            return
        seconds = time.perf_counter() - t0
        if self.health is not None:
            self.health.recover("spool_disk_full")
            self.health.recover("spool_full")
        with self._cond:
            self.commits += 1
            self.commit_batches += len(group)
            self.commit_seconds_sum += seconds
            self.commit_seconds_max = max(self.commit_seconds_max, seconds)
            size = _memory_size(body)
            if len(self._queue) < self.queue_max_batches and self._queue_bytes + size <= self.queue_max_bytes:
                self._queue.append(_Batch(seq, points, size, body, rec))
                self._queue_bytes += size
            else:
                self.spool.unhold(rec)  # the writer is far behind: it reads this one back from disk
            self._cond.notify_all()
        for _, _, fut in group:
            if fut is not None:
                fut.set_result(None)

    def _refuse(self, group: list, exc: Backpressure) -> None:
        """Nothing of the group is on disk: acknowledged batches are refused (the sender keeps them),
        the others (SNMP readings, never acknowledged) are dropped and counted."""
        lost = 0
        with self._cond:
            for _, points, fut in group:
                if fut is not None:
                    self.refused_points += points
                    self.refused_batches += 1
                else:
                    lost += points
        if lost:
            self.spool.drop(lost, 1, str(exc))
        for _, _, fut in group:
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    # -- the writer thread ----------------------------------------------------------------------

    def _next(self) -> _Batch | Record | list[_Batch] | None:
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
            head_s = self.spool.peek_seq()
            if self._held and (head_s is None or self._held[0].seq < head_s) and (
                    head_q is None or self._held[0].seq < head_q.seq):
                b = self._held.pop(0)  # held in memory while the disk was full: it is the oldest
                self._held_bytes -= b.size
                return b
            if head_s is not None and (head_q is None or head_s < head_q.seq):
                if self._suspect is None and head_s > self._alone_until_seq:
                    # Several spooled records per write (a backlog past the memory queue, a replay
                    # after an outage): one 5,000-line record per request took influxd 20-40 % more
                    # time per line than four. Never past a batch that memory holds.
                    limits = [b.seq for b in (head_q, self._held[0] if self._held else None) if b is not None]
                    run = self.spool.oldest_run(self.coalesce_max_bytes, min(limits) if limits else None)
                    if len(run) > 1:
                        return run
                    return run[0] if run else self.spool.oldest()
                return self.spool.oldest()  # in flight: never dropped while it is written
            if head_q is not None:
                self._queue.popleft()
                self._queue_bytes -= head_q.size
                group = [head_q]
                size = head_q.size
                # Later batches in memory join it while nothing older waits on disk.
                while self._queue and size + self._queue[0].size <= self.coalesce_max_bytes:
                    nxt = self._queue[0]
                    oldest_on_disk = self.spool.peek_seq()
                    if oldest_on_disk is not None and oldest_on_disk < nxt.seq:
                        break
                    if self._held and self._held[0].seq < nxt.seq:
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
                if isinstance(batch, list) and isinstance(batch[0], Record):
                    self._write_records(batch)
                elif isinstance(batch, list):
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
                    self.spool.release()
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
            self._store_trouble(exc)
            with self._cond:
                self._failed(group[0], str(exc))
                for b in group[1:]:
                    self._spool_batch(b)
            return
        except StoreRejected as exc:
            if exc.refuses_writer:
                self._unauthorized(exc)
                with self._cond:
                    self._failed(group[0], str(exc))
                    for b in group[1:]:
                        self._spool_batch(b)
                return
            for b in group:
                self._write(b)
            return
        for b in group:
            if b.rec is not None:
                self.spool.done(b.rec)
        self._written(time.perf_counter() - t0, points, len(group))

    def _write_records(self, recs: list[Record]) -> None:
        """Consecutive spooled records as one store write. Anything but success sends them through
        `_write` one by one (now, or after the backoff for StoreUnavailable), so that backoff, strikes
        and isolation stay per batch."""
        kept: list[Record] = []
        bodies: list[bytes | typed.Batch] = []
        for i, rec in enumerate(recs):
            data = self.spool.read(rec)
            if data is None:  # unreadable: the spool dropped it, counted and logged
                continue
            try:
                bodies.append(_from_disk(data, rec.points))
            except typed.BatchError:  # one by one: `_write` sets the undecodable one aside
                self._one_by_one(kept + recs[i:])
                return
            kept.append(rec)
        if not kept:
            return
        t0 = time.perf_counter()
        try:
            _store_write(self.store, _join(bodies))
        except (StoreUnavailable, StoreRejected) as exc:
            self._alone_until_seq = recs[-1].seq
            if isinstance(exc, StoreUnavailable) or exc.refuses_writer:
                # As `_write` answers its first failure: back off; the records stay on disk.
                if isinstance(exc, StoreUnavailable):
                    self._store_trouble(exc)
                    self._suspect = (kept[0].seq, 0)
                else:
                    self._unauthorized(exc)
                with self._cond:
                    self._failed(kept[0], str(exc))
                return
            self._one_by_one(kept)
            return
        for rec in kept:
            self.spool.done(rec)
        self._written(time.perf_counter() - t0, sum(rec.points for rec in kept), len(kept))

    def _one_by_one(self, recs: list[Record]) -> None:
        """`_write` each, in order, until one is not stored (the store away: the rest wait their turn)."""
        for rec in recs:
            self._write(rec)
            if self._retry_at:
                return

    def _store_trouble(self, exc: StoreUnavailable) -> None:
        """A full, corrupt or unanswering store puts the collector in the degraded state (the batches stay
        spooled). An InfluxDB that refused every connection for minutes showed no degraded reason, /health
        "pass", only the spool growing (found by the metrics audit)."""
        if self.health is None:
            return
        if isinstance(exc, StoreFull):
            self.health.degrade("store_disk_full", str(exc), holder=self)
        elif isinstance(exc, StoreCorrupt):
            self.health.degrade("store_corrupt", f"{exc}; batches are kept in the spool")
        else:
            self.health.degrade("store_unavailable", f"{exc}; batches are kept in the spool and written once it "
                                "answers", holder=self)

    def _unauthorized(self, exc: StoreRejected) -> None:
        """401/403/404: the store refuses the collector's credentials, or has no such database or bucket; the
        batches stay spooled."""
        if self.health is not None:
            fix = ("the store takes the credentials (fix them in the configuration)"
                   if exc.health_reason == "store_unauthorized"
                   else "the database or bucket exists (create it, or fix its name in the configuration)")
            self.health.degrade(exc.health_reason, f"{exc}; batches are kept in the spool and written once {fix}",
                                holder=self)

    def _written(self, seconds: float, points: int, batches: int, on_disk: Record | None = None) -> None:
        """Bookkeeping after a successful store write (lock not held)."""
        if on_disk is not None:
            self.spool.done(on_disk)
        if self._full and self.spool.bytes <= self.spool.max_bytes // 2:
            # Drained to half its bound: the state ends here, not at the next request, which the
            # writers that met the 503 send only after their backoff (a health check read "degraded"
            # for a collector that had room). A request that still does not fit degrades it again.
            self._full = False
            self.health.recover("spool_disk_full")
            self.health.recover("spool_full")
        with self._cond:
            self.points_written += points
            self.batches_written += batches
            self.write_seconds = seconds
            self.write_seconds_sum += seconds
            failures = self.backoff.succeeded()
            if self.health is not None:
                # The store's reasons are met by every writer to it: each ends its own (see Health).
                self.health.recover("store_disk_full", holder=self)
                self.health.recover("store_unauthorized", holder=self)
                self.health.recover("store_not_found", holder=self)
                self.health.recover("store_unavailable", holder=self)
            self._held_ended()
            if failures:
                log.info("store %s answers again after %d failed attempt(s)", self.store.name, failures)
            self._retry_at = 0.0
        if self.on_write is not None:
            try:
                self.on_write(seconds, points)
            except Exception:
                log.exception("on_write hook failed")

    def _write(self, batch: _Batch | Record) -> None:
        if isinstance(batch, Record):
            data = self.spool.read(batch)
            if data is None:
                return  # unreadable: the spool dropped it, counted and logged
            try:
                body = _from_disk(data, batch.points)
            except typed.BatchError as exc:
                with self._cond:
                    self._rejected(batch, data, f"cannot decode the spooled batch: {exc}")
                return
        else:
            body = batch.body
        retrying = self._suspect is not None and self._suspect[0] == batch.seq
        if retrying and self._ping is not None and not self._ping():
            with self._cond:  # still away: no write, and no strike against the batch
                self._failed(batch, f"{self.store.name}: does not answer a ping")
            return
        t0 = time.perf_counter()
        try:
            _store_write(self.store, body)
        except StoreUnavailable as exc:
            self._store_trouble(exc)
            # A strike: the store answered a ping before this write and none after it.
            killed = retrying and self._ping is not None and not self._ping()
            strikes = self._suspect[1] + killed if retrying else 0
            self._suspect = (batch.seq, strikes)
            if strikes < self.poison_strikes:
                with self._cond:
                    self._failed(batch, str(exc))
                return
            self._isolate(batch, body, f"took the store down {strikes} times: {exc}")
            return
        except StoreRejected as exc:
            if exc.refuses_writer:
                self._suspect = None
                self._unauthorized(exc)
                with self._cond:
                    self._failed(batch, str(exc))
                return
            self._isolate(batch, body, str(exc))
            return
        self._suspect = None
        self._written(time.perf_counter() - t0, batch.points, 1, _on_disk(batch))

    def _isolate(self, batch: _Batch | Record, body: bytes | typed.Batch, why: str) -> None:
        """A batch the store refused, or failed on again and again: write it in halves down to
        the lines at fault (`isolate.bisect_write`), set those aside, store the rest."""
        lines = split_lines(_line_protocol(body))
        log.warning("store %s: batch %d (%d line(s)) %s; looking for the lines at fault",
                    self.store.name, batch.seq, len(lines), why)
        t0 = time.perf_counter()
        try:
            result = bisect_write(lines, self.store.write, self._ping, self._wait_until_up)
        except StoreUnavailable as exc:  # away (or shutting down) before anything was decided
            self._store_trouble(exc)
            with self._cond:
                self._failed(batch, str(exc))
            return
        except StoreRejected as exc:  # 401/403 midway (bisect_write raises no other refusal)
            self._unauthorized(exc)
            with self._cond:
                self._failed(batch, str(exc))
            return
        self._suspect = None
        on_disk = _on_disk(batch)
        if result.refused:
            with self._cond:
                self._set_aside_lines(batch, result.refused)
        if result.written:
            self._written(time.perf_counter() - t0, max(0, batch.points - len(result.refused)), 1, on_disk)
        elif on_disk is not None:
            self.spool.done(on_disk)

    def _wait_until_up(self) -> bool:
        """Wait, with backoff, until the store answers a ping; False when the writer stops first."""
        backoff = Backoff(*self._backoff_s)
        while not self._ping():
            with self._cond:
                if self._stopped:
                    return False
                self._cond.wait(backoff.failed())
        return True

    def _set_aside_lines(self, batch: _Batch | Record, refused: list[tuple[bytes, str]]) -> None:
        """The lines at fault of a batch: to rejected/, counted one point each, each logged once. Lock held."""
        kept = self.spool.set_aside(batch.seq, b"".join(line for line, _ in refused), len(refused))
        self.last_error = refused[0][1]
        for line, message in refused[:_LOGGED_LINES_MAX]:
            log.error("store %s refused a line of batch %d, set aside in %s: %s: %s",
                      self.store.name, batch.seq, kept or self.rejected_dir, message,
                      line.rstrip(b"\n").decode("utf-8", "replace")[:500])
        if len(refused) > _LOGGED_LINES_MAX:
            log.error("store %s: and %d more refused line(s) of batch %d in %s", self.store.name,
                      len(refused) - _LOGGED_LINES_MAX, batch.seq, kept or self.rejected_dir)

    def _failed(self, batch: _Batch | Record, message: str) -> None:
        """StoreUnavailable: keep the batch (on disk) and back off. Lock held."""
        self.store_errors += 1
        self.last_error = message
        if isinstance(batch, _Batch):
            self._spool_batch(batch)
        delay = self.backoff.failed()
        self._retry_at = time.monotonic() + delay
        failures = self.backoff.failures
        level = logging.WARNING if failures == 1 or failures % 20 == 0 else logging.DEBUG
        log.log(level, "store %s unavailable (attempt %d, retry in %.1f s; %d batch(es) spooled): %s",
                self.store.name, failures, delay, self.spool.records, message)

    def _rejected(self, batch: _Batch | Record, body: bytes | typed.Batch, message: str) -> None:
        """StoreRejected: set the batch aside in rejected/ (as line protocol, for the operator to
        read) and count it. Lock held."""
        self.last_error = message
        body = _line_protocol(body)
        if isinstance(batch, Record):
            kept = self.spool.reject(batch, body)
        elif batch.rec is not None:
            kept = self.spool.reject(batch.rec, body)
        else:
            kept = self.spool.set_aside(batch.seq, body, batch.points)
        log.error("store %s rejected batch %d (%d point(s), kept in %s): %s; %d point(s) rejected so far",
                  self.store.name, batch.seq, batch.points, kept or self.rejected_dir, message, self.rejected_points)

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
        if self.durable and not self._wait_committed(deadline):
            return False
        with self._cond:
            while self._queue or self.spool.records or self._busy or self._held:
                if self._stopped or self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is None else min(remaining, 0.5))
            return True

    def _wait_committed(self, deadline: float | None) -> bool:
        """Durable mode: wait until every batch handed over is on disk (or refused)."""
        with self._pending_cond:
            while self._pending or self._committing:
                if self._committer is None or not self._committer.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._pending_cond.wait(0.5 if remaining is None else min(remaining, 0.5))
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Stop accepting batches, write what the store takes within timeout_s, keep the rest on
        disk for the next start, stop the thread and close the store. True when nothing is left."""
        # Durable mode: what was handed over reaches the disk first (it may have been acknowledged).
        with self._pending_cond:
            self._commit_stop = True
            self._pending_cond.notify_all()
        if self._committer is not None:
            self._committer.join()
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
            self._held_to_disk()
            if self._held:  # the disk stayed full: what memory held ends with the process, counted
                points = sum(b.points for b in self._held)
                self.held_dropped_points += points
                self.spool.count_dropped(points, len(self._held))
                log.error("spool %s: the disk is full: %d batch(es), %d point(s) held in memory are lost at shutdown",
                          self.dir, len(self._held), points)
                self._held.clear()
                self._held_bytes = 0
        try:
            self.store.close()
        except Exception:
            log.exception("closing store %s", self.store.name)
        if not done and self.spool.records:
            log.warning("spool %s: %d batch(es), %d point(s) kept on disk for the next start",
                        self.dir, self.spool.records, self.spool.records_points)
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
                "spool_batches": self.spool.records,
                "spool_bytes": self.spool.bytes,
                "spool_points": self.spool.records_points,
                "held_batches": len(self._held),
                "held_bytes": self._held_bytes,
                "held_points": sum(b.points for b in self._held),
                "dropped_points": self.dropped_points,
                "dropped_batches": self.spool.dropped_batches,
                "rejected_points": self.rejected_points,
                "rejected_batches": self.spool.rejected_batches,
                "rejected_pruned_points": self.spool.rejected_pruned_points,
                "store_errors": self.store_errors,
                "refused_points": self.refused_points,
                "refused_batches": self.refused_batches,
                "commits": self.commits,
                "commit_batches": self.commit_batches,
                "commit_seconds_sum": self.commit_seconds_sum,
                "commit_seconds_max": self.commit_seconds_max,
                "store_up": self.backoff.failures == 0,
                "last_error": self.last_error,
            }

    def backlog_bytes(self) -> int:
        """Bytes handed over and not yet in the store: on disk (in durable mode every batch is) and,
        not durable, in memory."""
        with self._cond:
            memory = 0 if self.durable else self._queue_bytes + self._held_bytes
        return self.spool.bytes + memory

    @property
    def store_up(self) -> bool:
        """The last write succeeded (or none failed yet): the store is not away, nor refusing the credentials."""
        return self.backoff.failures == 0

    @property
    def dropped_points(self) -> int:
        return self.spool.dropped_points

    @property
    def rejected_points(self) -> int:
        return self.spool.rejected_points

    @property
    def spool_bytes(self) -> int:
        return self.spool.bytes

    @property
    def spool_batches(self) -> int:
        return self.spool.records
