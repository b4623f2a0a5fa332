"""Helpers for the collector-level tests: a real `puewatch collector` subprocess, its config,
posting agent lines to its ingest endpoint and reading its /metrics.

Imported by this unique name (several folders have a conftest.py, so helpers never live there).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _p in (_TESTS, _TESTS / "snmp"):  # servers.py, snmp_support.py
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from servers import free_port, http  # noqa: E402

TOKEN = "agent-token-0123456789abcdef"  # agent gpu-a-1's
FEEDER_TOKEN = "feeder-token-0123456789abcdef"  # the feeder of INGEST_METERS (a Telegraf reading Modbus)
PUEWATCH = [sys.executable, "-m", "puewatch.cli"]

# Two meters fed through ingest: an incomer power gauge (kW) and a UPS output energy register (Wh).
INGEST_METERS = """
[meters.incomer]
role = "facility_input"
measurement = "modbus"
tags = { meter = "incomer" }
field = "power_kw"
unit = "kW"

[meters.ups]
role = "it"
point = "ups_output"
zone = "hall-a"
measurement = "modbus"
tags = { meter = "ups" }
field = "energy_wh"
unit = "Wh"
register = true
"""


def write_config(tmp: Path, ingest_port: int, metrics_port: int, extra: str = "", *, meters: str = INGEST_METERS,
                 windows: str = '["1m", "2m"]', settle_s: float = 3.0) -> Path:
    """collector.toml in `tmp` (state in tmp/state), with a token file for agent gpu-a-1 (and the feeder of INGEST_METERS)."""
    tokens = tmp / "tokens"
    feeder = f"telegraf {FEEDER_TOKEN} feeder:incomer,ups\n" if meters == INGEST_METERS else ""
    tokens.write_text(f"gpu-a-1 {TOKEN}\n{feeder}")
    tokens.chmod(0o600)
    conf = tmp / "collector.toml"
    conf.write_text(
        f"""
[collector]
site = "lab"
windows = {windows}
min_coverage = 0.05
settle_s = {settle_s}
state_dir = "{tmp / 'state'}"
checkpoint_interval_s = 2.0

[ingest]
listen = "127.0.0.1"
port = {ingest_port}
token_file = "{tokens}"

[metrics]
listen = "127.0.0.1:{metrics_port}"
{meters}
[zones.hall-a]
nodes = ["gpu-a-*"]
{extra}
"""
    )
    return conf


def influx1_section(url: str, database: str, timeout_s: float = 2.0) -> str:
    """A `[store.influx1]` section for write_config's `extra`: the collector writing to a real influxd."""
    return f'[store.influx1]\nurl = "{url}"\ndatabase = "{database}"\ntimeout_s = {timeout_s}\n'


def post(port: int, body: str, token: str = TOKEN) -> int:
    """POST line protocol (ns precision) to the collector's v2 write endpoint (as agent gpu-a-1); returns the status."""
    status, _ = http(
        "POST",
        f"http://127.0.0.1:{port}/api/v2/write?bucket=b&org=o&precision=ns",
        body.encode(),
        {"Authorization": f"Token {token}"},
    )
    return status


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def wait_until(cond, what: str, timeout_s: float = 30.0) -> None:
    """Poll `cond()` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s: {what}"
        time.sleep(0.05)


def scrape(metrics_port: int) -> dict[str, float]:
    """/metrics as {'name{labels}': value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


class CollectorProcess:
    """`puewatch collector --config CONF` as a subprocess; stop() sends SIGTERM and checks the exit."""

    def __init__(self, conf: Path, ingest_port: int, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> None:
        # prefix: a command the collector runs under (e.g. nsenter into a mount namespace).
        self.log = conf.parent / f"collector-{time.monotonic_ns()}.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen([*prefix, *PUEWATCH, "collector", "--config", str(conf)],
                                     env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=self._logf)
        deadline = time.monotonic() + 60  # a loaded 2-core machine; the kernels come from the cache (conftest)
        while self.proc.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", ingest_port)) == 0:
                    return
            time.sleep(0.1)
        self.stop(check=False)
        raise AssertionError(f"collector did not start: {self.output()[-2000:]}")

    def output(self) -> str:
        if not self._logf.closed:
            self._logf.flush()
        return self.log.read_text(errors="replace")

    def stop(self, check: bool = True) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._logf.close()
        if check:
            assert self.proc.returncode == 0, self.output()[-3000:]

    def __enter__(self) -> "CollectorProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop(check=exc[0] is None)
