"""The nvml source through the real pynvml code path, in an agent subprocess.

The fake libnvidia-ml.so.1 (agent/fake_nvml/fake_nvml.c) serves 64 scripted GPUs:
values, unsupported fields, a lost GPU that comes back, a counter reset. The
`gpu`-marked tests run the same checks against a real driver (pytest -m gpu).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from agent_support import nvml_env, parse_line, start_agent, wait_for, wait_log, write_config

from puewatch.agent.sources.base import Context
from puewatch.agent.sources.sim import Config as SimConfig
from puewatch.agent.sources.sim import Source as SimSource

SCRIPT = """
count 64
driver 555.42.06
# 1: an A100 (GA100) without fields 185/186: nvmlDeviceGetPowerUsage is instantaneous there
gpu 1 unsupported power_average
gpu 1 unsupported power_instant
gpu 1 arch 7
gpu 1 pci_device_id 0x20b010de
gpu 1 name NVIDIA A100-SXM4-80GB
# 2: a Hopper without the fields: nvmlDeviceGetPowerUsage is the 1-second average; the driver reloads at 2 s
gpu 2 unsupported power_average
gpu 2 unsupported power_instant
gpu 2 energy_reset_at_s 2.0
# 3: no energy counter: energy integrated from power, marked estimated
gpu 3 unsupported energy
# 4: no temperature, no clock event reasons, no process list
gpu 4 unsupported temperature
gpu 4 unsupported clock_events
gpu 4 unsupported processes
# 5: falls off the bus from 1.5 s to 3.0 s
gpu 5 lost_from_s 1.5
gpu 5 lost_until_s 3.0
# 6: its counter jumps 1 GJ at 2.5 s (about 1 MW over the energy interval, on a 700 W board)
gpu 6 energy_jump_at_s 2.5 1000000000
# 7: no power limit, no counter, and power NVML's "not available" (0xFFFFFFFF mW)
gpu 7 unsupported power_limit
gpu 7 unsupported energy
gpu 7 power_mw 4294967295
gpu 7 step_mw 0
# 8: draws 300 W under a 100 W cap (no board constraints: bound 200 W) until the cap is raised to 700 W at 1.5 s
gpu 8 power_mw 300000
gpu 8 step_mw 0
gpu 8 power_limit_mw 100000
gpu 8 power_limit_at_s 1.5 700000
"""

NVML_TABLE = """
[sources.nvml]
interval_s = 0.1
state_interval_s = 0.5
process_interval_s = 1.0
retry_initial_s = 0.3
retry_max_s = 0.6
"""


def collect(lines):
    points = defaultdict(list)
    for line in lines:
        m, tags, fields, ts = parse_line(line)
        points[m].append((tags, fields, ts))
    return points


def per_gpu(points, measurement):
    out = defaultdict(list)
    for tags, fields, ts in points[measurement]:
        out[int(tags["gpu"])].append((ts, fields))
    for v in out.values():
        v.sort(key=lambda x: x[0])
    return out


@pytest.fixture(scope="module")
def nvml_run(fake_nvml_dir, tmp_path_factory):
    """One agent run of about 5 s against the scripted GPUs; returns (points, agent log, energy readings).

    The energy readings are the fake library's own log of every counter value it returned:
    {gpu: [mJ, ...]}, independent of the agent.
    """
    import agent_support

    tmp = tmp_path_factory.mktemp("nvml_run")
    procs: list = []
    try:
        rx = agent_support.Receiver(procs, tmp).start()
        script = tmp / "gpus.txt"
        script.write_text(SCRIPT)
        cfg = write_config(tmp / "agent.toml", rx.url, tmp / "spool", NVML_TABLE)
        nvml_log = tmp / "nvml.log"
        agent = start_agent(procs, cfg, tmp / "agent.log", nvml_env(fake_nvml_dir, script, nvml_log))
        wait_log(agent, "first sample taken")
        time.sleep(4.5)
        assert agent.stop() == 0, agent.output()
        readings = defaultdict(list)
        for line in nvml_log.read_text().splitlines():
            _, gpu, mj = line.split()
            readings[int(gpu)].append(int(mj))
        return collect(rx.lines()), agent.output(), readings
    finally:
        for p in procs:
            p.stop()


def test_many_gpus_all_sampled_and_described(nvml_run):
    points, _, _ = nvml_run
    power = per_gpu(points, "gpu_power")
    assert sorted(power) == [g for g in range(64) if g != 7]  # 7's every power is refused: it has nothing to ship
    info = {int(t["gpu"]): f for t, f, _ in points["gpu_info"]}
    assert sorted(info) == list(range(64))
    assert info[0]["name"] == "NVIDIA H100 80GB HBM3"
    assert info[0]["pci_bus_id"] == "00000000:18:00.0"
    assert info[0]["architecture"] == "hopper" and info[0]["driver_version"] == "555.42.06"
    assert info[0]["serial"] == "1654000000000"
    uuids = {t["uuid"] for t, _, _ in points["gpu_info"]}
    assert len(uuids) == 64


def test_power_kinds_are_recorded(nvml_run):
    points, _, _ = nvml_run
    power = per_gpu(points, "gpu_power")
    info = {int(t["gpu"]): f for t, f, _ in points["gpu_info"]}
    # GPU 0: both fields, each named by kind; 185 is the 1-s average (fake: base + 2 steps).
    f0 = [f for _, f in power[0]]
    assert all(f["power_average_w"] == 302.0 for f in f0)
    assert {f["power_instant_w"] for f in f0} <= {300.0, 301.0, 302.0, 303.0, 304.0}
    assert len({f["power_instant_w"] for f in f0}) > 1
    assert (info[0]["power_average_source"], info[0]["power_instant_source"]) == ("field_185", "field_186")
    # GPU 1: GA100 without the fields: nvmlDeviceGetPowerUsage is instantaneous.
    assert all("power_instant_w" in f and "power_average_w" not in f for _, f in power[1])
    assert info[1]["power_instant_source"] == "nvmlDeviceGetPowerUsage" and info[1]["power_average_source"] == "unsupported"
    assert info[1]["architecture"] == "ampere"
    # GPU 2: Hopper without the fields: nvmlDeviceGetPowerUsage is the 1-second average.
    assert all("power_average_w" in f and "power_instant_w" not in f for _, f in power[2])
    assert info[2]["power_average_source"] == "nvmlDeviceGetPowerUsage"


def test_energy_counter_and_its_rate(nvml_run):
    points, _, _ = nvml_run
    samples = [(ts, f) for ts, f in per_gpu(points, "gpu_power")[0] if "energy_mj" in f]
    energies = [f["energy_mj"] for _, f in samples]
    assert all(isinstance(e, int) for e in energies)
    assert all(b >= a for a, b in zip(energies, energies[1:]))
    assert all(f["energy_estimated"] is False for _, f in samples)
    # The fake counter grows at exactly 300 W: energy over wall time must match.
    (t_a, f_a), (t_b, f_b) = samples[0], samples[-1]
    watts = (f_b["energy_mj"] - f_a["energy_mj"]) / ((t_b - t_a) / 1e9) / 1000
    assert watts == pytest.approx(300.0, rel=0.02)


def test_energy_integrated_where_no_counter_and_marked_estimated(nvml_run):
    points, log, _ = nvml_run
    samples = [(ts, f) for ts, f in per_gpu(points, "gpu_power")[3] if "energy_mj" in f]
    assert len(samples) >= 4 and all(f["energy_estimated"] is True for _, f in samples)
    (t_a, f_a), (t_b, f_b) = samples[1], samples[-1]
    watts = (f_b["energy_mj"] - f_a["energy_mj"]) / ((t_b - t_a) / 1e9) / 1000
    assert watts == pytest.approx(305.0, rel=0.02)  # field 185 of GPU 3: 303 W + 2 W
    # gpu_info says so once the first power sample found out (the last description wins)
    info = {int(t["gpu"]): f for t, f, _ in sorted(points["gpu_info"], key=lambda p: p[2])}
    assert info[3]["energy_source"] == "integrated" and info[0]["energy_source"] == "counter"
    assert log.count("GPU 3 has no energy counter") == 1


def test_counter_reset_is_detected_and_reported(nvml_run):
    points, _, _ = nvml_run
    energies = [f["energy_mj"] for _, f in per_gpu(points, "gpu_power")[2] if "energy_mj" in f]
    drops = [(a, b) for a, b in zip(energies, energies[1:]) if b < a]
    assert len(drops) == 1
    events = [(t, f) for t, f, _ in points["puewatch_event"] if t["event"] == "energy_counter_reset"]
    assert len(events) == 1 and events[0][0]["gpu"] == "2"
    assert f"from {drops[0][0]} mJ to {drops[0][1]} mJ" in events[0][1]["message"]


def test_unsupported_fields_left_out_and_logged_once(nvml_run):
    points, log, _ = nvml_run
    state = per_gpu(points, "gpu_state")
    assert len(state[4]) >= 5
    for _, f in state[4]:
        assert "temperature_c" not in f and "clock_event_reasons" not in f
        assert f["util_gpu_pct"] == 94 and f["memory_total_bytes"] == 85899345920
    assert all("temperature_c" in f and f["clock_event_reasons"] == 4 for _, f in state[0])
    assert log.count("GPU 4: temperature not supported") == 1
    assert log.count("GPU 4: clock_event_reasons not supported") == 1
    procs = per_gpu(points, "gpu_process")
    assert 4 not in procs
    pids = {t["pid"] for t, f, _ in points["gpu_process"] if t["gpu"] == "0"}
    assert pids == {"1000"}


def test_lost_gpu_is_an_event_others_go_on_and_it_comes_back(nvml_run):
    points, log, _ = nvml_run
    events = [(t["event"], t.get("gpu"), ts) for t, _, ts in points["puewatch_event"]]
    lost = [e for e in events if e[0] == "gpu_lost"]
    back = [e for e in events if e[0] == "gpu_recovered"]
    assert [e[1] for e in lost] == ["5"] and [e[1] for e in back] == ["5"]
    t_lost, t_back = lost[0][2], back[0][2]
    assert 1.0e9 < t_back - t_lost < 3.0e9
    power = per_gpu(points, "gpu_power")
    during = [ts for ts, _ in power[5] if t_lost < ts < t_back]
    assert during == []
    assert any(ts > t_back for ts, _ in power[5])
    # GPU 0 went on at 10 Hz all along.
    ts0 = [ts for ts, _ in power[0]]
    assert sum(1 for ts in ts0 if t_lost < ts < t_back) >= (t_back - t_lost) / 1e8 - 2
    assert "GPU 5" in log and "lost" in log


def test_energy_read_once_a_second_power_every_sample(nvml_run):
    """energy_interval_s (1 s by default): the counter is read on the first power sample of each
    wall-clock second, not at the power rate (a reading costs ~3.9 ms per GPU on an H100)."""
    points, _, readings = nvml_run
    samples = per_gpu(points, "gpu_power")[0]
    with_energy = [ts for ts, f in samples if "energy_mj" in f]
    assert len(samples) >= 40 and all("power_average_w" in f and "power_instant_w" in f for _, f in samples)
    seconds = [ts // 10**9 for ts in with_energy]
    assert seconds == sorted(set(seconds))  # one reading per wall-clock second...
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))  # ...and every second
    all_ts = [ts for ts, _ in samples]
    for ts in with_energy:  # the first sample of its second
        assert not [t for t in all_ts if t < ts and t // 10**9 == ts // 10**9]
    # What the library saw: as many counter readings as energy points received, for every GPU.
    energy_points = per_gpu({"gpu_power": [p for p in points["gpu_power"] if "energy_mj" in p[1]]}, "gpu_power")
    for gpu in (0, 2, 5, 63):
        assert readings[gpu] == [f["energy_mj"] for _, f in energy_points[gpu]]
    assert 3 <= len(readings[0]) <= 7  # about 5 s


def test_fixed_rate_timestamps(nvml_run):
    points, _, _ = nvml_run
    ts = [t for t, _ in per_gpu(points, "gpu_power")[0]]
    deltas = [(b - a) / 1e9 for a, b in zip(ts, ts[1:])]
    assert statistics.median(deltas) == pytest.approx(0.1, abs=0.01)
    # No drift: the mean period over the run is the interval (a sleep-based loop would run slow).
    assert (ts[-1] - ts[0]) / 1e9 / (len(ts) - 1) == pytest.approx(0.1, abs=0.003)


def test_sim_has_the_same_sample_shape_as_nvml(nvml_run):
    points, _, _ = nvml_run
    sim = SimSource(SimConfig(gpus=1), Context("n"))
    # Both power samples inside one wall-clock second (the energy period is aligned to the clock):
    # a t just before a whole second would put the second sample in the next period.
    t = time.time_ns() // 10**9 * 10**9 + 10**8
    samples = (
        ("gpu_power", sim.sample_power(t), lambda f: "energy_mj" in f),  # the first of its period: with energy
        ("gpu_power", sim.sample_power(t + 10**8), lambda f: "energy_mj" not in f),  # and the next one, without
        ("gpu_state", sim.sample_state(t), None),
        ("gpu_info", sim.sample_info(t), None),
    )
    for measurement, sample, which in samples:
        m, tags, fields, _ = parse_line(sample[0])
        assert which is None or which(fields)
        nv_tags, nv_fields, _ = next(p for p in points[measurement] if p[0]["gpu"] == "0" and (which is None or which(p[1])))
        assert set(tags) == set(nv_tags), measurement
        assert set(fields) == set(nv_fields), measurement
        assert {k: type(v) for k, v in fields.items()} == {k: type(v) for k, v in nv_fields.items()}, measurement


def run_agent_cli(config, env_extra, timeout=30):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "NOTIFY_SOCKET")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "puewatch.cli", "agent", "--config", str(config)], env=env, capture_output=True, text=True, timeout=timeout)


def test_no_driver_is_a_clear_startup_error(tmp_path):
    cfg = write_config(tmp_path / "agent.toml", "http://127.0.0.1:9/api/v2/write", tmp_path / "spool", "[sources.nvml]\n")
    r = run_agent_cli(cfg, {})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "source nvml: NVML library libnvidia-ml.so.1 not found" in r.stderr
    assert "optional = true" in r.stderr


def test_driver_not_loaded_is_a_clear_startup_error(tmp_path, fake_nvml_dir):
    script = tmp_path / "gpus.txt"
    script.write_text("init_error 9\n")
    cfg = write_config(tmp_path / "agent.toml", "http://127.0.0.1:9/api/v2/write", tmp_path / "spool", "[sources.nvml]\n")
    r = run_agent_cli(cfg, nvml_env(fake_nvml_dir, script))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "NVML initialisation failed: Driver Not Loaded" in r.stderr


def test_optional_nvml_without_driver_runs_and_says_so(tmp_path, procs, receiver):
    cfg = write_config(
        tmp_path / "agent.toml", receiver.url, tmp_path / "spool", "[sources.nvml]\noptional = true\n[sources.sim]\ngpus = 1\n"
    )
    agent = start_agent(procs, cfg, tmp_path / "agent.log")
    wait_for(lambda: any(l.startswith("gpu_power") for l in receiver.lines()), 20, "sim samples delivered")
    assert agent.stop() == 0
    points = collect(receiver.lines())
    events = [t["event"] for t, _, _ in points["puewatch_event"]]
    assert "nvml_unavailable" in events
    log = agent.output()
    # it is optional already: the warning does not tell to make it so, and says the real delay (agent audit)
    assert "going on without GPUs, retrying in 1 s" in log and "set optional = true" not in log


# -- the same against a real driver ---------------------------------------------------------------


@pytest.mark.gpu
def test_real_driver(tmp_path, procs, receiver):
    """On a GPU machine: every GPU sampled through the real NVML; reports how often each power figure changes."""
    cfg = write_config(tmp_path / "agent.toml", receiver.url, tmp_path / "spool", NVML_TABLE.replace("interval_s = 0.1", "interval_s = 0.02", 1))
    agent = start_agent(procs, cfg, tmp_path / "agent.log")
    wait_log(agent, "first sample taken", 30)
    time.sleep(10)
    assert agent.stop() == 0, agent.output()
    points = collect(receiver.lines())
    power = per_gpu(points, "gpu_power")
    info = {int(t["gpu"]): f for t, f, _ in points["gpu_info"]}
    assert power and sorted(power) == sorted(info)
    for gpu, samples in power.items():
        energies = [f["energy_mj"] for _, f in samples if "energy_mj" in f]
        assert energies and all(b >= a for a, b in zip(energies, energies[1:]))
        span_s = (samples[-1][0] - samples[0][0]) / 1e9
        for field in ("power_average_w", "power_instant_w", "energy_mj"):
            values = [f[field] for _, f in samples if field in f]
            if values:
                changes = sum(1 for a, b in zip(values, values[1:]) if a != b)
                print(f"GPU {gpu} {info[gpu]['name']}: {field} changed {changes} times in {span_s:.1f} s "
                      f"({changes / span_s:.1f}/s) over {len(values)} samples; source {info[gpu].get(field.replace('_w', '_source'), info[gpu]['energy_source'])}")


def test_a_power_reading_above_what_the_gpu_can_draw_is_left_out_and_said_once(tmp_path, procs, receiver, fake_nvml_dir):
    """A broken sensor reads 4,000,000 W (the fake's GPU 1, by its fields; GPU 2 by nvmlDeviceGetPowerUsage): above
    twice the board's power limit (700 W), it is no reading: left out of the point, counted as a source error, and
    said once per GPU as `power_impossible`; the other GPU goes on. It was stored as a measurement (found by the
    agent audit)."""
    script = tmp_path / "gpus.txt"
    script.write_text("count 3\ngpu 1 power_mw 4000000000\ngpu 1 step_mw 0\n"
                      "gpu 2 power_mw 4000000000\ngpu 2 step_mw 0\ngpu 2 unsupported power_average\n"
                      "gpu 2 unsupported power_instant\n")
    cfg = write_config(tmp_path / "agent.toml", receiver.url, tmp_path / "spool", NVML_TABLE)
    agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script))
    wait_log(agent, "first sample taken")
    time.sleep(2.0)
    assert agent.stop() == 0, agent.output()
    log = agent.output()
    points = collect(receiver.lines())
    power = per_gpu(points, "gpu_power")
    assert len(power[0]) >= 10 and all(250 < f["power_average_w"] < 400 for _, f in power[0])
    for g in (1, 2):
        watts = [v for _, f in power[g] for k, v in f.items() if k.startswith("power_")]
        assert watts == [], (g, watts[:3])
        assert [e for e in power[g] if "energy_mj" in e[1]]  # its counter is still read
    events = [(t["gpu"], f["message"]) for t, f, _ in points["puewatch_event"] if t["event"] == "power_impossible"]
    assert sorted(g for g, _ in events) == ["1", "2"], events
    assert "read power_average_w 4e+06 W, above twice its highest power limit (700 W)" in dict(events)["1"]
    assert log.count("a broken sensor's value, not a reading") == 2


def test_an_impossible_counter_jump_is_said_and_nvml_s_not_available_power_is_no_reading(nvml_run):
    """Found by the agent audit. GPU 6's counter rises 1 GJ between two readings a second apart: shipped as read
    (the collector judges it), said once as energy_counter_jump with the rise and the bound, and counted. GPU 7
    has no power limit and reads 0xFFFFFFFF mW: refused against the GPU ceiling (10 kW), named as NVML's 'not
    available', and nothing integrated from it (it shipped 4.29 MW and 15 GJ of estimated energy)."""
    points, log, readings = nvml_run
    events = {(t["event"], t.get("gpu")): f["message"] for t, f, _ in points["puewatch_event"]}
    jump = events[("energy_counter_jump", "6")]
    assert "GPU 6 energy counter rose" in jump and "more than it can draw (1400 W)" in jump, jump
    assert not any(kind == "energy_counter_jump" and gpu not in ("6", "8") for kind, gpu in events), events
    jumps = [b - a for a, b in zip(readings[6], readings[6][1:]) if b - a > 10**8]
    assert len(jumps) == 1  # the fake's own log: one such rise
    power = events[("power_impossible", "7")]
    assert "4294.97 kW" in power or "4.29497e+06 W" in power, power
    assert "more than any GPU board draws (10000 W; NVML gives no power limit)" in power, power
    assert "NVML's 'not available' (0xFFFFFFFF mW)" in power, power
    assert 7 not in per_gpu(points, "gpu_power")  # no power, so no integrated energy either


def test_power_is_integrated_over_monotonic_time_whatever_the_wall_clock_does():
    """Found by the agent audit: a GPU without an energy counter integrated power between samples over the wall
    clock, so a step of an hour added 303 Wh in one 0.1 s sample, or made its energy negative for good. The
    trapezoids' widths are monotonic time; the readings keep their wall-clock times. (The unit under test is
    the integration itself; the agent runs above take the real path through the fake NVML.)"""
    from puewatch.agent.sources.nvml import Source, _Gpu

    gpu = _Gpu(0, None, "GPU-0", "gpu_power", "gpu_state", "gpu_info", {}, has_counter=False)
    wall, mono = 1_800_000_000 * 10**9, 5 * 10**9
    parts: list[str] = []
    Source._integrate(gpu, parts, 300.0, wall, mono, True)
    for step in (3600 * 10**9, -7200 * 10**9):  # the wall clock steps an hour ahead, then two back
        wall += step + 10**8
        mono += 10**8
        Source._integrate(gpu, parts, 300.0, wall, mono, True)
    assert gpu.est_energy_mj == pytest.approx(300.0 * 0.2 * 1000.0)  # 0.2 s at 300 W: 60 J
    assert parts[-1] == "energy_mj=60000i,energy_estimated=true"
    assert gpu.energy_reading() == (gpu.est_energy_mj, wall, mono)  # the ledger's durations are monotonic


def test_a_raised_power_cap_raises_the_bound(nvml_run):
    """Review: the bound (twice the cap, where the board's constraints are not read) was fixed at set-up, so a
    cap raised later made every counter reading an impossible jump, and no job was billed again. GPU 8 draws
    300 W under a 100 W cap until the cap is 700 W (1.5 s): its readings are refused until the state poll
    reads the new cap (0.5 s), and then shipped; its counter's rises stop being jumps."""
    points, _, _ = nvml_run
    jumps = [ts for t, f, ts in points["puewatch_event"] if t["event"] == "energy_counter_jump" and t.get("gpu") == "8"]
    g8 = per_gpu(points, "gpu_power")[8]
    shipped = [ts for ts, f in g8 if "power_average_w" in f]
    assert shipped and all(f["power_average_w"] == 300.0 for ts, f in g8 if "power_average_w" in f)
    assert len(jumps) <= 2 and all(ts < shipped[-1] - 10**9 for ts in jumps), (jumps, shipped[:3], shipped[-1])
