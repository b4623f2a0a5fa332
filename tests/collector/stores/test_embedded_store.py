"""The embedded SQLite store: Store and Reader, last write wins, partial writes, retention, speed."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from puewatch.collector.stores.base import Reader, Store, StoreRejected
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.lineprotocol import encode_point, series_key, encode_line

T0 = 1_700_000_000_000_000_000


def test_write_and_read_back(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    assert isinstance(store, Store) and isinstance(store, Reader)
    lines = [encode_point("meter_power", {"meter": f"m{i % 3}", "zone": "hall 1,a=b"}, {"power_w": float(i), "ok": True, "n": i}, T0 + i)
             for i in range(30)]
    store.write(("\n".join(lines) + "\n").encode())
    t, v = store.series("meter_power", "power_w", {"meter": "m1"}, T0, T0 + 100)
    assert t.dtype == np.int64 and v.dtype == np.float64
    assert t.tolist() == [T0 + i for i in range(1, 30, 3)]
    assert v.tolist() == [float(i) for i in range(1, 30, 3)]
    t, v = store.series("meter_power", "ok", {"zone": "hall 1,a=b"}, T0 + 10, T0 + 20)  # end exclusive
    assert t.tolist() == [T0 + i for i in range(10, 20)] and v.tolist() == [1.0] * 10
    assert store.tag_values("meter_power", "meter") == ["m0", "m1", "m2"]
    assert store.tag_values("meter_power", "nope") == []
    assert store.series("nope", "f", {}, 0, 2**62)[0].size == 0
    store.close()
    # One file, readable with plain SQL by anyone.
    db = sqlite3.connect(tmp_path / "pue.db")
    assert db.execute("SELECT count(*) FROM points").fetchone()[0] == 90
    assert db.execute("SELECT tagset FROM series ORDER BY tagset LIMIT 1").fetchone()[0] == "meter=m0,zone=hall\\ 1\\,a\\=b"
    db.close()


def test_resent_points_are_stored_once_and_last_write_wins(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    body = b"site_power,site=a power_w=1.0 10\nsite_power,site=a power_w=2.0 20\n"
    store.write(body)
    store.write(body)
    store.write(b"site_power,site=a power_w=3.5 20\n")
    t, v = store.series("site_power", "power_w", {"site": "a"}, 0, 100)
    assert t.tolist() == [10, 20] and v.tolist() == [1.0, 3.5]
    store.close()
    reopened = EmbeddedStore(tmp_path / "pue.db")
    assert reopened.series("site_power", "power_w", {}, 0, 100)[1].tolist() == [1.0, 3.5]
    reopened.write(b"site_power,site=a power_w=4.0 30\n")  # known series after a restart
    assert reopened.tag_values("site_power", "site") == ["a"]


def test_partial_write_stores_the_good_lines_and_rejects(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    with pytest.raises(StoreRejected, match=r"partial write, 2 bad line\(s\) skipped: line 2: .*missing field value.*1 more"):
        store.write(b"m f=1 1\nm f= 2\nm f=3 3\nm,t f=4 4\n")
    assert store.series("m", "f", {}, 0, 10)[0].tolist() == [1, 3]
    store.write(b'm s="text",f=5 5\n')
    assert store.skipped_string_fields == 1
    with pytest.raises(StoreRejected, match="UTF-8"):
        store.write(b"m f=1 \xff\n")


def test_lines_without_timestamp_get_the_server_clock(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    before = time.time_ns()
    store.write(b"m f=1\n")
    t, _ = store.series("m", "f", {}, 0, 2**62)
    assert before <= t[0] <= time.time_ns()


def test_prune_keeps_the_raw_retention(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db", raw_retention_s=3600)
    now = T0 + 10 * 3600 * 10**9
    store.write("".join(f"m f={i} {now - i * 600 * 10**9}\n" for i in range(12)).encode())
    assert store.prune(now) == 5  # 70..110 minutes old
    t, v = store.series("m", "f", {}, 0, 2**62)
    assert v.tolist() == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert EmbeddedStore(tmp_path / "other.db").prune(now) == 0  # no retention: keeps everything


def test_write_speed(tmp_path, record_property):
    store = EmbeddedStore(tmp_path / "pue.db")
    keys = [series_key("meter_power", {"site": "a", "meter": f"m{i}"}) for i in range(100)]
    n = 100_000
    lines = [encode_line(keys[i % 100], {"power_w": i * 0.5}, T0 + i * 1000) for i in range(n)]
    bodies = [("\n".join(lines[i : i + 5000]) + "\n").encode() for i in range(0, n, 5000)]
    t0 = time.perf_counter()
    for body in bodies:
        store.write(body)
    rate = n / (time.perf_counter() - t0)
    record_property("embedded_lines_per_s", round(rate))
    print(f"embedded store: {rate:,.0f} lines/s (5,000-line batches, 100 series)")
    assert store.series("meter_power", "power_w", {"meter": "m7"}, 0, 2**62)[0].size == n // 100
    assert rate > 20_000  # a small site writes hundreds of points per second
