"""`puewatch collector` stopped (SIGTERM) and started again on the same state directory: the
rolling windows go on from the checkpoint, and the time it was down counts as missing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from collector_support import FEEDER_TOKEN, CollectorProcess, free_port, post, scrape, write_config
from puewatch.collector.stores.embedded import EmbeddedStore

SECOND = 10**9
WINDOW_S = 120  # the "2m" window


def feed(ingest_port: int, seconds: float, t_origin: int) -> None:
    """Two readings a second: 130 kW at the incomer, 100 kW of IT on the UPS energy register."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.time_ns()
        energy = 1000.0 + 100_000.0 * (now - t_origin) / 3.6e12
        body = f"modbus,meter=incomer power_kw=130.0 {now}\nmodbus,meter=ups energy_wh={energy!r} {now}\n"
        assert post(ingest_port, body, FEEDER_TOKEN) == 204
        time.sleep(0.5)


def test_restart_rebuilds_the_rolling_windows_and_counts_the_downtime_as_missing(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    t_origin = time.time_ns()
    with CollectorProcess(conf, ingest_port):
        feed(ingest_port, 15, t_origin)
    t_stopped = time.time_ns()
    store_path = tmp_path / "state" / "puewatch.sqlite"
    store = EmbeddedStore(store_path)
    tags = {"site": "lab", "window": "2m", "category": "1"}
    t1, cov1 = store.series("pue", "pue_coverage", tags, t_origin, t_stopped + SECOND)
    assert len(cov1) >= 5 and cov1[-1] > 0.05
    last_before = int(t1[-1])
    covered_before = cov1[-1] * WINDOW_S
    store.close()

    time.sleep(4)  # down for a while: longer than settle_s
    with CollectorProcess(conf, ingest_port) as proc:
        t_restarted = time.time_ns()
        feed(ingest_port, 8, t_origin)
        m = scrape(metrics_port)
    assert "rolling history restored" in proc.output()
    t_end = time.time_ns() + SECOND

    store = EmbeddedStore(store_path)
    t, cov = store.series("pue", "pue_coverage", tags, t_origin, t_end)
    _, pue = store.series("pue", "pue", tags, t_origin, t_end)
    after = t > last_before
    assert after.sum() >= 3
    # A fresh start could cover at most the seconds since the restart; the checkpoint carries the rest.
    fresh_bound = (t_end - t_restarted) / SECOND / WINDOW_S
    assert cov[after][0] >= cov1[-1] - 1e-9
    assert cov[-1] > fresh_bound + 0.05 and cov[-1] > cov1[-1]
    assert m['puewatch_ratio_coverage{ratio="pue",window="2m"}'] > fresh_bound + 0.05
    assert pue[-1] == pytest.approx(1.3, rel=1e-6)

    # The coverage is exactly the cells where both totals are known: nothing for the downtime.
    ts, fac = store.series("site_energy", "facility_input_wh", {"site": "lab"}, t_origin, t_end)
    ti, it = store.series("site_energy", "it_wh", {"site": "lab"}, t_origin, t_end)
    both = np.intersect1d(ts, ti)
    final = int(t[-1])
    in_window = both[(both > final - WINDOW_S * SECOND) & (both <= final)]
    assert cov[-1] * WINDOW_S == pytest.approx(len(in_window), abs=1e-6)
    gap = (both > last_before) & (both <= t_restarted)
    assert not gap.any(), "no energy is made up for the time the collector was down"
    span_s = (final - int(in_window[0])) / SECOND + 1
    down_s = (t_restarted - t_stopped) / SECOND
    assert cov[-1] * WINDOW_S <= span_s - down_s + 1e-6
    assert covered_before <= len(in_window)
