"""StoreWriter: order, rejected batches, the byte bound, restarts, queue overflow (real SQLite and influxd)."""

from __future__ import annotations

import threading
import time

import pytest

from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.collector.stores.spool import StoreWriter
from puewatch.diskqueue import encode_record
from store_fixtures import influx, influx_auth, vm  # noqa: F401 (fixtures)
from servers import free_port


def _batch(i: int, points: int = 10, value: float | None = None) -> bytes:
    return "".join(
        f"m,src=w f={value if value is not None else i * 1000 + k} {i * 1000 + k}\n" for k in range(points)
    ).encode()


def _wait(pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_writes_everything_in_order(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    seen = []
    w = StoreWriter(store, tmp_path / "spool", 1 << 20, on_write=lambda s, n: seen.append(n))
    for i in range(200):
        w.submit(_batch(i, 5), 5)
    # the same point re-written with increasing values: only in-order writes leave the last one
    for v in range(50):
        w.submit(f"m,src=w last={v} 1\n".encode(), 1)
    assert w.flush(10)
    st = w.stats()
    assert st["points_written"] == 1050 and st["batches_written"] == 250 and sum(seen) == 1050
    assert st["spool_batches"] == 0 and st["dropped_points"] == 0 and st["rejected_points"] == 0
    assert st["write_seconds"] > 0
    assert w.close()
    reader = EmbeddedStore(tmp_path / "pue.db")
    assert reader.series("m", "f", {}, 0, 2**62)[0].size == 1000
    assert reader.series("m", "last", {}, 0, 2**62)[1].tolist() == [49.0]


def test_refused_lines_are_kept_aside_and_counted_and_the_rest_of_their_batch_stored(tmp_path, caplog):
    store = EmbeddedStore(tmp_path / "pue.db")
    w = StoreWriter(store, tmp_path / "spool", 1 << 20)
    w.submit(_batch(1, 3), 3)
    w.submit(b"m f=1 1\nm f= 2\n", 2)
    w.submit(_batch(3, 3), 3)
    assert w.flush(10)
    st = w.stats()
    assert st["rejected_points"] == 1 and st["rejected_batches"] == 1 and st["points_written"] == 7
    kept = list((tmp_path / "spool" / "rejected").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == b"m f= 2\n" and kept[0].name.endswith("-1.lp")
    assert caplog.text.count("refused a line of batch 2") == 1 and "missing field value: m f= 2" in caplog.text
    w.close()
    assert EmbeddedStore(tmp_path / "pue.db").series("m", "f", {}, 0, 2**62)[0].tolist() == [1, 1000, 1001, 1002, 3000, 3001, 3002]


def test_full_spool_drops_oldest_first_and_counts_exactly(tmp_path):
    dead = Influx1Store(f"http://127.0.0.1:{free_port()}", "site", timeout_s=1)
    size = len(encode_record(_batch(100, 10), 10))  # on disk; every batch below has the same size
    w = StoreWriter(dead, tmp_path / "spool", max_bytes=5 * size, backoff_min_s=60, backoff_max_s=60)
    for i in range(101, 113):
        assert len(encode_record(_batch(i, 10), 10)) == size
        w.submit(_batch(i, 10), 10)
    _wait(lambda: w.stats()["queue_batches"] == 0)
    st = w.stats()
    # 12 batches of 10 points, room for 5: the 7 oldest are dropped
    assert st["spool_batches"] == 5 and st["spool_bytes"] == 5 * size
    assert st["dropped_points"] == 70 and st["dropped_batches"] == 7
    names = sorted(p.name for p in (tmp_path / "spool").glob("*.rec"))
    assert [int(n.split("-")[0]) for n in names] == [8, 9, 10, 11, 12]
    # a batch larger than the whole spool is dropped and counted too
    w.submit(_batch(199, 60), 60)
    _wait(lambda: w.stats()["dropped_points"] == 130)
    assert not w.close(timeout_s=0.2)
    assert w.stats()["spool_batches"] == 5


def test_restart_keeps_and_replays_the_spool(tmp_path, influx):
    influx.query('CREATE DATABASE "site"')
    influx.stop()
    w = StoreWriter(Influx1Store(influx.url, "site", timeout_s=1), tmp_path / "spool", 1 << 20, backoff_min_s=0.1, backoff_max_s=0.5)
    for i in range(1, 21):
        w.submit(_batch(i, 10), 10)
    assert not w.close(timeout_s=0.5)  # store away: everything stays on disk
    assert len(list((tmp_path / "spool").glob("*.rec"))) == 20
    influx.start()
    w2 = StoreWriter(Influx1Store(influx.url, "site"), tmp_path / "spool", 1 << 20)
    w2.submit(_batch(21, 10), 10)  # after the ones from the earlier run
    assert w2.flush(20)
    assert w2.stats()["points_written"] == 210
    assert w2.close()
    rows = influx.points('SELECT f FROM m', "site")
    assert [r[0] for r in rows] == [i * 1000 + k for i in range(1, 22) for k in range(10)]
    assert [r[1] for r in rows] == [float(i * 1000 + k) for i in range(1, 22) for k in range(10)]


class GatedStore(EmbeddedStore):
    """The real SQLite store, held back until the test opens the gate (a slow store)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.gate = threading.Event()

    def write(self, body: bytes) -> None:
        self.gate.wait()
        super().write(body)


def test_queue_overflow_goes_to_disk_and_order_holds(tmp_path):
    store = GatedStore(tmp_path / "pue.db")
    w = StoreWriter(store, tmp_path / "spool", 1 << 20, queue_max_batches=3)
    t0 = time.perf_counter()
    for v in range(40):
        w.submit(f"m last={v} 1\nm f={v} {v + 10}\n".encode(), 2)
    assert time.perf_counter() - t0 < 5  # never waits for the store
    assert w.stats()["spool_batches"] >= 30
    store.gate.set()
    assert w.flush(10)
    assert w.stats()["points_written"] == 80
    assert store.series("m", "last", {}, 0, 100)[1].tolist() == [39.0]
    assert store.series("m", "f", {}, 0, 100)[1].size == 40
    w.close()


def test_submit_after_close_is_an_error(tmp_path):
    w = StoreWriter(EmbeddedStore(tmp_path / "pue.db"), tmp_path / "spool", 1 << 20)
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.submit(b"m f=1 1\n", 1)


class _Counting:
    """A real store, with the number of write requests counted."""

    def __init__(self, store) -> None:
        self.store = store
        self.name = store.name
        self.writes = 0

    def write(self, body: bytes) -> None:
        self.writes += 1
        self.store.write(body)

    def close(self) -> None:
        self.store.close()


def test_batches_waiting_in_memory_are_written_together_and_a_refused_group_is_split(tmp_path, influx):
    influx.query('CREATE DATABASE "site"')
    store = _Counting(Influx1Store(influx.url, "site"))
    w = StoreWriter(store, tmp_path / "spool", 1 << 20, start=False)
    for i in range(1, 21):
        w.submit(_batch(i, 10), 10)
    w.start()
    assert w.flush(20)
    st = w.stats()
    assert st["points_written"] == 200 and st["batches_written"] == 20
    assert store.writes == 1  # twenty waiting batches, one request
    # A group the store refuses (one malformed line) is written again batch by batch, and
    # that batch in halves: only the line at fault is set aside, every good point is stored.
    w2 = StoreWriter(store, tmp_path / "spool2", 1 << 20, start=False)
    w2.submit(_batch(30, 5), 5)
    w2.submit(b"m,src=w f=1 31000\nm,src=w f= 31001\n", 2)
    w2.submit(_batch(32, 5), 5)
    w2.start()
    assert w2.flush(20)
    st = w2.stats()
    assert st["rejected_batches"] == 1 and st["rejected_points"] == 1 and st["points_written"] == 11
    kept = list((tmp_path / "spool2" / "rejected").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == b"m,src=w f= 31001\n"
    rows = influx.query('SELECT count(f) FROM m', db="site")[0]["series"][0]["values"][0]
    assert rows[1] == 200 + 10 + 1  # the good line of the refused batch, stored once
    w.close()
    w2.close()


def test_spooled_batches_are_replayed_several_per_write_and_a_refused_run_is_split(tmp_path, influx):
    influx.query('CREATE DATABASE "site"')
    influx.stop()
    away = StoreWriter(Influx1Store(influx.url, "site", timeout_s=1), tmp_path / "spool", 1 << 20,
                       backoff_min_s=0.1, backoff_max_s=0.5)
    for i in range(1, 21):
        away.submit(_batch(i, 10), 10)
    away.submit(b"m,src=w f=1 21000\nm,src=w f= 21001\n", 2)  # one malformed line
    for i in range(22, 25):
        away.submit(_batch(i, 10), 10)
    assert not away.close(timeout_s=0.5)  # store away: everything stays on disk
    assert len(list((tmp_path / "spool").glob("*.rec"))) == 24
    influx.start()
    store = _Counting(Influx1Store(influx.url, "site"))
    w = StoreWriter(store, tmp_path / "spool", 1 << 20)
    assert w.flush(20)
    st = w.stats()
    assert st["points_written"] == 231 and st["rejected_points"] == 1 and st["batches_written"] == 24
    # all 24 in one request, refused for its bad line; then one by one, that batch in halves
    assert store.writes < 24 + 2 * 3
    assert [p.read_bytes() for p in (tmp_path / "spool" / "rejected").iterdir()] == [b"m,src=w f= 21001\n"]
    rows = influx.points('SELECT f FROM m', "site")
    expected = [i * 1000 + k for i in range(1, 25) if i != 21 for k in range(10)] + [21000]
    assert sorted(r[0] for r in rows) == sorted(expected)
    # a replay with nothing refused: one request for all of it
    influx.stop()
    away = StoreWriter(Influx1Store(influx.url, "site", timeout_s=1), tmp_path / "spool3", 1 << 20)
    for i in range(30, 50):
        away.submit(_batch(i, 10), 10)
    assert not away.close(timeout_s=0.5)
    influx.start()
    store = _Counting(Influx1Store(influx.url, "site"))
    w3 = StoreWriter(store, tmp_path / "spool3", 1 << 20)
    assert w3.flush(20)
    assert w3.stats()["points_written"] == 200 and store.writes == 1
    w.close()
    w3.close()


def test_a_group_that_meets_a_dead_store_goes_to_disk_in_order(tmp_path):
    dead = Influx1Store(f"http://127.0.0.1:{free_port()}", "site", timeout_s=1)
    w = StoreWriter(dead, tmp_path / "spool", 1 << 20, backoff_min_s=60, backoff_max_s=60, start=False)
    for i in range(1, 6):
        w.submit(_batch(i, 10), 10)
    w.start()
    _wait(lambda: w.stats()["spool_batches"] == 5)
    names = sorted(p.name for p in (tmp_path / "spool").glob("*.rec"))
    assert [int(n.split("-")[0]) for n in names] == [1, 2, 3, 4, 5]
    assert w.stats()["dropped_points"] == 0
    assert not w.close(timeout_s=0.2)


def test_a_spool_left_by_the_older_store_writer_is_replayed_in_order(tmp_path):
    # The layout the StoreWriter wrote before the shared disk queue: batch-<seq>-<points>.lp,
    # the batch as given; a .part file is a batch that was never acknowledged.
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "batch-0000000000000002-1.lp").write_bytes(b"m last=2 1\n")
    (spool / "batch-0000000000000001-2.lp").write_bytes(b"m last=1 1\nm f=1 1\n")
    (spool / "batch-0000000000000003-1.lp.part").write_bytes(b"m last=3")
    store = EmbeddedStore(tmp_path / "pue.db")
    w = StoreWriter(store, spool, 1 << 20)
    w.submit(b"m f=4 4\n", 1)  # after the ones from the earlier run
    assert w.flush(10)
    assert w.stats()["points_written"] == 4
    assert w.close()
    reader = EmbeddedStore(tmp_path / "pue.db")
    assert reader.series("m", "last", {}, 0, 100)[1].tolist() == [2.0]  # in order: the later batch won
    assert reader.series("m", "f", {}, 0, 100)[1].tolist() == [1.0, 4.0]
    assert sorted(p.name for p in spool.iterdir()) == ["rejected"]
