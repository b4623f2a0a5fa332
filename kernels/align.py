"""Alignment of irregular series onto one time grid.

Meters are polled at different moments; to add them up they must be read at
the same instants. Two methods:

``hold``
    the last sample at or before the grid time, if it is at most ``max_age_ns``
    old (a NaN or infinite sample holds as NaN: a failed poll is not papered over
    by an older value).
``linear``
    linear interpolation between the samples around the grid time, if both are
    finite and at most ``max_age_ns`` apart; a grid time equal to a sample
    time takes that sample. Grid times outside the series are NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from puewatch.kernels import _validate as v

_METHODS = {"hold": 0, "linear": 1}


@njit(cache=True, nogil=True)
def _align_one(t, x, grid, method, max_age_ns, out):
    n = t.shape[0]
    j = -1  # index of the last sample at or before the grid time
    for k in range(grid.shape[0]):
        g = grid[k]
        while j + 1 < n and t[j + 1] <= g:
            j += 1
        if j < 0:
            out[k] = np.nan
        elif method == 0:
            out[k] = x[j] if (g - t[j] <= max_age_ns and abs(x[j]) < np.inf) else np.nan
        elif t[j] == g:
            out[k] = x[j] if abs(x[j]) < np.inf else np.nan
        elif j + 1 < n and t[j + 1] - t[j] <= max_age_ns and abs(x[j]) < np.inf and abs(x[j + 1]) < np.inf:
            a = x[j]
            b = x[j + 1]
            out[k] = a + (b - a) * ((g - t[j]) / (t[j + 1] - t[j]))
        else:
            out[k] = np.nan


@njit(cache=True, parallel=True)
def _align_many(offsets, t, x, grid, method, max_age_ns, out):
    for s in prange(offsets.shape[0] - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        _align_one(t[lo:hi], x[lo:hi], grid, method, max_age_ns[s], out[s])


def _method(method: str) -> int:
    try:
        return _METHODS[method]
    except KeyError:
        raise ValueError(f"method: must be one of {sorted(_METHODS)}, got {method!r}") from None


def align(t_ns, values, grid_ns, *, method: str = "hold", max_age_ns: int) -> np.ndarray:
    """Values of one irregular series at the grid times (float64, len(grid)).

    ``t_ns`` and ``grid_ns`` are strictly increasing int64 ns. See the module
    docstring for the two methods and what ``max_age_ns`` bounds.
    """
    t = v.as_time_ns(t_ns)
    x = v.as_values(values, "values")
    g = v.as_time_ns(grid_ns, "grid_ns")
    v.same_length(t.shape[0], values=x)
    v.strictly_increasing(t)
    v.strictly_increasing(g, "grid_ns")
    m = _method(method)
    age = v.positive_ns(max_age_ns, "max_age_ns")
    out = np.empty(g.shape[0], dtype=np.float64)
    _align_one(t, x, g, m, age, out)
    return out


def align_many(offsets, t_ns, values, grid_ns, *, method: str = "hold", max_age_ns) -> np.ndarray:
    """Align many series at once, in parallel over series.

    The series are stored back to back (CSR layout): series ``s`` is
    ``t_ns[offsets[s]:offsets[s+1]]`` with its ``values``; each must be
    strictly increasing. ``max_age_ns`` is one value for all series or one
    per series. Returns a C-contiguous ``(n_series, len(grid))`` float64 array.
    """
    off = np.ascontiguousarray(np.asarray(offsets), dtype=np.int64)
    t = v.as_time_ns(t_ns)
    x = v.as_values(values, "values")
    g = v.as_time_ns(grid_ns, "grid_ns")
    v.same_length(t.shape[0], values=x)
    if off.ndim != 1 or off.shape[0] < 1:
        raise ValueError("offsets: expected a 1-D array of at least one element")
    if off[0] != 0 or off[-1] != t.shape[0] or np.any(np.diff(off) < 0):
        raise ValueError(f"offsets: must start at 0, not decrease and end at len(t_ns)={t.shape[0]}")
    n_series = off.shape[0] - 1
    for s in range(n_series):
        seg = t[off[s] : off[s + 1]]
        i = int(v._first_not_increasing(seg))
        if i >= 0:
            raise ValueError(f"t_ns: series {s} is not strictly increasing at its index {i}")
    v.strictly_increasing(g, "grid_ns")
    m = _method(method)
    ages = np.asarray(max_age_ns)
    if ages.ndim == 0:
        ages = np.full(n_series, v.positive_ns(ages.item(), "max_age_ns"), dtype=np.int64)
    else:
        if ages.dtype.kind not in "iuf" or (ages.dtype.kind == "f" and np.any(ages != np.round(ages))):
            raise ValueError("max_age_ns: must be whole numbers of nanoseconds")
        ages = np.ascontiguousarray(ages, dtype=np.int64)
        v.same_length(n_series, max_age_ns=ages)
        if np.any(ages <= 0):
            raise ValueError("max_age_ns: every value must be > 0")
    out = np.empty((n_series, g.shape[0]), dtype=np.float64)
    _align_many(off, t, x, g, m, ages, out)
    return out
