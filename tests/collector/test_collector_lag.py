"""`puewatch_pipeline_lag_seconds` says how old the live ratios are while a silent meter holds the pipeline
back: a real collector, real HTTP. Before, the gauge was set only when a cell finished, so it kept its last
small value (0.3 s where the ratios were 114 s old; found by the live-vs-report audit)."""

from __future__ import annotations

import time

from collector_support import FEEDER_TOKEN, CollectorProcess, post, scrape, wait_port, write_config
from servers import free_port


def test_the_lag_grows_while_a_silent_meter_holds_the_horizon(tmp_path):
    ingest, metrics = free_port(), free_port()
    conf = write_config(tmp_path, ingest, metrics, settle_s=60.0)
    with CollectorProcess(conf, ingest):
        wait_port(metrics)
        energy = 1000.0
        for _ in range(4):  # both meters, once a second
            now = time.time_ns()
            energy += 0.3
            assert post(ingest, f"modbus,meter=incomer power_kw=1.2 {now}\nmodbus,meter=ups energy_wh={energy} {now}\n",
                        FEEDER_TOKEN) == 204
            time.sleep(1.0)
        silent_from = time.monotonic()
        while time.monotonic() - silent_from < 8.0:  # the UPS register falls silent; the incomer goes on
            assert post(ingest, f"modbus,meter=incomer power_kw=1.2 {time.time_ns()}\n", FEEDER_TOKEN) == 204
            time.sleep(1.0)
        lag = scrape(metrics)["puewatch_pipeline_lag_seconds"]
        # The horizon waits for the UPS (up to settle_s, 60 s): its cells are 8 s old and more by now.
        assert lag >= 7.0, lag
