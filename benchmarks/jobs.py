"""`puewatch bench jobs`: attribution of a day of a large site's job ledger, beside a plain
NumPy group-by of the same records in the same run (issue 16: 1,000 nodes x 8 GPUs x one day
of minute records, target < 10 s)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from puewatch.benchmarks import emit
from puewatch.core.site import Meter, SiteModel, Zone
from puewatch.core.timefmt import NS

T0 = 1767225600 * NS  # 2026-01-01T00:00:00Z
ZONES = 4


def synthetic(nodes: int, gpus: int, minutes: int, seed: int = 16) -> tuple[Any, Any, SiteModel]:
    """A ledger (one record per GPU and minute, jobs of 1-8 GPUs holding nodes for 1-12 h) and the cells."""
    from puewatch.jobs.cells import Cells
    from puewatch.jobs.ledger import Ledger

    rng = np.random.default_rng(seed)
    n = nodes * gpus * minutes
    node = np.repeat(np.arange(nodes, dtype=np.int32), gpus * minutes)
    gpu = np.tile(np.repeat(np.arange(gpus, dtype=np.int32), minutes), nodes)
    minute = np.tile(np.arange(minutes, dtype=np.int64), nodes * gpus)
    # A new job on each (node, GPU) every 1-12 hours: job ids from the slot and the block.
    block = minute // rng.integers(60, 720, nodes * gpus).repeat(minutes)
    job = (node.astype(np.int64) * gpus + gpu) * 64 + block
    codes, job = np.unique(job, return_inverse=True)
    jobs = [(f"tenant-{i % 50}", f"job-{i}") for i in range(codes.size)]
    ledger = Ledger(
        end_ns=T0 + (minute + 1) * 60 * NS, interval_ns=np.full(n, 60 * NS), node=node, job=job.astype(np.int32),
        gpu_model=np.zeros(n, np.int32), gpu_wh=rng.uniform(1.0, 11.0, n), host_wh=rng.uniform(0.2, 1.0, n),
        share=np.ones(n), gpu_wh_estimated=np.zeros(n, bool), host_estimated=np.ones(n, bool),
        shared=np.zeros(n, bool), reserved_idle=np.zeros(n, bool),
        nodes=[f"gpu-{i % ZONES}-{i}" for i in range(nodes)], jobs=jobs, gpu_models=["NVIDIA H100 80GB HBM3"])
    it_zone = np.full((ZONES, minutes), nodes * gpus * 8.0 / ZONES)
    boundary = it_zone * 1.15
    cells = Cells(T0, 60 * NS, boundary.sum(axis=0) * 1.03, it_zone.sum(axis=0), None, [f"z{i}" for i in range(ZONES)],
                  boundary, it_zone)
    meters = {f"it-{i}": Meter(role="it", point="it_input", zone=f"z{i}", measurement="m", field="f")
              for i in range(ZONES)}
    site = SiteModel("bench", meters, {f"z{i}": Zone(nodes=[f"gpu-{i}-*"]) for i in range(ZONES)})
    return ledger, cells, site


def run(nodes: int, gpus: int, minutes: int, repeat: int) -> dict[str, Any]:
    from puewatch.jobs.attribute import attribute

    ledger, cells, site = synthetic(nodes, gpus, minutes)
    attribute(ledger, cells, site)  # compile the kernel and warm the caches
    best = min(_timed(lambda: attribute(ledger, cells, site)) for _ in range(repeat))
    # The floor: a plain NumPy group-by of the same records' IT energy per job (no cells, no factors).
    it = ledger.it_wh
    base = min(_timed(lambda: np.bincount(ledger.job, weights=it, minlength=len(ledger.jobs))) for _ in range(repeat))
    a = attribute(ledger, cells, site)
    i = a.identities
    return {"records": len(ledger), "jobs": len(ledger.jobs), "tenants": len(a.tenants), "nodes": nodes,
            "gpus_per_node": gpus, "minutes": minutes, "attribution_s": best, "numpy_groupby_s": base,
            "records_per_s": len(ledger) / best, "target_s": 10.0,
            "identity_it_error": abs(i["jobs_it_energy_wh"] + i["unattributed_it_energy_wh"] - i["measured_it_energy_wh"])
            / i["measured_it_energy_wh"],
            "identity_dc_error": abs(i["jobs_facility_energy_wh"] + i["unattributed_facility_energy_wh"] - i["e_dc_wh"])
            / i["e_dc_wh"]}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _table(r: dict[str, Any]) -> None:
    print(f"job attribution: {r['records']:,} ledger records ({r['nodes']} nodes x {r['gpus_per_node']} GPUs x "
          f"{r['minutes']} min), {r['jobs']:,} jobs, {r['tenants']} tenants")
    print(f"  puewatch attribution  {r['attribution_s']:8.3f} s  ({r['records_per_s'] / 1e6:.1f} M records/s; "
          f"target < {r['target_s']:.0f} s)")
    print(f"  NumPy group-by (floor){r['numpy_groupby_s']:8.3f} s  (IT energy per job only)")
    print(f"  identities: IT {r['identity_it_error']:.1e}, E_DC {r['identity_dc_error']:.1e} (relative error)")


def main(args: argparse.Namespace) -> int:
    return emit(run(args.nodes, args.gpus, args.minutes, args.repeat), args.json, _table)
