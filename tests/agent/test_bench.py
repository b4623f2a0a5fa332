"""`puewatch bench agent --json`: the output contract (fields exactly), on a short run. No timing targets here."""

import json
import os
import subprocess
import sys

import pytest
from agent_support import nvml_env


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


def test_bench_agent_real_driver_says_when_nvml_does_not_start(tmp_path, fake_nvml_dir):
    """`--driver real` where the driver does not start: one clear line, exit 2, no traceback. The driver is the
    fake libnvidia-ml (the only fake: no GPU here), found first through LD_LIBRARY_PATH on any machine, scripted
    so that nvmlInit fails as a node's unloaded driver does (NVML_ERROR_DRIVER_NOT_LOADED). On a GPU node the
    same command measures the agent against the real driver (test_bench_agent_real_driver, marker gpu)."""
    script = tmp_path / "gpus.txt"
    script.write_text("count 1\ndriver_down_from_s 0\n")
    r = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "agent", "--driver", "real", "--duration", "1"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **nvml_env(fake_nvml_dir, script)},
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--driver real: NVML did not start on this machine" in r.stderr and "DriverNotLoaded" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.gpu
def test_bench_agent_real_driver():
    """On a GPU node: the agent and the floor against the real driver, every GPU it has."""
    r = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "agent", "--driver", "real", "--json", "--duration", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    import pynvml

    pynvml.nvmlInit()
    try:
        assert result["gpus"] == pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    assert result["cpu_fraction"] > 0 and result["floor_cpu_fraction"] > 0
    print(f"bench agent --driver real: {result}")
