"""Per-meter scans: one meter's readings -> its daily energies, observed spans and the outcomes
of the register-energy policy; and energies restricted to the time a set of meters was
jointly observed.

The energy rules are `puewatch.core.energy`'s (the live pipeline's too); the compiled passes
over the readings are `puewatch.kernels`'. This module only puts them together for a report
period (see the docstring of `puewatch.report.engine` for what each figure means).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from puewatch.core import energy as policy
from puewatch.core import schema
from puewatch.core.site import SiteModel
from puewatch.kernels import RebinnedEnergy, energy_before, integrate_power, power_fill, rebin_energy, register_spans
from puewatch.report.intervals import complement, cover_upto, merge

__all__ = ["EnergyBefore", "JointEnergy", "MeterReadings", "MeterScan", "finite_pairs", "scan_meter", "scan_site_meter"]


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
    # The ratings its SNMP device reported over the period (reading name -> largest, W or VA):
    # its power limit where none is configured (core.energy, `rated`).
    ratings: dict[str, float] | None = None
    # Where the meter's tags select more than one stored series with readings in the window: each one's
    # tags (their readings were read together, as one meter's: a report warns; see `read_meter`).
    series_read: tuple[dict[str, str], ...] = ()
    # Its SNMP device's polls in the period as the collector recorded them (schema.SNMP_POLL); None where
    # the input cannot say (not an SNMP meter, an export CSV).
    polls: PollRecord | None = None
    # The ratings as its device reported them, each (times, values), positive ones only: `ratings` over a
    # shorter window is their largest in it (sources.ratings_over). None where not known.
    rating_times: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    # Where `series_read` names several series: each one's tags and the times of its readings in the window
    # read, so that a shorter window names those with readings in it (sources.window). () where not known.
    series_times: tuple[tuple[dict[str, str], np.ndarray], ...] = ()


def inside(t: np.ndarray, spans: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Which of the times `t` (ascending) lie strictly inside one of the gaps `spans` ((starts, ends), ascending,
    disjoint): not at a gap's edge, where a reading begins or ends it, and the poll that gave that reading is
    recorded at the reading's time."""
    starts, ends = spans
    # Gaps that begin before t, against gaps that end at or before it: one more where t is inside one.
    return np.searchsorted(starts, t, side="left") > np.searchsorted(ends, t, side="right")


@dataclass(frozen=True)
class PollRecord:
    """An SNMP device's recorded polls over a period: their times (int64 ns, ascending) by result
    (`schema.SNMP_POLL_OK`, or a failed poll's cause)."""

    times: dict[str, np.ndarray]

    @property
    def recorded(self) -> int:
        return sum(t.size for t in self.times.values())

    def counts(self, spans: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, int]:
        """Polls by result (those with any), all of them or those inside the gaps `spans` (see `inside`)."""
        out = {}
        for result, t in sorted(self.times.items()):
            n = t.size if spans is None else int(np.count_nonzero(inside(t, spans)))
            if n:
                out[result] = n
        return out

    def all_times(self) -> np.ndarray:
        """Every recorded poll's time, ascending."""
        return np.sort(np.concatenate([np.empty(0, np.int64), *self.times.values()]))


NO_READINGS = MeterReadings(np.empty(0, np.int64))


@dataclass
class MeterScan:
    """What a report needs of one meter over its period."""

    day_energy: np.ndarray  # per grid bin, NaN where the meter has no data in it
    day_estimated: np.ndarray
    observed: tuple[np.ndarray, np.ndarray]  # an interval set (puewatch.report.intervals)
    method: str | None  # "register", "integrated", "mixed", or None (no data)
    resets: int
    modulus_wh: float | None = None
    # Only for a meter observed less than half the period: the median time between its
    # readings there (a meter that reports more seldom than `max_gap` is never observed).
    median_interval_ns: int | None = None
    # Only when asked for (`EnergyBefore`): the meter's observed energy before each of some times.
    before: np.ndarray | None = None
    limit: policy.PowerLimit = policy.NO_LIMIT
    # Register intervals in the period by outcome (core.energy.OUTCOMES); power readings refused.
    outcomes: dict[str, int] = field(default_factory=dict)
    power_refused: int = 0
    # Register readings that cannot be (core.energy.register_impossible), among those read; the first (ns, Wh).
    register_refused: int = 0
    register_refused_first: tuple[int, float] | None = None
    jumps: list[tuple[int, int, float]] = field(default_factory=list)  # (start ns, end ns, mean power W)
    first_reset: tuple[int, int] | None = None  # the first reset interval in the period (start ns, end ns)
    # Counted intervals in the period that could hide one more wrap (core.energy.uncertain_wraps).
    uncertain_wraps: list[tuple[int, int]] = field(default_factory=list)  # (start ns, end ns)
    # Wraps in the period across a gap longer than max_gap (core.energy.gap_wraps): (start ns, end ns, wrapped Wh,
    # the reading after it, Wh).
    gap_wraps: list[tuple[int, int, float, float]] = field(default_factory=list)
    series_read: tuple[dict[str, str], ...] = ()  # MeterReadings.series_read
    polls: PollRecord | None = None  # MeterReadings.polls
    # Of those polls, the ones that answered (SNMP_POLL_OK) strictly inside the meter's gaps in the period
    # with no reading of a value at their time: the device answered, without a value for the meter.
    polls_without_value: int = 0


def finite_pairs(t: np.ndarray, x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The (time, value) pairs where `x` has a reading (finite); both empty for no `x`."""
    if x is None:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    keep = np.isfinite(x)
    if keep.all():
        return t, x  # the common case: no copies of a year of readings
    return t[keep], x[keep]


class _Scan:
    """A meter's energies as its register, then its power, add them up: per day of `grid`
    (or, with `points`, before each point instead), and the spans each observed."""

    def __init__(self, grid: np.ndarray, start_ns: int, end_ns: int, max_gap_ns: int, points: np.ndarray | None,
                 integral_divisor: float) -> None:
        self.grid, self.start_ns, self.end_ns, self.max_gap_ns = grid, start_ns, end_ns, max_gap_ns
        self.integral_divisor = integral_divisor
        n_bins = grid.size - 1
        self.energy, self.estimated, self.coverage = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
        self.points = points
        self.before = np.zeros(points.shape[0]) if points is not None else None
        self.obs_s: list[np.ndarray] = []
        self.obs_e: list[np.ndarray] = []
        # From the register: the span of its readings, which the power does not fill.
        self.reg_s = self.reg_e = np.empty(0, np.int64)
        self.resets = 0
        self.used_register = self.used_power = False
        self.outcomes = dict.fromkeys(policy.OUTCOMES, 0)
        self.jumps: list[tuple[int, int, float]] = []
        self.first_reset: tuple[int, int] | None = None
        self.uncertain_wraps: list[tuple[int, int]] = []
        self.gap_wraps: list[tuple[int, int, float, float]] = []
        self.power_refused = 0

    def add_register(self, readings: MeterReadings, t: np.ndarray, limit: policy.PowerLimit, step_wh: float) -> None:
        te, xe = finite_pairs(t, readings.energy_wh)
        if te.size < 2:
            return
        start, end = self.start_ns, self.end_ns
        d = policy.register_energy(te, xe, modulus_wh=readings.modulus_wh, limit=limit, resolution_wh=step_wh)
        if self.before is None:  # (the outcomes are counted on the first pass only)
            # The intervals in the period (te[i + 1] > start and te[i] < end) are one run of them.
            i0, i1 = int(np.searchsorted(te, start, side="right")) - 1, int(np.searchsorted(te, end, side="left"))
            self.outcomes = policy.outcome_counts(d.flags[max(i0, 0):max(i1, 0)])
            if self.outcomes["reset"]:
                self.first_reset = next((r for r in policy.resets(te, d.flags) if r[1] > start and r[0] < end), None)
            if self.outcomes["jump"]:
                self.jumps = [j for j in policy.jumps(te, xe, d.flags, readings.modulus_wh) if j[1] > start and j[0] < end]
            self.uncertain_wraps = [
                (int(te[i]), int(te[i + 1]))
                for i in policy.uncertain_wraps(te, d.delta, modulus_wh=readings.modulus_wh, limit=limit,
                                                resolution_wh=step_wh).tolist()
                if te[i + 1] > start and te[i] < end]
            self.gap_wraps = [
                (int(te[i]), int(te[i + 1]), float(d.delta[i]), float(xe[i + 1]))
                for i in policy.gap_wraps(te, d.flags, self.max_gap_ns).tolist()
                if te[i + 1] > start and te[i] < end]
        # Observed: the spans with a known delta no longer than max_gap.
        resets, used, _, _, s, e = register_spans(te, d.delta, d.flags, start, end, self.max_gap_ns)
        # The register's whole span (first to last reading): power fills in only outside it. An
        # interval inside that the policy does not count (a reset, a jump) stays missing, as it
        # does live, where a meter follows one reading.
        self.reg_s, self.reg_e = te[:1].copy(), te[-1:].copy()
        self.resets, self.used_register = int(resets), bool(used)
        if self.before is None:  # (the days are not wanted with points)
            reb = rebin_energy(te, d.delta, self.grid, max_span_ns=self.max_gap_ns)
            self._add_days(reb, reb.spread)  # only what a long interval spreads over days is estimated
        else:
            self.before += energy_before(te, d.delta, self.points, max_interval_ns=self.max_gap_ns)
        self.obs_s.append(s)
        self.obs_e.append(e)

    def add_power(self, readings: MeterReadings, t: np.ndarray, limit: policy.PowerLimit) -> None:
        checked = None
        if readings.power_w is not None:
            checked, self.power_refused = policy.checked_power(readings.power_w, limit)
        tp, xp = finite_pairs(t, checked)
        if tp.size < 2:
            return
        integral = integrate_power(tp, xp, max_gap_ns=self.max_gap_ns)
        e_wh = integral.energy_j / self.integral_divisor  # Wh (L for a water flow: core.site.Meter.integral_divisor)
        # Power energy only where the register has none (its spans), all of it estimated.
        e_used, used, s, e = power_fill(tp, e_wh, self.reg_s, self.reg_e, self.start_ns, self.end_ns)
        self.used_power = bool(used)
        if self.before is None:
            reb = rebin_energy(tp, e_used, self.grid)
            self._add_days(reb, reb.energy)
        else:
            self.before += energy_before(tp, e_used, self.points)
        self.obs_s.append(s)
        self.obs_e.append(e)

    def _add_days(self, rebinned: RebinnedEnergy, estimated_wh: np.ndarray) -> None:
        """One source's energies per day (`rebin_energy`'s answer), `estimated_wh` of them estimated."""
        got = rebinned.coverage > 0
        self.energy[got] += rebinned.energy[got]
        self.estimated[got] += estimated_wh[got]
        self.coverage += rebinned.coverage

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.obs_s) == 1:
            return self.obs_s[0], self.obs_e[0]  # already sorted, disjoint and not touching
        return merge(np.concatenate(self.obs_s) if self.obs_s else np.empty(0, np.int64),
                     np.concatenate(self.obs_e) if self.obs_e else np.empty(0, np.int64))

    def method(self) -> str | None:
        if self.used_register and self.used_power:
            return "mixed"
        if self.used_register:
            return "register"
        if self.used_power:
            return "integrated"
        return None


def scan_meter(readings: MeterReadings, grid: np.ndarray, start_ns: int, end_ns: int, max_gap_ns: int,
               max_power_w: float | None, points: np.ndarray | None = None, step_wh: float = 0.0,
               limit: policy.PowerLimit | None = None, integral_divisor: float = 3600.0) -> MeterScan:
    """One meter's daily energies, observed spans and method; with `points`, instead of the
    daily energies its observed energy before each of the points (`before`, for `EnergyBefore`):
    the register's intervals no longer than `max_gap_ns` and the power's intervals it uses,
    those that make its observed spans. `integral_divisor`: the meter's (core.site.Meter), 3600 for a
    power in W, 1 for a water flow in L/s."""
    t = np.ascontiguousarray(readings.t_ns, dtype=np.int64)
    # Register readings that cannot be are no readings, for the limit and the energies alike (core.energy).
    refused, first = 0, None
    if readings.energy_wh is not None:
        energy, refused = policy.checked_register(readings.energy_wh, readings.modulus_wh)
        if refused:
            i = int(np.argmax(policy.register_impossible(np.asarray(readings.energy_wh, np.float64), readings.modulus_wh)))
            first = (int(t[i]), float(readings.energy_wh[i]))
            readings = replace(readings, energy_wh=energy)
    # The meter's power limit (configured, else derived from these readings): core.energy.
    # (`limit` given: the one a first pass over the same readings found.)
    if limit is None:
        limit = policy.power_limit(max_power_w, t, readings.energy_wh, readings.power_w, readings.ratings)
    scan = _Scan(grid, start_ns, end_ns, max_gap_ns, points, integral_divisor)
    scan.add_register(readings, t, limit, step_wh)
    scan.add_power(readings, t, limit)
    no_data = scan.coverage <= 0
    scan.energy[no_data] = np.nan
    scan.estimated[no_data] = np.nan
    observed = scan.observed()
    median_interval = None
    if points is None and 2 * int(np.sum(observed[1] - observed[0])) < end_ns - start_ns:
        i, j = np.searchsorted(t, [start_ns, end_ns])
        if j - i >= 2:
            median_interval = int(np.median(np.diff(t[i:j])))
    return MeterScan(scan.energy, scan.estimated, observed, scan.method(), scan.resets, readings.modulus_wh,
                     median_interval_ns=median_interval, before=scan.before, limit=limit, outcomes=scan.outcomes,
                     power_refused=scan.power_refused, register_refused=refused, register_refused_first=first,
                     jumps=scan.jumps, first_reset=scan.first_reset, uncertain_wraps=scan.uncertain_wraps, gap_wraps=scan.gap_wraps,
                     series_read=readings.series_read, polls=readings.polls,
                     polls_without_value=_polls_without_value(readings, t, observed, start_ns, end_ns))


def _polls_without_value(readings: MeterReadings, t: np.ndarray, observed: tuple[np.ndarray, np.ndarray],
                         start_ns: int, end_ns: int) -> int:
    """The polls that answered inside the meter's gaps (see `inside`) with no reading of a value at their time.
    A reading that bounds no observed interval (a meter's one reading, or one alone between polls that failed)
    lies inside a gap too, and its poll gave it: counted as an answer without a value, it was named a wrong
    cause (found by the demo audit)."""
    ok = None if readings.polls is None else readings.polls.times.get(schema.SNMP_POLL_OK)
    if ok is None or not ok.size:
        return 0
    gaps = complement(*observed, start_ns, end_ns)
    if not gaps:
        return 0
    ok = ok[inside(ok, (np.array([a for a, _ in gaps], np.int64), np.array([b for _, b in gaps], np.int64)))]
    if not ok.size or not t.size:
        return int(ok.size)
    valued = np.zeros(t.size, bool)
    for x in (readings.energy_wh, readings.power_w):
        if x is not None:
            valued |= np.isfinite(np.asarray(x, np.float64))
    i = np.minimum(np.searchsorted(t, ok), t.size - 1)
    return int(np.count_nonzero(~((t[i] == ok) & valued[i])))


def scan_site_meter(site: SiteModel, readings: Mapping[str, MeterReadings], name: str, grid: np.ndarray,
                    start_ns: int, end_ns: int, max_gap_ns: int, points: np.ndarray | None = None,
                    limit: policy.PowerLimit | None = None) -> MeterScan:
    """`scan_meter` of the site's meter `name`: its power limit and register step from the site
    model (no configured or rated limit for water, whose 'power' is a flow: core.site.Meter.limit_w); a meter without
    readings has no data."""
    meter = site.meters[name]
    return scan_meter(readings.get(name, NO_READINGS), grid, start_ns, end_ns, max_gap_ns, meter.limit_w, points,
                      site.snmp_step_wh.get(name, 0.0), limit, meter.integral_divisor)


class EnergyBefore:
    """Each meter's observed energy before every one of `points`, computed once per meter
    when first asked for, by `before_of(name, points)`.

    That goes through the meter's readings again (a store is read again): keeping every
    meter's intervals from the first pass would take as much memory as all the readings of
    a large site. `points` holds every edge any `JointEnergy` needs (the day grid and the joint
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


class JointEnergy:
    """Energies restricted to `spans`, the time every one of a set of meters was observed.

    Every bin asked for is a run of days of `grid`, so each meter's restricted energy is
    kept as its running total at the day edges. Where the meters were jointly observed all
    the time, that is the running total of its daily energies. Otherwise it is summed over
    the stretches between consecutive `before.points` (each wholly inside or outside the
    spans, whose ends are among the points) that lie inside the spans.
    """

    def __init__(self, scans: dict[str, MeterScan], spans: tuple[np.ndarray, np.ndarray], grid: np.ndarray,
                 before: EnergyBefore) -> None:
        self.scans, self.spans, self.grid, self.before = scans, spans, grid, before
        self.full = int((spans[1] - spans[0]).sum()) == int(grid[-1] - grid[0])
        self._upto: dict[str, np.ndarray] = {}
        self._inside: np.ndarray | None = None
        self._grid_at: np.ndarray | None = None

    def _meter_upto(self, name: str) -> np.ndarray:
        upto = self._upto.get(name)
        if upto is None:
            if self.full:
                upto = np.concatenate(([0.0], np.cumsum(np.nan_to_num(self.scans[name].day_energy))))
            else:
                pts = self.before.points
                if self._inside is None:
                    mid = pts[:-1] + (pts[1:] - pts[:-1]) // 2
                    self._inside = (cover_upto(*self.spans, mid + 1) - cover_upto(*self.spans, mid)) > 0
                    self._grid_at = np.searchsorted(pts, self.grid)
                step = np.where(self._inside, np.diff(self.before(name)), 0.0)
                upto = np.concatenate(([0.0], np.cumsum(step)))[self._grid_at]
            self._upto[name] = upto
        return upto

    def meter(self, name: str, edges: np.ndarray) -> np.ndarray:
        """The meter's restricted energy per bin of `edges` (day edges of `grid`)."""
        return np.diff(self._meter_upto(name)[np.searchsorted(self.grid, edges)])

    def total(self, members: dict[str, float], edges: np.ndarray) -> np.ndarray:
        """Coefficient-weighted energy per bin of `edges`; NaN in a bin with no joint time (or no members)."""
        acc = np.zeros(edges.size - 1)
        for name, coef in members.items():
            acc = acc + coef * self.meter(name, edges)
        covered = np.diff(cover_upto(*self.spans, np.asarray(edges, np.int64)))
        return np.where((covered > 0) & bool(members), acc, np.nan)
