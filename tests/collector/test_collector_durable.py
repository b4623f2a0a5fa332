"""204 means durable, with real collector processes: kill -9 under concurrent writers loses no
acknowledged line; a full disk (a real tmpfs filled to the brim) gives 503 + Retry-After and a
degraded state the collector recovers from by itself; a corrupt embedded store is refused at start."""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from collector_support import PUEWATCH, TOKEN, CollectorProcess, scrape, write_config
from puewatch.collector.stores.embedded import EmbeddedStore
from store_damage import corrupt_middle, make_store
from servers import free_port

WRITERS = 4
LINES = 50  # per request: small bodies, many requests
HOUR_NS = 3600 * 10**9


class Writers:
    """Agents as the kill test needs them: each POSTs numbered lines over keep-alive and records
    which it got a 204 for; a batch without a 204 is not sent again (it may or may not be stored)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base_ns = time.time_ns() - HOUR_NS  # inside the clock tolerance, unique times per line
        self.acked: list[set[int]] = [set() for _ in range(WRITERS)]
        self.sent: list[int] = [0] * WRITERS
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(WRITERS)]

    def __enter__(self) -> "Writers":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, w: int) -> None:
        conn = None
        n = 0
        while not self.stop.is_set():
            ids = range(n, n + LINES)
            n += LINES
            self.sent[w] = n
            body = "".join(f"durable,writer=w{w} n={k}i {self.base_ns + k}\n" for k in ids).encode()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/api/v2/write?bucket=b&org=o&precision=ns", body,
                             {"Authorization": f"Token {TOKEN}"})
                resp = conn.getresponse()
                resp.read()
                with self._lock:
                    self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
                if resp.status == 204:
                    self.acked[w].update(ids)
                    continue
            except (OSError, http.client.HTTPException):
                pass  # the collector is down (killed): try again shortly
            if conn is not None:
                conn.close()
                conn = None
            time.sleep(0.05)


def _stored(db: Path) -> list[list[int]]:
    store = EmbeddedStore(db)
    try:
        out = []
        for w in range(WRITERS):
            t, _ = store.series("durable", "n", {"writer": f"w{w}"}, 0, 2**62)
            out.append(t.tolist())
        return out
    finally:
        store.close()


def _check_stored(tmp: Path, writers: Writers) -> tuple[int, int]:
    """Every acknowledged line is in the store exactly once; nothing stored that was not sent."""
    stored = _stored(tmp / "state" / "puewatch.sqlite")
    acked_total = stored_total = 0
    for w in range(WRITERS):
        ids = [t - writers.base_ns for t in stored[w]]
        assert len(ids) == len(set(ids)), f"writer {w}: a line stored twice"
        missing = writers.acked[w] - set(ids)
        assert not missing, f"writer {w}: {len(missing)} acknowledged line(s) lost, e.g. {sorted(missing)[:5]}"
        assert all(0 <= i < writers.sent[w] for i in ids)
        acked_total += len(writers.acked[w])
        stored_total += len(ids)
    return acked_total, stored_total


def test_kill_9_at_random_moments_under_concurrent_writers_loses_no_acknowledged_line(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = 3
    with Writers(ingest_port) as writers:
        for _ in range(kills):
            collector = CollectorProcess(conf, ingest_port)
            time.sleep(rng.uniform(0.3, 2.0))  # writers are in full flow: kill at any moment
            os.kill(collector.proc.pid, signal.SIGKILL)
            collector.proc.wait(10)
            collector.stop(check=False)
        collector = CollectorProcess(conf, ingest_port)
        time.sleep(1.0)
    # Writers stopped: the last collector writes everything to the store, then stops cleanly.
    collector.stop()
    assert not list((tmp_path / "state" / "spool").glob("*.rec")), collector.output()[-2000:]
    acked, stored = _check_stored(tmp_path, writers)
    print(f"kill -9 x{kills} (seed {seed}): {acked} lines acknowledged, {stored} stored, statuses {writers.statuses}")
    assert acked > 0 and writers.statuses.get(204, 0) > kills


# -- a full disk --------------------------------------------------------------------------------


class TmpfsNamespace:
    """A small real tmpfs in a private mount namespace (unshare: works as root and as a user); the
    collector and the commands that fill or empty it run there (nsenter)."""

    def __init__(self, mountpoint: Path, size: str) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.holder = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs -o size={size} tmpfs "{mountpoint}" && echo mounted && exec sleep 3600'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        assert line.strip() == "mounted", f"cannot mount a tmpfs: {self.holder.stderr.read()}"
        self.prefix = ("nsenter", f"--target={self.holder.pid}", "--user", "--mount")

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, "sh", "-c", command], capture_output=True, text=True, timeout=60)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)


class Notifications:
    """An sd_notify socket read as systemd reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                self.messages.extend(self.sock.recv(4096).decode().splitlines())
            except (TimeoutError, BlockingIOError):
                pass

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self.sock.close()


def _post(port: int, body: bytes) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/api/v2/write?bucket=b&org=o&precision=ns", body, {"Authorization": f"Token {TOKEN}"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_a_full_disk_answers_503_keeps_the_collector_up_and_it_recovers_by_itself(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    state = tmp_path / "state"
    notify = Notifications(tmp_path / "notify.sock")
    ns = TmpfsNamespace(state, "16m")
    try:
        collector = CollectorProcess(conf, ingest_port, prefix=ns.prefix, env={"NOTIFY_SOCKET": str(notify.path)})
        base = time.time_ns() - HOUR_NS
        acked: set[int] = set()

        def send(i: int) -> tuple[int, dict[str, str], bytes]:
            body = "".join(f"durable,writer=w0 n={k}i {base + k}\n" for k in range(i * LINES, (i + 1) * LINES)).encode()
            status, headers, reply = _post(ingest_port, body)
            if status == 204:
                acked.update(range(i * LINES, (i + 1) * LINES))
            return status, headers, reply

        for i in range(5):
            assert send(i)[0] == 204
        # Fill the disk to the brim (dd stops at ENOSPC), as a runaway log would.
        ns.run(f'dd if=/dev/zero of="{state}/filler" bs=64k 2>/dev/null; sync')
        assert "0" == ns.run(f'df --output=avail "{state}" | tail -1').stdout.strip()
        status, headers, reply = send(5)
        assert status == 503, reply
        assert int(headers["retry-after"]) > 0
        # Still up, and it says why (once in the log, then counted); the pipeline's checkpoint
        # (every 2 s) meets the full state directory too.
        deadline = time.monotonic() + 20
        while scrape(metrics_port).get('puewatch_degraded_events_total{reason="state_disk_full"}', 0) < 1:
            assert time.monotonic() < deadline and collector.proc.poll() is None, collector.output()[-3000:]
            time.sleep(0.2)
        assert collector.proc.poll() is None, collector.output()[-3000:]
        for i in range(6, 9):
            assert send(i)[0] == 503
        m = scrape(metrics_port)
        degraded = {k: v for k, v in m.items() if k.startswith("puewatch_degraded{")}
        assert degraded['puewatch_degraded{reason="spool_disk_full"}'] == 1 or \
            degraded['puewatch_degraded{reason="store_disk_full"}'] == 1, degraded
        assert m["puewatch_ingest_backpressure_total"] >= 4
        assert m['puewatch_dropped_points_total{store="embedded"}'] == 0
        out = collector.output()
        assert out.count("degraded (spool_disk_full)") == 1 and "Traceback" not in out, out[-3000:]
        assert out.count("degraded (state_disk_full)") == 1
        assert any(m.startswith("STATUS=DEGRADED: ") and "disk_full" in m for m in notify.messages), notify.messages

        # Room again: the collector takes data by itself (the store writer's backoff decides when).
        ns.run(f'rm -f "{state}/filler"')
        deadline = time.monotonic() + 90
        i = 9
        while send(i)[0] != 204:
            assert time.monotonic() < deadline, collector.output()[-3000:]
            i += 1
            time.sleep(0.5)
        m = scrape(metrics_port)
        assert all(v == 0 for k, v in m.items() if k.startswith("puewatch_degraded{")), m
        deadline = time.monotonic() + 20  # systemd hears of the recovery too
        while "DEGRADED" in [m for m in notify.messages if m.startswith("STATUS=")][-1]:
            assert time.monotonic() < deadline, notify.messages[-5:]
            time.sleep(0.2)
        collector.stop()
        out = collector.output()
        assert "recovered (spool_disk_full)" in out and "recovered (state_disk_full)" in out, out[-3000:]
        # Read the store inside the namespace (the tmpfs is only there).
        ns.run(f'cp "{state}/puewatch.sqlite" "{tmp_path}/copy.sqlite"')
    finally:
        ns.close()
        notify.close()
    store = EmbeddedStore(tmp_path / "copy.sqlite")
    ids = {t - base for t in store.series("durable", "n", {"writer": "w0"}, 0, 2**62)[0].tolist()}
    assert acked <= ids and len(acked) >= 6 * LINES


# -- a corrupt store ----------------------------------------------------------------------------


def _files(db: Path) -> dict[str, bytes]:
    """The store's file and its WAL, as they are on disk."""
    return {p.name: p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists()}


def test_a_corrupt_store_stops_the_collector_at_start_with_one_line(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    db = tmp_path / "state" / "puewatch.sqlite"
    make_store(db)
    corrupt_middle(db)
    before = _files(db)
    proc = subprocess.run([*PUEWATCH, "collector", "--config", str(conf)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1 and "is corrupt" in lines[0] and str(db) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert _files(db) == before  # never written on


def test_a_store_found_corrupt_while_running_is_never_written_on_and_batches_keep_spooling(tmp_path):
    from puewatch.collector.health import Health
    from puewatch.collector.stores.base import StoreCorrupt
    from puewatch.collector.stores.spool import StoreWriter

    db = tmp_path / "pue.sqlite"
    make_store(db)
    store = EmbeddedStore(db)
    health = Health()
    w = StoreWriter(store, tmp_path / "spool", 1 << 20, durable=True, health=health, backoff_min_s=60, backoff_max_s=60)
    corrupt_middle(db)
    # The hourly upkeep reads the damaged pages: an SQLite error, then quick_check finds the damage.
    with pytest.raises(StoreCorrupt, match="is corrupt .quick_check"):
        store.compact(horizon_ns=2**62)
    before = _files(db)
    for i in range(5):  # acknowledged all the same: on disk in the spool
        w.commit(f"m,s=new v={i} {i}\n".encode(), 1).result(10)
    deadline = time.monotonic() + 10
    while "store_corrupt" not in health.active():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _files(db) == before  # not a byte written on the corrupt store (nor its WAL)
    assert w.stats()["spool_points"] == 5 and w.stats()["dropped_points"] == 0
    w.close(timeout_s=0.2)
    assert len(list((tmp_path / "spool").glob("*.rec"))) >= 1  # kept for a good store
