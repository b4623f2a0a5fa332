"""Conformance: 73 real PDU, UPS and power-meter captures from LibreNMS's test suite, served by a real snmpsim.

Every capture in ../shared/conformance/librenms/recordings is probed exactly as `puewatch snmp probe`
does (profile chosen from sysObjectID) and judged as ../shared/conformance/README.md says:

- an expected W or Wh value is read if a reading at the same OID has it within 0.5 % (or 0.05),
  else any other unused reading of that unit does (a computed total stands only for a total,
  inlet or UPS input/output value); each reading counts once;
- failures whatever the score: a reading at an expected OID that is off (a scale error), a
  negative W/Wh value, a W value from a vendor filler (65535, 2^31-1, 2^32-1), a W value over 5 MW,
  a W/Wh reading at an OID that expected.json says must never be one (`never`, and `_excluded`
  values: apparent or reactive power, peaks, resettable duplicates, fillers), or a probe error
  other than "no profile matches".

The score (devices matched, expected readings read) must not fall below the recorded floors; the
goal is >= 70 of 73 devices and >= 98 % of the readings. The per-device table is printed and written
to `librenms-conformance.txt` in pytest's temporary folder (path printed). Devices still left out,
and the expected values that contradict the device's MIB (CONTRADICTS_MIB), are listed with their
reason in docs/snmp-devices.md.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field

import pytest

from conformance_support import SHARED, in_oid_order, shared
from puewatch import config as cfg
from puewatch.collector.snmp import profiles as pf
from puewatch.collector.snmp.client import SnmpError
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.probe import probe
from snmp_support import serving

# Raise these as profiles are added (never lower them): the score of the last run.
DEVICES_MATCHED_FLOOR = 73
# (669 until the 8 not-measured 0 W output values of NOT_MEASURED were no longer read as readings; 661
# until its 9 input values were not either.)
READINGS_READ_FLOOR = 652

# LibreNMS values that contradict the device's MIB, shown wrong by the device's own other objects
# (docs/snmp-devices.md): (capture, column OID) -> (puewatch's value / LibreNMS's, why). Such a
# value is not counted as read; the reading at its OID must differ by exactly that factor, any
# other difference is still a failure.
CONTRADICTS_MIB = {
    ("conteg-pdu", "1.3.6.1.4.1.28402.12.1.1.2.6.1.1.10"): (
        100.0, "LibreNMS divides sdbDevInPowerWatt (UNITS \"W\") by 100; V x A x power factor gives W"),
    ("conteg-pdu", "1.3.6.1.4.1.28402.12.1.1.2.7.2.1.11"): (
        100.0, "LibreNMS divides sdbDevOutMtPowerWatt (UNITS \"W\") by 100; V x A x power factor gives W"),
}

# LibreNMS values that are a device saying "not measured": upsOutputPower 0 W on lines that the same
# row's upsOutputPercentLoad (and mostly upsOutputCurrent) shows under load. puewatch must not read
# them as 0 W of IT energy (ups-mib's zero_valid_if): counted as not read, as CONTRADICTS_MIB's are.
# The same for upsInputTruePower 0 W on lines whose upsInputCurrent is above 0 (eaton-mgeups_93ps: 4.8 A at
# 238 V; netmanplus_mct20: 6.5 A at 232 V) or unknown (netmanplus_204 answers -1 A on every line, line 1 at
# 242 V while the UPS, on its normal source, gives 184 W): ups-mib's zero_valid_if on upsInputCurrent.
NOT_MEASURED = {
    **{(community, "1.3.6.1.2.1.33.1.4.4.1.4"): "upsOutputPower 0 W while the line's upsOutputPercentLoad is above 0"
       for community in ("abbups_abbups", "istars", "powerwalker-vfi_20kcpgpf133", "powerwalker-vfi_500r1u")},
    **{(community, "1.3.6.1.2.1.33.1.3.3.1.5"): "upsInputTruePower 0 W while the line's upsInputCurrent is not 0"
       for community in ("eaton-mgeups_93ps", "netmanplus_mct20", "netmanplus_204")},
}

FILLERS = (65535, 2**31 - 1, 2**32 - 1)
MAX_W = 5e6
TOTAL_LEVELS = ("total", "inlet", "ups_input", "ups_output")  # what a computed total_* may stand for


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= max(0.005 * abs(want), 0.05)


@dataclass
class Outcome:
    community: str
    profile: str | None = None
    error: str | None = None
    expected: int = 0
    read: int = 0
    missed: list[str] = field(default_factory=list)
    contradicted: list[str] = field(default_factory=list)  # LibreNMS values against the MIB (CONTRADICTS_MIB)
    failures: list[str] = field(default_factory=list)


def _communities() -> list[str]:
    path = SHARED / "conformance" / "librenms" / "expected.json"
    if not path.is_file():
        return ["<shared/conformance/librenms missing>"]  # the fixture then fails naming the folder
    return sorted(k for k in json.loads(path.read_text()) if not k.startswith("_"))


def _expected() -> dict:
    return json.loads(shared("conformance", "librenms", "expected.json").read_text())


def judge(community: str, exp: dict, result, error: str | None, excluded: list[dict] = ()) -> Outcome:
    """Score one device's probe result against LibreNMS's expected values."""
    out = Outcome(community, expected=len(exp["detail"]))
    if error is not None:
        if "no meter profile matches" not in error:
            out.failures.append(f"probe error: {error}")
        out.error = error
        out.missed = [f"{d['level']} {d['value']} {d['unit']} ({d['oid']})" for d in exp["detail"]]
        return out
    out.profile = result.profile
    readings = [r for r in result.readings if r.unit in ("W", "Wh")]
    for r in readings:
        if not math.isfinite(r.value):
            continue
        if r.value < 0:
            out.failures.append(f"{r.name}: negative {r.value} {r.unit}")
        if r.unit == "W" and r.raw in FILLERS:
            out.failures.append(f"{r.name}: vendor filler {r.raw} reported as {r.value} W")
        if r.unit == "W" and r.value > MAX_W:
            out.failures.append(f"{r.name}: {r.value} W is over 5 MW")
    # `never`, and the values expected.json leaves out (apparent or reactive power filed as power,
    # peaks, resettable duplicates, fillers): none of them may come out as a W or Wh reading.
    for never in [*exp.get("never", []), *excluded]:
        oid, why = (never, "") if isinstance(never, str) else (never.get("oid"), never.get("why", ""))
        for r in readings:
            if math.isfinite(r.value) and r.oid and r.oid == oid:
                out.failures.append(f"{r.name}: {oid} must never be a W/Wh reading ({why})")
    used: set[int] = set()
    by_oid = {r.oid: i for i, r in enumerate(readings) if r.oid and math.isfinite(r.value)}
    rest = []
    for d in exp["detail"]:  # first every value at its own OID, then the rest from what is left
        want, unit = d["value"], d["unit"]
        i = by_oid.get(d["oid"])
        why = next((v for (c, column), v in NOT_MEASURED.items() if c == community and d["oid"].startswith(column + ".")),
                   None)
        if why is not None:
            if i is not None:
                out.failures.append(f"{readings[i].name} ({d['oid']}): {readings[i].value:g} {unit} read as a value "
                                    f"({why})")
            else:
                out.contradicted.append(f"{d['oid']}: not a reading, LibreNMS {want:g} {unit} ({why})")
            continue
        if i is not None and readings[i].unit == unit:
            got = readings[i].value
            if _close(got, want):
                used.add(i)
                out.read += 1
                continue
            ratio = got / want if want else math.inf
            deviation = _contradicts_mib(community, d["oid"])
            if deviation is not None and _close(got, want * deviation[0]):
                out.contradicted.append(f"{d['oid']}: {got:g} {unit}, LibreNMS {want:g} ({deviation[1]})")
                continue
            out.failures.append(f"{readings[i].name} ({d['oid']}): {got:g} {unit}, LibreNMS {want:g} (x{ratio:g})")
        rest.append(d)
    for d in rest:
        want, unit = d["value"], d["unit"]
        found = None
        for j, r in enumerate(readings):
            if j in used or r.unit != unit or not math.isfinite(r.value) or not _close(r.value, want):
                continue
            if not r.oid and d["level"] not in TOTAL_LEVELS:
                continue
            found = j
            break
        if found is not None:
            used.add(found)
            out.read += 1
        else:
            out.missed.append(f"{d['level']} {want:g} {unit} ({d['oid']})")
    return out


def _contradicts_mib(community: str, oid: str) -> tuple[float, str] | None:
    return next((v for (c, column), v in CONTRADICTS_MIB.items() if c == community and oid.startswith(column + ".")), None)


async def _probe_all(port: int, communities: list[str]) -> dict[str, tuple[object, str | None]]:
    profiles = pf.load_profiles()

    async def one(community: str):
        device = cfg.build(
            SnmpDevice,
            {"name": community.replace("+", "_"), "host": "127.0.0.1", "port": port, "community": community, "timeout_s": 10.0, "retries": 1, "interval_s": 30.0},
            "test",
        )
        try:
            return community, (await probe(device, profiles), None)
        except SnmpError as exc:
            return community, (None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a crash is judged (a failure), not raised here
            return community, (None, f"crash {type(exc).__name__}: {exc}")

    sem = asyncio.Semaphore(8)  # snmpsim is one process: a few devices at a time

    async def bounded(community: str):
        async with sem:
            return await one(community)

    return dict(await asyncio.gather(*(bounded(c) for c in communities)))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    expected = _expected()
    communities = sorted(k for k in expected if not k.startswith("_"))
    work = tmp_path_factory.mktemp("snmpsim-librenms")
    recordings, notes = in_oid_order(shared("conformance", "librenms", "recordings"), work)
    print("\n" + "\n".join(notes))
    with serving(recordings, work) as sim:
        results = asyncio.run(_probe_all(sim.port, communities))
    left_out = expected.get("_excluded", {}).get("values", [])
    out = {c: judge(c, expected[c], *results[c], [v for v in left_out if v.get("capture") == c]) for c in communities}
    report = _report(out)
    path = tmp_path_factory.getbasetemp() / "librenms-conformance.txt"
    path.write_text(report)
    print(f"\n{report}\n(written to {path})")
    return out


def _report(out: dict[str, Outcome]) -> str:
    lines = [f"{'capture':40} {'profile':18} read/expected"]
    for o in out.values():
        lines.append(f"{o.community:40} {o.profile or '(no profile)':18} {o.read}/{o.expected}"
                     + (f"  missed: {'; '.join(o.missed[:4])}{' ...' if len(o.missed) > 4 else ''}" if o.missed else ""))
        if o.error:
            lines.append(f"    {o.error}")
        lines.extend(f"    against the MIB, not counted: {c}" for c in o.contradicted)
        lines.extend(f"    FAIL {f}" for f in o.failures)
    matched = sum(o.profile is not None for o in out.values())
    read = sum(o.read for o in out.values())
    total = sum(o.expected for o in out.values())
    lines.append(f"{matched}/{len(out)} devices matched, {read}/{total} LibreNMS readings correct "
                 f"({100.0 * read / total:.1f} %), {len(out) - matched} devices unmatched")
    return "\n".join(lines)


def test_librenms_captures_all_judged(outcomes):
    assert len(outcomes) == 73, f"expected.json lists {len(outcomes)} captures, the conformance data has 73"


@pytest.mark.parametrize("community", _communities())
def test_no_wrong_value_reported(community, outcomes):
    """Whatever the coverage: no scale error, negative value, filler or implausible value, no traceback."""
    o = outcomes.get(community)
    assert o is not None, f"{community}: not in expected.json"
    assert not o.failures, f"{community} ({o.profile}): " + "; ".join(o.failures)


def test_score_not_below_floor(outcomes):
    matched = sum(o.profile is not None for o in outcomes.values())
    read = sum(o.read for o in outcomes.values())
    assert matched >= DEVICES_MATCHED_FLOOR, f"{matched} devices matched, the floor is {DEVICES_MATCHED_FLOOR}"
    assert read >= READINGS_READ_FLOOR, f"{read} readings read, the floor is {READINGS_READ_FLOOR}"
