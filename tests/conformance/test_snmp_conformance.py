"""Conformance: every shared recording, served by a real snmpsim, reads the values in EXPECTED.toml.

For each device the probe logic runs exactly as `puewatch snmp probe` does
(profile auto-detected from sysObjectID) and every expected reading is checked:

- ok / estimated: a reading at that OID reports the value (relative 1e-6);
- unsupported / absent: unavailable (NaN), never a number;
- ambiguous: 0 or unavailable;
- totals: total_active_power / total_active_energy match (or are unavailable when expected so);
- derived sums (method = "sum" cross-checks): the sum of our readings at those OIDs.

The data is read from ../shared/snmp at test time and never copied into the repository; the
default run's profile checks use the project's own recordings (tests/fixtures/snmp).
"""

from __future__ import annotations

import asyncio
import math
import tomllib

import pytest

from conformance_support import SHARED_SNMP, shared_snmp
from puewatch import config as cfg
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.probe import probe


def _communities() -> list[str]:
    path = SHARED_SNMP / "EXPECTED.toml"
    if not path.is_file():
        return ["<shared/snmp missing>"]
    return sorted(tomllib.loads(path.read_text())["devices"])


def _expected() -> dict:
    return tomllib.loads((shared_snmp() / "EXPECTED.toml").read_text())


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@pytest.mark.parametrize("community", _communities())
def test_recording_reads_expected_values(community, snmpsim_shared):
    expected = _expected()
    assert expected["schema_version"] == 1
    dev = expected["devices"][community]
    device = cfg.build(
        SnmpDevice,
        {"name": community, "host": "127.0.0.1", "port": snmpsim_shared.port, "community": community,
         "timeout_s": 3.0, "retries": 1},
        "test",
    )
    result = asyncio.run(probe(device))
    by_oid = {r.oid: r for r in result.readings if r.oid and r.name not in ("total_active_power", "total_active_energy")}
    by_name = {r.name: r for r in result.readings}
    assert by_name, "no readings"
    checked = 0
    for exp in dev["readings"]:
        status = exp["status"]
        name = exp["name"]
        if name in ("total_active_power", "total_active_energy"):
            got = by_name.get(name)
            value = got.value if got is not None else math.nan
            if got is not None:
                assert got.unit == exp["unit"], f"{community} {name}: unit {got.unit}, expected {exp['unit']}"
        elif "oid" in exp:
            got = by_oid.get(exp["oid"])
            if got is None:
                assert status in ("absent", "unsupported"), (
                    f"{community}: no reading at {exp['oid']} ({name}, expected {exp.get('value')} {exp['unit']}, {status})"
                )
                value = math.nan
            else:
                value = got.value
                assert got.unit == exp["unit"], f"{community} {name}: unit {got.unit}, expected {exp['unit']}"
                assert got.raw == exp["raw"], f"{community} {name}: raw {got.raw}, expected {exp['raw']}"
        else:  # a derived sum over several OIDs (cross-check)
            parts = [by_oid.get(o) for o in exp["oids"]]
            assert all(p is not None for p in parts), f"{community} {name}: missing one of {exp['oids']}"
            value = math.fsum(p.value for p in parts)
        if status in ("ok", "estimated"):
            assert math.isfinite(value) and _close(value, exp["value"]), (
                f"{community} {name}: got {value} {exp['unit']}, expected {exp['value']} ({status})"
            )
        elif status in ("unsupported", "absent"):
            assert math.isnan(value), f"{community} {name}: got {value}, expected unavailable ({status})"
        elif status == "ambiguous":
            assert math.isnan(value) or value == 0.0, f"{community} {name}: got {value}, expected 0 or unavailable"
        else:
            pytest.fail(f"{community} {name}: unknown status {status!r} in EXPECTED.toml")
        checked += 1
    assert checked == len(dev["readings"])
    # The device-level figures in the header agree with the totals we report.
    tp = by_name["total_active_power"].value
    assert _close(tp, dev["total_active_power_w"]), f"{community}: total_active_power {tp}"
    te = by_name.get("total_active_energy")
    if "total_active_energy_wh" in dev:
        assert te is not None and _close(te.value, dev["total_active_energy_wh"])
    else:
        assert te is None or math.isnan(te.value) or te.value == 0.0


def test_profiles_are_chosen_by_sysobjectid(snmpsim_shared):
    """Auto-detection picks the vendor profile, and the standard-MIB fallbacks where no vendor profile fits."""
    want = {
        "apc-ap8853": "apc-rpdu2",
        "apc-ap7900b": "apc-rpdu2",
        "apc-smx750": "apc-ups",
        "raritan-px3-5493u": "raritan-pdu2",
        "raritan-px1-dominion": "raritan-px1",
        "eaton-epdu-ema114": "eaton-epdu",
        "servertech-sentry4-c2s42ce": "sentry4",
        "servertech-sentry3-cs24v4": "sentry3",
        "riello-netman204-ups": "ups-mib",
        "edgecore-as7326-sonic": "entity-sensor",
    }
    assert set(want) == set(_expected()["devices"])

    async def all_probes():
        out = {}
        for community in want:
            device = cfg.build(
                SnmpDevice,
                {"name": community, "host": "127.0.0.1", "port": snmpsim_shared.port, "community": community},
                "test",
            )
            out[community] = (await probe(device)).profile
        return out

    assert asyncio.run(all_probes()) == want


def test_an_eaton_epdu_s_rating_is_its_inputs_capacity(snmpsim_shared):
    """Found by the SNMP audit: the eaton-epdu profile read no rating, so a meter read from an ePDU had no
    power limit for its first hours, and 2^31-1 W (inside inputTotalWatts' Integer32 range) or a register
    step of 10^9 Wh in a second counted. inputPowerCapacity (EATON-EPDU-MIB, inputTotalEntry 9, VA) is read
    per input and summed into the device's rated_apparent_power, which the power limit is taken from."""
    from puewatch.core.energy import rated_limit

    device = cfg.build(SnmpDevice, {"name": "e", "host": "127.0.0.1", "port": snmpsim_shared.port,
                                    "community": "eaton-epdu-ema114", "timeout_s": 3.0, "retries": 1}, "test")
    result = asyncio.run(probe(device))
    assert result.profile == "eaton-epdu"
    by_name = {r.name: r for r in result.readings}
    rated = by_name["rated_apparent_power"]
    assert (rated.value, rated.unit) == (1920.0, "VA")  # 16 A x 120 V, beside 1673 VA drawn
    assert by_name["unit0_input1_power_capacity"].value == 1920.0
    limit = rated_limit({"rated_apparent_power": rated.value})
    assert limit.source == "rated" and 1920.0 <= limit.watts < 2147483647.0
