"""Values that must never become readings: agents (snmpsim recordings written here, and a real snmpd)
answer negative watts, out-of-range numbers, 'not available' fillers and text that is not a finite
number; `puewatch snmp probe` and the poller record them as missing and say why."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snmp_support import PRIVATE_BASE
from puewatch import config as cfg
from puewatch.benchmarks.snmp import Snmpsim
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.poller import Meter
from puewatch.collector.snmp.profiles import load_profiles

PUEWATCH = str(Path(sys.executable).parent / "puewatch")
UPS = "1.3.6.1.2.1.33.1"
S3 = "1.3.6.1.4.1.1718.3"
E = "1.3.6.1.4.1.534.6.6.7"
INT, STR, GAUGE = 2, 4, 66


def recording(sys_object_id: str, rows: dict[str, tuple[int, object]]) -> str:
    lines = {"1.3.6.1.2.1.1.1.0": (STR, "misbehaving test agent"), "1.3.6.1.2.1.1.2.0": (6, sys_object_id), **rows}
    key = lambda oid: tuple(int(x) for x in oid.split("."))  # noqa: E731
    return "".join(f"{oid}|{t}|{v}\n" for oid, (t, v) in sorted(lines.items(), key=lambda kv: key(kv[0])))


def ups_negative_lines() -> str:
    # UPS-MIB (Riello's sysObjectID: profile ups-mib). upsOutputPower lines 2 and 3 answer -4 W and
    # -26 W; upsInputTruePower line 1 answers 4294967295 (typed Gauge32, for an INTEGER (0..2^31-1)
    # object); line 2 answers the text "nan".
    return recording("1.3.6.1.4.1.5491.308", {
        f"{UPS}.4.4.1.4.1": (INT, 1500),
        f"{UPS}.4.4.1.4.2": (INT, -4),
        f"{UPS}.4.4.1.4.3": (INT, -26),
        f"{UPS}.3.3.1.5.1": (GAUGE, 4294967295),
        f"{UPS}.3.3.1.5.2": (STR, "nan"),
        f"{UPS}.3.3.1.5.3": (INT, 900),
        f"{UPS}.4.4.1.5.1": (INT, 250),  # upsOutputPercentLoad is INTEGER (0..200)
        f"{UPS}.4.4.1.5.2": (INT, 40),
    })


def ups_zero_under_load() -> str:
    # UPS-MIB: agents that do not measure upsOutputPower answer 0 W on a loaded line (captures: 0 W at 50 %
    # load and 14.5 A). Line 1 is idle (0 W at 0 %: a reading), line 2 loaded (0 W at 21 %: not measured),
    # line 3 measured (700 W at 24 %).
    return recording("1.3.6.1.4.1.5491.308", {
        f"{UPS}.4.4.1.4.1": (INT, 0),
        f"{UPS}.4.4.1.4.2": (INT, 0),
        f"{UPS}.4.4.1.4.3": (INT, 700),
        f"{UPS}.4.4.1.5.1": (INT, 0),
        f"{UPS}.4.4.1.5.2": (INT, 21),
        f"{UPS}.4.4.1.5.3": (INT, 24),
    })


def sentry3_filler() -> str:
    # Sentry3-MIB: systemTotalPower INTEGER(-1..150000) answers 2^31-1; infeedPower INTEGER(-1..25000)
    # answers 0xFFFF on feed 2 (65,535 W of input power that no 25 kW infeed can draw).
    return recording(S3, {
        f"{S3}.1.6.0": (INT, 2147483647),
        f"{S3}.2.2.1.12.1.1": (INT, 400),
        f"{S3}.2.2.1.12.1.2": (INT, 65535),
        f"{S3}.2.2.1.16.1.1": (INT, 1234),
    })


def sentry3_without_system_power() -> str:
    # Sentry3-MIB without systemTotalPower (older firmware): the scalar answers noSuchInstance; the infeeds answer.
    return recording(S3, {
        f"{S3}.2.2.1.12.1.1": (INT, 400),
        f"{S3}.2.2.1.12.1.2": (INT, 500),
        f"{S3}.2.2.1.16.1.1": (INT, 1234),
    })


def eaton_unavailable() -> str:
    # EATON-EPDU-MIB: inputTotalWatts "negative = not available": -5000 is the vendor's filler.
    return recording(E, {
        f"{E}.3.5.1.4.0.1": (INT, -5000),
        f"{E}.3.5.1.5.0.1": (GAUGE, 5000),
        f"{E}.3.5.1.4.1.1": (INT, 700),
        f"{E}.3.5.1.5.1.1": (GAUGE, 7000),
    })


def ups_text_rows() -> str:
    # UPS-MIB upsOutputPower answered as text on four of six lines (string-typed, or an IpAddress): what
    # is not a decimal number is an impossible value, not an absent row. Text that is a number counts.
    return recording("1.3.6.1.4.1.5491.308", {
        f"{UPS}.4.4.1.4.1": (INT, 1000),
        f"{UPS}.4.4.1.4.2": (STR, "abc"),
        f"{UPS}.4.4.1.4.3": (STR, ""),
        f"{UPS}.4.4.1.4.4": (64, "1.2.3.4"),
        f"{UPS}.4.4.1.4.5": (STR, "2,000"),
        f"{UPS}.4.4.1.4.6": (STR, " 42 "),
        f"{UPS}.3.3.1.5.1": (STR, "1_000"),
        f"{UPS}.3.3.1.5.2": (STR, "1.5e3"),
    })


def ups_wrong_types_and_unmeasured_inputs() -> str:
    # UPS-MIB upsOutputPower (INTEGER) answered as an IpAddress whose octets are the ASCII "1200", as
    # TimeTicks and as an OBJECT IDENTIFIER (each read as a number before: 1,200 W, 114 W, 1.3 W); line 4
    # is a number. upsInputTruePower answers 0 W on line 1 at 6.5 A (not measured: the Riello capture's
    # three lines) and on line 2 at 0 A (a reading); upsBypassPower 0 W at 1.2 A (not measured).
    return recording("1.3.6.1.4.1.5491.308", {
        f"{UPS}.4.4.1.4.1": (64, "49.50.48.48"),
        f"{UPS}.4.4.1.4.2": (67, 114),
        f"{UPS}.4.4.1.4.3": (6, "1.3"),
        f"{UPS}.4.4.1.4.4": (INT, 700),
        f"{UPS}.3.3.1.4.1": (INT, 65),
        f"{UPS}.3.3.1.4.2": (INT, 0),
        f"{UPS}.3.3.1.5.1": (INT, 0),
        f"{UPS}.3.3.1.5.2": (INT, 0),
        f"{UPS}.5.3.1.3.1": (INT, 12),
        f"{UPS}.5.3.1.4.1": (INT, 0),
    })


def raritan_out_of_range() -> str:
    # PDU-MIB (Raritan PX1): inletActivePower is a Watts (Unsigned32): a Counter64 9999999999 is past it;
    # inletActiveEnergy (WattHours, Unsigned32) as the text "4294967295.5", just past its top.
    R = "1.3.6.1.4.1.13742.4.1"
    return recording("1.3.6.1.4.1.13742.4.1", {
        f"{R}.20.2.1.9.1": (GAUGE, 4294967295),
        f"{R}.20.2.1.9.2": (70, 9999999999),
        f"{R}.20.2.1.12.1": (GAUGE, 4294967295),
        f"{R}.20.2.1.12.2": (STR, "4294967295.5"),
        f"{R}.20.2.1.9.3": (GAUGE, 2500),
    })


def apc_ups_unsigned_fillers() -> str:
    # PowerNet-MIB (APC Smart-UPS): upsAdvOutputActivePower and the energy registers are Unsigned32 whose "not
    # available" is -1; this agent sends it through the Gauge32 it types them as, i.e. 4294967295 (its kWh
    # register reads 12345).
    A = "1.3.6.1.4.1.318.1.1.1.4"
    return recording("1.3.6.1.4.1.318.1.3.2.12", {
        f"{A}.2.8.0": (GAUGE, 4294967295),
        f"{A}.3.6.0": (GAUGE, 4294967295),
        f"{A}.2.12.0": (GAUGE, 12345),
    })


def entity_sensor_unavailable() -> str:
    # ENTITY-SENSOR-MIB: two watts(6) sensors (101, 102) inside power supplies (1, 2); sensor 102's
    # entPhySensorOperStatus is unavailable(2) though it answers 300 W.
    ent, sen = "1.3.6.1.2.1.47.1.1.1.1", "1.3.6.1.2.1.99.1.1.1"
    rows: dict[str, tuple[int, object]] = {}
    for psu, sensor, status in ((1, 101, 1), (2, 102, 2)):
        rows |= {f"{ent}.4.{psu}": (INT, 0), f"{ent}.5.{psu}": (INT, 6), f"{ent}.4.{sensor}": (INT, psu),
                 f"{ent}.5.{sensor}": (INT, 8), f"{sen}.1.{sensor}": (INT, 6), f"{sen}.2.{sensor}": (INT, 9),
                 f"{sen}.3.{sensor}": (INT, 0), f"{sen}.4.{sensor}": (INT, 300), f"{sen}.5.{sensor}": (INT, status)}
    return recording("1.3.6.1.4.1.8072.3.2.10", rows)


def ups_undeclared_fillers() -> str:
    # UPS-MIB upsOutputPower declares no filler: line 1 answers 65535 (all ones in 16 bits, as the audit's
    # captures did), line 2 a measured 1500 W, line 3 NULL (no value of any type), line 4 0 W beside a NULL
    # load; upsInputTruePower line 1
    # answers 2^31 - 1 (the object's own range top, all ones in 31 bits).
    return recording("1.3.6.1.4.1.5491.308", {
        f"{UPS}.4.4.1.4.1": (INT, 65535),
        f"{UPS}.4.4.1.4.2": (INT, 1500),
        f"{UPS}.4.4.1.4.3": (5, ""),
        f"{UPS}.4.4.1.4.4": (INT, 0),
        f"{UPS}.4.4.1.5.4": (5, ""),  # its load NULL: says nothing, so the 0 W stands (the cxc capture)
        f"{UPS}.3.3.1.5.1": (INT, 2147483647),
        f"{UPS}.3.3.1.5.2": (INT, 800),
    })


def ups_volts_amps() -> str:
    # UPS-MIB output lines with their upsOutputVoltage (V) and upsOutputCurrent (0.1 A), no load column:
    # 1 W at 230 V x 7.2 A (a Huawei UPS2000 capture's), 1500 W at 230 V x 7.2 A (power factor 0.91), 5000 W at
    # 230 V x 1 A, 0 W at 230 V x 162.9 A (a card without upsOutputPercentLoad), 5 W at 230 V x 0.3 A (an idle
    # line's low power factor).
    rows: dict[str, tuple[int, object]] = {}
    # Lines 6-8 (the review): 90 W at 0.0 A and 400 W at 1.0 A (agents that answer whole amps), 5000 W beside a
    # current filler 65535: readings.
    for line, (w, amps_tenths) in enumerate(((1, 72), (1500, 72), (5000, 10), (0, 1629), (5, 3), (90, 0), (400, 10),
                                             (5000, 65535)), start=1):
        rows |= {f"{UPS}.4.4.1.2.{line}": (INT, 230), f"{UPS}.4.4.1.3.{line}": (INT, amps_tenths),
                 f"{UPS}.4.4.1.4.{line}": (INT, w)}
    return recording("1.3.6.1.4.1.5491.308", rows)


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    work = tmp_path_factory.mktemp("refused")
    data = work / "data"
    data.mkdir()
    (data / "ups.snmprec").write_text(ups_negative_lines())
    (data / "upszero.snmprec").write_text(ups_zero_under_load())
    (data / "sentry3.snmprec").write_text(sentry3_filler())
    (data / "sentry3old.snmprec").write_text(sentry3_without_system_power())
    (data / "eaton.snmprec").write_text(eaton_unavailable())
    (data / "text.snmprec").write_text(ups_text_rows())
    (data / "raritan.snmprec").write_text(raritan_out_of_range())
    (data / "types.snmprec").write_text(ups_wrong_types_and_unmeasured_inputs())
    (data / "apcups.snmprec").write_text(apc_ups_unsigned_fillers())
    (data / "entity.snmprec").write_text(entity_sensor_unavailable())
    (data / "upsfill.snmprec").write_text(ups_undeclared_fillers())
    (data / "upsva.snmprec").write_text(ups_volts_amps())
    sim = Snmpsim(data, work)
    try:
        sim.wait_ready("ups")
        yield sim
    finally:
        sim.stop()


def probe_json(sim, community: str) -> dict:
    r = subprocess.run([PUEWATCH, "snmp", "probe", f"127.0.0.1:{sim.port}", "-c", community, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_probe_json_refuses_negative_watts_and_out_of_range(agents):
    out = probe_json(agents, "ups")
    assert out["profile"] == "ups-mib"
    by_name = {x["name"]: x for x in out["readings"]}
    assert by_name["output_line1_active_power"] == {
        "name": "output_line1_active_power", "oid": f"{UPS}.4.4.1.4.1", "raw": 1500, "value": 1500.0, "unit": "W",
        "location": "ups_output", "kind": "gauge", "status": "measured"}
    line3 = by_name["output_line3_active_power"]
    assert line3["raw"] == -26 and line3["value"] is None
    assert line3["refused"] == "negative power -26 W (raw -26)"
    assert by_name["output_line2_active_power"]["refused"] == "negative power -4 W (raw -4)"
    # The total is missing, not 1500 - 4 - 26 and not 1500 (the other lines would be left out).
    assert by_name["total_active_power"]["value"] is None and "refused" not in by_name["total_active_power"]
    gauge = by_name["input_line1_active_power"]
    assert gauge["raw"] == 4294967295 and gauge["value"] is None
    assert gauge["refused"] == "raw 4294967295 is outside the object's range 0..2147483647"
    text = by_name["input_line2_active_power"]
    assert text["raw"] is None and text["value"] is None and text["refused"] == "not a finite number: nan"
    assert by_name["input_line3_active_power"]["value"] == 900.0 and "refused" not in by_name["input_line3_active_power"]
    # Readings of other units (here %) are listed apart, in the same form, refusals included.
    assert set(by_name).isdisjoint(x["name"] for x in out["other_readings"])
    other = {x["name"]: x for x in out["other_readings"]}
    assert other["output_line1_load"] == {
        "name": "output_line1_load", "oid": f"{UPS}.4.4.1.5.1", "raw": 250, "value": None, "unit": "%",
        "location": "ups_output", "kind": "gauge", "status": "measured",
        "refused": "raw 250 is outside the object's range 0..200"}
    assert other["output_line2_load"]["value"] == 40.0 and "refused" not in other["output_line2_load"]


def test_probe_vendor_fillers_and_narrow_mib_ranges(agents):
    s3 = {x["name"]: x for x in probe_json(agents, "sentry3")["readings"]}
    assert s3["system_active_power"]["value"] is None
    assert s3["system_active_power"]["refused"] == "raw 2147483647 is outside the object's range -1..150000"
    assert s3["tower1_infeed2_active_power"]["refused"] == "raw 65535 is outside the object's range -1..25000"
    assert s3["tower1_infeed1_active_power"]["value"] == 400.0
    assert s3["total_active_power"]["value"] is None  # systemTotalPower answered, but impossibly
    assert s3["total_active_energy"]["value"] == 123400.0
    eaton = {x["name"]: x for x in probe_json(agents, "eaton")["readings"]}
    assert eaton["unit0_input1_active_power"]["value"] is None
    assert eaton["unit0_input1_active_power"]["refused"] == "raw -5000 means 'not available' (profile: missing_below = 0)"
    # A declared filler is 'no value' (as an absent row): the total is the rows that have one.
    assert eaton["total_active_power"]["value"] == 700.0


def test_text_that_is_not_a_number_is_refused_and_the_total_is_missing(agents):
    # Once left out of the total like an absent row: five lines of load read as the one that answered
    # a number (1000 W), with nothing said.
    out = {x["name"]: x for x in probe_json(agents, "text")["readings"]}
    assert out["output_line1_active_power"]["value"] == 1000.0
    for line, raw in [(2, "abc"), (3, ""), (5, "2,000")]:
        r = out[f"output_line{line}_active_power"]
        assert r["value"] is None and r["refused"] == f"not a number: {raw!r}", r
    assert out["output_line4_active_power"]["refused"] == "an SNMP IpAddress (1.2.3.4), not a number"
    assert out["output_line6_active_power"]["value"] == 42.0 and "refused" not in out["output_line6_active_power"]
    assert out["total_active_power"]["value"] is None
    assert out["input_line1_active_power"]["refused"] == "not a number: '1_000'"  # Python's float() took it
    assert out["input_line2_active_power"]["value"] == 1500.0


def test_values_of_types_no_meter_answers_are_refused_and_a_loaded_ups_input_at_0_w_is_not_measured(agents):
    """Found by the probe audit: an IpAddress, TimeTicks or OBJECT IDENTIFIER where the MIB has an INTEGER
    became a power (an IpAddress's octets "1200" read as 12,000 W), and a UPS input line answering 0 W with
    6.5 A flowing (the Riello capture: input power not measured) was a reading of 0 W."""
    out = {x["name"]: x for x in probe_json(agents, "types")["readings"]}
    assert out["output_line1_active_power"]["refused"] == "an SNMP IpAddress (49.50.48.48), not a number"
    assert out["output_line2_active_power"]["refused"] == "an SNMP TimeTicks (114), not a number"
    assert out["output_line3_active_power"]["refused"] == "an SNMP OBJECT IDENTIFIER (1.3), not a number"
    for line in (1, 2, 3):
        assert out[f"output_line{line}_active_power"]["value"] is None
    assert out["output_line4_active_power"]["value"] == 700.0
    assert out["total_active_power"]["value"] is None  # three lines' load unknown: not 700 W
    assert out["input_line1_active_power"]["value"] is None
    assert out["input_line1_active_power"]["refused"] == (f"raw 0 where {UPS}.3.3.1.4.1 is 65: not measured "
                                                          "(profile: zero_valid_if)")
    assert out["input_line2_active_power"]["value"] == 0.0 and "refused" not in out["input_line2_active_power"]
    assert out["bypass_line1_active_power"]["value"] is None and "not measured" in out["bypass_line1_active_power"]["refused"]


def test_raritan_power_has_its_mibs_range_and_a_refusal_shows_the_raw_value_in_full(agents):
    out = {x["name"]: x for x in probe_json(agents, "raritan")["readings"]}
    # The top of Unsigned32 is all ones: no measurement (4.29 GW was a reading, found by the SNMP audit).
    for name in ("inlet1_active_power", "inlet1_active_energy"):
        assert out[name]["value"] is None
        assert out[name]["refused"] == ("raw 4294967295 is all ones in 32 bits, what agents answer for 'not "
                                        "available', not a measurement")
    assert out["inlet2_active_power"]["refused"] == "raw 9999999999 is outside the object's range 0..4294967295"
    assert out["inlet3_active_power"]["value"] == 2500.0
    # Not "raw 4.29497e+09 is outside ... 0..4294967295", which reads as inside it.
    assert out["inlet2_active_energy"]["refused"] == "raw 4294967295.5 is outside the object's range 0..4294967295"


def test_every_power_and_energy_reading_declares_its_range():
    # A reading of power or energy from an integer object says its SYNTAX range, so that a value past it
    # is refused; only a DisplayString data point (its doc says "text") has none to declare.
    missing = [(p.name, r.key) for p in load_profiles().values() for r in p.readings
               if r.unit in ("W", "VA", "Wh", "VAh") and not r.raw_range and "(text" not in r.doc]
    assert missing == []


def test_probe_table_says_why(agents):
    r = subprocess.run([PUEWATCH, "snmp", "probe", f"127.0.0.1:{agents.port}", "-c", "ups"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, COLUMNS="250"))
    assert r.returncode == 0, r.stderr
    assert "refused: negative power -26 W (raw -26)" in r.stdout
    # 5 answered values, and the two rating scalars this UPS has not got (noSuchInstance)
    assert "refused      7 value(s), recorded as missing by the collector:" in r.stdout
    assert f"rated_power: absent: the device answered noSuchInstance for {UPS}.9.6.0" in r.stdout
    assert "output_line1_load: out_of_range: raw 250 is outside the object's range 0..200" in r.stdout
    assert "input_line1_active_power: out_of_range: raw 4294967295 is outside" in r.stdout


def test_probe_says_which_scalar_answered_no_value_and_counts_it(agents):
    """Found by an outside audit: a scalar that answered noSuchInstance showed as "unavailable", with no reason
    and not counted with the refused values. It says which reading, which OID and what the device answered,
    where and as the other refusals do; like a filler it is left out of the totals (the fallback is read)."""
    r = subprocess.run([PUEWATCH, "snmp", "probe", f"127.0.0.1:{agents.port}", "-c", "sentry3old"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, COLUMNS="250"))
    assert r.returncode == 0, r.stderr
    why = f"the device answered noSuchInstance for {S3}.1.6.0"
    assert f"refused: {why}" in r.stdout
    assert "refused      1 value(s), recorded as missing by the collector:" in r.stdout
    assert f"  system_active_power: absent: {why}" in r.stdout
    out = {x["name"]: x for x in probe_json(agents, "sentry3old")["readings"]}
    assert out["system_active_power"] == {"name": "system_active_power", "oid": f"{S3}.1.6.0", "raw": None,
                                          "value": None, "unit": "W", "location": "total", "kind": "gauge",
                                          "status": "measured", "refused": why}
    assert out["total_active_power"]["value"] == 900.0 and "refused" not in out["total_active_power"]


# --- the poller against a real snmpd -------------------------------------------------------------

NEG, FILLER, EATON_W, BIG, GOOD = (f"{PRIVATE_BASE}.{i}.0" for i in (11, 12, 13, 14, 15))
OIDS = [
    {"name": "line_a_power", "oid": GOOD, "quantity": "active_power", "total": True},
    {"name": "line_b_power", "oid": NEG, "quantity": "active_power", "total": True},
    {"name": "infeed_power", "oid": FILLER, "quantity": "active_power", "raw_range": [-1, 25000]},
    {"name": "eaton_power", "oid": EATON_W, "quantity": "active_power", "missing_below": 0},
    {"name": "ups_power", "oid": BIG, "quantity": "active_power", "raw_range": [0, 2147483647]},
]


def test_poller_refuses_and_logs_once_per_reading_and_reason(snmpd, caplog):
    snmpd.set_objects({GOOD: ("integer", 1200), NEG: ("integer", -26), FILLER: ("integer", 65535),
                       EATON_W: ("integer", -5000), BIG: ("gauge", 4294967295)})
    dev = cfg.build(SnmpDevice, {"name": "ups", "host": "127.0.0.1", "port": snmpd.port, "timeout_s": 1.0, "retries": 0,
                                 "interval_s": 2.0, "profile": "generic", "oids": OIDS}, "test")
    meter = Meter(dev, load_profiles())

    async def three_polls():
        try:
            return [await meter.poll() for _ in range(3)]
        finally:
            meter.close()

    with caplog.at_level(logging.INFO, logger="puewatch.collector.snmp"):
        polls = asyncio.run(three_polls())
    for readings in polls:
        r = {x.name: x for x in readings}
        assert r["line_a_power"].value == 1200.0 and r["line_a_power"].refused is None
        assert {k: (r[k].raw, r[k].refused.reason) for k in ("line_b_power", "infeed_power", "eaton_power", "ups_power")} == {
            "line_b_power": (-26, "negative"), "infeed_power": (65535, "out_of_range"),
            "eaton_power": (-5000, "unavailable"), "ups_power": (4294967295, "out_of_range")}
        assert all(math.isnan(r[k].value) for k in ("line_b_power", "infeed_power", "eaton_power", "ups_power"))
        assert math.isnan(r["total_active_power"].value)  # 1200 W plus a broken line is not 1174 W, nor 1200 W
    logged = [rec for rec in caplog.records if "refused" in rec.getMessage()]
    assert len(logged) == 4  # three polls, each refusal logged once
    assert {rec.levelno for rec in logged if "eaton_power" in rec.getMessage()} == {logging.INFO}
    assert {rec.levelno for rec in logged if "eaton_power" not in rec.getMessage()} == {logging.WARNING}


def test_a_zero_watt_ups_line_under_load_is_not_measured(agents):
    """ups-mib's zero_valid_if: 0 W counts where the line's percent load is 0, not where it is above (the UPS's
    output, E_IT at category 1, was 0 W; MIB review); the total is then missing, never 700 W."""
    by_name = {x["name"]: x for x in probe_json(agents, "upszero")["readings"]}
    assert by_name["output_line1_active_power"]["value"] == 0.0
    line2 = by_name["output_line2_active_power"]
    assert line2["value"] is None and line2["refused"] == f"raw 0 where {UPS}.4.4.1.5.2 is 21: not measured (profile: " \
                                                          "zero_valid_if)"
    assert by_name["output_line3_active_power"]["value"] == 700.0
    assert by_name["total_active_power"]["value"] is None


def test_the_poller_says_what_an_object_without_a_value_answered(snmpd, caplog):
    """snmpd answers noSuchObject outside every subtree it serves and noSuchInstance inside one: each reading
    is refused as absent naming the answer, logged once (INFO: the device has no value, as for a filler),
    counted on /metrics with the other refusals, and left out of the total as a filler is."""
    from prometheus_client import generate_latest

    from puewatch.collector.metrics import CollectorMetrics

    no_instance, no_object = f"{PRIVATE_BASE}.19.0", "1.3.6.1.4.1.99998.1.0"
    snmpd.set_objects({GOOD: ("integer", 1200)})
    oids = [OIDS[0], {"name": "spare_power", "oid": no_instance, "quantity": "active_power", "total": True},
            {"name": "other_power", "oid": no_object, "quantity": "active_power"}]
    dev = cfg.build(SnmpDevice, {"name": "ups", "host": "127.0.0.1", "port": snmpd.port, "timeout_s": 1.0, "retries": 0,
                                 "interval_s": 2.0, "profile": "generic", "oids": oids}, "test")
    meter = Meter(dev, load_profiles())
    metrics = CollectorMetrics()

    async def two_polls():
        try:
            return [await meter.poll() for _ in range(2)]
        finally:
            meter.close()

    with caplog.at_level(logging.INFO, logger="puewatch.collector.snmp"):
        polls = asyncio.run(two_polls())
    for readings in polls:
        metrics.refused("ups", readings)
        r = {x.name: x for x in readings}
        assert {k: (r[k].refused.reason, r[k].refused.text) for k in ("spare_power", "other_power")} == {
            "spare_power": ("absent", f"the device answered noSuchInstance for {no_instance}"),
            "other_power": ("absent", f"the device answered noSuchObject for {no_object}")}
        assert math.isnan(r["spare_power"].value) and r["spare_power"].raw is None
        assert r["total_active_power"].value == 1200.0
    logged = [rec for rec in caplog.records if "refused" in rec.getMessage()]
    assert len(logged) == 2 and {rec.levelno for rec in logged} == {logging.INFO}
    assert any("spare_power" in rec.getMessage() and no_instance in rec.getMessage() for rec in logged)
    text = generate_latest(metrics.registry).decode()
    assert 'puewatch_snmp_values_refused_total{device="ups",reason="absent"} 4.0' in text


def test_a_negative_filler_sent_unsigned_is_not_available_and_a_negative_zero_is_zero(agents):
    """Found by the SNMP audit: APC's -1 "not available", sent as Gauge32 4294967295, was stored as 4.29 GW and
    42.9 GWh of readings; "-0" was shown and stored as -0 W."""
    apc = {x["name"]: x for x in probe_json(agents, "apcups")["readings"]}
    assert apc["output_active_energy_kwh_resolution"]["value"] == 12345000.0
    for name in ("output_active_power", "output_active_energy"):
        assert apc[name]["value"] is None, apc[name]
        assert apc[name]["refused"] == "raw 4294967295 means 'not available' (profile: missing_values = [-1])", apc[name]
    from puewatch.collector.snmp.validate import check_value, number_of

    spec = load_profiles()["apc-ups"].reading("output_apparent_power")
    for text in ("-0", "-1e-400", " -0.0 "):
        value, refused = check_value(spec, number_of(text)[0], 1.0)
        assert value == 0.0 and math.copysign(1.0, value) == 1.0 and refused is None, (text, value, refused)


def test_a_sensor_the_device_says_is_unavailable_is_refused_as_such_and_left_out_of_the_total(agents):
    """`valid_if` (ENTITY-SENSOR-MIB entPhySensorOperStatus unavailable(2)): not a reading, said and counted as
    'unavailable' like a filler, and left out of the total (found by the SNMP audit: it was counted nowhere)."""
    doc = probe_json(agents, "entity")
    ent = {x["name"]: x for x in doc["readings"]}
    assert ent["psu_sensor101_active_power"]["value"] == 300.0
    assert ent["psu_sensor102_active_power"]["value"] is None
    assert ent["psu_sensor102_active_power"]["refused"] == (
        "1.3.6.1.2.1.99.1.1.1.5.102 is 2: the device says the value is not available (profile: valid_if)")
    assert ent["total_active_power"]["value"] == 300.0


def test_all_ones_a_null_and_a_power_no_such_device_carries_are_no_readings(agents):
    """Found by the SNMP audit on captures no profile declared a filler for: 65535 W and 2.1 GW of UPS output,
    4.29 GW of PDU inlet power were readings, and device totals; a NULL answer dropped its row unsaid. Each is
    refused and counted now, and a total over a refused row is missing (its load is unknown), not the other
    rows' sum. A power above what one device of the profile's kind carries is no measurement either."""
    out = {x["name"]: x for x in probe_json(agents, "upsfill")["readings"]}
    assert out["output_line1_active_power"]["value"] is None
    assert out["output_line1_active_power"]["refused"].startswith("raw 65535 is all ones in 16 bits")
    assert out["output_line3_active_power"]["value"] is None
    assert out["output_line3_active_power"]["refused"] == "an SNMP NULL, not a number"
    assert out["output_line2_active_power"]["value"] == 1500.0
    assert out["output_line4_active_power"]["value"] == 0.0 and "refused" not in out["output_line4_active_power"]
    assert out["total_active_power"]["value"] is None
    assert out["input_line1_active_power"]["refused"].startswith("raw 2147483647 is all ones in 31 bits")
    assert out["input_line2_active_power"]["value"] == 800.0

    from puewatch.collector.snmp.validate import check_value

    profiles = load_profiles()
    spec = profiles["ups-mib"].reading("output_active_power")
    assert profiles["ups-mib"].profile.max_power_w == 5e6
    assert check_value(spec, 4_000_000.0, 1.0) == (4e6, None)
    value, refused = check_value(spec, 6_000_000.0, 1.0, profiles["ups-mib"].profile.max_power_w)
    assert math.isnan(value) and refused.reason == "out_of_range"
    assert refused.text == "power 6e+06 W (raw 6000000) is more than one such device can carry (profile: max_power_w = 5e+06)"
    # A power analyser on a feeder may read more; nothing reads 1e14 W (Liebert's text "99999999999" kW).
    janitza = profiles["janitza"]
    jspec = next(r for r in janitza.readings if r.unit == "W")
    assert check_value(jspec, 6e6, 1.0, janitza.profile.max_power_w)[1] is None
    assert check_value(jspec, 99999999999.0, 1000.0, janitza.profile.max_power_w)[1].reason == "out_of_range"


def test_a_ups_line_s_power_is_checked_against_its_volts_and_amps(agents):
    """Found by the SNMP audit: upsOutputPower 1 W beside 7.2 A at 230 V was read as 1 W of output (and the
    UPS's total); 0 W under 162.9 A as 0 W where the card has no load column. A true power is no more than its
    line's volts x amps allow, and on a loaded line no sliver of them (UPS-MIB's apparent_check)."""
    out = {x["name"]: x for x in probe_json(agents, "upsva")["readings"]}
    line1 = out["output_line1_active_power"]
    assert line1["value"] is None
    assert line1["refused"] == ("1 W on a line of 230 V x 7.2 A (1656 VA): a power factor below 0.2, not measured "
                                "(profile: apparent_check)")
    assert out["output_line2_active_power"]["value"] == 1500.0
    assert out["output_line3_active_power"]["refused"] == ("5000 W on a line of 230 V x 1 A (230 VA): more than volts "
                                                           "x amps allow, not a measurement (profile: apparent_check)")
    assert out["output_line4_active_power"]["value"] is None
    assert "a power factor below 0.2, not measured" in out["output_line4_active_power"]["refused"]
    assert out["output_line5_active_power"]["value"] == 5.0  # 69 VA: an idle line's power factor may be low
    assert [out[f"output_line{k}_active_power"]["value"] for k in (6, 7, 8)] == [90.0, 400.0, 5000.0]
    assert out["total_active_power"]["value"] is None
