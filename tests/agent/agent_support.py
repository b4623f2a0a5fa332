"""Fixtures for the node agent's tests: the fake NVML library, a real HTTP receiver, agent processes.

Every process a test starts is stopped by its own PID at teardown.
"""

from __future__ import annotations

import os
import signal
from signal import SIGKILL, SIGTERM
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from puewatch.agent import fake_nvml

HERE = Path(__file__).parent
REPO = HERE.parent.parent
# The tests use the very C source that ships in the package (and that the benchmark compiles).
FIXTURE_C = REPO / "tests" / "fixtures" / "fake_nvml" / "fake_nvml.c"


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory) -> Path:
    """A directory holding the fake libnvidia-ml.so.1, compiled with gcc."""
    # tests/fixtures/fake_nvml/fake_nvml.c is a link to the packaged source: one file, not two copies.
    assert FIXTURE_C.resolve() == fake_nvml.SOURCE.resolve()
    d = tmp_path_factory.mktemp("fake_nvml")
    lib = fake_nvml.build(d)
    assert lib.name == "libnvidia-ml.so.1"
    out = subprocess.run(["objdump", "-p", str(lib)], capture_output=True, text=True)
    if out.returncode == 0:  # objdump is optional; gcc's soname flag is what matters
        assert "SONAME               libnvidia-ml.so.1" in out.stdout
    return d


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Proc:
    """A child process stopped by PID (never by name) when the test ends."""

    def __init__(self, args: list[str], env: dict[str, str] | None, log: Path, cwd: Path | None = None) -> None:
        self.log = log
        self._logf = open(log, "ab")
        self.popen = subprocess.Popen(args, env=env, stdout=self._logf, stderr=subprocess.STDOUT, cwd=cwd)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig: int = SIGTERM, timeout_s: float = 15.0) -> int:
        if self.alive():
            os.kill(self.pid, sig)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        if not self._logf.closed:
            self._logf.close()
        return self.popen.returncode

    def kill(self) -> None:
        self.stop(SIGKILL)

    def output(self) -> str:
        if not self._logf.closed:
            self._logf.flush()
        return self.log.read_text(errors="replace")


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop(SIGKILL if p.alive() else SIGTERM)


class Receiver:
    """The test HTTP write endpoint (tests/agent/receiver.py) in its own process."""

    def __init__(self, procs: list[Proc], directory: Path, port: int = 0, **opts) -> None:
        self.dir = directory
        self.out = directory / "received.lp"
        self.procs = procs
        self.port = port
        self.opts = opts
        self.proc: Proc | None = None

    def start(self) -> Receiver:
        port_file = self.dir / "receiver.port"
        port_file.unlink(missing_ok=True)
        args = [sys.executable, str(HERE / "receiver.py"), "--port", str(self.port), "--port-file", str(port_file), "--out", str(self.out)]
        for key, value in self.opts.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = Proc(args, None, self.dir / "receiver.log")
        self.procs.append(self.proc)
        self.port = int(wait_for(lambda: port_file.exists() and port_file.read_text(), 10, "the receiver's port"))
        return self

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop(SIGKILL)

    @property
    def url(self) -> str:
        scheme = "https" if "tls_cert" in self.opts else "http"
        return f"{scheme}://127.0.0.1:{self.port}/api/v2/write"

    def lines(self) -> list[str]:
        """The lines received so far: whole ones only (every body ends with a newline; a body the receiver
        is still writing, in several writes, ends in a partial line that a read meanwhile would see: it
        failed a parse in one run in many)."""
        if not self.out.exists():
            return []
        text = self.out.read_text()
        return [l for l in text[: text.rfind("\n") + 1].splitlines() if l]


@pytest.fixture
def receiver(procs, tmp_path) -> Receiver:
    return Receiver(procs, tmp_path).start()


def wait_log(agent: "Proc", text: str, timeout_s: float = 20.0) -> None:
    """Wait for `text` in the agent's log; fail at once with the log if the agent died."""

    def seen():
        if text in agent.output():
            return True
        assert agent.alive(), f"agent exited with {agent.popen.returncode}:\n{agent.output()}"
        return False

    wait_for(seen, timeout_s, repr(text))


def write_config(path: Path, url: str, spool: Path, sources: str, agent_extra: str = "", output_extra: str = "") -> Path:
    path.write_text(
        f"""
[agent]
node = "testnode"
spool_dir = "{spool}"
flush_interval_s = 0.5
self_interval_s = 1.0
status_interval_s = 0.5
log_level = "debug"
{agent_extra}

[output]
url = "{url}"
org = "test"
retry_initial_s = 0.2
retry_max_s = 1.0
timeout_s = 5.0
{output_extra}

{sources}
"""
    )
    return path


def start_agent(procs: list[Proc], config: Path, log: Path, env_extra: dict[str, str] | None = None) -> Proc:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(env_extra or {})
    p = Proc([sys.executable, "-m", "puewatch.cli", "agent", "--config", str(config)], env, log)
    procs.append(p)
    return p


def nvml_env(lib_dir: Path, script: Path, log: Path | None = None) -> dict[str, str]:
    env = {"LD_LIBRARY_PATH": str(lib_dir), "FAKE_NVML_CONFIG": str(script)}
    if log is not None:
        env["FAKE_NVML_LOG"] = str(log)
    return env


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """Parse the agent's own (simple) lines: no escaped characters in keys or tag values."""
    head, rest = line.split(" ", 1)
    fields_text, ts = rest.rsplit(" ", 1)
    measurement, *tag_parts = head.split(",")
    tags = dict(t.split("=", 1) for t in tag_parts)
    fields: dict[str, object] = {}
    for item in _split_fields(fields_text):
        k, v = item.split("=", 1)
        if v.startswith('"'):
            fields[k] = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif v.endswith("i"):
            fields[k] = int(v[:-1])
        elif v in ("true", "false"):
            fields[k] = v == "true"
        else:
            fields[k] = float(v)
    return measurement, tags, fields, int(ts)


def _split_fields(text: str) -> list[str]:
    out, cur, in_str, esc = [], [], False, False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == '"':
            cur.append(ch)
            in_str = not in_str
        elif ch == "," and not in_str:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


# An nvml source that samples fast and retries a lost GPU (or NVML) within a second: the recovery tests' table.
NVML_RETRY_TABLE = """
[sources.nvml]
interval_s = 0.1
energy_interval_s = 0.2
state_interval_s = 0.5
process_interval_s = 1.0
retry_initial_s = 0.2
retry_max_s = 0.4
"""
