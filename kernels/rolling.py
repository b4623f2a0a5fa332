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

Running sums are compensated (Neumaier), so a small window after large values
keeps full precision over arbitrarily long series.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from puewatch.kernels import _validate as v


class RollingSums(NamedTuple):
    sums: np.ndarray  # float64 (n_windows, n): energy in each window
    coverage: np.ndarray  # float64 (n_windows, n): share of each window with valid data


class RollingRatio(NamedTuple):
    ratio: np.ndarray  # float64 (n_windows, n): sum(num) / sum(den) over the window; NaN when unknown
    coverage: np.ndarray  # float64 (n_windows, n): share of the window where both were valid


@njit(cache=True, nogil=True, inline="always")
def _kahan_add(s, c, x):
    t = s + x
    if abs(s) >= abs(x):
        c += (s - t) + x
    else:
        c += (x - t) + s
    return t, c


@njit(cache=True, nogil=True)
def _rolling_sums(t, e, cov_in, has_cov, windows, out_sum, out_cov):
    n = e.shape[0]
    nw = windows.shape[0]
    lo = np.zeros(nw, dtype=np.int64)  # first interval with t[lo] >= window start
    s = np.zeros(nw)
    sc = np.zeros(nw)
    z = np.zeros(nw)
    zc = np.zeros(nw)
    for i in range(n):
        te = t[i + 1]
        x = e[i]
        if x == x:
            cx = (cov_in[i] if has_cov else 1.0) * (te - t[i])
        else:
            x = 0.0
            cx = 0.0
        for w in range(nw):
            ws = te - windows[w]
            s[w], z[w] = _kahan_add(s[w], z[w], x)
            sc[w], zc[w] = _kahan_add(sc[w], zc[w], cx)
            k = lo[w]
            while k <= i and t[k] < ws:
                y = e[k]
                if y == y:
                    cy = (cov_in[k] if has_cov else 1.0) * (t[k + 1] - t[k])
                    s[w], z[w] = _kahan_add(s[w], z[w], -y)
                    sc[w], zc[w] = _kahan_add(sc[w], zc[w], -cy)
                k += 1
            lo[w] = k
            total = s[w] + z[w]
            covered = sc[w] + zc[w]
            p = k - 1  # the interval straddling the window start, if any
            if p >= 0:
                overlap = t[p + 1] - ws
                y = e[p]
                if overlap > 0 and y == y:
                    frac = overlap / (t[p + 1] - t[p])
                    total += frac * y
                    covered += (cov_in[p] if has_cov else 1.0) * overlap
            out_sum[w, i] = total
            out_cov[w, i] = covered / windows[w]


@njit(cache=True, nogil=True)
def _rolling_ratio(t, num, den, cov_num, cov_den, has_cov, windows, min_coverage, out_ratio, out_cov):
    n = num.shape[0]
    nw = windows.shape[0]
    lo = np.zeros(nw, dtype=np.int64)
    sn = np.zeros(nw)
    sd = np.zeros(nw)
    sc = np.zeros(nw)
    zn = np.zeros(nw)
    zd = np.zeros(nw)
    zc = np.zeros(nw)
    for i in range(n):
        te = t[i + 1]
        a = num[i]
        b = den[i]
        if a == a and b == b:
            cx = (min(cov_num[i], cov_den[i]) if has_cov else 1.0) * (te - t[i])
        else:
            a = 0.0
            b = 0.0
            cx = 0.0
        for w in range(nw):
            ws = te - windows[w]
            sn[w], zn[w] = _kahan_add(sn[w], zn[w], a)
            sd[w], zd[w] = _kahan_add(sd[w], zd[w], b)
            sc[w], zc[w] = _kahan_add(sc[w], zc[w], cx)
            k = lo[w]
            while k <= i and t[k] < ws:
                ya = num[k]
                yb = den[k]
                if ya == ya and yb == yb:
                    cy = (min(cov_num[k], cov_den[k]) if has_cov else 1.0) * (t[k + 1] - t[k])
                    sn[w], zn[w] = _kahan_add(sn[w], zn[w], -ya)
                    sd[w], zd[w] = _kahan_add(sd[w], zd[w], -yb)
                    sc[w], zc[w] = _kahan_add(sc[w], zc[w], -cy)
                k += 1
            lo[w] = k
            tn = sn[w] + zn[w]
            td = sd[w] + zd[w]
            covered = sc[w] + zc[w]
            p = k - 1
            if p >= 0:
                overlap = t[p + 1] - ws
                ya = num[p]
                yb = den[p]
                if overlap > 0 and ya == ya and yb == yb:
                    frac = overlap / (t[p + 1] - t[p])
                    tn += frac * ya
                    td += frac * yb
                    covered += (min(cov_num[p], cov_den[p]) if has_cov else 1.0) * overlap
            c = covered / windows[w]
            out_cov[w, i] = c
            r = tn / td if td > 0.0 else np.nan
            if c < min_coverage or not (abs(r) < np.inf):
                r = np.nan
            out_ratio[w, i] = r


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
    _rolling_sums(t, x, c, has_cov, w, out_sum, out_cov)
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
    _rolling_ratio(t, a, b, ca, cb, has_cov, w, mc, out_ratio, out_cov)
    return RollingRatio(out_ratio, out_cov)
