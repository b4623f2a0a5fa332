"""Flow control at ingest (collector/pacing.py) in a real `puewatch collector` writing to a real influxd 1.6.7.

With `pace_backlog_bytes = 1` every answer waits until the store has the batch (any backlog is
over the limit): the lines are in influxd when the 204 arrives, and /metrics counts the waits.
A meters' feeder's answers never wait. With influxd stopped, answers do not wait (the spool rides out the outage): each comes well
within `pace_max_s`, and after influxd is back every line lands.
"""

from __future__ import annotations

import time

from collector_support import FEEDER_TOKEN, CollectorProcess, free_port, influx1_section, post, scrape, write_config
from servers import Influxd

DB = "puewatch"
PACE_MAX_S = 6.0


def _lines(seq0: int, n: int, t0: int) -> str:
    return "".join(f"gpu_power,gpu=0,node=gpu-a-1,uuid=GPU-1 power_average_w=300.0,seq={s}i {t0 + s * 1_000_000}\n"
                   for s in range(seq0, seq0 + n))


def _count(db: Influxd) -> int:
    rows = db.points("SELECT count(seq) FROM gpu_power", DB)
    return rows[0][1] if rows else 0


def test_answers_wait_for_the_store_while_it_is_up_and_not_while_it_is_away(tmp_path):
    db = Influxd(tmp_path / "influxd")
    db.start()
    try:
        db.query(f"CREATE DATABASE {DB}")
        ingest_port, metrics_port = free_port(), free_port()
        conf = write_config(tmp_path, ingest_port, metrics_port,
                            extra=influx1_section(db.url, DB))
        conf.write_text(conf.read_text().replace("[ingest]\n", f"[ingest]\npace_backlog_bytes = 1\npace_max_s = {PACE_MAX_S}\n", 1))
        t0 = time.time_ns() - 60 * 10**9
        with CollectorProcess(conf, ingest_port) as proc:
            sent = 0
            for _ in range(5):
                assert post(ingest_port, _lines(sent, 200, t0)) == 204
                sent += 200
                # The answer waited for the store: every line posted so far is in influxd now.
                assert _count(db) == sent
            m = scrape(metrics_port)
            assert m["puewatch_ingest_paced_total"] >= 1, m
            paced_before = m["puewatch_ingest_paced_total"]
            # A meters' feeder is never held: its lines are the facility side of the live PUE.
            for i in range(5):
                assert post(ingest_port, f"modbus,meter=incomer power_kw=120.5 {t0 + i * 10**9}\n", token=FEEDER_TOKEN) == 204
            assert scrape(metrics_port)["puewatch_ingest_paced_total"] == paced_before

            db.stop()
            for _ in range(5):
                t = time.monotonic()
                assert post(ingest_port, _lines(sent, 200, t0)) == 204
                sent += 200
                assert time.monotonic() - t < PACE_MAX_S / 2  # not held for the outage
            m = scrape(metrics_port)
            assert m['puewatch_spool_bytes{store="influx1"}'] > 0  # the outage was real: spooled

            db.start()
            deadline = time.monotonic() + 45  # the writer's backoff is at most 30 s
            while _count(db) < sent and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _count(db) == sent
            assert scrape(metrics_port)["puewatch_ingest_paced_seconds_total"] > 0.0
            assert paced_before >= 1
            proc.stop()
    finally:
        db.stop()
