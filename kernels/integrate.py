"""Energy from power samples: trapezoidal integration that never bridges long gaps."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from puewatch.kernels import _validate as v


class PowerIntegral(NamedTuple):
    """Per-interval energy and what could not be integrated."""

    energy_j: np.ndarray  # float64, length n - 1: joules per interval, NaN where not integrated
    total_j: float  # sum of the finite intervals
    missing_ns: int  # total length of the intervals left out (gaps, missing samples)


@njit(cache=True, nogil=True)
def _integrate_power(t, p, max_gap_ns, energy):
    total = 0.0
    missing = 0
    for i in range(t.shape[0] - 1):
        dt = t[i + 1] - t[i]
        a = p[i]
        b = p[i + 1]
        if dt <= max_gap_ns and abs(a) < np.inf and abs(b) < np.inf:
            e = 0.5 * (a + b) * (dt * 1e-9)
            energy[i] = e
            total += e
        else:
            energy[i] = np.nan
            missing += dt
    return total, missing


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
    v.strictly_increasing(t)
    gap = v.positive_ns(max_gap_ns, "max_gap_ns")
    energy = np.empty(max(t.shape[0] - 1, 0), dtype=np.float64)
    total, missing = _integrate_power(t, p, gap, energy)
    return PowerIntegral(energy, float(total), int(missing))
