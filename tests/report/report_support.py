"""Synthetic sites for the report tests: a collector.toml and readings as line protocol, with known energies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from puewatch.lineprotocol import encode_line, series_key
from puewatch.core.timefmt import NS, parse_time

SITE_TOML = """
[collector]
site = "{site}"
state_dir = "{state_dir}"

[[snmp.devices]]
name = "pdu-in"
host = "127.0.0.1"

[[snmp.devices]]
name = "ups-a"
host = "127.0.0.1"

[meters.incomer]
role = "facility_input"
device = "pdu-in"
accuracy_pct = 0.5

[meters.ups-a]
role = "it"
point = "ups_output"
zone = "hall-a"
device = "ups-a"
accuracy_pct = 1.0

[meters.crac-a]
role = "cooling"
zone = "hall-a"
measurement = "modbus"
tags = {{ meter = "crac-a" }}
field = "energy_kwh"
unit = "kWh"
register = true
modulus = 100.0

[meters.water]
role = "water"
measurement = "water_meter"
field = "litres"
unit = "L"
register = true

[meters.solar]
role = "renewable"
measurement = "modbus"
tags = {{ meter = "solar" }}
field = "power_kw"
unit = "kW"

[store.embedded]
path = "{store_path}"
"""

# Constant loads of the synthetic site: facility 150 kW, IT 100 kW, cooling 30 kW, solar 20 kW, water 500 L/h.
FACILITY_W = 150_000.0
IT_W = 100_000.0
COOLING_W = 30_000.0
SOLAR_W = 20_000.0
WATER_L_PER_H = 500.0


@dataclass
class SyntheticSite:
    toml: str
    lines: bytes
    points: int
    start_ns: int
    end_ns: int


def write_site(tmp: Path, site: str = "synth", store_path: str | None = None) -> Path:
    path = tmp / "collector.toml"
    path.write_text(SITE_TOML.format(site=site, state_dir=tmp / "state", store_path=store_path or tmp / "store.sqlite"))
    return path


def synthetic_year(site: str = "synth", start: str = "2025-01-01", end: str = "2026-01-01", step_s: int = 900,
                   margin_s: int = 900) -> SyntheticSite:
    """Readings every `step_s` from `start - margin` to `end + margin`, as ns line protocol.

    The incomer's register and power, the UPS's power, the cooling register (kWh, wraps at
    100 kWh), solar power (kW) and the water register (L). A 6-hour outage of the UPS meter
    in March (so completeness is below 1) and a user reset of the incomer register in June.
    """
    s, e = parse_time(start), parse_time(end)
    t = np.arange(s - margin_s * NS, e + margin_s * NS, step_s * NS, dtype=np.int64)
    hours = (t - t[0]) / 3.6e12
    rng = np.random.default_rng(7)
    wobble = 1.0 + 0.05 * np.sin(hours / 24 * 2 * math.pi)  # a daily cycle
    out: list[str] = []
    incomer_wh = 5e6 + np.concatenate(([0.0], np.cumsum(FACILITY_W * wobble[:-1] * np.diff(hours))))
    reset_at = parse_time("2025-06-10T12:00:00Z") if s < parse_time("2025-06-10T12:00:00Z") < e else None
    if reset_at is not None:
        after = t >= reset_at
        incomer_wh[after] -= incomer_wh[after][0] - 1000.0
    outage = (t >= parse_time("2025-03-03T00:00:00Z")) & (t < parse_time("2025-03-03T06:00:00Z"))
    key_in_e = series_key("snmp_reading", {"site": site, "device": "pdu-in", "reading": "total_active_energy", "unit": "Wh"})
    key_in_p = series_key("snmp_reading", {"site": site, "device": "pdu-in", "reading": "total_active_power", "unit": "W"})
    key_ups = series_key("snmp_reading", {"site": site, "device": "ups-a", "reading": "total_active_power", "unit": "W"})
    key_crac = series_key("modbus", {"meter": "crac-a", "host": "plc1"})
    key_solar = series_key("modbus", {"meter": "solar"})
    key_water = series_key("water_meter", {})
    crac_kwh = np.mod(np.arange(t.size) * COOLING_W * step_s / 3.6e6, 100.0)
    water_l = 1e5 + np.arange(t.size) * WATER_L_PER_H * step_s / 3600
    ups_w = IT_W * wobble + rng.normal(0, 50, t.size)
    for i, ti in enumerate(t.tolist()):
        out.append(encode_line(key_in_e, {"value": float(incomer_wh[i]), "raw": float(incomer_wh[i])}, ti))
        out.append(encode_line(key_in_p, {"value": float(FACILITY_W * wobble[i])}, ti))
        if not outage[i]:
            out.append(encode_line(key_ups, {"value": float(ups_w[i])}, ti))
        out.append(encode_line(key_crac, {"energy_kwh": float(crac_kwh[i])}, ti))
        out.append(encode_line(key_solar, {"power_kw": SOLAR_W / 1e3}, ti))
        out.append(encode_line(key_water, {"litres": float(water_l[i])}, ti))
    body = ("\n".join(out) + "\n").encode()
    return SyntheticSite(SITE_TOML, body, len(out), s, e)


def rel_close(a: object, b: object, rel: float = 1e-9, path: str = "") -> None:
    """Two report values agree: floats to `rel`, everything else exactly (recursively)."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            rel_close(a[k], b[k], rel, f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            rel_close(x, y, rel, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
