"""Simulated GPUs with load profiles, for the demo and for tests upstream.

Yields the same measurements, tags and fields as the `nvml` source. Every value
is a closed-form function of (seed, GPU index, wall-clock time): two agents
with the same seed that sample at the same instants produce the same points,
and the energy counter is the exact integral of the instantaneous power, so
energy computed from it can be checked against the analytic value.

Profiles (L = power_limit_w):
- idle:      idle_w + 3 W ripple
- training:  0.80 L ± 0.12 L (1.7 s iteration cycle) ± 0.05 L (97 s drift)
- inference: 0.45 L ± 0.20 L (11 s request waves) ± 0.08 L (0.9 s batches)
- bursts:    0.95 L for 25 % of each 30 s period, idle_w otherwise
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass

from puewatch.agent.sources.base import Context, Job
from puewatch.config import setting
from puewatch.lineprotocol import encode_line

SOURCE = "sim"
PROFILES = ("idle", "training", "inference", "bursts")
# The simulated driver was "loaded" at this wall-clock time (s): the energy counter's zero.
DRIVER_LOAD_S = 1_700_000_000
TAU = 2.0 * math.pi


@dataclass
class Config:
    """Simulated GPUs, deterministic from a seed (demo and tests)."""

    gpus: int = setting(8, min=1, max=1024, doc="Number of simulated GPUs.")
    profile: str = setting("training", choices=PROFILES, doc="Load profile of every simulated GPU.")
    seed: int = setting(0, min=0, doc="Seed of the phases, UUIDs and serials; same seed, same samples.")
    interval_s: float = setting(0.1, min=0.01, max=60.0, doc="Period of `gpu_power` samples.")
    energy_interval_s: float = setting(
        1.0, min=0.01, max=3600.0, doc="Period of `energy_mj` on `gpu_power` (as in `nvml`: the first sample of each period)."
    )
    state_interval_s: float = setting(1.0, min=0.1, max=300.0, doc="Period of `gpu_state` samples.")
    process_interval_s: float = setting(5.0, min=0.5, max=3600.0, doc="Period of `gpu_process` samples.")
    info_interval_s: float = setting(300.0, min=10.0, max=86400.0, doc="Period of `gpu_info` samples.")
    power_limit_w: float = setting(700.0, min=10.0, max=5000.0, doc="Enforced power limit of each simulated GPU (W).")
    idle_w: float = setting(70.0, min=0.0, max=1000.0, doc="Idle power of each simulated GPU (W).")
    name: str = setting("Simulated H100 80GB", min=1, doc="Product name reported for each simulated GPU.")

    def check(self) -> list[tuple[str, str]]:
        if self.idle_w >= self.power_limit_w:
            return [("idle_w", f"must be below power_limit_w ({self.power_limit_w}), got {self.idle_w}")]
        if self.energy_interval_s < self.interval_s:
            return [("energy_interval_s", f"must be at least interval_s ({self.interval_s}), got {self.energy_interval_s}")]
        return []


class SimGpu:
    """One simulated GPU: power(t) and its exact integral energy(t)."""

    def __init__(self, index: int, cfg: Config) -> None:
        rng = random.Random(cfg.seed * 1_000_003 + index)
        self.index = index
        self.cfg = cfg
        self.uuid = "GPU-" + str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.serial = str(1650000000000 + rng.randrange(10**9))
        self.phase1 = rng.uniform(0, TAU)
        self.phase2 = rng.uniform(0, TAU)
        self.offset_s = rng.uniform(0, 30.0)
        L, idle = cfg.power_limit_w, cfg.idle_w
        p = cfg.profile
        # power = base + sum(a * sin(2 pi t / period + phase)) or a square wave for bursts
        if p == "idle":
            self.base, self.waves = idle, [(3.0, 13.0, self.phase1)]
        elif p == "training":
            self.base, self.waves = 0.80 * L, [(0.12 * L, 1.7, self.phase1), (0.05 * L, 97.0, self.phase2)]
        elif p == "inference":
            self.base, self.waves = 0.45 * L, [(0.20 * L, 11.0, self.phase1), (0.08 * L, 0.9, self.phase2)]
        else:
            self.base, self.waves = idle, []
        self.burst = p == "bursts"
        self.high_w, self.period_s, self.duty = 0.95 * L, 30.0, 0.25

    def power_w(self, t_s: float) -> float:
        t = t_s - DRIVER_LOAD_S
        if self.burst:
            return self.high_w if ((t + self.offset_s) % self.period_s) < self.duty * self.period_s else self.base
        return self.base + sum(a * math.sin(TAU * t / per + ph) for a, per, ph in self.waves)

    def energy_j(self, t_s: float) -> float:
        """Exact integral of power_w from the simulated driver load to t_s."""
        t = t_s - DRIVER_LOAD_S
        if self.burst:
            high, low, per, d = self.high_w, self.base, self.period_s, self.duty * self.period_s

            def cum(x: float) -> float:  # integral of the square wave from 0 to x (x >= 0)
                n, r = divmod(x, per)
                return n * (high * d + low * (per - d)) + (high * r if r < d else high * d + low * (r - d))

            return cum(t + self.offset_s) - cum(self.offset_s)
        e = self.base * t
        for a, per, ph in self.waves:
            w = TAU / per
            e += a / w * (math.cos(ph) - math.cos(w * t + ph))
        return e

    def util_pct(self, t_s: float) -> int:
        cfg = self.cfg
        frac = (self.power_w(t_s) - cfg.idle_w) / (cfg.power_limit_w - cfg.idle_w)
        return int(round(100 * min(1.0, max(0.0, frac))))


_MEMORY_GB = {"idle": 0.5, "training": 71.0, "inference": 38.0, "bursts": 60.0}


class Source:
    name = SOURCE

    def __init__(self, config: Config, ctx: Context) -> None:
        self.cfg = config
        self.ctx = ctx
        self.gpus = [SimGpu(i, config) for i in range(config.gpus)]
        self._energy_period = -1
        self.keys = []
        for g in self.gpus:
            tags = {"gpu": str(g.index), "uuid": g.uuid}
            self.keys.append(
                (ctx.key("gpu_power", **tags), ctx.key("gpu_state", **tags), ctx.key("gpu_info", **tags), tags)
            )

    def open(self) -> None:
        pass

    def jobs(self) -> list[Job]:
        c = self.cfg
        return [
            Job("sim.power", c.interval_s, self.sample_power, hot=True),
            Job("sim.state", c.state_interval_s, self.sample_state),
            Job("sim.process", c.process_interval_s, self.sample_processes),
            Job("sim.info", c.info_interval_s, self.sample_info, at_start=True),
        ]

    def power_fields(self, gpu: SimGpu, t_ns: int, energy: bool = True) -> dict:
        t = t_ns / 1e9
        energy_now = gpu.energy_j(t)
        fields = {
            "power_average_w": energy_now - gpu.energy_j(t - 1.0),  # 1-second average, like field 185
            "power_instant_w": gpu.power_w(t),
        }
        if energy:
            fields["energy_mj"] = int(energy_now * 1000.0)
            fields["energy_estimated"] = False
        return fields

    def sample_power(self, t_ns: int | None = None) -> list[str]:
        t_ns = time.time_ns() if t_ns is None else t_ns
        # Energy on the first sample of each energy_interval_s period, as the nvml source does.
        period = t_ns // round(self.cfg.energy_interval_s * 1e9)
        energy = period != self._energy_period or self.cfg.energy_interval_s <= self.cfg.interval_s
        self._energy_period = period
        return [encode_line(k[0], self.power_fields(g, t_ns, energy), t_ns) for g, k in zip(self.gpus, self.keys)]

    def sample_state(self, t_ns: int | None = None) -> list[str]:
        t_ns = time.time_ns() if t_ns is None else t_ns
        t = t_ns / 1e9
        out = []
        total = 80 * 1024**3
        for g, k in zip(self.gpus, self.keys):
            util = g.util_pct(t)
            p = g.power_w(t)
            fields = {
                "util_gpu_pct": util,
                "util_memory_pct": int(util * 0.6),
                "memory_used_bytes": int(_MEMORY_GB[self.cfg.profile] * 1024**3),
                "memory_total_bytes": total,
                "temperature_c": int(30 + 45 * p / self.cfg.power_limit_w),
                "clock_sm_mhz": int(345 + (1980 - 345) * util / 100),
                "clock_mem_mhz": 2619,
                "power_limit_w": self.cfg.power_limit_w,
                "clock_event_reasons": 1 if util == 0 else 0,  # GPU idle
            }
            out.append(encode_line(k[1], fields, t_ns))
        return out

    def sample_processes(self, t_ns: int | None = None) -> list[str]:
        t_ns = time.time_ns() if t_ns is None else t_ns
        if self.cfg.profile == "idle":
            return []
        used = int(_MEMORY_GB[self.cfg.profile] * 1024**3) - 512 * 1024**2
        return [
            encode_line(self.ctx.key("gpu_process", pid=str(40000 + g.index), **k[3]), {"used_memory_bytes": used}, t_ns)
            for g, k in zip(self.gpus, self.keys)
        ]

    def sample_info(self, t_ns: int | None = None) -> list[str]:
        t_ns = time.time_ns() if t_ns is None else t_ns
        return [
            encode_line(
                k[2],
                {
                    "name": self.cfg.name,
                    "serial": g.serial,
                    "pci_bus_id": f"00000000:{0x18 + 0x10 * g.index:02X}:00.0",
                    "pci_device_id": 0x233010DE,
                    "architecture": "simulated",
                    "driver_version": "sim",
                    "power_average_source": "simulated",
                    "power_instant_source": "simulated",
                    "energy_source": "counter",
                },
                t_ns,
            )
            for g, k in zip(self.gpus, self.keys)
        ]

    def close(self) -> None:
        pass
