"""Interval energies onto a common time grid, with coverage.

Register deltas and integrated power come per sample interval, and every
meter has its own sample times. To add meters up, each meter's interval
energies are spread over the grid intervals they overlap, in proportion to
the overlap (which is linear interpolation of the cumulative energy). A
register that was not read for a while still delivers the exact energy of
the gap; only how it is spread in time is an estimate, reported as
``spread``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from puewatch.kernels import _validate as v


class RebinnedEnergy(NamedTuple):
    energy: np.ndarray  # float64, len(grid) - 1: energy per grid interval (unit of the input); NaN where no data
    coverage: np.ndarray  # float64 in [0, 1]: share of each grid interval covered by finite input intervals
    spread: np.ndarray  # float64: part of ``energy`` that came from input intervals longer than max_span_ns


@njit(cache=True, nogil=True)
def _rebin_energy(t, e, grid, max_span_ns, out_e, out_cov, out_spread):
    n_grid = grid.shape[0] - 1
    for k in range(n_grid):
        out_e[k] = 0.0
        out_cov[k] = 0.0
        out_spread[k] = 0.0
    k = 0
    for i in range(t.shape[0] - 1):
        x = e[i]
        if not abs(x) < np.inf:
            continue
        a = t[i]
        b = t[i + 1]
        dt = b - a
        long_interval = dt > max_span_ns
        while k < n_grid and grid[k + 1] <= a:
            k += 1
        kk = k
        while kk < n_grid and grid[kk] < b:
            lo = a if a > grid[kk] else grid[kk]
            hi = b if b < grid[kk + 1] else grid[kk + 1]
            overlap = hi - lo
            if overlap > 0:
                share = x * (overlap / dt)
                out_e[kk] += share
                out_cov[kk] += overlap
                if long_interval:
                    out_spread[kk] += share
            kk += 1
    for k in range(n_grid):
        covered_ns = out_cov[k]
        out_cov[k] = covered_ns / (grid[k + 1] - grid[k])
        if covered_ns == 0.0:
            out_e[k] = np.nan
            out_spread[k] = np.nan


def rebin_energy(t_ns, energy, grid_ns, *, max_span_ns: int | None = None) -> RebinnedEnergy:
    """Spread per-interval energies over the intervals of a grid.

    Parameters
    ----------
    t_ns: the ``n`` sample times bounding the input intervals (strictly increasing).
    energy: ``n - 1`` interval energies (any unit); NaN = unknown, not spread.
    grid_ns: the grid's boundaries (strictly increasing); the result has
        ``len(grid_ns) - 1`` intervals.
    max_span_ns: input intervals longer than this (e.g. a register read
        again after an outage) are still spread, and their share is also
        reported in ``spread`` so it can be labelled estimated. Default: none.

    A grid interval with no finite input energy overlapping it has energy NaN
    and coverage 0; a partly covered one has the energy of its covered part
    and a coverage below 1.
    """
    t = v.as_time_ns(t_ns)
    x = v.as_values(energy, "energy")
    g = v.as_time_ns(grid_ns, "grid_ns")
    if t.shape[0] == 0:
        if x.shape[0] != 0:
            raise ValueError(f"energy: length {x.shape[0]} does not match len(t_ns) - 1 = -1")
    else:
        v.same_length(t.shape[0] - 1, energy=x)
    v.strictly_increasing(t)
    v.strictly_increasing(g, "grid_ns")
    span = np.iinfo(np.int64).max if max_span_ns is None else v.positive_ns(max_span_ns, "max_span_ns")
    n_grid = max(g.shape[0] - 1, 0)
    out_e = np.empty(n_grid, dtype=np.float64)
    out_cov = np.empty(n_grid, dtype=np.float64)
    out_spread = np.empty(n_grid, dtype=np.float64)
    _rebin_energy(t, x, g, span, out_e, out_cov, out_spread)
    return RebinnedEnergy(out_e, out_cov, out_spread)
