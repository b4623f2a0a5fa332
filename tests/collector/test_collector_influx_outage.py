"""`puewatch collector` writing to a real influxd 1.6.7 that is stopped for more than 20 s during
steady agent ingest and restarted on the same port and data directory: the collector keeps
accepting (204), spools, drains, and every posted point lands exactly once with its value."""

from __future__ import annotations

import time

import pytest

from collector_support import CollectorProcess, free_port, influx1_section, post, scrape, write_config
from servers import Influxd

DB = "puewatch"
BATCH = 20  # lines per post
PERIOD_S = 0.1
RUN_S = 45.0
DOWN_AT_S, DOWN_S = 10.0, 21.0
STEP_NS = 5_000_000  # BATCH x STEP_NS = one period: timestamps follow the clock, all distinct


@pytest.mark.slow
def test_influxd_outage_during_steady_ingest_loses_and_duplicates_nothing(tmp_path):
    db = Influxd(tmp_path / "influxd")
    db.start()
    try:
        db.query(f"CREATE DATABASE {DB}")
        ingest_port, metrics_port = free_port(), free_port()
        conf = write_config(tmp_path, ingest_port, metrics_port,
                            extra=influx1_section(db.url, DB))
        with CollectorProcess(conf, ingest_port) as proc:
            t0 = time.time_ns()
            start = time.monotonic()
            seq = 0
            statuses: dict[int, int] = {}
            stopped = restarted = False
            spool_during_outage = 0.0
            while (elapsed := time.monotonic() - start) < RUN_S:
                if not stopped and elapsed >= DOWN_AT_S:
                    db.stop()
                    stopped = True
                if stopped and not restarted and elapsed >= DOWN_AT_S + DOWN_S:
                    spool_during_outage = scrape(metrics_port)['puewatch_spool_bytes{store="influx1"}']
                    db.start()  # same port, same data directory
                    restarted = True
                lines = []
                for _ in range(BATCH):
                    ts = t0 + seq * STEP_NS
                    mj = 300_000 * seq * STEP_NS // 10**9  # 300 W
                    lines.append(f"gpu_power,gpu=0,node=gpu-a-1,uuid=GPU-1 power_average_w=300.0,energy_mj={mj}i,seq={seq}i {ts}\n")
                    seq += 1
                status = post(ingest_port, "".join(lines))
                statuses[status] = statuses.get(status, 0) + 1
                time.sleep(max(0.0, start + (seq // BATCH) * PERIOD_S - time.monotonic()))
            assert restarted
            assert statuses == {204: seq // BATCH}, statuses
            assert spool_during_outage > 0  # the outage was real: the collector spooled
            # Let the spool drain (its backoff after a 21 s outage is at most 30 s, with jitter).
            deadline = time.monotonic() + 35
            while time.monotonic() < deadline:
                m = scrape(metrics_port)
                if m['puewatch_spool_bytes{store="influx1"}'] == 0 and m['puewatch_spool_batches{store="influx1"}'] == 0:
                    break
                time.sleep(0.5)
            m = scrape(metrics_port)
            assert m['puewatch_spool_bytes{store="influx1"}'] == 0, proc.output()[-2000:]
            assert m['puewatch_dropped_points_total{store="influx1"}'] == 0
            assert m['puewatch_rejected_points_total{store="influx1"}'] == 0
        n = seq
        rows = db.points(f"SELECT count(seq), sum(seq), min(seq), max(seq) FROM gpu_power WHERE time >= {t0}", DB)
        assert rows[0][1:] == [n, n * (n - 1) // 2, 0, n - 1]
        # Exactly once, each at its own time with its own value.
        rows = db.points(f"SELECT seq, energy_mj FROM gpu_power WHERE time >= {t0}", DB)
        assert len(rows) == n
        assert [r[0] for r in rows] == [t0 + i * STEP_NS for i in range(n)]
        assert [r[1] for r in rows] == list(range(n))
        assert [r[2] for r in rows] == [300_000 * i * STEP_NS // 10**9 for i in range(n)]
        # The derived series went through the same spool.
        pue_rows = db.points("SELECT count(gpu_it_share_coverage) FROM pue", DB)
        assert pue_rows and pue_rows[0][1] > 0
    finally:
        db.stop()
