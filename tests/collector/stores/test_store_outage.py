"""Outage: steady writes through StoreWriter while the real server is stopped for more than 20 s
and restarted on the same port and data directory; the writer itself is restarted mid-outage.
Afterwards every point is in the server exactly once with its value."""

from __future__ import annotations

import threading
import time

import pytest

from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.collector.stores.influx2 import Influx2Store
from puewatch.collector.stores.spool import StoreWriter
from store_fixtures import influx, influx_auth, vm  # noqa: F401 (fixtures)
from puewatch.lineprotocol import encode_line, series_key

DOWN_S = 21.0
T0 = (int(time.time()) - 3600) * 10**9  # an hour ago, whole seconds: ms-exact in VictoriaMetrics
KEY = series_key("site_power", {"site": "outage"})


def _drive(server, make_store, tmp_path):
    """Submit a batch of 20 points every 50 ms for ~28 s; the server is down from 3 s to 3 + DOWN_S s,
    and the StoreWriter is closed and replaced (same spool directory) at 10 s."""
    spool = tmp_path / "spool"
    w = StoreWriter(make_store(), spool, 64 << 20, backoff_min_s=0.2, backoff_max_s=2.0)
    expected: dict[int, float] = {}
    start = time.monotonic()
    i = 0
    stopped = restarted = swapped = False
    spooled_during_outage = 0
    while time.monotonic() - start < DOWN_S + 7:
        elapsed = time.monotonic() - start
        if not stopped and elapsed >= 3:
            server.stop()
            stopped = True
            down_at = time.monotonic()
        if stopped and not swapped and elapsed >= 10:
            spooled_during_outage = w.stats()["spool_batches"]
            assert not w.close(timeout_s=0.2)  # store away: the spool stays on disk
            w = StoreWriter(make_store(), spool, 64 << 20, backoff_min_s=0.2, backoff_max_s=2.0)
            assert w.stats()["spool_batches"] >= spooled_during_outage
            swapped = True
        if stopped and not restarted and time.monotonic() - down_at >= DOWN_S:
            server.start()
            restarted = True
        lines = []
        for k in range(20):
            t = T0 + (i * 20 + k) * 10**6  # 1 ms apart
            v = i * 20 + k + 0.5
            expected[t] = v
            lines.append(encode_line(KEY, {"power_w": v}, t))
        w.submit(("\n".join(lines) + "\n").encode(), 20)
        i += 1
        time.sleep(0.05)
    assert restarted and spooled_during_outage > 10
    assert w.flush(30), w.stats()
    st = w.stats()
    assert st["dropped_points"] == 0 and st["rejected_points"] == 0 and st["spool_batches"] == 0
    assert w.close()
    assert not list(spool.glob("*.rec"))
    return expected


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_influxd_outage_loses_nothing(influx, tmp_path):
    influx.query('CREATE DATABASE "site"')
    expected = _drive(influx, lambda: Influx1Store(influx.url, "site", timeout_s=2, connect_timeout_s=1), tmp_path)
    rows = influx.points('SELECT "power_w" FROM "site_power" WHERE "site" = \'outage\'', "site")
    assert len(rows) == len(expected)
    assert {t: v for t, v in rows} == expected


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_victoria_metrics_outage_loses_nothing(vm, tmp_path):
    expected = _drive(vm, lambda: Influx2Store(vm.url, "t", "o", "b", timeout_s=2, connect_timeout_s=1, gzip=True), tmp_path)
    got = vm.export('{__name__="site_power_power_w",site="outage"}')
    assert len(got) == 1
    ms, values = next(iter(got.values()))
    assert len(ms) == len(expected)
    assert dict(zip(ms, values)) == {t // 10**6: v for t, v in expected.items()}
