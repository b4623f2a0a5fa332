"""The register-energy policy: how a meter's readings become interval energies, decided by physics.

The live pipeline (`collector/pipeline.py`) and the reports (`puewatch/report/engine.py`:
`report`, `recompute`) call these functions and nothing else, so the same readings give the
same energies everywhere. docs/auditor-guide.md ("How readings become energy") states the
rules with a worked example of each outcome; this docstring is their source.

**Power limit.** Every meter has one, taken from the first that exists:

1. `configured`: the meter's `max_power_w` in the site configuration;
2. `rated`: `RATED_LIMIT_FACTOR` (2) × the rating its device declares, for a meter read from an
   SNMP device whose profile reads one (`rated_power`, W, e.g. UPS-MIB upsConfigOutputPower;
   `rated_apparent_power`, VA, e.g. upsConfigOutputVA: active power never exceeds apparent
   power, so a VA rating bounds W too). With both, the lower. A rating is the largest value the
   device reported (0 or absent: none): live, so far; in a report, over the period read. The
   factor leaves room for what a rating allows for a while (a UPS's 125-150 % overload, a
   breaker's trip curve) and for a meter upstream of the rated output (a UPS's input feeds its
   losses and battery charging too);
3. `derived`: `DERIVED_LIMIT_FACTOR` (4) × the meter's highest sustained power: the
   `DERIVED_PERCENTILE` (90th) percentile of its hourly mean powers when it has at least
   `DERIVED_FULL_HOURS` (24) such hours, else their median (with fewer hours a few
   faulty ones would move a high percentile). An hour counts when
   the meter's short intervals (both readings present, no drop, at most
   `SHORT_INTERVAL_NS` = 15 min long) cover at least half of it; its mean power is their
   energy over their duration. At least `DERIVED_MIN_HOURS` (3) such hours are needed
   (hours by UTC, an interval belongs to the hour its end falls in). A report derives it
   from the readings it reads; the live collector from the hours it has seen so far.
4. `none`: too little data to derive one (and none configured or rated).

Configure `max_power_w` for audit-grade results: a derived limit can only catch errors far
outside the meter's normal range.

**Each interval of a cumulative register** (readings a → b over Δt) has one outcome:

- `counted`: b ≥ a and the increase b − a is possible: at most limit × Δt plus one
  register step (the resolution). Its energy is b − a.
- `jump`: the increase (or the wrapped increase) implies a mean power above the limit:
  not counted (missing), flagged, and named in warnings with its implied power.
- `wrap`: b < a, the register's modulus M is known, and the wrapped increase b + M − a is
  possible under the limit: its energy is b + M − a. Without any limit (`none`), a drop is a
  wrap only when b + M − a < M / 2.
- `reset`: any other drop (user reset, device replaced, driver reload). Only a lower bound
  of the interval's energy is known (what was counted since the reset), so the interval is
  not counted: missing, live and in reports alike. The readings after it count normally.
- `missing`: a reading at either end is absent.

At most one wrap per interval is counted. Where a counted or wrapped interval's energy plus
one more modulus would still be possible under the limit (a long gap on a register with a
small modulus), the register may have wrapped again unseen: its energy is a lower bound, and
reports and the collector (its log and /metrics) say so (`uncertain_wraps`).

**Readings that cannot be** are not readings (missing), counted per meter and named in
warnings, live and in reports alike: a power reading that is negative or above the meter's
power limit (`power_impossible`); a register reading that is negative, or at or above the
register's modulus where that is known (`register_impossible`: a register counts 0 .. M - 1;
a value past its top would make the next drop a "wrap" of negative energy). Whatever the limit,
and with none: a power above `POWER_CEILING_W` (1 TW: the largest data-centre campuses draw a
few GW) and a register at or above `REGISTER_CEILING` (1e21: a 64-bit counter of 10 Wh steps
stops at 1.8e20), which no meter gives and whose arithmetic overflows (1.7e308 W for a second
is no finite energy: such readings once became a gap without a word, or a PUE of 3e301). The interval
from the reading before it to the one after it is then judged as one.

**Power gauges** are integrated (trapezoid, never across a gap longer than the longest
interval counted as observed).

**Physical floors.** A ratio below its floor is never published as a value: PUE and pPUE
below 1, or any of CLF, PLF, COP, ERF, REF, WUE and the GPU share of IT energy below 0, is
null (live: left out of the written point and counted), with a warning that names the
meters whose energies make it so. A ratio whose denominator's energy is 0 or less (a frozen
IT register) cannot be known: null too, and a report's warning names the meters the same way
(live: left out, counted and logged, as in collector/pipeline.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from puewatch import kernels as k
from puewatch.core.floors import RATIO_FLOORS, below_floor, floor_of  # noqa: F401 (re-exported: the floors' one place)
from puewatch.core.timefmt import HOUR, MINUTE, NS, format_time
from puewatch.kernels.flags import FLAG_BAD_TIME, FLAG_JUMP, FLAG_MISSING, FLAG_RESET, FLAG_WRAP

DERIVED_LIMIT_FACTOR = 4.0
RATED_LIMIT_FACTOR = 2.0
DERIVED_PERCENTILE = 90.0
DERIVED_MIN_HOURS = 3
DERIVED_FULL_HOURS = 24
SHORT_INTERVAL_NS = 15 * MINUTE
HOUR_MIN_COVERED = 0.5
JOULES_PER_WH = 3600.0
# What no meter reads, whatever its limit (module docstring): W (L/s for water), and Wh (L).
POWER_CEILING_W = 1e12
REGISTER_CEILING = 1e21

OUTCOMES = ("counted", "wrap", "reset", "jump", "missing")


@dataclass(frozen=True)
class PowerLimit:
    """A meter's power limit and where it comes from (`configured`, `rated`, `derived` or `none`)."""

    watts: float | None
    source: str

    def describe(self) -> str:
        if self.watts is None:
            return "no power limit (none configured, too little data to derive one)"
        return f"{self.watts:.6g} W ({self.source})"


NO_LIMIT = PowerLimit(None, "none")


class HourlyRates:
    """Energy and covered time per UTC hour of a meter's short, increasing intervals: what
    `derived_limit` is computed from. Accumulates across calls (the live pipeline feeds it
    step by step; a report feeds it all readings at once)."""

    def __init__(self, keep_hours: int = 90 * 24) -> None:
        self.keep = keep_hours
        self.energy_wh: dict[int, float] = {}
        self.covered_ns: dict[int, int] = {}
        self._cached: tuple[int, PowerLimit] | None = None  # (newest hour, its limit)

    def add(self, sums: k.HourlySums) -> None:
        """Hourly sums (`kernels.hourly_sums`) of intervals not added before."""
        for h, eh, ch in zip(sums.hour.tolist(), sums.energy.tolist(), sums.covered_ns.tolist()):
            self.energy_wh[h] = self.energy_wh.get(h, 0.0) + eh
            self.covered_ns[h] = self.covered_ns.get(h, 0) + int(ch)
        if len(self.energy_wh) > self.keep:
            for h in sorted(self.energy_wh)[: len(self.energy_wh) - self.keep]:
                del self.energy_wh[h], self.covered_ns[h]

    def limit(self) -> PowerLimit:
        """The derived limit. Recomputed when a new hour starts (the live pipeline asks every
        step): in the hour in progress it is the limit from the hours before plus that hour's start."""
        newest = max(self.energy_wh, default=-1)
        if self._cached is not None and self._cached[0] == newest:
            return self._cached[1]
        lim = self._compute()
        self._cached = (newest, lim)
        return lim

    def _compute(self) -> PowerLimit:
        hours = np.fromiter(self.energy_wh, np.int64, len(self.energy_wh))
        return limit_from_hours(np.fromiter((self.energy_wh[h] for h in hours.tolist()), np.float64, hours.size),
                                np.fromiter((self.covered_ns[h] for h in hours.tolist()), np.float64, hours.size))


def limit_from_hours(energy_wh: np.ndarray, covered_ns: np.ndarray) -> PowerLimit:
    """The derived limit from per-hour energies and covered time (the rule in the module docstring)."""
    q = covered_ns >= HOUR_MIN_COVERED * HOUR
    if np.count_nonzero(q) < DERIVED_MIN_HOURS:
        return NO_LIMIT
    means = energy_wh[q] * JOULES_PER_WH / (covered_ns[q] / NS)
    pct = DERIVED_PERCENTILE if means.size >= DERIVED_FULL_HOURS else 50.0
    sustained = float(np.percentile(means, pct))
    if not sustained > 0:
        return NO_LIMIT
    return PowerLimit(DERIVED_LIMIT_FACTOR * sustained, "derived")


def hourly(t: np.ndarray, register_wh: np.ndarray | None, power_w: np.ndarray | None) -> k.HourlySums:
    """The hourly sums a derived limit is computed from: the register's where it has two
    readings, else the power's."""
    t = np.asarray(t, np.int64)
    if register_wh is not None and np.count_nonzero(np.isfinite(register_wh)) >= 2:
        return k.hourly_sums(t, register_wh, register=True, max_interval_ns=SHORT_INTERVAL_NS)
    if power_w is not None:
        # Powers that no meter reads (POWER_CEILING_W) are no readings for the limit either.
        p = np.asarray(power_w, np.float64)
        return k.hourly_sums(t, np.where(p > POWER_CEILING_W, np.nan, p), register=False,
                             max_interval_ns=SHORT_INTERVAL_NS)
    return k.HourlySums(np.empty(0, np.int64), np.empty(0), np.empty(0))


def rated_limit(ratings: Mapping[str, float]) -> PowerLimit | None:
    """The limit from a device's ratings (reading name -> largest value seen, W or VA), or None
    when it declares none: `RATED_LIMIT_FACTOR` × the lowest positive rating."""
    # A rating no device has (above POWER_CEILING_W) is no rating: it would lift the limit past the ceiling's
    # physics (found by the review).
    values = [v for v in ratings.values() if math.isfinite(v) and 0 < v <= POWER_CEILING_W]
    if not values:
        return None
    return PowerLimit(RATED_LIMIT_FACTOR * min(values), "rated")


def power_limit(configured_w: float | None, t: np.ndarray, register_wh: np.ndarray | None = None,
                power_w: np.ndarray | None = None, ratings: Mapping[str, float] | None = None) -> PowerLimit:
    """A meter's power limit for a report: configured, else rated, else derived from these readings."""
    if configured_w is not None:
        return PowerLimit(float(configured_w), "configured")
    rated = rated_limit(ratings) if ratings else None
    if rated is not None:
        return rated
    sums = hourly(t, register_wh, power_w)
    return limit_from_hours(sums.energy, sums.covered_ns)


def register_energy(t_ns: np.ndarray, reading_wh: np.ndarray, *, modulus_wh: float | None, limit: PowerLimit,
                    resolution_wh: float = 0.0) -> k.RegisterDeltas:
    """Interval energies (Wh) of a register by the policy above: `delta` NaN where not counted,
    `flags` saying why (FLAG_WRAP, FLAG_RESET, FLAG_JUMP, FLAG_MISSING)."""
    kwargs = {}
    if limit.watts is not None:
        kwargs = {"max_power_w": limit.watts, "joules_per_unit": JOULES_PER_WH}
    return k.register_deltas(t_ns, reading_wh, modulus=modulus_wh, resolution=resolution_wh,
                             reset_from_zero=False, **kwargs)


def power_impossible(power_w, limit: PowerLimit):
    """Where a power reading (W; a float or an array) cannot be: negative, above the limit, or above
    POWER_CEILING_W whatever the limit."""
    bad = (power_w < 0) | (power_w > POWER_CEILING_W)
    if limit.watts is not None:
        bad = bad | (power_w > limit.watts)
    return bad


def register_impossible(reading_wh, modulus_wh: float | None):
    """Where a register reading (Wh or L; a float or an array) cannot be: negative, at or above the
    modulus where it is known (a register counts 0 .. M - 1 and then wraps to 0), or at or above
    REGISTER_CEILING whatever the modulus."""
    bad = (reading_wh < 0) | (reading_wh >= REGISTER_CEILING)
    if modulus_wh is not None:
        bad = bad | (reading_wh >= modulus_wh)
    return bad


def register_readable(reading_wh, modulus_wh: float | None):
    """Where a register's values are readings: finite and not `register_impossible`. The one rule for
    which values count as a register's readings anywhere: the policy, a report's readings beyond its
    window (`puewatch.report.sources.edge_readings`) and the days an export spans."""
    return np.isfinite(reading_wh) & ~register_impossible(reading_wh, modulus_wh)


def register_refused_words(meter: str, count: int, first_ns: int, first_wh: float, modulus_wh: float | None) -> str:
    """The words for `count` register readings refused as impossible, the first at `first_ns`: a report's
    warning, and the collector's log line."""
    top = (f"negative, or at or above its modulus {modulus_wh!r}" if modulus_wh is not None and modulus_wh <= REGISTER_CEILING
           else f"negative, or at or above {REGISTER_CEILING:g}, which no register reaches")
    return (f"meter {meter!r}: {count} register reading(s) {top} (the first {first_wh!r} at "
            f"{format_time(first_ns)}): not readings, the interval around each judged as one")


def checked_power(power_w: np.ndarray, limit: PowerLimit) -> tuple[np.ndarray, int]:
    """Power readings with those that cannot be (`power_impossible`) made missing; and how many."""
    p = np.asarray(power_w, dtype=np.float64)
    return _without(p, power_impossible(p, limit))


def checked_register(reading_wh: np.ndarray, modulus_wh: float | None) -> tuple[np.ndarray, int]:
    """Register readings with those that cannot be (`register_impossible`) made missing; and how many."""
    x = np.asarray(reading_wh, dtype=np.float64)
    return _without(x, register_impossible(x, modulus_wh))


def _without(x: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, int]:
    n = int(np.count_nonzero(bad))
    return (np.where(bad, np.nan, x) if n else x), n


def outcome_counts(flags: np.ndarray) -> dict[str, int]:
    """How many intervals had each outcome (`OUTCOMES`, exclusive: missing before jump before
    reset before wrap; `counted` is a plain increase)."""
    f = np.asarray(flags, dtype=np.uint8)
    flagged = f[np.flatnonzero(f)]  # few: most intervals are plain increases
    by_value = np.bincount(flagged, minlength=256)
    out = dict.fromkeys(OUTCOMES, 0)
    out["counted"] = int(f.size - flagged.size)
    for value in np.flatnonzero(by_value).tolist():
        out[_outcome_of(value)] += int(by_value[value])
    return out


def _outcome_of(f: int) -> str:
    if f & (FLAG_MISSING | FLAG_BAD_TIME):
        return "missing"
    if f & FLAG_JUMP:
        return "jump"
    if f & FLAG_RESET:
        return "reset"
    if f & FLAG_WRAP:
        return "wrap"
    return "counted"


def uncertain_wraps(t_ns: np.ndarray, delta_wh: np.ndarray, *, modulus_wh: float | None, limit: PowerLimit,
                    resolution_wh: float = 0.0) -> np.ndarray:
    """Indices of the counted or wrapped intervals whose register could have wrapped once more:
    their energy plus one modulus is still possible under the limit (delta + M <= limit x dt + r).
    The policy counts at most one wrap per interval, so such an energy is only a lower bound;
    reports name them (a long gap on a register with a small modulus). None without a modulus
    or a limit."""
    d = np.asarray(delta_wh, dtype=np.float64)
    if modulus_wh is None or limit.watts is None or d.size == 0:
        return np.empty(0, np.int64)
    t = np.asarray(t_ns, dtype=np.int64)
    # No interval is longer than the span, and no energy is below 0: a span too short for one
    # modulus (the collector's step, a few seconds of readings) has none, found without arrays.
    if modulus_wh > limit.watts * ((int(t[-1]) - int(t[0])) / NS) / JOULES_PER_WH + resolution_wh:
        return np.empty(0, np.int64)
    dt_s = np.diff(t) / NS
    with np.errstate(invalid="ignore"):
        possible = d + modulus_wh <= limit.watts * dt_s / JOULES_PER_WH + resolution_wh
    return np.flatnonzero(possible & np.isfinite(d))


def uncertain_wraps_warning(meter: str, count: int, start_ns: int, end_ns: int, modulus_wh: float,
                            limit: PowerLimit) -> str:
    """The words for `count` intervals that could hide one more wrap (see uncertain_wraps), the
    first (start_ns, end_ns]: a report's warning, and the collector's log line as it counts them."""
    return (f"meter {meter!r}: {count} register interval(s) (the first {format_time(start_ns)}..{format_time(end_ns)}) "
            f"long enough for its register to wrap once more unseen (modulus {modulus_wh:g}, limit "
            f"{limit.describe()}): counted with at most one wrap, their energy is a lower bound")


def gap_wraps(t_ns: np.ndarray, flags: np.ndarray, max_gap_ns: int) -> np.ndarray:
    """Indices of the intervals counted as a wrap that are longer than `max_gap_ns` (a gap in the readings):
    a reset in the gap (the register restarted from 0 and counted up to the next reading) drops the reading
    alike, and the policy, which counts the wrap where the limit allows it, cannot tell the two apart; reports
    name them (found by the reference audit: a reset in a 5-hour gap, read as a wrap, counted 0.5 MWh more)."""
    f = np.asarray(flags)
    t = np.asarray(t_ns, dtype=np.int64)
    if f.size == 0:
        return np.empty(0, np.int64)
    wrapped = (f & FLAG_WRAP) != 0
    return np.flatnonzero(wrapped & (np.diff(t) > max_gap_ns))


def gap_wraps_warning(meter: str, count: int, start_ns: int, end_ns: int, wrapped_wh: float, after_wh: float,
                      max_gap_ns: int) -> str:
    """The words for `count` wraps across gaps longer than max_gap (see gap_wraps), the first (start_ns, end_ns]:
    its wrapped energy, and what a reset there would leave known (the reading after it: a lower bound)."""
    return (f"meter {meter!r}: {count} register drop(s) across a gap longer than --max-gap ({max_gap_ns / NS:g} s) "
            f"counted as a wrap (the first {format_time(start_ns)}..{format_time(end_ns)}: {wrapped_wh:.6g} Wh); a "
            f"reset in the gap drops the reading alike, and would leave the interval missing (at least "
            f"{after_wh:.6g} Wh, the reading after the drop): where the meter may have been reset or replaced then, "
            "its energy there is not known")


def resets(t_ns: np.ndarray, flags: np.ndarray) -> list[tuple[int, int]]:
    """(start ns, end ns) of every interval whose outcome is `reset` (OUTCOMES' order: not missing, not a jump)."""
    f = np.asarray(flags)
    i = np.flatnonzero((f & FLAG_RESET) & ~(f & (FLAG_MISSING | FLAG_BAD_TIME | FLAG_JUMP)))
    return [(int(t_ns[k]), int(t_ns[k + 1])) for k in i.tolist()]


def jumps(t_ns: np.ndarray, reading_wh: np.ndarray, flags: np.ndarray, modulus_wh: float | None
          ) -> list[tuple[int, int, float]]:
    """(start ns, end ns, implied mean power W) of every interval refused as an impossible jump."""
    out = []
    for i in np.flatnonzero(np.asarray(flags) & FLAG_JUMP).tolist():
        a, b = float(reading_wh[i]), float(reading_wh[i + 1])
        inc = b - a if b >= a or not modulus_wh else (modulus_wh - a) + b  # as the kernel: exact for M = 2^64
        dt_s = (int(t_ns[i + 1]) - int(t_ns[i])) / NS
        out.append((int(t_ns[i]), int(t_ns[i + 1]), inc * JOULES_PER_WH / dt_s))
    return out


def floor_warning(what: str, value: float, numerator: Mapping[str, float | None],
                  denominator: Mapping[str, float | None]) -> str:
    """The warning for a ratio below its floor, naming the meters and their energies."""
    return (f"{what} would be {value:.6g}, below its physical floor {floor_of(what.split()[0]):g}: not published. "
            f"{_ratio_meters(numerator, denominator)}")


def no_denominator_warning(what: str, denominator_energy: float, numerator: Mapping[str, float | None],
                           denominator: Mapping[str, float | None]) -> str:
    """The warning for a ratio that cannot be known because its denominator's energy is not
    positive (a frozen IT register, an IT sum that a subtracted meter takes to 0 or below)."""
    return (f"{what} cannot be known: its denominator's energy is {denominator_energy:.6g}, not positive: not "
            f"published. {_ratio_meters(numerator, denominator)}")


def _ratio_meters(numerator: Mapping[str, float | None], denominator: Mapping[str, float | None]) -> str:
    def names(ms: Mapping[str, float | None]) -> str:
        return ", ".join(f"{m} ({'n/a' if e is None else f'{e:.6g}'})" for m, e in ms.items()) or "none"

    return (f"Numerator meters: {names(numerator)}; denominator meters: {names(denominator)}. "
            f"Check these meters (a frozen or reset register, a wrong role or coefficient)")
