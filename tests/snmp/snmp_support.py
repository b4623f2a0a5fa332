"""Fixtures for the SNMP tests: real snmpsim (recordings) and real net-snmp snmpd processes.

Every process is started on 127.0.0.1, on a free port, in a temporary
directory, and stopped by its own PID. A missing server is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from puewatch.benchmarks.servers import stop_process
from puewatch.benchmarks.snmp import Snmpsim, free_udp_port

HERE = Path(__file__).parent
REPO = HERE.parent.parent
RECORDINGS = REPO / "tests" / "fixtures" / "snmp"  # the project's own synthetic agents (README.md there)


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


def check_recordings(data: Path) -> list[str]:
    """The communities (file stems) of the recordings in `data`; a clear failure for a file snmpsim would
    misread (a broken line, or lines out of OID order: snmpsim's GETNEXT follows the file order)."""
    communities = []
    for path in sorted(data.glob("*.snmprec")):
        if path.is_symlink():
            # snmpsim 1.2 names a symlinked file by its target's path cut at the data folder's depth:
            # the community would depend on where the target happens to live.
            pytest.fail(f"{path}: a symlink; snmpsim would not serve it under {path.stem!r} (copy it)", pytrace=False)
        oids = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            parts = line.split("|", 2)
            # the type is a tag number, maybe with a format or variation suffix (4x = hex, 2:numeric)
            if len(parts) != 3 or not parts[1][:1].isdigit() or not all(x.isdigit() for x in parts[0].split(".")):
                pytest.fail(f"{path}:{n}: not an OID|type|value line: {line!r}", pytrace=False)
            oids.append(_oid_key(parts[0]))
        if oids != sorted(oids) or len(set(oids)) != len(oids):
            pytest.fail(f"{path}: lines not in strictly increasing OID order", pytrace=False)
        communities.append(path.stem)
    if not communities:
        pytest.fail(f"no *.snmprec recordings in {data}", pytrace=False)
    return communities


@contextmanager
def serving(data: Path, work: Path) -> Iterator[Snmpsim]:
    """snmpsim serving every recording in `data` (community = file stem), read in place, checked first."""
    communities = check_recordings(data)
    sim = Snmpsim(data, work)
    try:
        sim.wait_ready(communities[0])
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def snmpsim_recordings(tmp_path_factory) -> Iterator[Snmpsim]:
    """snmpsim serving the project's recordings (tests/fixtures/snmp)."""
    with serving(RECORDINGS, tmp_path_factory.mktemp("snmpsim")) as sim:
        yield sim


# --- net-snmp snmpd ---------------------------------------------------------------

PASS_PERSIST = textwrap.dedent(
    r'''
    """pass_persist handler: serves the objects in a JSON state file, re-read on every request."""
    import json, sys
    STATE = sys.argv[1]

    def load():
        with open(STATE) as f:
            return {tuple(int(x) for x in k.split(".")): v for k, v in json.load(f).items()}

    def answer(oid, t_v):
        t, v = t_v
        sys.stdout.write(".%s\n%s\n%s\n" % (".".join(map(str, oid)), t, v))

    out = sys.stdout
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        cmd = line.strip()
        if cmd == "PING":
            out.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = tuple(int(x) for x in sys.stdin.readline().strip().strip(".").split("."))
            objs = load()
            if cmd == "get":
                if oid in objs:
                    answer(oid, objs[oid])
                else:
                    out.write("NONE\n")
            else:
                later = sorted(k for k in objs if k > oid)
                if later:
                    answer(later[0], objs[later[0]])
                else:
                    out.write("NONE\n")
        elif cmd == "set":
            sys.stdin.readline(); sys.stdin.readline()
            out.write("not-writable\n")
        out.flush()
    '''
)

PRIVATE_BASE = "1.3.6.1.4.1.99999.7"  # private test arc served by pass_persist

V3_USERS = {
    # name: (auth proto, auth key, priv proto, priv key, level)
    "shaaes": ("SHA", "auth-pass-1", "AES", "priv-pass-1", "authpriv"),
    "sha256aes": ("SHA-256", "auth-pass-256", "AES", "priv-pass-256", "authpriv"),
    "shaauth": ("SHA", "auth-only-1", None, None, "auth"),
}


class Snmpd:
    """A net-snmp snmpd on 127.0.0.1:<free port> with v2c, SNMPv3 users and a pass_persist subtree."""

    def __init__(self, work: Path, engine_id: str | None = None, users: dict | None = None) -> None:
        self.work = work
        self.port = free_udp_port()
        self.state = work / "state.json"
        self.set_objects({})
        self.script = work / "pass_persist.py"
        self.script.write_text(PASS_PERSIST)
        self.log = work / "snmpd.log"
        self.proc: subprocess.Popen | None = None
        self._start(engine_id, users or V3_USERS, "persist")

    def _start(self, engine_id: str | None, users: dict, persist_name: str) -> None:
        """snmpd with this engine ID (None: net-snmp's default, from the host) and persistent dir (engine boots
        and the users' localized keys live there: a fresh one is a device whose boot counter started again)."""
        persist = self.work / persist_name
        persist.mkdir(exist_ok=True)
        lines = []
        for name, (ap, ak, pp, pk, level) in users.items():
            lines.append(f'createUser {name} {ap} "{ak}"' + (f' {pp} "{pk}"' if pp else ""))
            lines.append(f"rouser -s usm {name} {level}")
        conf = self.work / "snmpd.conf"
        conf.write_text(
            "\n".join(
                [
                    "[snmp] persistentDir " + str(persist),
                    *([f"engineID {engine_id}"] if engine_id else []),
                    "rocommunity public 127.0.0.1",
                    "rocommunity meters 127.0.0.1",
                    *lines,
                    f"pass_persist .{PRIVATE_BASE} {sys.executable} {self.script} {self.state}",
                    "",
                ]
            )
        )
        snmpd = shutil.which("snmpd") or "/usr/sbin/snmpd"
        if not os.path.exists(snmpd):
            pytest.fail("snmpd not found: install the Debian package snmpd (make deps)", pytrace=False)
        env = dict(os.environ, MIBS="")
        self.proc = subprocess.Popen(
            [snmpd, "-f", "-Lf", str(self.log), "-C", "-c", str(conf), "-p", str(self.work / "snmpd.pid"),
             f"udp:127.0.0.1:{self.port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def restart(self, engine_id: str | None = None, users: dict | None = None, persist_name: str = "persist") -> None:
        """Stop snmpd and start it again on the same port: a device rebooted (new boots), re-flashed
        (another `engine_id`), or that lost its persistent state (another `persist_name`)."""
        self.stop()
        self._start(engine_id, users or V3_USERS, persist_name)

    def _wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        env = dict(os.environ, MIBS="")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"snmpd exited with {self.proc.returncode}: {self.log.read_text(errors='replace')[-1500:]}")
            r = subprocess.run(
                ["snmpget", "-v2c", "-c", "public", "-t", "0.5", "-r", "0", f"127.0.0.1:{self.port}", "1.3.6.1.2.1.1.2.0"],
                capture_output=True, text=True, env=env,
            )
            if r.returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail(f"snmpd did not answer within {timeout_s} s: {self.log.read_text(errors='replace')[-1500:]}")

    def set_objects(self, objects: dict[str, tuple[str, int]]) -> None:
        """Replace the pass_persist objects: {oid: (net-snmp type, value)}; atomic (rename)."""
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: list(v) for k, v in objects.items()}))
        tmp.replace(self.state)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory) -> Iterator[Snmpd]:
    d = Snmpd(tmp_path_factory.mktemp("snmpd"))
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A bound UDP socket that never answers: a device that is 'up' but silent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()
