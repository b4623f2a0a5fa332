"""The contracts every store meets (see collector/DESIGN.md, "Store").

A `Store` takes ns-precision line protocol bodies and either stores them, or says
why not in one of two ways, because the two call for opposite reactions:

- `StoreUnavailable`: the store could not be reached or is overloaded (connection
  refused/reset, timeout, 5xx, 429). The data is fine: keep it and retry later.
- `StoreRejected`: the store refused the data itself (4xx other than 429: bad
  line protocol, a field type conflict). Retrying the same bytes can never
  succeed: set it aside for the operator, and say why (the message is the
  store's own). Except where it refuses the writer, not the data
  (`refuses_writer`: 401, 403, and 404, no such database or bucket): the same
  bytes are written once the operator fixes the store or the configuration.

A `Reader` is what reports read: one numeric series at a time, as NumPy arrays,
so the kernels get contiguous int64 ns times and float64 values. A `TextReader`
also returns string fields (an agent's `gpu_info`: GPU name, serial, driver).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Reader", "Store", "StoreCorrupt", "StoreError", "StoreFull", "StoreRejected", "StoreUnavailable", "TextReader"]


class StoreError(Exception):
    """Base of the two store errors (never raised itself)."""


class StoreUnavailable(StoreError):
    """Connection refused/reset, timeout, 5xx or 429: the data is fine, retry later."""


class StoreFull(StoreUnavailable):
    """The store's disk is full: the data is fine, retry once there is room (the collector is degraded meanwhile)."""


class StoreCorrupt(StoreUnavailable):
    """The store failed its integrity check: it is never written on again; the data stays in the spool."""


class StoreRejected(StoreError):
    """4xx other than 429: the store refuses the data; the message says why (the store's own words).
    `status` is the HTTP status where there is one (401/403/404 refuse the writer, not the data)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refuses_writer(self) -> bool:
        """401/403: the store refuses the credentials; 404: it has no such database or bucket (dropped,
        not made yet, a name mistyped in the configuration). Not the data: the same bytes are written once
        the operator fixes the credentials, the store or the configuration, so the data is kept, never
        set aside (a dropped database set aside every acknowledged line, one request per line, and wrote
        none once it was back: found by the store audit)."""
        return self.status in (401, 403, 404)

    @property
    def health_reason(self) -> str:
        """The collector's degraded state while it refuses the writer (see collector.health)."""
        return "store_not_found" if self.status == 404 else "store_unauthorized"


@runtime_checkable
class Store(Protocol):
    name: str  # for logs and metrics, e.g. "influx1 http://127.0.0.1:8086 db=site"

    def write(self, body: bytes) -> None:
        """Store ns-precision line protocol; blocking; raises StoreUnavailable or StoreRejected."""
        ...

    # Optional (every built-in store has it; `StoreWriter` falls back to `write(batch.to_line_protocol())`):
    # def write_batch(self, batch: puewatch.core.batch.Batch) -> None: a typed batch, same errors.

    def close(self) -> None: ...


@runtime_checkable
class Reader(Protocol):
    def series(
        self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(time int64 ns ascending, value float64) of points with all `tags`, start_ns <= t < end_ns."""
        ...

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        """The distinct values of `tag` in `measurement`, sorted."""
        ...

    # Optional (both built-in readers have it; without it a report reads no reading beyond its window):
    # def neighbours(self, measurement, field, tags, before_ns, after_ns, *, values=None)
    #     -> ((t, v) | None, (t, v) | None): the last point of `field` before before_ns and the first at or
    #     after after_ns, in every series with `tags` taken together, however far away; with values
    #     (at_least, below | None), only a point whose value lies in that range.

    # Optional (both built-in readers have it; puewatch.jobs.ledger falls back to series by series):
    # def fields_by_series(self, measurement, kinds: dict[str, str], start_ns, end_ns)
    #     -> list[(tags, times int64 ascending, {field: column aligned with the times})]: every series of
    #     the measurement in one answer; kinds: field -> "number" (float64, NaN: absent) or "string"
    #     (object, None: absent); StoreRejected for a field of the other kind.


@runtime_checkable
class TextReader(Reader, Protocol):
    """A Reader that also returns string fields (both built-in readers are)."""

    def text_series(
        self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, list[str]]:
        """(time int64 ns ascending, values) of a string field; StoreRejected when the field holds numbers."""
        ...
