"""The simulated site behind `puewatch demo`: GPU nodes, facility power and the meters' SNMP recordings.

Everything here is a function of the wall clock and the node list, so the
facility meters move with the same simulated IT load that the agents' `sim`
source reports: the nodes' GPU power is computed with the very `SimGpu` model
(same seed, profile and power limit) the agents run.

The electrical model (all powers in W, `t` in seconds since the epoch):

- node IT power = host base (CPUs, fans, NICs, drives) + GPU board power / PSU efficiency;
- zone IT (its PDU's input) = network and storage base + its nodes;
- CRAH units of a zone = a fan share of the zone's IT;
- chiller plant (site) = site IT x a share that follows a simulated outdoor
  temperature (a slow sine), so PUE moves with load and weather;
- UPS output = site IT x (1 + distribution losses); UPS losses and lighting are
  not metered on their own: the utility incomer sees them;
- incomer = site IT + cooling + UPS losses + lighting and offices.

With 8 simulated H100s per node this gives a PUE of about 1.2-1.3.

The meters answer over real SNMP (snmpsim) with the OIDs of profiles that
ship with puewatch, so the real profiles, auto-detection and the poller run:

| device | profile | what | site role |
|---|---|---|---|
| `incomer` | `generic` (private test arc 1.3.6.1.4.1.99999.60) | utility incomer: W and a Wh register | `facility_input` |
| `ups` | `apc-ups` (auto-detected from sysObjectID) | UPS output, load, energy | monitored only |
| `pdu-<zone>` | `eaton-epdu` (auto-detected) | rack PDU input totals, Wh register | `it`, `pdu_output` (category 2) |
| `crah-<zone>` | `entity-sensor` (fallback detection) | CRAH power supplies, W only (integrated) | `cooling`, in the zone |
| `chiller` | `generic` | chiller plant: W and a Wh register | `cooling`, site-wide |

Every value in a recording has a fixed width (zero-padded), so rewriting a
file never moves a line: snmpsim re-reads a recording when its mtime changes
and may reuse its offset index, which stays right (see `write_recordings`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from puewatch.agent.sources.sim import DRIVER_LOAD_S, Config as SimConfig, SimGpu

TAU = 2.0 * math.pi
GPUS_PER_NODE = 8
HOST_BASE_W = 1500.0          # CPUs, fans, NICs, drives of an 8-GPU node
PSU_EFFICIENCY = 0.94
ZONE_BASE_W = 600.0           # switches and storage of a zone
CRAH_SHARE = 0.06             # CRAH fans, share of the zone's IT power
UPS_DISTRIBUTION_LOSS = 0.01  # UPS output to PDU inputs (cables, floor PDUs)
UPS_LOSS_SHARE = 0.035        # UPS conversion loss, share of the load
UPS_NO_LOAD_W_PER_NODE = 60.0
OTHER_W_BASE = 200.0          # lighting, BMS, offices
OTHER_W_PER_NODE = 40.0
UPS_RATED_W_PER_NODE = 10_000.0
PROFILES = ("training", "inference", "training", "bursts")
ZONES = ("hall-a", "hall-b")
PRIVATE_ARC = "1.3.6.1.4.1.99999.60"  # private test arc: never a real device's
INCOMER_OIDS = (f"{PRIVATE_ARC}.1.1.0", f"{PRIVATE_ARC}.1.2.0")  # W (Gauge32), Wh (Counter32)
CHILLER_OIDS = (f"{PRIVATE_ARC}.2.1.0", f"{PRIVATE_ARC}.2.2.0")
U32 = 2**32


OUTDOOR_MEAN_C = 22.0
OUTDOOR_SWING_C = 8.0
# A meter's rating (`max_power_w` in the demo's collector.toml): twice its simulated peak, as a
# circuit is sized above its load, and because a poll may read a recording up to one rewrite old.
RATING_HEADROOM = 2.0
REGISTER_STEP_WH = 1.0        # the demo's energy registers count whole Wh


def outdoor_c(t: float) -> float:
    """Simulated outdoor temperature (°C): a 30-minute sine around 22 °C."""
    return OUTDOOR_MEAN_C + OUTDOOR_SWING_C * math.sin(TAU * (t - DRIVER_LOAD_S) / 1800.0)


def chiller_share_at(outdoor: float) -> float:
    """Chiller plant power as a share of IT power at an outdoor temperature (°C): more when it is warm."""
    return 0.10 + 0.006 * (outdoor - 15.0)


def chiller_share(t: float) -> float:
    return chiller_share_at(outdoor_c(t))


@dataclass
class Node:
    name: str
    zone: str
    profile: str
    seed: int
    gpus: list[SimGpu] = field(default_factory=list)

    def sim_config(self) -> SimConfig:
        return SimConfig(gpus=GPUS_PER_NODE, profile=self.profile, seed=self.seed)

    def gpu_w(self, t: float) -> float:
        return sum(g.power_w(t) for g in self.gpus)

    def it_w(self, t: float) -> float:
        return HOST_BASE_W + self.gpu_w(t) / PSU_EFFICIENCY


def make_nodes(n: int) -> list[Node]:
    """`n` nodes over the two zones: gpu-a-1, gpu-b-1, gpu-a-2, ... with varied load profiles."""
    nodes = []
    counts = {z: 0 for z in ZONES}
    for i in range(n):
        zone = ZONES[i % len(ZONES)]
        counts[zone] += 1
        node = Node(f"gpu-{zone[-1]}-{counts[zone]}", zone, PROFILES[i % len(PROFILES)], seed=i + 1)
        cfg = node.sim_config()
        node.gpus = [SimGpu(g, cfg) for g in range(cfg.gpus)]
        nodes.append(node)
    return nodes


def powers(nodes: list[Node], t: float) -> dict[str, float]:
    """Every simulated power at time t (W), by meter: incomer, ups, pdu-<zone>, crah-<zone>, chiller."""
    return _meter_powers(nodes, {n.name: n.it_w(t) for n in nodes}, chiller_share(t))


def peak_powers(nodes: list[Node]) -> dict[str, float]:
    """Every meter's largest simulated power (W): all GPUs at their power limit on the warmest day."""
    node_w = {n.name: HOST_BASE_W + sum(g.cfg.power_limit_w for g in n.gpus) / PSU_EFFICIENCY for n in nodes}
    return _meter_powers(nodes, node_w, chiller_share_at(OUTDOOR_MEAN_C + OUTDOOR_SWING_C))


def ratings_w(nodes: list[Node]) -> dict[str, float]:
    """Each meter's rated power (W), the largest the collector and the report may take it to draw:
    RATING_HEADROOM x its peak. (One register step on top of it is always allowed, core.energy.)"""
    return {k: RATING_HEADROOM * p for k, p in peak_powers(nodes).items()}


def _meter_powers(nodes: list[Node], node_it_w: dict[str, float], chiller: float) -> dict[str, float]:
    """The meters' powers (W) from each node's IT power and the chiller's share of IT power."""
    out: dict[str, float] = {}
    it_total = 0.0
    for zone in ZONES:
        it = ZONE_BASE_W + sum(node_it_w[n.name] for n in nodes if n.zone == zone)
        out[f"pdu-{zone}"] = it
        out[f"crah-{zone}"] = CRAH_SHARE * it
        it_total += it
    ups_out = it_total * (1.0 + UPS_DISTRIBUTION_LOSS)
    out["ups"] = ups_out
    out["chiller"] = chiller * it_total
    ups_loss = UPS_LOSS_SHARE * ups_out + UPS_NO_LOAD_W_PER_NODE * len(nodes)
    other = OTHER_W_BASE + OTHER_W_PER_NODE * len(nodes)
    cooling = out["chiller"] + sum(out[f"crah-{z}"] for z in ZONES)
    out["incomer"] = ups_out + ups_loss + cooling + other
    return out


class SiteState:
    """The meters' energy registers (Wh), integrated from `powers` as the clock advances."""

    # Registers start where a meter that has run for a while would be.
    START_WH = {"incomer": 84_213_377.0, "ups": 31_337_000.0, "chiller": 9_876_543.0}

    def __init__(self, nodes: list[Node], t0: float) -> None:
        self.nodes = nodes
        self.t = t0
        self.p = powers(nodes, t0)
        self.energy_wh = {k: self.START_WH.get(k, 1_234_567.0 + 1000.0 * i) for i, k in enumerate(self.p)}

    def advance(self, t: float, step_s: float = 0.05) -> None:
        """Integrate every power from the last time to t (trapezoids of at most step_s)."""
        if t <= self.t:
            return
        n = max(1, math.ceil((t - self.t) / step_s))
        h = (t - self.t) / n
        prev = self.p
        for i in range(1, n + 1):
            cur = powers(self.nodes, self.t + i * h)
            for k in cur:
                self.energy_wh[k] += 0.5 * (prev[k] + cur[k]) * h / 3600.0
            prev = cur
        self.t, self.p = t, prev


# ---- SNMP recordings ------------------------------------------------------------------

def _rec(oid: str, tag: int, value: int | str, width: int = 10) -> tuple[str, str]:
    text = value if isinstance(value, str) else f"{int(value):0{width}d}"
    return oid, f"{oid}|{tag}|{text}"


def _system(descr: str, sysobjectid: str, uptime_ticks: int) -> list[tuple[str, str]]:
    return [
        _rec("1.3.6.1.2.1.1.1.0", 4, descr),
        _rec("1.3.6.1.2.1.1.2.0", 6, sysobjectid),
        _rec("1.3.6.1.2.1.1.3.0", 67, uptime_ticks),
        _rec("1.3.6.1.2.1.1.5.0", 4, "puewatch-demo"),
    ]


def recordings(state: SiteState, started: float) -> dict[str, str]:
    """The snmprec text of every device (community -> text), lines in OID order, fixed widths."""
    p, e = state.p, state.energy_wh
    up = int((state.t - started) * 100) % U32
    files: dict[str, list[tuple[str, str]]] = {}
    files["incomer"] = _system("puewatch demo: utility incomer energy meter (simulated)", f"{PRIVATE_ARC}.1", up) + [
        _rec(INCOMER_OIDS[0], 66, round(p["incomer"])),
        _rec(INCOMER_OIDS[1], 65, int(e["incomer"]) % U32),
    ]
    files["chiller"] = _system("puewatch demo: chiller plant energy meter (simulated)", f"{PRIVATE_ARC}.2", up) + [
        _rec(CHILLER_OIDS[0], 66, round(p["chiller"])),
        _rec(CHILLER_OIDS[1], 65, int(e["chiller"]) % U32),
    ]
    ups = "1.3.6.1.4.1.318.1.1.1.4"
    rated = UPS_RATED_W_PER_NODE * max(1, len(state.nodes))
    files["ups"] = _system("APC Web/SNMP Management Card (puewatch demo, simulated Symmetra)", "1.3.6.1.4.1.318.1.3.27", up) + [
        _rec(f"{ups}.2.8.0", 66, round(p["ups"])),                        # upsAdvOutputActivePower, W
        _rec(f"{ups}.2.9.0", 66, round(p["ups"] / 0.95)),                 # upsAdvOutputApparentPower, VA
        _rec(f"{ups}.2.12.0", 66, int(e["ups"] / 1000.0)),                # upsAdvOutputEnergyUsage, kWh
        _rec(f"{ups}.3.3.0", 66, round(1000.0 * p["ups"] / rated)),       # upsHighPrecOutputLoad, 0.1 %
        _rec(f"{ups}.3.6.0", 66, int(e["ups"] / 10.0) % U32),             # upsHighPrecOutputEnergyUsage, 0.01 kWh
    ]
    for zone in ZONES:
        pdu, crah = f"pdu-{zone}", f"crah-{zone}"
        col = "1.3.6.1.4.1.534.6.6.7.3.5.1"  # inputTotalTable, row strappingIndex 0 . inputIndex 1
        files[pdu] = _system(f"Eaton ePDU (puewatch demo, {zone}, simulated)", "1.3.6.1.4.1.534.6.6.7", up) + [
            _rec(f"{col}.3.0.1", 2, round(p[pdu] / 0.97)),                # inputTotalVA
            _rec(f"{col}.4.0.1", 2, round(p[pdu])),                        # inputTotalWatts
            _rec(f"{col}.5.0.1", 66, int(e[pdu]) % U32),                   # inputTotalWh
        ]
        # ENTITY-MIB: chassis 1, power supplies 2 and 3, their watts sensors 12 and 13.
        ent = "1.3.6.1.2.1.47.1.1.1.1"
        sens = "1.3.6.1.2.1.99.1.1.1"
        rows = []
        for idx, descr, parent, cls in ((1, "CRAH chassis", 0, 3), (2, "PSU 1", 1, 6), (3, "PSU 2", 1, 6),
                                        (12, "PSU 1 input power", 2, 8), (13, "PSU 2 input power", 3, 8)):
            rows += [_rec(f"{ent}.2.{idx}", 4, descr), _rec(f"{ent}.4.{idx}", 2, parent), _rec(f"{ent}.5.{idx}", 2, cls)]
        half = p[crah] / 2.0
        for idx in (12, 13):
            rows += [
                _rec(f"{sens}.1.{idx}", 2, 6),   # entPhySensorType watts(6)
                _rec(f"{sens}.2.{idx}", 2, 9),   # entPhySensorScale units(9)
                _rec(f"{sens}.3.{idx}", 2, 0),   # entPhySensorPrecision
                _rec(f"{sens}.4.{idx}", 2, round(half)),
                _rec(f"{sens}.5.{idx}", 2, 1),   # entPhySensorOperStatus ok(1)
            ]
        files[crah] = _system(f"Liebert CRAH (puewatch demo, {zone}, simulated)", "1.3.6.1.4.1.476.1.42", up) + rows
    out = {}
    for name, recs in files.items():
        recs.sort(key=lambda r: tuple(int(x) for x in r[0].split(".")))
        out[name] = "\n".join(line for _, line in recs) + "\n"
    return out


def write_recordings(data_dir: Path, texts: dict[str, str], generation: int) -> None:
    """Replace every recording atomically, with mtime = `generation` (strictly increasing).

    snmpsim compares a recording's mtime in whole seconds with the one it loaded
    and re-reads the file when they differ; a rewrite within the same second
    would go unnoticed, so the mtime is a counter we set, not the clock. The
    values have fixed widths, so the offset index snmpsim keeps stays valid.
    """
    for name, text in texts.items():
        path = data_dir / f"{name}.snmprec"
        tmp = data_dir / f".{name}.snmprec.tmp"
        tmp.write_text(text)
        os.utime(tmp, (generation, generation))
        tmp.replace(path)


class Recorder:
    """The meters' recordings, kept current on a thread from `start()` until `stop()`.

    Every `period_s` it advances the registers to the clock and rewrites the recordings, from
    before snmpsim serves them until after it stops, so a served register only ever grows by
    the simulated energy since its last rewrite. (It used to be advanced by the demo's main
    loop, which starts after the meters and the collector are up: every meter first served
    the registers of the demo's start and then jumped by the whole start-up's energy.)
    A failure to write is kept in `error` (the demo stops on it).
    """

    def __init__(self, data_dir: Path, nodes: list[Node], period_s: float) -> None:
        self.data_dir, self.nodes, self.period_s = data_dir, nodes, period_s
        self.state: SiteState | None = None
        self.started = 0.0  # time.time() of the first recordings
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Write the first recordings (here: errors raise) and start the thread that keeps them current."""
        t0 = time.time()
        self.state = SiteState(self.nodes, t0)
        self.started, self._generation = t0, int(t0)
        self._write()
        self._thread = threading.Thread(target=self._run, name="demo-recordings", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        write_recordings(self.data_dir, recordings(self.state, self.started), self._generation)
        self._generation += 1

    def _run(self) -> None:
        next_s = time.monotonic() + self.period_s
        while not self._stop.wait(max(0.0, next_s - time.monotonic())):
            next_s = max(next_s + self.period_s, time.monotonic())  # late: no burst of catch-up writes
            try:
                self.state.advance(time.time())
                self._write()
            except OSError as exc:
                self.error = f"cannot rewrite the SNMP recordings in {self.data_dir}: {exc}"
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
