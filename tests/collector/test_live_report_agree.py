"""One measurement core: the live pipeline and the report give the same energies from the same readings.

A recorded stream with every outcome of the register-energy policy (core.energy): wraps, a
reset, an impossible jump, a missed poll, a gap of 40 s, register readings that cannot be (past
the modulus, negative), and a power gauge with a negative reading and one above its limit. It is fed to the live pipeline as the collector feeds it (a
step after every reading) and the same readings go through `compute_report`, hour by hour.
Each meter's energy per hour agrees to 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from puewatch.collector.pipeline import Pipeline
from puewatch.core import energy as policy
from puewatch.core import schema
from puewatch.core.site import Meter, SiteModel
from puewatch.core.timefmt import HOUR, SECOND
from puewatch.report.engine import MeterReadings, ReportOptions, compute_report

T0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z
POLL = 10 * SECOND
HOURS = 6
MODULUS = 20_000.0  # Wh: the incomer wraps every ~2 h at 10 kW


def _recording() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    # Readings on whole seconds: a live cell (1 s) only partly inside a counted interval is
    # missing live (a partial cell would bias the ratios), while a report counts that part;
    # on whole seconds every interval edge is a cell edge, so the two must agree exactly.
    t = T0 + np.arange(0, HOURS * HOUR // POLL + 1, dtype=np.int64) * POLL
    n = t.size
    hours = (t - T0) / HOUR
    fac_w = 10_000.0 + 500.0 * np.sin(hours) + rng.normal(0, 50, n)
    it_w = 8_000.0 + 400.0 * np.sin(hours) + rng.normal(0, 40, n)
    cool_w = 1_500.0 + rng.normal(0, 20, n)

    def register(power: np.ndarray) -> np.ndarray:
        e = np.concatenate(([0.0], np.cumsum(0.5 * (power[1:] + power[:-1]) * np.diff(t) / 1e9 / 3600.0)))
        return np.round(e, 3)

    incomer = np.mod(15_000.0 + register(fac_w), MODULUS)  # wraps
    it = 1_000.0 + register(it_w)
    reset_i = n // 2
    it[reset_i:] = it[reset_i:] - it[reset_i] + 3.0  # reset to zero (3 Wh counted since)
    jump_i = int(n * 0.8)
    it[jump_i:] += 50_000.0  # +50 kWh in 10 s: 18 MW, impossible on this meter
    it[n // 3] = math.nan  # a missed poll
    # Register readings that cannot be: past the incomer's modulus (the drop after it would read as
    # a wrap of negative energy), and a negative one on "it".
    incomer[n // 7] = MODULUS + 123.0
    it[int(n * 0.6)] = -5.0
    gap = (t > t[n // 4]) & (t < t[n // 4] + 40 * SECOND)  # no readings for 40 s
    cool = cool_w.copy()
    cool[n // 5] = -26.0  # a negative power reading
    cool[n // 6] = 4.29e9  # far above the limit
    water = 0.1 + rng.normal(0, 0.002, n)  # L/s: a flow, which integrates to litres (not / 3600 as a power)
    # A negative flow and one far above its derived limit: refused live as in a report (live once took both).
    water[n // 9] = -0.05
    water[int(n * 0.7)] = 1e4  # (after 3 hours: the live limit, derived from the hours seen so far, exists)
    # Values no meter reads, before any limit exists (core.energy's ceilings): refused live and in the report,
    # where their arithmetic overflowed (a gap without a word, or a PUE of 3e301: the foreign-CSV audit).
    water[n // 10] = 1e300
    it[int(n * 0.15)] = 1.7e308
    return {
        "incomer": (t, incomer),
        "it": (t[~gap], it[~gap]),
        "crac": (t, cool),
        "water": (t, water),
    }


def _site() -> SiteModel:
    return SiteModel("agree", {
        "incomer": Meter(role="facility_input", device="inc", max_power_w=40_000.0),
        # No limit configured: derived from its own readings (4 × the 90th percentile of hourly means).
        "it": Meter(role="it", point="pdu_output", device="pdu"),
        "crac": Meter(role="cooling", device="crac", max_power_w=5_000.0),
        "water": Meter(role="water", measurement="w", field="flow", unit="L/s"),
    })


def name_is_water(tags: dict[str, str]) -> bool:
    return tags["meter"] == "water"  # its cells hold litres (schema.VOLUME_L), not Wh


def _live(rec, disorder: bool = False) -> dict[str, dict[int, float]]:
    """The live cells of the recording, fed a step at a time; with `disorder`, each step's readings
    arrive shuffled, and each one the policy takes arrives first with a wrong value and then again
    with its own (the same time: the store keeps the last write)."""
    site = _site()
    p = Pipeline(site, windows_ns=[60 * SECOND], settle_ns=60 * SECOND)
    events = []
    for name, (t, v) in rec.items():
        events += [(int(ti), name, float(vi)) for ti, vi in zip(t, v)]
    events.sort()
    cells: dict[str, dict[int, float]] = {m: {} for m in site.meters}
    how = {"incomer": {"register": True, "modulus": MODULUS}, "it": {"register": True}, "crac": {}, "water": {}}
    # Readings the policy takes lie in [0, top).
    top = {"incomer": MODULUS, "it": policy.REGISTER_CEILING, "crac": 5_000.0, "water": 1.0}
    rng = np.random.default_rng(3)
    i = 0
    step_at = T0 + POLL
    while i < len(events):
        batch = []
        while i < len(events) and events[i][0] <= step_at:
            batch.append(events[i])
            i += 1
        if disorder:
            batch = [e for j in rng.permutation(len(batch)) for e in (
                [(batch[j][0], batch[j][1], batch[j][2] * 0.999), batch[j]] if 0 <= batch[j][2] < top[batch[j][1]]
                else [batch[j]])]
        for t, name, v in batch:
            p.add_meter(name, t, v, t, **how[name])
        for measurement, tags, fields, ts in p.step(step_at + SECOND).rows():
            if measurement == schema.METER_ENERGY:
                cells[tags["meter"]][ts] = fields[schema.VOLUME_L if name_is_water(tags) else schema.ENERGY_WH]
        step_at += POLL
    p.step(step_at + 10 * 60 * SECOND)
    return cells, p


@pytest.mark.parametrize("disorder", [False, True])
def test_live_cells_and_report_energies_agree_to_1e9(disorder) -> None:
    # `disorder`: readings out of order within what the live cells have not yet taken, and rewritten
    # at their own time, are taken in time order and by their last write, as the store keeps them.
    rec = _recording()
    cells, p = _live(rec, disorder)
    # The policy decided every outcome the stream holds, live.
    assert p.streams["incomer"].outcomes["wrap"] >= 2
    assert p.streams["it"].outcomes["reset"] == 1 and p.streams["it"].outcomes["jump"] == 1
    assert p.streams["crac"].power_refused == 2
    assert p.streams["water"].power_refused == 3
    assert p.streams["incomer"].register_refused == 1 and p.streams["it"].register_refused == 2

    site = _site()
    readings = {
        "incomer": MeterReadings(rec["incomer"][0], None, rec["incomer"][1], modulus_wh=MODULUS),
        "it": MeterReadings(rec["it"][0], None, rec["it"][1]),
        "crac": MeterReadings(rec["crac"][0], rec["crac"][1], None),
        "water": MeterReadings(rec["water"][0], rec["water"][1], None),
    }
    compared = 0
    for h in range(1, HOURS):  # (hour 0: the live pipeline starts at its first step, a few seconds in)
        lo, hi = T0 + h * HOUR, T0 + (h + 1) * HOUR
        r = compute_report(site, readings, lo, hi, ReportOptions(max_gap_ns=60 * SECOND))
        by = {m["meter"]: m for m in r["meters"]}
        for name in site.meters:
            live = {t: e for t, e in cells[name].items() if lo < t <= hi}
            total = sum(live.values())
            assert by[name]["energy_wh"] == pytest.approx(total, rel=1e-9, abs=1e-9), (name, h)
            compared += 1
        # A flow of 0.1 L/s is 360 L an hour (the report once divided it by 3600, as a power's W·s: found by the
        # independent report audit; the live pipeline did not).
        assert by["water"]["energy_wh"] == pytest.approx(360.0, rel=0.01)
    assert compared >= 4 * (HOURS - 1)
    # The derived limit the report used for "it", and the live one by then, both refuse the jump.
    year = compute_report(site, readings, T0, T0 + HOURS * HOUR, ReportOptions(max_gap_ns=60 * SECOND))
    it = next(m for m in year["meters"] if m["meter"] == "it")
    assert it["power_limit_source"] == "derived" and it["register_intervals"]["jump"] == 1
    assert it["register_intervals"]["reset"] == 1
    inc = next(m for m in year["meters"] if m["meter"] == "incomer")
    assert inc["register_readings_refused"] == 1 and it["register_readings_refused"] == 2
    water = next(m for m in year["meters"] if m["meter"] == "water")
    assert water["power_readings_refused"] == 3
    assert min(m["energy_wh"] for m in year["meters"]) > 0
    assert year["wue"] == pytest.approx(360.0 * HOURS / (it["energy_wh"] / 1000.0), rel=0.02)
    assert any("'incomer': 1 register reading(s) negative, or at or above its modulus 20000.0 (the first 20123.0 at "
               in w for w in year["warnings"]), year["warnings"]
    assert any("implies a mean power of 1.8" in w and "'it'" in w for w in year["warnings"])
    assert p.streams["it"].limit().source == "derived"
    assert policy.DERIVED_LIMIT_FACTOR * 7_000 < it["power_limit_w"] < policy.DERIVED_LIMIT_FACTOR * 9_000


SNMP_SITE = """
[collector]
site = "wraps"
state_dir = "{tmp}/state"

[[snmp.devices]]
name = "row"
host = "127.0.0.1"
profile = "eaton-epdu"

[[snmp.devices]]
name = "sum"
host = "127.0.0.1"
profile = "eaton-epdu"

[[snmp.devices]]
name = "digits"
host = "127.0.0.1"
profile = "raritan-pdu2"

[[snmp.devices]]
name = "auto"
host = "127.0.0.1"

[meters.row]
role = "facility_input"
device = "row"
reading = "unit0_input1_active_energy"

[meters.sum]
role = "cooling"
device = "sum"

[meters.digits]
role = "losses"
device = "digits"
reading = "pdu1_inlet1_active_energy"

[meters.auto]
role = "it"
point = "ups_output"
device = "auto"
"""


def test_live_and_report_take_one_wrap_value_and_step_for_an_snmp_register(tmp_path):
    """Where an SNMP meter's register wraps and how far one step goes, live and in reports, from the one
    site file: a table's row whose column the profile scales (its column's modulus and scale), a sum of
    rows (no wrap), a row the device scales (none, step 0), a device whose profile is chosen at run time
    (none, step 0). The live collector took the wrap off each poll's answer (a device's own row scale, a
    sum of one row, the sysObjectID's profile), which the report cannot know: a drop was a wrap live and
    a reset in the report."""
    from puewatch.collector import config as ccfg
    from puewatch.collector.main import Collector
    from puewatch.collector.snmp.poller import Poller
    from puewatch.report.sources import load_site

    path = tmp_path / "collector.toml"
    path.write_text(SNMP_SITE.format(tmp=tmp_path))
    conf = ccfg.load(path)
    col = Collector(conf)
    col.poller = Poller(conf.snmp.devices, col.on_poll, profiles=conf.resolve_locations()[0])
    site = load_site(path)
    energy = schema.SNMP_ENERGY_READING
    live = {m: col._register_rule(m, conf.meters[m].reading or energy) for m in ("row", "sum", "digits", "auto")}
    assert live == {"row": (1.0, 2.0**32), "sum": (1.0, None), "digits": (0.0, None), "auto": (0.0, None)}
    for meter, (step, modulus) in live.items():
        assert site.snmp_step_wh.get(meter, 0.0) == step
        assert site.snmp_modulus_wh.get(meter) == modulus
        assert (meter in site.snmp_modulus_unknown) == (meter != "row"), site.snmp_modulus_unknown
