"""An SNMP meter's register wraps where its device's profile says, in the store report and the CSV recompute alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from puewatch.collector import config as collector_config
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.errors import ConfigError
from puewatch.lineprotocol import encode_line, series_key
from puewatch.core.timefmt import NS, parse_time
from puewatch.report.engine import ReportOptions, compute_report
from puewatch.report.sources import load_site, read_csv, read_store, resolve_snmp_wraps, write_csv

START, END = parse_time("2025-03-01"), parse_time("2025-03-03")
STEP = 900 * NS
FACILITY_W, IT_W = 150_000.0, 100_000.0
MODULUS_RAW = 2**32  # an Unsigned32 register in mWh: wraps every 4294967.296 Wh, 28.6 h at 150 kW

PROFILE = f"""
[profile]
name = "acme-meter"
description = "a test meter: power in W, energy in mWh (Unsigned32)"

[[readings]]
key = "power"
location = "total"
quantity = "active_power"
unit = "W"
oid = "1.3.6.1.4.1.99999.2.1.0"

[[readings]]
key = "energy"
location = "total"
quantity = "active_energy"
unit = "Wh"
oid = "1.3.6.1.4.1.99999.2.2.0"
scale = 0.001
kind = "register"
modulus_raw = {MODULUS_RAW}

[[totals]]
name = "total_active_power"
quantity = "active_power"
sum = ["power"]

[[totals]]
name = "total_active_energy"
quantity = "active_energy"
sum = ["energy"]
"""

SITE = """
[collector]
site = "wrap"
state_dir = "{tmp}/state"

[snmp]
profile_dirs = ["{tmp}/profiles"]

[[snmp.devices]]
name = "meter-in"
host = "127.0.0.1"
{profile_line}

[[snmp.devices]]
name = "ups"
host = "127.0.0.1"
profile = "generic"
oids = [{{ name = "total_active_power", oid = "1.3.6.1.4.1.99999.1.1.0", quantity = "active_power", total = true }}]

[meters.incomer]
role = "facility_input"
device = "meter-in"

[meters.ups]
role = "it"
point = "ups_output"
device = "ups"

[store.embedded]
path = "{tmp}/store.sqlite"
"""


def _site(tmp: Path, profile_line: str = 'profile = "acme-meter"') -> Path:
    (tmp / "profiles").mkdir(exist_ok=True)
    (tmp / "profiles" / "acme-meter.toml").write_text(PROFILE)
    path = tmp / f"collector-{abs(hash(profile_line))}.toml"
    path.write_text(SITE.format(tmp=tmp, profile_line=profile_line))
    return path


def _store(tmp: Path) -> Path:
    """Readings every 15 min: the incomer's register (raw mWh, wrapping) and the UPS's power."""
    t = np.arange(START - STEP, END + 2 * STEP, STEP, dtype=np.int64)
    raw = np.mod(4_000_000_000 + np.round(FACILITY_W * 1000 * (t - t[0]) / (3600 * NS)), MODULUS_RAW)
    assert np.count_nonzero(np.diff(raw) < 0) == 2  # two wraps inside the period
    e_key = series_key("snmp_reading", {"site": "wrap", "device": "meter-in", "reading": "total_active_energy", "unit": "Wh"})
    p_key = series_key("snmp_reading", {"site": "wrap", "device": "ups", "reading": "total_active_power", "unit": "W"})
    lines = []
    for ti, r in zip(t.tolist(), raw.tolist()):
        lines.append(encode_line(e_key, {"value": r * 0.001, "raw": r}, ti))  # as the poller computes value
        lines.append(encode_line(p_key, {"value": IT_W, "raw": IT_W}, ti))
    store = EmbeddedStore(tmp / "store.sqlite")
    store.write(("\n".join(lines) + "\n").encode())
    store.close()
    return tmp / "store.sqlite"


def test_a_wrap_in_an_snmp_register_is_a_wrap_in_report_and_recompute(tmp_path: Path) -> None:
    conf_path = _site(tmp_path)
    store = EmbeddedStore(_store(tmp_path))
    conf = collector_config.load(conf_path)
    site = conf.site_model()
    resolve_snmp_wraps(site, conf.snmp.devices, conf.snmp.profile_dirs, str(conf_path))
    readings = read_store(store, site, START - STEP, END + STEP, progress=False)
    store.close()
    opts = ReportOptions(generated_at="2025-03-04T00:00:00Z")
    r = compute_report(site, readings, START, END, opts)
    csv_path = tmp_path / "export.csv"
    with csv_path.open("w") as f:
        write_csv(readings, f)
    auditor_site = load_site(conf_path)
    back, _ = read_csv(csv_path, auditor_site)
    r2 = compute_report(auditor_site, back, START, END, opts)
    for rep in (r, r2):
        inc = next(m for m in rep["meters"] if m["meter"] == "incomer")
        assert inc["modulus_wh"] == pytest.approx(MODULUS_RAW * 0.001, rel=1e-15)
        assert inc["resets"] == 0 and inc["method"] == "register"
        assert inc["energy_wh"] == pytest.approx(FACILITY_W * 48, rel=1e-9)
        assert rep["pue"] == pytest.approx(1.5, rel=1e-9)
        assert rep["warnings"] == []
    assert r2["pue"] == r["pue"] and r2["facility_energy_wh"] == r["facility_energy_wh"]


def test_a_profile_chosen_at_run_time_leaves_the_wrap_unknown_and_says_so(tmp_path: Path) -> None:
    _store(tmp_path)
    named = _site(tmp_path)
    store = EmbeddedStore(tmp_path / "store.sqlite")
    readings = read_store(store, load_site(named), START - STEP, END + STEP, progress=False)
    store.close()
    csv_path = tmp_path / "export.csv"
    with csv_path.open("w") as f:
        write_csv(readings, f)
    site = load_site(_site(tmp_path, profile_line=""))  # the profile is chosen from sysObjectID
    assert "names no profile" in site.snmp_modulus_unknown["incomer"]
    back, _ = read_csv(csv_path, site)
    r = compute_report(site, back, START, END)
    inc = next(m for m in r["meters"] if m["meter"] == "incomer")
    assert inc["modulus_wh"] is None and inc["resets"] == 2
    assert inc["energy_wh"] < FACILITY_W * 48  # each drop's interval counts only its lower bound
    (warning,) = [w for w in r["warnings"] if w.startswith("meter 'incomer'")]
    assert "meter 'incomer': 2 register drop(s) counted as reset(s)" in warning and "sysObjectID" in warning


def test_a_profile_that_cannot_be_found_is_a_clear_error(tmp_path: Path) -> None:
    path = _site(tmp_path, profile_line='profile = "acme-metre"')
    with pytest.raises(ConfigError, match=r"snmp.devices 'meter-in': profile 'acme-metre' is not in the built-in "
                                          r"profiles and .*/profiles: the report cannot know where its register wraps"):
        load_site(path)
    path.write_text(path.read_text().replace('[snmp]\nprofile_dirs = ["', '[snmp]\nprofile_dirs = ["/nonexistent'))
    with pytest.raises(ConfigError, match="profile 'acme-metre' is not in .*not found here"):
        load_site(path)
    stripped = tmp_path / "stripped.toml"
    stripped.write_text('[collector]\nsite = "wrap"\n[meters.incomer]\nrole = "facility_input"\ndevice = "meter-in"\n'
                        '[meters.ups]\nrole = "it"\npoint = "ups_output"\ndevice = "ups"\n')
    with pytest.raises(ConfigError, match=r"meters.incomer.device: no \[\[snmp.devices\]\] entry named 'meter-in'"):
        load_site(stripped)


def test_register_modulus_follows_the_poller_s_rule_on_the_shipped_profiles() -> None:
    from puewatch.collector.snmp.profiles import load_profiles, reading_specs, register_modulus, register_step

    p = load_profiles()
    # PowerNet-MIB: two Unsigned32 scalars (hundredths of kWh, else kWh): the wrap depends on which one answers
    modulus, why = register_modulus(p["apc-ups"], "total_active_energy")
    assert modulus is None and "depends on which of its readings the device answers" in why
    assert register_modulus(p["apc-ups"], "output_active_energy") == (2**32 * 10.0, None)
    assert register_modulus(p["apc-rpdu2"], "total_active_energy") == (None, None)  # a table that never wraps
    modulus, why = register_modulus(p["eaton-epdu"], "total_active_energy")  # Unsigned32 rows, summed
    assert modulus is None and "wraps only if the device has one row" in why
    modulus, why = register_modulus(p["raritan-pdu2"], "pdu1_inlet1_active_energy")  # a row scaled by the device
    assert modulus is None and "depends on the device" in why
    # One row of a table that wraps, named by its column's template, where the profile fixes the scale: the
    # row's wrap and step, as the poller gives the row (it was 'depends on the device', and step 0: a wrap was
    # a reset in reports while the live collector counted it; found by an independent reference).
    assert register_modulus(p["eaton-epdu"], "unit0_input1_active_energy") == (2**32 * 1.0, None)
    assert register_step(p["eaton-epdu"], "unit0_input1_active_energy") == 1.0
    assert register_modulus(p["eaton-epdu"], "unit0_input1_phase2_active_energy") == (2**32 * 1.0, None)
    assert register_modulus(p["raritan-px1"], "inlet1_active_energy") == (2**32 * 1.0, None)
    assert register_step(p["raritan-pdu2"], "pdu1_inlet1_active_energy") == 0.0  # the device says its digits
    # A row name is the template with OID arcs in its placeholders: another column's rows are not its rows.
    assert [s.template() for s in reading_specs(p["eaton-epdu"], "unit0_input1_phase2_active_energy")] == [
        "unit{i1}_input{i2}_phase{i3}_active_energy"]
    assert reading_specs(p["eaton-epdu"], "unitA_input1_active_energy") == []


ROW_SITE = """
[collector]
site = "row"
[[snmp.devices]]
name = "epdu"
host = "127.0.0.1"
profile = "eaton-epdu"
[meters.inlet]
role = "facility_input"
device = "epdu"
reading = "unit0_input1_active_energy"
max_power_w = 1000.0
[meters.it]
role = "it"
point = "ups_output"
measurement = "m"
tags = {{ meter = "it" }}
field = "v"
unit = "W"
max_power_w = 1000.0
"""


def test_one_row_of_a_wrapping_table_wraps_at_its_columns_modulus(tmp_path: Path) -> None:
    """An Eaton ePDU inlet's energy row (Unsigned32 Wh, scale 1): 4294967280 -> 4294967290 -> 4 -> 21.6 Wh a
    minute apart under a 1000 W limit. The drop is a wrap of 10 Wh and the 17.6 Wh step is counted (16.67 Wh
    of the limit plus the register's 1 Wh step), as the docs say (auditor-guide: the modulus, the resolution r).
    It was a reset, then a jump, and the meter's energy 10 Wh where 37.6 was metered."""
    site_path = tmp_path / "site.toml"
    site_path.write_text(ROW_SITE.format())
    csv_path = tmp_path / "r.csv"
    rows = ["time,meter,power_w,energy_wh"]
    rows += [f"2025-03-01T00:0{m}:00Z,inlet,,{e}" for m, e in enumerate(["4294967280", "4294967290", "4", "21.6"])]
    rows += [f"2025-03-01T00:0{m}:00Z,it,25.0," for m in range(4)]
    csv_path.write_text("\n".join(rows) + "\n")
    site = load_site(site_path)
    assert site.snmp_modulus_wh["inlet"] == 2**32 and site.snmp_step_wh["inlet"] == 1.0
    back, _ = read_csv(csv_path, site)
    r = compute_report(site, back, parse_time("2025-03-01T00:00:00Z"), parse_time("2025-03-01T00:03:00Z"))
    inlet = next(m for m in r["meters"] if m["meter"] == "inlet")
    assert inlet["modulus_wh"] == 2**32
    assert inlet["register_intervals"] == {"counted": 2, "wrap": 1, "reset": 0, "jump": 0, "missing": 0}
    assert inlet["energy_wh"] == pytest.approx(37.6, rel=1e-12) and inlet["gaps"] == []
    assert r["facility_energy_wh"] == pytest.approx(37.6, rel=1e-12)
    assert r["pue"] == pytest.approx(37.6 / (25.0 * 3 / 60), rel=1e-12)
