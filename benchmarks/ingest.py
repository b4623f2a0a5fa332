"""`puewatch bench ingest`: the real `puewatch collector` process in front of a real influxd 1.6.7.

The processes share the machine: a load generator (several keep-alive connections POSTing
gzip'd agent batches: `gpu_power` at 10 Hz with `energy_mj` on the first point of every
second, as the agent writes it, `gpu_state` and `host` at 1 Hz, for 64 nodes x 8 GPUs,
5,000 lines per batch), the collector (`puewatch collector` with a generated collector.toml:
`[store.influx1]`, a facility meter and an IT meter fed through ingest series, the agents'
nodes in one zone), and influxd (started in a temporary directory). Phases, in the same run:

1. influx direct: the load generator writes the same batches straight to influxd
   (`influx_direct_lines_per_s`);
2. through the collector: load generator -> collector -> influxd. While it runs, a meter
   thread POSTs `modbus,meter=incomer power_w=...` and `modbus,meter=ups energy_wh=...`
   every `METER_INTERVAL_S` with the current time, and a watcher asks influxd (InfluxQL)
   for the newest `pue` point several times a second. `lines_per_s` is the lines the
   collector accepted per wall second from the start of the load until its store writer
   had written that many points to influxd (the drain is included: a collector that
   accepts faster than the store takes would only be filling its spool; the collector's
   flow control holds its answers while influxd is behind, `paced_requests`,
   `paced_fraction` and `paced_s`, so the load follows influxd's pace); influxd's own
   counter (`SHOW STATS`, httpd pointsWrittenOK) must show at least as many points at
   the end, with nothing dropped or rejected. `collector_cpu_s` is the collector process's
   CPU time over the same span (all its threads: parser, pipeline, store writer), and
   `lines_per_cpu_s` what one collector process takes per core-second, the figure to
   hold against 200,000 lines/s where the three processes compete for few cores.
   `p99_latency_s` is the p99 over the meter samples of the time from a sample's POST
   to the moment the `pue` point of the pipeline cell holding it (time >= the cell's
   end) was first seen in influxd (seen = the answer to a poll, so it includes up to
   one poll period).
3. ingest only: the ingest server alone with a sink that drops the lines but subscribes
   as the collector does (`ingest_only_lines_per_s`: the parser's ceiling).

Replayed batches arrive ~35x faster than 512 GPUs produce them, so their timestamps
cannot follow the clock: they lie an hour ahead, where the GPU streams never hold the
pipeline's horizon back (as agents that are up to date would not, beyond their batch
interval), and the replays of a batch are refused by the pipeline as out of order
(they still cost their parse and routing). influxd overwrites the replayed points.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from puewatch.benchmarks.servers import Influxd, free_port
from puewatch.errors import UserError
from puewatch.core import schema
from puewatch.lineprotocol import encode_line, series_key

TOKEN = "bench-token-0123456789abcdef"
# One token writes the 64 replayed nodes (a relay's scope, `agent:GLOB`); the meters have their feeder's.
AGENT_SCOPE = "agent:gpu-node-*"
METER_TOKEN = "bench-meter-token-0123456789abcdef"
LINES_PER_BATCH = 5000
BATCHES = 24
CONNECTIONS = 4


# -- realistic agent batches -----------------------------------------------------------------------


def agent_batches(n: int, nodes: int = 64, gpus: int = 8, lines: int = LINES_PER_BATCH, seed: int = 1,
                  start_ns: int = 1_700_000_000_000_000_000) -> list[bytes]:
    """n consecutive batches of agent lines, as the agents' encoder writes them.

    `energy_mj` (and `energy_estimated`) are on the first `gpu_power` point of every second
    of each GPU, as the agent's default `energy_interval_s = 1` puts them.
    """
    rng = random.Random(seed)
    keys = []
    for node in range(nodes):
        name = f"gpu-node-{node:03d}"
        gpu_keys = []
        for g in range(gpus):
            tags = {"node": name, "gpu": str(g), "uuid": f"GPU-{node:04x}{g:04x}-8f2e-11ee-b962-0242ac120002"}
            gpu_keys.append((series_key(schema.GPU_POWER, tags), series_key("gpu_state", tags)))
        keys.append((series_key("host", {"node": name}), gpu_keys))
    energy = [[rng.randrange(10**9) for _ in range(gpus)] for _ in range(nodes)]
    out: list[str] = []
    t = start_ns - start_ns % 1_000_000_000
    tick = -1
    batches = []
    while len(batches) < n:
        tick += 1
        t += 100_000_000 if tick else 0
        slow = tick % 10 == 0
        for node, (host_key, gpu_keys) in enumerate(keys):
            for g, (power_key, state_key) in enumerate(gpu_keys):
                p = rng.uniform(80.0, 700.0)
                energy[node][g] += int(p * 100)
                line = f"{power_key} power_average_w={p!r},power_instant_w={p * rng.uniform(0.9, 1.1)!r}"
                if slow:  # the first sample of the second
                    line += f",energy_mj={energy[node][g]}i,energy_estimated=false"
                out.append(f"{line} {t + g * 1000}")
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


def start_influxd(tmp: Path) -> Influxd:
    """influxd 1.6.7 in `tmp`, with the database `bench`."""
    try:
        server = Influxd(tmp)
        server.start()
    except RuntimeError as exc:
        raise UserError(f"influxd: {exc}") from None
    server.query("CREATE DATABASE bench")
    return server


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


# -- the ingest server alone, with a sink that drops the lines (its own process) -----------------------


class _NullSink:
    """Subscribes as the collector does and drops everything: the parser's ceiling."""

    subscribed = {schema.GPU_POWER: (schema.GPU_ENERGY_MJ,), "modbus": ("energy_wh", "power_w")}

    def __init__(self) -> None:
        self.points = 0

    def accept(self, agent: str, body: bytes, lines: int, points: list) -> None:
        self.points += len(points)


def _serve(args: argparse.Namespace) -> None:
    import asyncio

    from puewatch.collector.ingest import IngestConfig, IngestServer, Tokens
    from puewatch.collector.scopes import parse_scope

    sink = _NullSink()
    cfg = IngestConfig(port=0, token_file="(bench)", max_body_bytes=64 * 1024 * 1024, max_clock_skew_s=7200.0)  # batches lie 1 h ahead
    server = IngestServer(cfg, Tokens({"bench": TOKEN}, {"bench": parse_scope(AGENT_SCOPE)}), sink)

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
    cpu = time.process_time() - cpu0
    Path(args.stats_file).write_text(
        json.dumps({"lines_accepted": server.stats.lines_accepted, "points": sink.points, "cpu_s": cpu})
    )


def _ingest_only(tmp: Path, batch_files: list[str], seconds: float) -> dict:
    port_file, stats_file = str(tmp / "null.port"), str(tmp / "null.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "puewatch.benchmarks.ingest", "serve", "--port-file", port_file, "--stats-file", stats_file],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"ingest server did not start: {proc.stderr.read().decode(errors='replace')[-1000:]}")
            time.sleep(0.05)
        t0 = time.monotonic()
        _run_load(int(Path(port_file).read_text()), "/api/v2/write?bucket=bench&org=site&precision=ns", batch_files, seconds)
        wall = time.monotonic() - t0
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stats = json.loads(Path(stats_file).read_text())
    stats["wall_s"] = wall
    return stats


# -- the real collector ----------------------------------------------------------------------------

METER_INTERVAL_S = 0.5  # a Telegraf Modbus input at 500 ms, flushed at once
PUE_POLL_S = 0.2  # how often the watcher asks influxd for the newest pue point
FACILITY_W = 130_000.0
IT_W = 100_000.0


def _write_config(tmp: Path, ingest_port: int, metrics_port: int, influx_port: int) -> Path:
    tokens = tmp / "tokens"
    tokens.write_text(f"bench {TOKEN} {AGENT_SCOPE}\nmeters {METER_TOKEN} feeder:incomer,ups\n")
    tokens.chmod(0o600)
    conf = tmp / "collector.toml"
    conf.write_text(
        f"""[collector]
site = "bench"
interval_s = 1.0
state_dir = "{tmp / 'state'}"
log_level = "warning"

[ingest]
listen = "127.0.0.1"
port = {ingest_port}
token_file = "{tokens}"
max_body_bytes = {64 * 1024 * 1024}
# The replayed batches lie an hour ahead (see the module docstring): a tolerance above that keeps
# the clock check on, and its cost in the measurement.
max_clock_skew_s = 7200

[metrics]
listen = "127.0.0.1:{metrics_port}"

[store]
spool_max_bytes = {1 << 30}

[store.influx1]
url = "http://127.0.0.1:{influx_port}"
database = "bench"
gzip = false  # loopback: compression would only cost CPU

[meters.incomer]
role = "facility_input"
measurement = "modbus"
tags = {{ meter = "incomer" }}
field = "power_w"
unit = "W"

[meters.ups]
role = "it"
point = "ups_output"
zone = "hall"
measurement = "modbus"
tags = {{ meter = "ups" }}
field = "energy_wh"
unit = "Wh"
register = true

[zones.hall]
nodes = ["gpu-node-*"]
"""
    )
    return conf


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metrics(port: int) -> dict[str, float]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.split("{", 1)[0]] = out.get(name.split("{", 1)[0], 0.0) + float(value)
    return out


def _influxql(port: int, q: str) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/query?" + urllib.parse.urlencode({"db": "bench", "q": q, "epoch": "ns"}))
    resp = c.getresponse()
    data = json.loads(resp.read())
    c.close()
    if resp.status != 200:
        raise UserError(f"influxd query {q!r} failed: {resp.status} {data}")
    return data


def _influx_points_ok(port: int) -> int:
    """influxd's own count of points written over HTTP (SHOW STATS, httpd pointsWrittenOK)."""
    data = _influxql(port, "SHOW STATS FOR 'httpd'")
    total = 0
    for serie in data["results"][0].get("series", []):
        cols = serie["columns"]
        if "pointsWrittenOK" in cols:
            total += int(serie["values"][0][cols.index("pointsWrittenOK")])
    return total


class _Meters(threading.Thread):
    """POSTs the two meters' readings with the current time; records when each was sent."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.sent: list[int] = []  # POST time = sample time, ns
        self.errors: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Token {METER_TOKEN}", "Content-Type": "text/plain; charset=utf-8"}
        t_start = time.time_ns()
        next_t = time.monotonic()
        while not self.stop.is_set():
            now = time.time_ns()
            energy = 1_000_000.0 + IT_W * (now - t_start) / 3.6e12
            body = f"modbus,meter=incomer power_w={FACILITY_W!r} {now}\nmodbus,meter=ups energy_wh={energy!r} {now}\n"
            try:
                conn.request("POST", "/api/v2/write?bucket=bench&org=site&precision=ns", body=body.encode(), headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 204:
                    self.sent.append(now)
                else:
                    self.errors.append(str(resp.status))
            except OSError as exc:
                self.errors.append(str(exc))
                conn.close()
            next_t += METER_INTERVAL_S
            self.stop.wait(max(0.0, next_t - time.monotonic()))
        conn.close()


class _PueWatcher(threading.Thread):
    """Asks influxd for the newest `pue` point a few times a second: (seen at, point time) pairs."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.seen: list[tuple[int, int]] = []
        self.errors: list[str] = []

    def newest(self) -> int:
        data = _influxql(self.port, "SELECT last(pue_coverage) FROM pue")
        series = data["results"][0].get("series")
        return int(series[0]["values"][0][0]) if series else -1

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                t = self.newest()
                self.seen.append((time.time_ns(), t))
            except (OSError, UserError, ValueError) as exc:
                self.errors.append(str(exc))
            self.stop.wait(PUE_POLL_S)


def _latencies(sent: list[int], seen: list[tuple[int, int]], interval_ns: int) -> list[float]:
    """For each sample: when the first pue point at or after its cell's end was seen, minus its POST."""
    out = []
    j = 0
    for t in sorted(sent):
        cell_end = t - t % interval_ns + interval_ns
        while j < len(seen) and seen[j][1] < cell_end:
            j += 1
        out.append((seen[j][0] - t) / 1e9 if j < len(seen) else math.inf)
    return out


def _through_collector(tmp: Path, influx_port: int, batch_files: list[str], seconds: float) -> dict:
    ingest_port, metrics_port = free_port(), free_port()
    (tmp / "collector").mkdir()
    conf = _write_config(tmp / "collector", ingest_port, metrics_port, influx_port)
    log = open(tmp / "collector" / "collector.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "puewatch.cli", "collector", "--config", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT)
    meters = _Meters(ingest_port)
    watcher = _PueWatcher(influx_port)
    try:
        _wait_http(metrics_port, "/metrics", 60, proc, "puewatch collector")
        _wait_http(ingest_port, "/ping", 30, proc, "puewatch collector")
        meters.start()
        watcher.start()
        # Let the pipeline find its horizon on the meters before the load starts.
        deadline = time.monotonic() + 30
        while watcher.newest() < 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise UserError(f"the collector wrote no pue point within 30 s; see {tmp / 'collector' / 'collector.log'}")
            time.sleep(0.1)
        influx0 = _influx_points_ok(influx_port)
        m0 = _metrics(metrics_port)
        cpu0 = _cpu_s(proc.pid)
        t_sent0 = time.time_ns()
        t0 = time.monotonic()
        load = _run_load(ingest_port, "/api/v2/write?bucket=bench&org=site&precision=ns", batch_files, seconds)
        t_sent1 = time.time_ns()
        m1 = _metrics(metrics_port)
        influx1 = _influx_points_ok(influx_port)
        accepted = m1["puewatch_ingest_lines_total"] - m0["puewatch_ingest_lines_total"]
        # The drain: until the store writer has written as many points as were accepted. Watched
        # first on influxd's own counter (it holds at least that many new points by then), then
        # confirmed on the collector's: a /metrics page every 50 ms cost the measured process
        # about 7 % of its CPU time, where SHOW STATS costs influxd little.
        target = m0["puewatch_store_points_written_total"] + accepted
        deadline = time.monotonic() + 120
        while _influx_points_ok(influx_port) - influx0 < accepted:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise UserError(f"influxd did not get the collector's backlog within 120 s; see {tmp / 'collector' / 'collector.log'}")
            time.sleep(0.05)
        while True:
            m2 = _metrics(metrics_port)
            if m2["puewatch_store_points_written_total"] >= target:
                break
            if time.monotonic() > deadline:
                raise UserError(f"the collector did not write its backlog to influxd within 120 s ({m2})")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        cpu = _cpu_s(proc.pid) - cpu0
        # Keep the meters and the watcher going until the last sample's cell has its pue point.
        last_cell_end = t_sent1 - t_sent1 % 1_000_000_000 + 1_000_000_000
        deadline = time.monotonic() + 30
        while not watcher.seen or watcher.seen[-1][1] < last_cell_end:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        meters.stop.set()
        watcher.stop.set()
        meters.join(10)
        watcher.join(10)
        # The meters' last lines are acknowledged once on disk: give the store writer the moment it
        # takes to store them before the spool must be empty (a spool that stays full is reported).
        deadline = time.monotonic() + 30
        while (m3 := _metrics(metrics_port)).get("puewatch_spool_bytes", 0.0) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        meters.stop.set()
        watcher.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if proc.returncode != 0:
        raise UserError(f"puewatch collector exited with {proc.returncode}; see {tmp / 'collector' / 'collector.log'}")
    if meters.errors:
        raise UserError(f"meter writes refused: {meters.errors[:5]}")
    for key in ("puewatch_dropped_points_total", "puewatch_rejected_points_total", "puewatch_spool_bytes"):
        if m3.get(key, 0.0):
            raise UserError(f"the collector's store writer reports {key} = {m3[key]:g}")
    influx_written = _influx_points_ok(influx_port) - influx0
    if influx_written < accepted:
        raise UserError(f"influxd counted {influx_written} points written, fewer than the {accepted:.0f} lines accepted")
    samples = [t for t in meters.sent if t_sent0 <= t <= t_sent1]
    return {
        "accepted": int(accepted),
        # Lines influxd did not hold yet when the load stopped (at least: its count includes the
        # derived series): what the drain wrote.
        "backlog": max(0, int(accepted) - (influx1 - influx0)),
        "wall_s": wall,
        "load_s": load["seconds"],
        "cpu_s": cpu,
        "influx_points": influx_written,
        "latencies": _latencies(samples, watcher.seen, 1_000_000_000),
        "pipeline_lag_s": m3.get("puewatch_pipeline_lag_seconds", math.nan),
        "step_s": m3["puewatch_pipeline_step_seconds_sum"] / max(1.0, m3["puewatch_pipeline_step_seconds_count"]),
        "paced": m3.get("puewatch_ingest_paced_total", 0.0) - m0.get("puewatch_ingest_paced_total", 0.0),
        "paced_s": m3.get("puewatch_ingest_paced_seconds_total", 0.0) - m0.get("puewatch_ingest_paced_seconds_total", 0.0),
        "requests": m3.get("puewatch_ingest_requests_total", 0.0) - m0.get("puewatch_ingest_requests_total", 0.0),
    }


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


def _p99(values: list[float]) -> float:
    if not values:
        return math.inf
    s = sorted(values)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def run(seconds: float = 30.0) -> dict:
    if seconds <= 0:
        raise UserError("--seconds must be positive")
    phase = seconds / 3
    with tempfile.TemporaryDirectory(prefix="puewatch-bench-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        files = []
        # An hour ahead: see the module docstring.
        for i, b in enumerate(agent_batches(BATCHES, start_ns=time.time_ns() + 3600 * 1_000_000_000)):
            f = tmp / f"batch-{i:03d}.lp"
            f.write_bytes(b)
            files.append(str(f))
        influxd = start_influxd(tmp / "influxd")
        influx_port = influxd.port
        try:
            c0 = _cpu_s(influxd.popen.pid)
            direct = _run_load(influx_port, "/write?db=bench&precision=ns", files, phase)
            c1 = _cpu_s(influxd.popen.pid)
            via = _through_collector(tmp, influx_port, files, phase)
            c2 = _cpu_s(influxd.popen.pid)
        finally:
            influxd.stop()
        only = _ingest_only(tmp, files, phase)
    lat = via["latencies"]
    return {
        "lines_per_s": round(via["accepted"] / via["wall_s"]),
        "influx_direct_lines_per_s": round(direct["lines"] / direct["seconds"]),
        "p99_latency_s": round(_p99(lat), 3),
        "max_latency_s": round(max(lat), 3) if lat else math.inf,
        "latency_samples": len(lat),
        "collector_cpu_s": round(via["cpu_s"], 3),
        "lines_per_cpu_s": round(via["accepted"] / via["cpu_s"]) if via["cpu_s"] else 0,
        # influxd's own CPU per line, same run: when the collector needs less CPU per line than
        # influxd, the collector is not what limits the pair (they share this machine's cores).
        "influxd_direct_cpu_s": round(c1 - c0, 3),
        "influxd_lines_per_cpu_s": round(direct["lines"] / (c1 - c0)) if c1 > c0 else 0,
        "influxd_via_collector_cpu_s": round(c2 - c1, 3),
        "ingest_only_lines_per_s": round(only["lines_accepted"] / only["wall_s"]),
        "ingest_only_lines_per_cpu_s": round(only["lines_accepted"] / only["cpu_s"]) if only["cpu_s"] else 0,
        "lines": via["accepted"],
        "influx_points_written": via["influx_points"],
        "points_routed": only["points"],  # in the ingest-only phase, of ingest_only_lines
        "ingest_only_lines": only["lines_accepted"],
        "seconds": round(via["wall_s"], 2),
        "drain_s": round(via["wall_s"] - via["load_s"], 2),
        # The drain is one store writer's ordered writes to influxd, one request at a time: where
        # the collector accepts faster than that, this rate bounds lines_per_s.
        "drain_lines": via["backlog"],
        "drain_lines_per_s": round(via["backlog"] / (via["wall_s"] - via["load_s"])) if via["wall_s"] > via["load_s"] else 0,
        "pipeline_step_s": round(via["step_s"], 4),
        # Flow control (collector/pacing.py): answers that waited for influxd to catch up, and how long.
        "paced_requests": int(via["paced"]),
        "paced_fraction": round(via["paced"] / via["requests"], 3) if via["requests"] else 0.0,
        "paced_s": round(via["paced_s"], 2),
        "lines_per_batch": LINES_PER_BATCH,
        "connections": CONNECTIONS,
        "meter_interval_s": METER_INTERVAL_S,
    }


def main(args) -> int:
    result = run(args.seconds)
    if args.json:
        print(json.dumps(result))
        return 0
    r = result
    print(f"ingest: {LINES_PER_BATCH:,}-line gzip'd agent batches over {CONNECTIONS} keep-alive connections, loopback, "
          "puewatch collector -> influxd 1.6.7")
    print(f"  through the collector  {r['lines_per_s']:>10,} lines/s  (parsed, routed, written to influxd; {r['seconds']} s, "
          f"drain {r['drain_s']} s: {r['drain_lines']:,} lines at {r['drain_lines_per_s']:,}/s)")
    print(f"  answers held           {r['paced_requests']:>10,}    ({r['paced_fraction']:.0%} of requests, {r['paced_s']} s in all: "
          "flow control while influxd was behind)")
    print(f"  influxd direct         {r['influx_direct_lines_per_s']:>10,} lines/s  (same batches, same run)")
    print(f"  collector / direct     {r['lines_per_s'] / max(1, r['influx_direct_lines_per_s']):>10.2f}x")
    print(f"  p99 sample -> pue      {r['p99_latency_s']:>10.3f} s   (max {r['max_latency_s']} s over {r['latency_samples']} "
          f"meter samples every {r['meter_interval_s']} s)")
    print(f"  influxd CPU (direct)   {r['influxd_direct_cpu_s']:>10.2f} s   = {r['influxd_lines_per_cpu_s']:,} lines per CPU-second")
    print(f"  collector CPU          {r['collector_cpu_s']:>10.2f} s   = {r['lines_per_cpu_s']:,} lines per CPU-second "
          "(target >= 200,000)")
    print(f"  ingest only (no store) {r['ingest_only_lines_per_s']:>10,} lines/s, {r['ingest_only_lines_per_cpu_s']:,} lines "
          "per CPU-second")
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
    args = ap.parse_args(argv)
    (_load if args.role == "load" else _serve)(args)


if __name__ == "__main__":
    _internal(sys.argv[1:])
