"""SNMP meters named by where they sit at the device (`location` + `quantity`), not by reading name.

A real collector polls two snmpsim recordings (tests/fixtures/snmp): the incomer is a Raritan
PDU's outlets (`location = "outlet"`: both outlets summed), the IT meter a Sentry4's inlets
(`location = "inlet"`: the three cords of master and link unit summed). The collector stores the
sums as the readings the selectors resolve to, its PUE is their ratio, and `puewatch report`
on the same config reads the same stored series and gives the same PUE.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from collector_support import CollectorProcess, free_port, write_config
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.core.timefmt import format_time
from snmp_support import snmpsim_recordings  # noqa: F401 (fixture)

SECOND = 10**9
# Raritan outlets: 17003 and 17558 tenths of W (one decimal digit); Sentry4 cords 1234 + 987 + 612 W.
P_OUTLETS_W = (17003 + 17558) / 10
P_INLETS_W = 1234.0 + 987.0 + 612.0


def meters(port: int) -> str:
    devices = "".join(f"""
[[snmp.devices]]
name = "{name}"
host = "127.0.0.1"
port = {port}
community = "{community}"
profile = "{profile}"
interval_s = 1.0
timeout_s = 0.9
retries = 0
""" for name, community, profile in (("pdu", "raritan-pdu2-one-inlet", "raritan-pdu2"),
                                      ("cdu", "sentry4-master-link", "sentry4")))
    return devices + """
[meters.incomer]
role = "facility_input"
device = "pdu"
location = "outlet"
quantity = "active_power"

[meters.racks]
role = "it"
point = "it_input"
zone = "hall-a"
device = "cdu"
location = "inlet"
quantity = "active_power"
"""


def test_location_meters_sum_their_rows_live_and_in_a_report(tmp_path, snmpsim_recordings):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port, meters=meters(snmpsim_recordings.port))
    t_start = time.time_ns()
    with CollectorProcess(conf, ingest_port) as proc:
        time.sleep(10)
    log = proc.output()
    assert "meter incomer reads pdu/sum_outlet_active_power" not in log  # resolved at load, never guessed
    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    end = time.time_ns() + SECOND
    for device, reading, watts in (("pdu", "sum_outlet_active_power", P_OUTLETS_W),
                                   ("cdu", "sum_inlet_active_power", P_INLETS_W)):
        _, raw = store.series("snmp_reading", "value", {"device": device, "reading": reading}, t_start, end)
        assert len(raw) >= 5 and raw == pytest.approx([watts] * len(raw), rel=1e-12), log[-2000:]
    t, pue = store.series("pue", "pue", {"site": "lab", "window": "1m", "category": "3"}, t_start, end)
    assert len(pue) >= 3, log[-2000:]
    assert pue == pytest.approx([P_OUTLETS_W / P_INLETS_W] * len(pue), rel=1e-9)
    store.close()

    # The report resolves the selectors with the same function and reads the same series.
    lo, hi = int(t[0]) // SECOND * SECOND, (int(t[-1]) // SECOND + 1) * SECOND
    out = subprocess.run([sys.executable, "-m", "puewatch.cli", "report", "--config", str(conf), "--from",
                          format_time(lo), "--to", format_time(hi), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    # Over the time both meters were observed, the report's PUE is the ratio of the stored sums.
    assert report["pue_joint"] == pytest.approx(P_OUTLETS_W / P_INLETS_W, rel=1e-6), report
    assert [m["meter"] for m in report["meters"]] == ["incomer", "racks"]

    # A location the profile has no reading at: one line naming the meter, the profile and what it has.
    bad = tmp_path / "bad.toml"
    bad.write_text(conf.read_text().replace('location = "inlet"', 'location = "ups_bypass"'))
    for command in (["report", "--config", str(bad), "--from", format_time(lo), "--to", format_time(hi)],
                    ["collector", "--config", str(bad), "--check-config"]):
        out = subprocess.run([sys.executable, "-m", "puewatch.cli", *command], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert ("meters.racks.location: profile 'sentry4' has no active_power reading at 'ups_bypass' "
                "(it has active_power at: inlet, phase, total)") in out.stderr
