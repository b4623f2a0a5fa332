"""`puewatch bench snmp`: full polling cycles of N simulated meters, puewatch vs Prometheus snmp_exporter.

Set-up (all in a temporary directory, on 127.0.0.1):

- synthetic recordings: ten variants of a meter with 8 objects (4 power gauges in
  W, 4 Unsigned32 energy registers in Wh) under a private OID, and N
  `.snmprec` hard links to them, one SNMPv2c community per meter;
- one snmpsim process serving them (snmpsim is pure Python and answers on one
  core: it is usually the bottleneck, so the poller's own CPU time is reported
  separately);
- the puewatch poller (generic profile, the same 8 OIDs) in this process: one
  warm-up cycle (connect: sysObjectID), then `--cycles` timed full cycles,
  every device polled once per cycle, at most 256 in flight;
- snmp_exporter 0.21 (Debian `prometheus-snmp-exporter`) with a generated
  snmp.yml: one module per meter (0.21 has no separate `auths`, the community
  is per module) that GETs the same 8 OIDs; a full cycle is one
  `/snmp?target=...&module=meter_N` scrape per meter, 64 concurrent.

Reported: device_polls_per_s and snmp_exporter_polls_per_s (same recordings,
same run), cycle_seconds_1000 (wall time of a 1,000-meter cycle at the measured
rate), poller_cpu_s (this process's CPU over the timed cycles) and
poller_cpu_s_per_1000 (the one-core budget: must stay under 10 s).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from puewatch.benchmarks.servers import free_port as free_tcp_port
from puewatch.benchmarks.servers import free_udp_port, snmpsim_binary, stop_process
from puewatch.errors import UserError

BENCH_BASE = "1.3.6.1.4.1.99999.42"  # private test arc: never a real device's
BENCH_SYSOBJECTID = BENCH_BASE + ".1"
READINGS = [(f"{BENCH_BASE}.2.{i}.0", "active_power" if i <= 4 else "active_energy") for i in range(1, 9)]
VARIANTS = 10
CONCURRENCY = 64  # requests in flight, the same for both pollers




class Snmpsim:
    """A snmpsim-command-responder process on 127.0.0.1 serving `data_dir`; stopped by its PID."""

    def __init__(self, data_dir: Path, work_dir: Path, port: int | None = None, quiet: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_udp_port()
        cache = Path(work_dir) / "snmpsim-cache"
        cache.mkdir(parents=True, exist_ok=True)
        self.log = Path(work_dir) / "snmpsim.log"
        args = [
            snmpsim_binary(),
            f"--data-dir={self.data_dir}",
            f"--cache-dir={cache}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
        ]
        if quiet:
            args += ["--log-level=error"]
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=self._logf, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, community: str, timeout_s: float = 90.0) -> None:
        """Wait until sysObjectID answers under `community` (the first start indexes every file)."""
        deadline = time.monotonic() + timeout_s
        env = dict(os.environ, MIBS="")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpsim exited with {self.proc.returncode}: {self.output()[-2000:]}")
            r = subprocess.run(
                ["snmpget", "-v2c", "-c", community, "-t", "1", "-r", "0", "-On", f"127.0.0.1:{self.port}", "1.3.6.1.2.1.1.2.0"],
                capture_output=True, text=True, env=env,
            )
            if r.returncode == 0 and "OID" in r.stdout:
                return
            time.sleep(0.3)
        raise RuntimeError(f"snmpsim did not answer within {timeout_s} s: {self.output()[-2000:]}")

    def output(self) -> str:
        self._logf.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self._logf.close()


def write_recordings(data_dir: Path, meters: int) -> list[str]:
    """VARIANTS synthetic meter recordings and `meters` community links to them; returns the communities."""
    data_dir.mkdir(parents=True, exist_ok=True)
    variants = []
    for v in range(VARIANTS):
        lines = [
            f"1.3.6.1.2.1.1.1.0|4|puewatch bench meter variant {v}",
            f"1.3.6.1.2.1.1.2.0|6|{BENCH_SYSOBJECTID}",
        ]
        for i, (oid, quantity) in enumerate(READINGS, start=1):
            if quantity == "active_power":
                lines.append(f"{oid}|2|{1000 + 37 * v + i}")
            else:
                lines.append(f"{oid}|66|{4_000_000_000 + 1_000_003 * v + i}")
        # snmpsim wants the lines in OID order
        lines.sort(key=lambda l: tuple(int(x) for x in l.split("|")[0].split(".")))
        path = data_dir.parent / f"variant{v}.snmprec"
        path.write_text("\n".join(lines) + "\n")
        variants.append(path)
    communities = []
    for m in range(meters):
        name = f"meter{m:05d}"
        # Hard links, not symlinks: snmpsim 1.2 names a symlinked file by its target.
        try:
            os.link(variants[m % VARIANTS], data_dir / f"{name}.snmprec")
        except OSError:
            shutil.copyfile(variants[m % VARIANTS], data_dir / f"{name}.snmprec")
        communities.append(name)
    return communities


def exporter_config(communities: list[str], timeout_s: float) -> str:
    """snmp.yml for snmp_exporter 0.21: one module per community (auth is per module in 0.21)."""
    out = []
    for c in communities:
        out.append(f"{c}:")
        out.append("  version: 2")
        out.append(f"  timeout: {timeout_s:g}s")
        out.append("  retries: 0")
        out.append("  auth:")
        out.append(f"    community: {c}")
        out.append("  get:")
        out.extend(f"  - {oid}" for oid, _ in READINGS)
        out.append("  metrics:")
        for i, (oid, quantity) in enumerate(READINGS, start=1):
            out.append(f"  - name: bench_{quantity}_{i}")
            out.append(f"    oid: {oid.removesuffix('.0')}")
            out.append("    type: gauge")
            out.append(f"    help: bench object {i}")
    return "\n".join(out) + "\n"


def _devices(communities: list[str], port: int, timeout_s: float):
    from puewatch import config as cfg
    from puewatch.collector.snmp.device import SnmpDevice

    oids = [
        {"name": f"{q}_{i}", "oid": oid, "quantity": q, "kind": "gauge" if q == "active_power" else "register",
         **({"modulus_raw": 4294967296.0} if q == "active_energy" else {})}
        for i, (oid, q) in enumerate(READINGS, start=1)
    ]
    return [
        cfg.build(
            SnmpDevice,
            {"name": c, "host": "127.0.0.1", "port": port, "community": c, "profile": "generic", "oids": oids,
             "timeout_s": timeout_s, "retries": 1, "interval_s": 60.0},
            "bench",
        )
        for c in communities
    ]


async def _poller_cycles(communities: list[str], port: int, cycles: int, timeout_s: float) -> dict:
    from puewatch.collector.snmp.poller import Poller

    poller = Poller(_devices(communities, port, timeout_s), lambda *a: None)
    meters = list(poller.meters.values())
    sem = asyncio.Semaphore(CONCURRENCY)
    errors = 0
    values = 0

    async def one(m) -> None:
        nonlocal errors, values
        async with sem:
            try:
                readings = await m.poll()
            except Exception:
                errors += 1
                return
            values += sum(1 for r in readings if r.value == r.value)

    try:
        await asyncio.gather(*(one(m) for m in meters))  # warm-up: connect (sysDescr, sysObjectID)
        warm_errors = errors
        errors = values = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(cycles):
            await asyncio.gather(*(one(m) for m in meters))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        poller.close()
    return {"wall_s": wall, "cpu_s": cpu, "errors": errors + warm_errors, "values": values}


def _exporter_cycles(communities: list[str], sim_port: int, cycles: int, timeout_s: float, work: Path) -> dict:
    binary = shutil.which("prometheus-snmp-exporter") or shutil.which("snmp_exporter")
    if not binary:
        raise UserError("prometheus-snmp-exporter not found (Debian package prometheus-snmp-exporter)")
    conf = work / "snmp.yml"
    conf.write_text(exporter_config(communities, timeout_s))
    port = free_tcp_port()
    log = open(work / "snmp_exporter.log", "ab")
    proc = subprocess.Popen(
        [binary, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"snmp_exporter exited: {(work / 'snmp_exporter.log').read_text()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/")
                c.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("snmp_exporter did not start") from None
                time.sleep(0.1)

        def scrape(community: str) -> int:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s * 4 + 5)
            c.request("GET", f"/snmp?target=127.0.0.1:{sim_port}&module={community}")
            body = c.getresponse().read().decode()
            c.close()
            return sum(1 for line in body.splitlines() if line.startswith("bench_"))

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(scrape, communities))  # warm-up
            t0 = time.perf_counter()
            found = 0
            for _ in range(cycles):
                found += sum(pool.map(scrape, communities))
            wall = time.perf_counter() - t0
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
    return {"wall_s": wall, "values": found}


def run(meters: int, cycles: int, exporter: bool = True, timeout_s: float = 5.0) -> dict:
    if meters < 1 or cycles < 1:
        raise UserError("--meters and --cycles must be at least 1")
    with tempfile.TemporaryDirectory(prefix="puewatch-bench-snmp-") as tmp:
        work = Path(tmp)
        communities = write_recordings(work / "data", meters)
        sim = Snmpsim(work / "data", work)
        try:
            sim.wait_ready(communities[0])
            ours = asyncio.run(_poller_cycles(communities, sim.port, cycles, timeout_s))
            theirs = _exporter_cycles(communities, sim.port, cycles, timeout_s, work) if exporter else None
        finally:
            sim.stop()
    polls = meters * cycles
    rate = polls / ours["wall_s"]
    result = {
        "meters": meters,
        "readings_per_meter": len(READINGS),
        "cycles": cycles,
        "device_polls_per_s": round(rate, 1),
        "snmp_exporter_polls_per_s": round(polls / theirs["wall_s"], 1) if theirs else None,
        "cycle_seconds_1000": round(1000 / rate, 3),
        "poller_cpu_s": round(ours["cpu_s"], 3),
        "poller_cpu_s_per_1000": round(ours["cpu_s"] / polls * 1000, 3),
        "errors": ours["errors"],
        "values_read": ours["values"],
        "snmp_exporter_values_read": theirs["values"] if theirs else None,
    }
    return result


def main(args) -> int:
    result = run(args.meters, args.cycles, exporter=not args.no_exporter)
    if args.json:
        print(json.dumps(result))
        return 0
    r = result
    print(f"{r['meters']} simulated meters x {r['readings_per_meter']} readings, {r['cycles']} timed cycles (snmpsim on 127.0.0.1)")
    print(f"  puewatch poller:  {r['device_polls_per_s']:>9.1f} device polls/s   "
          f"(1,000-meter cycle: {r['cycle_seconds_1000']:.2f} s wall; poller CPU {r['poller_cpu_s_per_1000']:.2f} s per 1,000 polls)")
    if r["snmp_exporter_polls_per_s"] is not None:
        ratio = r["device_polls_per_s"] / r["snmp_exporter_polls_per_s"]
        print(f"  snmp_exporter:    {r['snmp_exporter_polls_per_s']:>9.1f} device polls/s   (puewatch / snmp_exporter = {ratio:.2f})")
    print(f"  errors: {r['errors']}; values read: {r['values_read']}")
    print("  note: snmpsim (pure Python, one process) answers every request and is usually the limit of both rates")
    return 0
