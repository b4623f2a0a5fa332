"""The field types ingest starts with include the lines acknowledged before a `kill -9` and still in
the spool: a real influxd 1.6.7 is stopped, so the acknowledged batch stays in the collector's spool
(deterministically: nothing can move it into the store); the collector is killed, restarted, and a
write of another type is refused (400) as influxd would refuse it, not acknowledged and then refused
by the store. Once influxd is back, the store holds exactly what was acknowledged, with its type, and
after a clean restart the types come from influxd itself."""

from __future__ import annotations

import os
import signal
import time

from collector_support import CollectorProcess, free_port, influx1_section, post, write_config
from servers import Influxd

DB = "puewatch"


def test_types_of_acknowledged_lines_still_spooled_after_kill_9_are_checked_after_restart(tmp_path):
    db = Influxd(tmp_path / "influxd")
    db.start()
    db.query(f"CREATE DATABASE {DB}")
    db.stop()  # the store is away: every acknowledged batch stays in the spool
    try:
        ingest_port, metrics_port = free_port(), free_port()
        conf = write_config(tmp_path, ingest_port, metrics_port,
                            extra=influx1_section(db.url, DB))
        t0 = time.time_ns()
        collector = CollectorProcess(conf, ingest_port)
        try:
            assert post(ingest_port, f"m f=1 {t0}\n") == 204  # a float, on disk in the spool
        finally:
            os.kill(collector.proc.pid, signal.SIGKILL)
            collector.proc.wait(10)
            collector.stop(check=False)
        assert list((tmp_path / "state" / "spool").glob("*.rec")), "the acknowledged batch is in the spool"

        with CollectorProcess(conf, ingest_port) as collector:
            got = {line: post(ingest_port, f"m {line} {t0 + n}\n") for n, line in enumerate(('f="x"', "f=1i", "f=2"), 1)}
            assert got == {'f="x"': 400, "f=1i": 400, "f=2": 204}, collector.output()[-2000:]
            db.start()  # same port and data: the spool drains (its backoff is short after a short outage)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and list((tmp_path / "state" / "spool").glob("*.rec")):
                time.sleep(0.2)
            assert not list((tmp_path / "state" / "spool").glob("*.rec")), collector.output()[-2000:]
        assert not list((tmp_path / "state" / "spool" / "rejected").iterdir())  # the store refused nothing
        assert db.points("SELECT f FROM m", DB) == [[t0, 1.0], [t0 + 3, 2.0]]
        assert db.points("SHOW FIELD KEYS FROM m", DB) == [["f", "float"]]

        # A clean restart with influxd up and the spool empty: the types come from influxd (SHOW FIELD KEYS).
        with CollectorProcess(conf, ingest_port) as collector:
            got = {line: post(ingest_port, f"m {line} {t0 + n}\n") for n, line in enumerate(('f="y"', "f=4i", "f=5"), 4)}
            assert got == {'f="y"': 400, "f=4i": 400, "f=5": 204}, collector.output()[-2000:]
    finally:
        db.stop()
