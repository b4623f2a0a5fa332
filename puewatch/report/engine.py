"""The one report computation: raw meter readings + site model + period -> the report dict.

`puewatch report` (readings from a store) and `puewatch recompute` (readings from an
exported CSV) both call `compute_report`, so an auditor who recomputes from the export
gets the operator's numbers to the last bit (the CSV carries every float exactly).

Per meter (see docs/report-schema.md for the fields):

- energy from its cumulative register where it has one, by the register-energy policy of
  `puewatch.core.energy` (the live pipeline's too): a power limit per meter, impossible
  jumps and resets not counted, wraps where the modulus is known and the wrapped increase
  is possible; a drop never becomes negative energy. Where
  the register has no reading the meter's power, if it has one, is integrated
  (`integrate_power`, never across more than `max_gap_ns`) and that energy is *estimated*;
  a meter with both is `mixed`;
- a register read again after a gap longer than `max_gap_ns` still gives the exact energy of
  the gap, but how it is spread over the days is a guess: that share is estimated too, and
  the gap counts as missing for completeness;
- everything is spread onto a grid of UTC days inside the period (`rebin_energy`);
  monthly and period totals are sums of the days.

Totals: a role's energy is the coefficient-weighted sum of its meters; it is null where any
member has no data at all in that bin (a total is never a guess). Energies a meter has for
only part of a bin are summed as they are: `completeness` says how much of the period every
meter needed for PUE covered. `pue_joint` divides energies restricted to the spans where every
PUE meter was observed (each interval's energy in proportion to its duration inside), so a gap
on one meter cannot bias it (docs/report-schema.md, "pue and pue_joint").

A ratio below its physical floor (PUE under 1, ...: `core.energy.RATIO_FLOORS`) is null,
with a warning naming the meters.

PUE uncertainty (worst case, first order): a meter of accuracy class a % reads E_i within
±a_i·|E_i|/100. A sum S = Σ c_i E_i is then within ±Σ a_i |c_i E_i| / 100, a relative error
r_S = Σ a_i |c_i E_i| / (100 |S|). For PUE = F / I the relative error is bounded by
r_F + r_I, so `pue_uncertainty` = PUE × (r_F + r_I) (absolute, in PUE units). It is null when
any facility-input or IT meter has no declared class.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np

from puewatch import __version__
from puewatch.core.site import SiteModel
from puewatch.core.timefmt import DAY_NS, NS, add_months, day_grid, format_time, is_annual, month_start, parse_time
from puewatch.core import energy as policy
from puewatch.kernels import energy_before, integrate_power, power_fill, rebin_energy, register_spans

SCHEMA = "puewatch.report/1"
DEFAULT_MAX_GAP_NS = 15 * 60 * NS
MAX_JUMP_WARNINGS = 10  # per meter; the rest are counted

__all__ = [
    "DEFAULT_MAX_GAP_NS",
    "MeterReadings",
    "ReportOptions",
    "SCHEMA",
    "compute_report",
]


@dataclass
class MeterReadings:
    """One meter's raw readings, time ascending: power (W; L/s for water) and/or register (Wh; L for water).

    `power_w` / `energy_wh` are float64 arrays the length of `t_ns` with NaN where that
    reading is absent, or None when the meter never has it.
    """

    t_ns: np.ndarray
    power_w: np.ndarray | None = None
    energy_wh: np.ndarray | None = None
    modulus_wh: float | None = None  # register wrap value, same unit as energy_wh


@dataclass
class ReportOptions:
    max_gap_ns: int = DEFAULT_MAX_GAP_NS  # longest interval integrated or counted as observed
    source: dict[str, Any] = field(default_factory=lambda: {"kind": "csv"})
    generated_at: str | None = None  # default: now


# -- interval sets (sorted, disjoint [start, end) pairs) ----------------------------------------


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of intervals as sorted disjoint intervals (touching ones joined)."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts.astype(np.int64), ends.astype(np.int64)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    run_end = np.maximum.accumulate(e)
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > run_end[:-1]
    idx = np.flatnonzero(new)
    out_s = s[idx]
    out_e = np.append(run_end[idx[1:] - 1], run_end[-1])
    return out_s.astype(np.int64), out_e.astype(np.int64)


def _intersect(sets: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Where every set covers (each set sorted and disjoint)."""
    if not sets:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    n = len(sets)
    times = np.concatenate([np.concatenate((s, e)) for s, e in sets])
    steps = np.concatenate([np.concatenate((np.ones(s.size, np.int64), -np.ones(e.size, np.int64))) for s, e in sets])
    if times.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # Ends before starts at the same instant: half-open intervals that only touch do not overlap.
    order = np.lexsort((steps, times))
    times, steps = times[order], steps[order]
    level = np.cumsum(steps)
    full = level == n
    # An all-covered span starts where the level reaches n and ends at the next event.
    idx = np.flatnonzero(full)
    return _merge(times[idx], times[idx + 1])


def _covered_in_bins(starts: np.ndarray, ends: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """ns of each grid bin covered by the sorted disjoint intervals."""
    if starts.size == 0:
        return np.zeros(grid.size - 1, dtype=np.int64)
    lengths = ends - starts
    cum = np.concatenate(([0], np.cumsum(lengths)))

    def upto(x: np.ndarray) -> np.ndarray:
        j = np.searchsorted(starts, x, side="right") - 1  # last interval starting at or before x
        jj = np.maximum(j, 0)
        inside = np.minimum(np.maximum(x - starts[jj], 0), lengths[jj])
        return np.where(j >= 0, cum[jj] + inside, 0)

    f = upto(grid)
    return np.diff(f)


def _complement(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    cur = lo
    for s, e in zip(starts.tolist(), ends.tolist()):
        s, e = max(s, lo), min(e, hi)
        if e <= s:
            continue
        if s > cur:
            out.append((cur, s))
        cur = max(cur, e)
    if cur < hi:
        out.append((cur, hi))
    return out


def _clip(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted disjoint intervals cut to [lo, hi)."""
    s, e = np.maximum(starts, lo), np.minimum(ends, hi)
    keep = e > s
    return s[keep].astype(np.int64), e[keep].astype(np.int64)


def _cover_upto(starts: np.ndarray, ends: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ns of the sorted disjoint intervals before each x (a non-decreasing function of x)."""
    x = np.asarray(x, np.int64)
    if starts.size == 0:
        return np.zeros(x.shape, np.int64)
    lengths = ends - starts
    cum = np.concatenate(([0], np.cumsum(lengths)))
    j = np.searchsorted(starts, x, side="right") - 1
    jj = np.maximum(j, 0)
    inside = np.minimum(np.maximum(x - starts[jj], 0), lengths[jj])
    return np.where(j >= 0, cum[jj] + inside, 0)


# -- per meter ------------------------------------------------------------------------------


@dataclass
class _MeterResult:
    day_energy: np.ndarray  # per grid bin, NaN where the meter has no data in it
    day_estimated: np.ndarray
    observed: tuple[np.ndarray, np.ndarray]  # sorted disjoint observed spans
    method: str | None
    resets: int
    modulus_wh: float | None = None
    # Only for a meter observed less than half the period: the median time between its
    # readings there (a meter that reports more seldom than `max_gap` is never observed).
    median_interval_ns: int | None = None
    # Only when asked for (`_Before`): the meter's observed energy before each of some times.
    before: np.ndarray | None = None
    limit: policy.PowerLimit = policy.NO_LIMIT
    # Register intervals in the period by outcome (core.energy.OUTCOMES); power readings refused.
    outcomes: dict[str, int] = field(default_factory=dict)
    power_refused: int = 0
    jumps: list[tuple[int, int, float]] = field(default_factory=list)


def _finite_pairs(t: np.ndarray, x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if x is None:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    keep = np.isfinite(x)
    if keep.all():
        return t, x  # the common case: no copies of a year of readings
    return t[keep], x[keep]


def _meter(readings: MeterReadings, grid: np.ndarray, start: int, end: int, max_gap: int,
           max_power_w: float | None, points: np.ndarray | None = None, step_wh: float = 0.0) -> _MeterResult:
    """One meter's daily energies, observed spans and method; with `points`, instead of the
    daily energies its observed energy before each of the points (`before`, for `_Before`):
    the register's intervals no longer than `max_gap` and the power's intervals it uses,
    those that make its observed spans."""
    before = np.zeros(points.shape[0]) if points is not None else None
    t = np.ascontiguousarray(readings.t_ns, dtype=np.int64)
    n_bins = grid.size - 1
    energy = np.zeros(n_bins)
    estimated = np.zeros(n_bins)
    coverage_any = np.zeros(n_bins)
    obs_s: list[np.ndarray] = []
    obs_e: list[np.ndarray] = []
    resets = 0
    used_register = used_power = False

    # The meter's power limit (configured, else derived from these readings): core.energy.
    limit = policy.power_limit(max_power_w, t, readings.energy_wh, readings.power_w)
    outcomes = dict.fromkeys(policy.OUTCOMES, 0)
    jumps: list[tuple[int, int, float]] = []
    power_refused = 0
    te, xe = _finite_pairs(t, readings.energy_wh)
    reg_s = reg_e = np.empty(0, np.int64)
    if te.size >= 2:
        d = policy.register_energy(te, xe, modulus_wh=readings.modulus_wh, limit=limit, resolution_wh=step_wh)
        if before is None:
            in_period = (te[1:] > start) & (te[:-1] < end)
            flags_in = d.flags[in_period]
            outcomes = policy.outcome_counts(flags_in)
            if outcomes["jump"]:
                jumps = [j for j in policy.jumps(te, xe, d.flags, readings.modulus_wh) if j[1] > start and j[0] < end]
        # reg_*: every span with a known delta (even a long one); observed: the short ones.
        resets, used_register, reg_s, reg_e, s, e = register_spans(te, d.delta, d.flags, start, end, max_gap)
        resets = int(resets)
        used_register = bool(used_register)
        if before is None:  # (the days are not wanted with points)
            reb = rebin_energy(te, d.delta, grid, max_span_ns=max_gap)
            got = reb.coverage > 0
            energy[got] += reb.energy[got]
            estimated[got] += reb.spread[got]
            coverage_any += reb.coverage
        obs_s.append(s)
        obs_e.append(e)
        if before is not None:
            before += energy_before(te, d.delta, points, max_interval_ns=max_gap)

    if readings.power_w is not None:
        checked, power_refused = policy.checked_power(readings.power_w, limit)
        tp, xp = _finite_pairs(t, checked)
    else:
        tp, xp = _finite_pairs(t, None)
    if tp.size >= 2:
        integral = integrate_power(tp, xp, max_gap_ns=max_gap)
        e_wh = integral.energy_j / 3600.0
        e_used, used_power, s, e = power_fill(tp, e_wh, reg_s, reg_e, start, end)
        used_power = bool(used_power)
        if before is None:
            reb = rebin_energy(tp, e_used, grid)
            got = reb.coverage > 0
            energy[got] += reb.energy[got]
            estimated[got] += reb.energy[got]
            coverage_any += reb.coverage
        obs_s.append(s)
        obs_e.append(e)
        if before is not None:
            before += energy_before(tp, e_used, points)

    energy[coverage_any <= 0] = np.nan
    estimated[coverage_any <= 0] = np.nan
    if len(obs_s) == 1:
        observed = (obs_s[0], obs_e[0])  # already sorted, disjoint and not touching
    else:
        observed = _merge(np.concatenate(obs_s) if obs_s else np.empty(0, np.int64),
                          np.concatenate(obs_e) if obs_e else np.empty(0, np.int64))
    if used_register and used_power:
        method = "mixed"
    elif used_register:
        method = "register"
    elif used_power:
        method = "integrated"
    else:
        method = None
    median_interval = None
    if before is None and 2 * int(np.sum(observed[1] - observed[0])) < end - start:
        i, j = np.searchsorted(t, [start, end])
        if j - i >= 2:
            median_interval = int(np.median(np.diff(t[i:j])))
    return _MeterResult(energy, estimated, observed, method, resets, readings.modulus_wh,
                        median_interval_ns=median_interval, before=before, limit=limit, outcomes=outcomes,
                        power_refused=power_refused, jumps=jumps)


# -- totals -----------------------------------------------------------------------------------


def _nansum_or_nan(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum over `axis` ignoring NaN; NaN where every element is NaN."""
    s = np.nansum(x, axis=axis)
    return np.where(np.all(np.isnan(x), axis=axis), np.nan, s)


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return _num(a / b)


class _Before:
    """Each meter's observed energy before every one of `points`, computed once per meter
    when first asked for, by `before_of(name, points)`.

    That goes through the meter's readings again (a store is read again): keeping every
    meter's intervals from the first pass would take as much memory as all the readings of
    a large site. `points` holds every edge any `_Joint` needs (the day grid and the joint
    spans' ends), so one pass serves them all.
    """

    def __init__(self, points: np.ndarray, before_of: Callable[[str, np.ndarray], np.ndarray]) -> None:
        self.points, self.before_of = points, before_of
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        out = self._cache.get(name)
        if out is None:
            out = self._cache[name] = self.before_of(name, self.points)
        return out


class _Joint:
    """Energies restricted to `spans`, the time every one of a set of meters was observed.

    Every bin asked for is a run of days of `grid`, so each meter's restricted energy is
    kept as its running total at the day edges. Where the meters were jointly observed all
    the time, that is the running total of its daily energies. Otherwise it is summed over
    the stretches between consecutive `before.points` (each wholly inside or outside the
    spans, whose ends are among the points) that lie inside the spans.
    """

    def __init__(self, results: dict[str, _MeterResult], spans: tuple[np.ndarray, np.ndarray], grid: np.ndarray,
                 before: _Before) -> None:
        self.results, self.spans, self.grid, self.before = results, spans, grid, before
        self.full = int((spans[1] - spans[0]).sum()) == int(grid[-1] - grid[0])
        self._upto: dict[str, np.ndarray] = {}
        self._inside: np.ndarray | None = None
        self._grid_at: np.ndarray | None = None

    def _meter_upto(self, name: str) -> np.ndarray:
        upto = self._upto.get(name)
        if upto is None:
            if self.full:
                upto = np.concatenate(([0.0], np.cumsum(np.nan_to_num(self.results[name].day_energy))))
            else:
                pts = self.before.points
                if self._inside is None:
                    mid = pts[:-1] + (pts[1:] - pts[:-1]) // 2
                    self._inside = (_cover_upto(*self.spans, mid + 1) - _cover_upto(*self.spans, mid)) > 0
                    self._grid_at = np.searchsorted(pts, self.grid)
                step = np.where(self._inside, np.diff(self.before(name)), 0.0)
                upto = np.concatenate(([0.0], np.cumsum(step)))[self._grid_at]
            self._upto[name] = upto
        return upto

    def meter(self, name: str, edges: np.ndarray) -> np.ndarray:
        return np.diff(self._meter_upto(name)[np.searchsorted(self.grid, edges)])

    def total(self, members: dict[str, float], edges: np.ndarray) -> np.ndarray:
        """Coefficient-weighted energy per bin of `edges`; NaN in a bin with no joint time (or no members)."""
        acc = np.zeros(edges.size - 1)
        for name, coef in members.items():
            acc = acc + coef * self.meter(name, edges)
        covered = np.diff(_cover_upto(*self.spans, np.asarray(edges, np.int64)))
        return np.where((covered > 0) & bool(members), acc, np.nan)


def compute_report(
    site: SiteModel,
    readings: dict[str, MeterReadings],
    start_ns: int,
    end_ns: int,
    options: ReportOptions | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report (docs/report-schema.md) for [start_ns, end_ns). Meters without readings count as no data.

    `details`, when given, is filled with what the figures need beyond the schema:
    `daily_roles` (role -> daily energy list, Wh or L, None where unknown) and
    `daily_completeness` (meter -> list of daily completeness).
    """
    opts = options or ReportOptions()
    if end_ns <= start_ns:
        raise ValueError("the period's end must be after its start")
    grid = day_grid(start_ns, end_ns)
    n_bins = grid.size - 1
    months = [month_start(start_ns)]
    while (nxt := add_months(months[-1], 1)) < end_ns:
        months.append(nxt)
    month_edges = np.array([start_ns] + months[1:] + [end_ns], dtype=np.int64)
    bin_month = np.searchsorted(month_edges, grid[:-1], side="right") - 1
    n_months = month_edges.size - 1

    results: dict[str, _MeterResult] = {}
    empty = MeterReadings(np.empty(0, np.int64))

    def meter_result(name: str, points: np.ndarray | None = None) -> _MeterResult:
        meter = site.meters[name]
        max_p = meter.max_power_w if meter.role != "water" else None
        return _meter(readings.get(name, empty), grid, start_ns, end_ns, opts.max_gap_ns, max_p, points,
                      site.snmp_step_wh.get(name, 0.0))

    def before_of(name: str, points: np.ndarray) -> np.ndarray:
        return meter_result(name, points).before

    for name in site.meters:
        results[name] = meter_result(name)

    # Per meter: energy by month and over the period (NaN where no data at all).
    def month_sums(x: np.ndarray) -> np.ndarray:
        out = np.full(n_months, np.nan)
        for k in range(n_months):
            out[k] = _nansum_or_nan(x[bin_month == k])
        return out

    meter_month = {n: month_sums(r.day_energy) for n, r in results.items()}
    meter_total = {n: float(_nansum_or_nan(r.day_energy)) for n, r in results.items()}

    def total(members: dict[str, float], per: str) -> np.ndarray | float:
        src = {"day": {n: r.day_energy for n, r in results.items()}, "month": meter_month, "period": meter_total}[per]
        if not members:
            return math.nan if per == "period" else np.full(n_bins if per == "day" else n_months, np.nan)
        acc: Any = 0.0
        for name, coef in members.items():
            acc = acc + coef * src[name]
        return acc

    def completeness(members: list[str]) -> tuple[float, np.ndarray, np.ndarray]:
        if not members:
            return 0.0, np.zeros(n_bins), np.zeros(n_months)
        s, e = _intersect([results[m].observed for m in members])
        per_day = _covered_in_bins(s, e, grid)
        per_month = _covered_in_bins(s, e, month_edges)
        return (
            float(per_day.sum()) / (end_ns - start_ns),
            per_day / np.diff(grid),
            per_month / np.diff(month_edges),
        )

    fac = site.members("facility_input")
    it = site.members("it")
    pue_meters = sorted(set(fac) | set(it))
    # Ratios below their physical floor (core.energy.RATIO_FLOORS): name -> (count, first
    # (what, value, numerator meters, denominator meters)); each becomes one warning.
    below: dict[str, list[Any]] = {}

    def ratio(name: str, where: str, a: float | None, b: float | None, num: dict[str, float],
              den: dict[str, float], per: str = "period") -> float | None:
        value = _ratio(a, b)
        if not policy.below_floor(name, value):
            return value
        seen = below.setdefault(f"{name} {where}", [0, None])
        seen[0] += 1
        if seen[1] is None:
            def energies(ms: dict[str, float]) -> dict[str, float | None]:
                return {m: _num(meter_total[m]) for m in ms}
            seen[1] = (f"{name} {where}", value, energies(num), energies(den))
        return None

    comp, comp_day, comp_month = completeness(pue_meters)

    f_total = _num(total(fac, "period"))
    i_total = _num(total(it, "period"))
    pue = ratio("pue", "of the period", f_total, i_total, fac, it)

    # PUE over the time every PUE meter was observed: E_DC and E_IT of the same instants, so
    # one meter's gap cannot bias it (see docs/report-schema.md, "pue and pue_joint").
    period_edges = np.array([start_ns, end_ns], np.int64)
    zone_sets = {}
    for zone in site.zone_names():
        if site.members("it", zone):
            zone_sets[zone] = sorted(set(site.boundary(zone)) | set(site.members("it", zone)))

    def joint_spans(members: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not members:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return _clip(*_intersect([results[m].observed for m in members]), start_ns, end_ns)

    spans = {"": joint_spans(pue_meters)} | {z: joint_spans(m) for z, m in zone_sets.items()}
    before = _Before(np.unique(np.concatenate([grid, *(x for sp in spans.values() for x in sp)])), before_of)
    joint = _Joint(results, spans[""], grid, before)
    f_joint = _num(joint.total(fac, period_edges)[0])
    i_joint = _num(joint.total(it, period_edges)[0])
    pue_joint = ratio("pue", "(pue_joint) of the period", f_joint, i_joint, fac, it)

    # Estimated share of E_DC + E_IT (by magnitude of the meters' contributions).
    est = sum(abs(c) * float(np.nansum(results[m].day_estimated)) for m, c in {**fac, **it}.items())
    tot = sum(abs(c) * abs(meter_total[m]) for m, c in {**fac, **it}.items() if math.isfinite(meter_total[m]))
    estimated_share = est / tot if tot > 0 else 0.0

    pue_uncertainty = None
    if pue is not None and f_total and all(site.meters[m].accuracy_pct is not None for m in pue_meters):
        def rel(members: dict[str, float], s: float) -> float:
            return sum(site.meters[m].accuracy_pct / 100.0 * abs(c * meter_total[m]) for m, c in members.items()) / abs(s)

        pue_uncertainty = _num(pue * (rel(fac, f_total) + rel(it, i_total)))
    pue_joint_uncertainty = None
    if pue_joint is not None and f_joint and all(site.meters[m].accuracy_pct is not None for m in pue_meters):
        e_joint = {m: float(joint.meter(m, period_edges)[0]) for m in pue_meters}

        def rel_joint(members: dict[str, float], s: float) -> float:
            return sum(site.meters[m].accuracy_pct / 100.0 * abs(c * e_joint[m]) for m, c in members.items()) / abs(s)

        pue_joint_uncertainty = _num(pue_joint * (rel_joint(fac, f_joint) + rel_joint(it, i_joint)))

    def role_ratio(name: str, role: str, denominator: float | None, den_members: dict[str, float]) -> float | None:
        members = site.members(role)
        if not members:
            return None
        num = _num(total(members, "period"))
        if num is None or denominator is None:
            return None
        return ratio(name, "of the period", num, denominator, members, den_members)

    zones = []
    for zone in site.zone_names():
        zone_it = site.members("it", zone)
        if not zone_it:
            continue
        boundary = site.boundary(zone)
        b = _num(total(boundary, "period"))
        zi = _num(total(zone_it, "period"))
        zc, _, _ = completeness(zone_sets[zone])
        zjoint = _Joint(results, spans[zone], grid, before)
        zb = _num(zjoint.total(boundary, period_edges)[0])
        zij = _num(zjoint.total(zone_it, period_edges)[0])
        zones.append({"zone": zone, "ppue": ratio("ppue", f"of zone {zone!r}", b, zi, boundary, zone_it),
                      "boundary_energy_wh": b, "it_energy_wh": zi, "completeness": zc,
                      "ppue_joint": ratio("ppue", f"(ppue_joint) of zone {zone!r}", zb, zij, boundary, zone_it),
                      "boundary_energy_joint_wh": zb,
                      "it_energy_joint_wh": zij})

    period = end_ns - start_ns
    meters_out = []
    warnings = []
    for name, meter in site.meters.items():
        r = results[name]
        covered = _covered_in_bins(*r.observed, np.array([start_ns, end_ns], np.int64))
        meters_out.append({
            "meter": name,
            "role": meter.role,
            "zone": meter.zone,
            "point": meter.point,
            "energy_wh": _num(meter_total[name]),
            "estimated_wh": _num(_nansum_or_nan(r.day_estimated)),
            "method": r.method,
            "completeness": float(covered[0]) / period,
            "gaps": [{"start": format_time(a), "end": format_time(b)}
                     for a, b in _complement(*r.observed, start_ns, end_ns)],
            "resets": r.resets,
            "accuracy_pct": meter.accuracy_pct,
            "modulus_wh": r.modulus_wh,
            "power_limit_w": r.limit.watts,
            "power_limit_source": r.limit.source,
            "register_intervals": r.outcomes,
            "power_readings_refused": r.power_refused,
        })
        for a, b, w in r.jumps[:MAX_JUMP_WARNINGS]:
            warnings.append(f"meter {name!r}: register increase {format_time(a)}..{format_time(b)} implies a mean power "
                            f"of {w:.6g} W, above its limit {r.limit.describe()}: not counted (an impossible jump)")
        if len(r.jumps) > MAX_JUMP_WARNINGS:
            warnings.append(f"meter {name!r}: {len(r.jumps) - MAX_JUMP_WARNINGS} more impossible jump(s) not counted "
                            f"({len(r.jumps)} in all; see meters[].register_intervals)")
        if r.power_refused:
            warnings.append(f"meter {name!r}: {r.power_refused} power reading(s) negative or above its limit "
                            f"{r.limit.describe()}: not counted")
        if r.median_interval_ns is not None and r.median_interval_ns > opts.max_gap_ns:
            warnings.append(f"meter {name!r}: its readings are {r.median_interval_ns / 1e9:g} s apart (median), longer "
                            f"than the longest interval counted as observed ({opts.max_gap_ns / 1e9:g} s): most of its "
                            f"time is a gap; if it reports this seldom, give --max-gap "
                            f"{math.ceil(r.median_interval_ns / 1e9)} (to report, export and recompute alike)")
        unknown = site.snmp_modulus_unknown.get(name)
        if r.resets and unknown:
            warnings.append(f"meter {name!r}: {r.resets} register drop(s) counted as reset(s) (each "
                            f"interval not counted); a drop may have been a wrap, whose value is unknown here: {unknown}")

    def rows(per: str, edges: np.ndarray, f: np.ndarray, i: np.ndarray, c: np.ndarray) -> list[dict[str, Any]]:
        fj, ij = joint.total(fac, edges), joint.total(it, edges)
        out = []
        for k in range(edges.size - 1):
            fk, ik = _num(f[k]), _num(i[k])
            fjk, ijk = _num(fj[k]), _num(ij[k])
            out.append({"period_start": format_time(int(edges[k])), "period_end": format_time(int(edges[k + 1])),
                        "pue": ratio("pue", f"of {per}s", fk, ik, fac, it),
                        "facility_energy_wh": fk, "it_energy_wh": ik, "completeness": float(c[k]),
                        "pue_joint": ratio("pue", f"(pue_joint) of {per}s", fjk, ijk, fac, it),
                        "facility_energy_joint_wh": fjk, "it_energy_joint_wh": ijk})
        return out

    monthly = rows("month", month_edges, total(fac, "month"), total(it, "month"), comp_month)
    daily = rows("day", grid, total(fac, "day"), total(it, "day"), comp_day)
    for count, (what, value, num, den) in below.values():
        w = policy.floor_warning(what, value, num, den)
        warnings.append(w if count == 1 else f"{w} ({count} {what.split()[0]} values of this kind not published)")

    if details is not None:
        details["daily_roles"] = {
            role: [_num(x) for x in total(site.members(role), "day")]
            for role in ("facility_input", "it", "cooling", "losses", "other") if site.members(role)
        }
        details["daily_completeness"] = {
            name: (_covered_in_bins(*r.observed, grid) / np.diff(grid)).tolist() for name, r in results.items()
        }

    category = site.category
    annual = is_annual(start_ns, end_ns)
    if annual:
        label = f"PUE_L{category},YC"
    else:
        def short(t: int) -> str:
            return format_time(t)[:10] if t % DAY_NS == 0 else format_time(t)

        label = f"iPUE_L{category} {short(start_ns)}..{short(end_ns)}"

    return {
        "schema": SCHEMA,
        "site": site.name,
        "period_start": format_time(start_ns),
        "period_end": format_time(end_ns),
        "annual": annual,
        "category": category,
        "label": label,
        "pue": pue,
        "pue_uncertainty": pue_uncertainty,
        "facility_energy_wh": f_total,
        "it_energy_wh": i_total,
        "pue_joint": pue_joint,
        "pue_joint_uncertainty": pue_joint_uncertainty,
        "facility_energy_joint_wh": f_joint,
        "it_energy_joint_wh": i_joint,
        "completeness": comp,
        "estimated_share": estimated_share,
        "clf": role_ratio("clf", "cooling", i_total, it),
        "plf": role_ratio("plf", "losses", i_total, it),
        "erf": role_ratio("erf", "reused_heat", f_total, fac),
        "ref": role_ratio("ref", "renewable", f_total, fac),
        # Cooling plant COP: heat removed (thermal Wh) per Wh of cooling electricity.
        "cop": role_ratio("cop", "heat_removed", _num(total(site.members("cooling"), "period")), site.members("cooling")),
        # L per kWh of IT energy.
        "wue": role_ratio("wue", "water", None if i_total is None else i_total / 1000.0, it),
        "zones": zones,
        "meters": meters_out,
        "warnings": warnings,
        "monthly": monthly,
        "daily": daily,
        "generated_at": opts.generated_at or format_time(int(dt.datetime.now(dt.UTC).timestamp()) * NS),
        "generator": f"puewatch {__version__}",
        "source": opts.source,
    }
