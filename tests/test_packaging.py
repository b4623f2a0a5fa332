"""The wheel: what it contains, what it declares, and that it installs and runs offline.

The wheel is built from a copy of the source tree (so the test leaves no build/ or
egg-info behind in the checkout) with `pip wheel --no-deps --no-build-isolation --no-index`:
no network. It is then installed with `--no-deps --no-index` into a fresh plain venv,
outside the checkout, and run from there.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import puewatch

ROOT = Path(__file__).resolve().parents[1]
AGENT_EXTRA = ("nvidia-ml-py", "psutil")
NUMERIC = ("numba", "numpy", "llvmlite", "pandas")


def _run(args: list, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "puewatch-demo"))
    out = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
          "--quiet", "-w", out], cwd=src)
    wheels = list(out.glob("puewatch-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _metadata(whl: Path):
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def test_wheel_holds_the_profiles_the_fake_nvml_source_and_every_package(wheel):
    assert wheel.name.startswith(f"puewatch-{puewatch.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        profiles = sorted(p.name for p in (ROOT / "config" / "profiles").glob("*.toml"))
        assert len(profiles) >= 10
        for p in profiles:
            assert f"puewatch/profiles/{p}" in names, p
        assert "puewatch/agent/fake_nvml/fake_nvml.c" in names
        for module in ("puewatch/cli.py", "puewatch/agent/main.py", "puewatch/collector/main.py",
                       "puewatch/kernels/__init__.py", "puewatch/benchmarks/__init__.py",
                       "puewatch/collector/stores/embedded.py", "puewatch/collector/snmp/poller.py",
                       "puewatch/agent/sources/sim.py"):
            assert module in names, module
        # Every module of the source tree is in the wheel under its installed name.
        dirs = {"agent": "puewatch/agent", "collector": "puewatch/collector", "kernels": "puewatch/kernels",
                "benchmarks": "puewatch/benchmarks", "puewatch": "puewatch"}
        for top, installed in dirs.items():
            for f in (ROOT / top).rglob("*.py"):
                assert f"{installed}/{f.relative_to(ROOT / top).as_posix()}" in names, f
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        assert "puewatch = puewatch.cli:main" in entry
        assert not any(n.startswith(("tests/", "agent/", "collector/")) for n in names)


def test_wheel_declares_the_extras_and_the_agent_does_not_pull_numba(wheel):
    meta = _metadata(wheel)
    assert meta["Name"] == "puewatch" and meta["Version"] == puewatch.__version__
    assert meta["Requires-Python"] == ">=3.11"
    extras = set(meta.get_all("Provides-Extra"))
    assert {"agent", "collector", "demo", "test", "bench"} <= extras, extras
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]

    def wanted(extra: str) -> set[str]:
        return {r.name.lower() for r in reqs if r.marker is not None and r.marker.evaluate({"extra": extra})}

    assert not [r for r in reqs if r.marker is None], "the base install must need nothing"
    agent = wanted("agent")
    assert set(AGENT_EXTRA) <= agent and not agent & set(NUMERIC), agent
    collector = wanted("collector")
    assert {"numba", "numpy", "pysnmp", "influxdb-client"} <= collector, collector
    assert "puewatch" in wanted("demo") and {"snmpsim"} <= wanted("demo")
    assert {"pytest", "puewatch"} <= wanted("test")
    # demo and test pull the agent and collector extras through puewatch[...]
    demo_self = next(r for r in reqs if r.name == "puewatch" and r.marker.evaluate({"extra": "demo"}))
    assert {"agent", "collector"} <= demo_self.extras


def _agent_site(dest: Path) -> Path:
    """A directory holding only the agent extra's distributions (and theirs), linked from this venv:
    the fresh venv gets the agent's dependencies without an index and without numba."""
    dest.mkdir()
    todo, seen = list(AGENT_EXTRA), set()
    while todo:
        name = todo.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        dist = metadata.distribution(name)
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        base = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            if not (dest / top).exists():
                (dest / top).symlink_to(base / top)
    assert not seen & set(NUMERIC), seen
    return dest


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
          "--disable-pip-version-check", wheel], cwd=tmp)
    return venv


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def test_installed_wheel_runs_from_a_fresh_venv(fresh_venv, tmp_path):
    r = _run([fresh_venv / "bin" / "puewatch", "--version"], cwd=tmp_path, env=_clean_env())
    assert puewatch.__version__ in r.stdout + r.stderr
    # The installed copy, not this checkout, answers.
    r = _run([fresh_venv / "bin" / "python", "-c", "import puewatch; print(puewatch.__file__)"],
             cwd=tmp_path, env=_clean_env())
    assert Path(r.stdout.strip()).is_relative_to(fresh_venv), r.stdout
    # The profiles are found as package data of the installed wheel.
    r = _run([fresh_venv / "bin" / "python", "-c",
              "from importlib.resources import files; print(sorted(p.name for p in files('puewatch.profiles').iterdir()))"],
             cwd=tmp_path, env=_clean_env())
    assert "'apc-ups.toml'" in r.stdout and "'generic.toml'" in r.stdout


def test_agent_imports_and_checks_its_config_without_numba(fresh_venv, tmp_path):
    site = _agent_site(tmp_path / "agent-deps")
    env = _clean_env(PYTHONPATH=str(site))
    py = fresh_venv / "bin" / "python"
    r = subprocess.run([py, "-c", "import numba"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'numba'" in r.stderr, "numba must be absent for this test"
    r = _run([py, "-c", "import json, sys, puewatch.agent.main as m; print(json.dumps([m.__file__, sorted(sys.modules)]))"],
             cwd=tmp_path, env=env)
    path, modules = json.loads(r.stdout)
    assert Path(path).is_relative_to(fresh_venv)
    forbidden = [m for m in modules if m.split(".")[0] in NUMERIC
                 or m.startswith(("puewatch.collector", "puewatch.kernels"))]
    assert not forbidden, forbidden
    # The sample agent configuration validates with only the agent's dependencies installed
    # (its token file and spool pointed into the test's directory).
    token = tmp_path / "agent.token"
    token.write_text("0123456789abcdef0123\n")
    conf = tmp_path / "agent.toml"
    conf.write_text((ROOT / "config" / "agent.toml").read_text()
                    .replace("/run/credentials/puewatch-agent.service/agent-token", str(token))
                    .replace("/var/lib/puewatch/agent/spool", str(tmp_path / "spool")))
    r = _run([fresh_venv / "bin" / "puewatch", "agent", "--config", conf, "--check-config"], cwd=tmp_path, env=env)
    assert "OK (sources: nvml, host" in r.stdout + r.stderr


def test_the_kernels_folder_refuses_its_bare_module_name() -> None:
    """`kernels/` is importable as `kernels` from the checkout's root; Numba's cache beside it is keyed by
    file, so entries compiled under that name crashed every later collector start ("No module named
    'kernels'", found by two audits). Imported so, it says how to import it instead."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", "import kernels.rolling"], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "ImportError: import puewatch.kernels, not kernels" in out.stderr
