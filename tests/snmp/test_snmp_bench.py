"""`puewatch bench snmp --json`: the output contract on a short run (few meters). No timing targets here."""

import json
import subprocess
import sys

import pytest


def test_bench_snmp_json_contract():
    r = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "snmp", "--json", "--meters", "12", "--cycles", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == [
        "meters", "readings_per_meter", "cycles", "device_polls_per_s", "snmp_exporter_polls_per_s", "cycle_seconds_1000",
        "poller_cpu_s", "poller_cpu_s_per_1000", "errors", "values_read", "snmp_exporter_values_read",
    ]
    assert out["meters"] == 12 and out["readings_per_meter"] == 8 and out["cycles"] == 1
    assert out["errors"] == 0
    assert out["values_read"] == 12 * 8  # the same 8 objects as snmp_exporter, all valid
    assert out["snmp_exporter_values_read"] == 12 * 8
    assert out["device_polls_per_s"] > 0 and out["snmp_exporter_polls_per_s"] > 0 and out["poller_cpu_s"] > 0
    # The cycle comes from the unrounded rate; the JSON rate is rounded to 0.1 polls/s.
    assert out["cycle_seconds_1000"] == pytest.approx(1000 / out["device_polls_per_s"], rel=1e-3, abs=1e-3)
