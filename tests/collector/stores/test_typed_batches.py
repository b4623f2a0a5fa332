"""Typed batches: building them, the disk encoding, the columnar parser, and a round trip through
every store (embedded SQLite, influxd 1.6.7, VictoriaMetrics) and through the writer's spool."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest

from puewatch.collector.fieldtypes import kind_of
from puewatch.collector.lineparse import parse_columns, parse_line
from puewatch.collector.stores.base import StoreRejected
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.collector.stores.influx2 import Influx2Store
from puewatch.collector.stores.spool import StoreWriter
from puewatch.core import batch as typed
from puewatch.diskqueue import decode_record
from puewatch.core import schema
from puewatch.core.batch import Batch, BatchError
from puewatch.core.site import Meter
from puewatch.lineprotocol import LineProtocolError
from servers import free_port
from store_fixtures import influx, influx_auth, vm  # noqa: F401 (fixtures)

T0 = int(time.time()) * 10**9 - 3600 * 10**9  # an hour ago: inside every retention window
S = 10**9


def _mixed() -> Batch:
    """Every kind of column, values missing here and there, and a line protocol part."""
    b = Batch()
    t = T0 + np.arange(6, dtype=np.int64) * S
    b.add(*schema.meter_energy("fra1", "ups", Meter(role="it", zone="hall a,b=c"), False), t,
          {"energy_wh": np.array([0.25, np.nan, 1e-300, -0.0, np.inf, 3.5])})
    b.add("gpu_info", {"node": "gpu-1", "gpu": "0", "empty": ""}, t[:3],
          {"name": np.array(["H100", None, 'quote " and \\ x'], dtype=object), "count": np.array([1, 2, -(2**62)]),
           "ok": np.array([True, False, True])})
    b.add_line_protocol(f"agent,node=n1 power_w=5.5 {T0}\n".encode(), 1)
    return b


def test_rows_without_a_value_are_not_added_and_empty_tags_are_left_out():
    b = _mixed()
    assert len(b) == 4 + 3 + 1  # the NaN and the inf rows of energy_wh are no rows
    assert b.add("m", {}, np.array([1, 2]), {"f": np.array([np.nan, np.nan])}) == 0
    assert b.add("m", {}, 5, {"f": None}) == 0
    with pytest.raises(BatchError, match="line protocol"):
        list(b.rows())
    only_typed = Batch()
    only_typed.add("gpu_info", {"node": "gpu-1", "empty": ""}, [T0, T0 + 1], {"name": np.array(["a", None], dtype=object),
                                                                            "n": np.array([1, 2])})
    assert list(only_typed.rows()) == [("gpu_info", {"node": "gpu-1"}, {"name": "a", "n": 1}, T0),
                                       ("gpu_info", {"node": "gpu-1"}, {"n": 2}, T0 + 1)]


def test_what_line_protocol_cannot_carry_is_refused_when_added():
    b = Batch()
    with pytest.raises(LineProtocolError, match="newline"):
        b.add("m", {"site": "a\nb"}, 1, {"f": 1.0})
    with pytest.raises(LineProtocolError, match="reserves"):
        b.add("_m", {}, 1, {"f": 1.0})
    with pytest.raises(BatchError, match="2 values for 3 times"):
        b.add("m", {}, [1, 2, 3], {"f": [1.0, 2.0]})
    with pytest.raises(BatchError, match="newline"):
        b.add("m", {}, 1, {"s": "a\nb"})
    with pytest.raises(BatchError, match="integer ns"):
        b.add("m", {}, 1.5, {"f": 1.0})
    assert len(b) == 0


def test_the_disk_encoding_reads_back_exactly():
    b = _mixed()
    data = typed.encode(b)
    assert data.startswith(typed.MAGIC)
    back = typed.decode(data)
    assert len(back) == len(b) and back.to_line_protocol() == b.to_line_protocol()
    for p, q in zip(b.parts, back.parts):
        if isinstance(p, bytes):
            assert p == q
            continue
        assert (p.measurement, p.tags) == (q.measurement, q.tags)
        assert p.time_ns.tobytes() == q.time_ns.tobytes()
        for name, col in p.fields.items():
            assert q.fields[name].dtype == col.dtype
            if col.dtype == object:
                assert q.fields[name].tolist() == col.tolist()
            else:
                assert q.fields[name].tobytes() == col.tobytes()  # bit for bit (-0.0, 1e-300)
    # A spool file from before typed batches is line protocol: it reads back as such.
    old = typed.decode(b"m f=1 1\nm f=2 2\n", 2)
    assert old.parts == [b"m f=1 1\nm f=2 2\n"] and len(old) == 2
    with pytest.raises(BatchError, match="not a readable batch"):
        typed.decode(data[:-3])


def test_the_columnar_parser_reads_what_parse_line_reads():
    body = (b"m,a=1 f=1.5,i=-3i,u=18446744073709551615u,b=true 10\n"
            b"# a comment\n"
            b"\n"
            b"m,a=1 f=2,i=4i,u=1u,b=F 11\n"
            b'm,a=1 s="text, with = and \\" quote",f=3 12\n'
            b"m,a\\ b=x\\,y f=4 13\n"
            b"m,a=1 f=1,f=9 14\n"
            b"m,a=1,a=2 f=1 15\n"
            b"m f= 16\n"
            b"m,a=1 f=5\n")
    blocks, errors = parse_columns(body, now_ns=99)
    assert [n for n, _ in errors] == [8, 9]
    assert "duplicate tags" in errors[0][1] and "missing field value" in errors[1][1]
    got = {}
    for block, linenos, types in blocks:
        for i, n in enumerate(linenos):
            # Numbers as float64, strings as they are, each field with its InfluxDB type (the store records it).
            fields = {k: (types[k], c[i]) for k, c in block.fields.items()}
            got[n] = (block.measurement, block.tags, fields, int(block.time_ns[i]))
    for n, line in enumerate(body.split(b"\n"), 1):
        if n in got:
            p = parse_line(line)
            fields = {k: (kind_of(v), v if isinstance(v, str) else float(v)) for k, v in p.fields.items()}
            assert got[n] == (p.measurement, p.tags, fields, 99 if p.time_ns is None else p.time_ns), n
    assert sorted(got) == [1, 4, 5, 6, 7, 10]


def test_the_columnar_parser_reads_lines_with_strings_as_parse_line_does():
    """Lines with string values (the job ledger's) take the columnar parser's regex path: each line
    must read as parse_line reads it, including what a string may hold and a key given twice."""
    lines = [b'job_ledger,gpu=0,node=n1 job="j, 1=x y",tenant="t\xc3\xa9",n=2i,u=3u,ok=true,f=1.5 10',
             b'job_ledger,gpu=0,node=n1 job="",tenant="2",n=-4i,u=0u,ok=F,f=-2e3 11',
             b'job_ledger,gpu=0,node=n1 tenant="a",job="b",n=1i,u=1u,ok=t,f=1 12',  # other order: its own block
             b'job_ledger,gpu=0,node=n1 job="1.5",tenant="x",n=1.5,u=1u,ok=t,f=1 13',  # n a float: its own block
             b'm s="dup",s="last" 14',
             b'm s="a\nb" 15',  # a newline inside the string: one line
             b'm s="a",n=1i',  # no timestamp
             b'm s="esc \\" q",n=1i 17']
    body = b"\n".join(lines) + b"\n"
    blocks, errors = parse_columns(body, now_ns=99)
    assert errors == []
    got = {}
    for block, linenos, types in blocks:
        for i, n in enumerate(linenos):
            got[n] = (block.measurement, block.tags, {k: (types[k], c[i]) for k, c in block.fields.items()},
                      int(block.time_ns[i]))
    assert sorted(got) == list(range(1, len(lines) + 1))
    for n, line in enumerate(lines, 1):
        p = parse_line(line)
        fields = {k: (kind_of(v), v if isinstance(v, str) else float(v)) for k, v in p.fields.items()}
        assert got[n] == (p.measurement, p.tags, fields, 99 if p.time_ns is None else p.time_ns), n
    assert got[1][2]["job"] == ("string", "j, 1=x y") and got[1][2]["tenant"] == ("string", "t\u00e9")


def _dump(path) -> list:
    db = sqlite3.connect(path)
    rows = db.execute("SELECT s.measurement, s.tagset, p.field, p.time_ns, p.value FROM points p JOIN series s "
                      "ON s.id = p.series_id ORDER BY 1, 2, 3, 4").fetchall()
    assert rows == []  # written now: numbers go to `lines`, one row per series and time
    for m, tagset, names, t, blob in db.execute(
            "SELECT s.measurement, s.tagset, f.names, l.time_ns, l.vals FROM lines l JOIN series s ON s.id = l.series_id "
            "JOIN field_sets f ON f.id = l.field_set"):
        values = [blob] if isinstance(blob, float) else np.frombuffer(blob, "<f8").tolist()  # one field: a REAL
        rows += [(m, tagset, name, t, x) for name, x in zip(json.loads(names), values) if x == x]
    rows.sort()
    rows += db.execute("SELECT s.measurement, s.tagset, p.field, p.time_ns, p.value FROM text_points p JOIN series s "
                       "ON s.id = p.series_id ORDER BY 1, 2, 3, 4").fetchall()
    db.close()
    return rows


def test_embedded_store_typed_round_trip_equals_the_text_path(tmp_path):
    b = _mixed()
    store = EmbeddedStore(tmp_path / "typed.db")
    store.write_batch(b)
    sid = schema.meter_energy("fra1", "ups", Meter(role="it", zone="hall a,b=c"), False)
    t, v = store.series(sid.measurement, "energy_wh", sid.tags, T0, T0 + 10 * S)
    assert t.tolist() == [T0, T0 + 2 * S, T0 + 3 * S, T0 + 5 * S] and v.tolist() == [0.25, 1e-300, -0.0, 3.5]
    assert store.text_series("gpu_info", "name", {"node": "gpu-1"}, T0, T0 + S * 10)[1] == ["H100", 'quote " and \\ x']
    assert store.series("gpu_info", "count", {}, T0, T0 + 10 * S)[1].tolist() == [1.0, 2.0, float(-(2**62))]
    assert store.series("gpu_info", "ok", {}, T0, T0 + 10 * S)[1].tolist() == [1.0, 0.0, 1.0]
    assert store.series("agent", "power_w", {"node": "n1"}, T0, T0 + 1)[1].tolist() == [5.5]
    assert store.tag_values("gpu_info", "empty") == []
    store.close()
    text = EmbeddedStore(tmp_path / "text.db")
    text.write(b.to_line_protocol())
    text.close()
    typed = _dump(tmp_path / "typed.db")
    assert len(typed) > 10 and typed == _dump(tmp_path / "text.db")


def test_embedded_store_refuses_a_typed_block_of_the_other_type_and_keeps_the_rest(tmp_path):
    store = EmbeddedStore(tmp_path / "s.db")
    store.write(b'm s="x" 1\n')
    b = Batch()
    b.add("m", {}, [2, 3], {"s": [1.0, 2.0]})
    b.add("m", {}, [2, 3], {"f": [1.0, 2.0]})
    with pytest.raises(StoreRejected, match=r"partial write, 2 bad line\(s\) skipped: field type conflict: 's' of 'm' "
                                            r"is a string, not a number"):
        store.write_batch(b)
    assert store.series("m", "f", {}, 0, 10)[1].tolist() == [1.0, 2.0]
    assert store.text_series("m", "s", {}, 0, 10)[1] == ["x"]


def _numbers() -> Batch:
    b = Batch()
    t = T0 + np.arange(50, dtype=np.int64) * S
    b.add(*schema.site_energy("fra1", 1), t, {"facility_input_wh": np.linspace(1.0, 2.0, 50),
                                              "it_wh": np.where(np.arange(50) % 7 == 0, np.nan, 0.5)})
    b.add(*schema.snmp_reading("fra1", "pdu 0,a", "total_active_power", "W"), T0, {"value": 1234.5, "raw": 12345.0})
    return b


def test_influx1_typed_round_trip(influx):
    influx.query('CREATE DATABASE "site"')
    store = Influx1Store(influx.url, "site")
    store.write_batch(_numbers())
    sid = schema.site_energy("fra1", 1)
    t, v = store.series(sid.measurement, "facility_input_wh", sid.tags, T0, T0 + 100 * S)
    assert t.tolist() == (T0 + np.arange(50) * S).tolist() and v.tolist() == np.linspace(1.0, 2.0, 50).tolist()
    t, v = store.series(sid.measurement, "it_wh", sid.tags, T0, T0 + 100 * S)
    assert t.tolist() == [T0 + i * S for i in range(50) if i % 7] and set(v.tolist()) == {0.5}
    sid = schema.snmp_reading("fra1", "pdu 0,a", "total_active_power", "W")
    assert store.series(sid.measurement, "value", sid.tags, T0, T0 + 1)[1].tolist() == [1234.5]
    store.close()


def test_influx2_typed_round_trip_to_victoria_metrics(vm):
    store = Influx2Store(vm.url, "token", "org", "bucket")
    store.write_batch(_numbers())
    store.close()
    got = vm.export('{__name__="site_energy_facility_input_wh"}')
    (ms, vals), = got.values()
    assert ms == [(T0 + i * S) // 1_000_000 for i in range(50)]
    assert vals == pytest.approx(np.linspace(1.0, 2.0, 50).tolist(), rel=1e-11)  # VM keeps 12 significant digits
    got = vm.export('{__name__="site_energy_it_wh"}')
    (ms, vals), = got.values()
    assert len(ms) == len([i for i in range(50) if i % 7]) and set(vals) == {0.5}


def test_typed_batches_spooled_while_the_store_is_away_are_replayed_after_a_restart(tmp_path):
    dead = Influx1Store(f"http://127.0.0.1:{free_port()}", "site", timeout_s=1)
    w = StoreWriter(dead, tmp_path / "spool", 1 << 20, backoff_min_s=60, backoff_max_s=60)
    batches = [_mixed(), _numbers()]
    for b in batches:
        w.submit(b)
    w.submit(b"m f=7 7\n", 1)  # line protocol between typed batches keeps its place
    deadline = time.monotonic() + 20
    while w.stats()["spool_batches"] < 3:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    assert not w.close(timeout_s=0.2)
    files = sorted((tmp_path / "spool").glob("*.rec"), key=lambda f: int(f.name.split("-")[0]))
    assert [decode_record(f.read_bytes())[0].startswith(typed.MAGIC) for f in files] == [True, True, False]
    # A restart, now with the embedded store: everything is replayed, typed.
    store = EmbeddedStore(tmp_path / "s.db")
    w2 = StoreWriter(store, tmp_path / "spool", 1 << 20)
    assert w2.flush(20)
    assert w2.stats()["points_written"] == len(batches[0]) + len(batches[1]) + 1
    assert store.series("m", "f", {}, 0, 10)[1].tolist() == [7.0]
    sid = schema.site_energy("fra1", 1)
    assert store.series(sid.measurement, "facility_input_wh", sid.tags, T0, T0 + 100 * S)[1].tolist() == \
        np.linspace(1.0, 2.0, 50).tolist()
    assert store.text_series("gpu_info", "name", {}, T0, T0 + 10 * S)[1] == ["H100", 'quote " and \\ x']
    w2.close()


def test_a_refused_typed_batch_is_kept_as_line_protocol(tmp_path):
    store = EmbeddedStore(tmp_path / "s.db")
    store.write(b'm s="x" 1\n')
    w = StoreWriter(store, tmp_path / "spool", 1 << 20)
    b = Batch()
    b.add("m", {"a": "1"}, [2, 3], {"s": [1.0, 2.0]})
    w.submit(b)
    assert w.flush(10)
    assert w.stats()["rejected_points"] == 2
    (kept,) = (tmp_path / "spool" / "rejected").iterdir()
    assert kept.read_bytes() == b"m,a=1 s=1.0 2\nm,a=1 s=2.0 3\n"
    w.close()
