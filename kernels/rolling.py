"""Rolling windows over timestamps: ratios of energy sums with coverage (rolling PUE, pPUE, CLF, PLF).

The inputs are ``n`` contiguous intervals given by ``n + 1`` boundaries
``t_ns``; interval ``i`` is ``(t[i], t[i+1]]`` with energies ``numerator[i]``
and ``denominator[i]``, counted only where both are valid. For every interval
end ``t[i+1]`` and every window length ``W`` the window is
``(t[i+1] - W, t[i+1]]``. An interval that straddles the window's start counts
in proportion to its overlap. Windows are in time, not sample counts, so
irregular sampling and gaps are handled exactly.

Coverage is the share of the window's length backed by valid data: an
interval contributes its overlap × its own coverage (1 for finite energies
unless given, 0 for NaN). Time before the first boundary is uncovered.

A window's sums are the difference of two running double-double sums (TwoSum
pairs) over the same sequence of intervals: the lead, through the window's
last interval, and the window's trail, through the last interval before it.
Both add the same values in the same order, so a window of zeros is exactly
zero however large the values that passed before (a ratio's denominator never
keeps a rounding residue), and precision does not decay along arbitrarily
long series. One pass serves every window: the lead is shared, each window
has its own trail. The times are checked (strictly increasing) in the same
pass. Long series are cut into chunks that run in parallel, each starting
from exact sums; the cut depends on the series and the windows, never on the
number of threads, so neither do the results' last bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from puewatch.kernels import _validate as v


class RollingRatio(NamedTuple):
    ratio: np.ndarray  # float64 (n_windows, n): sum(num) / sum(den) over the window; NaN when unknown
    coverage: np.ndarray  # float64 (n_windows, n): share of the window where both were valid


@njit(cache=True, nogil=True, inline="always")
def _dd_add(hi, lo, x):
    # Double-double accumulate: (hi, lo) += x with Knuth's TwoSum; hi + lo keeps
    # every bit of the running sum that a double pair can.
    s = hi + x
    bp = s - hi
    return s, lo + ((hi - (s - bp)) + (x - bp))


@njit(cache=True, nogil=True)
def _window_start(t, i, window):
    ws = t[i + 1] - window
    lo = 0
    hi = i + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if t[mid] < ws:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _interval(t, a, b, ca, cb, has_cov, k):
    # Interval k's contributions: (numerator, denominator, covered as float, covered ns, valid).
    x = a[k]
    y = b[k]
    if not (abs(x) < np.inf and abs(y) < np.inf):
        return 0.0, 0.0, 0.0, 0, False
    dt = t[k + 1] - t[k]
    if has_cov:
        return x, y, min(ca[k], cb[k]) * dt, 0, True
    return x, y, 0.0, dt, True


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _add(t, a, b, ca, cb, has_cov, k, s):
    # Interval k added to a running sum s = (num hi, num lo, den hi, den lo, covered hi,
    # covered lo, covered ns): the lead's and every trail's step.
    x, y, c, c_ns, ok = _interval(t, a, b, ca, cb, has_cov, k)
    a_h, a_l = _dd_add(s[0], s[1], x)
    b_h, b_l = _dd_add(s[2], s[3], y)
    c_h, c_l = _dd_add(s[4], s[5], c) if has_cov else (s[4], s[5])
    return a_h, a_l, b_h, b_l, c_h, c_l, s[6] + c_ns


@njit(cache=True, nogil=True, inline="always")
def _put(tab, tab_ns, j, s):
    # Running sum s (see _add) into row j of a table of running sums.
    tab[j, 0] = s[0]
    tab[j, 1] = s[1]
    tab[j, 2] = s[2]
    tab[j, 3] = s[3]
    tab[j, 4] = s[4]
    tab[j, 5] = s[5]
    tab_ns[j] = s[6]


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _start(t, a, b, ca, cb, has_cov, windows, longest_first, i0, trails, trails_ns, los):
    # Exact start-up sums for a chunk beginning at interval i0: the lead runs from the longest
    # window's start to i0, and each window's trail is the lead as it passed that window's
    # start (longest first, so starts ascend). A start never passes i0: interval i0 and later
    # are added by the blocks, whose trails then pass them if they start before the window.
    for w in range(windows.shape[0]):
        los[w] = min(_window_start(t, i0, windows[w]), i0)
    lead = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    k = los[longest_first[0]]
    for w in longest_first:
        while k < los[w]:
            lead = _add(t, a, b, ca, cb, has_cov, k, lead)
            k += 1
        _put(trails, trails_ns, w, lead)
    while k < i0:
        lead = _add(t, a, b, ca, cb, has_cov, k, lead)
        k += 1
    return lead


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _window_block(t, a, b, ca, cb, has_cov, window, min_coverage, b0, b1, lead_tab, lead_ns, trail, lo, den, out0,
                  out1):
    # One window over the intervals [b0, b1), the lead's sums read from lead_tab; the trail
    # (through interval lo - 1) is this window's. Returns the trail and lo at b1.
    for i in range(b0, b1):
        j = i - b0
        ws = t[i + 1] - window
        while t[lo] < ws:
            trail = _add(t, a, b, ca, cb, has_cov, lo, trail)
            lo += 1
        sa = (lead_tab[j, 0] - trail[0]) + (lead_tab[j, 1] - trail[1])
        sb = (lead_tab[j, 2] - trail[2]) + (lead_tab[j, 3] - trail[3])
        if has_cov:
            covered = (lead_tab[j, 4] - trail[4]) + (lead_tab[j, 5] - trail[5])
        else:
            covered = float(lead_ns[j] - trail[6])
        if lo > 0:
            # Interval lo - 1 straddles the window's start: count its overlap.
            overlap = t[lo] - ws
            if overlap > 0:
                x, y, c, c_ns, ok = _interval(t, a, b, ca, cb, has_cov, lo - 1)
                if ok:
                    frac = overlap / (t[lo] - t[lo - 1])
                    sa += x * frac
                    sb += y * frac
                    if has_cov:
                        covered += min(ca[lo - 1], cb[lo - 1]) * overlap
                    else:
                        covered += float(overlap)
        out0[i] = sa
        den[j] = sb
        out1[i] = covered
    # The divisions in a loop of their own, which the compiler vectorises. A divide, not a
    # multiply by 1 / window: a share that is exact (e.g. 0.25 of a window, the threshold
    # itself) must come out exact.
    window_f = float(window)
    for i in range(b0, b1):
        cov = out1[i] / window_f
        sb = den[i - b0]
        r = out0[i] / sb
        if not (sb > 0.0) or cov < min_coverage or not (abs(r) < np.inf):
            r = np.nan
        out0[i] = r
        out1[i] = cov
    return trail, lo


@njit(cache=True, nogil=True, error_model="numpy")
def _chunk(t, a, b, ca, cb, has_cov, windows, longest_first, min_coverage, i0, i1, block, out0, out1):
    # One chunk of the series, a block at a time: the lead's running sums for the block go
    # to a small table, then every window's trail runs over the block (its state in
    # registers) reading them. Returns the first i whose interval is not positive, or -1.
    nw = windows.shape[0]
    trails = np.empty((nw, 6))
    trails_ns = np.empty(nw, dtype=np.int64)
    los = np.empty(nw, dtype=np.int64)
    lead = _start(t, a, b, ca, cb, has_cov, windows, longest_first, i0, trails, trails_ns, los)
    lead_tab = np.empty((block, 6))
    lead_ns = np.empty(block, dtype=np.int64)
    den = np.empty(block)
    bad = -1
    for b0 in range(i0, i1, block):
        b1 = min(b0 + block, i1)
        for i in range(b0, b1):
            if t[i + 1] <= t[i] and bad < 0:
                bad = i + 1
            lead = _add(t, a, b, ca, cb, has_cov, i, lead)
            _put(lead_tab, lead_ns, i - b0, lead)
        for w in range(nw):
            trail = (trails[w, 0], trails[w, 1], trails[w, 2], trails[w, 3], trails[w, 4], trails[w, 5], trails_ns[w])
            trail, lo = _window_block(t, a, b, ca, cb, has_cov, windows[w], min_coverage, b0, b1, lead_tab, lead_ns,
                                      trail, los[w], den, out0[w], out1[w])
            _put(trails, trails_ns, w, trail)
            los[w] = lo
    return bad


def _parallel(has_cov: bool):
    """The parallel loop over chunks, with or without input coverage.

    One compiled function per kind, each compiled on its first use only; `has_cov` is a
    compile-time constant inside each (closure variables are frozen by Numba, and they are
    part of its cache key).
    """

    @njit(cache=True, parallel=True, error_model="numpy")
    def run(t, a, b, ca, cb, windows, longest_first, min_coverage, n_chunks, block, out0, out1, bad):
        n = a.shape[0]
        for ch in prange(n_chunks):
            i0 = ch * n // n_chunks
            i1 = (ch + 1) * n // n_chunks
            bad[ch] = -1
            if i0 < i1:
                bad[ch] = _chunk(t, a, b, ca, cb, has_cov, windows, longest_first, min_coverage, i0, i1, block,
                                 out0, out1)

    return run


_RUN = {has_cov: _parallel(has_cov) for has_cov in (False, True)}


# Intervals per block (the lead's table, 56 bytes an interval, stays in L1/L2 while every
# window reads it).
_BLOCK = 1024
# Intervals per chunk at least: starting threads costs more than a shorter series takes.
_MIN_CHUNK = 1 << 16
_MAX_CHUNKS = 64


def _n_chunks(t: np.ndarray, windows: np.ndarray) -> int:
    """Parallel chunks, set by the series and the windows alone (not the thread count), so
    the results' last bits do not depend on the number of threads: at most 64, a power of two
    (shared evenly among 2, 4, 8 ... threads), each no shorter than the longest window at the
    series' end (a chunk's start-up sums run over that many intervals)."""
    n = t.shape[0] - 1
    if n <= 0:
        return 1
    longest = n - _window_start(t, n - 1, int(windows.max()))
    c = min(_MAX_CHUNKS, n // max(_MIN_CHUNK, longest))
    return 1 << (max(c, 1).bit_length() - 1)


def _call(t, a, b, ca, cb, has_cov: bool, w, min_coverage: float, out0, out1) -> None:
    n_chunks = _n_chunks(t, w)
    bad = np.empty(n_chunks, dtype=np.int64)
    longest_first = np.ascontiguousarray(np.argsort(-w, kind="stable"))
    _RUN[has_cov](t, a, b, ca, cb, w, longest_first, min_coverage, n_chunks, _BLOCK, out0, out1, bad)
    # The kernel checks the times as it reads them (one pass over t, not two).
    hit = bad[bad >= 0]
    if hit.size:
        v.not_increasing_error(t, int(hit.min()))


def _prepare(t_ns, windows_ns, n: int):
    t = v.as_time_ns(t_ns)
    if t.shape[0] != n + 1:
        raise ValueError(f"t_ns: {n} intervals need {n + 1} boundaries, got {t.shape[0]}")
    w = np.atleast_1d(np.asarray(windows_ns))
    if w.ndim != 1 or w.shape[0] == 0:
        raise ValueError("windows_ns: expected one or more window lengths")
    if w.dtype.kind not in "iu" and not (w.dtype.kind == "f" and np.all(w == np.round(w))):
        raise TypeError(f"windows_ns: expected whole nanoseconds, got {w.dtype}")
    w = np.ascontiguousarray(w, dtype=np.int64)
    if np.any(w <= 0):
        raise ValueError("windows_ns: every window must be > 0 ns")
    return t, w


def _coverage_arg(cov, n: int, name: str) -> np.ndarray:
    c = v.as_values(cov, name)
    v.same_length(n, **{name: c})
    if np.any(~((c >= 0.0) & (c <= 1.0))):
        raise ValueError(f"{name}: coverage must lie in [0, 1]")
    return c


def rolling_ratio(
    t_ns,
    numerator,
    denominator,
    windows_ns,
    *,
    min_coverage: float = 0.0,
    numerator_coverage=None,
    denominator_coverage=None,
) -> RollingRatio:
    """Ratio of energy sums over rolling time windows: rolling PUE, pPUE, CLF, PLF.

    Only intervals where both energies are valid count, so numerator and
    denominator always cover the same time. The ratio is
    ``sum(numerator) / sum(denominator)`` over the window (a ratio of energy
    sums, never a mean of ratios). It is NaN where the window's joint
    coverage is below ``min_coverage``, where the denominator's sum is not
    positive (zero IT energy), or where the result is not finite.

    ``numerator_coverage`` and ``denominator_coverage`` (given together) are
    per-interval coverages: shares in [0, 1] of each interval that had data
    (e.g. from :func:`rebin_energy`); an interval's joint coverage is the
    smaller of the two.
    """
    a = v.as_values(numerator, "numerator")
    b = v.as_values(denominator, "denominator")
    v.same_length(a.shape[0], denominator=b)
    t, w = _prepare(t_ns, windows_ns, a.shape[0])
    mc = float(min_coverage)
    if not 0.0 <= mc <= 1.0:
        raise ValueError(f"min_coverage: must lie in [0, 1], got {min_coverage!r}")
    if (numerator_coverage is None) != (denominator_coverage is None):
        raise ValueError("numerator_coverage and denominator_coverage must be given together")
    has_cov = numerator_coverage is not None
    if has_cov:
        ca = _coverage_arg(numerator_coverage, a.shape[0], "numerator_coverage")
        cb = _coverage_arg(denominator_coverage, a.shape[0], "denominator_coverage")
    else:
        ca = cb = np.empty(0)
    out_ratio = np.empty((w.shape[0], a.shape[0]), dtype=np.float64)
    out_cov = np.empty((w.shape[0], a.shape[0]), dtype=np.float64)
    _call(t, a, b, ca, cb, has_cov, w, mc, out_ratio, out_cov)
    return RollingRatio(out_ratio, out_cov)
