"""An agent-only install (`pip install "puewatch[agent]"`): every other command says which extra it needs.

The collector's modules are made unimportable in a subprocess (a meta-path finder that refuses them, as if
they were never installed), and the CLI is run as a user runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every third-party module the `collector`, `report`, `bench` and `demo` extras bring.
NOT_ON_AN_AGENT = ("numpy", "numba", "llvmlite", "pysnmp", "pyasn1", "cryptography", "rfc8785", "influxdb_client",
                   "urllib3", "prometheus_client", "rich", "matplotlib", "pandas", "snmpsim", "pysmi")
SHIM = f"""
import sys
BLOCKED = {NOT_ON_AN_AGENT!r}
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Absent())
from puewatch.cli import main
sys.argv[0] = "puewatch"
sys.exit(main(sys.argv[1:]))
"""


def _agent_only(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SHIM, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("args", [
    ["collector", "--config", "config/collector.toml", "--check-config"],
    ["report", "--config", "config/collector.toml", "--from", "2025-01-01", "--to", "2025-02-01"],
    ["export", "--config", "config/collector.toml", "--from", "2025-01-01", "--to", "2025-02-01"],
    ["keys", "new", "--out", "KEYS"],
    ["snmp", "probe", "127.0.0.1:1"],
    ["influx", "setup", "--database", "x", "--dry-run"],
    ["city", "r.json", "--preset", "miit-2021"],
    ["check", "r.json", "--preset", "miit-2021"],
])
def test_every_command_outside_the_agent_names_its_extra(args: list[str], tmp_path: Path) -> None:
    args = [str(tmp_path / "keys") if a == "KEYS" else a for a in args]
    out = _agent_only(*args, cwd=ROOT)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"puewatch {args[0]}: error: this needs the 'collector' extra (Python module "), out.stderr
    assert out.stderr.rstrip().endswith('pip install "puewatch[collector]"'), out.stderr


def test_the_agent_itself_runs_without_them(tmp_path: Path) -> None:
    out = _agent_only("agent", "--config", "config/agent.toml", "--check-config", cwd=ROOT)
    assert out.returncode == 0 and "OK (sources: nvml, host" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "extra" not in out.stderr, out.stderr


def test_the_demo_names_its_own_extra(tmp_path: Path) -> None:
    out = _agent_only("demo", "--duration", "1", "--dir", str(tmp_path / "d"), cwd=ROOT)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "puewatch[demo]" in out.stderr, out.stderr
