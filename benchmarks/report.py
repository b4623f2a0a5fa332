"""`puewatch bench report`: a long report (issue 6: a year of 1-minute data for 500 meters in < 10 s).

The site (`synthesise`): `--meters` meters read every `--step-s` for `--days` days, as the
collector stores them: SNMP meters (`snmp_reading`, `value`) with their energy register in
Wh (most of them) or only their power in W (one in ten); the poll times carry the jitter of
real polls (up to 0.2 s, in ns). Two incomers (`facility_input`), IT meters in four halls,
cooling meters. Faults as in the field: a few meters have gaps (an hour; one a two-day
outage), one register is reset to zero, and one ingest meter (kWh, `modulus`) wraps.

Measured in the same run:

1. `engine_seconds`: `compute_report` on in-memory readings of every meter (the numbers);
2. `embedded_read_seconds`: `read_store` from an embedded store (SQLite) holding ALL the data,
   loaded with `EmbeddedStore.write_columns` (columnar chunks, as `compact()` leaves data older
   than its horizon), and `report_seconds` = read + engine, the end-to-end figure held against
   the 10 s target; the report read back must equal the in-memory one;
3. `rows_points_per_s`: the same read path over the row layout (`points` table: what a store
   holds before compaction) for `--rows-meters` meters, a subset, extrapolated to all;
4. `influx_points_per_s`: `read_store` from a real influxd 1.6.7 holding `--influx-meters`
   meters (a subset: loading a year of 500 meters into influxd would take longer than the rest);
5. baselines: a plain NumPy pass computing each register meter's per-day energy from the same
   arrays (readings at the day edges subtracted: no gaps, wraps or resets handled), and a bare
   SQLite fetch of the subset's rows (`SELECT time_ns, value ... fetchall`), points/s.

The page cache is warm (the store was just written): the figures are those of a report run on
a collector host whose store file fits in memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puewatch.collector.site import UNITS, Meter, SiteModel
from puewatch.errors import UserError

NS = 1_000_000_000
DAY_NS = 86_400 * NS
START_NS = 1_735_689_600 * NS  # 2025-01-01T00:00:00Z
TARGET_S = 10.0
SITE = "bench"


@dataclass
class Stored:
    """One meter's series as the collector stores it, and what the report reads from it."""

    measurement: str
    tags: dict[str, str]
    field: str
    t_ns: np.ndarray
    values: np.ndarray  # in the stored unit
    kind: str  # "energy" or "power"


def _meter_specs(n: int) -> list[tuple[str, str, str, str]]:
    """(name, role, zone, point) for n meters: 2 incomers, ~80 % IT in 4 halls, the rest cooling."""
    if n < 4:
        raise UserError(f"--meters must be at least 4, got {n}")
    specs = [("incomer-1", "facility_input", "", ""), ("incomer-2", "facility_input", "", "")]
    n_it = max(1, round((n - 2) * 0.8))
    for i in range(n_it):
        specs.append((f"pdu-{i:04d}", "it", f"hall-{'abcd'[i % 4]}", "pdu_output"))
    for i in range(n - 2 - n_it):
        specs.append((f"crac-{i:04d}", "cooling", f"hall-{'abcd'[i % 4]}", ""))
    return specs


def synthesise(meters: int, days: int, step_s: float, seed: int = 6) -> tuple[SiteModel, int, int, dict[str, Stored]]:
    """The site model, the period [start, end) and every meter's stored series (vectorised)."""
    rng = np.random.default_rng(seed)
    step_ns = round(step_s * NS)
    if step_ns < NS:
        raise UserError(f"--step-s must be at least 1, got {step_s}")
    if days < 1:
        raise UserError(f"--days must be at least 1, got {days}")
    end_ns = START_NS + days * DAY_NS
    n = int((end_ns - START_NS) // step_ns)
    specs = _meter_specs(meters)
    site_meters: dict[str, Meter] = {}
    stored: dict[str, Stored] = {}
    base = START_NS + np.arange(n, dtype=np.int64) * step_ns
    day_phase = 2 * math.pi * ((base - START_NS) % DAY_NS) / DAY_NS
    gap_len = max(1, int(3600 * NS // step_ns))
    for k, (name, role, zone, point) in enumerate(specs):
        jitter = rng.integers(0, min(200_000_000, step_ns // 4), n, dtype=np.int64)
        t = base + jitter
        scale = {"facility_input": 400_000.0, "it": 1_000.0, "cooling": 5_000.0}[role]
        level = scale * (0.8 + 0.4 * rng.random())
        power = level * (1.0 + 0.1 * np.sin(day_phase + k) + 0.02 * rng.standard_normal(n))
        keep = np.ones(n, dtype=bool)
        if k % 50 == 7:  # an hour with no answer
            g = int(rng.integers(0, n - gap_len))
            keep[g : g + gap_len] = False
        if k == 11 and n > 4 * 48 * gap_len:  # a two-day outage
            g = n // 3
            keep[g : g + 48 * gap_len] = False
        power_only = k % 10 == 9 and role != "facility_input"
        wrap = k == 13
        if power_only:
            values, kind, unit = power, "power", "W"
        else:
            energy = np.cumsum(power * (step_ns / NS / 3600.0))
            energy += 1e6 * rng.random()
            if k == 17:  # the register is reset to zero at mid-period
                h = n // 2
                energy[h:] -= energy[h - 1]
                energy[h:] += power[h:h + 1] * (step_ns / NS / 3600.0)
            values, kind, unit = energy, "energy", "Wh"
        t, values = t[keep], values[keep]
        if wrap:
            # An ingest meter with a kWh register that wraps at 100,000 kWh a third of the way in.
            kwh = values / 1000.0
            kwh += 100_000.0 - kwh[len(kwh) // 3]
            kwh = np.mod(kwh, 100_000.0)
            site_meters[name] = Meter(role=role, point=point, zone=zone, measurement="modbus",
                                      tags={"meter": name}, field="energy_kwh", unit="kWh", register=True,
                                      modulus=100_000.0, accuracy_pct=1.0)
            stored[name] = Stored("modbus", {"meter": name}, "energy_kwh", t, kwh, "energy")
            continue
        site_meters[name] = Meter(role=role, point=point, zone=zone, device=f"dev-{name}", accuracy_pct=0.5 if role != "cooling" else None)
        reading = "total_active_energy" if kind == "energy" else "total_active_power"
        stored[name] = Stored("snmp_reading", {"site": SITE, "device": f"dev-{name}", "reading": reading, "unit": unit},
                              "value", t, values, kind)
    return SiteModel(SITE, site_meters), START_NS, end_ns, stored


def in_memory_readings(site: SiteModel, stored: dict[str, Stored]) -> dict[str, Any]:
    """What `read_store` returns for the stored series, built directly (units converted as it does)."""
    from puewatch.report.engine import MeterReadings
    from puewatch.report.sources import meter_modulus

    out = {}
    for name, s in stored.items():
        m = site.meters[name]
        v = s.values * UNITS[m.unit][1] if m.measurement else s.values
        out[name] = MeterReadings(s.t_ns, v if s.kind == "power" else None, v if s.kind == "energy" else None,
                                  meter_modulus(m))
    return out


def numpy_day_energy(readings: dict[str, Any], start_ns: int, end_ns: int) -> int:
    """The baseline: each register meter's per-day energy from its readings at the day edges (no faults handled)."""
    edges = np.arange(start_ns, end_ns + 1, DAY_NS, dtype=np.int64)
    days = 0
    for r in readings.values():
        if r.energy_wh is None:
            continue
        i = np.searchsorted(r.t_ns, edges)
        i = np.minimum(i, r.t_ns.size - 1)
        per_day = np.diff(r.energy_wh[i])
        days += per_day.size
    return days


def _strip(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("generated_at", "source")}
