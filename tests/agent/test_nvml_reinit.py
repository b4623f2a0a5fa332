"""NVML recovery through the fake library: a GPU falls off the bus and comes back, then the
driver goes away altogether (every call fails with NVML_ERROR_DRIVER_NOT_LOADED) and is
reloaded, its energy counters restarting from 0.

The agent must report gpu_lost / gpu_recovered, then nvml_reinit (library error) and
nvml_ready (initialised again), detect the counter reset of every GPU, and sample on.
"""

from __future__ import annotations

import time
from collections import defaultdict

from agent_support import NVML_RETRY_TABLE, Receiver, nvml_env, parse_line, start_agent, wait_log, write_config

SCRIPT = """
count 2
gpu 1 lost_from_s 1.0
gpu 1 lost_until_s 2.0
driver_down_from_s 2.8
driver_down_until_s 3.8
"""

TABLE = NVML_RETRY_TABLE


def test_lost_gpu_and_driver_reload_are_recovered_and_reported(tmp_path, procs, fake_nvml_dir):
    script = tmp_path / "gpus.txt"
    script.write_text(SCRIPT)
    rx = Receiver(procs, tmp_path).start()
    cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool", TABLE)
    agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script))
    wait_log(agent, "first sample taken")
    wait_log(agent, "NVML: initialised, 2 GPU(s)", 20)  # back after the driver reload
    time.sleep(1.5)
    assert agent.stop() == 0, agent.output()
    log = agent.output()

    points = [parse_line(l) for l in rx.lines()]
    events = sorted((ts, tags["event"], tags.get("gpu"), fields["message"]) for m, tags, fields, ts in points if m == "puewatch_event")
    kinds = [(e[1], e[2]) for e in events]
    # In this order: GPU 1 lost and back, then NVML lost once (not once per GPU) and back, then both counters reset.
    assert kinds[:4] == [("gpu_lost", "1"), ("gpu_recovered", "1"), ("nvml_reinit", None), ("nvml_ready", None)], kinds
    assert sorted(kinds[4:]) == [("energy_counter_reset", "0"), ("energy_counter_reset", "1")], kinds
    t_lost, t_back, t_reinit, t_ready = (e[0] for e in events[:4])
    assert "Driver Not Loaded" in events[2][3]
    assert 0.5e9 < t_back - t_lost < 2.0e9
    assert 0.5e9 < t_ready - t_reinit < 2.0e9

    power = defaultdict(list)
    for m, tags, fields, ts in points:
        if m == "gpu_power":
            power[tags["gpu"]].append((ts, fields))
    for gpu in ("0", "1"):
        samples = sorted(power[gpu], key=lambda p: p[0])
        # Nothing while the driver was away; sampling went on afterwards at the same rate.
        assert not [ts for ts, _ in samples if t_reinit < ts < t_ready]
        after = [(ts, f) for ts, f in samples if ts > t_ready]
        assert len(after) >= 10
        # The counter went back to about 0 at the reload (300 W for ~1-2 s: under 1000 J), from above 2800 J.
        energies = [(ts, f["energy_mj"]) for ts, f in samples if "energy_mj" in f]
        before = [e for ts, e in energies if ts < t_reinit]
        first_after = next(e for ts, e in energies if ts > t_ready)
        assert before[-1] > 1_000_000 + 280_000 * 2 and first_after < 1_000_000 < before[-1]
        message = next(e[3] for e in events if e[1] == "energy_counter_reset" and e[2] == gpu)
        assert f"from {before[-1]} mJ to {first_after} mJ" in message
    # GPU 0 went on while GPU 1 was lost.
    gpu0 = [ts for ts, _ in power["0"] if t_lost < ts < t_back]
    assert len(gpu0) >= (t_back - t_lost) / 1e8 - 3
    assert not [ts for ts, _ in power["1"] if t_lost < ts < t_back]
    assert log.count("re-initialising NVML with backoff") == 1
    assert "Traceback" not in log


import pytest  # noqa: E402


@pytest.mark.parametrize("before,after", [(3, 1), (1, 2)], ids=["gpus-gone", "gpu-added"])
def test_gpus_gone_or_added_across_a_driver_reload_are_named(tmp_path, procs, fake_nvml_dir, before, after):
    """The driver comes back with fewer or more GPUs (the fake re-reads its script at nvmlInit, rewritten while
    the driver is away): each GPU that did not come back is `gpu_lost`, each new one `gpu_added`, named by index
    and UUID, where they were only counted in nvml_ready (found by the agent audit)."""
    down = "driver_down_from_s 2.5\ndriver_down_until_s 4.0\n"
    script = tmp_path / "gpus.txt"
    script.write_text(f"count {before}\n{down}")
    rx = Receiver(procs, tmp_path).start()
    cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool", TABLE)
    agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script))
    wait_log(agent, f"sampling {before} of {before} GPU(s)", 20)
    wait_log(agent, "re-initialising NVML with backoff", 20)
    script.write_text(f"count {after}\n{down}")
    wait_log(agent, f"NVML: initialised, {after} GPU(s)", 20)
    time.sleep(1.0)
    assert agent.stop() == 0, agent.output()
    points = [parse_line(l) for l in rx.lines()]
    events = [(tags["event"], tags.get("gpu"), fields["message"]) for m, tags, fields, ts in points
              if m == "puewatch_event" and tags["event"] in ("gpu_lost", "gpu_added")]
    if after < before:
        assert sorted((e, g) for e, g, _ in events) == [("gpu_lost", str(i)) for i in range(after, before)], events
        assert all("is not among the GPUs NVML lists since it came back" in m and "GPU-" in m for _, _, m in events)
    else:
        assert [(e, g) for e, g, _ in events] == [("gpu_added", str(i)) for i in range(before, after)], events
        assert "is new since NVML came back" in events[0][2]
    assert "Traceback" not in agent.output()
