"""NVML faults the agent must explain, never paper over (found by the NVML audit), through the fake
libnvidia-ml.so.1 (agent/fake_nvml/fake_nvml.c: the only fake, no GPU here), whose script makes calls fail
(`fail FEATURE CODE N`), GPUs fall off the bus (`lost_from_s`) and boards change (`replaced_at_s`):

- a transient error while a GPU is set up (UNKNOWN, TIMEOUT) is not "unsupported": the GPU is set up again
  with backoff, and then has its power;
- a GPU without an energy counter that was lost restarts its integral from 0 (the time it was away has no
  power samples): its energy goes back, with an event, where it went on as if the GPU had drawn nothing;
- a board swapped while lost starts from its own counter, not the old board's reading.
"""

from __future__ import annotations

import time

from agent_support import NVML_RETRY_TABLE, Receiver, nvml_env, parse_line, start_agent, wait_for, wait_log, write_config
from puewatch.agent.sources.base import Context

TABLE = NVML_RETRY_TABLE


def _run(tmp_path, procs, fake_nvml_dir, script: str, until, what: str):
    path = tmp_path / "gpus.txt"
    path.write_text(script)
    rx = Receiver(procs, tmp_path).start()
    cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool", TABLE)
    agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, path))
    wait_log(agent, "NVML:")
    wait_for(lambda: until([parse_line(l) for l in rx.lines()]), 20, what)
    assert agent.stop() == 0, agent.output()
    assert "Traceback" not in agent.output()
    return [parse_line(l) for l in rx.lines()]


def _events(points):
    return sorted((ts, tags["event"], fields["message"]) for m, tags, fields, ts in points if m == "puewatch_event")


def _power(points, gpu="0"):
    return sorted((ts, fields) for m, tags, fields, ts in points if m == "gpu_power" and tags["gpu"] == gpu)


def test_a_transient_error_at_set_up_is_retried_not_called_unsupported(tmp_path, procs, fake_nvml_dir):
    """One UNKNOWN (999) from the field values and one TIMEOUT (10) from nvmlDeviceGetPowerUsage at start-up: the
    GPU had no power readings for good and its gpu_info said unsupported."""
    script = "count 1\ngpu 0 fail field_values 999 1\ngpu 0 fail power_usage 10 1\n"
    points = _run(tmp_path, procs, fake_nvml_dir, script,
                  lambda ps: len([1 for _, f in _power(ps) if "power_instant_w" in f]) >= 5, "power after the retry")
    events = _events(points)
    kinds = [e[1] for e in events]
    assert kinds[:2] == ["gpu_lost", "gpu_recovered"], events
    assert "its power could not be read when it was set up" in events[0][2] and "Unknown Error" in events[0][2], events
    power = _power(points)
    assert power and all(ts > events[1][0] for ts, _ in power)  # nothing before it was set up
    assert all("power_average_w" in f and "power_instant_w" in f for _, f in power)
    info = [f for m, _, f, _ in points if m == "gpu_info"]
    assert info and all(f["power_instant_source"] == "field_186" for f in info), info


def test_a_counterless_gpu_lost_restarts_its_integral(tmp_path, procs, fake_nvml_dir):
    """No energy counter (before Volta): energy is integrated from power. Lost for 1 s, its integral went on from
    where it was, counting that second as no energy; it restarts from 0 now, said by an event, so the ledger
    and the collector see the counter go back (a reset: that interval not counted)."""
    script = "count 1\ngpu 0 unsupported energy\ngpu 0 lost_from_s 1.5\ngpu 0 lost_until_s 2.5\n"
    points = _run(tmp_path, procs, fake_nvml_dir, script,
                  lambda ps: any(e[1] == "gpu_recovered" for e in _events(ps))
                  and len([ts for ts, f in _power(ps) if "energy_mj" in f]) >= 12, "energy after the loss")
    events = _events(points)
    lost = next(ts for ts, kind, _ in events if kind == "gpu_lost")
    back = next(ts for ts, kind, _ in events if kind == "gpu_recovered")
    reset = [(ts, m) for ts, kind, m in events if kind == "energy_counter_reset"]
    assert len(reset) == 1 and reset[0][0] >= back and "restarts from 0 mJ, as it was lost" in reset[0][1], events
    energy = [(ts, f["energy_mj"]) for ts, f in _power(points) if "energy_mj" in f]
    assert all(f["energy_estimated"] is True for _, f in _power(points) if "energy_mj" in f)
    before = [e for ts, e in energy if ts < lost]
    after = [e for ts, e in energy if ts > back]
    # ~300 W for ~1.5 s before; after, from 0 again: the first reading after is below the last before.
    assert before[-1] > 250_000 and after[0] < before[-1] and after == sorted(after), (before[-3:], after[:3])


def test_a_board_swapped_while_lost_starts_from_its_own_counter(tmp_path, procs, fake_nvml_dir):
    """A GPU lost, then back as another board (another UUID): it inherited the old board's energy reading, which
    its own counter was then compared with."""
    script = "count 1\ngpu 0 lost_from_s 1.0\ngpu 0 lost_until_s 2.0\ngpu 0 replaced_at_s 1.5\n"
    points = _run(tmp_path, procs, fake_nvml_dir, script,
                  lambda ps: any(e[1] == "gpu_replaced" for e in _events(ps))
                  and len([1 for ts, f in _power(ps) if "energy_mj" in f]) >= 10, "readings of the new board")
    kinds = [e[1] for e in _events(points)]
    assert "gpu_replaced" in kinds and "energy_counter_reset" not in kinds, kinds
    by_uuid = {}
    for m, tags, fields, ts in points:
        if m == "gpu_power" and "energy_mj" in fields:
            by_uuid.setdefault(tags["uuid"], []).append((ts, fields["energy_mj"]))
    (old, new) = sorted(by_uuid, key=lambda u: min(by_uuid[u]))
    assert old != new
    # The new board's counter is its own (from 0 at the swap, ~300 W), never the old board's (above 1,000 J).
    assert all(e < 1_000_000 for _, e in by_uuid[new]) and all(e > 1_000_000 for _, e in by_uuid[old])


def test_a_gpu_lost_twice_in_one_sample_is_lost_once_and_its_field_errors_are_all_counted():
    """Found by the NVML audit (no NVML call here: the source's bookkeeping alone): a GPU whose field read and then
    energy read failed in one sample was marked lost twice, its first retry's wait doubled at once; a power field
    failing again and again was counted once per error code, where every other failed reading counts each time."""
    from puewatch.agent.sources import nvml

    src = nvml.Source(nvml.Config(retry_initial_s=1.0, retry_max_s=8.0), Context("n"))
    gpu = nvml._Gpu(0, None, "GPU-x", "", "", "", {})
    src._mark_lost(gpu, 1, "lost (field read)")
    src._mark_lost(gpu, 2, "lost (energy read)")
    assert gpu.lost and gpu.backoff_s == 1.0 and src.ctx.errors == 1
    assert [l for l in src.ctx.pending if "gpu_lost" in l and "field read" in l] and len(src.ctx.pending) == 1
    healthy = nvml._Gpu(1, None, "GPU-y", "", "", "", {})
    for _ in range(3):
        src._field_error(healthy, "power_instant_w", 999)
    assert src.ctx.errors == 4 and not healthy.lost
