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
    rows = db.execute("SELECT count(*) FROM points").fetchone()[0]
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
