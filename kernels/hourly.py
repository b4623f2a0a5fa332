"""Energy and covered time per UTC hour: what a meter's derived power limit is computed from.

`puewatch.core.energy` derives a meter's power limit, when none is configured, from the mean
power of the hours its short intervals cover. This kernel makes those hourly sums in one pass
over a meter's readings (a meter-year of 1-minute readings in about a millisecond, against
some twenty whole-array NumPy passes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from puewatch.kernels import _validate as v

HOUR_NS = 3_600_000_000_000


class HourlySums(NamedTuple):
    """Per UTC hour with any counted interval: its index (hours since the epoch), energy and covered ns."""

    hour: np.ndarray  # int64, ascending
    energy: np.ndarray  # float64, the readings' unit (Wh from a Wh register; W·ns / 3.6e12 = Wh from power)
    covered_ns: np.ndarray  # float64


@njit(cache=True, nogil=True)
def _hourly_sums(t, x, register, max_interval, hour_ns):
    # Times are checked (strictly increasing) by the caller.
    n = t.shape[0]
    hours = np.empty(max(n - 1, 0), np.int64)
    energy = np.empty(max(n - 1, 0), np.float64)
    covered = np.empty(max(n - 1, 0), np.float64)
    k = -1
    # The current hour's bounds: an interval ending in (lo, hi] belongs to it (no division per interval).
    lo = 0
    hi = -1
    # The previous present reading: an absent one (NaN) is no reading, the interval spans it.
    pa = 0
    px = np.nan
    have = False
    acc_e = 0.0  # the current hour's sums, kept out of memory
    acc_c = 0.0
    for i in range(n):
        xi = x[i]
        if not abs(xi) < np.inf or (not register and xi < 0.0):
            continue
        b = t[i]
        if have:
            dt = b - pa
            if dt <= max_interval:
                e = xi - px if register else 0.5 * (px + xi) * (dt / 3.6e12)
                if e >= 0.0:
                    if not (lo < b <= hi):
                        if k >= 0:
                            energy[k] = acc_e
                            covered[k] = acc_c
                        h = (b - 1) // hour_ns
                        lo = h * hour_ns
                        hi = lo + hour_ns
                        k += 1
                        hours[k] = h
                        acc_e = 0.0
                        acc_c = 0.0
                    acc_e += e
                    acc_c += dt
        pa = b
        px = xi
        have = True
    if k >= 0:
        energy[k] = acc_e
        covered[k] = acc_c
    return hours[: k + 1].copy(), energy[: k + 1].copy(), covered[: k + 1].copy()


def hourly_sums(t_ns, values, *, register: bool, max_interval_ns: int) -> HourlySums:
    """Energy and covered time per UTC hour of a meter's short intervals.

    Parameters
    ----------
    t_ns: sample times, int64 ns, strictly increasing.
    values: register readings (``register=True``; an interval's energy is its increase, and a
        drop is left out) or power readings in W (``register=False``; trapezoids in Wh, and a
        negative reading is no reading). NaN (or inf) is no reading: the interval spans it.
    max_interval_ns: longer intervals are left out.

    An interval belongs to the UTC hour its end falls in (an end exactly on the hour belongs
    to the hour before). Returns the hours that have any interval, ascending.
    """
    t = v.as_time_ns(t_ns)
    x = v.as_values(values, "values")
    v.same_length(t.shape[0], values=x)
    limit = v.positive_ns(max_interval_ns, "max_interval_ns")
    v.strictly_increasing(t)
    hours, energy, covered = _hourly_sums(t, x, bool(register), limit, HOUR_NS)
    return HourlySums(hours, energy, covered)
