"""The project's own recordings (tests/fixtures/snmp), served by a real snmpsim: each is read with the
profile its sysObjectID selects, and its totals are what the MIB's units make of the raw values
(README.md there). Recordings of real devices are checked by `make conformance` (tests/conformance)."""

from __future__ import annotations

import asyncio
import math

import pytest

from puewatch import config as cfg
from puewatch.core import schema
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.probe import probe
from snmp_support import RECORDINGS, check_recordings

# community: (profile, total_active_power W, total_active_energy Wh or None = unavailable)
WANT = {
    "apc-rpdu2-metered": ("apc-rpdu2", 287 * 10.0, 41234 * 100.0),
    "apc-rpdu2-unsupported": ("apc-rpdu2", 415.0, None),  # rPDU2 answers -1: the legacy estimate
    "sentry4-master-link": ("sentry4", 1234.0 + 987 + 612, (5521 + 4410 + 3001) * 100.0),
    "ups-mib-three-line": ("ups-mib", 1510.0 + 1422 + 1388, None),  # RFC 1628 has no energy object
    "raritan-pdu2-one-inlet": ("raritan-pdu2", 34561 / 10, 987654.0),
    "rittal-cmc3-variable-table": ("rittal-cmc3", 345 * 1000 / 100, 12345 * 1000 / 10),  # kW, kWh; scale -100, -10
    "cyberpower-phase-and-banks": ("cyberpower-epdu", 800.0, None),  # the phase row only: banks are parts of it
    # ePDU and ePDU2 on one host: the ePDU2 device rows (host and slave), never the ePDU phase row too
    "cyberpower-epdu2-chain": ("cyberpower-epdu", 1200.0 + 900, (5432 + 1000) * 100.0),  # W; tenths of kWh
    "cyberpower-epdu2-only": ("cyberpower-epdu", 345.0, 77 * 100.0),
    "apc-cpdu-unused-outlets": ("apc-cpdu", 1234.0, 5678 * 100.0),  # W; tenths of kWh
    "conteg-databus-chain": ("conteg-databus", 120.0 + 430, (40 + 700) * 1000.0),  # schleifenbauer's readings, moved
    "planet-digipdu-feed": ("planet-digipdu", 850.0, None),  # DIGIPDU-MIB has no energy with a unit
    "powertek-pwt-inlet": ("powertek-pwt", 5120 / 10, None),  # 0.1 W; inletEnergy's unit is not credible
    # gen 2 (pdu2): pdu2InputPowerWatts W; pdu2InputPowerWattHour Wh (no gen 3 pdu3InputTotalEnergy)
    "hpe-cpqpower-pdu2-input": ("hpe-cpqpower", 1800.0 + 600, 7654321.0 + 1234567),
}
# No power total: the MIB defines no active power (reads outlet energy only).
NO_POWER = {"ipoman-outlets": ("ipoman", {"outlet1_active_energy": 98765.0, "outlet2_active_energy": 0.0})}


def test_every_recording_is_checked():
    assert sorted([*WANT, *NO_POWER]) == check_recordings(RECORDINGS)


def _probe(port: int, community: str):
    device = cfg.build(
        SnmpDevice,
        {"name": community, "host": "127.0.0.1", "port": port, "community": community, "timeout_s": 3.0, "retries": 1},
        "test",
    )
    return asyncio.run(probe(device))


@pytest.mark.parametrize("community", sorted(NO_POWER))
def test_recording_without_active_power(community, snmpsim_recordings):
    profile, want = NO_POWER[community]
    result = _probe(snmpsim_recordings.port, community)
    assert result.profile == profile
    got = {r.name: r.value for r in result.readings if r.unit in ("W", "Wh")}
    assert got == want, got  # no total_active_power: never made up


def test_unused_outlet_rows_are_no_readings(snmpsim_recordings):
    """CPDU-MIB: a pduOutletMeteredStatusTable row whose outlet number is 0 is no outlet (row filter by range)."""
    result = _probe(snmpsim_recordings.port, "apc-cpdu-unused-outlets")
    outlets = {r.name: r.value for r in result.readings if r.location == "outlet"}
    assert outlets == {"pdu1_outlet1_active_power": 700.0, "pdu1_outlet2_active_power": 534.0}
    oids = {r.oid for r in result.readings}
    # the peak (2.4.1.6) and the resettable energy (2.4.1.10) are not readings
    assert not {"1.3.6.1.4.1.318.1.1.32.2.4.1.6.1", "1.3.6.1.4.1.318.1.1.32.2.4.1.10.1"} & oids


def test_cyberpower_epdu2_and_epdu_phase_rows(snmpsim_recordings):
    """CPS-MIB: a PDU answering both generations is read once: its totals are the ePDU2 device rows,
    the ePDU phase row stays a phase reading; the apparent power (VA) is no W reading."""
    result = _probe(snmpsim_recordings.port, "cyberpower-epdu2-chain")
    got = {r.name: (r.value, r.unit, r.location) for r in result.readings if r.unit in ("W", "Wh")}
    assert got == {
        "load1_active_power": (1200.0, "W", "phase"),
        "pdu1_active_power": (1200.0, "W", "total"), "pdu2_active_power": (900.0, "W", "total"),
        "pdu1_active_energy": (543200.0, "Wh", "total"), "pdu2_active_energy": (100000.0, "Wh", "total"),
        "total_active_power": (2100.0, "W", "total"), "total_active_energy": (643200.0, "Wh", "total"),
    }, got


def test_powertek_voltage_column_is_not_power(snmpsim_recordings):
    """PWTv1-MIB column 15 is inletVoltPhase1 (an older MIB layout calls it phase 1 power): never a W reading."""
    result = _probe(snmpsim_recordings.port, "powertek-pwt-inlet")
    assert not [r for r in result.readings if r.oid and r.oid.startswith("1.3.6.1.4.1.42610.1.4.4.1.6.1.2.1.15.")]
    assert not [r for r in result.readings if r.unit == "Wh"]  # inletEnergy not read


@pytest.mark.parametrize("community", sorted(WANT))
def test_recording_profile_and_totals(community, snmpsim_recordings):
    profile, power_w, energy_wh = WANT[community]
    device = cfg.build(
        SnmpDevice,
        {"name": community, "host": "127.0.0.1", "port": snmpsim_recordings.port, "community": community,
         "timeout_s": 3.0, "retries": 1},
        "test",
    )
    result = asyncio.run(probe(device))
    by_name = {r.name: r for r in result.readings}
    assert result.profile == profile, (community, result.profile)
    assert by_name["total_active_power"].value == pytest.approx(power_w, rel=1e-12), by_name["total_active_power"]
    assert by_name["total_active_power"].unit == "W"
    energy = by_name.get("total_active_energy")
    if energy_wh is None:
        assert energy is None or math.isnan(energy.value), energy
    else:
        assert energy is not None and energy.unit == "Wh" and energy.value == pytest.approx(energy_wh, rel=1e-12), energy
    # no reading is negative: -1 (unsupported) is unavailable, never a number
    assert all(math.isnan(r.value) or r.value >= 0 for r in result.readings), result.readings


def test_ups_ratings_are_read_as_ratings(snmpsim_recordings):
    """UPS-MIB's upsConfigOutputPower / upsConfigOutputVA come back as the device's ratings, the
    readings the power limit of its meters is taken from (core.energy, `rated`)."""
    device = cfg.build(
        SnmpDevice,
        {"name": "ups", "host": "127.0.0.1", "port": snmpsim_recordings.port, "community": "ups-mib-three-line",
         "timeout_s": 3.0, "retries": 1},
        "test",
    )
    by_name = {r.name: r for r in asyncio.run(probe(device)).readings}
    assert (by_name["rated_power"].value, by_name["rated_power"].unit) == (9000.0, "W")
    assert (by_name["rated_apparent_power"].value, by_name["rated_apparent_power"].unit) == (10000.0, "VA")
    assert {by_name[n].quantity for n in schema.SNMP_RATING_READINGS} == set(schema.SNMP_RATING_READINGS)


def test_variable_table_rows_chosen_by_type_name_and_unit(snmpsim_recordings):
    """RITTAL-CMC-III-MIB: only measured values (type 2) named as the profile says, in a power or energy
    unit, are read; a set point, apparent power, the resettable energy and a row without value are not."""
    device = cfg.build(
        SnmpDevice,
        {"name": "cmc", "host": "127.0.0.1", "port": snmpsim_recordings.port, "community": "rittal-cmc3-variable-table",
         "timeout_s": 3.0, "retries": 1},
        "test",
    )
    result = asyncio.run(probe(device))
    got = {r.oid.rsplit(".", 2)[-1]: (r.value, r.unit, r.location) for r in result.readings if r.oid}
    assert got.keys() == {"1", "3", "5", "7"}, got  # 2.2 set point, 2.4 custom energy, 2.6 VA: not readings
    assert got["1"] == (3450.0, "W", "total") and got["3"] == (1234500.0, "Wh", "total")
    assert got["5"] == (1200.0, "W", "phase")
    assert math.isnan(got["7"][0])  # cmcIIIVarQuality okNoValue(22)
