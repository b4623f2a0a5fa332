"""`puewatch bench jobs` at a small size: it runs, reports both timings and the identities hold."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_jobs_small() -> None:
    r = subprocess.run([sys.executable, "-m", "puewatch.cli", "bench", "jobs", "--json", "--nodes", "10",
                        "--minutes", "120", "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["records"] == 10 * 8 * 120 and doc["jobs"] > 80
    assert doc["attribution_s"] > 0 and doc["numpy_groupby_s"] > 0
    assert doc["identity_it_error"] < 1e-12 and doc["identity_dc_error"] < 1e-12
