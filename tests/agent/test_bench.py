"""`puewatch bench agent --json`: the output contract (fields exactly), on a short run. No timing targets here."""

import ctypes.util
import json
import subprocess
import sys

import pytest


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


def _without_nvidia_driver() -> dict:
    """This machine's environment with no library path that could lead pynvml to a fake libnvidia-ml."""
    import os

    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    return env


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="this machine has the NVIDIA driver: test_bench_agent_real_driver (marker gpu) measures it")
def test_bench_agent_real_driver_says_when_there_is_none():
    """`--driver real` on a machine without the NVIDIA driver (this one): one clear line, exit 2, no traceback.
    On a GPU node the same command measures the agent against the real driver (run there by hand)."""
    r = subprocess.run(
        [sys.executable, "-m", "puewatch.cli", "bench", "agent", "--driver", "real", "--duration", "1"],
        capture_output=True, text=True, timeout=60, env=_without_nvidia_driver(),
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--driver real: NVML did not start on this machine" in r.stderr and "LibraryNotFound" in r.stderr
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
