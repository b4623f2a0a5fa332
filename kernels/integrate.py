"""Energy from power samples: trapezoidal integration that never bridges long gaps."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from puewatch.kernels import _validate as v

_U = v.uindex  # an index known to be >= 0 (see _validate.uindex)


class PowerIntegral(NamedTuple):
    """Per-interval energy and what could not be integrated."""

    energy_j: np.ndarray  # float64, length n - 1: joules per interval, NaN where not integrated
    total_j: float  # sum of the finite intervals
    missing_ns: int  # total length of the intervals left out (gaps, missing samples)


@njit(cache=True, nogil=True)
def _integrate_range(t, p, max_gap_ns, energy, i0, i1):
    # Also returns the first i + 1 whose interval is not positive (times not increasing), or -1:
    # the times are checked as they are read (one pass over t, not two).
    total = 0.0
    missing = 0
    bad = -1
    for i in range(i0, i1):
        u = _U(i)
        dt = t[u + _U(1)] - t[u]
        if dt <= 0 and bad < 0:
            bad = i + 1
        a = p[u]
        b = p[u + _U(1)]
        if dt <= max_gap_ns and abs(a) < np.inf and abs(b) < np.inf:
            e = 0.5 * (a + b) * (dt * 1e-9)
            energy[u] = e
            total += e
        else:
            energy[u] = np.nan
            missing += dt
    return total, missing, bad


@njit(cache=True, nogil=True, parallel=True)
def _integrate_power(t, p, max_gap_ns, n_blocks, energy):
    # Parallel over a fixed number of blocks (set by the length, not the thread count), the
    # block totals added in order: the same total_j however many threads run.
    n = t.shape[0] - 1
    totals = np.empty(n_blocks)
    missing = np.empty(n_blocks, dtype=np.int64)
    bad = np.empty(n_blocks, dtype=np.int64)
    for b in prange(n_blocks):
        totals[b], missing[b], bad[b] = _integrate_range(t, p, max_gap_ns, energy, b * n // n_blocks,
                                                         (b + 1) * n // n_blocks)
    total = 0.0
    gap = 0
    first_bad = -1
    for b in range(n_blocks):
        total += totals[b]
        gap += missing[b]
        if first_bad < 0:
            first_bad = bad[b]
    return total, gap, first_bad


def integrate_power(t_ns, power_w, *, max_gap_ns: int) -> PowerIntegral:
    """Trapezoidal energy of each interval between power samples.

    An interval longer than ``max_gap_ns``, or with a missing (NaN or infinite) power at
    either end, is not bridged: its energy is NaN and its length is added to
    ``missing_ns``. The energy of a series is the sum of its intervals, so it
    equals the sum over any split of the series at a sample.

    Parameters
    ----------
    t_ns: sample times, int64 ns, strictly increasing.
    power_w: power in watts at each sample (NaN = missing).
    max_gap_ns: the longest interval that may be integrated.
    """
    t = v.as_time_ns(t_ns)
    p = v.as_values(power_w, "power_w")
    v.same_length(t.shape[0], power_w=p)
    gap = v.positive_ns(max_gap_ns, "max_gap_ns")
    energy = np.empty(max(t.shape[0] - 1, 0), dtype=np.float64)
    total, missing, bad = _integrate_power(t, p, gap, v.n_blocks(energy.shape[0]), energy)
    if bad >= 0:  # checked as the kernel read the times
        v.not_increasing_error(t, int(bad))
    return PowerIntegral(energy, float(total), int(missing))
