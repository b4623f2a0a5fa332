"""`puewatch bench ingest --json`: a short run against a real influxd; the output contract."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_ingest_json_contract():
    out = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "ingest", "--json", "--seconds", "3"],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    for key in ("lines_per_s", "influx_direct_lines_per_s", "p99_latency_s", "cpu_s", "lines_per_cpu_s", "ingest_only_lines_per_s"):
        assert isinstance(result[key], (int, float)) and result[key] > 0, key
    # every line the server accepted reached influxd, and the gpu_power lines were routed as points
    assert result["lines"] > 0 and result["lines"] % result["lines_per_batch"] == 0
    assert 0 < result["points_routed"] < result["lines"]
