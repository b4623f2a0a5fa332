"""The embedded default store: one SQLite file, for demos and small sites.

Why SQLite (stdlib `sqlite3`):

- zero install: nothing to deploy, configure or secure beside the collector;
- crash-safe: WAL journal with synchronous=FULL, so a committed batch survives a
  kill or a power cut, and a half-written one is rolled back, never half there;
- auditable: one file that any `sqlite3` shell, DB browser or pandas can open and
  query without puewatch: series, times, field names and strings in plain SQL, a
  line's several numbers and a chunk's values as raw float64 (`numpy.frombuffer`; the
  schema is below);
- fast enough: a small site writes a few hundred points per second; one transaction per
  batch with `executemany`, one row per series and time, stores about 200,000 points per
  second on 2 slow cores (`puewatch bench store`; tests/collector/stores/test_embedded_store.py
  checks a floor).

Schema:

    series(id INTEGER PRIMARY KEY, measurement TEXT, tagset TEXT, tags TEXT)
        tagset: the canonical tag set `k1=v1,k2=v2` (sorted by key, `,` `=` space
        backslash-escaped), unique per measurement; tags: the same as a JSON object.
    lines(series_id, time_ns INTEGER, field_set INTEGER, vals)
        PRIMARY KEY (series_id, time_ns): a line's numeric fields (numbers, booleans) together,
        one row per series and time, as a line of line protocol holds them. `field_set` names
        them (table `field_sets`); `vals` holds their values in that order: a REAL when the set
        has one field, else a BLOB of float64 little-endian, 8 bytes a field, NaN where the line
        has no value for that field (`numpy.frombuffer(vals, "<f8")`). A point written again
        (a spool replayed after an outage) is stored once, and the last write wins, field by
        field as in InfluxDB: a field the new line lacks keeps its value.
    field_sets(id INTEGER PRIMARY KEY, names TEXT UNIQUE)
        A set of numeric field names in their `vals` order, as a JSON array (`["value", "raw"]`).
    points(series_id, field, time_ns INTEGER, value REAL)
        One row per point, PRIMARY KEY (series_id, field, time_ns): what stores before `lines`
        wrote. Read and compacted as before (a row there is older than any line), never
        written now.
    text_points(series_id, field, time_ns INTEGER, value TEXT)
        String fields (an agent's `gpu_info`: GPU name, serial, driver version), one row per
        point; read with `text_series()`.
    fields(measurement, field, kind)
        Each field's kind, `number` or `string`, fixed by its first write: as in
        InfluxDB, a line giving a field the other kind is refused (a partial write).
    field_types(measurement, field, type)
        Each field's InfluxDB type, `float`, `integer`, `unsigned`, `boolean` or `string`,
        as its first write gave it (a file from before this table: the first write since).
        What the collector's ingest check learns at start (`field_types()`), so that after
        a restart `ok=1i` is refused for a boolean `ok` exactly as before it, and what
        `values()` returns values as (a boolean as True/False, not 1.0/0.0). Ingest
        (collector/fieldtypes.py) is the one place that refuses a number of another
        type; the store itself tells numbers from strings only.
    chunks(series_id, field, t_first, t_last, n, times BLOB, vals BLOB)
        Older points, columnar: `n` points of one (series, field) with times
        t_first..t_last, `times` n int64 ns and `vals` n float64 (NaN: no value),
        both raw little-endian (`numpy.frombuffer(times, "<i8")`). At most
        CHUNK_POINTS points per chunk; the chunks of one (series, field) never
        overlap in time.

Why a row per line, not per point: SQLite's cost is per row (about 3.5 us here, most of a
write), and a line holds several fields (an SNMP reading two, an agent's GPU sample four, a
job ledger record nine numbers). A row per point stored about 120,000 points/s of SNMP
readings here, a row per line about 190,000 (`puewatch bench store`, same host).

Why chunks: a report over a year reads every reading of hundreds of meters
(a year of 1-minute data for 500 meters is 263 million points), and SQLite
hands out rows one Python tuple at a time: about 2 million a second here, over
three minutes for that year through `series()`. A chunk hands out 32,768 points
as two byte strings that NumPy reads without a copy: over 100 million points a
second (`puewatch bench report`).
Writes take typed batches (`write_batch()`, `puewatch.core.batch`: the collector's SNMP
readings and derived series), stored column by column without any text; line protocol
(`write()`, agents' bodies) is parsed once into the same columns by
`lineparse.parse_columns` (`puewatch bench store` measures both).
New points are lines (a batch is small and random),
and `compact()` moves lines (and rows) older than `compact_after_s` into chunks; the
collector calls `maintain()` (prune, then compact) every hour.
`write_columns()` writes whole arrays straight into chunks (an import, the
benchmark).

What a reader sees does not depend on the layout: `series()` returns the union
of chunks, rows and lines in time order, and for one (series, field, time) the last
write wins everywhere. A line always wins over a row, and a row over a chunk point at the
same time: lines and rows are only ever newer (`compact()` moves every one before its
horizon, and `write_columns()` takes the field's values in its time range out of them into
the chunks it writes), so a late point inside an already compacted range is a line until
the next `compact()` merges it into the chunk, replacing the old value.

Numbers: integers and unsigned integers become float64, booleans 1.0/0.0, so reports read
every number as float64; `field_types` keeps the type, and `values()` gives each value
back as it was written: booleans as True/False, integers as int (exact up to 2**53 in
magnitude: a float64 holds 53 bits; larger integers come back rounded to the nearest
float64, a documented limit of this store, docs/lineprotocol.md). Strings are
kept as they are, in `text_points` (never compacted; pruned with the rest), newlines,
backslashes and quotes included. A batch
with unparsable lines, or lines whose field has the other type, is written without
them and then rejected (StoreRejected naming the first bad line), like InfluxDB's
"partial write".
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from puewatch.errors import UserError
from puewatch.collector.lineparse import column_kind, parse_columns
from puewatch.core.batch import Batch, Block

from .base import StoreCorrupt, StoreFull, StoreRejected, StoreUnavailable

log = logging.getLogger("puewatch.collector.stores.embedded")

__all__ = ["CHUNK_POINTS", "EmbeddedStore"]

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
CREATE TABLE IF NOT EXISTS field_sets (
    id    INTEGER PRIMARY KEY,
    names TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS lines (
    series_id INTEGER NOT NULL REFERENCES series(id),
    time_ns   INTEGER NOT NULL,
    field_set INTEGER NOT NULL REFERENCES field_sets(id),
    vals      BLOB NOT NULL,
    PRIMARY KEY (series_id, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    series_id INTEGER NOT NULL REFERENCES series(id),
    field     TEXT NOT NULL,
    t_first   INTEGER NOT NULL,
    t_last    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    times     BLOB NOT NULL,
    vals      BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_by_time ON chunks (series_id, field, t_first);
CREATE TABLE IF NOT EXISTS text_points (
    series_id INTEGER NOT NULL REFERENCES series(id),
    field     TEXT NOT NULL,
    time_ns   INTEGER NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (series_id, field, time_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fields (
    measurement TEXT NOT NULL,
    field       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('number', 'string')),
    PRIMARY KEY (measurement, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS field_types (
    measurement TEXT NOT NULL,
    field       TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('float', 'integer', 'unsigned', 'boolean', 'string')),
    PRIMARY KEY (measurement, field)
) WITHOUT ROWID;
"""

# Points per chunk: 512 KiB of times and values, 23 days of 1-minute readings. A late point
# rewrites the chunk it falls in, so a chunk must stay small enough to rewrite at once.
CHUNK_POINTS = 32_768
# Rows moved into chunks per transaction: writers wait at most this long for compact().
COMPACT_BATCH = 4 * CHUNK_POINTS
# Rows older than this become chunks: late points (a spool replayed after an outage) mostly
# arrive before, and a row is cheaper to replace than a chunk.
DEFAULT_COMPACT_AFTER_S = 2 * 86_400.0

_SEP = 31  # ASCII unit separator: joins a series' texts in one answer (fields_by_series)
_TAGSET_ESCAPE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\"})


_tags_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode  # `series.tags`
# What the tag set or JSON text of a series escapes (JSON: `"`, backslash, control characters).
_SERIES_SPECIAL = re.compile(r'[,= \\"\x00-\x1f]')


def canonical_tagset(tags: dict[str, str]) -> str:
    """`k1=v1,k2=v2` sorted by key, every `,` `=` space and backslash escaped (so it is unambiguous)."""
    return ",".join(f"{k.translate(_TAGSET_ESCAPE)}={tags[k].translate(_TAGSET_ESCAPE)}" for k in sorted(tags))


def _series_texts(tags: dict[str, str]) -> tuple[str, str]:
    """A new series' `series.tagset` (`canonical_tagset`) and `series.tags` (JSON, keys sorted), at once:
    when nothing in the tags needs escaping (most tags), both are plain joins."""
    keys = sorted(tags)
    if _SERIES_SPECIAL.search("".join(keys) + "".join(tags.values())) is not None:
        return canonical_tagset(tags), _tags_json(tags)
    return (",".join([f"{k}={tags[k]}" for k in keys]),
            "{" + ", ".join([f'"{k}": "{tags[k]}"' for k in keys]) + "}")


class EmbeddedStore:
    """`Store` and `Reader` over one SQLite file."""

    def __init__(self, path: str | Path, *, raw_retention_s: float | None = None, synchronous: str = "FULL",
                 compact_after_s: float = DEFAULT_COMPACT_AFTER_S) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise UserError(f"embedded store: synchronous must be FULL or NORMAL, not {synchronous!r}")
        if not compact_after_s >= 0:
            raise UserError(f"embedded store: compact_after_s must be >= 0, not {compact_after_s!r}")
        self.path = Path(path)
        self.name = f"embedded {self.path}"
        self.raw_retention_s = raw_retention_s
        self.compact_after_s = compact_after_s
        self.points_written = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN/COMMIT below).
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            # A corrupt store is never written on: a write into damaged pages can spread the damage.
            self._corrupt: str | None = self._quick_check()
            if self._corrupt is not None:
                self._db.close()
                raise UserError(self._corrupt)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            if _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise UserError(self._corrupt_message(str(exc))) from None
            raise UserError(f"embedded store {self.path}: {exc}") from None
        self._series: dict[tuple[str, str], int] = {
            (m, ts): sid for sid, m, ts in self._db.execute("SELECT id, measurement, tagset FROM series")
        }
        self._series_top = max(self._series.values(), default=0)
        self._kinds: dict[str, dict[str, str]] = {}  # measurement -> field -> "number" / "string"
        self._typed: set[tuple[str, str]] = set()  # (measurement, field) with a row in field_types
        # What writes worked out once: (measurement, block tags' items) -> series id, and a block
        # shape (measurement, fields' names and dtypes) -> (field set id, numeric names, string names).
        self._sids: dict[tuple, int] = {}
        self._shapes: dict[tuple, tuple[int, tuple[str, ...], tuple[str, ...]]] = {}
        # A one-row block's plan, by (measurement, tags' items, field names), for numeric fields only:
        # (series id, field set id).
        self._plans: dict[tuple, tuple[int, int]] = {}
        # Field sets (table field_sets): id -> numeric field names in order, and back.
        self._sets: dict[int, tuple[str, ...]] = {}
        self._set_ids: dict[tuple[str, ...], int] = {}
        self._sets_top = 0
        # What the write transaction under way added to the in-memory views (undone on rollback).
        self._added_kinds: list[tuple[str, str]] = []
        self._added_types: list[tuple[str, str]] = []
        self._added_sets: list[int] = []
        try:
            self._register_old_fields()
        except sqlite3.Error as exc:
            raise UserError(f"embedded store {self.path}: {exc}") from None
        # Readers' catalogue: measurement -> (series ids, (tag, value) -> series ids), up to series id _catalog_top.
        self._catalog: dict[str, tuple[list[int], dict[tuple[str, str], list[int]]]] = {}
        self._catalog_top = 0

    # -- integrity ------------------------------------------------------------------------------

    def _corrupt_message(self, problem: str) -> str:
        return (f"embedded store {self.path} is corrupt ({problem}); it is not written on: restore it from a "
                f"backup, or move it away to start a new one (`sqlite3 {self.path} .recover` saves what is readable)")

    def _quick_check(self) -> str | None:
        """`PRAGMA quick_check` (every page and record, O(size), without index cross-checks): None when
        the store is sound, else the message saying it is corrupt."""
        try:
            rows = self._db.execute("PRAGMA quick_check(3)").fetchall()
        except sqlite3.Error as exc:
            if _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                return self._corrupt_message(str(exc))
            raise
        if rows == [("ok",)]:
            return None
        problems = [p.strip() for r in rows for p in str(r[0]).splitlines()]
        return self._corrupt_message("quick_check: " + "; ".join(p for p in problems if p and not p.startswith("***")))

    def _writable(self) -> None:
        """Refuse every write once the store was found corrupt (lock held)."""
        if self._corrupt is not None:
            raise StoreCorrupt(self._corrupt)

    def _failure(self, exc: sqlite3.Error, what: str = "") -> StoreUnavailable:
        """What an SQLite error means for the writer (lock held): a full disk, a corrupt store (checked
        with quick_check after any error but a busy or locked database), or a passing failure."""
        code = _code(exc)
        message = f"{self.name}: {what}{exc}"
        if code == sqlite3.SQLITE_FULL:
            return StoreFull(message)
        if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            try:
                self._corrupt = self._quick_check()
            except sqlite3.Error as check_exc:
                return StoreUnavailable(f"{message} (integrity check failed too: {check_exc})")
            if self._corrupt is not None:
                log.error("%s", self._corrupt)
                return StoreCorrupt(self._corrupt)
        return StoreUnavailable(message)

    # -- Store ----------------------------------------------------------------------------------

    def write(self, body: bytes) -> None:
        """Line protocol (ns): parsed into columns once (`parse_columns`), then stored as a typed batch."""
        try:
            body.decode()
        except UnicodeDecodeError as exc:
            raise StoreRejected(f"{self.name}: body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        blocks, bad = parse_columns(body)
        self._write_blocks(blocks, bad)

    def write_batch(self, batch: Batch) -> None:
        """A typed batch: its blocks go to SQLite as they are; line protocol parts are parsed once."""
        bad: list[tuple[int, str]] = []
        if bytes not in map(type, batch.parts):  # typed blocks only (the collector's own batches)
            self._write_blocks(zip(batch.parts, repeat(None), repeat(None)), bad)
            return
        blocks: list[tuple[Block, list[int] | None, dict[str, str] | None]] = []
        for part in batch.parts:
            if isinstance(part, Block):
                blocks.append((part, None, None))  # its columns' dtypes are its fields' types
                continue
            try:
                part.decode()
            except UnicodeDecodeError as exc:
                bad.append((0, f"line protocol is not valid UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            more, errors = parse_columns(part)
            blocks += more
            bad += errors
        self._write_blocks(blocks, bad)

    def _write_blocks(self, blocks: Iterable[tuple[Block, list[int] | None, dict[str, str] | None]],
                      bad: list[tuple[int, str]]) -> None:
        """One transaction for all blocks, in order; blocks of a field's other kind are refused as a whole
        (`bad` gets one entry per line, the line numbers those of the body the block was parsed from).
        Each block comes with its fields' InfluxDB types (parsed line protocol), or None: a typed
        block's column dtypes say them (`column_kind`).

        A block row's numeric fields become one `lines` row (its field set and its values), its
        strings `text_points` rows. What a block's series and field names need (the series id, the
        kind check, the field set) is worked out once and kept (a plan): the collector writes the
        same shapes every poll. One-row blocks with a plan (an SNMP poll is thousands) are stored
        together per field set, column by column (`_grouped_lines`). A (series, time) written twice
        is merged in the order of the blocks, whatever the order of the INSERTs (`_merge_lines`).
        """
        lines: list = []
        texts: list = []
        new_series: list[tuple] = []  # (id, measurement, tagset, tags JSON)
        # Shapes and series first seen in this transaction, kept after COMMIT.
        fresh_shapes: dict = {}
        fresh_sids: dict = {}  # (measurement, block tags' items) -> series id
        fresh_tagsets: dict = {}  # (measurement, canonical tag set) -> series id
        fresh_plans: dict = {}
        # One-row blocks of known plans, by field set: (block numbers, series ids, blocks), stored
        # together after the others, column by column.
        groups: dict[int, tuple[list[int], list[int], list]] = {}
        starts: list[tuple[int, int]] = []  # (block number, its first line in `lines`), other blocks
        written = 0
        sids = self._sids
        shapes = self._shapes
        plans = self._plans
        with self._lock:
            self._writable()
            self._undo_mark()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._read_sets()
                next_sid = None
                for i, (block, linenos, types) in enumerate(blocks):
                    cols = block.fields
                    t = block.time_ns
                    measurement = block.measurement
                    items = tuple(block.tags.items())
                    plan_key = (measurement, items, tuple(cols))
                    plan = plans.get(plan_key) or fresh_plans.get(plan_key)
                    one_row = t.shape[0] == 1
                    if plan is None or not one_row:
                        shape_key = (measurement, plan_key[2], tuple([col.dtype for col in cols.values()]))
                        shape = shapes.get(shape_key) or fresh_shapes.get(shape_key)
                        if shape is None:
                            shape = self._shape(measurement, cols, types)
                            if isinstance(shape, str):
                                bad += [(n, shape) for n in linenos] if linenos else [(0, shape)] * len(block)
                                continue
                            fresh_shapes[shape_key] = shape
                        set_id, numbers, strings = shape
                        series_key = (measurement, items)
                        sid = sids.get(series_key) or fresh_sids.get(series_key)
                        if sid is None:
                            tagset, tags_json = _series_texts(block.tags)
                            sid = self._series.get((measurement, tagset)) or fresh_tagsets.get((measurement, tagset))
                            if sid is None and next_sid is None:
                                # Another connection to the file (the collector has two) may have added it.
                                self._read_series()
                                sid = self._series.get((measurement, tagset))
                            if sid is None:
                                if next_sid is None:
                                    next_sid = self._db.execute(
                                        "SELECT coalesce(max(id), 0) + 1 FROM series").fetchone()[0]
                                sid, next_sid = next_sid, next_sid + 1
                                new_series.append((sid, measurement, tagset, tags_json))
                            fresh_tagsets[(measurement, tagset)] = sid
                            fresh_sids[series_key] = sid
                        if numbers and not strings:
                            plan = fresh_plans[plan_key] = (sid, set_id)
                    if plan is not None and one_row:  # an SNMP reading, every poll: stored by field set, below
                        g = groups.get(plan[1])
                        if g is None:
                            g = groups[plan[1]] = ([], [], [])
                        g[0].append(i)
                        g[1].append(plan[0])
                        g[2].append((block, linenos))
                        continue
                    starts.append((i, len(lines)))
                    if numbers:
                        blobs, present = _line_blobs([cols[name] for name in numbers])
                        if present is None:
                            lines.extend(zip(repeat(sid), t.tolist(), repeat(set_id), blobs))
                            written += len(blobs) * len(numbers)
                        else:
                            keep = present.any(axis=1)
                            lines.extend((sid, ti, set_id, b) for ti, b, k in zip(t.tolist(), blobs, keep.tolist()) if k)
                            written += int(np.count_nonzero(present))
                    for name in strings:
                        col = cols[name]
                        values = col.tolist()
                        texts.extend((sid, name, ti, x) for ti, x in zip(t.tolist(), values) if x is not None)
                        written += sum(1 for x in values if x is not None)
                grouped_from = len(lines)
                order: list[int] = []  # the block number of each line from here
                for set_id, (numbers_of, ids, members) in groups.items():
                    written += self._grouped_lines(set_id, numbers_of, ids, members, lines, order, bad)
                if new_series:
                    self._db.executemany("INSERT INTO series (id, measurement, tagset, tags) VALUES (?, ?, ?, ?)",
                                         new_series)
                if lines:
                    before = self._db.total_changes
                    self._db.executemany("INSERT OR IGNORE INTO lines (series_id, time_ns, field_set, vals) "
                                         "VALUES (?, ?, ?, ?)", lines)
                    if self._db.total_changes - before < len(lines):
                        # Some (series, time) were there already: write the lines again over them,
                        # in the order of their blocks.
                        bounds = [*(k for _, k in starts[1:]), grouped_from]
                        keys = [(b, k) for (b, first), last in zip(starts, bounds) for k in range(first, last)]
                        keys += [(b, k) for k, b in enumerate(order, grouped_from)]
                        self._merge_lines([lines[k] for _, k in sorted(keys)])
                if texts:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO text_points (series_id, field, time_ns, value) VALUES (?, ?, ?, ?)",
                        texts)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._undo()
                # A locked or full database, an I/O error: the data is fine, try again later.
                raise self._failure(exc) from None
            self._series.update(fresh_tagsets)
            self._series_top = max(self._series_top, next_sid - 1 if next_sid else 0)
            sids.update(fresh_sids)
            shapes.update(fresh_shapes)
            plans.update(fresh_plans)
            self.points_written += written
        if bad:
            bad.sort(key=lambda x: x[0])
            first = f"line {bad[0][0]}: {bad[0][1]}" if bad[0][0] else bad[0][1]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise StoreRejected(f"{self.name}: partial write, {len(bad)} bad line(s) skipped: {first}{more}")

    def _grouped_lines(self, set_id: int, numbers_of: list[int], ids: list[int], members: list, lines: list,
                       order: list[int], bad: list[tuple[int, str]]) -> int:
        """One-row blocks of one field set (known series and fields, numbers only) as lines, column by
        column: appended to `lines`, their block numbers to `order`; returns the values stored.
        A block giving a string where a number was is refused (`bad`), as the checks per block would."""
        names = self._sets[set_id]
        blocks = [b for b, _ in members]
        cols = [np.concatenate([b.fields[name] for b in blocks]) for name in names]
        if any(c.dtype == object for c in cols):
            wrong = np.zeros(len(blocks), bool)
            for c in cols:
                if c.dtype == object:
                    wrong |= np.array([isinstance(x, str) or x is None for x in c.tolist()])
            for (block, linenos), w in zip(members, wrong.tolist()):
                if w:
                    message = self._shape(block.measurement, block.fields, None)
                    bad += [(n, message) for n in linenos] if linenos else [(0, message)]
            keep = ~wrong
            if not keep.any():
                return 0
            members = [m for m, k in zip(members, keep.tolist()) if k]
            numbers_of = [n for n, k in zip(numbers_of, keep.tolist()) if k]
            ids = [n for n, k in zip(ids, keep.tolist()) if k]
            blocks = [b for b, _ in members]
            cols = [np.concatenate([b.fields[name] for b in blocks]).astype(np.float64) for name in names]
        t = np.concatenate([b.time_ns for b in blocks])
        vals, present = _line_blobs(cols)
        if present is None:
            lines.extend(zip(ids, t.tolist(), repeat(set_id), vals))
            order += numbers_of
            return len(vals) * len(names)
        rows = present.any(axis=1).tolist()
        lines.extend(line for line, r in zip(zip(ids, t.tolist(), repeat(set_id), vals), rows) if r)
        order += [n for n, r in zip(numbers_of, rows) if r]
        return int(np.count_nonzero(present))

    def _shape(self, measurement: str, cols: dict[str, np.ndarray], types: dict[str, str] | None
               ) -> tuple[int, tuple[str, ...], tuple[str, ...]] | str:
        """A block shape's (field set id, numeric field names, string field names), its fields' kinds and
        types recorded; or the conflict message when a field has the other kind (nothing recorded).
        Inside the write transaction; what it adds to the tables is undone in memory by `_undo`."""
        numbers, strings = [], []
        for name, col in cols.items():
            kind = "string" if col.dtype == object else "number"
            known = self._kinds.get(measurement, {}).get(name) or self._known_kind(measurement, name)
            if known is not None and known != kind:
                return f"field type conflict: {name!r} of {measurement!r} is a {known}, not a {kind}"
            (strings if kind == "string" else numbers).append(name)
        for name, col in cols.items():
            kind = "string" if col.dtype == object else "number"
            if self._kinds.get(measurement, {}).get(name) is None:
                self._db.execute("INSERT OR IGNORE INTO fields (measurement, field, kind) VALUES (?, ?, ?)",
                                 (measurement, name, kind))
                self._kinds.setdefault(measurement, {})[name] = kind
                self._added_kinds.append((measurement, name))
            if (measurement, name) not in self._typed:
                # The first write's type stays (another connection's, or an earlier one).
                self._db.execute("INSERT OR IGNORE INTO field_types (measurement, field, type) VALUES (?, ?, ?)",
                                 (measurement, name, types[name] if types else column_kind(col)))
                self._typed.add((measurement, name))
                self._added_types.append((measurement, name))
        return (self._set_id(tuple(numbers)) if numbers else 0), tuple(numbers), tuple(strings)

    # -- field sets ---------------------------------------------------------------------------

    def _read_sets(self) -> None:
        """Learn the field sets another connection to the file added (inside a transaction)."""
        for set_id, names in self._db.execute("SELECT id, names FROM field_sets WHERE id > ? ORDER BY id",
                                              (self._sets_top,)):
            key = tuple(json.loads(names))
            self._sets[set_id] = key
            self._set_ids[key] = set_id
            self._sets_top = set_id

    def _sets_with(self, fields: list[str]) -> list[int]:
        """The ids of the field sets holding any of `fields` (another connection's new ones learnt first)."""
        self._read_sets()
        return [i for i, names in self._sets.items() if any(f in names for f in fields)]

    def _set_id(self, names: tuple[str, ...]) -> int:
        """The id of a field set (numeric field names, in order), added when new (inside the write transaction)."""
        set_id = self._set_ids.get(names)
        if set_id is None:
            set_id = self._db.execute("INSERT INTO field_sets (names) VALUES (?)",
                                      (json.dumps(list(names), ensure_ascii=False),)).lastrowid
            self._sets[set_id] = names
            self._set_ids[names] = set_id
            self._sets_top = max(self._sets_top, set_id)
            self._added_sets.append(set_id)
        return set_id

    def _undo_mark(self) -> None:
        """A write transaction starts: what it adds to the in-memory views is listed from here."""
        self._added_kinds.clear()
        self._added_types.clear()
        self._added_sets.clear()

    def _undo(self) -> None:
        """Forget what a rolled-back transaction added to the in-memory views of `fields`, `field_types`
        and `field_sets`."""
        for m, f in self._added_kinds:
            self._kinds.get(m, {}).pop(f, None)
        for key in self._added_types:
            self._typed.discard(key)
        for set_id in self._added_sets:
            self._set_ids.pop(self._sets.pop(set_id), None)
        self._sets_top = max(self._sets, default=0)
        self._undo_mark()

    def _merge_lines(self, lines: list) -> None:
        """Write `lines` again, in order, over what the table holds at their (series, time): a field's
        last value wins, and fields the new line lacks keep their value (InfluxDB's rule for a
        point written twice). Only for a write that met lines already there (a spool replayed)."""
        db = self._db
        for sid, t, set_id, blob in lines:
            old = db.execute("SELECT field_set, vals FROM lines WHERE series_id = ? AND time_ns = ?",
                             (sid, t)).fetchone()
            if old is None:
                db.execute("INSERT INTO lines (series_id, time_ns, field_set, vals) VALUES (?, ?, ?, ?)",
                           (sid, t, set_id, blob))
                continue
            if old[0] == set_id and old[1] == blob:
                continue
            values = dict(zip(self._sets[old[0]], _line_values(old[1]).tolist()))
            for name, x in zip(self._sets[set_id], _line_values(blob).tolist()):
                if x == x:  # NaN: the new line has no value for it
                    values[name] = x
            merged = self._set_id(tuple(values))
            db.execute("UPDATE lines SET field_set = ?, vals = ? WHERE series_id = ? AND time_ns = ?",
                       (merged, _line_vals(np.array(list(values.values()))), sid, t))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- columnar writes ----------------------------------------------------------------------

    def write_columns(self, measurement: str, tags: dict[str, str], field: str, t_ns, values) -> int:
        """Store whole arrays of one series' field straight into chunks (an import); returns the points stored.

        `t_ns`: int64 ns in any order; `values`: float64 (NaN: no value). The last write wins:
        over rows and chunk points already stored at the same times, and within the arrays
        (of two equal times, the later one in the arrays). StoreRejected for bad arrays,
        StoreUnavailable when SQLite fails (nothing is stored then).
        """
        if not measurement or not field:
            raise StoreRejected(f"{self.name}: write_columns: measurement and field must not be empty")
        if not all(isinstance(k, str) and isinstance(v, str) and k for k, v in tags.items()):
            raise StoreRejected(f"{self.name}: write_columns: tags must map non-empty names to strings")
        t = np.asarray(t_ns)
        v = np.asarray(values)
        if t.ndim != 1 or v.ndim != 1 or t.size != v.size:
            raise StoreRejected(f"{self.name}: write_columns: times and values must be 1-D arrays of one length, "
                                f"got shapes {t.shape} and {v.shape}")
        if t.dtype.kind not in "iu" or (t.dtype == np.uint64 and t.size and t.max() > np.iinfo(np.int64).max):
            raise StoreRejected(f"{self.name}: write_columns: times must be int64 ns, got dtype {t.dtype}")
        if v.dtype.kind not in "biuf":
            raise StoreRejected(f"{self.name}: write_columns: values must be numbers, got dtype {v.dtype}")
        if t.size == 0:
            return 0
        t = t.astype(np.int64, copy=False)
        written_type = column_kind(v)  # the type a new field gets (its values are kept as float64)
        v = v.astype(np.float64, copy=False)
        if t.size > 1 and not bool(np.all(t[1:] > t[:-1])):
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
            last = np.append(t[1:] != t[:-1], True)  # the last of equal times wins
            t, v = t[last], v[last]
        tagset = canonical_tagset(tags) if tags else ""
        key = (measurement, tagset)
        with self._lock:
            self._writable()
            created = False
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if key not in self._series:
                    self._read_series()  # another connection to the file may have added it
                sid = self._series.get(key)
                if sid is None:
                    sid = self._db.execute(
                        "INSERT INTO series (measurement, tagset, tags) VALUES (?, ?, ?)",
                        (measurement, tagset, _tags_json(tags)),
                    ).lastrowid
                    created = True
                self._series[key] = sid
                kind = self._kinds.get(measurement, {}).get(field) or self._known_kind(measurement, field)
                if kind == "string":
                    raise StoreRejected(f"{self.name}: write_columns: field type conflict: {field!r} of "
                                        f"{measurement!r} is a string, not a number")
                if kind is None:
                    self._db.execute("INSERT OR IGNORE INTO fields (measurement, field, kind) VALUES (?, ?, 'number')",
                                     (measurement, field))
                    self._db.execute("INSERT OR IGNORE INTO field_types (measurement, field, type) VALUES (?, ?, ?)",
                                     (measurement, field, written_type))
                lo, hi = int(t[0]), int(t[-1])
                rows = self._db.execute(
                    "SELECT time_ns, value FROM points WHERE series_id = ? AND field = ? AND time_ns >= ? AND time_ns <= ? "
                    "ORDER BY time_ns", (sid, field, lo, hi)).fetchall()
                # Rows and lines in the range go into the chunks too (they would win over the new points).
                rt, rv = _columns(rows)
                self._db.execute("DELETE FROM points WHERE series_id = ? AND field = ? AND time_ns >= ? "
                                 "AND time_ns <= ?", (sid, field, lo, hi))
                _, rt, rv = _newest((np.full(rt.size, sid), rt, rv), self._take_from_lines(sid, field, lo, hi))
                if rt.size:
                    older = ~_in_sorted(rt, t)
                    t, v = _union(rt[older], rv[older], t, v)
                self._merge_chunks(sid, field, t, v)
                self._db.execute("COMMIT")
            except StoreRejected:
                self._rollback()
                if created:
                    self._series.pop(key, None)
                raise
            except sqlite3.Error as exc:
                self._rollback()
                if created:
                    self._series.pop(key, None)
                raise self._failure(exc) from None
            self._kinds.setdefault(measurement, {})[field] = "number"
        self.points_written += int(t.size)
        return int(t.size)

    def field_kinds(self) -> dict[tuple[str, str], str]:
        """(measurement, field) -> "number" or "string": every field the file holds, for the ingest
        check at start (a write of the other kind is refused with 400, not dropped by the store)."""
        return {(m, f): k for m, f, k in self._db.execute("SELECT measurement, field, kind FROM fields")}

    def field_types(self) -> dict[tuple[str, str], str]:
        """(measurement, field) -> InfluxDB type (`float`, `integer`, `unsigned`, `boolean`, `string`) of every
        field the file holds, for the ingest check at start; `number` for a field of a file from before
        `field_types` not written since (its kind of number is unknown: any number is taken)."""
        with self._lock:
            rows = self._db.execute("SELECT f.measurement, f.field, coalesce(t.type, f.kind) FROM fields f "
                                    "LEFT JOIN field_types t USING (measurement, field)").fetchall()
        return {(m, f): k for m, f, k in rows}

    def field_type(self, measurement: str, field: str) -> str | None:
        """One field's type as `field_types()` gives it; None when the file has no such field."""
        with self._lock:
            row = self._db.execute("SELECT coalesce(t.type, f.kind) FROM fields f LEFT JOIN field_types t "
                                   "USING (measurement, field) WHERE f.measurement = ? AND f.field = ?",
                                   (measurement, field)).fetchone()
        return None if row is None else row[0]

    def _known_kind(self, measurement: str, field: str) -> str | None:
        """A field's type as another connection to the file may have recorded it (and remember it)."""
        row = self._db.execute("SELECT kind FROM fields WHERE measurement = ? AND field = ?",
                               (measurement, field)).fetchone()
        if row is None:
            return None
        self._kinds.setdefault(measurement, {})[field] = row[0]
        return row[0]

    def _register_old_fields(self) -> None:
        """Record the fields of a file written before `fields` existed (numbers only then): once, by index seeks."""
        if self._db.execute("SELECT 1 FROM fields LIMIT 1").fetchone() or not self._series:
            return
        found: set[tuple[str, str]] = set()
        for (measurement, _tagset), sid in self._series.items():
            for table in ("points", "chunks"):
                field = ""
                while (row := self._db.execute(f"SELECT field FROM {table} WHERE series_id = ? AND field > ? "
                                               "ORDER BY field LIMIT 1", (sid, field)).fetchone()) is not None:
                    field = row[0]
                    found.add((measurement, field))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO fields (measurement, field, kind) VALUES (?, ?, 'number')",
                                 sorted(found))
            self._db.execute("COMMIT")

    def _read_series(self) -> None:
        """Learn the series another connection to the file added."""
        for sid, m, ts in self._db.execute("SELECT id, measurement, tagset FROM series WHERE id > ?",
                                           (self._series_top,)):
            self._series[(m, ts)] = sid
            self._series_top = max(self._series_top, sid)

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _take_from_lines(self, sid: int, field: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Take `field` out of the series' lines lo <= t <= hi (inside the write transaction): returns
        (series ids, times, values) of the values it held; a line left without any value is deleted."""
        wanted = self._sets_with([field])
        if not wanted:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
        rows = self._db.execute(
            f"SELECT series_id, time_ns, field_set, vals FROM lines WHERE series_id = ? AND field_set IN "
            f"({','.join('?' * len(wanted))}) AND time_ns >= ? AND time_ns <= ? ORDER BY time_ns",
            (sid, *wanted, lo, hi)).fetchall()
        for _, t, set_id, blob in rows:
            vals = _line_values(blob).copy()
            vals[self._sets[set_id].index(field)] = np.nan
            if np.isnan(vals).all():
                self._db.execute("DELETE FROM lines WHERE series_id = ? AND time_ns = ?", (sid, t))
            else:
                self._db.execute("UPDATE lines SET vals = ? WHERE series_id = ? AND time_ns = ?",
                                 (_line_vals(vals), sid, t))
        return _Lines(rows).field(field, self._sets)

    def _merge_chunks(self, sid: int, field: str, t: np.ndarray, v: np.ndarray) -> None:
        """Merge sorted, unique (t, v) into the chunks of (sid, field); (t, v) win at equal times.

        Inside a write transaction. Takes the chunks overlapping [t[0], t[-1]] and, to fill it
        rather than start a small chunk, the last chunk before t[0] when it is not full; writes
        the union back in chunks of CHUNK_POINTS (the last one may be shorter). The chunks
        stay disjoint: any chunk not taken lies wholly before or after all the taken ones.
        """
        db = self._db
        lo, hi = int(t[0]), int(t[-1])
        old = db.execute(
            "SELECT rowid, times, vals FROM chunks WHERE series_id = ? AND field = ? AND t_last >= ? AND t_first <= ? "
            "ORDER BY t_first", (sid, field, lo, hi)).fetchall()
        prev = db.execute(
            "SELECT rowid, times, vals, n FROM chunks WHERE series_id = ? AND field = ? AND t_first < ? "
            "ORDER BY t_first DESC LIMIT 1", (sid, field, lo)).fetchone()
        if prev is not None and prev[3] < CHUNK_POINTS and not (old and old[0][0] == prev[0]):
            old.insert(0, prev[:3])
        if old:
            ct = np.concatenate([_decode_times(r[1]) for r in old])
            cv = np.concatenate([_decode_values(r[2]) for r in old])
            if ct[-1] < lo:  # appending (what compact() does every time): no sort
                t, v = np.concatenate((ct, t)), np.concatenate((cv, v))
            else:
                keep = ~_in_sorted(ct, t)
                t, v = _union(ct[keep], cv[keep], t, v)
            db.executemany("DELETE FROM chunks WHERE rowid = ?", [(r[0],) for r in old])
        db.executemany(
            "INSERT INTO chunks (series_id, field, t_first, t_last, n, times, vals) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((sid, field, int(t[i]), int(t[min(i + CHUNK_POINTS, t.size) - 1]), int(min(CHUNK_POINTS, t.size - i)),
              t[i : i + CHUNK_POINTS].astype("<i8").tobytes(), v[i : i + CHUNK_POINTS].astype("<f8").tobytes())
             for i in range(0, t.size, CHUNK_POINTS)),
        )

    def compact(self, now_ns: int | None = None, *, horizon_ns: int | None = None) -> int:
        """Move rows older than `compact_after_s` (or before `horizon_ns`) into chunks; returns the points moved.

        One (series, field) at a time, at most COMPACT_BATCH rows per transaction, so writers
        (this object's, or another connection's) wait for one short transaction at most.
        A reader sees a point either as a row or in a chunk, never both or neither (a
        transaction moves it; `series()` reads in one transaction).
        """
        if horizon_ns is None:
            now_ns = time.time_ns() if now_ns is None else now_ns
            horizon_ns = now_ns - int(self.compact_after_s * 1e9)
        horizon_ns = int(horizon_ns)
        with self._lock:
            self._writable()
        try:
            moved = 0
            for sid, field in self._old_rows(horizon_ns):
                while True:
                    with self._lock:
                        try:
                            self._db.execute("BEGIN IMMEDIATE")
                            rows = self._db.execute(
                                "SELECT time_ns, value FROM points WHERE series_id = ? AND field = ? AND time_ns < ? "
                                "ORDER BY time_ns LIMIT ?", (sid, field, horizon_ns, COMPACT_BATCH)).fetchall()
                            if rows:
                                t, v = _columns(rows)
                                self._merge_chunks(sid, field, t, v)
                                # Every row in [t[0], t[-1]] was read (a prefix in time order).
                                self._db.execute(
                                    "DELETE FROM points WHERE series_id = ? AND field = ? AND time_ns >= ? AND time_ns <= ?",
                                    (sid, field, int(t[0]), int(t[-1])))
                            self._db.execute("COMMIT")
                        except BaseException:
                            self._rollback()
                            raise
                    moved += len(rows)
                    if len(rows) < COMPACT_BATCH:
                        break
            for sid in self._old_lines(horizon_ns):
                while True:
                    with self._lock:
                        try:
                            self._db.execute("BEGIN IMMEDIATE")
                            self._read_sets()
                            widest = max((len(names) for names in self._sets.values()), default=1)
                            lines = _Lines(self._db.execute(
                                "SELECT series_id, time_ns, field_set, vals FROM lines WHERE series_id = ? "
                                "AND time_ns < ? ORDER BY time_ns LIMIT ?",
                                (sid, horizon_ns, max(1, COMPACT_BATCH // widest))).fetchall())
                            for field in lines.names(self._sets):
                                _, t, v = lines.field(field, self._sets)
                                if t.size:
                                    self._merge_chunks(sid, field, t, v)
                                    moved += int(t.size)
                            if lines.rows:
                                # Every line in [t[0], t[-1]] was read (a prefix in time order).
                                self._db.execute("DELETE FROM lines WHERE series_id = ? AND time_ns >= ? "
                                                 "AND time_ns <= ?", (sid, int(lines.t[0]), int(lines.t[-1])))
                            self._db.execute("COMMIT")
                        except BaseException:
                            self._rollback()
                            raise
                    if len(lines.rows) < max(1, COMPACT_BATCH // widest):
                        break
        except sqlite3.Error as exc:
            with self._lock:
                raise self._failure(exc, "compact: ") from None
        if moved:
            log.info("%s: compacted %d point(s) into chunks", self.name, moved)
        return moved

    def _old_rows(self, horizon_ns: int) -> Iterator[tuple[int, str]]:
        """(series id, field) of the rows before horizon_ns, found by index seeks, each under the lock briefly.

        (`SELECT DISTINCT ... WHERE time_ns < ?` would scan every row, holding the lock,
        and the rows of a store from before chunks are a year's worth.)
        """
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM series ORDER BY id")]
        for sid in ids:
            field = ""
            while True:
                with self._lock:
                    row = self._db.execute("SELECT field FROM points WHERE series_id = ? AND field > ? "
                                           "ORDER BY field LIMIT 1", (sid, field)).fetchone()
                    if row is None:
                        break
                    field = row[0]
                    old = self._db.execute("SELECT 1 FROM points WHERE series_id = ? AND field = ? AND time_ns < ? "
                                           "LIMIT 1", (sid, field, horizon_ns)).fetchone()
                if old is not None:
                    yield sid, field

    def _old_lines(self, horizon_ns: int) -> Iterator[int]:
        """Series ids with lines before horizon_ns, found by index seeks, each under the lock briefly."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM series ORDER BY id")]
        for sid in ids:
            with self._lock:
                old = self._db.execute("SELECT 1 FROM lines WHERE series_id = ? AND time_ns < ? LIMIT 1",
                                       (sid, horizon_ns)).fetchone()
            if old is not None:
                yield sid

    def maintain(self, now_ns: int | None = None) -> dict[str, int]:
        """The periodic upkeep (the collector calls it every hour): `prune()`, then `compact()`."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        return {"pruned": self.prune(now_ns), "compacted": self.compact(now_ns)}

    # -- retention ------------------------------------------------------------------------------

    def prune(self, now_ns: int | None = None) -> int:
        """Delete points older than the raw retention (no-op without one), rows and inside chunks; returns how many."""
        if not self.raw_retention_s:
            return 0
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.raw_retention_s * 1e9)
        with self._lock:
            self._writable()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                deleted = self._db.execute("DELETE FROM points WHERE time_ns < ?", (cutoff,)).rowcount
                deleted += sum(int(np.count_nonzero(~np.isnan(_line_values(r[0])))) for r in self._db.execute(
                    "SELECT vals FROM lines WHERE time_ns < ?", (cutoff,)))
                self._db.execute("DELETE FROM lines WHERE time_ns < ?", (cutoff,))
                deleted += self._db.execute("DELETE FROM text_points WHERE time_ns < ?", (cutoff,)).rowcount
                deleted += self._db.execute("SELECT coalesce(sum(n), 0) FROM chunks WHERE t_last < ?",
                                            (cutoff,)).fetchone()[0]
                self._db.execute("DELETE FROM chunks WHERE t_last < ?", (cutoff,))
                # A chunk across the cutoff keeps its newer part.
                for rowid, tb, vb in self._db.execute(
                        "SELECT rowid, times, vals FROM chunks WHERE t_first < ? AND t_last >= ?", (cutoff, cutoff)
                ).fetchall():
                    t, v = _decode_times(tb), _decode_values(vb)
                    k = int(np.searchsorted(t, cutoff, side="left"))
                    self._db.execute("UPDATE chunks SET t_first = ?, n = ?, times = ?, vals = ? WHERE rowid = ?",
                                     (int(t[k]), int(t.size - k), t[k:].astype("<i8").tobytes(),
                                      v[k:].astype("<f8").tobytes(), rowid))
                    deleted += k
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._failure(exc, "prune: ") from None
        if deleted:
            log.info("%s: pruned %d point(s) older than %.0f s", self.name, deleted, self.raw_retention_s)
        return deleted

    # -- Reader ---------------------------------------------------------------------------------

    def _series_ids(self, measurement: str, tags: dict[str, str]) -> list[int]:
        """The series of `measurement` having all `tags`, from a catalogue read once (and as series are added).

        A report asks for hundreds of series of one measurement (`snmp_reading`): matching
        them against parsed tags kept in memory, not parsing every series' JSON per question.
        """
        with self._lock:
            top = self._db.execute("SELECT coalesce(max(id), 0) FROM series").fetchone()[0]
            if top != self._catalog_top:
                for sid, m, tags_json in self._db.execute(
                        "SELECT id, measurement, tags FROM series WHERE id > ? ORDER BY id", (self._catalog_top,)):
                    entry = self._catalog.setdefault(m, ([], {}))
                    entry[0].append(sid)
                    for kv in json.loads(tags_json).items():
                        entry[1].setdefault(kv, []).append(sid)
                self._catalog_top = top
            entry = self._catalog.get(measurement)
            if entry is None:
                return []
            if not tags:
                return list(entry[0])
            sets = [entry[1].get(kv, ()) for kv in tags.items()]
        out = set(min(sets, key=len))
        for s in sets:
            out.intersection_update(s)
        return sorted(out)

    def series(
        self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(time int64 ns ascending, value float64) for start_ns <= t < end_ns of every series with `tags`.

        Chunks and rows together, read in one transaction (a concurrent `compact()` moves
        points between them); at a time held by both, the row wins (it is the newer write).
        """
        ids = self._series_ids(measurement, tags)
        if not ids:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        self._check_kind(measurement, field, "number")
        lo, hi = int(start_ns), int(end_ns)
        with self._lock:
            try:
                self._db.execute("BEGIN")
                merged = self._numbers_by_series(ids, field, lo, hi)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"{self.name}: {exc}") from None
        parts = list(merged.values())
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        if len(parts) == 1:
            return parts[0]
        t = np.concatenate([p[0] for p in parts])
        v = np.concatenate([p[1] for p in parts])
        order = np.argsort(t, kind="stable")
        return t[order], v[order]

    def series_read(self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int
                    ) -> list[dict[str, str]]:
        """The tags of each series with `tags` that holds a point of `field` in start_ns <= t < end_ns, where
        more than one series has them (else [], without reading: one series is never read as two)."""
        ids = self._series_ids(measurement, tags)
        if len(ids) < 2:
            return []
        self._check_kind(measurement, field, "number")
        with self._lock:
            try:
                self._db.execute("BEGIN")
                merged = self._numbers_by_series(ids, field, int(start_ns), int(end_ns))
                held = [sid for sid, (t, _) in merged.items() if t.size]
                found = [json.loads(self._db.execute("SELECT tags FROM series WHERE id = ?", (sid,)).fetchone()[0])
                         for sid in sorted(held)]
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"{self.name}: {exc}") from None
        return found if len(found) > 1 else []

    def _numbers_by_series(self, ids: list[int], field: str, lo: int, hi: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """A numeric field's points lo <= t < hi per series: its chunks, rows and lines merged (the newest wins)."""
        return self._numbers_by_field(ids, [field], lo, hi)[field]

    def _numbers_by_field(self, ids: list[int], fields: list[str], lo: int, hi: int
                          ) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """Numeric fields' points lo <= t < hi, field -> series id -> (times, values): chunks, then the
        rows of `points` (a file from before `lines`), then `lines`, the newest winning at a time held
        twice. The lines are read once for all the fields.

        Called inside the caller's transaction, under the lock (a concurrent `compact()` moves
        points between the tables).
        """
        marks = ",".join("?" * len(ids))
        wanted = self._sets_with(fields)
        lines = _Lines([])
        if wanted:
            lines = _Lines(self._db.execute(
                f"SELECT series_id, time_ns, field_set, vals FROM lines WHERE series_id IN ({marks}) "
                f"AND field_set IN ({','.join('?' * len(wanted))}) AND time_ns >= ? AND time_ns < ? "
                "ORDER BY series_id, time_ns", (*ids, *wanted, lo, hi)).fetchall())
        out = {}
        for field in fields:
            chunks = self._db.execute(
                f"SELECT series_id, times, vals FROM chunks WHERE series_id IN ({marks}) AND field = ? "
                "AND t_last >= ? AND t_first < ? ORDER BY series_id, t_first", (*ids, field, lo, hi)).fetchall()
            rows = self._db.execute(
                f"SELECT series_id, time_ns, value FROM points WHERE series_id IN ({marks}) AND field = ? "
                "AND time_ns >= ? AND time_ns < ? ORDER BY series_id, time_ns", (*ids, field, lo, hi)).fetchall()
            legacy = (np.fromiter((r[0] for r in rows), np.int64, len(rows)), *_columns([r[1:] for r in rows]))
            out[field] = _merge_by_series(chunks, _newest(legacy, lines.field(field, self._sets)), lo, hi)
        return out

    def _check_kind(self, measurement: str, field: str, kind: str) -> None:
        with self._lock:
            known = self._kinds.get(measurement, {}).get(field) or self._known_kind(measurement, field)
        if known is not None and known != kind:
            other = "strings" if known == "string" else "numbers"
            raise StoreRejected(f"{self.name}: {measurement}.{field} holds {other}, not {kind}s")

    def text_series(
        self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, list[str]]:
        """(time int64 ns ascending, values) of a string field for start_ns <= t < end_ns of every series with `tags`."""
        ids = self._series_ids(measurement, tags)
        if not ids:
            return np.empty(0, np.int64), []
        self._check_kind(measurement, field, "string")
        marks = ",".join("?" * len(ids))
        with self._lock:
            try:
                rows = self._db.execute(
                    f"SELECT time_ns, value FROM text_points WHERE series_id IN ({marks}) AND field = ? "
                    "AND time_ns >= ? AND time_ns < ? ORDER BY time_ns", (*ids, field, int(start_ns), int(end_ns))
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.name}: {exc}") from None
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [r[1] for r in rows]

    def fields_by_series(self, measurement: str, kinds: dict[str, str], start_ns: int, end_ns: int
                         ) -> list[tuple[dict[str, str], np.ndarray, dict[str, np.ndarray]]]:
        """Every series of `measurement` with a point of one of `kinds` (field -> "number" or "string")
        in start_ns <= t < end_ns: (tags, times ascending, field -> column aligned with the times).

        One query per field for the whole measurement, not one per series and field: a site's job
        ledger is thousands of series. A number column is float64 (NaN where the row lacks the
        field), a string column an object array (None where it lacks it); a field of the other
        kind raises StoreRejected, as `series` and `text_series` do.
        """
        ids = self._series_ids(measurement, {})
        if not ids:
            return []
        for name, kind in kinds.items():
            self._check_kind(measurement, name, kind)
        lo, hi = int(start_ns), int(end_ns)
        marks = ",".join("?" * len(ids))
        per_field: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        with self._lock:
            try:
                self._db.execute("BEGIN")
                for name, kind in kinds.items():
                    if kind == "string":  # numbers: all fields at once, below
                        # One row per series, its times and texts joined: a row per point costs Python
                        # objects per point (most of the read's time), two joined strings split in C do not.
                        rows = self._db.execute(
                            f"SELECT series_id, count(*), group_concat(time_ns), group_concat(value, char({_SEP})) "
                            f"FROM text_points WHERE series_id IN ({marks}) AND field = ? AND time_ns >= ? AND time_ns < ? "
                            "GROUP BY series_id", (*ids, name, lo, hi)).fetchall()
                        per_field[name] = got = {}
                        for sid, n, times, texts in rows:
                            values = texts.split(chr(_SEP))
                            if len(values) != n:  # a text holding the separator: read that series point by point
                                values = [r[0] for r in self._db.execute(
                                    "SELECT value FROM text_points WHERE series_id = ? AND field = ? AND time_ns >= ? "
                                    "AND time_ns < ? ORDER BY time_ns", (sid, name, lo, hi))]
                                times = ",".join(str(r[0]) for r in self._db.execute(
                                    "SELECT time_ns FROM text_points WHERE series_id = ? AND field = ? AND time_ns >= ? "
                                    "AND time_ns < ? ORDER BY time_ns", (sid, name, lo, hi)))
                            t = np.fromstring(times, dtype=np.int64, sep=",")
                            v = np.empty(n, object)
                            v[:] = values
                            if n > 1 and not bool(np.all(t[1:] > t[:-1])):  # SQL leaves the aggregate's order open
                                order = np.argsort(t, kind="stable")
                                t, v = t[order], v[order]
                            got[sid] = (t, v)
                        continue
                numbers = [name for name, kind in kinds.items() if kind != "string"]
                if numbers:
                    per_field.update(self._numbers_by_field(ids, numbers, lo, hi))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(f"{self.name}: {exc}") from None
            found = sorted({sid for f in per_field.values() for sid in f})
            tags_of = {sid: json.loads(tags) for chunk in range(0, len(found), 500) for sid, tags in self._db.execute(
                f"SELECT id, tags FROM series WHERE id IN ({','.join('?' * len(found[chunk:chunk + 500]))})",
                found[chunk:chunk + 500])}
        out = []
        for sid in sorted(tags_of):
            times = [f[sid][0] for f in per_field.values() if sid in f]
            # The agents write a record's fields together: mostly every field has the same times.
            same = all(x.size == times[0].size and np.array_equal(x, times[0]) for x in times[1:])
            t = times[0] if same else np.unique(np.concatenate(times))
            fields: dict[str, np.ndarray] = {}
            for name, kind in kinds.items():
                col = np.full(t.size, None, object) if kind == "string" else np.full(t.size, np.nan)
                if sid in per_field[name]:
                    ft, fv = per_field[name][sid]
                    col[np.searchsorted(t, ft)] = fv
                fields[name] = col
            out.append((tags_of[sid], t, fields))
        return out

    def values(
        self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, list]:
        """(time int64 ns ascending, values) of any field, each value as its type was written: bool for a
        boolean, int for an integer or unsigned, float, str. For tools and audits that read what was
        written (reports read numbers with `series()`, as float64)."""
        kind = self.field_type(measurement, field)
        if kind == "string":
            return self.text_series(measurement, field, tags, start_ns, end_ns)
        t, v = self.series(measurement, field, tags, start_ns, end_ns)
        if kind == "boolean":
            return t, [x != 0.0 for x in v.tolist()]
        if kind in ("integer", "unsigned"):
            return t, [int(x) for x in v.tolist()]
        return t, v.tolist()

    def time_range(self, measurement: str, field: str, tags: dict[str, str]) -> tuple[int, int] | None:
        """(first, last) time in ns of the points of `field` in every series with `tags`, or None when there are none
        (a report over a period without data names where the data lies)."""
        ids = self._series_ids(measurement, tags)
        if not ids:
            return None
        marks = ",".join("?" * len(ids))
        with self._lock:
            try:
                c = self._db.execute(f"SELECT min(t_first), max(t_last) FROM chunks WHERE series_id IN ({marks}) "
                                     "AND field = ?", (*ids, field)).fetchone()
                r = self._db.execute(f"SELECT min(time_ns), max(time_ns) FROM points WHERE series_id IN ({marks}) "
                                     "AND field = ?", (*ids, field)).fetchone()
                line = self._line_range(ids, field)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self.name}: {exc}") from None
        firsts = [x for x in (c[0], r[0], line[0]) if x is not None]
        lasts = [x for x in (c[1], r[1], line[1]) if x is not None]
        return (min(firsts), max(lasts)) if firsts else None

    def neighbours(self, measurement: str, field: str, tags: dict[str, str], before_ns: int, after_ns: int, *,
                   values: tuple[float, float | None] | None = None
                   ) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
        """The last point of `field` before `before_ns` and the first at or after `after_ns`, in every series
        with `tags` taken together (None where there is none): a report's readings just outside its window
        (see `puewatch.report.sources.read_meter`), however far away they lie. With `values` (at_least,
        below; below None: no bound), only a point whose value lies in that range counts.

        Each side is bounded by times the tables hold for sure (a chunk's first and last time, a row's, a
        line's), then read with `series`, which merges chunks, rows and lines as every read does; a line
        that lacks the field moves the bound one step further out."""
        ids = self._series_ids(measurement, tags)
        if not ids:
            return None, None
        self._check_kind(measurement, field, "number")
        marks = ",".join("?" * len(ids))

        def bound(t: int, before: bool) -> int | None:
            """The nearest time before t (at or after t) that some table holds a point of the field at for sure:
            a chunk's last (first) time, the first (last) of a chunk across t, a row's, a line's."""
            agg, cmp = ("max", "<") if before else ("min", ">=")
            outer, inner = ("t_last", "t_first") if before else ("t_first", "t_last")
            where = f"series_id IN ({marks}) AND field = ?"
            with self._lock:
                try:
                    wanted = self._sets_with([field])
                    found = [self._db.execute(sql, (*ids, field, *args)).fetchone()[0] for sql, args in (
                        (f"SELECT {agg}({outer}) FROM chunks WHERE {where} AND {outer} {cmp} ?", (t,)),
                        (f"SELECT {agg}({inner}) FROM chunks WHERE {where} AND t_first < ? AND t_last >= ?", (t, t)),
                        (f"SELECT {agg}(time_ns) FROM points WHERE {where} AND time_ns {cmp} ?", (t,)))]
                    if wanted:
                        found.append(self._db.execute(
                            f"SELECT {agg}(time_ns) FROM lines WHERE series_id IN ({marks}) AND field_set IN "
                            f"({','.join('?' * len(wanted))}) AND time_ns {cmp} ?", (*ids, *wanted, t)).fetchone()[0])
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"{self.name}: {exc}") from None
            found = [x for x in found if x is not None]
            return (max(found) if before else min(found)) if found else None

        def counted(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if values is None:
                return t, v
            keep = v >= values[0]
            if values[1] is not None:
                keep &= v < values[1]
            return t[keep], v[keep]

        last = first = None
        hi = int(before_ns)
        while (lo := bound(hi, True)) is not None:
            t, v = counted(*self.series(measurement, field, tags, lo, hi))
            if t.size:
                last = (int(t[-1]), float(v[-1]))
                break
            hi = lo  # the point there lacks the field (or its value is out of range): look further back
        lo = int(after_ns)
        while (hi := bound(lo, False)) is not None:
            t, v = counted(*self.series(measurement, field, tags, lo, hi + 1))
            if t.size:
                first = (int(t[0]), float(v[0]))
                break
            lo = hi + 1
        return last, first

    def _line_range(self, ids: list[int], field: str) -> tuple[int | None, int | None]:
        """First and last time of the series' lines holding a value of `field` (lock held)."""
        wanted = self._sets_with([field])
        if not wanted:
            return None, None
        where = (f"series_id IN ({','.join('?' * len(ids))}) AND field_set IN ({','.join('?' * len(wanted))})")
        first, last = self._db.execute(f"SELECT min(time_ns), max(time_ns) FROM lines WHERE {where}",
                                       (*ids, *wanted)).fetchone()
        if first is None:
            return None, None
        # A line may lack the field (NaN in its place): then look at the lines themselves.
        ends = _Lines(self._db.execute(f"SELECT series_id, time_ns, field_set, vals FROM lines WHERE {where} "
                                       "AND time_ns IN (?, ?)", (*ids, *wanted, first, last)).fetchall())
        if {first, last} <= set(ends.field(field, self._sets)[1].tolist()):
            return first, last
        _, t, _ = _Lines(self._db.execute(f"SELECT series_id, time_ns, field_set, vals FROM lines WHERE {where}",
                                          (*ids, *wanted)).fetchall()).field(field, self._sets)
        return (int(t.min()), int(t.max())) if t.size else (None, None)

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT tags FROM series WHERE measurement = ?", (measurement,)).fetchall()
        return sorted({json.loads(r[0])[tag] for r in rows if tag in json.loads(r[0])})


# -- columns ----------------------------------------------------------------------------------


def _code(exc: BaseException) -> int | None:
    """The SQLite primary result code of an error (SQLITE_FULL, SQLITE_CORRUPT, ...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _merge_by_series(chunks: list, rows: tuple[np.ndarray, np.ndarray, np.ndarray], lo: int, hi: int
                     ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Chunks and rows (series ids, times, values sorted by series then time) of one field as one
    series each (series id -> times, values) within [lo, hi); at a time held by both, the row wins
    (it is the newer write)."""
    blobs_of: dict[int, list] = {}
    for c in chunks:
        blobs_of.setdefault(c[0], []).append(c)
    rs, rt, rv = rows
    cut = np.flatnonzero(rs[1:] != rs[:-1]) + 1
    starts = [0, *cut.tolist()]
    own_of = {int(rs[i]): (i, j) for i, j in zip(starts, [*cut.tolist(), rs.size])} if rs.size else {}
    out = {}
    for sid in sorted(blobs_of.keys() | own_of.keys()):
        blobs = blobs_of.get(sid)
        if blobs:
            ct = np.concatenate([_decode_times(c[1]) for c in blobs])
            cv = np.concatenate([_decode_values(c[2]) for c in blobs])
            i, j = np.searchsorted(ct, [lo, hi], side="left")
            ct, cv = ct[i:j], cv[i:j]
        else:
            ct, cv = np.empty(0, np.int64), np.empty(0, np.float64)
        if sid in own_of:
            i, j = own_of[sid]
            keep = ~_in_sorted(ct, rt[i:j])
            ct, cv = _union(ct[keep], cv[keep], rt[i:j], rv[i:j])
        if ct.size:
            out[sid] = (ct, cv)
    return out


def _newest(older: tuple[np.ndarray, np.ndarray, np.ndarray], newer: tuple[np.ndarray, np.ndarray, np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two (series ids, times, values) sorted by series then time as one; `newer` wins at a (series, time)."""
    if newer[0].size == 0:
        return older
    if older[0].size == 0:
        return newer
    s, t, v = (np.concatenate((a, b)) for a, b in zip(older, newer))
    order = np.lexsort((t, s))  # stable: of a (series, time) held twice, the newer comes last
    s, t, v = s[order], t[order], v[order]
    last = np.append((s[1:] != s[:-1]) | (t[1:] != t[:-1]), True)
    return s[last], t[last], v[last]


class _Lines:
    """Rows of `lines` (series_id, time_ns, field_set, vals), as read, decoded one field at a time."""

    def __init__(self, rows: list) -> None:
        n = len(rows)
        self.rows = rows
        self.sid = np.fromiter((r[0] for r in rows), np.int64, n)
        self.t = np.fromiter((r[1] for r in rows), np.int64, n)
        self.set_id = np.fromiter((r[2] for r in rows), np.int64, n)
        self.set_ids = np.unique(self.set_id).tolist()

    def field(self, name: str, sets: dict[int, tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(series ids, times, values) of the lines holding a value of `name` (in the rows' order)."""
        v = np.full(self.t.size, np.nan)
        for set_id in self.set_ids:
            names = sets[set_id]
            if name not in names:
                continue
            if len(self.set_ids) == 1:
                mine, vals = slice(None), [r[3] for r in self.rows]
            else:
                mine = self.set_id == set_id
                vals = [r[3] for r, m in zip(self.rows, mine.tolist()) if m]
            if len(names) == 1:  # REALs (NULL: NaN)
                v[mine] = np.array(vals, dtype=np.float64)
            else:
                v[mine] = np.frombuffer(b"".join(vals), "<f8").reshape(-1, len(names))[:, names.index(name)]
        has = ~np.isnan(v)
        return self.sid[has], self.t[has], v[has]

    def names(self, sets: dict[int, tuple[str, ...]]) -> list[str]:
        """Every field name of the rows' field sets, each once."""
        return list(dict.fromkeys(n for set_id in self.set_ids for n in sets[set_id]))


def _line_values(vals: float | bytes | None) -> np.ndarray:
    """A `lines.vals` as its float64 values: a REAL (a one-field set; NULL: NaN) or a blob."""
    if vals is None or type(vals) is float:
        return np.array([math.nan if vals is None else vals])
    return np.frombuffer(vals, "<f8")


def _line_vals(v: np.ndarray) -> float | bytes:
    """float64 values (NaN: no value) as a `lines.vals`: one as a REAL, several as a blob."""
    return float(v[0]) if v.size == 1 else v.astype("<f8").tobytes()


def _line_blobs(cols: list[np.ndarray]) -> tuple[list[float | bytes], np.ndarray | None]:
    """A block's numeric columns as one `lines.vals` per row (a REAL for one column, else a blob of
    float64 little-endian, a column's non-finite values as NaN), and which values are present (None:
    all of them)."""
    n, k = cols[0].shape[0], len(cols)
    m = np.empty((n, k), "<f8")
    for j, col in enumerate(cols):
        m[:, j] = col
    present = np.isfinite(m)
    if present.all():
        present = None
    else:
        m[~present] = np.nan
    if k == 1:
        return m[:, 0].tolist(), present
    return m.view(f"V{8 * k}").ravel().tolist(), present  # a row's bytes each (void items give bytes)


def _decode_times(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<i8").astype(np.int64, copy=False)


def _decode_values(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8").astype(np.float64, copy=False)


def _columns(rows: list) -> tuple[np.ndarray, np.ndarray]:
    """(time_ns, value) rows as arrays; a NULL value (SQLite stores NaN as NULL) is NaN."""
    t = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    v = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows))
    return t, v


def _in_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each element of `a`: is it in `b` (sorted)?"""
    if b.size == 0 or a.size == 0:
        return np.zeros(a.size, dtype=bool)
    i = np.minimum(np.searchsorted(b, a), b.size - 1)
    return b[i] == a


def _union(t1: np.ndarray, v1: np.ndarray, t2: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted series with no time in common as one sorted series."""
    if t1.size == 0:
        return t2, v2
    if t2.size == 0:
        return t1, v1
    t = np.concatenate((t1, t2))
    v = np.concatenate((v1, v2))
    if t1[-1] < t2[0]:
        return t, v
    order = np.argsort(t, kind="stable")
    return t[order], v[order]
