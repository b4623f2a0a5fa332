"""Slow, obviously correct references for ``puewatch.kernels``.

Written from the docstrings (the specification), not from the kernel code:
plain per-interval / per-output loops over Python numbers, ``math.fsum`` for
every sum, brute-force searches instead of moving pointers. Every kernel test
compares against these. Keep them simple rather than fast: inputs in the tests
are at most a few hundred samples.
"""

from __future__ import annotations

import math

import numpy as np

NAN = math.nan

# Flag bits, as documented in puewatch.kernels.flags.
OK = 0
WRAP = 1
RESET = 2
JUMP = 4
MISSING = 8
BAD_TIME = 16

_FLAG_NAMES = ((WRAP, "wrap"), (RESET, "reset"), (JUMP, "jump"), (MISSING, "missing"), (BAD_TIME, "bad_time"))


def _isnan(x: float) -> bool:
    return x != x


def _ints(a) -> list[int]:
    return [int(x) for x in np.asarray(a).tolist()]


def _floats(a) -> list[float]:
    return [float(x) for x in np.asarray(a, dtype=np.float64).tolist()]


# ---------------------------------------------------------------------------
# flags


def describe_flags(flags: int) -> list[str]:
    return [name for bit, name in _FLAG_NAMES if int(flags) & bit]


def flag_counts(flags) -> dict[str, int]:
    out = {name: 0 for _, name in _FLAG_NAMES}
    for f in _ints(flags):
        for bit, name in _FLAG_NAMES:
            if f & bit:
                out[name] += 1
    return out


# ---------------------------------------------------------------------------
# register deltas


def register_bound(dt_ns: int, max_power_w=None, joules_per_unit=None, resolution=0.0) -> float:
    """Largest possible increase over ``dt_ns``: max_power_w × Δt / joules_per_unit + resolution."""
    if max_power_w is None:
        return math.inf
    return max_power_w * (dt_ns / 1e9) / joules_per_unit + resolution


def register_deltas(
    t_ns,
    reading,
    *,
    modulus=None,
    max_power_w=None,
    joules_per_unit=None,
    resolution=0.0,
    reset_from_zero=True,
):
    """Returns (delta float64 n-1, flags uint8 n-1)."""
    t = _ints(t_ns)
    r = _floats(reading)
    delta = []
    flags = []
    for i in range(len(t) - 1):
        a, b = r[i], r[i + 1]
        dt = t[i + 1] - t[i]
        if dt <= 0:
            delta.append(NAN)
            flags.append(BAD_TIME)
            continue
        if _isnan(a) or _isnan(b):
            delta.append(NAN)
            flags.append(MISSING)
            continue
        bound = register_bound(dt, max_power_w, joules_per_unit, resolution)
        if b >= a:
            d, f = b - a, OK
        else:
            is_wrap = False
            if modulus is not None:
                wrapped = (modulus - a) + b
                if wrapped < 0:
                    is_wrap = False  # "not negative"
                elif max_power_w is not None:
                    is_wrap = wrapped <= bound  # "within the power bound"
                else:
                    is_wrap = wrapped < modulus / 2  # "less than half the modulus"
            if is_wrap:
                d, f = wrapped, WRAP
            else:
                d, f = (b if reset_from_zero else NAN), RESET
        if not _isnan(d) and d > bound:
            d, f = NAN, f | JUMP
        delta.append(d)
        flags.append(f)
    return np.array(delta, dtype=np.float64), np.array(flags, dtype=np.uint8)


# ---------------------------------------------------------------------------
# power integration


def integrate_power(t_ns, power_w, *, max_gap_ns):
    """Returns (energy_j n-1, total_j, missing_ns)."""
    t = _ints(t_ns)
    p = _floats(power_w)
    energy = []
    missing = 0
    for i in range(len(t) - 1):
        dt = t[i + 1] - t[i]
        if dt > max_gap_ns or not (math.isfinite(p[i]) and math.isfinite(p[i + 1])):  # NaN or inf: missing
            energy.append(NAN)
            missing += dt
        else:
            energy.append((p[i] + p[i + 1]) / 2 * (dt / 1e9))
    total = math.fsum(e for e in energy if not _isnan(e))
    return np.array(energy, dtype=np.float64), total, missing


# ---------------------------------------------------------------------------
# rebinning


def rebin_energy(t_ns, energy, grid_ns, *, max_span_ns=None):
    """Returns (energy, coverage, spread), each len(grid) - 1."""
    t = _ints(t_ns)
    e = _floats(energy)
    g = _ints(grid_ns)
    out_e, out_cov, out_spread = [], [], []
    for k in range(len(g) - 1):
        g0, g1 = g[k], g[k + 1]
        shares, spread_shares = [], []
        covered = 0
        for i in range(len(t) - 1):
            if _isnan(e[i]):
                continue
            a, b = t[i], t[i + 1]
            overlap = min(b, g1) - max(a, g0)
            if overlap <= 0:
                continue
            share = e[i] * overlap / (b - a)
            shares.append(share)
            covered += overlap
            if max_span_ns is not None and b - a > max_span_ns:
                spread_shares.append(share)
        out_cov.append(covered / (g1 - g0))
        if covered == 0:
            out_e.append(NAN)
            out_spread.append(NAN)
        else:
            out_e.append(math.fsum(shares))
            out_spread.append(math.fsum(spread_shares))
    f = lambda xs: np.array(xs, dtype=np.float64)  # noqa: E731
    return f(out_e), f(out_cov), f(out_spread)


# ---------------------------------------------------------------------------
# group sums


def group_sums(values, coef, *, skipna=False):
    """Returns (total float64 (n_groups, n_grid), n_missing int (n_groups, n_grid))."""
    x = np.asarray(values, dtype=np.float64)
    w = np.asarray(coef, dtype=np.float64)
    n_meters, n_grid = x.shape
    n_groups = w.shape[0]
    total = np.empty((n_groups, n_grid))
    n_missing = np.zeros((n_groups, n_grid), dtype=np.int64)
    for j in range(n_groups):
        for c in range(n_grid):
            terms = []
            for i in range(n_meters):
                if w[j, i] == 0:
                    continue  # not a member
                if _isnan(x[i, c]):
                    n_missing[j, c] += 1
                else:
                    terms.append(float(w[j, i]) * float(x[i, c]))
            total[j, c] = NAN if (n_missing[j, c] and not skipna) else math.fsum(terms)
    return total, n_missing


# ---------------------------------------------------------------------------
# rolling windows


def _overlap(a: int, b: int, lo: int, hi: int) -> int:
    """Length of (a, b] ∩ (lo, hi], 0 if disjoint."""
    return max(0, min(b, hi) - max(a, lo))


def rolling_ratio(
    t_ns, numerator, denominator, windows_ns, *, min_coverage=0.0, numerator_coverage=None, denominator_coverage=None
):
    """Returns (ratio, coverage), each (n_windows, n)."""
    t = _ints(t_ns)
    a = _floats(numerator)
    b = _floats(denominator)
    n = len(a)
    ca = [1.0] * n if numerator_coverage is None else _floats(numerator_coverage)
    cb = [1.0] * n if denominator_coverage is None else _floats(denominator_coverage)
    windows = _ints(np.atleast_1d(windows_ns))
    ratios = np.empty((len(windows), n))
    covs = np.empty((len(windows), n))
    for w, W in enumerate(windows):
        for i in range(n):
            end = t[i + 1]
            start = end - W
            num, den, covered = [], [], []
            for k in range(n):
                ov = _overlap(t[k], t[k + 1], start, end)
                if ov == 0 or _isnan(a[k]) or _isnan(b[k]):
                    continue  # only intervals where both are valid count
                frac = ov / (t[k + 1] - t[k])
                num.append(a[k] * frac)
                den.append(b[k] * frac)
                covered.append(min(ca[k], cb[k]) * ov)
            c = math.fsum(covered) / W
            sn, sd = math.fsum(num), math.fsum(den)
            r = sn / sd if sd > 0 else NAN
            if c < min_coverage or not math.isfinite(r):
                r = NAN
            ratios[w, i] = r
            covs[w, i] = c
    return ratios, covs


def two_sum_prefix(t_ns, numerator, denominator, coverage, k):
    """The rolling kernel's running sums through intervals [0, k), one interval at a time with
    Knuth's TwoSum: (numerator hi, lo, denominator hi, lo, covered hi, lo, covered ns). Intervals
    where either energy is not finite add zeros; with `coverage` (None: without) the covered time is
    the double-double sum of coverage x length, else the integer sum of the valid lengths. The
    reference the kernel's vector sums must match bit for bit."""

    def add(hi: float, lo: float, x: float) -> tuple[float, float]:
        s = hi + x
        bp = s - hi
        return s, lo + ((hi - (s - bp)) + (x - bp))

    t = _ints(t_ns)
    a, b = _floats(numerator), _floats(denominator)
    c = None if coverage is None else _floats(coverage)
    a_h = a_l = b_h = b_l = c_h = c_l = 0.0
    ns = 0
    for i in range(k):
        ok = math.isfinite(a[i]) and math.isfinite(b[i])
        x, y = (a[i], b[i]) if ok else (0.0, 0.0)
        a_h, a_l = add(a_h, a_l, x)
        b_h, b_l = add(b_h, b_l, y)
        dt = t[i + 1] - t[i]
        if c is not None:
            c_h, c_l = add(c_h, c_l, (c[i] if ok else 0.0) * float(dt))
        elif ok:
            ns += dt
    return a_h, a_l, b_h, b_l, c_h, c_l, ns


# ---------------------------------------------------------------------------
# per-meter scans (spans, energy before given times)


def _union(intervals) -> tuple[list[int], list[int]]:
    """Sorted disjoint spans covering the (a, b) pairs; touching ones joined."""
    spans: list[list[int]] = []
    for a, b in sorted(intervals):
        if spans and a <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return [s for s, _ in spans], [e for _, e in spans]


def energy_before(t_ns, energy, x_ns, *, max_interval_ns=None):
    """For each x: the finite energies of intervals no longer than the limit, in full when
    the interval ends by x, in proportion to the part before x when it holds x."""
    t = _ints(t_ns)
    e = _floats(energy)
    out = []
    for x in _ints(x_ns):
        full, part = [], 0.0
        for i in range(len(t) - 1):
            a, b = t[i], t[i + 1]
            if not math.isfinite(e[i]) or (max_interval_ns is not None and b - a > max_interval_ns):
                continue
            if b <= x:
                full.append(e[i])
            elif a < x:
                part = e[i] * ((x - a) / (b - a))
        out.append(math.fsum(full) + part)
    return np.array(out, dtype=np.float64)


def register_spans(t_ns, delta, flags, start_ns, end_ns, max_gap_ns):
    """Returns (resets, used, known starts, known ends, observed starts, observed ends)."""
    t = _ints(t_ns)
    d = _floats(delta)
    f = _ints(flags)
    resets, used, known, observed = 0, False, [], []
    for i in range(len(t) - 1):
        a, b = t[i], t[i + 1]
        in_period = b > start_ns and a < end_ns
        if in_period and f[i] & RESET:
            resets += 1
        if not math.isfinite(d[i]):
            continue
        used = used or in_period
        known.append((a, b))
        if b - a <= max_gap_ns:
            observed.append((a, b))
    return (resets, used, *_union(known), *_union(observed))


def power_fill(t_ns, energy, register_start_ns, register_end_ns, start_ns, end_ns):
    """Returns (energy kept where no register span overlaps, used, observed starts, observed ends)."""
    t = _ints(t_ns)
    e = _floats(energy)
    spans = list(zip(_ints(register_start_ns), _ints(register_end_ns)))
    out, used, kept = [], False, []
    for i in range(len(t) - 1):
        a, b = t[i], t[i + 1]
        if not math.isfinite(e[i]) or any(s < b and a < r for s, r in spans):
            out.append(NAN)
            continue
        out.append(e[i])
        used = used or (b > start_ns and a < end_ns)
        kept.append((a, b))
    return (np.array(out, dtype=np.float64), used, *_union(kept))


def hourly_sums(t_ns, values, *, register, max_interval_ns):
    """(hours, energy, covered ns) per UTC hour of the short intervals between present readings."""
    t = _ints(t_ns)
    x = _floats(values)
    present = [i for i in range(len(t)) if math.isfinite(x[i]) and (register or x[i] >= 0)]
    acc: dict[int, list[float]] = {}
    for i, j in zip(present, present[1:]):
        dt = t[j] - t[i]
        if not 0 < dt <= max_interval_ns:
            continue
        e = x[j] - x[i] if register else (x[i] + x[j]) / 2 * dt / 3.6e12
        if e < 0:
            continue
        h = (t[j] - 1) // 3_600_000_000_000
        a = acc.setdefault(h, [0.0, 0.0])
        a[0] += e
        a[1] += dt
    hours = sorted(acc)
    return (np.array(hours, dtype=np.int64), np.array([acc[h][0] for h in hours]), np.array([acc[h][1] for h in hours]))


def cell_shares(end_ns, interval_ns, it_wh, zone, t0_ns, cell_ns, factor, green_frac, carbon_kg_per_wh):
    """Per record, per cell: the share of the record's interval (end - interval, end] inside the
    cell; its IT energy times that share goes to (zone, cell), and, where the cell's factor is
    finite, times the factor to the record's facility energy (times the cell's green share to
    its green energy, times the cell's emission to its carbon).
    Returns (in_period, facility_wh, covered_it_wh, green_wh, carbon_kg, job_it_wh)."""
    factor = [[float(x) for x in row] for row in np.asarray(factor, dtype=np.float64).tolist()]
    green = _floats(green_frac)
    n_cells = len(green)
    job_it = [[0.0] * n_cells for _ in factor]
    co2 = _floats(carbon_kg_per_wh)
    cols: list[list[float]] = [[], [], [], [], []]
    for e1, d, it, z in zip(_ints(end_ns), _ints(interval_ns), _floats(it_wh), _ints(zone)):
        inside, fac, cov, grn, carb = [], [], [], [], []
        for c in range(n_cells):
            lo, hi = int(t0_ns) + c * int(cell_ns), int(t0_ns) + (c + 1) * int(cell_ns)
            overlap = min(hi, e1) - max(lo, e1 - d)
            if overlap <= 0:
                continue
            w = overlap / d
            inside.append(w)
            job_it[z][c] += it * w
            f = factor[z][c]
            if math.isfinite(f):
                fac.append(it * w * f)
                cov.append(it * w)
                grn.append(it * w * f * green[c])
                carb.append(it * w * f * co2[c])
        for col, parts in zip(cols, (inside, fac, cov, grn, carb)):
            col.append(math.fsum(parts))
    return (*(np.array(c) for c in cols), np.array(job_it))
