"""Argument checks and coercion shared by the public kernel wrappers."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# An index known to be >= 0, as unsigned, for the kernels' loops: Numba then emits no code for
# negative indices (a compare and a select per access: a fifth of the rolling windows'
# instructions, a third of rebin_energy's time). Only for indexing: mixed with int64
# arithmetic, uint64 gives float64.
uindex = np.uint64


def as_time_ns(t, name: str = "t_ns") -> np.ndarray:
    """Coerce to a contiguous 1-D int64 ns array (datetime64 is viewed as ns)."""
    arr = np.asarray(t)
    if arr.dtype.kind == "M":
        if arr.size and np.any(np.isnat(arr)):
            raise ValueError(f"{name}: NaT is not a time; drop or fill missing times first")
        arr = arr.astype("datetime64[ns]").view(np.int64)
    elif arr.dtype.kind in "iu":
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name}: values exceed int64 nanoseconds")
        arr = arr.astype(np.int64, copy=False)
    elif arr.dtype.kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: times must be finite")
        if arr.size and np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: times must be whole nanoseconds (int64 ns since the epoch)")
        arr = arr.astype(np.int64)
    else:
        raise TypeError(f"{name}: expected int64 nanoseconds or datetime64, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def as_values(x, name: str, ndim: int = 1) -> np.ndarray:
    """Coerce to a contiguous float64 array of the given rank."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    return arr


def same_length(n: int, **arrays: np.ndarray) -> None:
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise ValueError(f"{name}: length {arr.shape[0]} does not match {n}")


def positive(value, name: str, allow_inf: bool = True) -> float:
    v = float(value)
    if not (v > 0) or (not allow_inf and np.isinf(v)):
        raise ValueError(f"{name}: must be > 0{'' if allow_inf else ' and finite'}, got {value!r}")
    return v


def positive_ns(value, name: str) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name}: must be a positive whole number of nanoseconds, got {value!r}") from None
    if v <= 0 or v != value:
        raise ValueError(f"{name}: must be a positive whole number of nanoseconds, got {value!r}")
    return v


@njit(cache=True, nogil=True)
def _first_not_increasing(t):
    for i in range(1, t.shape[0]):
        if t[i] <= t[i - 1]:
            return i
    return -1


@njit(cache=True, nogil=True)
def _count_not_increasing(t, i0, i1):
    # No early exit: a branch-free count the compiler vectorises (about 3x the speed of
    # a loop that stops at the first fault); the fault itself is found only on failure.
    bad = 0
    for i in range(i0, i1):
        bad += t[i] <= t[i - 1]
    return bad


@njit(cache=True, nogil=True, parallel=True)
def _first_not_increasing_blocks(t, n_blocks):
    n = t.shape[0]
    first = np.full(n_blocks, -1, dtype=np.int64)
    for b in prange(n_blocks):
        i0 = max(1, b * n // n_blocks)
        i1 = (b + 1) * n // n_blocks
        if i0 < i1 and _count_not_increasing(t, i0, i1) > 0:
            for i in range(i0, i1):
                if t[i] <= t[i - 1]:
                    first[b] = i
                    break
    for b in range(n_blocks):
        if first[b] >= 0:
            return first[b]
    return -1


# From this many times on, the check runs in parallel blocks (starting threads costs more below).
_PARALLEL_CHECK = 1 << 16


def first_not_increasing(t: np.ndarray) -> int:
    """The first index i with t[i] <= t[i - 1], or -1."""
    if t.shape[0] < _PARALLEL_CHECK:
        return int(_first_not_increasing(t))
    return int(_first_not_increasing_blocks(t, 64))


def strictly_increasing(t: np.ndarray, name: str = "t_ns") -> None:
    i = first_not_increasing(t)
    if i >= 0:
        not_increasing_error(t, i, name)


def not_increasing_error(t: np.ndarray, i: int, name: str = "t_ns") -> None:
    """Raise the error for t[i] <= t[i - 1] (kernels that check the times as they read them call this)."""
    raise ValueError(
        f"{name}: times must be strictly increasing; index {i} ({t[i]}) is not after index {i - 1} ({t[i - 1]})"
    )


# Intervals per parallel task at least: starting threads costs more than a shorter series takes.
_MIN_CHUNK = 1 << 16


def n_chunks(n: int) -> int:
    """Parallel chunks for n independent elements: one per thread, one for short series."""
    import numba

    return max(1, min(numba.get_num_threads(), n // _MIN_CHUNK))


def n_blocks(n: int) -> int:
    """Fixed blocks for a parallel sum of n elements: set by n alone, so the sum's rounding
    does not depend on the number of threads."""
    return max(1, min(64, n // _MIN_CHUNK))
