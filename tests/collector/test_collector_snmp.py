"""`puewatch collector` with its meters polled over SNMP from real agents.

- snmpsim serving two of the project's recordings (tests/fixtures/snmp: static power gauges) for
  the incomer and the UPS output, and a dead device (a socket that never answers) for the cooling
  meter: the PUE is P_facility / P_IT as the recordings give them, on schedule; the dead meter
  gives no readings (NaN, never 0), no CLF, and /metrics says it is down.
- a real snmpd whose pass_persist serves changing energy registers: one wraps at 2**32, the
  other is reset mid-run. Energies are never negative and the PUE is the ratio of the rates.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time

from pathlib import Path

import numpy as np
import pytest

import puewatch.profiles

from collector_support import CollectorProcess, free_port, scrape, write_config
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.core.timefmt import format_time
from snmp_support import PRIVATE_BASE, black_hole, snmpd, snmpsim_recordings  # noqa: F401 (fixtures)

FACILITY = "raritan-pdu2-one-inlet"
P_FACILITY_RECORDED_W = 34561 / 10  # inlet activePower, one decimal digit
IT = "apc-rpdu2-metered"
P_IT_RECORDED_W = 287 * 10.0  # rPDU2DeviceStatusPower, hundredths of kW
SECOND = 10**9


def device_errors(log: str, device: str) -> list[str]:
    """The collector's log lines for one device's failed polls ("<device>: <error>"), for assert messages."""
    return [line for line in log.splitlines() if f" {device}: " in line and "WARNING" in line]


def test_snmp_meters_give_pue_and_a_dead_device_is_missing_not_zero(tmp_path, snmpsim_recordings, black_hole):
    p_facility, p_it = P_FACILITY_RECORDED_W, P_IT_RECORDED_W
    port = snmpsim_recordings.port
    # The UPS output meter is read with a site's own profile from `profile_dirs` (a renamed copy
    # of the shipped rPDU2 profile): an unknown profile name would stop the collector at start.
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shipped = (Path(puewatch.profiles.__file__).parent / "apc-rpdu2.toml").read_text()
    (profiles / "site-apc.toml").write_text(shipped.replace('name = "apc-rpdu2"', 'name = "site-apc"', 1))
    meters = f"""
[snmp]
profile_dirs = ["{profiles}"]

[[snmp.devices]]
name = "incomer"
host = "127.0.0.1"
port = {port}
community = "{FACILITY}"
interval_s = 1.0
timeout_s = 0.9
retries = 0

[[snmp.devices]]
name = "ups"
host = "127.0.0.1"
port = {port}
community = "{IT}"
profile = "site-apc"
interval_s = 1.0
timeout_s = 0.9
retries = 0

[[snmp.devices]]
name = "dead"
host = "127.0.0.1"
port = {black_hole}
community = "public"
interval_s = 1.0
timeout_s = 0.9
retries = 0

[meters.incomer]
role = "facility_input"
device = "incomer"
reading = "total_active_power"

[meters.ups]
role = "it"
point = "pdu_output"
zone = "hall-a"
device = "ups"
reading = "total_active_power"

[meters.crac]
role = "cooling"
zone = "hall-a"
device = "dead"
reading = "total_active_power"
"""
    ingest_port, metrics_port = free_port(), free_port()
    settle_s = 3.0
    conf = write_config(tmp_path, ingest_port, metrics_port, meters=meters, settle_s=settle_s)
    t_start = time.time_ns()
    with CollectorProcess(conf, ingest_port) as proc:
        time.sleep(14)
        values = scrape(metrics_port)
        t_scrape = time.time_ns()
    log = proc.output()
    snmp = {k: v for k, v in values.items() if k.startswith("puewatch_snmp_")}
    assert values['puewatch_snmp_up{device="dead"}'] == 0, snmp
    assert values['puewatch_snmp_polls_total{device="dead",result="error"}'] >= 5, snmp
    assert values.get('puewatch_snmp_polls_total{device="dead",result="ok"}', 0) == 0, snmp
    # Every failed poll by its cause: the dead device's are timeouts, or (its first, which connects first)
    # cut off at the poll's share of the interval.
    dead_failures = {k.split('cause="')[1].split('"')[0]: v for k, v in snmp.items()
                     if k.startswith("puewatch_snmp_poll_failures_total{") and 'device="dead"' in k}
    assert dead_failures.keys() <= {"timeout", "slow"} and dead_failures["timeout"] >= 5, snmp
    assert sum(dead_failures.values()) == values['puewatch_snmp_polls_total{device="dead",result="error"}'], snmp
    for live in ("incomer", "ups"):
        ok = values[f'puewatch_snmp_polls_total{{device="{live}",result="ok"}}']
        failed = values.get(f'puewatch_snmp_polls_total{{device="{live}",result="error"}}', 0)
        errors = device_errors(log, live)
        why = f"{live}: {ok:g} polls ok, {failed:g} failed: {errors[-5:]}"
        assert values[f'puewatch_snmp_up{{device="{live}"}}'] == 1, why
        # Had the dead device held the live ones up (0.9 s every second), their polls would time out
        # or overrun their interval. A loaded 2-core machine can stall a poll past its interval, most
        # often the first (it detects the profile and walks its tables): the slots it ran over are
        # skipped and reported, and tolerated here; a timeout or an overrun is not.
        assert ok >= 10 and not [e for e in errors if "slot skipped" not in e], why
    assert values['puewatch_ratio{ratio="pue",window="1m"}'] == pytest.approx(p_facility / p_it, rel=1e-9)
    # The dead device must not hold the pipeline back beyond the settle time (the horizon's cap, see
    # collector/pipeline.py); the margin over it (a cell, a late tick) is for a loaded 2-core machine.
    lag_s = values["puewatch_pipeline_lag_seconds"]
    assert lag_s < settle_s + 2.0, (lag_s, log[-2000:])

    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    end = time.time_ns() + SECOND
    t, pue = store.series("pue", "pue", {"site": "lab", "window": "1m", "category": "2"}, t_start, end)
    # One point per 1 s cell, on schedule, from shortly after the first polls until the scrape.
    assert len(pue) >= 7, proc.output()[-2000:]
    assert np.all(np.diff(t) == SECOND)
    assert t[-1] >= t_scrape - 5 * SECOND
    assert pue == pytest.approx([p_facility / p_it] * len(pue), rel=1e-9)
    # No CLF: the cooling meter never answered, so there is no numerator (NaN is not written).
    t, clf = store.series("pue", "clf", {"site": "lab", "window": "1m"}, t_start, end)
    assert len(clf) == 0
    t, cov = store.series("pue", "clf_coverage", {"site": "lab", "window": "1m"}, t_start, end)
    assert len(cov) >= 7 and set(cov) == {0.0}
    # Raw readings of the live devices as the recordings give them; none at all from the dead one.
    for device, watts in (("incomer", p_facility), ("ups", p_it)):
        t, raw = store.series("snmp_reading", "value", {"device": device, "reading": "total_active_power"}, t_start, end)
        assert len(raw) >= 10 and raw == pytest.approx([watts] * len(raw), rel=1e-12)  # 10^-digits: not exact
    assert store.tag_values("snmp_reading", "device") == ["incomer", "ups"]
    t, crac = store.series("meter_energy", "energy_wh", {"meter": "crac"}, t_start, end)
    assert len(crac) == 0  # missing, never written as 0
    t, site_cooling = store.series("site_energy", "cooling_wh", {"site": "lab"}, t_start, end)
    assert len(site_cooling) == 0
    t, fac = store.series("site_energy", "facility_input_wh", {"site": "lab"}, t_start, end)
    assert len(fac) >= 7 and fac == pytest.approx([p_facility / 3600] * len(fac), rel=1e-9)
    # Each poll is recorded, answered or not: the dead device's as timeouts, with the poller's message.
    assert "timeout" in store.tag_values("snmp_poll", "result")
    t_dead, secs = store.series("snmp_poll", "seconds", {"device": "dead", "result": "timeout"}, t_start, end)
    assert len(t_dead) >= 5 and np.all(secs > 0.5), secs  # waited for an answer (timeout_s 0.9 by pysnmp's timer)
    assert len(store.series("snmp_poll", "seconds", {"device": "dead", "result": "ok"}, t_start, end)[0]) == 0
    errors = {tags["result"]: set(cols["error"]) for tags, _, cols in
              store.fields_by_series("snmp_poll", {"error": "string"}, t_start, end) if tags["device"] == "dead"}
    assert errors.keys() <= {"timeout", "slow"} and errors["timeout"] == {
        f"127.0.0.1:{black_hole}: no response within 0.9 s (1 try): device down or unreachable, or wrong community?"}
    t_slow, _ = store.series("snmp_poll", "seconds", {"device": "dead", "result": "slow"}, t_start, end)
    t_ok, _ = store.series("snmp_poll", "seconds", {"device": "incomer", "result": "ok"}, t_start, end)
    assert len(t_ok) >= 10
    store.close()

    # A report says why the cooling meter has no data: its device's polls failed (found by the SNMP
    # operator audit: "no data", and no word of a device that was down all along).
    lo, hi = (int(t_dead[0]) // SECOND) * SECOND, (int(t_dead[-1]) // SECOND + 1) * SECOND
    out = subprocess.run([sys.executable, "-m", "puewatch.cli", "report", "--config", str(conf), "--from",
                          format_time(lo), "--to", format_time(hi), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    rows = {m["meter"]: m for m in report["meters"]}
    timeouts = len(t_dead[(t_dead >= lo) & (t_dead < hi)])
    slow = len(t_slow[(t_slow >= lo) & (t_slow < hi)])
    failed = timeouts + slow
    assert rows["crac"]["method"] is None and rows["crac"]["polls"] == {
        "recorded": failed, "failed": failed, "causes": {"timeout": timeouts} | ({"slow": slow} if slow else {})}
    assert rows["incomer"]["polls"]["recorded"] >= 5 and rows["incomer"]["polls"]["causes"].keys() <= {"skipped"}
    # That it has no energy, then why: its device's polls failed.
    assert [w for w in report["warnings"] if w.startswith("meter 'crac' (cooling): no energy in the period: no two of")]
    (warning,) = [w for w in report["warnings"] if w.startswith("meter 'crac':")]
    assert warning.startswith(f"meter 'crac': {failed} poll(s) of its device 'dead' failed in its gaps ({timeouts} "
                              f"timeout{f', {slow} slow' if slow else ''}; of {failed} polls recorded in the period), "
                              "the first at "), warning
    assert "its energy there is missing, not zero (the causes: docs/auditor-guide.md)" in warning
    assert not [w for w in report["warnings"] if w.startswith("meter 'crac':") and w != warning], report["warnings"]


WRAP_OID = f"{PRIVATE_BASE}.2.0"
RESET_OID = f"{PRIVATE_BASE}.3.0"
P_FACILITY_W = 144_000.0  # 40 Wh/s
P_IT_W = 108_000.0  # 30 Wh/s


def test_snmpd_energy_registers_wrap_and_reset_without_negative_energy(tmp_path, snmpd):
    meters = _generic_device("incomer", snmpd.port, f'{{ name = "feed_energy", oid = "{WRAP_OID}", quantity = '
                             '"active_energy", kind = "register", modulus_raw = 4294967296.0, total = true }') + \
        _generic_device("ups", snmpd.port, f'{{ name = "ups_energy", oid = "{RESET_OID}", quantity = "active_energy", '
                        'kind = "register", total = true }') + INCOMER_AND_UPS
    wrap_start = 2**32 - 200  # wraps 5 s after the collector is up
    reset_at = 9.0
    served = {"wrapped": False, "reset": False}

    def objects(dt: float) -> dict:
        facility = (wrap_start + int(P_FACILITY_W * dt / 3600)) % 2**32
        served["wrapped"] |= facility < wrap_start
        it = int(5_000_000 + P_IT_W * dt / 3600)
        if dt >= reset_at:  # the UPS meter is reset (e.g. replaced): counts again from 0
            it = int(P_IT_W * (dt - reset_at) / 3600)
            served["reset"] = True
        return {WRAP_OID: ("gauge", facility), RESET_OID: ("gauge", it)}

    proc, t_start, values = _collector_while_serving(snmpd, tmp_path, meters, objects, 16)
    assert served == {"wrapped": True, "reset": True}, served
    log = proc.output()
    snmp = {k: v for k, v in values.items() if k.startswith("puewatch_snmp_")}
    assert 1.25 < values['puewatch_ratio{ratio="pue",window="1m"}'] < 1.6, (values.get('puewatch_ratio{ratio="pue",window="1m"}'), snmp, log[-3000:])
    assert "meter incomer reads incomer/total_active_energy" in log

    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    end = time.time_ns() + SECOND
    # The raw register went through the wrap: values near 2**32, then small ones.
    t, raw = store.series("snmp_reading", "value", {"device": "incomer", "reading": "feed_energy"}, t_start, end)
    assert raw.max() > 2**32 - 200 and raw.min() < 1000
    t, ups_raw = store.series("snmp_reading", "value", {"device": "ups", "reading": "ups_energy"}, t_start, end)
    assert ups_raw.max() >= 5_000_000 and ups_raw[-1] < 1000
    t_reset = int(t[np.argmax(np.diff(ups_raw) < 0) + 1])  # first reading after the reset
    for meter, watts in (("incomer", P_FACILITY_W), ("ups", P_IT_W)):
        t, e = store.series("meter_energy", "energy_wh", {"meter": meter, "method": "register"}, t_start, end)
        assert len(e) >= 8
        # Neither the wrap nor the reset gives a negative energy, nor one of ~2**32 or ~5e6 Wh:
        # a 1 s cell holds at most the rate plus the jitter of the reading times.
        assert np.all(e >= 0) and np.all(e < 2 * watts / 3600), (meter, e)
        assert np.median(e) == pytest.approx(watts / 3600, rel=0.1)
    for field in ("facility_input_wh", "it_wh"):
        t, e = store.series("site_energy", field, {"site": "lab"}, t_start, end)
        assert len(e) >= 8 and np.all(e >= 0)
    t, pue = store.series("pue", "pue", {"site": "lab", "window": "1m"}, t_start, end)
    assert len(pue) >= 8 and all(math.isfinite(x) for x in pue)
    # The interval across the reset is missing (only a lower bound of its energy is known), so
    # the ratio of the rates holds before and after it: the reset biases nothing.
    before = pue[t < t_reset - SECOND]
    after = pue[t > t_reset + SECOND]
    assert len(before) >= 2 and len(after) >= 2
    assert pue == pytest.approx([P_FACILITY_W / P_IT_W] * len(pue), rel=0.05), pue
    t, cells = store.series("meter_energy", "energy_wh", {"meter": "ups"}, t_start, end)
    assert not np.any((t > t_reset - SECOND) & (t <= t_reset)), "the reset cell must be missing"


ROW_COLUMN = f"{PRIVATE_BASE}.30.1"  # a table of inlet energy registers (Unsigned32 Wh), rows .1 and .2
ROW_PROFILE = f"""
[profile]
name = "acme-pdu"
description = "a test PDU: an energy register per inlet (Unsigned32 Wh)"

[[readings]]
key = "inlet_active_energy"
location = "inlet"
name = "inlet{{index}}_active_energy"
quantity = "active_energy"
unit = "Wh"
column = "{ROW_COLUMN}"
kind = "register"
modulus_raw = 4294967296

[[totals]]
name = "total_active_energy"
quantity = "active_energy"
sum = ["inlet_active_energy"]
"""


def test_one_row_of_a_wrapping_table_wraps_live_and_in_the_report_alike(tmp_path, snmpd):
    """A meter reads one row of a PDU's inlet energy table (a site profile: Unsigned32 Wh, scale 1), which
    wraps 5 s after the collector is up. The live collector and the report over its store both count a wrap
    at the column's modulus: the live cells across it hold the rate, and the report counts no reset. (The
    report took the row's wrap value for 'depends on the device' and counted a reset where the live
    collector, reading the row's modulus off the poll, counted a wrap; found by an independent reference.)"""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "acme-pdu.toml").write_text(ROW_PROFILE)
    meters = (f'[snmp]\nprofile_dirs = ["{profiles}"]\n\n'
              f'[[snmp.devices]]\nname = "incomer"\nhost = "127.0.0.1"\nport = {snmpd.port}\ninterval_s = 1.0\n'
              'timeout_s = 0.9\nretries = 0\nprofile = "acme-pdu"\n' +
              _generic_device("ups", snmpd.port, f'{{ name = "ups_energy", oid = "{RESET_OID}", quantity = '
                              '"active_energy", kind = "register", total = true }') +
              INCOMER_AND_UPS.replace('device = "incomer"\n', 'device = "incomer"\nreading = "inlet1_active_energy"\n'))
    wrap_start = 2**32 - 200  # wraps 5 s after the collector is up
    served = {"wrapped": False}

    def objects(dt: float) -> dict:
        inlet1 = (wrap_start + int(P_FACILITY_W * dt / 3600)) % 2**32
        served["wrapped"] |= inlet1 < wrap_start
        return {f"{ROW_COLUMN}.1": ("gauge", inlet1), f"{ROW_COLUMN}.2": ("gauge", 7_000 + int(dt)),
                RESET_OID: ("gauge", int(5_000_000 + P_IT_W * dt / 3600))}

    proc, t_start, values = _collector_while_serving(snmpd, tmp_path, meters, objects, 14)
    assert served["wrapped"], served
    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    end = time.time_ns() + SECOND
    t, raw = store.series("snmp_reading", "value", {"device": "incomer", "reading": "inlet1_active_energy"}, t_start,
                          end)
    assert raw.max() > 2**32 - 200 and raw.min() < 1000  # through the wrap
    t_wrap = int(t[np.argmax(np.diff(raw) < 0) + 1])  # the first reading after the wrap
    t, e = store.series("meter_energy", "energy_wh", {"meter": "incomer", "method": "register"}, t_start, end)
    # Live: the cells across the wrap hold the rate (a reset would leave the cell before t_wrap missing).
    assert np.any((t > t_wrap - SECOND) & (t <= t_wrap)), "the wrap's cell must have its energy"
    assert np.all(e >= 0) and np.all(e < 2 * P_FACILITY_W / 3600), e
    store.close()
    conf = tmp_path / "collector.toml"
    lo, hi = (t_start // SECOND + 1) * SECOND, (end // SECOND) * SECOND
    out = subprocess.run([sys.executable, "-m", "puewatch.cli", "report", "--config", str(conf), "--from",
                          format_time(lo), "--to", format_time(hi), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    inc = next(m for m in json.loads(out.stdout)["meters"] if m["meter"] == "incomer")
    assert inc["modulus_wh"] == 2**32
    assert inc["register_intervals"]["wrap"] == 1 and inc["register_intervals"]["reset"] == 0, inc
    assert inc["resets"] == 0


# The site of the tests below: the incomer device's facility input, the UPS device's output (category 1).
INCOMER_AND_UPS = "\n" + """[meters.incomer]
role = "facility_input"
device = "incomer"

[meters.ups]
role = "it"
point = "ups_output"
zone = "hall-a"
device = "ups"
"""


def _generic_device(name: str, port: int, oids: str) -> str:
    """A site file's generic SNMP device on the test's snmpd, polled every second."""
    return (f'[[snmp.devices]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\ninterval_s = 1.0\ntimeout_s = 0.9\n'
            f'retries = 0\nprofile = "generic"\noids = [{oids}]\n')


def _collector_while_serving(snmpd, tmp_path: Path, meters: str, objects, seconds: float):
    """A collector over `meters` for `seconds`, while snmpd serves `objects(dt)` (None: as it was), dt the seconds
    since the collector came up: registers move from then on (its start, kernels compiled, can take seconds on a
    loaded machine), and hold their first values until then. Returns the process, the start and /metrics."""
    stop = threading.Event()
    up_at: list[float] = []

    def serve() -> None:
        while not stop.is_set():
            now = objects(time.monotonic() - up_at[0] if up_at else 0.0)
            if now is not None:
                snmpd.set_objects(now)
            time.sleep(0.05)

    serve_thread = threading.Thread(target=serve, daemon=True)
    serve_thread.start()
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port, meters=meters)
    t_start = time.time_ns()
    try:
        with CollectorProcess(conf, ingest_port) as proc:
            up_at.append(time.monotonic())
            time.sleep(seconds)
            values = scrape(metrics_port)
    finally:
        stop.set()
        serve_thread.join()
    return proc, t_start, values


NEG_OID, FILLER_OID, EATON_OID, BIG_OID, GOOD_OID = (f"{PRIVATE_BASE}.{i}.0" for i in (21, 22, 23, 24, 25))


def test_impossible_snmp_values_are_missing_and_counted_in_metrics(tmp_path, snmpd):
    """snmpd answers -26 W, 65535 from an INTEGER (-1..25000), -5000 (a 'negative = not available' filler)
    and 4294967295 from an INTEGER (0..2147483647): none becomes a reading; /metrics counts each by reason."""
    snmpd.set_objects({GOOD_OID: ("integer", 1200), NEG_OID: ("integer", -26), FILLER_OID: ("integer", 65535),
                       EATON_OID: ("integer", -5000), BIG_OID: ("gauge", 4294967295)})
    meters = f"""
[[snmp.devices]]
name = "ups"
host = "127.0.0.1"
port = {snmpd.port}
interval_s = 1.0
timeout_s = 0.9
retries = 0
profile = "generic"
oids = [
  {{ name = "line_a_power", oid = "{GOOD_OID}", quantity = "active_power", total = true }},
  {{ name = "line_b_power", oid = "{NEG_OID}", quantity = "active_power", total = true }},
  {{ name = "infeed_power", oid = "{FILLER_OID}", quantity = "active_power", raw_range = [-1, 25000] }},
  {{ name = "eaton_power", oid = "{EATON_OID}", quantity = "active_power", missing_below = 0 }},
  {{ name = "input_power", oid = "{BIG_OID}", quantity = "active_power", raw_range = [0, 2147483647] }},
]

[meters.incomer]
role = "facility_input"
device = "ups"
reading = "line_a_power"

[meters.ups]
role = "it"
point = "ups_output"
zone = "hall-a"
device = "ups"
reading = "total_active_power"
"""
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port, meters=meters)
    t_start = time.time_ns()
    with CollectorProcess(conf, ingest_port) as proc:
        time.sleep(6)
        values = scrape(metrics_port)
    polls = values['puewatch_snmp_polls_total{device="ups",result="ok"}']
    assert polls >= 3
    refused = {k: v for k, v in values.items() if k.startswith("puewatch_snmp_values_refused_total")}
    # Counted every poll (the last poll may land between the two reads of the counters).
    for reason, per_poll in (("negative", 1), ("out_of_range", 2), ("unavailable", 1)):
        n = refused[f'puewatch_snmp_values_refused_total{{device="ups",reason="{reason}"}}']
        assert per_poll * (polls - 1) <= n <= per_poll * (polls + 1), (reason, n, polls)
    assert not any('reason="non_finite"' in k for k in refused)
    log = proc.output()
    for name in ("line_b_power", "infeed_power", "input_power", "eaton_power"):
        assert log.count(f"device ups: {name} (") == 1, log[-3000:]  # once, not per poll
    assert "negative power -26 W (raw -26)" in log
    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    end = time.time_ns() + SECOND
    for name in ("line_b_power", "infeed_power", "eaton_power", "input_power", "total_active_power"):
        t, v = store.series("snmp_reading", "value", {"device": "ups", "reading": name}, t_start, end)
        assert len(v) == 0, name  # never a number
    t, raw = store.series("snmp_reading", "raw", {"device": "ups", "reading": "line_b_power"}, t_start, end)
    assert len(raw) >= 3 and set(raw) == {-26.0}  # what the device said stays on record
    t, good = store.series("snmp_reading", "value", {"device": "ups", "reading": "line_a_power"}, t_start, end)
    assert len(good) >= 3 and set(good) == {1200.0}


REG_OID, POW_OID, UPS_OID = (f"{PRIVATE_BASE}.{i}.0" for i in (31, 32, 33))


def test_a_refused_first_register_value_does_not_lock_the_meter_onto_power_and_an_unknown_reading_is_refused(
        tmp_path, snmpd):
    """Found by the SNMP operator audit: the incomer's energy register answered "n/a" on the first poll, and its
    meter read integrated power for the whole run while `report` read the register; and a meter whose `reading`
    the device does not have got no data, unsaid. The meter takes the register once it answers (a stream of the
    register's kind from then on: no Wh read as W). The other, on a device whose profile the configuration names,
    is a configuration error naming what the device has (it was logged at run time, after --check-config passed
    it: found by the config audit)."""
    snmpd.set_objects({REG_OID: ("string", "n/a"), POW_OID: ("gauge", 1300), UPS_OID: ("gauge", 1000)})
    meters = _generic_device("incomer", snmpd.port, f'{{ name = "feed_energy", oid = "{REG_OID}", quantity = '
                             '"active_energy", kind = "register", modulus_raw = 4294967296.0, total = true }, '
                             f'{{ name = "feed_power", oid = "{POW_OID}", quantity = "active_power", total = true }}') + \
        _generic_device("ups", snmpd.port, f'{{ name = "out_power", oid = "{UPS_OID}", quantity = "active_power", '
                        'total = true }') + INCOMER_AND_UPS + """

[meters.lights]
role = "other"
device = "ups"
reading = "out_powr"
"""
    (tmp_path / "check").mkdir()
    conf = write_config(tmp_path / "check", free_port(), free_port(), meters=meters)
    out = subprocess.run([sys.executable, "-m", "puewatch.cli", "collector", "--config", str(conf), "--check-config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and ("meters.lights.reading: device 'ups' (profile 'generic') has no reading named "
                                    "'out_powr'; its readings: out_power, total_active_power") in out.stderr, out
    meters = meters[:meters.index("[meters.lights]")]

    def objects(dt: float) -> dict | None:
        if dt < 4.0:
            return None  # "n/a" still
        return {REG_OID: ("gauge", 1_000_000 + int(1300 * (dt - 4.0) / 3600)), POW_OID: ("gauge", 1300),
                UPS_OID: ("gauge", 1000)}  # the register answers from here on: 1300 W

    proc, t_start, _ = _collector_while_serving(snmpd, tmp_path, meters, objects, 14)
    log = proc.output()
    first, second = "meter incomer reads incomer/total_active_power", "meter incomer reads incomer/total_active_energy"
    assert first in log and second in log and log.index(first) < log.index(second), log[-3000:]
    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    end = time.time_ns() + SECOND
    # The register's own energy, in its 1 Wh steps (1300 W: a step every 2.8 s, shared among the cells it spans),
    # never its ~1e6 Wh read as W (278 Wh a second).
    t, e = store.series("meter_energy", "energy_wh", {"meter": "incomer", "method": "register"}, t_start, end)
    assert len(e) >= 3 and np.all(e <= 2.0) and e.sum() > 0, e
    t, e = store.series("meter_energy", "energy_wh", {"meter": "incomer"}, t_start, end)
    assert np.all(e <= 2.0), e
