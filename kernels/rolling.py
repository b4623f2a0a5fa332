"""Rolling windows over timestamps: energy sums and energy ratios with coverage.

The inputs are ``n`` contiguous intervals given by ``n + 1`` boundaries
``t_ns``; interval ``i`` is ``(t[i], t[i+1]]`` with energy ``energy[i]``. For
every interval end ``t[i+1]`` and every window length ``W`` the window is
``(t[i+1] - W, t[i+1]]``. An interval that straddles the window's start counts
in proportion to its overlap. Windows are in time, not sample counts, so
irregular sampling and gaps are handled exactly.

Coverage is the share of the window's length backed by valid data: an
interval contributes its overlap × its own coverage (1 for a finite energy
unless given, 0 for NaN). Time before the first boundary is uncovered.

Running sums are compensated (TwoSum pairs), so a small window after large
values keeps full precision over arbitrarily long series. Long series are cut
into chunks that run in parallel, each starting from exact sums.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from puewatch.kernels import _validate as v


class RollingSums(NamedTuple):
    sums: np.ndarray  # float64 (n_windows, n): energy in each window
    coverage: np.ndarray  # float64 (n_windows, n): share of each window with valid data


class RollingRatio(NamedTuple):
    ratio: np.ndarray  # float64 (n_windows, n): sum(num) / sum(den) over the window; NaN when unknown
    coverage: np.ndarray  # float64 (n_windows, n): share of the window where both were valid


@njit(cache=True, nogil=True, inline="always")
def _two_sum(a, b):
    # Knuth's TwoSum: s + err == a + b exactly, with no branch.
    s = a + b
    bp = s - a
    err = (a - (s - bp)) + (b - bp)
    return s, err


@njit(cache=True, nogil=True)
def _window_start(t, i, window):
    # First interval k <= i + 1 whose start t[k] is not before the window start.
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


@njit(cache=True, nogil=True)
def _sums_run(t, e, cov_in, has_cov, window, i0, i1, state, lo_state, out_sum, out_cov):
    # One window over intervals [i0, i1). The running sums cover the intervals
    # k in [lo, i] that lie wholly inside the window. The energy sum is kept as
    # a value + compensation pair (TwoSum), so precision does not decay along
    # the series; only the value's own add is on the loop-carried path.
    # Without per-interval coverage the covered time is an exact integer sum
    # of nanoseconds. state = [s, s_err, covered, covered_err];
    # lo_state = [lo, nonzero, covered_ns].
    s = state[0]
    s_err = state[1]
    sc = state[2]
    sc_err = state[3]
    lo = lo_state[0]
    # Intervals in the running sums with non-zero energy; when none is left the
    # sum is exactly zero, and the compensated pair restarts from zero rather
    # than keep a rounding residue.
    nonzero = lo_state[1]
    covered_ns = lo_state[2]
    for i in range(i0, i1):
        te = t[i + 1]
        ws = te - window
        x = e[i]
        cx = 0.0
        if abs(x) < np.inf:
            if has_cov:
                cx = cov_in[i] * (te - t[i])
            else:
                covered_ns += te - t[i]
            if x != 0.0:
                nonzero += 1
        else:
            x = 0.0
        d_err = 0.0
        # Subtract the intervals that now start before the window.
        while t[lo] < ws:
            y = e[lo]
            if abs(y) < np.inf:
                # TwoSum(x, -y), inlined.
                a = x - y
                bp = a - x
                d_err += (x - (a - bp)) - (y + bp)
                x = a
                if has_cov:
                    cx -= cov_in[lo] * (t[lo + 1] - t[lo])
                else:
                    covered_ns -= t[lo + 1] - t[lo]
                if y != 0.0:
                    nonzero -= 1
            lo += 1
        if nonzero == 0:
            s = 0.0
            s_err = 0.0
        else:
            a = s + x
            bp = a - s
            s_err += (s - (a - bp)) + (x - bp) + d_err
            s = a
        total = s + s_err
        if has_cov:
            a = sc + cx
            bp = a - sc
            sc_err += (sc - (a - bp)) + (cx - bp)
            sc = a
            covered = sc + sc_err
        else:
            covered = float(covered_ns)
        if lo > 0:
            # The interval lo - 1 straddles the window start: count its overlap.
            overlap = t[lo] - ws
            y = e[lo - 1]
            if overlap > 0 and abs(y) < np.inf:
                total += y * (overlap / (t[lo] - t[lo - 1]))
                covered += (cov_in[lo - 1] if has_cov else 1.0) * overlap
        out_sum[i] = total
        out_cov[i] = covered / window
    state[0] = s
    state[1] = s_err
    state[2] = sc
    state[3] = sc_err
    lo_state[0] = lo
    lo_state[1] = nonzero
    lo_state[2] = covered_ns


@njit(cache=True, nogil=True)
def _sums_init(t, e, cov_in, has_cov, window, i0, state, lo_state):
    # Running sums just before interval i0: the intervals [lo, i0) inside the
    # window ending at t[i0 + 1]. lo never passes i0: interval i0 and later are
    # added by the run, which then drops them if they start before the window.
    lo = min(_window_start(t, i0, window), i0)
    s = 0.0
    s_err = 0.0
    sc = 0.0
    sc_err = 0.0
    nonzero = 0
    covered_ns = 0
    for k in range(lo, i0):
        y = e[k]
        if abs(y) < np.inf:
            if y != 0.0:
                nonzero += 1
            s, err = _two_sum(s, y)
            s_err += err
            if has_cov:
                sc, err = _two_sum(sc, cov_in[k] * (t[k + 1] - t[k]))
                sc_err += err
            else:
                covered_ns += t[k + 1] - t[k]
    state[0] = s
    state[1] = s_err
    state[2] = sc
    state[3] = sc_err
    lo_state[0] = lo
    lo_state[1] = nonzero
    lo_state[2] = covered_ns


@njit(cache=True, parallel=True)
def _rolling_sums(t, e, cov_in, has_cov, windows, n_chunks, block, out_sum, out_cov):
    n = e.shape[0]
    nw = windows.shape[0]
    # Chunks of the series run in parallel, each starting from its own exact
    # window sums; inside a chunk, every window runs over one cache-sized
    # block before the next window reads the same block.
    for ch in prange(n_chunks):
        i0 = ch * n // n_chunks
        i1 = (ch + 1) * n // n_chunks
        if i0 >= i1:
            continue
        state = np.zeros((nw, 4))
        lo_state = np.zeros((nw, 3), dtype=np.int64)
        for w in range(nw):
            _sums_init(t, e, cov_in, has_cov, windows[w], i0, state[w], lo_state[w])
        for b0 in range(i0, i1, block):
            b1 = min(b0 + block, i1)
            for w in range(nw):
                _sums_run(t, e, cov_in, has_cov, windows[w], b0, b1, state[w], lo_state[w], out_sum[w], out_cov[w])


@njit(cache=True, nogil=True)
def _ratio_run(t, num, den, cn, cd, has_cov, window, min_coverage, i0, i1, state, lo_state, out_ratio, out_cov):
    # As _sums_run, for the joint sums of two energies; an interval counts only
    # where both are valid. state = [sn, sn_err, sd, sd_err, covered, covered_err].
    sn = state[0]
    sn_err = state[1]
    sd = state[2]
    sd_err = state[3]
    sc = state[4]
    sc_err = state[5]
    lo = lo_state[0]
    # Intervals in the running sums with a non-zero denominator: when there is
    # none the denominator is exactly zero, whatever rounding residue the
    # running sum keeps, and the ratio is NaN.
    nonzero = lo_state[1]
    for i in range(i0, i1):
        te = t[i + 1]
        ws = te - window
        a = num[i]
        b = den[i]
        if abs(a) < np.inf and abs(b) < np.inf:
            cx = (min(cn[i], cd[i]) if has_cov else 1.0) * (te - t[i])
            if b != 0.0:
                nonzero += 1
        else:
            a = 0.0
            b = 0.0
            cx = 0.0
        a_err = 0.0
        b_err = 0.0
        while lo <= i and t[lo] < ws:
            ya = num[lo]
            yb = den[lo]
            if abs(ya) < np.inf and abs(yb) < np.inf:
                a, err = _two_sum(a, -ya)
                a_err += err
                b, err = _two_sum(b, -yb)
                b_err += err
                cx -= (min(cn[lo], cd[lo]) if has_cov else 1.0) * (t[lo + 1] - t[lo])
                if yb != 0.0:
                    nonzero -= 1
            lo += 1
        sn, err = _two_sum(sn, a)
        sn_err += err + a_err
        if nonzero == 0:
            sd = 0.0
            sd_err = 0.0
        else:
            sd, err = _two_sum(sd, b)
            sd_err += err + b_err
        sc, err = _two_sum(sc, cx)
        sc_err += err
        tn = sn + sn_err
        td = sd + sd_err
        covered = sc + sc_err
        any_den = nonzero > 0
        if lo > 0:
            overlap = t[lo] - ws
            ya = num[lo - 1]
            yb = den[lo - 1]
            if overlap > 0 and abs(ya) < np.inf and abs(yb) < np.inf:
                frac = overlap / (t[lo] - t[lo - 1])
                tn += frac * ya
                td += frac * yb
                covered += (min(cn[lo - 1], cd[lo - 1]) if has_cov else 1.0) * overlap
                any_den = any_den or yb != 0.0
        c = covered / window
        out_cov[i] = c
        r = tn / td if (any_den and td > 0.0) else np.nan
        if c < min_coverage or not (abs(r) < np.inf):
            r = np.nan
        out_ratio[i] = r
    state[0] = sn
    state[1] = sn_err
    state[2] = sd
    state[3] = sd_err
    state[4] = sc
    state[5] = sc_err
    lo_state[0] = lo
    lo_state[1] = nonzero


@njit(cache=True, nogil=True)
def _ratio_init(t, num, den, cn, cd, has_cov, window, i0, state, lo_state):
    lo = min(_window_start(t, i0, window), i0)
    for j in range(6):
        state[j] = 0.0
    nonzero = 0
    for k in range(lo, i0):
        ya = num[k]
        yb = den[k]
        if abs(ya) < np.inf and abs(yb) < np.inf:
            if yb != 0.0:
                nonzero += 1
            state[0], err = _two_sum(state[0], ya)
            state[1] += err
            state[2], err = _two_sum(state[2], yb)
            state[3] += err
            state[4], err = _two_sum(state[4], (min(cn[k], cd[k]) if has_cov else 1.0) * (t[k + 1] - t[k]))
            state[5] += err
    lo_state[0] = lo
    lo_state[1] = nonzero


@njit(cache=True, parallel=True)
def _rolling_ratio(t, num, den, cn, cd, has_cov, windows, min_coverage, n_chunks, block, out_ratio, out_cov):
    n = num.shape[0]
    nw = windows.shape[0]
    for ch in prange(n_chunks):
        i0 = ch * n // n_chunks
        i1 = (ch + 1) * n // n_chunks
        if i0 >= i1:
            continue
        state = np.zeros((nw, 6))
        lo_state = np.zeros((nw, 2), dtype=np.int64)
        for w in range(nw):
            _ratio_init(t, num, den, cn, cd, has_cov, windows[w], i0, state[w], lo_state[w])
        for b0 in range(i0, i1, block):
            b1 = min(b0 + block, i1)
            for w in range(nw):
                _ratio_run(
                    t, num, den, cn, cd, has_cov, windows[w], min_coverage, b0, b1, state[w], lo_state[w], out_ratio[w], out_cov[w]
                )


# Intervals per cache block (inputs of a block stay in L2 while every window reads them).
_BLOCK = 16384
# Below this many intervals per thread, one chunk: the start-up sums are not worth it.
_MIN_CHUNK = 1 << 16


def _n_chunks(n: int) -> int:
    import numba

    return max(1, min(numba.get_num_threads(), n // _MIN_CHUNK))


def _prepare(t_ns, windows_ns, n_name: str, n: int):
    t = v.as_time_ns(t_ns)
    if t.shape[0] != n + 1:
        raise ValueError(f"t_ns: {n} intervals need {n + 1} boundaries, got {t.shape[0]}")
    v.strictly_increasing(t)
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


def rolling_sums(t_ns, energy, windows_ns, *, coverage=None) -> RollingSums:
    """Energy in rolling time windows of several lengths, with coverage.

    Parameters
    ----------
    t_ns: ``n + 1`` interval boundaries (int64 ns, strictly increasing).
    energy: ``n`` interval energies; NaN = missing (counts as no energy and no coverage).
    windows_ns: one or more window lengths in ns (e.g. 1 min, 15 min, 1 h, 24 h, 30 d).
    coverage: optional ``n`` shares in [0, 1] of each interval that had data
        (e.g. from :func:`rebin_energy`); default 1 for finite energies.

    Returns ``sums`` and ``coverage``, each ``(len(windows_ns), n)``; row ``w``
    column ``i`` is the window of length ``windows_ns[w]`` ending at ``t[i+1]``.
    """
    x = v.as_values(energy, "energy")
    t, w = _prepare(t_ns, windows_ns, "energy", x.shape[0])
    has_cov = coverage is not None
    c = _coverage_arg(coverage, x.shape[0], "coverage") if has_cov else np.empty(0)
    out_sum = np.empty((w.shape[0], x.shape[0]), dtype=np.float64)
    out_cov = np.empty((w.shape[0], x.shape[0]), dtype=np.float64)
    _rolling_sums(t, x, c, has_cov, w, _n_chunks(x.shape[0]), _BLOCK, out_sum, out_cov)
    return RollingSums(out_sum, out_cov)


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
    per-interval coverages as in :func:`rolling_sums`; an interval's joint
    coverage is the smaller of the two.
    """
    a = v.as_values(numerator, "numerator")
    b = v.as_values(denominator, "denominator")
    v.same_length(a.shape[0], denominator=b)
    t, w = _prepare(t_ns, windows_ns, "numerator", a.shape[0])
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
    _rolling_ratio(t, a, b, ca, cb, has_cov, w, mc, _n_chunks(a.shape[0]), _BLOCK, out_ratio, out_cov)
    return RollingRatio(out_ratio, out_cov)
