"""The embedded store's columnar chunks: compaction, late writes, columnar writes, retention, reopening, concurrency.

Real SQLite files throughout. Small chunks (monkeypatched CHUNK_POINTS) make every chunk
boundary case happen with a few hundred points; a model (a dict of the last write per time)
says what every read must return, whatever the layout.
"""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pytest

from puewatch.collector.stores import embedded
from puewatch.collector.stores.base import StoreRejected
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.core.batch import Batch

S = 10**9
T0 = 1_700_000_000 * S
TAGS = {"site": "a", "device": "pdu-1"}


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(embedded, "CHUNK_POINTS", 64)
    monkeypatch.setattr(embedded, "COMPACT_BATCH", 100)


def _lines(times, values, measurement="snmp_reading", tags=TAGS) -> bytes:
    tag = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    return "".join(f"{measurement},{tag} value={v!r} {t}\n" for t, v in zip(times, values)).encode()


def _read(store: EmbeddedStore, lo: int = 0, hi: int = 2**62) -> dict[int, float]:
    t, v = store.series("snmp_reading", "value", TAGS, lo, hi)
    assert t.dtype == np.int64 and v.dtype == np.float64
    assert np.all(np.diff(t) > 0)
    return dict(zip(t.tolist(), v.tolist()))


def _counts(path) -> tuple[int, int, int]:
    db = sqlite3.connect(path)
    # Points not in chunks: rows of `points` (a file from before `lines`) and values in `lines`.
    rows = db.execute("SELECT count(*) FROM points").fetchone()[0]
    # (`lines.vals`: a REAL for a line of one field, else a blob of float64, NaN: no value.)
    rows += sum(1 if isinstance(v, float) else int(np.count_nonzero(~np.isnan(np.frombuffer(v, "<f8"))))
                for (v,) in db.execute("SELECT vals FROM lines"))
    chunks, points = db.execute("SELECT count(*), coalesce(sum(n), 0) FROM chunks").fetchone()
    db.close()
    return rows, chunks, points


def _same(got: dict[int, float], want: dict[int, float]) -> None:
    assert got.keys() == want.keys()
    for k, w in want.items():
        assert got[k] == w or (math.isnan(got[k]) and math.isnan(w)), k


def test_compaction_round_trip_keeps_every_point_and_the_recent_rows(tmp_path, small_chunks):
    path = tmp_path / "pue.db"
    store = EmbeddedStore(path, compact_after_s=3600)
    times = [T0 + i * 60 * S + i % 7 for i in range(500)]  # ns jitter, as polls have
    values = [1000.0 + 0.25 * i for i in range(500)]
    store.write(_lines(times, values))
    before = _read(store)
    now = times[-1] + 10  # the last hour (60 points) stays rows
    assert store.compact(now) == 440
    rows, chunks, points = _counts(path)
    assert (rows, points) == (60, 440) and chunks == math.ceil(440 / 64)
    _same(_read(store), before)
    # A range read cuts chunks at both ends, start inclusive and end exclusive.
    got = _read(store, times[100], times[450])
    assert list(got) == times[100:450]
    assert store.compact(now) == 0  # nothing left to move
    # Later compactions append to the last, partly filled chunk instead of adding small ones.
    assert store.compact(horizon_ns=times[-1] + 1) == 60
    assert _counts(path) == (0, math.ceil(500 / 64), 500)
    _same(_read(store), before)


def test_late_write_inside_a_compacted_chunk_wins_before_and_after_the_next_compaction(tmp_path, small_chunks):
    path = tmp_path / "pue.db"
    store = EmbeddedStore(path, compact_after_s=0)
    times = [T0 + i * 60 * S for i in range(300)]
    store.write(_lines(times, [float(i) for i in range(300)]))
    store.compact(times[-1] + 1)
    assert _counts(path)[0] == 0
    late = {times[100]: -1.5, times[101] + 5: 7.0, times[0] - 60 * S: 3.0}  # an overwrite, a new one inside, one before
    store.write(_lines(list(late), list(late.values())))
    want = {t: float(i) for i, t in enumerate(times)} | late
    _same(_read(store), want)
    chunks_before = _counts(path)[1]
    assert store.compact(times[-1] + 1) == 3
    rows, chunks, points = _counts(path)
    assert rows == 0 and points == 302 and chunks <= chunks_before + 1
    _same(_read(store), want)
    # The same again with the chunk's first and last points.
    store.write(_lines([times[64], times[127]], [11.0, 12.0]))
    store.compact(times[-1] + 1)
    want |= {times[64]: 11.0, times[127]: 12.0}
    _same(_read(store), want)


def test_write_columns_last_write_wins_over_rows_chunks_and_within_the_arrays(tmp_path, small_chunks):
    path = tmp_path / "pue.db"
    store = EmbeddedStore(path)
    old = np.arange(200, dtype=np.int64) * 60 * S + T0
    assert store.write_columns("snmp_reading", TAGS, "value", old, np.arange(200.0)) == 200
    store.write(_lines([int(old[10]), int(old[199]) + S], [-10.0, 99.0]))  # a row over a chunk point, a row after
    want = {int(t): float(i) for i, t in enumerate(old)} | {int(old[10]): -10.0, int(old[199]) + S: 99.0}
    _same(_read(store), want)
    # Unsorted arrays with a repeated time (the later one wins), over rows and chunk points, with NaN.
    t = np.array([old[150], old[10], old[199] + S, old[150], old[5] + 1], dtype=np.int64)
    v = np.array([1.5, 2.5, np.nan, 4.5, 5.5])
    assert store.write_columns("snmp_reading", TAGS, "value", t, v) == 4
    want |= {int(old[150]): 4.5, int(old[10]): 2.5, int(old[199]) + S: math.nan, int(old[5]) + 1: 5.5}
    _same(_read(store), want)
    assert _counts(path)[0] == 0  # the rows in the written range went into the chunks
    # The series is the line protocol's: the same tags find it, a later line protocol write reuses it.
    store.write(_lines([int(old[0])], [123.0]))
    want[int(old[0])] = 123.0
    _same(_read(store), want)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM series").fetchone()[0] == 1
    db.close()
    for bad, match in [
        (dict(t_ns=np.zeros(3, np.int64), values=np.zeros(2)), "one length"),
        (dict(t_ns=np.zeros(2, np.float64), values=np.zeros(2)), "int64 ns"),
        (dict(t_ns=np.zeros(2, np.int64), values=np.array(["a", "b"])), "numbers"),
    ]:
        with pytest.raises(StoreRejected, match=match):
            store.write_columns("m", {}, "f", **bad)
    assert store.write_columns("m", {}, "f", np.empty(0, np.int64), np.empty(0)) == 0


def test_prune_drops_old_points_inside_chunks_too(tmp_path, small_chunks):
    path = tmp_path / "pue.db"
    store = EmbeddedStore(path, raw_retention_s=100 * 60, compact_after_s=0)
    times = [T0 + i * 60 * S for i in range(300)]
    store.write(_lines(times, [float(i) for i in range(300)]))
    store.compact(horizon_ns=times[250])  # chunks up to 250, rows after
    now = times[-1] + 60 * S  # keep the last 100 minutes: times[200:]
    assert store.prune(now) == 200
    assert sorted(_read(store)) == times[200:]
    rows, chunks, points = _counts(path)
    assert rows == 50 and points == 50
    assert store.prune(now) == 0
    # The trimmed chunk still takes late writes and compaction.
    store.write(_lines([times[210]], [-1.0]))
    store.compact(horizon_ns=times[-1] + 1)
    got = _read(store)
    assert got[times[210]] == -1.0 and len(got) == 100


def test_reopening_and_a_database_from_before_chunks(tmp_path, small_chunks):
    path = tmp_path / "old.db"
    # A store written before the chunks table existed (its schema as then), with a NULL value.
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL, tagset TEXT NOT NULL,
                             tags TEXT NOT NULL, UNIQUE (measurement, tagset));
        CREATE TABLE points (series_id INTEGER NOT NULL REFERENCES series(id), field TEXT NOT NULL,
                             time_ns INTEGER NOT NULL, value REAL, PRIMARY KEY (series_id, field, time_ns)) WITHOUT ROWID;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)
    db.execute("INSERT INTO series VALUES (1, 'snmp_reading', 'device=pdu-1,site=a', ?)",
               ('{"device": "pdu-1", "site": "a"}',))
    db.executemany("INSERT INTO points VALUES (1, 'value', ?, ?)",
                   [(T0 + i * S, None if i == 70 else float(i)) for i in range(100)])
    db.commit()
    db.close()
    store = EmbeddedStore(path, compact_after_s=0)
    want = {T0 + i * S: (math.nan if i == 70 else float(i)) for i in range(100)}
    _same(_read(store), want)
    assert store.maintain(T0 + 200 * S) == {"pruned": 0, "compacted": 100}
    _same(_read(store), want)  # NULL stays NaN inside a chunk
    store.close()
    again = EmbeddedStore(path)
    _same(_read(again), want)
    assert _counts(path) == (0, 2, 100)


def test_random_operations_match_a_model_of_last_writes(tmp_path, small_chunks):
    rng = np.random.default_rng(7)
    store = EmbeddedStore(tmp_path / "pue.db", raw_retention_s=3000, compact_after_s=0)
    model: dict[int, float] = {}
    now = T0
    for step in range(120):
        op = rng.choice(["rows", "columns", "compact", "prune"], p=[0.4, 0.3, 0.2, 0.1])
        if op == "rows":
            t = sorted({int(x) for x in now - rng.integers(0, 4000, rng.integers(1, 40)) * S})
            v = [float(x) for x in rng.integers(0, 1000, len(t))]
            store.write(_lines(t, v))
            model.update(zip(t, v))
        elif op == "columns":
            t = now - rng.integers(0, 4000, rng.integers(1, 200)) * S
            v = rng.integers(0, 1000, t.size).astype(float)
            store.write_columns("snmp_reading", TAGS, "value", t, v)
            for a, b in zip(t.tolist(), v.tolist()):  # in order: the later of equal times wins
                model[a] = b
        elif op == "compact":
            store.compact(now, horizon_ns=int(now - rng.integers(0, 4000) * S))
        else:
            store.prune(now)
            cutoff = now - 3000 * S
            model = {t: v for t, v in model.items() if t >= cutoff}
        now += int(rng.integers(0, 60)) * S
        got = _read(store)
        assert got == model, f"step {step} ({op})"
        lo, hi = sorted(int(x) for x in now - rng.integers(0, 4000, 2) * S)
        assert _read(store, lo, hi) == {t: v for t, v in model.items() if lo <= t < hi}


def test_lines_of_several_fields_match_a_model_of_last_writes_per_field(tmp_path, small_chunks):
    """A row of `lines` holds a line's numeric fields together; the last write still wins per field.

    Random lines giving `value`, `raw` or both (as text, and as typed blocks of one row and of
    several, with NaN and infinities for no value), rewrites of the same times within a batch and
    across batches, columnar writes of one field, a file from before `lines` (rows of `points`),
    compaction and retention: every read equals a model of the last write per field and time.
    """
    rng = np.random.default_rng(11)
    path = tmp_path / "pue.db"
    store = EmbeddedStore(path, raw_retention_s=3000, compact_after_s=0)
    store.write(b"snmp_reading,device=pdu-1,site=a value=0.5 1\n")  # the series and its field exist
    model: dict[str, dict[int, float]] = {"value": {1: 0.5}, "raw": {}}
    # A file's rows of `points` from before `lines` (older than any line: a line wins over them).
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO points VALUES (1, 'raw', ?, ?)", [(T0 - i * S, float(-i)) for i in range(0, 300, 7)])
    db.commit()
    db.close()
    model["raw"].update({T0 - i * S: float(-i) for i in range(0, 300, 7)})
    store.write(f"snmp_reading,device=pdu-1,site=a raw=7.25 {T0 - 14 * S}\nsnmp_reading,device=pdu-1,site=a "
                f"value=3.0 {T0 - 21 * S}\n".encode())  # over a row of `points`; beside one
    model["raw"][T0 - 14 * S] = 7.25
    model["value"][T0 - 21 * S] = 3.0
    t, v = store.series("snmp_reading", "raw", TAGS, 0, 2**62)
    assert dict(zip(t.tolist(), v.tolist())) == model["raw"]
    now = T0
    for step in range(150):
        op = rng.choice(["text", "typed", "columns", "compact", "prune"], p=[0.3, 0.3, 0.2, 0.12, 0.08])
        if op in ("text", "typed"):
            n = int(rng.integers(1, 30))
            times = [int(now - x * S) for x in rng.integers(0, 3000, n)]  # repeats: rewrites in one batch
            rows = []
            for t in times:
                which = rng.choice(["value", "raw", "both"])
                row = {f: float(rng.integers(0, 1000)) / 8 for f in ("value", "raw") if which in (f, "both")}
                rows.append((t, row))
            if op == "text":
                body = "".join(f"snmp_reading,device=pdu-1,site=a {','.join(f'{k}={x!r}' for k, x in row.items())} {t}\n"
                               for t, row in rows)
                store.write(body.encode())
            else:
                b = Batch()
                blank = [math.nan, math.inf, -math.inf]
                if rng.random() < 0.5:  # one-row blocks, as SNMP readings come
                    for t, row in rows:
                        b.add("snmp_reading", TAGS, t, {f: row.get(f, blank[int(rng.integers(0, 3))])
                                                        for f in ("value", "raw")})
                else:  # one block of several rows (times may repeat: the later row wins)
                    b.add("snmp_reading", TAGS, np.array([t for t, _ in rows]),
                          {f: np.array([row.get(f, blank[int(rng.integers(0, 3))]) for _, row in rows])
                           for f in ("value", "raw")})
                store.write_batch(b)
            for t, row in rows:
                for f, x in row.items():
                    model[f][t] = x
        elif op == "columns":
            f = str(rng.choice(["value", "raw"]))
            t = now - rng.integers(0, 3000, rng.integers(1, 100)) * S
            v = rng.integers(0, 1000, t.size).astype(float)
            store.write_columns("snmp_reading", TAGS, f, t, v)
            for a, x in zip(t.tolist(), v.tolist()):
                model[f][a] = x
        elif op == "compact":
            store.compact(now, horizon_ns=int(now - rng.integers(0, 3000) * S))
        else:
            pruned = store.prune(now)
            cutoff = now - 3000 * S
            gone = sum(1 for f in model for t in model[f] if t < cutoff)
            # Stored values deleted: a value shadowed by a newer write of its time (a row of `points`
            # under a line, a chunk's under a late line) is stored too, until compaction merges them.
            assert pruned >= gone and (gone == 0) == (pruned == 0), f"step {step}: prune said {pruned}, lost {gone}"
            model = {f: {t: x for t, x in m.items() if t >= cutoff} for f, m in model.items()}
        now += int(rng.integers(0, 40)) * S
        for f in ("value", "raw"):
            t, v = store.series("snmp_reading", f, TAGS, 0, 2**62)
            assert dict(zip(t.tolist(), v.tolist())) == model[f], f"step {step} ({op}): {f}"
            want = (min(model[f]), max(model[f])) if model[f] else None
            assert store.time_range("snmp_reading", f, TAGS) == want, f"step {step} ({op}): {f} range"
        [(tags, t, cols)] = store.fields_by_series("snmp_reading", {"value": "number", "raw": "number"}, 0, 2**62)
        both = sorted(model["value"].keys() | model["raw"].keys())
        assert tags == TAGS and t.tolist() == both
        for f in ("value", "raw"):
            assert [model[f].get(x) for x in both] == [None if math.isnan(x) else x for x in cols[f].tolist()]
    store.close()


def test_a_string_where_a_number_was_is_refused_also_for_a_shape_written_before(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    for k in range(2):  # the second write takes the path kept for the shape
        b = Batch()
        b.add("snmp_reading", TAGS, T0 + k, {"value": 1.0 + k})
        store.write_batch(b)
    b = Batch()
    b.add("snmp_reading", TAGS, T0 + 5, {"value": "1.5"})
    b.add("snmp_reading", TAGS, T0 + 6, {"value": 4.0})
    with pytest.raises(StoreRejected, match="field type conflict: 'value' of 'snmp_reading' is a number, not a string"):
        store.write_batch(b)
    assert store.series("snmp_reading", "value", TAGS, 0, 2**62)[1].tolist() == [1.0, 2.0, 4.0]
    assert store.points_written == 3


def test_writes_and_reads_while_another_connection_compacts(tmp_path, monkeypatch):
    """The collector's two store objects share the file: one compacts while the other writes, readers read."""
    monkeypatch.setattr(embedded, "CHUNK_POINTS", 256)
    monkeypatch.setattr(embedded, "COMPACT_BATCH", 300)
    path = tmp_path / "pue.db"
    a = EmbeddedStore(path, synchronous="NORMAL", compact_after_s=0)
    b = EmbeddedStore(path, synchronous="NORMAL")
    old = [T0 + i * S for i in range(6000)]
    a.write(_lines(old, [float(i) for i in range(6000)]))
    want_old = {t: float(i) for i, t in enumerate(old)}
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            i = 0
            while not done.is_set() or i < 20:
                b.write(_lines([T0 + (10_000 + i) * S], [float(i)]))
                i += 1
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            errors.append(exc)

    def reader() -> None:
        try:
            c = EmbeddedStore(path, synchronous="NORMAL")
            while not done.is_set():
                # Each point is a row or in a chunk, never both, never neither.
                got = dict(zip(*(x.tolist() for x in c.series("snmp_reading", "value", TAGS, old[0], old[-1] + 1))))
                assert got == want_old
            c.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for th in threads:
        th.start()
    try:
        moved = a.compact(horizon_ns=old[-1] + 1)
    finally:
        done.set()
        for th in threads:
            th.join(60)
    assert not errors, errors
    assert moved == 6000
    got = _read(a)
    assert {t: got[t] for t in old} == want_old
    assert len(got) >= 6020
    assert _counts(path)[0] == len(got) - 6000  # the new points are rows
