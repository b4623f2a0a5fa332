"""The embedded SQLite store: Store and Reader, last write wins, partial writes, retention, speed."""

from __future__ import annotations

import json
import random
import sqlite3
import time

import numpy as np
import pytest

from puewatch.collector.stores.base import Reader, Store, StoreRejected, TextReader
from puewatch.core.batch import Batch
from puewatch.collector.stores.embedded import EmbeddedStore, _series_texts, canonical_tagset
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
    # One file, readable without puewatch: a line's numbers are one row of `lines`, its field set's
    # names in `field_sets`, its values float64 little-endian in that order (collector/README.md).
    db = sqlite3.connect(tmp_path / "pue.db")
    assert db.execute("SELECT count(*) FROM lines").fetchone()[0] == 30
    names, blob = db.execute("SELECT f.names, l.vals FROM lines l JOIN field_sets f ON f.id = l.field_set "
                             "JOIN series s ON s.id = l.series_id WHERE s.tagset LIKE 'meter=m1,%' "
                             "ORDER BY l.time_ns LIMIT 1").fetchone()
    assert dict(zip(json.loads(names), np.frombuffer(blob, "<f8").tolist())) == {"power_w": 1.0, "ok": 1.0, "n": 1.0}
    assert db.execute("SELECT tagset FROM series ORDER BY tagset LIMIT 1").fetchone()[0] == "meter=m0,zone=hall\\ 1\\,a\\=b"
    db.close()


def test_a_new_series_texts_are_its_canonical_tag_set_and_sorted_json():
    """The fast join a write uses for plain tags gives what canonical_tagset and json.dumps give, for any tags."""
    rng = random.Random(3)
    alphabet = 'ab,= \\"\x01\x1f\u00e9\u2028z'
    for _ in range(5000):
        tags = {"".join(rng.choices(alphabet, k=rng.randint(1, 4))): "".join(rng.choices(alphabet, k=rng.randint(1, 4)))
                for _ in range(rng.randint(0, 4))}
        assert _series_texts(tags) == (canonical_tagset(tags), json.dumps(tags, sort_keys=True, ensure_ascii=False))


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


def test_within_one_body_the_last_line_of_a_time_wins_field_by_field(tmp_path):
    """Lines of one series and time in one body, parted into blocks of other field sets (some stored
    by field set, some row by row): each field keeps the value of its last line, as in InfluxDB."""
    store = EmbeddedStore(tmp_path / "pue.db")
    store.write(b"p,m=a value=0.5 1\np,m=a value=0.5,raw=1 2\n")  # shapes written before
    store.write(b"p,m=a value=1 10\n"  # one line of {value}: stored by field set
                b"p,m=a value=5,raw=1 10\n"  # {value, raw} at the same time: a later line
                b"p,m=a value=7,raw=2 20\n"
                b"p,m=a raw=9 20\n")
    assert store.series("p", "value", {}, 0, 100)[1].tolist() == [0.5, 0.5, 5.0, 7.0]
    assert store.series("p", "raw", {}, 0, 100)[1].tolist() == [1.0, 1.0, 9.0]
    b = Batch()
    b.add("p", {"m": "a"}, 10, {"raw": 3.0})
    b.add("p", {"m": "a"}, [10, 30], {"value": [6.0, 8.0], "raw": [4.0, np.nan]})
    b.add("p", {"m": "a"}, 30, {"raw": 2.5})
    store.write_batch(b)
    assert store.series("p", "value", {}, 0, 100)[1].tolist() == [0.5, 0.5, 6.0, 7.0, 8.0]
    assert store.series("p", "raw", {}, 0, 100)[1].tolist() == [1.0, 4.0, 9.0, 2.5]
    # Field sets taking turns at one time (the parser's groups are by field set): the last line wins.
    store.write(b"q a=1 10\nq a=2,b=1 10\nq a=3 10\nq a=4 11\nq,x=1 a=1 10\nq b=5 10\n")
    assert sorted(store.series("q", "a", {}, 0, 100)[1].tolist()) == [1.0, 3.0, 4.0]  # q at 10 and 11, x=1 at 10
    assert store.series("q", "a", {"x": "1"}, 0, 100)[1].tolist() == [1.0]
    assert store.series("q", "b", {}, 0, 100)[1].tolist() == [5.0]


def test_partial_write_stores_the_good_lines_and_rejects(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    with pytest.raises(StoreRejected, match=r"partial write, 2 bad line\(s\) skipped: line 2: .*missing field value.*1 more"):
        store.write(b"m f=1 1\nm f= 2\nm f=3 3\nm,t f=4 4\n")
    assert store.series("m", "f", {}, 0, 10)[0].tolist() == [1, 3]
    store.write(b'm s="text",f=5 5\n')
    assert store.series("m", "f", {}, 0, 10)[0].tolist() == [1, 3, 5]
    assert store.text_series("m", "s", {}, 0, 10)[1] == ["text"]
    with pytest.raises(StoreRejected, match="UTF-8"):
        store.write(b"m f=1 \xff\n")


def test_string_fields_are_kept_and_read_back(tmp_path):
    """An agent's gpu_info (name, serial, driver) is stored, not dropped; last write wins as for numbers."""
    store = EmbeddedStore(tmp_path / "pue.db", raw_retention_s=3600)
    assert isinstance(store, TextReader)
    tags = {"node": "gpu-a-1", "gpu": "0", "uuid": "GPU-1"}
    info = {"name": "NVIDIA H100 80GB HBM3", "serial": "1320123456789", "driver_version": "550.54.15",
            "note": 'quote " and \\ backslash, comma=equals'}
    lines = [encode_point("gpu_info", tags, {**info, "power_limit_w": 700.0}, T0 + i * 10**9) for i in range(3)]
    store.write(("\n".join(lines) + "\n").encode())
    store.write((encode_point("gpu_info", tags, {"driver_version": "560.35.03"}, T0 + 2 * 10**9) + "\n").encode())
    t, names = store.text_series("gpu_info", "name", {"node": "gpu-a-1"}, T0, T0 + 10**10)
    assert t.dtype == np.int64 and t.tolist() == [T0, T0 + 10**9, T0 + 2 * 10**9]
    assert names == [info["name"]] * 3
    assert store.text_series("gpu_info", "serial", tags, T0, T0 + 1)[1] == ["1320123456789"]  # not made a number
    assert store.text_series("gpu_info", "note", tags, T0, T0 + 1)[1] == [info["note"]]
    assert store.text_series("gpu_info", "driver_version", tags, T0, T0 + 10**10)[1] == ["550.54.15", "550.54.15",
                                                                                        "560.35.03"]
    assert store.series("gpu_info", "power_limit_w", tags, T0, T0 + 10**10)[1].tolist() == [700.0] * 3
    assert store.text_series("gpu_info", "name", {"node": "other"}, T0, T0 + 10**10)[1] == []
    with pytest.raises(StoreRejected, match=r"gpu_info.name holds strings, not numbers"):
        store.series("gpu_info", "name", tags, T0, T0 + 10**10)
    with pytest.raises(StoreRejected, match=r"gpu_info.power_limit_w holds numbers, not strings"):
        store.text_series("gpu_info", "power_limit_w", tags, T0, T0 + 10**10)
    # Retention applies to strings too.
    assert store.prune(T0 + 3600 * 10**9 + 10**9 + 1) == 2 * (len(info) + 1)
    assert store.text_series("gpu_info", "name", tags, 0, 2**62)[0].tolist() == [T0 + 2 * 10**9]
    store.close()
    db = sqlite3.connect(tmp_path / "pue.db")
    assert db.execute("SELECT value FROM text_points WHERE field = 'serial'").fetchone() == ("1320123456789",)
    db.close()


def test_a_field_keeps_its_type_as_in_influxdb(tmp_path):
    """A line giving a field the other type is refused (partial write) by every connection, after a restart too."""
    store = EmbeddedStore(tmp_path / "pue.db")
    store.write(b'm,a=1 f=1,s="x" 1\n')
    other = EmbeddedStore(tmp_path / "pue.db")  # the collector has two connections to the file
    with pytest.raises(StoreRejected, match=r"partial write, 2 bad line\(s\) skipped: line 2: field type conflict: "
                                            r"'f' of 'm' is a number, not a string.*1 more"):
        other.write(b'm,a=1 f=2 2\nm,a=2 f="two" 2\nm,a=1 new=1,s=3 3\n')
    assert other.series("m", "f", {}, 0, 10)[1].tolist() == [1.0, 2.0]
    # The refused line's new field was not recorded: it may still become a string.
    store.write(b'm new="yes" 4\n')
    assert store.text_series("m", "new", {}, 0, 10)[1] == ["yes"]
    with pytest.raises(StoreRejected, match="is a string, not a number"):
        store.write_columns("m", {"a": "1"}, "s", np.array([5]), np.array([1.0]))
    store.close()
    other.close()
    with pytest.raises(StoreRejected, match="'s' of 'm' is a string, not a number"):
        EmbeddedStore(tmp_path / "pue.db").write(b"m s=1 9\n")


def test_a_file_from_before_string_fields_knows_its_number_fields(tmp_path):
    path = tmp_path / "pue.db"
    store = EmbeddedStore(path, compact_after_s=0)
    store.write(b"m,a=1 f=1 1\nm,a=1 f=2 2\nm,a=2 g=1 1\n")
    store.compact(horizon_ns=2)  # f's first point moves into a chunk
    store.close()
    # As a file of then: f only in a chunk, g a row of `points` (no `fields`, no `lines` yet).
    db = sqlite3.connect(path)
    db.execute("DROP TABLE fields")
    db.execute("DELETE FROM lines")
    db.execute("INSERT INTO points SELECT id, 'g', 1, 1.0 FROM series WHERE tagset = 'a=2'")
    db.commit()
    db.close()
    store = EmbeddedStore(path)
    for field in ("f", "g"):
        with pytest.raises(StoreRejected, match=f"field type conflict: '{field}' of 'm' is a number"):
            store.write(f'm {field}="x" 3\n'.encode())
    assert store.series("m", "f", {}, 0, 10)[1].tolist() == [1.0]


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


def test_every_field_type_is_kept_and_read_back_as_written_after_reopening(tmp_path):
    from puewatch.core.batch import Batch

    text = 'two\nlines, a back\\slash and "quotes"'
    store = EmbeddedStore(tmp_path / "pue.db")
    wire = text.replace("\\", "\\\\").replace('"', '\\"')
    # One series, one field name per type (integers up to 2**53: a REAL holds them exactly); a later line
    # of the series with other types is its own block.
    store.write(f'm,t=a f=1.5,i=-7i,u=9007199254740992u,b=t,s="{wire}" {T0}\nm,t=a f=2,b=FALSE {T0 + 1}\n'.encode())
    batch = Batch()
    batch.add("typed", {"t": "a"}, np.array([T0, T0 + 1]), {"n": np.array([3, 4]), "ok": np.array([True, False]),
                                                             "x": np.array([0.5, 0.25])})
    store.write_batch(batch)
    store.close()

    store = EmbeddedStore(tmp_path / "pue.db")  # what a restarted collector sees
    assert store.field_types() == {
        ("m", "f"): "float", ("m", "i"): "integer", ("m", "u"): "unsigned", ("m", "b"): "boolean",
        ("m", "s"): "string", ("typed", "n"): "integer", ("typed", "ok"): "boolean", ("typed", "x"): "float"}
    got = {f: store.values("m", f, {"t": "a"}, T0, T0 + 2)[1] for f in "fiubs"}
    assert got == {"f": [1.5, 2.0], "i": [-7], "u": [2**53], "b": [True, False], "s": [text]}
    assert [type(v[0]) for v in got.values()] == [float, int, int, bool, str]
    assert store.values("typed", "ok", {}, T0, T0 + 2)[1] == [True, False]
    assert store.values("typed", "n", {}, T0, T0 + 2)[1] == [3, 4]
    store.close()


def test_a_field_keeps_the_type_of_its_first_write(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    store.write(f"m v=1i {T0}\nm v=true {T0 + 1}\n".encode())  # ingest refuses the second; the store keeps both numbers
    assert store.field_types() == {("m", "v"): "integer"}
    store.close()
