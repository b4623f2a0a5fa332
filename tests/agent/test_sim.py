"""The sim source: deterministic from a seed; energy is the exact integral of power; nvml's sample shape."""

import math

import pytest
from agent_support import parse_line

from puewatch.agent.sources.base import Context
from puewatch.agent.sources.sim import PROFILES, Config, SimGpu, Source

T0 = 1_800_000_000_000_000_000


def test_same_seed_same_samples_other_seed_differs():
    a = Source(Config(gpus=4, seed=7), Context("n"))
    b = Source(Config(gpus=4, seed=7), Context("n"))
    c = Source(Config(gpus=4, seed=8), Context("n"))
    for t in (T0, T0 + 123_456_789, T0 + 10**12):
        assert a.sample_power(t) == b.sample_power(t)
        assert a.sample_state(t) == b.sample_state(t)
        assert a.sample_power(t) != c.sample_power(t)
    assert a.sample_info(T0) == b.sample_info(T0)


@pytest.mark.parametrize("profile", PROFILES)
def test_energy_is_the_integral_of_power(profile):
    cfg = Config(profile=profile, seed=3)
    g = SimGpu(1, cfg)
    t0 = T0 / 1e9
    # midpoint rule over 60 s in 1 ms steps
    n, dt = 60_000, 0.001
    integral = sum(g.power_w(t0 + (k + 0.5) * dt) for k in range(n)) * dt
    assert g.energy_j(t0 + 60) - g.energy_j(t0) == pytest.approx(integral, rel=2e-3)
    for k in range(200):
        p = g.power_w(t0 + k * 0.37)
        assert 0 <= p <= cfg.power_limit_w
    assert g.energy_j(t0 + 1) > g.energy_j(t0)


def test_profiles_differ_as_described():
    means = {}
    for profile in PROFILES:
        g = SimGpu(0, Config(profile=profile))
        means[profile] = (g.energy_j(T0 / 1e9 + 300) - g.energy_j(T0 / 1e9)) / 300
    assert means["idle"] < means["bursts"] < means["inference"] < means["training"]
    assert means["idle"] == pytest.approx(70, abs=3)


def test_sample_shape_matches_nvml():
    src = Source(Config(gpus=2), Context("n"))
    m, tags, fields, ts = parse_line(src.sample_power(T0)[0])
    assert m == "gpu_power" and set(tags) == {"node", "gpu", "uuid"} and ts == T0
    assert set(fields) == {"power_average_w", "power_instant_w", "energy_mj", "energy_estimated"}
    assert fields["energy_estimated"] is False and isinstance(fields["energy_mj"], int)
    m, tags, fields, _ = parse_line(src.sample_state(T0)[0])
    assert m == "gpu_state"
    assert set(fields) == {
        "util_gpu_pct", "util_memory_pct", "memory_used_bytes", "memory_total_bytes", "temperature_c",
        "clock_sm_mhz", "clock_mem_mhz", "power_limit_w", "clock_event_reasons",
    }
    m, tags, fields, _ = parse_line(src.sample_processes(T0)[0])
    assert m == "gpu_process" and "pid" in tags and "used_memory_bytes" in fields
    m, tags, fields, _ = parse_line(src.sample_info(T0)[0])
    assert m == "gpu_info" and fields["energy_source"] == "counter"
    assert all(math.isfinite(v) for v in fields.values() if isinstance(v, float))
