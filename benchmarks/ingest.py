"""`puewatch bench ingest`: the collector's write endpoint in front of a real influxd 1.6.7.

Three processes share the machine: a load generator (several keep-alive connections
POSTing gzip'd agent batches: `gpu_power` at 10 Hz, `gpu_state` and `host` at 1 Hz for
64 nodes x 8 GPUs, 5,000 lines per batch), the ingest server (its own process, a sink that
subscribes to `gpu_power` as the collector's pipeline does and writes the normalised
bodies to influxd's `/write` from two threads), and influxd (started in a temporary
directory). Phases, in the same run:

1. influx direct: the load generator writes the same batches straight to influxd;
2. through the collector: load generator -> ingest -> influxd; `lines_per_s` is lines
   parsed, routed and written to the store per wall second, `p99_latency_s` the time
   from a batch's arrival at the server to the end of its store write, `cpu_s` the
   server process's CPU time in the phase, and `lines_per_cpu_s` what one collector
   process can take per core-second (the figure to hold against 200,000 lines/s:
   on a small machine the three processes compete for the same cores);
3. ingest only: the same server with a sink that drops the lines (`ingest_only_lines_per_s`).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from puewatch.errors import UserError
from puewatch.lineprotocol import encode_line, series_key

TOKEN = "bench-token-0123456789abcdef"
LINES_PER_BATCH = 5000
BATCHES = 24
CONNECTIONS = 4


# -- realistic agent batches -----------------------------------------------------------------------


def agent_batches(n: int, nodes: int = 64, gpus: int = 8, lines: int = LINES_PER_BATCH, seed: int = 1) -> list[bytes]:
    """n consecutive batches of agent lines, as the agents' encoder writes them."""
    rng = random.Random(seed)
    keys = []
    for node in range(nodes):
        name = f"gpu-node-{node:03d}"
        gpu_keys = []
        for g in range(gpus):
            tags = {"node": name, "gpu": str(g), "uuid": f"GPU-{node:04x}{g:04x}-8f2e-11ee-b962-0242ac120002"}
            gpu_keys.append((series_key("gpu_power", tags), series_key("gpu_state", tags)))
        keys.append((series_key("host", {"node": name}), gpu_keys))
    energy = [[rng.randrange(10**9) for _ in range(gpus)] for _ in range(nodes)]
    out: list[str] = []
    t = 1_700_000_000_000_000_000
    tick = 0
    batches = []
    while len(batches) < n:
        tick += 1
        t += 100_000_000
        slow = tick % 10 == 0
        for node, (host_key, gpu_keys) in enumerate(keys):
            for g, (power_key, state_key) in enumerate(gpu_keys):
                p = rng.uniform(80.0, 700.0)
                energy[node][g] += int(p * 100)
                out.append(
                    f"{power_key} power_average_w={p!r},power_instant_w={p * rng.uniform(0.9, 1.1)!r},"
                    f"energy_mj={energy[node][g]}i,energy_estimated=false {t + g * 1000}"
                )
                if slow:
                    out.append(
                        encode_line(
                            state_key,
                            {
                                "util_gpu_pct": rng.randrange(101),
                                "util_memory_pct": rng.randrange(101),
                                "memory_used_bytes": rng.randrange(85_899_345_920),
                                "memory_total_bytes": 85_899_345_920,
                                "temperature_c": rng.randrange(30, 90),
                                "clock_sm_mhz": 1980,
                                "clock_mem_mhz": 2619,
                                "power_limit_w": 700.0,
                                "clock_event_reasons": 0,
                            },
                            t,
                        )
                    )
            if slow:
                out.append(
                    encode_line(
                        host_key,
                        {
                            "cpu_util_pct": rng.uniform(0, 100),
                            "load1": rng.uniform(0, 64),
                            "load5": 3.0,
                            "load15": 2.5,
                            "cpus": 128,
                            "memory_used_bytes": 10**11,
                            "memory_available_bytes": 9 * 10**11,
                            "memory_total_bytes": 10**12,
                        },
                        t,
                    )
                )
            while len(out) >= lines:
                batches.append(("\n".join(out[:lines]) + "\n").encode())
                del out[:lines]
    return batches[:n]


# -- influxd -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, path: str, timeout_s: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"{what} exited during start-up (code {proc.returncode})")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            if c.getresponse().status in (200, 204):
                c.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise UserError(f"{what} did not answer on 127.0.0.1:{port} within {timeout_s:g} s")


def start_influxd(tmp: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("influxd")
    if exe is None:
        raise UserError("influxd not found: install the Debian package influxdb (InfluxDB 1.x)")
    tmp.mkdir(parents=True, exist_ok=True)
    port, rpc = _free_port(), _free_port()
    conf = tmp / "influxd.conf"
    conf.write_text(
        f"""reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
dir = "{tmp}/meta"
[data]
dir = "{tmp}/data"
wal-dir = "{tmp}/wal"
query-log-enabled = false
[http]
bind-address = "127.0.0.1:{port}"
log-enabled = false
[monitor]
store-enabled = false
"""
    )
    log = open(tmp / "influxd.log", "wb")
    proc = subprocess.Popen([exe, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    _wait_http(port, "/ping", 30, proc, "influxd")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/query?q=CREATE+DATABASE+bench")
    c.getresponse().read()
    return proc, port


# -- the load generator (its own process) -----------------------------------------------------------


def _load(args: argparse.Namespace) -> None:
    bodies = [gzip.compress(Path(p).read_bytes(), compresslevel=6, mtime=0) for p in args.batches]
    lines = [Path(p).read_bytes().count(b"\n") for p in args.batches]
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8", "Authorization": f"Token {TOKEN}"}
    deadline = time.monotonic() + args.seconds
    sent = [0] * args.connections
    errors: list[str] = []

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        i = w
        while time.monotonic() < deadline:
            k = i % len(bodies)
            conn.request("POST", args.path, body=bodies[k], headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 204:
                errors.append(f"{resp.status}")
                return
            sent[w] += lines[k]
            i += args.connections
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"lines": sum(sent), "seconds": time.monotonic() - t0, "errors": errors[:5]}), flush=True)


# -- the ingest server with a store sink (its own process) ---------------------------------------------


class _StoreSink:
    """Hands normalised bodies to writer threads that POST them to influxd /write (bounded queue)."""

    subscribed = frozenset({"gpu_power"})

    def __init__(self, influx_port: int | None, threads: int = 2) -> None:
        self.server = None
        self.queue: queue.Queue = queue.Queue(maxsize=16)
        self.latencies: list[float] = []
        self.stored = 0
        self.points = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.port = influx_port
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads if influx_port else 0)]
        for t in self.threads:
            t.start()

    def accept(self, agent: str, body: bytes, lines: int, points: list) -> None:
        self.points += len(points)
        received_ns = self.server.received_ns
        if self.port is None:
            self.stored += lines
            self.latencies.append((time.time_ns() - received_ns) / 1e9)
            return
        self.queue.put((body, lines, received_ns))  # blocks when the store falls behind: backpressure

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while True:
            item = self.queue.get()
            if item is None:
                return
            body, lines, received_ns = item
            conn.request("POST", "/write?db=bench&precision=ns", body=body)
            resp = conn.getresponse()
            text = resp.read()
            done = time.time_ns()
            with self.lock:
                if resp.status == 204:
                    self.stored += lines
                    self.latencies.append((done - received_ns) / 1e9)
                else:
                    self.failures.append(f"{resp.status} {text[:200]!r}")
            self.queue.task_done()

    def drain(self) -> None:
        if self.port is not None:
            self.queue.join()


def _serve(args: argparse.Namespace) -> None:
    import asyncio

    from puewatch.collector.ingest import IngestConfig, IngestServer, Tokens

    sink = _StoreSink(args.influx_port or None)
    cfg = IngestConfig(port=0, token_file="(bench)", max_body_bytes=64 * 1024 * 1024)
    server = IngestServer(cfg, Tokens({"bench": TOKEN}), sink)
    sink.server = server

    async def main() -> None:
        await server.start()
        tmp = args.port_file + ".tmp"
        Path(tmp).write_text(str(server.port))
        os.rename(tmp, args.port_file)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.close()

    cpu0 = time.process_time()
    asyncio.run(main())
    sink.drain()
    cpu = time.process_time() - cpu0
    Path(args.stats_file).write_text(
        json.dumps(
            {
                "lines_accepted": server.stats.lines_accepted,
                "lines_stored": sink.stored,
                "points": sink.points,
                "parse_errors": server.stats.parse_errors,
                "latencies": sink.latencies,
                "failures": sink.failures[:5],
                "cpu_s": cpu,
            }
        )
    )


# -- the run -------------------------------------------------------------------------------------


def _run_load(port: int, path: str, batch_files: list[str], seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "puewatch.benchmarks.ingest", "load", "--port", str(port), "--path", path,
         "--seconds", str(seconds), "--connections", str(CONNECTIONS), *batch_files],
        capture_output=True, text=True, timeout=seconds + 120,
    )
    if out.returncode != 0:
        raise UserError(f"load generator failed: {out.stderr.strip()[-1000:]}")
    result = json.loads(out.stdout)
    if result["errors"]:
        raise UserError(f"writes refused during the benchmark: {result['errors']}")
    return result


def _through_server(tmp: Path, influx_port: int | None, batch_files: list[str], seconds: float, tag: str) -> dict:
    port_file, stats_file = str(tmp / f"{tag}.port"), str(tmp / f"{tag}.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "puewatch.benchmarks.ingest", "serve", "--port-file", port_file, "--stats-file", stats_file,
         "--influx-port", str(influx_port or 0)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"ingest server did not start: {proc.stderr.read().decode(errors='replace')[-1000:]}")
            time.sleep(0.05)
        port = int(Path(port_file).read_text())
        t0 = time.monotonic()
        load = _run_load(port, "/api/v2/write?bucket=bench&org=site&precision=ns", batch_files, seconds)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        wall = time.monotonic() - t0  # includes draining the store queue
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stats = json.loads(Path(stats_file).read_text())
    if stats["failures"]:
        raise UserError(f"influxd refused writes: {stats['failures']}")
    stats["wall_s"] = wall
    stats["lines_sent"] = load["lines"]
    return stats


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def run(seconds: float = 30.0) -> dict:
    if seconds <= 0:
        raise UserError("--seconds must be positive")
    phase = seconds / 3
    with tempfile.TemporaryDirectory(prefix="puewatch-bench-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        files = []
        for i, b in enumerate(agent_batches(BATCHES)):
            f = tmp / f"batch-{i:03d}.lp"
            f.write_bytes(b)
            files.append(str(f))
        influxd, influx_port = start_influxd(tmp / "influxd")
        try:
            direct = _run_load(influx_port, "/write?db=bench&precision=ns", files, phase)
            via = _through_server(tmp, influx_port, files, phase, "store")
        finally:
            influxd.terminate()
            try:
                influxd.wait(30)
            except subprocess.TimeoutExpired:
                influxd.kill()
                influxd.wait()
        only = _through_server(tmp, None, files, phase, "null")
    return {
        "lines_per_s": round(via["lines_stored"] / via["wall_s"]),
        "influx_direct_lines_per_s": round(direct["lines"] / direct["seconds"]),
        "p99_latency_s": round(_p99(via["latencies"]), 4),
        "cpu_s": round(via["cpu_s"], 3),
        "lines_per_cpu_s": round(via["lines_accepted"] / via["cpu_s"]) if via["cpu_s"] else 0,
        "ingest_only_lines_per_s": round(only["lines_accepted"] / only["wall_s"]),
        "ingest_only_lines_per_cpu_s": round(only["lines_accepted"] / only["cpu_s"]) if only["cpu_s"] else 0,
        "lines": via["lines_stored"],
        "points_routed": via["points"],
        "seconds": round(via["wall_s"], 2),
        "lines_per_batch": LINES_PER_BATCH,
        "connections": CONNECTIONS,
    }


def main(args) -> int:
    result = run(args.seconds)
    if args.json:
        print(json.dumps(result))
        return 0
    r = result
    print(f"ingest: {LINES_PER_BATCH:,}-line gzip'd agent batches over {CONNECTIONS} keep-alive connections, loopback, influxd 1.6.7 as the store")
    print(f"  through the collector  {r['lines_per_s']:>10,} lines/s  (parsed, routed, written to influxd; {r['seconds']} s)")
    print(f"  influxd direct         {r['influx_direct_lines_per_s']:>10,} lines/s  (same batches, same run)")
    print(f"  collector / direct     {r['lines_per_s'] / max(1, r['influx_direct_lines_per_s']):>10.2f}x")
    print(f"  p99 arrival -> stored  {r['p99_latency_s']:>10.4f} s")
    print(f"  server CPU             {r['cpu_s']:>10.2f} s   = {r['lines_per_cpu_s']:,} lines per CPU-second (target >= 200,000)")
    print(f"  ingest only (no store) {r['ingest_only_lines_per_s']:>10,} lines/s, {r['ingest_only_lines_per_cpu_s']:,} lines per CPU-second")
    return 0


def _internal(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m puewatch.benchmarks.ingest")
    sub = ap.add_subparsers(dest="role", required=True)
    load = sub.add_parser("load")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--path", required=True)
    load.add_argument("--seconds", type=float, required=True)
    load.add_argument("--connections", type=int, default=CONNECTIONS)
    load.add_argument("batches", nargs="+")
    serve = sub.add_parser("serve")
    serve.add_argument("--port-file", required=True)
    serve.add_argument("--stats-file", required=True)
    serve.add_argument("--influx-port", type=int, default=0)
    args = ap.parse_args(argv)
    (_load if args.role == "load" else _serve)(args)


if __name__ == "__main__":
    _internal(sys.argv[1:])
