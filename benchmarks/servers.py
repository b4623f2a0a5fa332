"""Real servers for tests and benchmarks: InfluxDB 1.x (`influxd`) and VictoriaMetrics, on 127.0.0.1.

Plain classes and context managers so any test can reuse them:

    with influxd(tmp_path) as db:            # started, /ping answers 204
        db.query("CREATE DATABASE x")
        db.stop(); ...; db.start()           # same port, same data directory

Each server runs in its own directory under the given tmp path, on free loopback
ports, and is stopped by its own PID (SIGTERM, then SIGKILL). A missing binary is
an error, never a skip: the tests exist to talk to the real thing.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOOPBACK = "127.0.0.1"


# Ports this process handed out lately: a server may not have bound one yet, and the kernel may
# give a freed port again at once.
_HANDED: deque[tuple[int, int]] = deque(maxlen=256)


def _worker_share() -> tuple[int, int] | None:
    """(index, count) of this pytest-xdist worker (PYTEST_XDIST_WORKER gwN, PYTEST_XDIST_WORKER_COUNT),
    inherited by the servers and tools a test starts; None outside one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        return int(worker[2:]) % int(count), int(count)
    return None


# Ports a pytest-xdist worker picks from: below Linux's ephemeral range (32768 and up), which
# bind(0) and outgoing connections draw from.
_WORKER_PORTS = range(10_000, 32_768)


def _free(kind: int) -> int:
    """A free loopback port of this socket kind, not one handed out lately by this process. In a
    pytest-xdist worker, one of its share (port % workers == its index, tried at random among
    _WORKER_PORTS), so that tests running side by side never pick the same port between picking it
    and binding it; elsewhere, the kernel's pick (bind to port 0)."""
    share = _worker_share()
    if share is not None:
        index, count = share
        mine = range(_WORKER_PORTS.start + (index - _WORKER_PORTS.start) % count, _WORKER_PORTS.stop, count)
    for _ in range(1000):
        want = 0 if share is None else random.choice(mine)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((LOOPBACK, want))
            except OSError:  # taken
                continue
            port = s.getsockname()[1]
        if (kind, port) not in _HANDED:
            _HANDED.append((kind, port))
            return port
    raise RuntimeError("no free loopback port found in 1000 tries")


def free_port() -> int:
    """A free TCP port on the loopback address (see _free)."""
    return _free(socket.SOCK_STREAM)


def free_udp_port() -> int:
    """A free UDP port on the loopback address (SNMP agents; see _free)."""
    return _free(socket.SOCK_DGRAM)


def snmpsim_binary() -> str:
    """snmpsim-command-responder from this Python's environment, else PATH (the `demo` extra installs it)."""
    from puewatch.errors import UserError

    here = Path(sys.executable).parent / "snmpsim-command-responder"
    if here.exists():
        return str(here)
    found = shutil.which("snmpsim-command-responder")
    if not found:
        raise UserError("snmpsim-command-responder not found: pip install 'puewatch[demo]' (snmpsim, pysmi)")
    return found


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, wait up to grace_s, then SIGKILL; a no-op for a process that has exited."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install the Debian package (make deps)")
    return path


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body) for any status, raises only on connection errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _Server:
    name = "server"
    # A free port is only free until someone else binds it (another test's server, any
    # program): a first start that loses that race picks new ports and tries again.
    PORT_ATTEMPTS = 3

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = self.root / f"{self.name}.log"
        self.popen: subprocess.Popen | None = None
        self.started = False
        self.pick_ports()

    def pick_ports(self) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"

    def args(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 30.0) -> None:
        """Start and wait until it answers; a restart keeps the ports (clients keep their URL)."""
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} already running"
        for attempt in range(1, self.PORT_ATTEMPTS + 1):
            offset = self.log.stat().st_size if self.log.exists() else 0
            with open(self.log, "ab") as logf:
                self.popen = subprocess.Popen(self.args(), stdout=logf, stderr=subprocess.STDOUT, cwd=self.root)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    with open(self.log, "rb") as f:
                        f.seek(offset)
                        tail = f.read().decode(errors="replace")
                    if "address already in use" in tail and not self.started and attempt < self.PORT_ATTEMPTS:
                        self.pick_ports()
                        break
                    raise RuntimeError(f"{self.name} exited with {self.popen.returncode}: {tail[-2000:]}")
                try:
                    if self.ready():
                        self.started = True
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout_s} s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.popen is not None:
            stop_process(self.popen, timeout_s)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Influxd(_Server):
    """InfluxDB 1.x with a config file in its directory (see shared real-components.md)."""

    name = "influxd"

    def __init__(self, root: Path, auth: bool = False, admin: tuple[str, str] = ("admin", "adminpass"), cq_interval: str = "1s") -> None:
        self.auth = auth
        self.admin = admin
        self.cq_interval = cq_interval
        super().__init__(root)

    def pick_ports(self) -> None:
        super().pick_ports()
        self.rpc_port = free_port()
        self.config = self.root / "influxdb.conf"
        self.config.write_text(
            f"""reporting-enabled = false
bind-address = "{LOOPBACK}:{self.rpc_port}"
[meta]
  dir = "{self.root / 'meta'}"
[data]
  dir = "{self.root / 'data'}"
  wal-dir = "{self.root / 'wal'}"
  query-log-enabled = false
[http]
  bind-address = "{LOOPBACK}:{self.port}"
  auth-enabled = {str(self.auth).lower()}
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  run-interval = "{self.cq_interval}"
  log-enabled = true
"""
        )

    def args(self) -> list[str]:
        return [_binary("influxd"), "-config", str(self.config)]

    def ready(self) -> bool:
        return http("GET", self.url + "/ping", timeout=1.0)[0] == 204

    def start(self, timeout_s: float = 30.0) -> None:
        super().start(timeout_s)
        if self.auth:
            # The first user may be created without credentials, and must be an admin.
            status, body = http("POST", self.url + "/query", urllib.parse.urlencode(
                {"q": f"CREATE USER {self.admin[0]} WITH PASSWORD '{self.admin[1]}' WITH ALL PRIVILEGES"}).encode(),
                {"Content-Type": "application/x-www-form-urlencoded", **self._auth_header()})
            assert status == 200, body

    def _auth_header(self) -> dict[str, str]:
        if not self.auth:
            return {}
        token = base64.b64encode(f"{self.admin[0]}:{self.admin[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def query(self, q: str, db: str | None = None, epoch: str = "ns") -> list[dict]:
        """Run InfluxQL as the admin; returns the `results` list; raises on an HTTP or statement error."""
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        status, body = http("POST", self.url + "/query", urllib.parse.urlencode(params).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded", **self._auth_header()})
        if status != 200:
            raise RuntimeError(f"influxd /query {status}: {body[:500]!r}")
        results = json.loads(body)["results"]
        for r in results:
            if "error" in r:
                raise RuntimeError(f"influxd query {q!r}: {r['error']}")
        return results

    def points(self, q: str, db: str) -> list[list]:
        """The rows of the first series of a SELECT (empty when there is none)."""
        res = self.query(q, db)[0]
        rows: list[list] = []
        for series in res.get("series", []):
            rows.extend(series["values"])
        return rows

    def write(self, body: bytes, db: str, rp: str | None = None) -> None:
        params = {"db": db, "precision": "ns"}
        if rp:
            params["rp"] = rp
        status, resp = http("POST", self.url + "/write?" + urllib.parse.urlencode(params), body, self._auth_header())
        if status != 204:
            raise RuntimeError(f"influxd /write {status}: {resp[:500]!r}")


class VictoriaMetrics(_Server):
    """VictoriaMetrics single node: an InfluxDB v2 write endpoint that can be read back."""

    name = "victoria-metrics"

    def __init__(self, root: Path) -> None:
        self.data = Path(root) / "data"
        super().__init__(root)

    def args(self) -> list[str]:
        return [
            _binary("victoria-metrics"),
            f"-storageDataPath={self.data}",
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=WARN",
        ]

    def ready(self) -> bool:
        return http("GET", self.url + "/health", timeout=1.0)[0] == 200

    def export(self, match: str) -> dict[str, tuple[list[int], list[float]]]:
        """Flush, then read every series matching `match` (a series selector): {metric labels: (ms, values)}."""
        status, body = http("GET", self.url + "/internal/force_flush")
        assert status == 200, body
        status, body = http("GET", self.url + "/api/v1/export?" + urllib.parse.urlencode({"match[]": match}))
        assert status == 200, body
        out = {}
        for line in body.splitlines():
            row = json.loads(line)
            labels = ",".join(f"{k}={v}" for k, v in sorted(row["metric"].items()))
            out[labels] = (row["timestamps"], row["values"])
        return out


def influxd(root: Path, **kwargs) -> Influxd:
    """An influxd for a `with` block: started on entry, stopped on exit."""
    return Influxd(root, **kwargs)


def victoria_metrics(root: Path) -> VictoriaMetrics:
    """A VictoriaMetrics for a `with` block: started on entry, stopped on exit."""
    return VictoriaMetrics(root)


@contextmanager
def scripted_http(status: int, body: bytes = b"", delay_s: float = 0.0) -> Iterator[str]:
    """A plain HTTP endpoint on 127.0.0.1 that answers every request with `status` and `body`
    after `delay_s` (to see how clients map 429/5xx/timeouts, which real servers do not produce
    on demand). Yields its base URL."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _answer(self):
            length = int(self.headers.get("Content-Length", "0"))
            if length:
                self.rfile.read(length)
            if delay_s:
                time.sleep(delay_s)
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
