"""Sums across many meters on the common grid: site, zone and role totals."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from puewatch.kernels import _validate as v

# Grid columns per parallel task: large enough to stream each meter's row,
# small enough to keep the per-task totals in cache.
_BLOCK = 4096


class GroupSums(NamedTuple):
    total: np.ndarray  # float64 (n_groups, n_grid)
    n_missing: np.ndarray  # int32 (n_groups, n_grid): members that were NaN at that grid point


@njit(cache=True, nogil=True, parallel=True)
def _group_sums(values, coef, skipna, block, total, n_missing):
    n_meters, n_grid = values.shape
    n_groups = coef.shape[0]
    n_blocks = (n_grid + block - 1) // block
    # Parallel over blocks of grid columns, not over meters: every task owns
    # its output columns, so no two threads ever add into the same total, and
    # each task still reads every meter's row as one contiguous run.
    for b in prange(n_blocks):
        c0 = b * block
        c1 = min(c0 + block, n_grid)
        for j in range(n_groups):
            for c in range(c0, c1):
                total[j, c] = 0.0
                n_missing[j, c] = 0
        for i in range(n_meters):
            for j in range(n_groups):
                w = coef[j, i]
                if w == 0.0:
                    continue
                for c in range(c0, c1):
                    x = values[i, c]
                    if not abs(x) < np.inf:
                        n_missing[j, c] += 1
                    else:
                        total[j, c] += w * x
        if not skipna:
            for j in range(n_groups):
                for c in range(c0, c1):
                    if n_missing[j, c] > 0:
                        total[j, c] = np.nan


def group_sums(values, coef, *, skipna: bool = False) -> GroupSums:
    """Weighted sums of meters into groups at every grid point.

    Parameters
    ----------
    values: ``(n_meters, n_grid)`` float64, one meter per row (NaN = missing).
    coef: ``(n_groups, n_meters)`` weights: 1 adds a meter to a group, 0 leaves
        it out, -1 subtracts it (e.g. a tenant sub-meter behind the incomer).
    skipna: ``False`` (default): a group's total is NaN wherever any member is
        missing, since a partial sum would understate the energy. ``True``: the
        sum of the members present. ``n_missing`` counts the absent members
        either way.
    """
    x = v.as_values(values, "values", ndim=2)
    w = v.as_values(coef, "coef", ndim=2)
    if w.shape[1] != x.shape[0]:
        raise ValueError(f"coef: has {w.shape[1]} columns but values has {x.shape[0]} meters (rows)")
    if not np.all(np.isfinite(w)):
        raise ValueError("coef: weights must be finite")
    total = np.empty((w.shape[0], x.shape[1]), dtype=np.float64)
    n_missing = np.empty((w.shape[0], x.shape[1]), dtype=np.int32)
    _group_sums(x, w, bool(skipna), _BLOCK, total, n_missing)
    return GroupSums(total, n_missing)
