"""`puewatch demo`: a whole simulated site on one machine, with no GPU and no servers to install.

It starts, on 127.0.0.1 and free ports, in one directory (`--dir`):

- snmpsim serving the facility meters (utility incomer, UPS, a rack PDU and a
  CRAH per zone, the chiller plant) with the OIDs of the shipped profiles; the
  recordings are rewritten twice a second so power and energy registers move
  with the simulated IT load (`puewatch.demo_site`);
- the real collector (`puewatch collector`) with the embedded store, or the
  store given with `--store`;
- N real agents (`puewatch agent`) with the `sim` source, 8 GPUs each.

Each child runs in its own session (so a Ctrl-C in the terminal reaches only
this process, which then stops them in order: agents first so their last
batches arrive, then the collector so it finalises and writes, then snmpsim)
and with a parent-death signal, so no child outlives the demo even if the demo
itself is killed. Their PIDs are in `<dir>/pids.json` while they run.

While it runs it shows a live view (rich) read from the store (the collector's
derived series) and its `/metrics`; at the end it prints the auditor's report of
the run: `puewatch report` over the run's period, computed in-process by the very
code the command runs, and the command itself (`report_command`), which prints the
same figures.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from puewatch import demo_site as site
from puewatch.benchmarks.servers import free_port as free_tcp_port
from puewatch.benchmarks.servers import free_udp_port, snmpsim_binary
from puewatch.core import schema
from puewatch.core.numbers import published
from puewatch.core.storeaddr import StoreAddress, parse_store_address
from puewatch.errors import UserError
from puewatch.redact import redact_url

log = logging.getLogger("puewatch.demo")

SITE = "demo"
INTERVAL_S = 1.0          # collector cell
SNMP_INTERVAL_S = 1.0     # every meter is polled once a second
RECORDING_PERIOD_S = 0.5  # recordings rewritten this often (site.Recorder)
LIVE_CELLS = 10           # the live view's power: the mean of the last 10 cells, the 10 s PUE's window
CHECK_S = 0.5             # the children and the recorder checked this often
SNMP_COMMUNITIES = ("incomer", "ups", "chiller", *(f"{k}-{z}" for z in site.ZONES for k in ("pdu", "crah")))


# ---- the store ---------------------------------------------------------------------------

# One parser for store addresses (puewatch/core/storeaddr.py): what `demo --store` accepts, `report --store` does.
StoreSpec = StoreAddress


def parse_store(value: str | None, data_dir: Path) -> StoreSpec:
    """`--store`: empty (embedded in the data dir), a file path or `sqlite:PATH`, or `http[s]://[user:password@]host:port/DATABASE`."""
    if not value:
        return StoreSpec("embedded", path=data_dir / "state" / "puewatch.sqlite")
    return parse_store_address(value, "--store")


def open_reader(spec: StoreSpec):
    """A `Reader` (collector/stores/base.py) over the store the demo writes to."""
    if spec.kind == "embedded":
        from puewatch.collector.stores.embedded import EmbeddedStore

        return EmbeddedStore(spec.path)
    from puewatch.collector.stores.influx1 import Influx1Store

    return Influx1Store(spec.url, spec.database, user=spec.user or None, password=spec.password or None)


def prepare_influx(spec: StoreSpec) -> None:
    """Create the database if it is missing (idempotent in InfluxDB 1.x); a clear error when it cannot be reached."""
    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{spec.database}"'}).encode()
    req = urllib.request.Request(spec.url + "/query", data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    if spec.user:
        import base64

        req.add_header("Authorization", "Basic " + base64.b64encode(f"{spec.user}:{spec.password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            log.warning("cannot create database %s (%s): assuming it exists", spec.database, exc.code)
            return
        raise UserError(f"--store {spec.url}: CREATE DATABASE answered {exc.code}: {exc.read()[:200]!r}") from None
    except OSError as exc:
        raise UserError(f"--store {spec.url}: cannot reach InfluxDB ({exc})") from None


# ---- configuration files -------------------------------------------------------------------



def _q(s: str | Path) -> str:
    return json.dumps(str(s))  # a TOML basic string


def _generic_oids(power_oid: str, energy_oid: str, name: str) -> str:
    return (
        f'oids = [\n  {{ name = "{name}_power", oid = "{power_oid}", quantity = "active_power", total = true }},\n'
        f'  {{ name = "{name}_energy", oid = "{energy_oid}", quantity = "active_energy", kind = "register", '
        f"modulus_raw = 4294967296, total = true }},\n]\n"
    )


# The profile each simulated device answers to (its sysObjectID matches it too).
DEVICE_PROFILES = {"ups": "apc-ups", "pdu": "eaton-epdu", "crah": "entity-sensor"}


def collector_toml(d: Path, spec: StoreSpec, ingest_port: int, metrics_port: int, snmp_port: int,
                   nodes: list[site.Node]) -> str:
    rated = site.ratings_w(nodes)

    def rating(meter: str) -> str:
        # Register increases faster than this (plus one register step) are impossible jumps
        # (docs/auditor-guide.md, "How readings become energy").
        return f"max_power_w = {math.ceil(rated[meter])}  # rated: {site.RATING_HEADROOM:g} x the simulated peak"

    out = [
        "# Written by `puewatch demo`: the simulated site's collector. Reference: collector/CONFIG.md",
        "[collector]",
        f'site = "{SITE}"',
        f"interval_s = {INTERVAL_S}",
        'windows = ["10s", "1m", "15m", "1h"]   # 10s: PUE in the live view',
        "min_coverage = 0.1        # the demo is short: show partial windows, with their coverage",
        "settle_s = 4.0",
        f"state_dir = {_q(d / 'state')}",
        "checkpoint_interval_s = 10.0",
        'log_level = "warning"',
        "",
        "[ingest]",
        'listen = "127.0.0.1"',
        f"port = {ingest_port}",
        f"token_file = {_q(d / 'tokens')}",
        "",
        "[metrics]",
        f'listen = "127.0.0.1:{metrics_port}"',
        "",
    ]
    if spec.kind == "embedded":
        out += ["[store.embedded]", f"path = {_q(spec.path)}", ""]
    else:
        out += ["[store.influx1]", f"url = {_q(spec.url)}", f"database = {_q(spec.database)}"]
        if spec.user:
            out += [f"user = {_q(spec.user)}", f"password_file = {_q(d / 'influx-password')}"]
        out.append("")
    for name in SNMP_COMMUNITIES:
        out += [
            "[[snmp.devices]]",
            f'name = "{name}"',
            'host = "127.0.0.1"',
            f"port = {snmp_port}",
            f'community = "{name}"',
            f"interval_s = {SNMP_INTERVAL_S}",
            "timeout_s = 0.4",
            "retries = 1",
        ]
        if name == "incomer":
            out += ['profile = "generic"', _generic_oids(*site.INCOMER_OIDS, "incomer")]
        elif name == "chiller":
            out += ['profile = "generic"', _generic_oids(*site.CHILLER_OIDS, "chiller")]
        else:
            # Named, not left to the sysObjectID match: a report then knows where each register wraps
            # and how large one register step is (docs/auditor-guide.md, "How readings become energy").
            kind = "ups" if name == "ups" else name.split("-")[0]
            out += [f'profile = "{DEVICE_PROFILES[kind]}"', ""]
    out += ['[meters.incomer]', 'role = "facility_input"', 'device = "incomer"', rating("incomer"), ""]
    out += ['[meters.chiller]', 'role = "cooling"', 'device = "chiller"', rating("chiller"), ""]
    for z in site.ZONES:
        out += [f"[meters.pdu-{z}]", 'role = "it"', 'point = "pdu_output"', f'zone = "{z}"', f'device = "pdu-{z}"',
                rating(f"pdu-{z}"), ""]
        out += [f"[meters.crah-{z}]", 'role = "cooling"', f'zone = "{z}"', f'device = "crah-{z}"',
                rating(f"crah-{z}"), ""]
        out += [f"[zones.{z}]", f'nodes = ["gpu-{z[-1]}-*"]', ""]
    return "\n".join(out)


def agent_toml(d: Path, node: site.Node, ingest_port: int) -> str:
    home = d / "agents" / node.name
    cfg = node.sim_config()
    return "\n".join([
        "# Written by `puewatch demo`: one simulated GPU node. Reference: agent/CONFIG.md",
        "[agent]",
        f'node = "{node.name}"',
        f'tags = {{ site = "{SITE}" }}',
        f"spool_dir = {_q(home / 'spool')}",
        "flush_interval_s = 1.0",
        "self_interval_s = 10.0",
        "shutdown_timeout_s = 3.0",
        'log_level = "warning"',
        "",
        "[output]",
        f'url = "http://127.0.0.1:{ingest_port}/api/v2/write"',
        'bucket = "puewatch"',
        f"token_file = {_q(home / 'token')}",
        "timeout_s = 5.0",
        "",
        "[sources.sim]",
        f"gpus = {cfg.gpus}",
        f'profile = "{cfg.profile}"',
        f"seed = {cfg.seed}",
        "",
    ])


# ---- child processes ---------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the demo still stops its children itself


class Children:
    """The demo's processes, each in its own session; stopped in order, SIGKILL for stragglers."""

    def __init__(self, pids_file: Path, log_dir: Path) -> None:
        self.pids_file = pids_file
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        logf = open(self.log_dir / f"{name}.log", "ab")
        self._logs.append(logf)
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=_child_setup if sys.platform.startswith("linux") else None,
        )
        self.procs[name] = proc
        self._write_pids()
        return proc

    def _write_pids(self) -> None:
        alive = {n: p.pid for n, p in self.procs.items() if p.poll() is None}
        tmp = self.pids_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"demo": os.getpid(), "children": alive}, indent=1) + "\n")
        tmp.replace(self.pids_file)

    def dead(self) -> list[tuple[str, int]]:
        return [(n, p.returncode) for n, p in self.procs.items() if p.poll() is not None]

    def stop(self, names: list[str], timeout_s: float) -> None:
        """SIGTERM to each (its whole process group), wait up to timeout_s, then SIGKILL the group."""
        group = [(n, self.procs[n]) for n in names if n in self.procs]
        for _, p in group:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s
        for name, p in group:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killed", name, timeout_s)
            try:
                os.killpg(p.pid, signal.SIGKILL)  # stragglers, and anything the child left in its group
            except ProcessLookupError:
                pass
            if p.poll() is None:
                p.wait(5)

    def stop_all(self) -> None:
        agents = [n for n in self.procs if n.startswith("agent-")]
        self.stop(agents, 8.0)
        self.stop(["collector"], 25.0)
        self.stop([n for n in self.procs if n not in agents and n != "collector"], 10.0)
        for f in self._logs:
            f.close()
        self._write_pids()


def wait_snmp(port: int, deadline: float, children: Children) -> None:
    """Wait until snmpsim answers sysObjectID for every meter (with pysnmp, as the collector will)."""
    import asyncio

    from puewatch import config as cfg
    from puewatch.collector.snmp.client import SnmpClient, SnmpError
    from puewatch.collector.snmp.device import SnmpDevice

    async def answers(community: str) -> bool:
        dev = cfg.build(SnmpDevice, {"name": community, "host": "127.0.0.1", "port": port, "community": community,
                                     "timeout_s": 0.5, "retries": 0}, "demo")
        client = SnmpClient(dev)
        try:
            return (await client.get(["1.3.6.1.2.1.1.2.0"]))[0] is not None
        except SnmpError:
            return False
        finally:
            client.close()

    async def all_answer() -> bool:
        return all(await asyncio.gather(*(answers(c) for c in SNMP_COMMUNITIES)))

    while time.monotonic() < deadline:
        if children.procs["snmpsim"].poll() is not None:
            raise UserError(f"snmpsim exited at start (see {children.log_dir / 'snmpsim.log'})")
        if asyncio.run(all_answer()):
            return
        time.sleep(0.2)
    raise UserError(f"snmpsim did not answer within the start-up time (see {children.log_dir / 'snmpsim.log'})")


def wait_polls(metrics_port: int, deadline: float, children: Children, stop: threading.Event) -> bool:
    """Wait until the collector has read every meter once (its /metrics count a poll that answered); False
    when stopped first (Ctrl-C). From then on every meter has a reading at or before any later time, so a
    period that starts one poll later was read by all of them all along."""
    missing = list(SNMP_COMMUNITIES)
    while time.monotonic() < deadline:
        proc = children.procs["collector"]
        if proc.poll() is not None:
            raise UserError(f"the collector exited with {proc.returncode} (log: {children.log_dir / 'collector.log'})")
        metrics = scrape(metrics_port)
        missing = [dev for dev in SNMP_COMMUNITIES
                   if metrics.get(f'puewatch_snmp_polls_total{{device="{dev}",result="ok"}}', 0.0) < 1]
        if not missing:
            return True
        if stop.wait(0.1):
            return False
    raise UserError(f"the collector did not read meter(s) {', '.join(missing)} within the start-up time "
                    f"(log: {children.log_dir / 'collector.log'})")


# How long the collector may take to open ingest while it runs: its first start on a machine compiles the
# kernels (Numba), 45 s on an AMD EPYC vCPU; a machine several times slower still gets there.
COMPILE_LIMIT_S = 600.0


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_tcp(port: int, deadline: float, proc: subprocess.Popen, what: str, logfile: Path,
             stop: threading.Event | None = None) -> bool:
    """Wait until `proc` listens on `port`; False when stopped first (Ctrl-C)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-1:] if logfile.exists() else []
            raise UserError(f"{what} exited with {proc.returncode}: {tail[0] if tail else ''} (log: {logfile})")
        if port_open(port):
            return True
        if (stop or threading.Event()).wait(0.1):
            return False
    raise UserError(f"{what} did not listen on 127.0.0.1:{port} in time (log: {logfile})")


# ---- reading the results -------------------------------------------------------------------

def scrape(port: int) -> dict[str, float]:
    """The collector's /metrics as {'name{labels}': value}; empty when it does not answer."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1.0).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def _cells(reader, measurement: str, fields: list[str], tags: dict[str, str], start_ns: int, end_ns: int) -> dict[int, dict[str, float]]:
    """{cell end time: {field: value}} of a derived series' cells in (start_ns, end_ns]: a cell is stamped
    at its end, so the one stamped at start_ns lies before the period and the one at end_ns in it."""
    cells: dict[int, dict[str, float]] = {}
    for f in fields:
        t, v = reader.series(measurement, f, tags, start_ns + 1, end_ns + 1)
        for ti, vi in zip(t.tolist(), v.tolist()):
            cells.setdefault(ti, {})[f] = vi
    return cells


def ratio(cells: dict[int, dict[str, float]], num: str, den: str) -> tuple[float, float, float, int]:
    """(ratio, Σnum, Σden, cells) over the cells where both are known: a ratio of energies."""
    a = b = 0.0
    n = 0
    for c in cells.values():
        x, y = c.get(num), c.get(den)
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        a, b, n = a + x, b + y, n + 1
    return (a / b if b > 0 else math.nan), a, b, n


def _latest(reader, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int) -> float:
    t, v = reader.series(measurement, field, tags, start_ns, end_ns)
    return float(v[-1]) if len(v) else math.nan


def _mean_power(cells: dict[int, dict[str, float]], field: str, n: int) -> float:
    values = [c[field] for _, c in sorted(cells.items())[-n:] if field in c and math.isfinite(c[field])]
    return sum(values) / len(values) * 3600.0 / INTERVAL_S if values else math.nan


# What the live view and the summary read of the derived series.
_SITE_FIELDS = [schema.site_energy_field(g) for g in ("facility_input", "it", "cooling", "gpu")]
_ZONE_FIELDS = [schema.ZONE_BOUNDARY_WH, schema.ZONE_IT_WH]


def snapshot(reader, metrics: dict[str, float], nodes: list[site.Node], now_ns: int) -> dict:
    """What the live view shows, read from the store (and /metrics for meter health)."""
    s = 1_000_000_000
    win = now_ns - 30 * s
    cells = _cells(reader, schema.SITE_ENERGY, _SITE_FIELDS, {"site": SITE}, win, now_ns + s)
    recent = dict(sorted(cells.items())[-10:])
    snap: dict = {
        # Mean power over the last 10 cells, the 10 s PUE's window (one cell of a 1 Wh register read every
        # second is too coarse): facility over IT is that PUE where every cell is known (it showed the mean
        # of 5 cells beside the 10 s PUE, 4-10 % off it).
        "facility_w": _mean_power(recent, "facility_input_wh", LIVE_CELLS),
        "it_w": _mean_power(recent, "it_wh", LIVE_CELLS),
        "gpu_w": _mean_power(recent, "gpu_wh", LIVE_CELLS),
        "live_pue": _latest(reader, schema.PUE, "pue", schema.pue(SITE, "10s").tags, win, now_ns + s),
        "live_pue_coverage": _latest(reader, schema.PUE, "pue_coverage", schema.pue(SITE, "10s").tags, win, now_ns + s),
        "lag_s": (now_ns - max(cells)) / s if cells else math.nan,
        "windows": {},
        "zones": {},
        "nodes": {},
        "meters": {},
    }
    for window in ("1m", "15m"):
        pue = schema.pue(SITE, window)
        snap["windows"][window] = {
            k: _latest(reader, pue.measurement, k, pue.tags, win, now_ns + s) for k in ("pue", "pue_coverage", "clf", "clf_coverage")
        }
    for z in site.ZONES:
        zid = schema.zone_energy(SITE, z)
        zc = _cells(reader, zid.measurement, _ZONE_FIELDS, zid.tags, win, now_ns + s)
        ppue = schema.ppue(SITE, z, "1m")
        snap["zones"][z] = {
            "it_w": _mean_power(zc, "it_wh", LIVE_CELLS),
            "boundary_w": _mean_power(zc, "boundary_wh", LIVE_CELLS),
            "ppue": _latest(reader, ppue.measurement, "ppue", ppue.tags, win, now_ns + s),
            "ppue_coverage": _latest(reader, ppue.measurement, schema.coverage_field("ppue"), ppue.tags, win, now_ns + s),
        }
    for n in nodes:
        t, p = reader.series("gpu_power", "power_average_w", {"node": n.name}, now_ns - 6 * s, now_ns + s)
        t2, u = reader.series("gpu_state", "util_gpu_pct", {"node": n.name}, now_ns - 6 * s, now_ns + s)
        power = util = math.nan
        if len(t):
            recent_p = p[t > t[-1] - s]  # the last second of samples, all GPUs
            power = float(recent_p.mean()) * site.GPUS_PER_NODE
        if len(t2):
            util = float(u[t2 > t2[-1] - s].mean())
        snap["nodes"][n.name] = {"zone": n.zone, "profile": n.profile, "gpu_w": power, "util_pct": util}
    for dev in SNMP_COMMUNITIES:
        ok = metrics.get(f'puewatch_snmp_polls_total{{device="{dev}",result="ok"}}', 0.0)
        err = metrics.get(f'puewatch_snmp_polls_total{{device="{dev}",result="error"}}', 0.0)
        snap["meters"][dev] = {
            "up": metrics.get(f'puewatch_snmp_up{{device="{dev}"}}', math.nan),
            "polls_ok": ok,
            "polls_error": err,
            "power_w": _latest(reader, schema.SNMP_READING, schema.SNMP_VALUE,
                               {"device": dev, "reading": schema.SNMP_POWER_READING},
                               now_ns - 10 * s, now_ns + s),
        }
    return snap


def report_period(up_ns: int | None, stop_ns: int, start_ns: int, end_ns: int) -> tuple[str, str, bool]:
    """The run's period as `--from`/`--to` (RFC 3339, whole seconds), and whether every meter was read
    all that time.

    From one poll after the collector had read every meter (`up_ns`, see wait_polls) to the end of
    `--duration` or the Ctrl-C (`stop_ns`), rounded inwards: every meter was read all that time, so
    the report's PUE is not biased by one meter read for longer than another (the collector polls
    on until it is stopped, after `stop_ns`). A run stopped before that: all of it (`start_ns` ..
    `end_ns`, rounded outwards), and False: its PUE is not published (see summarize).
    """
    from puewatch.core.timefmt import NS, format_time

    if up_ns is not None:
        lo, hi = -(-(up_ns + int(SNMP_INTERVAL_S * NS)) // NS) * NS, stop_ns // NS * NS
        if hi > lo:
            return format_time(lo), format_time(hi), True
    return format_time(start_ns // NS * NS), format_time(-(-end_ns // NS) * NS), False


def program() -> list[str]:
    """How to run this very puewatch again, as a user types it: `puewatch` when that is the one on PATH,
    else the script's path (`.venv/bin/puewatch` after `make run`, whose virtual environment is not on
    PATH), else this Python with `-m puewatch.cli`. Printed hints must run as printed."""
    import shutil

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "puewatch" and script.is_file():
        found = shutil.which("puewatch")
        if found and Path(found).resolve() == script.resolve():
            return ["puewatch"]
        return [_as_typed(script)]
    return [sys.executable, "-m", "puewatch.cli"]


def _as_typed(path: Path) -> str:
    """A program's path as a user types it: relative to the working directory when inside it (`.venv/bin/...`)."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path.absolute())


def report_args(d: Path, start: str, end: str) -> list[str]:
    """The auditor's report of the run: `puewatch report` over its period, from the meters' raw readings."""
    return ["report", "--config", str(d / "collector.toml"), "--from", start, "--to", end]


def store_hint(spec: StoreSpec, summary: dict) -> str:
    """A command that reads the run's cells from the store and prints what the summary prints of them:
    the collector's cells with facility and IT energy, and the GPU share of IT energy (as `summarize`)."""
    # The cells in (start, end]: a cell is stamped at its end (as `_cells` reads them).
    a, b = summary["start_ns"], summary["end_ns"]
    if spec.kind == "embedded":
        # Double quotes inside, so the shell's single quotes around it stay plain.
        code = (
            "import math; from puewatch.collector.stores.embedded import EmbeddedStore; "
            f"s = EmbeddedStore({json.dumps(str(spec.path))}); "
            f"d = lambda f: dict(zip(*(x.tolist() for x in s.series(\"site_energy\", f, {{\"site\": {json.dumps(SITE)}}}, {a + 1}, {b + 1})))); "
            "both = lambda x, y: [t for t in y if t in x and math.isfinite(x[t]) and math.isfinite(y[t])]; "
            "f, i, g = d(\"facility_input_wh\"), d(\"it_wh\"), d(\"gpu_wh\"); k = both(g, i); "
            "it = sum(i[t] for t in k); "
            "print(len(both(f, i)), \"cells, GPU share of IT energy\", format(sum(g[t] for t in k) / it, \".3f\") if it > 0 "
            "else \"unknown (no cell with IT energy)\")"
        )
        return shlex.join([_as_typed(Path(sys.executable)), "-c", code])
    u = urllib.parse.urlsplit(spec.url)
    cli = ["influx", "-host", u.hostname or "127.0.0.1", "-port", str(u.port or (443 if u.scheme == "https" else 8086))]
    if u.scheme == "https":
        cli.append("-ssl")
    if spec.user:
        cli += ["-username", spec.user, "-password", ""]  # an empty -password: the CLI asks for it
    query = (f"SELECT count(\"it_wh\") AS cells, sum(\"gpu_wh\") / sum(\"it_wh\") AS gpu_it_share "
             f"FROM \"site_energy\" WHERE \"site\" = '{SITE}' AND time > {a} AND time <= {b}")
    return shlex.join([*cli, "-database", spec.database, "-execute", query])


def summarize(reader, spec: StoreSpec, d: Path, nodes: list[site.Node], period: tuple[str, str, bool]) -> dict:
    """The run's figures: the report `report_command` prints, computed here by the same code.

    PUE, energies, coverage, CLF and pPUE come from that report (a ratio of energies over the
    period, from the meters' registers). Only what a report does not have comes from the
    collector's derived series: `cells`, its cells in the period with both facility and IT
    energy, and `gpu_it_share`, the agents' GPU energy over the IT energy of those cells.
    A run stopped before every meter had been read (`period`'s third item False, see
    report_period) publishes no PUE, CLF or pPUE: its meters were read for different lengths of
    time (a Ctrl-C 8 s in gave 2.98 for a site near 1.32); the report's jointly observed figures stay.
    """
    from puewatch.cli import build_parser
    from puewatch.report.cli import store_report
    from puewatch.core.timefmt import parse_time

    start, end, whole = period
    args = report_args(d, start, end)
    period_ns = (parse_time(start), parse_time(end))
    report: dict = {}
    error = None
    try:
        report = store_report(build_parser().parse_args(args))
    except UserError as exc:  # e.g. stopped before the collector wrote anything: still a summary
        error = str(exc)
        log.warning("the report of the run failed: %s", exc)
    cells = _cells(reader, schema.SITE_ENERGY, _SITE_FIELDS, {"site": SITE}, *period_ns)
    n_cells = ratio(cells, "facility_input_wh", "it_wh")[3]
    zones = {}
    for z in report.get("zones", []):
        zid = schema.zone_energy(SITE, z["zone"])
        zc = _cells(reader, zid.measurement, _ZONE_FIELDS, zid.tags, *period_ns)
        zones[z["zone"]] = {"ppue": z["ppue"] if whole else None, "ppue_joint": z["ppue_joint"],
                            "boundary_energy_wh": z["boundary_energy_wh"],
                            "it_energy_wh": z["it_energy_wh"], "completeness": z["completeness"],
                            "cells": ratio(zc, "boundary_wh", "it_wh")[3]}
    return {
        "site": SITE,
        "pue": report.get("pue") if whole else None,
        "pue_joint": report.get("pue_joint"),
        "label": report.get("label"),
        "it_energy_wh": report.get("it_energy_wh"),
        "facility_energy_wh": report.get("facility_energy_wh"),
        "category": report.get("category"),
        "coverage": report.get("completeness", 0.0),
        "cells": n_cells,
        "clf": report.get("clf") if whole else None,
        "gpu_it_share": published(ratio(cells, "gpu_wh", "it_wh")[0]),
        "zones": zones,
        "meters": {m["meter"]: {k: m[k] for k in ("energy_wh", "method", "completeness", "resets")}
                   for m in report.get("meters", [])},
        "warnings": ([] if whole else [
            "the run stopped before the collector had read every meter for a whole poll: no period in which every "
            "meter was read, so no PUE, CLF or pPUE is published (the meters were read for different lengths of "
            "time); pue_joint is over the time they were all observed"]) + report.get("warnings", [])
        + ([f"no report of the run: {error}"] if error else []),
        "nodes": [n_.name for n_ in nodes],
        "gpus": len(nodes) * site.GPUS_PER_NODE,
        "start_ns": period_ns[0],
        "end_ns": period_ns[1],
        "start": start,
        "end": end,
        "report_command": shlex.join([*program(), *args]),
        "store": {"kind": spec.kind, "path": str(spec.path) if spec.path else None, "url": spec.url or None,
                  "database": spec.database or None},
    }


# ---- the live view -----------------------------------------------------------------------

def _f(x: float | None, fmt: str, missing: str = "—") -> str:
    return missing if x is None or not math.isfinite(x) else format(x, fmt)


def render(snap: dict, elapsed_s: float, duration_s: float, spec: StoreSpec):
    from rich.console import Group
    from rich.table import Table

    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"[b]puewatch demo[/b] site [b]{SITE}[/b]",
        f"{elapsed_s:4.0f} / {duration_s:.0f} s",
        f"store: {spec.describe()}",
        "[dim]Ctrl-C stops[/dim]",
    )
    site_t = Table(title="Site (kW: the mean of the last 10 s, the 10 s PUE's window)", title_justify="left",
                   expand=False)
    for col in ("facility kW", "IT kW", "GPU kW", "PUE 10s (cov.)", "PUE 1m (cov.)", "PUE 15m (cov.)", "CLF 1m"):
        site_t.add_column(col, justify="right")
    w1, w15 = snap["windows"]["1m"], snap["windows"]["15m"]
    site_t.add_row(
        _f(snap["facility_w"] / 1e3, ".2f"), _f(snap["it_w"] / 1e3, ".2f"), _f(snap["gpu_w"] / 1e3, ".2f"),
        f"{_f(snap['live_pue'], '.3f')} ({_f(snap['live_pue_coverage'] * 100, '.0f')} %)",
        f"{_f(w1['pue'], '.3f')} ({_f(w1['pue_coverage'] * 100, '.0f')} %)",
        f"{_f(w15['pue'], '.3f')} ({_f(w15['pue_coverage'] * 100, '.0f')} %)",
        _f(w1["clf"], ".3f"),
    )
    zones_t = Table(title="Zones", title_justify="left")
    for col in ("zone", "IT kW", "boundary kW", "pPUE 1m (cov.)"):
        zones_t.add_column(col, justify="right")
    for z, v in snap["zones"].items():
        zones_t.add_row(z, _f(v["it_w"] / 1e3, ".2f"), _f(v["boundary_w"] / 1e3, ".2f"),
                        f"{_f(v['ppue'], '.3f')} ({_f(v['ppue_coverage'] * 100, '.0f')} %)")
    nodes_t = Table(title="GPU nodes (8 simulated GPUs each)", title_justify="left")
    for col in ("node", "zone", "profile", "GPU kW", "GPU util %"):
        nodes_t.add_column(col, justify="right")
    for name, v in snap["nodes"].items():
        nodes_t.add_row(name, v["zone"], v["profile"], _f(v["gpu_w"] / 1e3, ".2f"), _f(v["util_pct"], ".0f"))
    meters_t = Table(title="Facility meters (SNMP)", title_justify="left")
    for col in ("meter", "health", "polls ok / failed", "kW"):
        meters_t.add_column(col, justify="right")
    for name, v in snap["meters"].items():
        up = v["up"]
        health = "[green]up[/green]" if up == 1 else "[red]down[/red]" if up == 0 else "[dim]waiting[/dim]"
        meters_t.add_row(name, health, f"{v['polls_ok']:.0f} / {v['polls_error']:.0f}", _f(v["power_w"] / 1e3, ".2f"))
    return Group(head, site_t, zones_t, nodes_t, meters_t)


def print_summary(summary: dict, spec: StoreSpec, d: Path, interrupted: bool, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("")
    p(f"puewatch demo {'stopped' if interrupted else 'finished'}: {len(summary['nodes'])} nodes, {summary['gpus']} simulated GPUs")
    p(f"  PUE {_f(summary['pue'], '.4f')} (category {summary['category']}, {summary['label']}: a ratio of energies "
      f"from the meters' registers), jointly observed time {_f(summary['pue_joint'], '.4f')}")
    p(f"  facility energy {_f(summary['facility_energy_wh'], '.1f')} Wh, IT energy {_f(summary['it_energy_wh'], '.1f')} Wh, "
      f"completeness {summary['coverage'] * 100:.1f} % of {summary['start']} .. {summary['end']}")
    p(f"  CLF {_f(summary['clf'], '.3f')}, GPU share of IT energy {_f(summary['gpu_it_share'], '.3f')} "
      f"(the collector's {summary['cells']} cells of {INTERVAL_S:g} s)")
    for z, v in summary["zones"].items():
        p(f"  pPUE {z}: {_f(v['ppue'], '.4f')}")
    for w in summary["warnings"]:
        p(f"  warning: {w}")
    p("")
    p("The data stays in the store (the collector's cells and GPU share above):")
    p(f"  {store_hint(spec, summary)}")
    p("The auditor's report of this run, with the figures above (`--format html -o run.html` for charts):")
    p(f"  {summary['report_command']}")
    p(f"  Configurations and logs: {d}")


# ---- the command ---------------------------------------------------------------------------

class _Stop:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def __call__(self, signum, frame) -> None:
        if not self.signum:
            self.signum = signum
        self.event.set()


def main(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.nodes > 64:
        raise UserError(f"--nodes must be between 1 and 64, got {args.nodes}")
    if not 0 < args.duration < math.inf:
        raise UserError(f"--duration must be a positive number of seconds, got {args.duration:g}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    d = Path(args.dir).resolve()
    spec = parse_store(args.store, d)
    try:
        for sub in ("snmp", "state", "logs", "agents"):
            (d / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--dir {d}: {exc}") from None
    if spec.kind == "influx1":
        prepare_influx(spec)
        if spec.user:
            pw = d / "influx-password"
            pw.write_text(spec.password + "\n")
            pw.chmod(0o600)
    snmpsim = snmpsim_binary()
    nodes = site.make_nodes(args.nodes)
    ingest_port, metrics_port, snmp_port = free_tcp_port(), free_tcp_port(), free_udp_port()

    # Configurations, tokens, first recordings.
    token_lines = []
    for n in nodes:
        home = d / "agents" / n.name
        (home / "spool").mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        (home / "token").write_text(token + "\n")
        (home / "token").chmod(0o600)
        token_lines.append(f"{n.name} {token}")
        (home / "agent.toml").write_text(agent_toml(d, n, ingest_port))
    tokens = d / "tokens"
    tokens.write_text("# written by puewatch demo: one agent per line\n" + "\n".join(token_lines) + "\n")
    tokens.chmod(0o600)
    (d / "collector.toml").write_text(collector_toml(d, spec, ingest_port, metrics_port, snmp_port, nodes))
    recorder = site.Recorder(d / "snmp", nodes, RECORDING_PERIOD_S)
    try:
        recorder.start()
    except OSError as exc:
        raise UserError(f"cannot write the SNMP recordings in {d / 'snmp'}: {exc}") from None

    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    children = Children(d / "pids.json", d / "logs")
    start_ns = time.time_ns()
    up_ns = stop_ns = None
    summary = None
    try:
        py = [sys.executable, "-m", "puewatch.cli"]
        cache = d / "snmpsim-cache"
        cache.mkdir(exist_ok=True)
        children.start("snmpsim", [snmpsim, f"--data-dir={d / 'snmp'}", f"--cache-dir={cache}",
                                   f"--agent-udpv4-endpoint=127.0.0.1:{snmp_port}", "--log-level=error"],
                       env=dict(os.environ, SNMPSIM_ALLOW_ROOT="true"))
        children.start("collector", [*py, "collector", "--config", str(d / "collector.toml")])
        deadline = time.monotonic() + 90.0
        wait_snmp(snmp_port, deadline, children)
        # The collector opens ingest once its kernels are compiled: tens of seconds the first time on a
        # machine (45 s on an AMD EPYC vCPU), then from Numba's cache. It is given that time while it runs
        # (a slower machine than the 90 s start-up allows must not fail a first run), and the wait is said.
        if not args.json and not port_open(ingest_port):
            print("puewatch demo: waiting for the collector, which compiles its kernels on a machine's first run "
                  "(about a minute; cached after)...", file=sys.stderr)
        listening = wait_tcp(ingest_port, time.monotonic() + COMPILE_LIMIT_S, children.procs["collector"],
                             "the collector", d / "logs" / "collector.log", stop.event)
        deadline = max(deadline, time.monotonic() + 30.0)
        for n in nodes if listening else ():
            children.start(f"agent-{n.name}", [*py, "agent", "--config", str(d / "agents" / n.name / "agent.toml")])
        if not args.json and listening:  # (stopped while waiting: no agent was started, none is said)
            print(f"puewatch demo: {len(nodes)} nodes ({len(nodes) * site.GPUS_PER_NODE} simulated GPUs), "
                  f"{len(SNMP_COMMUNITIES)} SNMP meters, store {spec.describe()}; files in {d}", file=sys.stderr)
        if listening and wait_polls(metrics_port, deadline, children, stop.event):
            up_ns = time.time_ns()
        reader = open_reader(spec)
        live = None
        if not args.json and sys.stdout.isatty():
            from rich.live import Live

            live = Live(refresh_per_second=2, transient=False, redirect_stderr=False)
            live.start()
        end = time.monotonic() + args.duration
        next_view = 0.0 if live is not None else time.monotonic() + 10.0
        try:
            while not stop.event.is_set() and time.monotonic() < end:
                now = time.monotonic()
                if recorder.error:
                    raise UserError(recorder.error)
                dead = children.dead()
                if dead:
                    name, rc = dead[0]
                    raise UserError(f"{name} exited with {rc} (log: {d / 'logs' / (name + '.log')})")
                if live is not None and time.monotonic() >= next_view:
                    next_view = time.monotonic() + 1.0
                    snap = snapshot(reader, scrape(metrics_port), nodes, time.time_ns())
                    live.update(render(snap, time.monotonic() - (end - args.duration), args.duration, spec))
                elif live is None and not args.json and time.monotonic() >= next_view:
                    # Not a terminal (a pipe, a log): one progress line every 10 s instead of the live view.
                    next_view = time.monotonic() + 10.0
                    snap = snapshot(reader, scrape(metrics_port), nodes, time.time_ns())
                    w1 = snap["windows"]["1m"]
                    print(f"puewatch demo: {time.monotonic() - (end - args.duration):.0f} s, facility "
                          f"{_f(snap['facility_w'] / 1e3, '.1f')} kW, IT {_f(snap['it_w'] / 1e3, '.1f')} kW, "
                          f"PUE 1m {_f(w1['pue'], '.3f')} (coverage {_f(w1['pue_coverage'] * 100, '.0f')} %)",
                          file=sys.stderr, flush=True)
                stop.event.wait(max(0.0, min(CHECK_S - (time.monotonic() - now), end - time.monotonic())))
        finally:
            stop_ns = time.time_ns()
            if live is not None:
                live.stop()
        if not args.json:
            print("puewatch demo: stopping (agents, collector, meters)...", file=sys.stderr)
        children.stop_all()
        recorder.stop()
        end_ns = time.time_ns()
        summary = summarize(reader, spec, d, nodes, report_period(up_ns, stop_ns, start_ns, end_ns))
        summary["interrupted"] = bool(stop.signum)
    finally:
        children.stop_all()
        recorder.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print_summary(summary, spec, d, bool(stop.signum))
    if stop.signum == signal.SIGINT:
        return 130
    if stop.signum == signal.SIGTERM:
        return 143
    return 0
