"""A 204 from the collector means the store will keep the line: with InfluxDB 1.x behind it, a line older
than the database's retention policy is refused at ingest (400, named), as the embedded store's raw retention
is, where it was acknowledged and then refused by influxd and set aside in rejected/ (found by the collector
audit: lines 31, 45 and 100 days old after a 30-day `puewatch influx setup`). Real influxd 1.6.7."""

from __future__ import annotations

import time

import pytest

from collector_support import TOKEN, CollectorProcess, free_port, influx1_section, write_config
from servers import Influxd, http
from puewatch.collector.stores.base import StoreRejected
from puewatch.collector.stores.influx1 import Influx1Store, go_duration_s

DB = "puewatch"
DAY_NS = 86_400 * 10**9


def test_go_durations_as_influxdb_writes_them() -> None:
    assert go_duration_s("720h0m0s") == 30 * 86400 and go_duration_s("0s") == 0.0
    assert go_duration_s("1h30m") == 5400 and go_duration_s("1.5s") == 1.5
    for bad in ("", "30d", "720h0m0sx", "h"):
        with pytest.raises(ValueError):
            go_duration_s(bad)


def test_lines_older_than_influxdb_keeps_are_refused_at_ingest(tmp_path) -> None:
    db = Influxd(tmp_path / "influxd")
    db.start()
    try:
        db.query(f"CREATE DATABASE {DB} WITH DURATION 30d NAME raw")
        db.query(f"CREATE RETENTION POLICY forever ON {DB} DURATION INF REPLICATION 1")
        assert Influx1Store(db.url, DB).retention_s() == 30 * 86400
        assert Influx1Store(db.url, DB, rp="forever").retention_s() is None
        with pytest.raises(StoreRejected, match="no retention policy nosuch"):
            Influx1Store(db.url, DB, rp="nosuch").retention_s()
        ingest_port, metrics_port = free_port(), free_port()
        conf = write_config(tmp_path, ingest_port, metrics_port, extra=influx1_section(db.url, DB))
        now = time.time_ns()
        with CollectorProcess(conf, ingest_port) as collector:
            url = f"http://127.0.0.1:{ingest_port}/api/v2/write?bucket=b&org=o&precision=ns"
            auth = {"Authorization": f"Token {TOKEN}"}
            status, body = http("POST", url, f"m f=1 {now - 31 * DAY_NS}\n".encode(), auth)
            assert status == 400 and b"beyond retention policy (the store keeps 30 days)" in body, body
            status, _ = http("POST", url, f"m f=2 {now - 29 * DAY_NS}\n".encode(), auth)
            assert status == 204
            assert "retention of the store not known" not in collector.output()
    finally:
        db.stop()
