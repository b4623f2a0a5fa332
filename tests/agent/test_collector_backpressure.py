"""Issue 12 item 2 end to end: a real agent ships to a real `puewatch collector` whose raw spool is full (its
influxd away): the collector answers 503 + Retry-After, the agent keeps its batches, and once influxd is back
everything is delivered and the agent has dropped nothing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from agent_support import nvml_env, start_agent, wait_for, write_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))
from collector_support import TOKEN, CollectorProcess, free_port, post, scrape  # noqa: E402
from collector_support import write_config as collector_config  # noqa: E402

from servers import Influxd  # noqa: E402

AGENT_TOKEN = "testnode-token-0123456789abcdef"


def test_the_agent_counts_nothing_dropped_through_a_collector_503_episode(tmp_path, procs, fake_nvml_dir):
    influxd = Influxd(tmp_path / "influxd")
    influxd.start()
    influxd.query('CREATE DATABASE "site"')
    influxd.stop()  # away: the collector's raw spool fills up
    ingest_port, metrics_port = free_port(), free_port()
    conf = collector_config(tmp_path, ingest_port, metrics_port,
                            f'[store]\nspool_max_bytes = 1048576\n[store.influx1]\nurl = "{influxd.url}"\ndatabase = "site"\n')
    tokens = tmp_path / "tokens"
    tokens.write_text(tokens.read_text() + f"testnode {AGENT_TOKEN}\n")
    with CollectorProcess(conf, ingest_port) as collector:
        t0 = time.time_ns() - 3600 * 10**9
        i = 0
        while True:  # fill the raw spool (1 MiB) with acknowledged lines until it answers 503
            body = "".join(f"m,node=gpu-a-1 f={i * 2000 + k} {t0 + i * 2000 + k}\n" for k in range(2000))
            status = post(ingest_port, body, TOKEN)
            assert status in (204, 503) and i < 200, status
            if status == 503:
                break
            i += 1
        script = tmp_path / "gpus.txt"
        script.write_text("count 2\n")
        cfg = write_config(tmp_path / "agent.toml", f"http://127.0.0.1:{ingest_port}", tmp_path / "spool",
                           "[sources.nvml]\ninterval_s = 0.2\n", output_extra=f'token = "{AGENT_TOKEN}"')
        agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script))
        wait_for(lambda: "collector answered 503" in agent.output(), 30, "the agent meets the 503")
        refused = scrape(metrics_port)["puewatch_ingest_backpressure_total"]
        assert refused >= 2
        influxd.start()  # back: the collector drains its spool and takes the agent's batches again
        wait_for(lambda: "collector reachable again" in agent.output(), 90, "the agent delivers again")
        assert agent.stop() == 0
        out = agent.output()
        stopped = [line for line in out.splitlines() if "stopped:" in line][-1]
        sent = int(stopped.split(" point(s) sent")[0].rsplit(" ", 1)[1])
        assert sent > 0 and stopped.endswith(" 0 dropped"), stopped
        m = scrape(metrics_port)
        assert m['puewatch_dropped_points_total{store="influx1"}'] == 0
        collector.stop()
    rows = influxd.query("SELECT count(*) FROM gpu_power WHERE node = 'testnode'", db="site")
    influxd.stop()
    assert rows and rows[0]["series"][0]["values"][0][1] > 0, rows
