"""The collector's degraded state: what keeps it from taking or storing data right now.

A full disk (the spool's, the state directory's, the embedded store's) or a corrupt store
never crashes the collector: the part that meets it calls `degrade(reason, message)` and
`recover(reason)` once it works again, and the collector stays up meanwhile. A reason several
parts meet (the store's full disk, met by the raw and the derived series' writers) is held by
each (`holder`) and lasts until every one that met it recovers: a small derived batch stored
ended the raw writer's episode while its batches still waited (degraded, recovered, degraded
again within 2 s, and ingest reopened meanwhile: found by the operator audit). Each reason is
logged once when it starts (then only counted: a full disk would log every request) and
once when it ends; `/metrics` shows `puewatch_degraded{reason=...}` (1 while it lasts) and
`puewatch_degraded_events{reason=...}` (how often it was met); systemd's STATUS names it.

While a reason in `BLOCKS_INGEST` lasts, ingest answers 503 with Retry-After before taking
anything; the spool's own reasons are decided batch by batch by the group commit (a batch
that fits is taken, so the collector recovers by itself as soon as there is room again).
A corrupt store, or one that refuses the collector's credentials (401/403: a wrong password
until the operator fixes it), does not block ingest: batches keep going to the spool, within
its bound, and are written once the store takes them again.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

__all__ = ["BLOCKS_INGEST", "REASONS", "Health"]

log = logging.getLogger("puewatch.collector.health")

REASONS = {
    "spool_full": "the raw spool reached its byte bound (spool_max_bytes)",
    "spool_disk_full": "the disk of the spool is full",
    "state_disk_full": "the disk of the state directory is full (pipeline checkpoint)",
    "state_unwritable": "the state directory cannot be written (pipeline checkpoint)",
    "store_disk_full": "the disk of the store is full",
    "store_corrupt": "the embedded store failed its integrity check",
    "derived_spool_disk_full": "the disk of the derived series' spool is full: they are held in memory (bounded)",
    "store_unauthorized": "the store refuses the collector's user, password or token (401/403)",
    "store_not_found": "the store has no such database or bucket (404): create it, or fix its name in the configuration",
    "store_unavailable": "the store does not answer (refused, timed out, 5xx): batches wait in the spool",
}
BLOCKS_INGEST = frozenset({"state_disk_full", "store_disk_full"})


class Health:
    """Thread-safe set of the reasons the collector is degraded for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}  # reason -> message of its first occurrence
        self.events: Counter[str] = Counter()  # every occurrence, by reason
        self.changes = 0  # bumped on every start or end of a reason (the main loop updates STATUS)
        self._holders: dict[str, set[object]] = {}  # reason -> the parts that met it and have not recovered

    def degrade(self, reason: str, message: str, holder: object = None) -> None:
        with self._lock:
            self.events[reason] += 1
            if holder is not None:
                self._holders.setdefault(reason, set()).add(holder)
            if reason in self._active:
                return
            self._active[reason] = message
            self.changes += 1
        log.error("degraded (%s): %s", reason, message)

    def recover(self, reason: str, holder: object = None) -> None:
        """The reason ends; where `holder` is given, only once no other part that met it still holds it."""
        if reason not in self._active:  # the hot path: one dict lookup, no lock
            return
        with self._lock:
            holders = self._holders.get(reason)
            if holder is not None and holders:
                holders.discard(holder)
                if holders:
                    return
            self._holders.pop(reason, None)
            if self._active.pop(reason, None) is None:
                return
            self.changes += 1
            n = self.events[reason]
        log.warning("recovered (%s) after %d occurrence(s) so far", reason, n)

    def blocking(self) -> str | None:
        """The message of a reason that keeps ingest from taking data (503), or None."""
        if not self._active:
            return None
        with self._lock:
            for reason, message in self._active.items():
                if reason in BLOCKS_INGEST:
                    return message
        return None

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)

    def status(self) -> str:
        """For sd_notify STATUS: empty when healthy."""
        active = self.active()
        return "DEGRADED: " + "; ".join(active) if active else ""
