"""Job ledger records onto attribution cells: each record's IT energy, spread pro rata over
the cells its interval overlaps, times the facility factor of its zone in each cell."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from puewatch.kernels import _validate as v


class CellShares(NamedTuple):
    in_period: np.ndarray  # float64 (n,): share of each record's interval inside the cells
    facility_wh: np.ndarray  # float64 (n,): facility-inclusive energy over the cells with a factor
    covered_it_wh: np.ndarray  # float64 (n,): the IT energy those cells hold
    green_wh: np.ndarray  # float64 (n,): the green part of facility_wh
    carbon_kg: np.ndarray  # float64 (n,): facility_wh times its cells' emission (kg per Wh)
    job_it_wh: np.ndarray  # float64 (n_zones, n_cells): the records' IT energy per zone and cell


@njit(cache=True, nogil=True)
def _cell_shares(end_ns, interval_ns, it_wh, zone, t0_ns, cell_ns, factor, green_frac, carbon_kg_per_wh,
                 in_period, facility_wh, covered_it_wh, green_wh, carbon_kg, job_it_wh):
    n_cells = factor.shape[1]
    t_end = t0_ns + n_cells * cell_ns
    # Serial on purpose: records of many jobs add into the same (zone, cell); one pass over
    # the records is a few hundred ms for a day of a 1,000-node site.
    for i in range(end_ns.shape[0]):
        e1 = end_ns[i]
        d = interval_ns[i]
        e0 = e1 - d
        lo = max(e0, t0_ns)
        hi = min(e1, t_end)
        fac = 0.0
        cov = 0.0
        grn = 0.0
        co2 = 0.0
        inside = 0.0
        if hi > lo:
            z = zone[i]
            c = (lo - t0_ns) // cell_ns
            while c < n_cells:
                c_lo = t0_ns + c * cell_ns
                if c_lo >= hi:
                    break
                c_hi = c_lo + cell_ns
                w = (min(hi, c_hi) - max(lo, c_lo)) / d
                inside += w
                e = it_wh[i] * w
                job_it_wh[z, c] += e
                f = factor[z, c]
                if abs(f) < np.inf:
                    fac += e * f
                    cov += e
                    grn += e * f * green_frac[c]
                    co2 += e * f * carbon_kg_per_wh[c]
                c += 1
        in_period[i] = inside
        facility_wh[i] = fac
        covered_it_wh[i] = cov
        green_wh[i] = grn
        carbon_kg[i] = co2


def cell_shares(end_ns, interval_ns, it_wh, zone, t0_ns: int, cell_ns: int, factor, green_frac,
                carbon_kg_per_wh=None) -> CellShares:
    """Spread ledger records over attribution cells and weigh them by their cells' factors.

    Parameters
    ----------
    end_ns, interval_ns: each record's interval ``(end - interval, end]`` (int64 ns); a record
        counts in each cell by the share of its interval inside it (pro rata in time).
    it_wh: the record's IT energy (GPU + host), Wh, finite.
    zone: the record's row of `factor` (int; one row per zone, the last for nodes in none).
    t0_ns, cell_ns: the first cell's start and the cells' length; `factor` has one column per cell.
    factor: ``(n_zones, n_cells)`` facility-inclusive Wh per IT Wh; NaN where the cell has none.
    green_frac: ``(n_cells,)`` green share of each cell's facility energy (0..1, finite).
    carbon_kg_per_wh: ``(n_cells,)`` emission per Wh of each cell's facility energy (finite;
        default 0).
    """
    end = v.as_time_ns(end_ns, "end_ns")
    n = end.shape[0]
    dur = v.as_time_ns(interval_ns, "interval_ns")
    it = v.as_values(it_wh, "it_wh")
    z = np.ascontiguousarray(np.asarray(zone), dtype=np.int64)
    f = v.as_values(factor, "factor", ndim=2)
    g = v.as_values(green_frac, "green_frac")
    co2 = np.zeros(g.shape[0]) if carbon_kg_per_wh is None else v.as_values(carbon_kg_per_wh, "carbon_kg_per_wh")
    v.same_length(n, interval_ns=dur, it_wh=it, zone=z)
    cell = v.positive_ns(cell_ns, "cell_ns")
    if g.shape[0] != f.shape[1]:
        raise ValueError(f"green_frac: length {g.shape[0]} does not match factor's {f.shape[1]} cells")
    if n and (dur.min() <= 0):
        raise ValueError(f"interval_ns: must be > 0, first bad record at index {int(np.argmax(dur <= 0))}")
    if n and not np.all(np.isfinite(it)):
        raise ValueError(f"it_wh: must be finite, first bad record at index {int(np.argmax(~np.isfinite(it)))}")
    if n and (z.min() < 0 or z.max() >= f.shape[0]):
        raise ValueError(f"zone: must index factor's {f.shape[0]} rows")
    if co2.shape[0] != f.shape[1]:
        raise ValueError(f"carbon_kg_per_wh: length {co2.shape[0]} does not match factor's {f.shape[1]} cells")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(co2))):
        raise ValueError("green_frac, carbon_kg_per_wh: must be finite")
    out = CellShares(np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.zeros(f.shape))
    _cell_shares(end, dur, it, z, int(t0_ns), cell, f, g, co2, *out)
    return out
