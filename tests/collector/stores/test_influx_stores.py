"""The InfluxDB v2 write store against VictoriaMetrics, the v1 store and reader against influxd 1.6.7,
and how HTTP failures map onto StoreUnavailable / StoreRejected."""

from __future__ import annotations

import time

import numpy as np
import pytest

from puewatch.collector.stores.base import Reader, Store, StoreRejected, StoreUnavailable
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.collector.stores.influx2 import Influx2Store
from puewatch.lineprotocol import encode_point
from store_fixtures import influx, influx_auth, vm  # noqa: F401 (fixtures)
from servers import free_port, scripted_http

T0 = int(time.time()) * 10**9 - 3600 * 10**9  # an hour ago: inside every retention window


def _body(n: int, measurement: str = "site_power", site: str = "a") -> tuple[bytes, list[int], list[float]]:
    times = [T0 + i * 1_000_000_000 + 123_456 for i in range(n)]  # sub-ms parts: truncated by VM
    values = [1000.0 + i * 0.25 for i in range(n)]
    lines = [encode_point(measurement, {"site": site}, {"power_w": v}, t) for t, v in zip(times, values)]
    return ("\n".join(lines) + "\n").encode(), times, values


@pytest.mark.parametrize("gzip", [False, True])
def test_influx2_writes_to_victoria_metrics(vm, gzip):
    store = Influx2Store(vm.url, "token", "org", "bucket", gzip=gzip)
    assert isinstance(store, Store)
    body, times, values = _body(500)
    store.write(body)
    store.close()
    got = vm.export('{__name__="site_power_power_w"}')
    assert list(got) == ["__name__=site_power_power_w,db=bucket,site=a"] or list(got) == ["__name__=site_power_power_w,site=a"]
    ms, vals = next(iter(got.values()))
    assert ms == [t // 1_000_000 for t in times]
    assert vals == values


def test_influx2_connection_refused_is_unavailable():
    store = Influx2Store(f"http://127.0.0.1:{free_port()}", "t", "o", "b", timeout_s=2)
    with pytest.raises(StoreUnavailable, match="Connection refused"):
        store.write(b"m f=1 1\n")
    store.close()


def test_influx2_against_a_v1_server_is_rejected_with_its_message(influx):
    # influxd 1.6.7 has no /api/v2/write: 404, a refusal that no retry can fix.
    store = Influx2Store(influx.url, "t", "o", "b")
    with pytest.raises(StoreRejected, match="HTTP 404"):
        store.write(b"m f=1 1\n")
    store.close()


@pytest.mark.parametrize("cls", ["influx1", "influx2"])
@pytest.mark.parametrize(
    "status,error,match",
    [
        (429, StoreUnavailable, "HTTP 429: too many"),
        (503, StoreUnavailable, "HTTP 503: too many"),
        (500, StoreUnavailable, "HTTP 500"),
        (400, StoreRejected, "HTTP 400: too many"),
        (413, StoreRejected, "HTTP 413"),
    ],
)
def test_status_codes_map_to_the_two_errors(cls, status, error, match):
    body = b'{"error": "too many things", "message": "too many things"}'
    with scripted_http(status, body) as url:
        store = Influx1Store(url, "db") if cls == "influx1" else Influx2Store(url, "t", "o", "b")
        with pytest.raises(error, match=match):
            store.write(b"m f=1 1\n")
        store.close()


@pytest.mark.parametrize("cls", ["influx1", "influx2"])
def test_a_server_that_does_not_answer_times_out_as_unavailable(cls):
    with scripted_http(204, delay_s=5) as url:
        store = Influx1Store(url, "db", timeout_s=0.5) if cls == "influx1" else Influx2Store(url, "t", "o", "b", timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.write(b"m f=1 1\n")
        assert time.monotonic() - t0 < 3
        store.close()


@pytest.mark.parametrize("gzip", [False, True])
def test_influx1_write_and_read_back(influx, gzip):
    influx.query('CREATE DATABASE "site"')
    store = Influx1Store(influx.url, "site", gzip=gzip, chunk_size=100)  # several chunks per read
    assert isinstance(store, Store) and isinstance(store, Reader)
    body_a, times, values = _body(1000, site="a")
    body_b, _, _ = _body(10, site="b b,=")
    store.write(body_a)
    store.write(body_b)
    t, v = store.series("site_power", "power_w", {"site": "a"}, T0, T0 + 10**15)
    assert t.dtype == np.int64 and v.dtype == np.float64
    assert t.tolist() == times and v.tolist() == values
    # start inclusive, end exclusive
    t, v = store.series("site_power", "power_w", {"site": "a"}, times[10], times[20])
    assert t.tolist() == times[10:20]
    assert store.tag_values("site_power", "site") == ["a", "b b,="]
    t, _ = store.series("site_power", "power_w", {"site": "nowhere"}, T0, T0 + 10**15)
    assert t.size == 0
    store.close()


def test_influx1_unknown_database_and_bad_lines_are_rejected(influx):
    store = Influx1Store(influx.url, "nope")
    with pytest.raises(StoreRejected, match="database not found"):
        store.write(b"m f=1 1\n")
    influx.query('CREATE DATABASE "site"')
    store = Influx1Store(influx.url, "site")
    with pytest.raises(StoreRejected, match="HTTP 400.*unable to parse"):
        store.write(b"m f=1 1\nm f= 2\n")
    with pytest.raises(StoreRejected, match="database not found"):
        Influx1Store(influx.url, "nope").series("m", "f", {}, 0, 10)


def test_influx1_connection_refused_is_unavailable():
    store = Influx1Store(f"http://127.0.0.1:{free_port()}", "site")
    with pytest.raises(StoreUnavailable, match="refused"):
        store.write(b"m f=1 1\n")
    with pytest.raises(StoreUnavailable):
        store.series("m", "f", {}, 0, 10)


@pytest.mark.parametrize("auth", ["basic", "params"])
def test_influx1_with_authentication(influx_auth, auth):
    influx_auth.query('CREATE DATABASE "site"')
    influx_auth.query("CREATE USER writer WITH PASSWORD 'w-pass'")
    influx_auth.query('GRANT WRITE ON "site" TO writer')
    anonymous = Influx1Store(influx_auth.url, "site")
    with pytest.raises(StoreRejected, match="401: authentication failed"):
        anonymous.write(b"m f=1 1\n")
    wrong = Influx1Store(influx_auth.url, "site", user="writer", password="bad", auth=auth)
    with pytest.raises(StoreRejected, match="401"):
        wrong.write(b"m f=1 1\n")
    writer = Influx1Store(influx_auth.url, "site", user="writer", password="w-pass", auth=auth)
    writer.write(b"m f=1.5 1000\n")
    with pytest.raises(StoreRejected, match="403|not authorized"):
        writer.series("m", "f", {}, 0, 10**6)
    admin = Influx1Store(influx_auth.url, "site", user="admin", password="adminpass", auth=auth)
    t, v = admin.series("m", "f", {}, 0, 10**6)
    assert t.tolist() == [1000] and v.tolist() == [1.5]


def test_influx1_field_types_are_what_the_database_holds_in_its_retention_policy(influx):
    # What the collector's ingest check starts with (collector/main.py ingest_field_types).
    influx.query("CREATE DATABASE ft")
    influx.query('CREATE RETENTION POLICY "raw" ON ft DURATION 0s REPLICATION 1')
    influx.write(b'm,t=a f=1.5,i=2i,s="x",b=true 1000\nother v=1 1000\n', "ft")
    influx.write(b"m,t=a g=1i 1000\n", "ft", rp="raw")
    assert Influx1Store(influx.url, "ft").field_types() == {
        ("m", "f"): "float", ("m", "i"): "integer", ("m", "s"): "string", ("m", "b"): "boolean", ("other", "v"): "float"}
    assert Influx1Store(influx.url, "ft", rp="raw").field_types() == {("m", "g"): "integer"}
    influx.query("CREATE DATABASE empty")
    assert Influx1Store(influx.url, "empty").field_types() == {}
    with pytest.raises(StoreRejected, match="database not found"):
        Influx1Store(influx.url, "missing").field_types()


def test_a_report_from_a_store_that_serves_no_influxql_is_a_clear_error(vm, tmp_path):
    """VictoriaMetrics takes v2 writes and answers every /query 200 as SHOW DATABASES: `report` and `export` died
    with a traceback (operator audit). They say what the store cannot do, exit 2, and print no traceback."""
    import subprocess
    import sys

    conf = tmp_path / "collector.toml"
    meters = "".join(f"""
[meters.{name}]
role = "{role}"{point}
measurement = "meter"
tags = {{ name = "{name}" }}
field = "wh"
unit = "Wh"
register = true
""" for name, role, point in (("inc", "facility_input", ""), ("it", "it", '\npoint = "ups_output"')))
    conf.write_text(f"""
[collector]
site = "s"
state_dir = "{tmp_path}/state"
{meters}
[store.influx2]
url = "{vm.url}"
bucket = "b"
token = "t"
""")
    for command in ("report", "export"):
        out = subprocess.run([sys.executable, "-m", "puewatch.cli", command, "--config", str(conf), "--from",
                              "2026-01-01", "--to", "2026-01-02", *(["-o", str(tmp_path / "x.csv")] if command == "export"
                                                                  else [])],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, (command, out.stderr)
        assert "Traceback" not in out.stderr
        assert "does not serve InfluxQL queries (VictoriaMetrics takes writes only)" in out.stderr, out.stderr
