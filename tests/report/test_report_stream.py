"""Readings streamed from the store meter by meter give the report of readings held all at once, and of compaction."""

from __future__ import annotations

import numpy as np
import pytest

from report_support import synthetic_year, write_site
from puewatch.collector import config as collector_config
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.core.timefmt import NS
from puewatch.report.engine import ReportOptions, compute_report
from puewatch.report.sources import StoreReadings, read_store, stream_store

MARGIN = 900 * NS
OPTS = ReportOptions(source={"kind": "embedded"}, generated_at="2026-01-02T00:00:00Z")


def test_streamed_readings_compacted_or_not_give_the_same_report(tmp_path):
    year = synthetic_year(start="2025-01-01", end="2025-04-01")
    path = tmp_path / "store.sqlite"
    store = EmbeddedStore(path, synchronous="NORMAL")
    store.write(year.lines)
    site = collector_config.load(write_site(tmp_path, store_path=str(path))).site_model()
    lo, hi = year.start_ns - MARGIN, year.end_ns + MARGIN
    held = read_store(store, site, lo, hi, progress=False)
    want = compute_report(site, held, year.start_ns, year.end_ns, OPTS)

    seen: list[str] = []
    streamed = StoreReadings(store, site, lo, hi, on_read=seen.append)
    assert compute_report(site, streamed, year.start_ns, year.end_ns, OPTS) == want
    # Each meter read once, in order; then, as the synthetic year has gaps (its meters were
    # not all observed all the time), the PUE meters again, each once, for pue_joint.
    n = len(site.meters)
    assert want["completeness"] < 1.0
    assert seen[:n] == list(site.meters)
    pue_meters = set(site.members("facility_input")) | set(site.members("it"))
    zone_meters = {m for z in site.zone_names() for m in (*site.boundary(z), *site.members("it", z))}
    assert pue_meters <= set(seen[n:]) <= pue_meters | zone_meters
    assert len(seen[n:]) <= len(pue_meters) + sum(len(site.boundary(z)) + len(site.members("it", z)) for z in site.zone_names())
    assert len(streamed) == len(site.meters) and list(streamed) == list(site.meters)
    with pytest.raises(KeyError):
        streamed["no-such-meter"]

    # Reading ahead on a thread: any order of access gives each meter's own readings.
    names = list(site.meters)
    with stream_store(store, site, lo, hi, progress=False) as ahead:
        for name in [names[2], names[0], names[1], names[2], names[-1]]:
            np.testing.assert_array_equal(ahead[name].t_ns, held[name].t_ns)

    # Three meters ahead (what an InfluxDB reader keeps in flight): the same report, in any order of access.
    deep = StoreReadings(store, site, lo, hi, prefetch=3)
    try:
        assert compute_report(site, deep, year.start_ns, year.end_ns, OPTS) == want
        for name in [names[3], names[0], names[1], names[2], names[-1], names[0]]:
            np.testing.assert_array_equal(deep[name].t_ns, held[name].t_ns)
    finally:
        deep.close()

    # Half the rows into chunks, then all: the same readings, the same report.
    for horizon in (year.start_ns + (year.end_ns - year.start_ns) // 2, hi + 1):
        assert store.compact(horizon_ns=horizon) > 0
        with stream_store(store, site, lo, hi, progress=False) as readings:
            for name, r in held.items():
                got = readings[name]
                np.testing.assert_array_equal(got.t_ns, r.t_ns)
                for a, b in ((got.power_w, r.power_w), (got.energy_wh, r.energy_wh)):
                    assert (a is None) == (b is None)
                    if a is not None:
                        np.testing.assert_array_equal(a, b)
            assert compute_report(site, readings, year.start_ns, year.end_ns, OPTS) == want
    store.close()
