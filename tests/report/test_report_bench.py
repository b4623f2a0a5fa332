"""`puewatch bench report`: the output contract on a short run (few meters, a month; real influxd). No timing targets here."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_report_json_contract(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "report", "--json", "--meters", "12", "--days", "31",
         "--influx-meters", "2", "--rows-meters", "2", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["meters"] == 12 and out["days"] == 31 and out["step_s"] == 60.0
    # Every meter has a reading a minute but for the faults (a gap of an hour on meter 7, two days on meter 11).
    assert 12 * 31 * 1440 - 60 - 2880 - 60 <= out["points"] <= 12 * 31 * 1440
    assert out["embedded_same_report"] is True  # the store gives back exactly the synthesised readings
    assert out["meets_target"] == (out["report_seconds"] < out["target_seconds"] == 10.0)
    for key in ("engine_seconds", "report_seconds", "embedded_read_seconds", "numpy_day_energy_seconds"):
        assert out[key] > 0, key
    assert out["rows_subset"]["meters"] == 2 and out["rows_subset"]["same_readings"] is True
    ix = out["influx_subset"]
    assert ix["meters"] == 2 and ix["same_readings"] is True
    assert ix["read_points_per_s"] > 0 and ix["http_bytes_only_points_per_s"] > 0 and ix["json_decode_points_per_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the temporary stores are removed


def test_bench_report_table_and_bad_arguments(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "report", "--meters", "4", "--days", "2", "--influx-meters", "0",
         "--rows-meters", "1", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "report from the embedded store, end to end:" in r.stdout and "same report" in r.stdout
    assert "influxd" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "puewatch.cli", "bench", "report", "--meters", "3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--meters must be at least 4" in r.stderr and "Traceback" not in r.stderr
