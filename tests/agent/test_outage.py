"""Loss-free shipping: the collector goes away and comes back, and the agent is SIGKILLed mid-batch.

Ground truth is independent of the agent: the fake NVML library appends every
energy reading it returns to a log (one write(2) each). Afterwards every reading
taken was received, no point was received twice with different content, and the
counts match exactly.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter, defaultdict

from agent_support import Receiver, nvml_env, parse_line, start_agent, wait_for, wait_log, write_config

GPUS = 8


def readings(log_path) -> Counter:
    out = Counter()
    for line in log_path.read_text().splitlines():
        _, gpu, mj = line.split()
        out[(int(gpu), int(mj))] += 1
    return out


def durable(spool_dir, received_path, log_path) -> bool:
    """Is the newest reading of every GPU already written to the spool (or received)?"""
    last = {}
    for line in log_path.read_text().splitlines():
        _, gpu, mj = line.split()
        last[gpu] = mj
    blobs = [p.read_bytes() for p in spool_dir.glob("*.*")]
    if received_path.exists():
        blobs.append(received_path.read_bytes())
    return all(any(f"energy_mj={mj}i".encode() in b for b in blobs) for mj in last.values())


def test_outage_and_sigkill_lose_nothing_and_duplicate_nothing(tmp_path, procs, fake_nvml_dir):
    script = tmp_path / "gpus.txt"
    script.write_text(f"count {GPUS}\n")
    nvml_log = tmp_path / "nvml.log"
    spool = tmp_path / "spool"
    hold = tmp_path / "hold"

    rx = Receiver(procs, tmp_path).start()
    # Energy on every power sample (default: once a second), so that every point has a ground truth.
    table = "[sources.nvml]\ninterval_s = 0.1\nenergy_interval_s = 0.1\nstate_interval_s = 1.0\nprocess_interval_s = 5.0\n"
    cfg = write_config(tmp_path / "agent.toml", rx.url, spool, table)
    env = nvml_env(fake_nvml_dir, script, nvml_log)

    # 1. Normal operation.
    agent = start_agent(procs, cfg, tmp_path / "agent1.log", env)
    wait_log(agent, "first sample taken")
    wait_for(lambda: len(rx.lines()) > 50, 20, "first deliveries")

    # 2. The collector goes away; the agent keeps sampling into the spool.
    rx.stop()
    time.sleep(2.5)
    assert agent.alive()
    assert list(spool.glob("*.rec")), "batches should wait in the spool"

    # 3. The collector returns but holds the first request it records; kill -9 the agent mid-batch.
    hold.write_text("")
    rx.opts = {"hold_file": hold}
    rx.start()
    requests = rx.out.with_suffix(".lp.requests")
    before = len(requests.read_text().splitlines()) if requests.exists() else 0
    wait_for(lambda: requests.exists() and len(requests.read_text().splitlines()) > before, 20, "a request in flight")
    # The agent cannot make a reading durable in the instant between reading it and writing it:
    # stop it, and kill it only at a moment when every reading taken is on disk.
    for _ in range(200):
        agent.send(signal.SIGSTOP)
        if durable(spool, rx.out, nvml_log):
            break
        agent.send(signal.SIGCONT)
        time.sleep(0.013)
    else:
        raise AssertionError("never found the agent between ticks")
    agent.kill()
    hold.unlink()

    # 4. Restart: recovered open segment, re-sent batch, drain, then a clean stop with a final flush.
    agent = start_agent(procs, cfg, tmp_path / "agent2.log", env)
    wait_log(agent, "first sample taken")
    time.sleep(1.5)
    assert agent.stop() == 0, agent.output()
    assert not [p for p in spool.iterdir() if p.is_file()], "the spool should be empty after the final flush"

    taken = readings(nvml_log)
    received_lines = rx.lines()
    by_key = defaultdict(set)
    for line in received_lines:
        key, _, ts = line.rpartition(" ")
        series = key.split(" ", 1)[0]
        by_key[(series, ts)].add(line)
    # None twice with different content.
    conflicts = {k: v for k, v in by_key.items() if len(v) > 1}
    assert not conflicts
    # The kill left a batch that reached the server unacknowledged: it was sent again, identically.
    duplicates = [l for l, n in Counter(received_lines).items() if n > 1]
    assert duplicates, "the held batch should have been re-sent"

    # Every reading taken was received, exactly once after de-duplication.
    got = Counter()
    for (series, ts), lines in by_key.items():
        m, tags, fields, _ = parse_line(next(iter(lines)))
        if m == "gpu_power":
            got[(int(tags["gpu"]), fields["energy_mj"])] += 1
    assert sum(taken.values()) > 300  # about 5 s of 8 GPUs at 10 Hz
    assert sum(taken.values()) == sum(got.values())
    assert got == taken

    # The agent's own report: nothing dropped.
    selfs = [parse_line(l) for l in received_lines if l.startswith("puewatch_agent")]
    assert selfs and all(f["dropped_points"] == 0 for _, _, f, _ in selfs)
    assert max(f["send_failures"] for _, _, f, _ in selfs) > 0
