"""`puewatch bench ingest --json`: a short run of the real collector against a real influxd; the output contract."""

from __future__ import annotations

import json
import math
import subprocess
import sys


def test_bench_ingest_json_contract():
    out = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "ingest", "--json", "--seconds", "3"],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    for key in ("lines_per_s", "influx_direct_lines_per_s", "p99_latency_s", "collector_cpu_s", "lines_per_cpu_s",
                "influxd_direct_cpu_s", "influxd_lines_per_cpu_s", "influxd_via_collector_cpu_s",
                "ingest_only_lines_per_s"):
        assert isinstance(result[key], (int, float)) and result[key] > 0, key
    # every meter sample of the load phase got its pue point written
    assert result["latency_samples"] > 0 and math.isfinite(result["p99_latency_s"])
    assert result["p99_latency_s"] <= result["max_latency_s"] < 60
    # the collector accepted whole agent batches plus the meters' lines, and influxd counted them all
    assert result["lines"] > result["lines_per_batch"]
    assert result["influx_points_written"] >= result["lines"]
    # flow control is reported: answers held while influxd was behind (how many depends on the machine)
    assert isinstance(result["paced_requests"], int) and 0 <= result["paced_fraction"] <= 1
    assert result["paced_s"] >= 0 and (result["paced_requests"] > 0) == (result["paced_s"] > 0)
    # energy is on one gpu_power line in ten: the parser built points for those only
    assert 0 < result["points_routed"] < result["ingest_only_lines"] / 5
