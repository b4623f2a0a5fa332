"""`puewatch bench agent --json`: the output contract (fields exactly), on a short run. No timing targets here."""

import json
import subprocess
import sys


def test_bench_agent_json_contract():
    r = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "agent", "--json", "--duration", "2", "--gpus", "2", "--hz", "5"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert list(result) == ["gpus", "hz", "cpu_fraction", "floor_cpu_fraction", "rss_mb"]
    assert result["gpus"] == 2 and result["hz"] == 5.0
    assert result["cpu_fraction"] > 0 and result["floor_cpu_fraction"] > 0
    assert 5 < result["rss_mb"] < 1000
