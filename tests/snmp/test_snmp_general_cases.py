"""Profiles beyond the recordings: synthetic agents (generated here, served by a real snmpsim) with
several PDUs, inlets and units, per-row decimal digits, sensors that must not count, sentinels in sums."""

from __future__ import annotations

import asyncio
import math

import pytest

from puewatch import config as cfg
from puewatch.benchmarks.snmp import Snmpsim
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.probe import probe

R = "1.3.6.1.4.1.13742.6"
E = "1.3.6.1.4.1.534.6.6.7"
ENT = "1.3.6.1.2.1.99.1.1.1"
PHY = "1.3.6.1.2.1.47.1.1.1.1"


def recording(sys_object_id: str, rows: dict[str, tuple[int, object]]) -> str:
    lines = {"1.3.6.1.2.1.1.1.0": (4, "synthetic test agent"), "1.3.6.1.2.1.1.2.0": (6, sys_object_id), **rows}
    key = lambda oid: tuple(int(x) for x in oid.split("."))  # noqa: E731
    return "".join(f"{oid}|{t}|{v}\n" for oid, (t, v) in sorted(lines.items(), key=lambda kv: key(kv[0])))


def raritan_two_pdus() -> str:
    rows = {}
    # pdu 1 inlets 1-2 and pdu 2 inlet 1; activePower(5), activeEnergy(8), rmsCurrent(1)
    data = {(1, 1): (12345, 1, 100, 0), (1, 2): (2000, 0, 4294967000, 0), (2, 1): (500, 0, 777, 1)}
    for (pdu, inlet), (p, p_digits, e, e_digits) in data.items():
        for stype, value, digits in ((5, p, p_digits), (8, e, e_digits), (1, 9999, 3)):
            idx = f"{pdu}.{inlet}.{stype}"
            rows[f"{R}.5.2.3.1.4.{idx}"] = (66, value)
            rows[f"{R}.5.2.3.1.2.{idx}"] = (2, 1)
            rows[f"{R}.3.3.4.1.7.{idx}"] = (66, digits)
    rows[f"{R}.5.2.3.1.2.1.2.5"] = (2, 1)
    # pdu 1 inlet 3: its power sensor is not available now (isAvailable false(2)): no value, not 0.
    rows[f"{R}.5.2.3.1.4.1.3.5"] = (66, 999)
    rows[f"{R}.5.2.3.1.2.1.3.5"] = (2, 2)
    rows[f"{R}.3.3.4.1.7.1.3.5"] = (66, 0)
    # pdu 3 inlet 1: an agent (or capture) without the isAvailable column: its value counts.
    rows[f"{R}.5.2.3.1.4.3.1.5"] = (66, 138)
    rows[f"{R}.3.3.4.1.7.3.1.5"] = (66, 0)
    return recording(R, rows)


def eaton_daisy_chain() -> str:
    rows = {}
    for strap, watts, wh in ((0, 1000, 5000), (1, 800, 7000), (2, -1, 9000)):
        rows[f"{E}.3.5.1.4.{strap}.1"] = (2, watts)
        rows[f"{E}.3.5.1.5.{strap}.1"] = (66, wh)
    return recording(E, rows)


def entity_psus() -> str:
    rows = {}
    # entity 10, 20: PSUs (class 6); 11, 21: their watts sensors; 30: transceiver watts sensor (parent class port 10)
    # 40: a PSU whose sensors 41, 42 answer RFC 3433's overflow and underflow error values
    for ent, cls, parent in ((10, 6, 1), (20, 6, 1), (29, 10, 1), (11, 8, 10), (21, 8, 20), (30, 8, 29), (12, 8, 10),
                             (40, 6, 1), (41, 8, 40), (42, 8, 40)):
        rows[f"{PHY}.4.{ent}"] = (2, parent)
        rows[f"{PHY}.5.{ent}"] = (2, cls)
    # sensor: type, scale, precision, value, oper status
    for ent, stype, scale, prec, value, oper in (
        (11, 6, 10, 2, 45, 1),  # 0.45 kW = 450 W
        (21, 6, 9, 0, 380, 2),  # unavailable(2): no value
        (12, 6, 8, 1, 1234567, 1),  # 123456.7 mW = 123.4567 W
        (30, 6, 8, 4, 12345, 1),  # optical power of a transceiver: not a power reading
        (41, 6, 9, 0, 1000000000, 1),  # +1000000000: overflow error (EntitySensorValue), not 1 GW
        (42, 6, 9, 0, -1000000000, 1),  # -1000000000: underflow error
    ):
        for col, v in ((1, stype), (2, scale), (3, prec), (4, value), (5, oper)):
            rows[f"{ENT}.{col}.{ent}"] = (2, v)
    return recording("1.3.6.1.4.1.99999.3", rows)


APC = "1.3.6.1.4.1.318.1.1.1.4"


def apc_ups(high_precision: bool) -> str:
    """PowerNet-MIB UPS output: upsAdvOutputActivePower (W), upsAdvOutputEnergyUsage (kWh) and, on
    newer firmware, upsHighPrecOutputEnergyUsage (hundredths of kWh); both energies Unsigned32."""
    rows = {f"{APC}.2.8.0": (2, 1510), f"{APC}.2.12.0": (66, 4321)}
    if high_precision:
        rows[f"{APC}.3.6.0"] = (66, 432187)
    return recording("1.3.6.1.4.1.318.1.3.27", rows)


def vertiv_phases_only() -> str:
    """VERTIV-V5-MIB on firmware that answers its phases but no PDU total (an MN03EDR1 capture): phase real
    power (W) and energy (Wh), Gauge32, three phases."""
    v = "1.3.6.1.4.1.21239.5.2.3.2.1"
    rows: dict[str, tuple[int, object]] = {}
    for phase, (w, wh) in enumerate(((1464, 5207918), (1477, 5284954), (1458, 5191126)), start=1):
        rows |= {f"{v}.12.{phase}": (66, w), f"{v}.15.{phase}": (66, wh)}
    return recording("1.3.6.1.4.1.21239.42.1.53", rows)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    work = tmp_path_factory.mktemp("synthetic")
    data = work / "data"
    data.mkdir()
    (data / "raritan.snmprec").write_text(raritan_two_pdus())
    (data / "eaton.snmprec").write_text(eaton_daisy_chain())
    (data / "entity.snmprec").write_text(entity_psus())
    (data / "apc-ups-highprec.snmprec").write_text(apc_ups(True))
    (data / "apc-ups-kwh.snmprec").write_text(apc_ups(False))
    (data / "vertiv.snmprec").write_text(vertiv_phases_only())
    sim = Snmpsim(data, work)
    try:
        sim.wait_ready("eaton")
        yield sim
    finally:
        sim.stop()


def read(sim, community: str) -> tuple[str, dict]:
    d = cfg.build(SnmpDevice, {"name": community, "host": "127.0.0.1", "port": sim.port, "community": community}, "t")
    result = asyncio.run(probe(d))
    return result.profile, {r.name: r for r in result.readings}


def test_raritan_pdus_inlets_and_digits(synthetic):
    profile, r = read(synthetic, "raritan")
    assert profile == "raritan-pdu2"
    assert r["pdu1_inlet1_active_power"].value == pytest.approx(1234.5)  # 1 decimal digit
    assert r["pdu1_inlet2_active_power"].value == 2000.0
    assert r["pdu2_inlet1_active_energy"].value == pytest.approx(77.7)
    assert r["pdu2_inlet1_active_energy"].modulus == pytest.approx(2**32 / 10)  # wraps at 2^32 raw units
    assert r["pdu1_inlet1_active_energy"].modulus == 2**32
    assert math.isnan(r["pdu1_inlet3_active_power"].value) and r["pdu1_inlet3_active_power"].raw == 999
    assert r["pdu3_inlet1_active_power"].value == 138.0
    assert r["total_active_power"].value == pytest.approx(1234.5 + 2000 + 500 + 138)
    assert r["total_active_energy"].value == pytest.approx(100 + 4294967000 + 77.7)
    assert r["total_active_energy"].modulus is None  # a sum of registers has no single wrap point
    assert not any("current" in name for name in r)  # rmsCurrent rows are not power


def test_a_vertiv_pdu_that_answers_its_phases_alone_is_read(synthetic):
    """Found by the SNMP audit: a Vertiv PDU without the PDU-level column was "no meter profile matches"."""
    profile, r = read(synthetic, "vertiv")
    assert profile == "vertiv-v5"
    assert r["total_active_power"].value == 1464 + 1477 + 1458
    assert r["total_active_energy"].value == 5207918 + 5284954 + 5191126


def test_eaton_daisy_chained_units(synthetic):
    profile, r = read(synthetic, "eaton")
    assert profile == "eaton-epdu"
    assert r["unit1_input1_active_power"].value == 800.0
    assert math.isnan(r["unit2_input1_active_power"].value)  # negative = not available
    assert r["total_active_power"].value == 1800.0  # unavailable row left out, not counted as -1 or 0
    assert r["total_active_energy"].value == 21000.0


def test_entity_sensor_only_psu_watts(synthetic):
    profile, r = read(synthetic, "entity")
    assert profile == "entity-sensor"  # fallback: no vendor profile for this sysObjectID
    assert r["psu_sensor11_active_power"].value == pytest.approx(450.0)
    assert r["psu_sensor12_active_power"].value == pytest.approx(123.4567)
    assert math.isnan(r["psu_sensor21_active_power"].value)  # oper status unavailable
    assert "psu_sensor30_active_power" not in r  # transceiver: parent is a port
    # RFC 3433 EntitySensorValue: watts "MUST contain a fixed point number ranging from -999,999,999 to
    # +999,999,999"; -1000000000 / +1000000000 indicate an underflow / overflow error: no value
    assert math.isnan(r["psu_sensor41_active_power"].value) and r["psu_sensor41_active_power"].raw == 1000000000
    assert math.isnan(r["psu_sensor42_active_power"].value)
    assert r["total_active_power"].value == pytest.approx(450.0 + 123.4567)


@pytest.mark.parametrize("community, wh, modulus_wh", [
    ("apc-ups-highprec", 432187 * 10.0, 2**32 * 10.0),  # hundredths of kWh, Unsigned32
    ("apc-ups-kwh", 4321 * 1000.0, 2**32 * 1000.0),  # kWh, Unsigned32: the fallback where high precision is absent
])
def test_apc_ups_energy_registers_wrap_at_unsigned32(synthetic, community, wh, modulus_wh):
    """PowerNet-MIB upsHighPrecOutputEnergyUsage and upsAdvOutputEnergyUsage are Unsigned32: the register
    wraps at 2^32 raw units (x the scale), the device total too (one scalar row)."""
    profile, r = read(synthetic, community)
    assert profile == "apc-ups"
    assert (r["total_active_power"].value, r["total_active_power"].unit) == (1510.0, "W")
    energy = r["total_active_energy"]
    assert energy.unit == "Wh" and energy.value == pytest.approx(wh)
    assert energy.modulus == pytest.approx(modulus_wh)
