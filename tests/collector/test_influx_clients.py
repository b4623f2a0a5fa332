"""InfluxDB's own Python clients, unmodified, against a real `puewatch collector`: what they write is
read back from the collector's embedded store (issue 13, "real clients work unmodified").

- `influxdb-client` (v2 API): synchronous writes in every precision, batching writes (flushed on
  close), gzip, `ready()`, `health()`, `ping()`;
- `influxdb` 5.3.2 (v1 API): `create_database`, `write_points` with and without `time_precision`.

One collector for the module; each test writes its own measurement (not one puewatch reads, so the
agent token may write it) and polls the store until the rows are there.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from puewatch.collector.stores.embedded import EmbeddedStore

from collector_support import TOKEN, CollectorProcess, free_port, write_config  # noqa: E402

# A second, whole, in the past hour (inside any retention), as every precision can write it.
T0_S = (time.time_ns() // 10**9) - 1800
PRECISIONS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clients")
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp, ingest_port, metrics_port)
    proc = CollectorProcess(conf, ingest_port)
    proc.port = ingest_port
    proc.store = tmp / "state" / "puewatch.sqlite"
    yield proc
    proc.stop()


def _rows(path: Path, measurement: str, field: str, tags: dict[str, str], want: int, text: bool = False,
          timeout_s: float = 60.0) -> dict[int, object]:
    """time_ns -> value of `field` once the store holds `want` rows (the store is written after the 204)."""
    deadline = time.monotonic() + timeout_s
    while True:
        store = EmbeddedStore(path)
        try:
            t, v = (store.text_series if text else store.series)(measurement, field, tags, 0, 2**62)
        finally:
            store.close()
        rows = dict(zip(t.tolist(), list(v) if text else v.tolist()))
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _kinds(path: Path) -> dict[tuple[str, str], str]:
    store = EmbeddedStore(path)
    try:
        return store.field_kinds()
    finally:
        store.close()


def test_v2_client_synchronous_writes_in_every_precision(collector):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    url = f"http://127.0.0.1:{collector.port}"
    with InfluxDBClient(url=url, token=TOKEN, org="site") as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        for i, (name, unit_ns) in enumerate(PRECISIONS_NS.items()):
            t = (T0_S + i) * (10**9 // unit_ns)  # the same second, in this precision's unit
            p = (Point("client_v2").tag("precision", name).field("power_w", 100.5 + i).field("count", i)
                 .field("ok", i % 2 == 0).field("note", f"line one\nmeter power_kw={i}").time(t, getattr(WritePrecision, name.upper())))
            api.write(bucket="pue", record=p, write_precision=getattr(WritePrecision, name.upper()))
    for i, name in enumerate(PRECISIONS_NS):
        want_ns = (T0_S + i) * 10**9
        assert _rows(collector.store, "client_v2", "power_w", {"precision": name}, 1) == {want_ns: 100.5 + i}
        assert _rows(collector.store, "client_v2", "count", {"precision": name}, 1) == {want_ns: float(i)}
        assert _rows(collector.store, "client_v2", "ok", {"precision": name}, 1) == {want_ns: float(i % 2 == 0)}
        # a newline in a string reaches the store intact, and the text after it is no point
        assert _rows(collector.store, "client_v2", "note", {"precision": name}, 1, text=True) == \
            {want_ns: f"line one\nmeter power_kw={i}"}
    assert ("meter", "power_kw") not in _kinds(collector.store)


def test_v2_client_batching_writes_are_flushed_on_close(collector):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import WriteOptions

    url = f"http://127.0.0.1:{collector.port}"
    n = 250
    with InfluxDBClient(url=url, token=TOKEN, org="site") as client:
        # Batches of 100, a flush interval far longer than the writes (milliseconds): the last 50 go out
        # on close(). Not much longer: close() leaves the interval's timer running on a thread that
        # Python waits for at exit (influxdata/influxdb-client-python#640), so 600 s here kept pytest
        # from exiting for ten minutes after the tests.
        with client.write_api(write_options=WriteOptions(batch_size=100, flush_interval=5_000)) as api:
            for i in range(n):
                api.write(bucket="pue", record=Point("client_batch").tag("gpu", str(i % 4)).field("power_w", float(i))
                          .time(T0_S * 10**3 + i, WritePrecision.MS), write_precision=WritePrecision.MS)
    got = {}
    for g in range(4):
        got.update(_rows(collector.store, "client_batch", "power_w", {"gpu": str(g)}, n // 4))
    assert got == {(T0_S * 10**3 + i) * 10**6: float(i) for i in range(n)}


def test_v2_client_gzip(collector):
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    url = f"http://127.0.0.1:{collector.port}"
    lines = [f"client_gzip,rack=r{i % 3} inlet_c={20 + i / 8} {(T0_S + i) * 10**9}" for i in range(300)]
    with InfluxDBClient(url=url, token=TOKEN, org="site", enable_gzip=True) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="pue", record=lines)
    got = {}
    for r in range(3):
        got.update(_rows(collector.store, "client_gzip", "inlet_c", {"rack": f"r{r}"}, 100))
    assert got == {(T0_S + i) * 10**9: 20 + i / 8 for i in range(300)}


def test_v2_client_ready_health_ping(collector):
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=f"http://127.0.0.1:{collector.port}", token=TOKEN, org="site") as client:
        assert client.ping() is True
        assert client.health().status == "pass"
        ready = client.ready()
        assert ready.status == "ready" and ready.up is not None


def test_v1_client_create_database_and_write_points(collector):
    from influxdb import InfluxDBClient

    # The collector takes the token as the v1 password (u=&p=), as InfluxDB 1.x takes a user's.
    client = InfluxDBClient(host="127.0.0.1", port=collector.port, username="gpu-a-1", password=TOKEN, database="pue")
    try:
        client.create_database("pue")  # a no-op success
        assert {"name": "pue"} in client.get_list_database()
        assert client.write_points([{"measurement": "client_v1", "tags": {"way": "ns"}, "time": (T0_S + 1) * 10**9,
                                     "fields": {"power_w": 12.5, "count": 3, "ok": True, "note": "a, b=c \"d\""}}])
        for i, precision in enumerate(("s", "ms", "u", "n", "m", "h")):
            unit_ns = {"s": 10**9, "ms": 10**6, "u": 10**3, "n": 1, "m": 60 * 10**9, "h": 3600 * 10**9}[precision]
            t = (T0_S // 3600) * 3600 * 10**9 // unit_ns  # a whole hour, in every unit
            assert client.write_points([{"measurement": "client_v1", "tags": {"way": precision}, "time": t,
                                         "fields": {"power_w": float(i)}}], time_precision=precision)
    finally:
        client.close()
    assert _rows(collector.store, "client_v1", "power_w", {"way": "ns"}, 1) == {(T0_S + 1) * 10**9: 12.5}
    assert _rows(collector.store, "client_v1", "count", {"way": "ns"}, 1) == {(T0_S + 1) * 10**9: 3.0}
    assert _rows(collector.store, "client_v1", "ok", {"way": "ns"}, 1) == {(T0_S + 1) * 10**9: 1.0}
    assert _rows(collector.store, "client_v1", "note", {"way": "ns"}, 1, text=True) == {(T0_S + 1) * 10**9: 'a, b=c "d"'}
    hour_ns = (T0_S // 3600) * 3600 * 10**9
    for i, precision in enumerate(("s", "ms", "u", "n", "m", "h")):
        assert _rows(collector.store, "client_v1", "power_w", {"way": precision}, 1) == {hour_ns: float(i)}, precision
