"""The collector's degraded state (collector/health.py): a reason several parts meet lasts until each recovers."""

from __future__ import annotations

import logging

from puewatch.collector.health import Health


def test_a_reason_two_writers_met_lasts_until_both_recover(caplog):
    """Found by the operator audit: the raw and the derived series' writers share the store, and a small derived
    batch stored on a nearly full disk ended `store_disk_full` while the raw writer's batches still waited, then
    the next raw try began it again (degraded, recovered, degraded within 2 s; ingest reopened meanwhile)."""
    health = Health()
    raw, derived = object(), object()
    caplog.set_level(logging.WARNING, logger="puewatch.collector.health")
    health.degrade("store_disk_full", "database or disk is full", holder=raw)
    health.degrade("store_disk_full", "database or disk is full", holder=derived)
    health.recover("store_disk_full", holder=derived)  # its small batch fit
    assert "store_disk_full" in health.active() and health.blocking() == "database or disk is full"
    health.degrade("store_disk_full", "database or disk is full", holder=raw)  # the raw batch still does not
    health.recover("store_disk_full", holder=derived)  # a part that does not hold it ends nothing
    assert "store_disk_full" in health.active()
    health.recover("store_disk_full", holder=raw)
    assert health.active() == {} and health.blocking() is None
    assert [r.getMessage().split(" ")[0] for r in caplog.records] == ["degraded", "recovered"]  # one episode
    assert health.events["store_disk_full"] == 3
    # A part with no holder ends the reason outright, as before (the spool's and state's own reasons).
    health.degrade("spool_full", "full", holder=raw)
    health.recover("spool_full")
    assert health.active() == {}
