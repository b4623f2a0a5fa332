"""The embedded default store: one SQLite file, for demos and small sites.

Why SQLite (stdlib `sqlite3`):

- zero install: nothing to deploy, configure or secure beside the collector;
- crash-safe: WAL journal with synchronous=FULL, so a committed batch survives a
  kill or a power cut, and a half-written one is rolled back, never half there;
- auditable: one file that any `sqlite3` shell, DB browser or pandas can open and
  query with plain SQL, without puewatch (the schema is below);
- fast enough: a small site writes a few hundred points per second; one
  transaction per batch with `executemany` stores well over a hundred thousand
  points per second here (see tests/collector/stores/test_embedded.py, which
  measures it).

Schema:

    series(id INTEGER PRIMARY KEY, measurement TEXT, tagset TEXT, tags TEXT)
        tagset: the canonical tag set `k1=v1,k2=v2` (sorted by key, `,` `=` space
        backslash-escaped), unique per measurement; tags: the same as a JSON object.
    points(series_id, field, time_ns INTEGER, value REAL)
        PRIMARY KEY (series_id, field, time_ns): a point re-sent (a spool replayed
        after an outage) is stored once, and the last write wins, as in InfluxDB.

Only numbers are kept: integers and unsigned integers become REAL, booleans 1.0/0.0.
String fields cannot be stored here; they are counted (`skipped_string_fields`) and
logged, never silently lost. A batch with unparsable lines is written without them
and then rejected (StoreRejected naming the first bad line), like InfluxDB's
"partial write".
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from puewatch.errors import UserError
from puewatch.collector.lineparse import LineError, parse_line

from .base import StoreRejected, StoreUnavailable

log = logging.getLogger("puewatch.collector.stores.embedded")

__all__ = ["EmbeddedStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id          INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tagset      TEXT NOT NULL,
    tags        TEXT NOT NULL,
    UNIQUE (measurement, tagset)
);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL REFERENCES series(id),
    field     TEXT NOT NULL,
    time_ns   INTEGER NOT NULL,
    value     REAL,
    PRIMARY KEY (series_id, field, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_TAGSET_ESCAPE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\"})


def canonical_tagset(tags: dict[str, str]) -> str:
    """`k1=v1,k2=v2` sorted by key, every `,` `=` space and backslash escaped (so it is unambiguous)."""
    return ",".join(f"{k.translate(_TAGSET_ESCAPE)}={tags[k].translate(_TAGSET_ESCAPE)}" for k in sorted(tags))


class EmbeddedStore:
    """`Store` and `Reader` over one SQLite file."""

    def __init__(self, path: str | Path, *, raw_retention_s: float | None = None, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise UserError(f"embedded store: synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = Path(path)
        self.name = f"embedded {self.path}"
        self.raw_retention_s = raw_retention_s
        self.skipped_string_fields = 0
        self.points_written = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN/COMMIT below).
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise UserError(f"embedded store {self.path}: {exc}") from None
        self._series: dict[tuple[str, str], int] = {
            (m, ts): sid for sid, m, ts in self._db.execute("SELECT id, measurement, tagset FROM series")
        }

    # -- Store ----------------------------------------------------------------------------------

    def write(self, body: bytes) -> None:
        rows: list[tuple[int, str, int, float]] = []
        new_series: list[tuple[str, str, str]] = []
        bad: list[str] = []
        strings = 0
        now_ns = None
        series_ids = self._series
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise StoreRejected(f"{self.name}: body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for lineno, line in enumerate(text.split("\n"), 1):
                    if not line or line[0] == "#" or line.isspace():
                        continue
                    try:
                        p = parse_line(line)
                    except LineError as exc:
                        bad.append(f"line {lineno}: {exc}")
                        continue
                    tagset = canonical_tagset(p.tags) if p.tags else ""
                    sid = series_ids.get((p.measurement, tagset))
                    if sid is None:
                        cur = self._db.execute(
                            "INSERT INTO series (measurement, tagset, tags) VALUES (?, ?, ?)",
                            (p.measurement, tagset, json.dumps(p.tags, sort_keys=True, ensure_ascii=False)),
                        )
                        sid = cur.lastrowid
                        series_ids[(p.measurement, tagset)] = sid
                        new_series.append((p.measurement, tagset, ""))
                    t = p.time_ns
                    if t is None:
                        # InfluxDB stamps such lines with the server's clock; so do we.
                        now_ns = now_ns or time.time_ns()
                        t = now_ns
                    for field, value in p.fields.items():
                        if isinstance(value, str):
                            strings += 1
                            continue
                        rows.append((sid, field, t, float(value)))
                self._db.executemany(
                    "INSERT OR REPLACE INTO points (series_id, field, time_ns, value) VALUES (?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                for key in new_series:  # their ids were rolled back too
                    series_ids.pop(key[:2], None)
                # A locked or full database, an I/O error: the data is fine, try again later.
                raise StoreUnavailable(f"{self.name}: {exc}") from None
            self.points_written += len(rows)
            if strings:
                self.skipped_string_fields += strings
                log.warning("%s: %d string field value(s) not stored (numbers only); %d so far",
                            self.name, strings, self.skipped_string_fields)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise StoreRejected(f"{self.name}: partial write, {len(bad)} bad line(s) skipped: {bad[0]}{more}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- retention ------------------------------------------------------------------------------

    def prune(self, now_ns: int | None = None) -> int:
        """Delete points older than the raw retention (no-op without one); returns how many were deleted."""
        if not self.raw_retention_s:
            return 0
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.raw_retention_s * 1e9)
        with self._lock:
            cur = self._db.execute("DELETE FROM points WHERE time_ns < ?", (cutoff,))
            deleted = cur.rowcount
        if deleted:
            log.info("%s: pruned %d point(s) older than %.0f s", self.name, deleted, self.raw_retention_s)
        return deleted

    # -- Reader ---------------------------------------------------------------------------------

    def _series_ids(self, measurement: str, tags: dict[str, str]) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT id, tags FROM series WHERE measurement = ?", (measurement,)).fetchall()
        out = []
        for sid, tags_json in rows:
            have = json.loads(tags_json)
            if all(have.get(k) == v for k, v in tags.items()):
                out.append(sid)
        return out

    def series(
        self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(time int64 ns ascending, value float64) for start_ns <= t < end_ns of every series with `tags`."""
        ids = self._series_ids(measurement, tags)
        if not ids:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT time_ns, value FROM points WHERE series_id IN ({marks}) AND field = ? "
                "AND time_ns >= ? AND time_ns < ? ORDER BY time_ns",
                (*ids, field, int(start_ns), int(end_ns)),
            ).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        t = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        v = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows))
        return t, v

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT tags FROM series WHERE measurement = ?", (measurement,)).fetchall()
        return sorted({json.loads(r[0])[tag] for r in rows if tag in json.loads(r[0])})
