"""[sources.nvml] gpus: only the GPUs listed (by index or UUID) are sampled, through the fake NVML library.

The library's own log of every energy reading it served shows which GPUs the agent
touched on the hot path, independently of what the agent sends.
"""

from __future__ import annotations

import time
from collections import Counter

from agent_support import Receiver, nvml_env, parse_line, start_agent, wait_log, write_config

UUID_3 = "GPU-fa4e0000-0000-4000-8000-000000000003"  # the fake library's UUID of GPU 3
UUID_ABSENT = "GPU-fa4e0000-0000-4000-8000-0000000000ff"


def test_only_listed_gpus_by_index_and_uuid_are_sampled(tmp_path, procs, fake_nvml_dir):
    script = tmp_path / "gpus.txt"
    script.write_text("count 6\n")
    nvml_log = tmp_path / "nvml.log"
    rx = Receiver(procs, tmp_path).start()
    table = (
        "[sources.nvml]\ninterval_s = 0.1\nenergy_interval_s = 0.5\nstate_interval_s = 0.5\nprocess_interval_s = 1.0\n"
        f'gpus = [1, "{UUID_3}", 9, "{UUID_ABSENT}"]\n'
    )
    cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool", table)
    agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script, nvml_log))
    wait_log(agent, "first sample taken")
    time.sleep(2.5)
    assert agent.stop() == 0, agent.output()

    points = [parse_line(l) for l in rx.lines()]
    by_measurement: dict[str, set[str]] = {}
    for m, tags, _, _ in points:
        if m.startswith("gpu_"):
            by_measurement.setdefault(m, set()).add(tags["gpu"])
    assert by_measurement == {m: {"1", "3"} for m in ("gpu_power", "gpu_state", "gpu_process", "gpu_info")}
    uuids = {tags["gpu"]: tags["uuid"] for m, tags, _, _ in points if m == "gpu_power"}
    assert uuids["3"] == UUID_3
    power = Counter(tags["gpu"] for m, tags, _, _ in points if m == "gpu_power")
    assert power["1"] >= 20 and power["3"] >= 20
    # The library served energy readings for GPUs 1 and 3 only.
    read = Counter(line.split()[1] for line in nvml_log.read_text().splitlines())
    assert set(read) == {"1", "3"} and read["1"] >= 3
    log = agent.output()
    assert "sampling 2 of 6 GPU(s) ([sources.nvml] gpus)" in log
    assert f"gpus lists 9, {UUID_ABSENT}, not found among this node's 6 GPU(s)" in log
