"""Energy per job and per tenant, facility overhead included, and what no job holds.

Rules (docs/auditor-guide.md, "Energy per job"): a record's IT energy is gpu_wh + host_wh,
spread pro rata in time over the attribution cells its interval overlaps; in each cell it
is weighed by its zone's facility factor (`cells.cell_factors`); the green share and carbon
of a cell go with its facility energy. Unattributed energy is, per zone and cell, the
measured IT energy less the jobs'. Both identities hold per cell by construction and are
reported over the known cells (the boundary):

    jobs' IT + unattributed IT               = measured IT
    jobs' facility + unattributed facility   = E_DC
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from puewatch import kernels as k
from puewatch.core.numbers import published, ratio, share
from puewatch.core.site import SiteModel
from puewatch.core.timefmt import NS, UTC, Calendar, format_time
from puewatch.jobs.carbon import CarbonData
from puewatch.jobs.cells import Cells, cell_factors, floor_warning
from puewatch.jobs.ledger import Ledger


@dataclass
class Attribution:
    jobs: list[dict[str, Any]]
    tenants: list[dict[str, Any]]
    unattributed: dict[str, Any]
    identities: dict[str, Any]
    site: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _green_and_carbon(cells: Cells, known: np.ndarray, carbon: CarbonData | None, warnings: list[str],
                      calendar: Calendar = UTC) -> tuple[np.ndarray, np.ndarray, bool, list[dict[str, Any]]]:
    """Per cell: green share of E_DC (0..1) and kg CO2e per Wh of facility energy; whether carbon is known."""
    green = np.zeros(cells.n)
    if cells.renewable_wh is not None:
        r = cells.renewable_wh
        missing = np.count_nonzero(known & ~np.isfinite(r))
        if missing:
            warnings.append(f"renewable meters: {missing} known cells without their energy count no renewable energy")
        green += np.where(np.isfinite(r), r, 0.0)
    if carbon is not None:
        green += carbon.green_wh(cells.edges_ns)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(known & (cells.e_dc_wh > 0), np.minimum(green, cells.e_dc_wh) / cells.e_dc_wh, 0.0)
    per_wh = np.zeros(cells.n)
    factors_used: list[dict[str, Any]] = []
    ok = carbon is not None and bool(carbon.factors)
    if carbon is None or not carbon.factors:
        warnings.append("no emission factor (give --carbon with the site's region's factors): carbon and CUE are null")
    else:
        years = calendar.years(cells.edges_ns[:-1])  # the calendar year (the site's) each cell starts in
        for year in np.unique(years[known]).tolist():
            f = carbon.factor(int(year))
            if f is None:
                warnings.append(f"no emission factor for region {carbon.region!r} and year {year} in {carbon.path}: "
                                "carbon and CUE are null")
                ok = False
                continue
            factors_used.append({"region": f.region, "year": f.year, "kg_co2e_per_kwh": f.kg_co2e_per_kwh,
                                 "source": f.source})
            per_wh[years == year] = f.kg_co2e_per_kwh / 1000.0
    # Green energy emits nothing of the grid's: only the grid part of a cell's energy carries the factor.
    return frac, per_wh * (1.0 - frac), ok, factors_used


def _green_sources(cells: Cells, known: np.ndarray, carbon: CarbonData | None) -> dict[str, Any]:
    """Where the known cells' green energy comes from, before each cell's cap at its E_DC: the
    renewable meters' energy and each certificate or PPA entry's part (id, period, MWh, source)."""
    from puewatch.core.timefmt import format_time

    meters = cells.renewable_wh
    entries = []
    for g in carbon.green if carbon is not None else []:
        part = CarbonData(green=[g]).green_wh(cells.edges_ns)
        if np.any(part[known] > 0):
            entries.append({"kind": g.kind, "id": g.id, "start": format_time(g.start_ns), "end": format_time(g.end_ns),
                            "mwh": g.mwh, "source": g.source, "energy_in_cells_wh": float(part[known].sum())})
    return {"renewable_meters_wh": float(np.nansum(np.where(known, meters, 0.0))) if meters is not None else 0.0,
            "green_entries": entries}


def record_rows(ledger: Ledger, cells: Cells, site: SiteModel) -> np.ndarray:
    """Each record's row of the cell factors: its node's zone (by the config's node patterns), else "no zone"."""
    zone_row = {z: i for i, z in enumerate(cells.zones)}
    out_row = len(cells.zones)
    node_rows = np.array([zone_row.get(site.zone_of_node(n), out_row) for n in ledger.nodes] or [0], np.int64)
    return node_rows[ledger.node]


def records_it_wh(ledger: Ledger, cells: Cells, site: SiteModel, factor: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """The IT energy of the records `sel` selects, per factor row and cell (Wh): the cell rule's spread of
    `k.cell_shares`, for one tenant's records (its statement's days, its warnings)."""
    zeros = np.zeros(cells.n)
    return k.cell_shares(ledger.end_ns[sel], ledger.interval_ns[sel], ledger.it_wh[sel],
                         record_rows(ledger, cells, site)[sel], cells.t0_ns, cells.cell_ns, factor, zeros,
                         zeros).job_it_wh


def attribute(ledger: Ledger, cells: Cells, site: SiteModel, carbon: CarbonData | None = None,
              tenant: str | None = None) -> Attribution:
    warnings: list[str] = [f"job ledger: {n} records left out: {why}" for why, n in sorted(ledger.dropped.items())]
    if ledger.overbooked:
        ob = ledger.overbooked
        node, gpu, t = ob["first"]
        warnings.append(f"job ledger: {ob['records']} records hold {ob['gpus']} GPU(s) with others whose shares sum above "
                        f"1 (two jobs each claiming one GPU whole, or a GPU's records overlapping; the first: node "
                        f"{node!r} GPU {gpu!r} at {format_time(t)}): their GPU-hours and energy are counted more than "
                        "once, and the unattributed energy is that much lower")
    warnings += [w for w in map(site.node_zone_warning, ledger.nodes) if w]
    f = cell_factors(cells)
    floors = floor_warning(cells, f, site)
    if floors:
        warnings.append(floors)
    green_frac, carbon_per_wh, carbon_ok, factors_used = _green_and_carbon(cells, f.known, carbon, warnings,
                                                                           site.calendar)
    it = ledger.it_wh
    res = k.cell_shares(ledger.end_ns, ledger.interval_ns, it, record_rows(ledger, cells, site), cells.t0_ns,
                        cells.cell_ns, f.factor, green_frac, carbon_per_wh)
    # A job is in the period where a record of it overlaps the period (records are read an interval
    # beyond its end, for their share inside): one whose records all lie outside is no job of it.
    inside = res.in_period > 0
    job_in = np.bincount(ledger.job[inside], minlength=len(ledger.jobs)) > 0
    listed = job_in & np.array([tenant is None or t == tenant for t, _ in ledger.jobs] or [False], bool)[:len(job_in)]
    jobs, tenants = _group(ledger, res, _in_known_cells(ledger, cells, f.known), tenant, carbon_ok, job_in)
    nameless = sum(1 for j in jobs if not j["tenant"])
    if nameless:
        warnings.append(f"{nameless} jobs have no tenant (no Slurm account, no tenant in the job map): listed under "
                        "the tenant \"\"; give each job an account to name who holds it")
    # The nodes of the listed jobs' records that had no host energy (not the whole site's).
    mine = listed[ledger.job] & inside & ledger.host_unknown if len(ledger) else np.zeros(0, bool)
    unknown = sorted({ledger.nodes[n] for n in np.unique(ledger.node[mine]).tolist()})
    if unknown:
        n_jobs = sum(1 for j in jobs if j["host_unknown_share"])
        warnings.append(f"{n_jobs} jobs' host share unknown for part of their time (host_unknown_share): nodes "
                        f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} ({len(unknown)}) have no RAPL "
                        "readable and no host_estimate_w; their host energy is counted unattributed")
    stray = ledger.unattributed_processes
    if stray:
        names = ", ".join(f"{s['node']} (up to {s['max_processes']} in {s['intervals']} intervals)" for s in stray[:5])
        warnings.append(f"GPU processes that belong to no job ran on {len(stray)} nodes: {names}"
                        f"{' ...' if len(stray) > 5 else ''}; their GPUs' energy is unattributed unless a job held them")

    # Unattributed: per row and cell, measured IT less the jobs' (over the cells with a factor).
    has = np.isfinite(f.factor)
    # A known cell can leave a row without a factor: no IT energy measured on it, and a factor that would be
    # under 1 (cells.cell_factors). Jobs' energy there is in no facility energy: said, not only shown as a
    # lower completeness (found by the independent jobs audit, where the identities counted the cell known).
    # Of the jobs listed (under --tenant, that tenant's alone: its statement carries these warnings).
    job_it = res.job_it_wh
    if tenant is not None:
        job_it = records_it_wh(ledger, cells, site, f.factor, listed[ledger.job] if len(ledger) else np.zeros(0, bool))
    lost = f.known[None, :] & ~has & (job_it > 0)
    if np.any(lost):
        names = [*(f"zone {z}" for z in cells.zones), "nodes in no zone"]
        rows = ", ".join(f"{names[i]} in {int(n)}" for i, n in enumerate(lost.sum(axis=1)) if n)
        first = int(np.argmax(np.any(lost, axis=0)))
        warnings.append(
            f"jobs' IT energy of {float(job_it[lost].sum()):,.1f} Wh in {int(np.any(lost, axis=0).sum())} known "
            f"cells (the first {format_time(int(cells.edges_ns[first]))}..{format_time(int(cells.edges_ns[first + 1]))}) "
            f"is on rows with no factor there: {rows} (no IT energy measured there, and E_DC below the zone "
            "boundaries plus the IT outside them, so its factor would be under 1): it is in no facility energy, "
            "green energy or carbon, and its jobs' completeness counts it unknown")
    u_it = np.where(has, f.row_it_wh - res.job_it_wh, 0.0)
    fac = np.where(has, f.factor, 0.0)
    u_fac = u_it * fac
    negative = np.count_nonzero(has & (u_it < -1e-9 * np.maximum(f.row_it_wh, 1.0)))
    if negative:
        warnings.append(f"in {negative} zone-cells the jobs' IT energy exceeds the measured IT energy (unattributed "
                        "energy negative there): check the agents' host energy estimate and the IT meters")
    e_dc = float(np.sum(cells.e_dc_wh[f.known]))
    measured_it = float(np.sum(np.where(has, f.row_it_wh, 0.0)))
    jobs_it = float(np.sum(res.covered_it_wh))
    jobs_fac = float(np.sum(res.facility_wh))
    unattributed = {
        "it_energy_wh": float(u_it.sum()),
        "it_energy_known_wh": float(u_it.sum()),  # all of it: measured IT less the jobs', in known cells
        "facility_energy_wh": float(u_fac.sum()),
        "green_energy_wh": float((u_fac * green_frac).sum()),
        "carbon_kg": float((u_fac * carbon_per_wh).sum()) if carbon_ok else None,
        "by_zone": [{"zone": z, "it_energy_wh": float(u_it[i].sum()), "facility_energy_wh": float(u_fac[i].sum())}
                    for i, z in enumerate([*cells.zones, ""])],
    }
    identities = {
        "boundary": "the cells with E_DC, E_IT and every zone's energies stored in full, and no ratio below its "
                    "physical floor (a PUE, pPUE or factor under 1)",
        "cells_known": int(f.known.sum()),
        "cells": cells.n,
        "measured_it_energy_wh": measured_it,
        "jobs_it_energy_wh": jobs_it,
        "unattributed_it_energy_wh": unattributed["it_energy_wh"],
        "e_dc_wh": e_dc,
        "jobs_facility_energy_wh": jobs_fac,
        "unattributed_facility_energy_wh": unattributed["facility_energy_wh"],
    }
    green_total = float(np.sum(cells.e_dc_wh[f.known] * green_frac[f.known]))
    carbon_total = float(np.sum(cells.e_dc_wh[f.known] * carbon_per_wh[f.known])) if carbon_ok else None
    site_row = {
        "pue": ratio(e_dc, measured_it),
        "facility_energy_wh": e_dc,
        "it_energy_wh": measured_it,
        "it_energy_known_wh": measured_it,  # measured over the known cells only
        "completeness": cells.n and float(f.known.sum() / cells.n),
        "green_energy_wh": green_total,
        "green_share": share(green_total, e_dc),
        "carbon_kg": carbon_total,
        # ISO/IEC 30134-8: kg CO2e of the data centre's energy per kWh of IT energy.
        "cue_kg_per_kwh": ratio(carbon_total * 1000.0, measured_it) if carbon_total is not None else None,
        "emission_factors": factors_used,
        **_green_sources(cells, f.known, carbon),
    }
    return Attribution(jobs, tenants, unattributed, identities, site_row, warnings)


def _in_known_cells(ledger: Ledger, cells: Cells, known: np.ndarray) -> np.ndarray:
    """Per record, whether its interval (end - interval_s, end] overlaps a known cell: its energy there,
    0 included, is then known (a record of 0 Wh in a known cell has facility energy 0, not none)."""
    t0, cell, n = cells.t0_ns, cells.cell_ns, cells.n
    start, end = ledger.end_ns - ledger.interval_ns, ledger.end_ns
    # Cell c, (t0 + c cell, t0 + (c + 1) cell], meets (start, end] for c from floor((start - t0) / cell)
    # to ceil((end - t0) / cell) - 1.
    c0 = np.clip((start - t0) // cell, 0, n)
    c1 = np.clip(-((t0 - end) // cell), 0, n)  # one past the last
    known_before = np.concatenate([[0], np.cumsum(known, dtype=np.int64)])
    return (c0 < c1) & (known_before[c1] > known_before[c0])


def _sums(ledger: Ledger, res: k.CellShares, in_known: np.ndarray, codes: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The plain group-by: per code, the sums every row is built from."""
    inside = res.in_period
    gpu_rec = ledger.gpu_model >= 0

    def s(w: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=w, minlength=n)

    gpu_wh, host_wh = ledger.gpu_wh * inside, ledger.host_wh * inside
    held_s = ledger.interval_ns / NS * ledger.share * inside  # time held, by the job's share
    estimated = np.where(ledger.gpu_wh_estimated, gpu_wh, 0.0) + np.where(ledger.host_estimated, host_wh, 0.0)
    return {
        "records": np.bincount(codes, weights=(inside > 0).astype(np.float64), minlength=n),
        "gpu_wh": s(gpu_wh), "host_wh": s(host_wh), "estimated_wh": s(estimated),
        "covered_it_wh": s(res.covered_it_wh), "facility_wh": s(res.facility_wh), "green_wh": s(res.green_wh),
        "carbon_kg": s(res.carbon_kg), "shared": s((ledger.shared & (inside > 0)).astype(float)),
        "reserved_idle_wh": s(np.where(ledger.reserved_idle, gpu_wh, 0.0)),
        "gpu_s": s(np.where(gpu_rec, ledger.interval_ns / NS * ledger.share * inside, 0.0)),
        "held_s": s(held_s), "host_unknown_s": s(np.where(ledger.host_unknown, held_s, 0.0)),
        "in_known": s(in_known.astype(np.float64)),
    }


def _row(sums: dict[str, np.ndarray], i: int, by_model: dict[str, float], carbon_ok: bool) -> dict[str, Any]:
    it = sums["gpu_wh"][i] + sums["host_wh"][i]
    cov, fac = sums["covered_it_wh"][i], sums["facility_wh"][i]
    # Known where a record of it overlaps a known cell (a cell with a factor), whatever its energy there.
    known = sums["in_known"][i] > 0
    return {
        "gpu_hours": float(sums["gpu_s"][i] / 3600.0),
        "gpu_hours_by_model": by_model,
        "gpu_energy_wh": float(sums["gpu_wh"][i]),
        "host_energy_wh": float(sums["host_wh"][i]),
        "it_energy_wh": float(it),
        # Of that, the part in known cells (those with a factor): what the identities add up.
        "it_energy_known_wh": float(cov),
        # Over the cells with a factor only: null when none of its cells has one.
        "facility_energy_wh": float(fac) if known else None,
        "pue": ratio(fac, cov),
        "completeness": share(cov, it) if it > 0 else None,
        "estimated_share": share(sums["estimated_wh"][i], it),
        # Of the time it held GPUs (or a host share), how much had no host energy known: host_wh 0 there,
        # the node's host energy stays unattributed (agent/README.md, host energy policy).
        "host_unknown_share": share(sums["host_unknown_s"][i], sums["held_s"][i]),
        "reserved_idle_energy_wh": float(sums["reserved_idle_wh"][i]),
        "shared_records": int(sums["shared"][i]),
        "green_energy_wh": float(sums["green_wh"][i]) if known else None,
        "green_share": share(sums["green_wh"][i], fac),
        "carbon_kg": float(sums["carbon_kg"][i]) if known and carbon_ok else None,
        "records": int(sums["records"][i]),
    }


def _by_model(ledger: Ledger, res: k.CellShares, codes: np.ndarray, n: int) -> list[dict[str, float]]:
    m = len(ledger.gpu_models)
    gpu_rec = ledger.gpu_model >= 0
    hours = np.bincount(codes[gpu_rec] * m + ledger.gpu_model[gpu_rec], minlength=n * m,
                        weights=(ledger.interval_ns / NS * ledger.share * res.in_period)[gpu_rec] / 3600.0)
    hours = hours.reshape(n, m) if m else np.zeros((n, 0))
    return [{ledger.gpu_models[j]: float(hours[i, j]) for j in np.flatnonzero(hours[i] > 0)} for i in range(n)]


def _group(ledger: Ledger, res: k.CellShares, in_known: np.ndarray, tenant: str | None, carbon_ok: bool,
           job_in: np.ndarray) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per job and per tenant: the jobs in the period (`job_in`) and the tenants that have one."""
    n_jobs = len(ledger.jobs)
    sums = _sums(ledger, res, in_known, ledger.job, n_jobs)
    models = _by_model(ledger, res, ledger.job, n_jobs)
    jobs = [{"job": job, "tenant": ten, **_row(sums, i, models[i], carbon_ok)}
            for i, (ten, job) in enumerate(ledger.jobs) if job_in[i] and (tenant is None or ten == tenant)]
    names = sorted({t for i, (t, _) in enumerate(ledger.jobs) if job_in[i]})
    t_code = {t: i for i, t in enumerate(names)}
    # A job outside the period: a code of its own past the tenants' (its records add nothing inside).
    job_tenant = np.array([t_code.get(t, len(names)) for t, _ in ledger.jobs] or [0], np.int64)
    codes = job_tenant[ledger.job] if len(ledger) else ledger.job.astype(np.int64)
    t_sums = _sums(ledger, res, in_known, codes, len(names) + 1)
    t_models = _by_model(ledger, res, codes, len(names) + 1)
    count = np.bincount(job_tenant[job_in], minlength=len(names) + 1) if n_jobs else np.zeros(len(names) + 1, np.int64)
    tenants = [{"tenant": t, "jobs": int(count[i]), **_row(t_sums, i, t_models[i], carbon_ok)}
               for i, t in enumerate(names) if tenant is None or t == tenant]
    jobs.sort(key=lambda r: (r["tenant"], r["job"]))
    return jobs, tenants
