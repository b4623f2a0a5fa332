"""`puewatch bench jobs` at a small size: it runs, reports both timings and the identities hold; it reads a small
ledger whole and series by series from an embedded store and a real influxd."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_jobs_small() -> None:
    r = subprocess.run([sys.executable, "-m", "puewatch.cli", "bench", "jobs", "--json", "--nodes", "10",
                        "--minutes", "120", "--repeat", "1", "--read-nodes", "3", "--read-influx-nodes", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["records"] == 10 * 8 * 120 and doc["jobs"] > 80
    assert doc["attribution_s"] > 0 and doc["numpy_groupby_s"] > 0
    assert doc["identity_it_error"] < 1e-12 and doc["identity_dc_error"] < 1e-12
    # The ledger read both ways from both stores (the bench checks that they agree).
    assert doc["read_records"] == 3 * 8 * 120 and doc["influx_records"] == 2 * 8 * 120
    assert all(doc[k] > 0 for k in ("read_whole_s", "read_per_series_s", "influx_whole_s", "influx_per_series_s"))
