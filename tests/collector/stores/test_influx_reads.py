"""Influx1Store.series reads numbers straight into arrays (no Python object per point) and still
reads everything else the `json` way: against a real influxd 1.6.7."""

from __future__ import annotations

import time

import numpy as np
import pytest

from puewatch.collector.stores.base import StoreRejected, TextReader
from puewatch.collector.stores.influx1 import Influx1Store, _numeric_values
from puewatch.lineprotocol import encode_point
from store_fixtures import influx  # noqa: F401 (fixture)

T0 = int(time.time()) * 10**9 - 3600 * 10**9


@pytest.mark.parametrize("chunk_size", [7, 10_000])
def test_numbers_of_every_form_read_exactly_across_chunks(influx, chunk_size, monkeypatch):
    influx.query('CREATE DATABASE "site"')
    rng = np.random.default_rng(3)
    n = 1000
    times = T0 + np.cumsum(rng.integers(1, 10**9, n))  # ns, 19 digits: exact only as integers
    values = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)  # exponents both ways, negatives
    values[::50] = np.round(values[::50])  # whole floats (sent as `1234`)
    lines = [f"m,meter=a value={v!r} {t}" for t, v in zip(times.tolist(), values.tolist())]
    lines += [f"mi,meter=b value={i}i {T0 + i}" for i in range(-5, 5)]  # integers (another measurement: one type per field)
    influx.write(("\n".join(lines) + "\n").encode(), "site")
    store = Influx1Store(influx.url, "site", chunk_size=chunk_size)

    def no_json(*args):
        raise AssertionError("a numeric answer was decoded with json")

    monkeypatch.setattr(store, "_results", no_json)
    t, v = store.series("m", "value", {"meter": "a"}, T0, T0 + 10**15)
    assert t.dtype == np.int64 and v.dtype == np.float64
    np.testing.assert_array_equal(t, times)
    np.testing.assert_array_equal(v, values)
    t, v = store.series("mi", "value", {"meter": "b"}, 0, T0 + 10**15)
    assert t.tolist() == [T0 + i for i in range(-5, 5)] and v.tolist() == [float(i) for i in range(-5, 5)]
    monkeypatch.undo()
    t, v = store.series("m", "value", {"meter": "nobody"}, T0, T0 + 10**15)
    assert t.size == 0 and v.size == 0
    store.close()


def test_booleans_strings_and_errors_go_the_json_way(influx):
    influx.query('CREATE DATABASE "site"')
    influx.write(f"m,meter=a on=true {T0}\nm,meter=a on=false {T0 + 1}\nm,meter=s label=\"x\" {T0}\n".encode(), "site")
    store = Influx1Store(influx.url, "site")
    t, v = store.series("m", "on", {"meter": "a"}, T0, T0 + 10)
    assert t.tolist() == [T0, T0 + 1] and v.tolist() == [1.0, 0.0]
    with pytest.raises(StoreRejected, match="holds strings"):
        store.series("m", "label", {}, T0, T0 + 10)
    with pytest.raises(StoreRejected, match="database not found"):
        Influx1Store(influx.url, "nope").series("m", "on", {}, T0, T0 + 10)
    store.close()


def test_string_fields_read_back_with_text_series(influx):
    influx.query('CREATE DATABASE "site"')
    tags = {"node": "gpu-a-1", "gpu": "0"}
    lines = [encode_point("gpu_info", tags, {"name": "NVIDIA H100 80GB HBM3", "serial": f"13201234567{i}",
                                             "note": 'quote " comma, equals=', "power_limit_w": 700.0}, T0 + i)
             for i in range(3)]
    influx.write(("\n".join(lines) + "\n").encode(), "site")
    store = Influx1Store(influx.url, "site", chunk_size=2)  # across chunks
    assert isinstance(store, TextReader)
    t, serials = store.text_series("gpu_info", "serial", {"node": "gpu-a-1"}, T0, T0 + 10)
    assert t.dtype == np.int64 and t.tolist() == [T0, T0 + 1, T0 + 2]
    assert serials == ["132012345670", "132012345671", "132012345672"]
    assert store.text_series("gpu_info", "note", tags, T0, T0 + 1)[1] == ['quote " comma, equals=']
    assert store.text_series("gpu_info", "name", {"node": "other"}, T0, T0 + 10)[1] == []
    with pytest.raises(StoreRejected, match="holds numbers, not strings"):
        store.text_series("gpu_info", "power_limit_w", tags, T0, T0 + 10)
    store.close()


def test_only_plain_numeric_answers_take_the_fast_way():
    doc = b'{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","value"],"values":[[1700000000000000001,1.5],[1700000000000000002,-2e-07]]}]}]}'
    t, v = _numeric_values(doc)
    assert t.tolist() == [1700000000000000001, 1700000000000000002] and v.tolist() == [1.5, -2e-07]
    for other in (
        doc.replace(b"1.5", b"null"),
        doc.replace(b"1.5", b'"x"'),
        doc.replace(b"1.5", b"true"),
        doc.replace(b",1.5]", b",1.5,2.5]").replace(b",-2e-07]", b",-2e-07,1]"),  # three columns
        b'{"results":[{"statement_id":0,"error":"boom"}]}',
        b'{"results":[{"statement_id":0}]}',
        doc.replace(b']]}]}]}', b']]},{"name":"m","columns":["time","value"],"values":[[1,2]]}]}]}'),  # two series
    ):
        assert _numeric_values(other) is None, other
