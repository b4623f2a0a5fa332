"""The live pipeline: readings in, per-interval energy and rolling PUE out.

Every input is a *stream* of timestamped readings: a meter's power gauge or
energy register (SNMP or an ingest series), or one GPU's NVML energy counter
from an agent. Each step finalises the grid cells (default 1 s) up to a
*horizon* and turns them into derived series:

1. Per stream, the energy of each cell by the one register-energy policy
   (:mod:`puewatch.core.energy`, as in the reports): registers through
   ``register_energy`` (a power limit per meter, configured or derived;
   impossible jumps and resets not counted, wraps only where possible; each
   outcome counted), gauges through :func:`~puewatch.kernels.integrate_power`
   (gaps longer than the stream's maximum gap are not bridged; a power reading
   that is negative or above the limit is no reading), both spread onto the grid with
   :func:`~puewatch.kernels.rebin_energy`. Between two steps a stream keeps
   its last reading at or before the horizon as the anchor of the next step,
   so the interval that straddles the horizon is split pro rata and never
   counted twice.
2. A cell that a stream covers only in part counts as missing for that
   stream: a partial energy would understate the total, and no energy is
   ever made up. Site and zone totals come from
   :func:`~puewatch.kernels.group_sums` and are missing wherever a member is.
3. Ratios (PUE, pPUE, CLF, PLF, COP, ERF, REF, WUE, the GPU share of IT
   energy) over rolling windows with :func:`~puewatch.kernels.rolling_ratio`:
   a ratio of energy sums over the cells where both sides are known, with
   the share of the window they cover. Below ``min_coverage`` a ratio is NaN
   (left out of the written point), never a guess; so is a ratio below its
   physical floor (a PUE under 1), which is also counted and logged.

A reading stamped further ahead of its arrival than ``settle_s`` is held
until the horizon reaches its time, then taken in order (appended at once, a
clock that jumped ahead would refuse every later reading stamped before it;
refused, live cells would lack a reading that the store holds and a report
counts); ingest's ``max_clock_skew_s`` bounds how far ahead a stored reading
can be. A failed poll (NaN) is no reading. Readings out of order, and a time
written again, are taken in time order and by their last write, as the store
keeps them, until their cells are written (Stream.frozen_ns); later ones are
refused and counted.

The horizon waits for the streams that are still reporting: it is the
earliest latest-reading time among streams heard from within ``settle_s``,
and never lags the clock by more than ``settle_s``. A stream silent for
longer stops holding the horizon back; its cells are missing until it
reports again.

Windows up to ``fine_max_s`` run on the cell grid; longer ones (24 h, 30 days)
on one-minute cells built from the fine cells. The history is checkpointed to
the state directory so a restart rebuilds the rolling windows.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from puewatch import kernels as k
from puewatch.core import energy as policy
from puewatch.core import schema
from puewatch.core.site import ROLES, UNITS, SiteModel
from puewatch.core.timefmt import MINUTE, SECOND
from puewatch.core.batch import Batch

log = logging.getLogger("puewatch.collector.pipeline")

# A cell is "covered" when at least this share of it has data (guards against rounding).
FULL = 1.0 - 1e-9
CHECKPOINT_VERSION = 1


def format_window(ns: int) -> str:
    """`1m`, `15m`, `1h`, `24h`, `30d`: the `window` tag of a rolling point."""
    s = ns // SECOND
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0 and s >= size and not (unit == "d" and s < 2 * 86400):
            return f"{s // size}{unit}"
    return f"{s}s"


def parse_duration(text: str) -> int:
    """`90s`, `15m`, `1h`, `30d` -> ns; a clear ValueError otherwise."""
    units = {"s": SECOND, "m": MINUTE, "h": 3600 * SECOND, "d": 86400 * SECOND, "w": 7 * 86400 * SECOND}
    text = text.strip()
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h, 30d or 2w")
    return int(number) * units[unit]


# Readings held a stream (see Stream.future): ingest's default window ahead (300 s) of 1 s readings, thrice.
FUTURE_HELD = 1000


@dataclass
class Stream:
    """One input series and the state carried between steps."""

    key: str
    register: bool
    # Raw value -> base unit (Wh, L for registers; W, L/s for gauges).
    factor: float = 1.0
    modulus: float | None = None  # in raw units
    max_power_w: float | None = None
    # The ratings its device reported (reading name -> largest value so far, W or VA): shared by
    # every meter on the device (Pipeline.add_rating), read when no limit is configured.
    ratings: dict[str, float] = field(default_factory=dict)
    resolution: float = 0.0  # one register step, raw units
    max_gap_ns: int = 0  # gauges: longest interval integrated
    estimated: bool = False
    # Gauges: what their integral is divided by to reach the base unit (core.site.Meter.integral_divisor).
    integral_divisor: float = 3600.0
    t: list[int] = field(default_factory=list)
    v: list[float] = field(default_factory=list)
    last_arrival_ns: int = -1
    # Register intervals by outcome (core.energy.OUTCOMES), power readings refused, readings
    # from the future refused: for /metrics.
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(policy.OUTCOMES, 0))
    power_refused: int = 0
    register_refused: int = 0  # register readings negative or at/above the modulus: not readings
    future_refused: int = 0
    # Readings stamped further ahead of their arrival than `max_ahead_ns`, held until the horizon
    # reaches their time (`release`): taken then as the store keeps them, so live cells and a report
    # see the same readings; appended at once they would refuse every later reading stamped before
    # them (a clock that jumped ahead). At most FUTURE_HELD a stream; beyond, refused and counted.
    future: list[tuple[int, float, int]] = field(default_factory=list)
    present_arrival_ns: int = -1  # the last arrival of a reading not held
    # The latest reading whose interval has gone into finished cells (see `cells`): a reading stamped at
    # or before it comes too late for the live cells (refused, counted); one after it is taken in time
    # order, and one at the time of a reading taken after it replaces that reading, as the store keeps
    # the last write at a time.
    frozen_ns: int = -1
    late_refused: int = 0  # readings at or before frozen_ns: for /metrics
    # Counted register intervals that could hide one more wrap (core.energy.uncertain_wraps):
    # their energy is a lower bound. For /metrics, and logged as they are counted.
    uncertain_wraps: int = 0
    # What a derived power limit is computed from (the hours seen so far).
    rates: policy.HourlyRates = field(default_factory=policy.HourlyRates)

    def limit(self) -> policy.PowerLimit:
        """The stream's power limit by the one policy: configured, else rated, else derived from the hours seen."""
        if self.max_power_w is not None:
            return policy.PowerLimit(float(self.max_power_w), "configured")
        rated = policy.rated_limit(self.ratings) if self.ratings else None
        return rated if rated is not None else self.rates.limit()

    def add(self, time_ns: int, value: float, arrival_ns: int, max_ahead_ns: int | None = None,
            refuse_ahead_ns: int = 0) -> bool:
        """Take a reading, in time order, a time taken again replacing its value (the store's last write);
        one at or before `frozen_ns`, whose cells are written, is refused (returns False). One stamped
        further than `max_ahead_ns` ahead of its arrival is held until the horizon reaches it (`future`,
        `release`): appended now, it would refuse every reading stamped before it that is still to
        come (a clock that jumped ahead), and refused, live cells would lack a reading the store holds
        and a report counts. One further ahead than `refuse_ahead_ns` (ingest's max_clock_skew_s,
        which keeps such a line out of the store; 0: no limit) is refused and counted."""
        if refuse_ahead_ns and time_ns > arrival_ns + refuse_ahead_ns:
            self.future_refused += 1
            return False
        if max_ahead_ns is not None and time_ns > arrival_ns + max_ahead_ns:
            if len(self.future) >= FUTURE_HELD:
                self.future_refused += 1
                return False
            bisect.insort(self.future, (int(time_ns), float(value), int(arrival_ns)))
            self.last_arrival_ns = max(self.last_arrival_ns, int(arrival_ns))  # heard from: it holds the horizon
            return True
        self.present_arrival_ns = max(self.present_arrival_ns, int(arrival_ns))
        # The held readings stamped before this one come first (a store orders them by time too); one
        # at its very time too, which this one then replaces: it was written earlier (held, it came
        # ahead of its time), and the store keeps the last write.
        while self.future and self.future[0][0] <= time_ns:
            self._append(*self.future.pop(0))  # refused only when too late, and counted so (late_refused)
        return self._append(time_ns, value, arrival_ns)

    def release(self, horizon_ns: int, quiet_since_ns: int) -> int:
        """Append the held readings stamped at or before `horizon_ns`, in time order, as `add` would have;
        and where the stream has had no reading it did not hold since `quiet_since_ns` (a clock running
        ahead: all its readings are held) and none past the horizon, the next one after it too (the
        interval across the horizon needs its end). Returns how many were refused (too late: at or
        before a reading whose interval is in written cells, counted in late_refused)."""
        refused = 0
        quiet = self.present_arrival_ns < quiet_since_ns
        while self.future and (self.future[0][0] <= horizon_ns or (quiet and (not self.t or self.t[-1] <= horizon_ns))):
            time_ns, value, arrival_ns = self.future.pop(0)
            refused += not self._append(time_ns, value, arrival_ns)
        return refused

    def _append(self, time_ns: int, value: float, arrival_ns: int) -> bool:
        if time_ns <= self.frozen_ns:
            self.late_refused += 1
            return False
        if not math.isfinite(value):
            # A failed poll is no reading: the interval from the last reading to the next one
            # is then judged as a whole, as a report judges it (it drops absent readings too).
            return True
        # A reading that cannot be is not a reading (core.energy), as in a report.
        if self.register:
            modulus = None if self.modulus is None else self.modulus * self.factor
            if policy.register_impossible(value * self.factor, modulus):
                self.register_refused += 1
                if self.register_refused == 1:
                    log.warning("%s", policy.register_refused_words(self.key, 1, int(time_ns), value * self.factor, modulus)
                                + " (logged once; counted on /metrics as puewatch_register_readings_refused_total)")
                return True
        elif policy.power_impossible(value * self.factor, self.limit()):
            self.power_refused += 1
            return True
        i = bisect.bisect_left(self.t, time_ns)
        if i < len(self.t) and self.t[i] == time_ns:
            self.v[i] = float(value)  # the last write at a time, as in the store
        else:
            self.t.insert(i, int(time_ns))
            self.v.insert(i, float(value))
        self.last_arrival_ns = max(self.last_arrival_ns, int(arrival_ns))
        return True

    def _add_rates(self, grid: np.ndarray, t: np.ndarray, x: np.ndarray, *, register: bool) -> None:
        """The intervals that end by the horizon feed the derived limit (later ones come back next step)."""
        m = int(np.searchsorted(t, grid[-1], side="right"))
        if m >= 2:
            self.rates.add(k.hourly_sums(t[:m], x[:m], register=register, max_interval_ns=policy.SHORT_INTERVAL_NS))

    def _note_uncertain_wraps(self, t: np.ndarray, delta: np.ndarray, done: np.ndarray, mod: float,
                              limit: policy.PowerLimit) -> None:
        """Count (and log, in a report's words) the intervals done this step whose register could
        have wrapped once more unseen: their energy is a lower bound, live as in a report."""
        i = policy.uncertain_wraps(t, delta, modulus_wh=mod, limit=limit, resolution_wh=self.resolution * self.factor)
        i = i[done[i]]
        if i.size:
            self.uncertain_wraps += int(i.size)
            log.warning("%s", policy.uncertain_wraps_warning(self.key, int(i.size), int(t[i[0]]), int(t[i[0] + 1]), mod,
                                                             limit))

    @property
    def watermark(self) -> int:
        return self.t[-1] if self.t else -1

    def cells(self, grid: np.ndarray, late_after_ns: int = -1 << 63) -> tuple[np.ndarray, bool]:
        """Energy (base unit) of each grid cell; NaN where not fully covered. Advances the anchor.
        Readings behind cells already written count as too late only after `late_after_ns` (a fresh
        start's first horizon, Pipeline.fresh_from: before it no cell was ever written)."""
        n_cells = grid.shape[0] - 1
        out = np.full(n_cells, np.nan)
        integrated = False
        # Readings whose intervals lie wholly in cells already written (a new stream's backlog: Telegraf's
        # buffer after a restart, a feeder stamping in the past) are too late, as a reading behind the frozen
        # one is: refused and counted, not run through the policy, whose outcome counts said "counted" for
        # energy in no cell (found by the collector fault audit). The last at or before the grid's start
        # stays: its interval crosses into these cells.
        stale = bisect.bisect_right(self.t, int(grid[0])) - 1
        if stale > 0:
            # (Those before a fresh start's first horizon, where no cell was ever written, are let go uncounted.)
            self.late_refused += stale - bisect.bisect_right(self.t, late_after_ns, 0, stale)
            del self.t[:stale]
            del self.v[:stale]
        if len(self.t) >= 2:
            t = np.asarray(self.t, dtype=np.int64)
            x = np.asarray(self.v, dtype=np.float64) * self.factor
            # Intervals that end after the horizon are processed again next step: count them then.
            done = t[1:] <= grid[-1]
            # The register-energy policy (core.energy), as in the reports: water's limit too (derived from its
            # own readings, no configured or rated one: core.site.Meter.limit_w), which live once left out.
            if self.register:
                limit = self.limit()
                mod = None if self.modulus is None else self.modulus * self.factor
                d = policy.register_energy(t, x, modulus_wh=mod, limit=limit, resolution_wh=self.resolution * self.factor)
                energy = d.delta
                if self.max_gap_ns > 0:
                    # An interval longer than the stream's max gap is a gap, as in a report (whose
                    # energy it counts as estimated): none of its cells is observed live, however
                    # many of them are still open when its second reading comes.
                    long = np.diff(t) > self.max_gap_ns
                    if long.any():
                        energy = np.where(long, np.nan, energy)
                for name, count in policy.outcome_counts(d.flags[done]).items():
                    self.outcomes[name] += count
                if mod is not None:
                    self._note_uncertain_wraps(t, d.delta, done, mod, limit)
                self._add_rates(grid, t, x, register=True)
            else:
                # (Power readings were checked against the limit as they came: `add`.)
                self._add_rates(grid, t, x, register=False)
                energy = k.integrate_power(t, x, max_gap_ns=self.max_gap_ns).energy_j
                integrated = True
            r = k.rebin_energy(t, energy, grid)
            ok = r.coverage >= FULL
            out[ok] = r.energy[ok]
            if not self.register:
                out /= self.integral_divisor
        # Keep the last reading at or before the horizon as the next anchor. It and the first reading
        # after the horizon (the end of the interval across it, whose part before the horizon is in
        # these cells) are frozen: no reading is taken at or before the later of the two.
        horizon = int(grid[-1])
        after = bisect.bisect_right(self.t, horizon)
        if self.t:
            self.frozen_ns = max(self.frozen_ns, self.t[min(after, len(self.t) - 1)])
        keep = max(after - 1, 0)
        del self.t[:keep]
        del self.v[:keep]
        return out, integrated


@dataclass
class _Level:
    """Cell history at one resolution: for every ratio, the jointly known numerator/denominator."""

    res_ns: int
    keep: int  # cells kept
    t_end: np.ndarray  # cell end times
    num: dict[str, np.ndarray]
    den: dict[str, np.ndarray]
    cov: dict[str, np.ndarray]


#: A stream's counts that /metrics shows per meter (besides its outcomes), kept when restart_meter ends it.
RETIRED_COUNTS = ("power_refused", "register_refused", "future_refused", "late_refused", "uncertain_wraps")


class Pipeline:
    """Per-interval energy and rolling ratios for one site. Not thread-safe: one caller."""

    def __init__(
        self,
        site: SiteModel,
        *,
        interval_ns: int = SECOND,
        windows_ns: Iterable[int] = (MINUTE, 15 * MINUTE, 3600 * SECOND, 86400 * SECOND, 30 * 86400 * SECOND),
        min_coverage: float = 0.9,
        settle_ns: int = 10 * SECOND,
        fine_max_ns: int = 2 * 3600 * SECOND,
        gpu_max_power_w: float = 2000.0,
        state_dir: str | os.PathLike | None = None,
        max_ahead_ns: int = 300 * SECOND,
    ) -> None:
        """`max_ahead_ns`: ingest's max_clock_skew_s (a line further ahead is not stored; 0: no limit). A
        reading up to that far ahead of its arrival is held until its time (see Stream.add), one further
        ahead refused."""
        if MINUTE % interval_ns:
            raise ValueError(f"interval: must divide one minute, got {interval_ns / SECOND} s")
        self.site = site
        self.interval = int(interval_ns)
        self.windows = sorted(int(w) for w in windows_ns)
        for w in self.windows:
            res = self.interval if w <= fine_max_ns else MINUTE
            if w % res:
                raise ValueError(f"window {format_window(w)} is not a whole number of {res // SECOND} s cells")
        self.min_coverage = float(min_coverage)
        self.settle = int(settle_ns)
        self.max_ahead = int(max_ahead_ns)
        self._now = 0  # the clock of the step being processed
        self.fine_max = int(fine_max_ns)
        self.gpu_max_power_w = gpu_max_power_w
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.streams: dict[str, Stream] = {}  # meter name -> stream
        # Meter name -> the counts of its streams that restart_meter ended (RETIRED_COUNTS, and "outcome:<name>"):
        # /metrics adds them to the running stream's, so a counter never falls in one process.
        self.retired: dict[str, dict[str, int]] = {}
        self.device_ratings: dict[str, dict[str, float]] = {}  # SNMP device -> its ratings (add_rating)
        self.gpu_streams: dict[tuple[str, str], Stream] = {}  # (node, gpu) -> stream
        self.horizon: int | None = None
        # A fresh start's first horizon: no cell before it was ever written, so a reading behind it that
        # comes late is no late reading (None: restored, or not started yet: cells were written before).
        self.fresh_from: int | None = None
        self.meter_names = sorted(site.meters)
        self._groups = self._build_groups()
        self._ratios = self._build_ratios()
        fine_keep = max([w for w in self.windows if w <= fine_max_ns] + [MINUTE]) // self.interval
        coarse_keep = max([w for w in self.windows if w > fine_max_ns] + [MINUTE]) // MINUTE
        self._fine = self._new_level(self.interval, fine_keep)
        self._coarse = self._new_level(MINUTE, coarse_keep)
        self._minute_acc: dict[str, list[float]] = {}
        self._minute_end: int | None = None
        self.refused = 0  # readings out of order
        # Ratios below their physical floor (core.floors.RATIO_FLOORS), left out: ratio -> count.
        self.below_floor: dict[str, int] = {}
        self._floor_logged: dict[str, int] = {}  # ratio -> horizon of the last warning
        # Ratios whose window was covered but whose denominator's energy was 0 or less (a frozen IT
        # register): they cannot be known, left out as in a report: ratio -> count.
        self.no_denominator: dict[str, int] = {}
        self._no_denominator_logged: dict[str, int] = {}
        self.cells_written = 0

    # ---- configuration -------------------------------------------------

    def _build_groups(self) -> dict[str, dict[str, float]]:
        s = self.site
        groups = {}
        for role in ROLES:
            members = s.members(role)
            if members:
                groups[role] = members
        for zone in s.zone_names():
            if s.members("it", zone):
                groups[f"zone:{zone}:boundary"] = s.boundary(zone)
                groups[f"zone:{zone}:it"] = s.members("it", zone)
        return groups

    def _build_ratios(self) -> dict[str, tuple[str, str, float]]:
        """name -> (numerator group, denominator group, denominator scale)."""
        g = self._groups
        ratios = {"pue": ("facility_input", "it", 1.0)}
        optional = {
            "clf": ("cooling", "it", 1.0),
            "plf": ("losses", "it", 1.0),
            "cop": ("heat_removed", "cooling", 1.0),
            "erf": ("reused_heat", "facility_input", 1.0),
            "ref": ("renewable", "facility_input", 1.0),
            "wue": ("water", "it", 1e-3),  # L per kWh of IT energy
        }
        for name, (num, den, scale) in optional.items():
            if num in g and den in g:
                ratios[name] = (num, den, scale)
        ratios["gpu_it_share"] = ("gpu", "it", 1.0)
        for zone in self.site.zone_names():
            if f"zone:{zone}:it" in g:
                ratios[f"zone:{zone}:ppue"] = (f"zone:{zone}:boundary", f"zone:{zone}:it", 1.0)
                ratios[f"zone:{zone}:gpu_it_share"] = (f"gpu:{zone}", f"zone:{zone}:it", 1.0)
        return ratios

    def _new_level(self, res_ns: int, keep: int) -> _Level:
        empty = np.empty(0)
        return _Level(
            res_ns,
            keep,
            np.empty(0, dtype=np.int64),
            {r: empty for r in self._ratios},
            {r: empty for r in self._ratios},
            {r: empty for r in self._ratios},
        )

    def stream_for_meter(self, meter: str, *, register: bool = False, factor: float = 1.0, modulus: float | None = None,
                         resolution: float = 0.0, max_gap_ns: int | None = None) -> Stream:
        """The stream of a configured meter, created on first use with how its values read."""
        st = self.streams.get(meter)
        if st is None:
            m = self.site.meters[meter]
            st = Stream(
                meter,
                register,
                factor=factor,
                modulus=modulus,
                max_power_w=m.limit_w,
                ratings=self.device_ratings.setdefault(m.device, {}) if m.device and not m.flows else {},
                resolution=resolution,
                max_gap_ns=max_gap_ns or self.settle,
                integral_divisor=m.integral_divisor,
            )
            self.streams[meter] = st
        return st

    def restart_meter(self, meter: str) -> None:
        """The meter's readings change kind (an SNMP meter's energy register answers where its power was read):
        its stream ends here and the next reading starts one of the new kind. The readings it held past the
        horizon are let go: those cells of the meter are missing, never energies of one kind read as the
        other's. Its counts live on (`retired`): a counter that fell to 0 here, inside one process, read on
        /metrics as a restart of the collector (found by the metrics audit)."""
        old = self.streams.pop(meter, None)
        if old is not None:
            kept = self.retired.setdefault(meter, {})
            for key, n in [*((f"outcome:{o}", n) for o, n in old.outcomes.items()),
                           *((name, getattr(old, name)) for name in RETIRED_COUNTS)]:
                kept[key] = kept.get(key, 0) + n

    # ---- input -----------------------------------------------------------

    def add_rating(self, device: str, reading: str, value: float) -> None:
        """A rating SNMP device `device` reported (`schema.SNMP_RATING_READINGS`): the largest so
        far is kept, as a report takes the largest over its period."""
        if math.isfinite(value) and value > 0:
            ratings = self.device_ratings.setdefault(device, {})
            if value > ratings.get(reading, 0.0):
                ratings[reading] = value

    def add_meter(self, meter: str, time_ns: int, value: float, arrival_ns: int, **how) -> None:
        if meter not in self.site.meters:
            raise KeyError(f"unknown meter {meter!r}")
        st = self.stream_for_meter(meter, **how)
        if not st.add(time_ns, value, arrival_ns, self.settle, self.max_ahead):
            self.refused += 1

    def add_gpu(self, node: str, gpu: str, time_ns: int, energy_mj: float, arrival_ns: int, *, estimated: bool = False) -> None:
        key = (node, gpu)
        st = self.gpu_streams.get(key)
        if st is None:
            # NVML counts mJ since the driver loaded (64-bit: no wrap); a drop is a driver reload.
            st = Stream(f"gpu:{node}:{gpu}", True, factor=1 / 3.6e6, max_power_w=self.gpu_max_power_w, resolution=1.0,
                        max_gap_ns=self.settle, estimated=estimated)
            self.gpu_streams[key] = st
            warning = self.site.node_zone_warning(node)
            if warning and sum(n == node for n, _ in self.gpu_streams) == 1:  # once a node, at its first GPU
                log.warning("pipeline: %s", warning)
        if not st.add(time_ns, energy_mj, arrival_ns, self.settle, self.max_ahead):
            self.refused += 1

    # ---- the step ----------------------------------------------------------

    def compute_horizon(self, now_ns: int) -> int:
        floor = now_ns - self.settle
        h = now_ns
        for st in list(self.streams.values()) + list(self.gpu_streams.values()):
            if st.last_arrival_ns >= floor and st.watermark >= 0:
                h = min(h, st.watermark)
        h = max(h, floor)
        return h - h % self.interval

    def step(self, now_ns: int) -> Batch:
        """Finalise the cells up to the horizon; returns the derived series (empty when no cell finished)."""
        h = self.compute_horizon(now_ns)
        if self.horizon is None:
            self.horizon = self.fresh_from = h
            return Batch()
        if h <= self.horizon:
            return Batch()
        grid = np.arange(self.horizon, h + 1, self.interval, dtype=np.int64)
        self.horizon = h
        self._now = now_ns
        return self._process(grid)

    def _process(self, grid: np.ndarray) -> Batch:
        n = grid.shape[0] - 1
        ends = grid[1:]
        out = Batch()
        for st in (*self.streams.values(), *self.gpu_streams.values()):
            self.refused += st.release(int(grid[-1]), self._now - self.settle)
        late_after_ns = self.fresh_from if self.fresh_from is not None else -1 << 63
        # 1. per-meter cell energies
        energy = np.full((len(self.meter_names), n), np.nan)
        for i, name in enumerate(self.meter_names):
            st = self.streams.get(name)
            if st is None:
                continue
            e, integrated = st.cells(grid, late_after_ns)
            energy[i] = e
            m = self.site.meters[name]
            out.add(*schema.meter_energy(self.site.name, name, m, integrated), ends, {schema.meter_energy_field(m.role): e})
        # 2. totals
        totals: dict[str, np.ndarray] = {}
        if self._groups:
            names = list(self._groups)
            coef = np.zeros((len(names), len(self.meter_names)))
            index = {m: i for i, m in enumerate(self.meter_names)}
            for gi, g in enumerate(names):
                for meter, c in self._groups[g].items():
                    coef[gi, index[meter]] = c
            gs = k.group_sums(energy, coef)
            totals = {g: gs.total[gi] for gi, g in enumerate(names)}
        gpu_by_node: dict[str, np.ndarray] = {}
        for (node, _gpu), st in sorted(self.gpu_streams.items()):
            e, _ = st.cells(grid, late_after_ns)
            gpu_by_node[node] = gpu_by_node[node] + e if node in gpu_by_node else e
        if gpu_by_node:
            totals["gpu"] = np.sum(np.vstack(list(gpu_by_node.values())), axis=0)
            for zone in self.site.zone_names():
                members = [e for node, e in gpu_by_node.items() if self.site.zone_of_node(node) == zone]
                if members:
                    totals[f"gpu:{zone}"] = np.sum(np.vstack(members), axis=0)
        for node, e in gpu_by_node.items():
            out.add(*schema.gpu_energy(self.site.name, node, self.site.zone_of_node(node)), ends, {schema.ENERGY_WH: e})
        # The ratios' jointly known sides per cell (the history below, and the stored joint fields).
        nan = np.full(n, np.nan)
        joint = {}
        for r, (num, den, scale) in self._ratios.items():
            a = totals.get(num, nan)
            b = totals.get(den, nan) * scale
            ok = np.isfinite(a) & np.isfinite(b)
            joint[r] = (np.where(ok, a, 0.0), np.where(ok, b, 0.0), ok.astype(np.float64))

        def known(r: str, names: tuple[str, str, str]) -> dict[str, np.ndarray]:
            # A ratio's sides where both are known, and the cell's length there; absent (NaN) elsewhere.
            a, b, ok = joint[r]
            return {names[0]: np.where(ok > 0, a, np.nan), names[1]: np.where(ok > 0, b, np.nan),
                    names[2]: np.where(ok > 0, self.interval / 1e9, np.nan)}

        out.add(*schema.site_energy(self.site.name, self.site.category), ends,
                {**{schema.site_energy_field(g): v for g, v in totals.items() if ":" not in g},
                 **known("pue", (schema.PUE_FACILITY_WH, schema.PUE_IT_WH, schema.PUE_KNOWN_S))})
        for zone in self.site.zone_names():
            b = totals.get(f"zone:{zone}:boundary")
            if b is None:
                continue
            fields = {schema.ZONE_BOUNDARY_WH: b, schema.ZONE_IT_WH: totals[f"zone:{zone}:it"],
                      schema.ZONE_GPU_WH: totals.get(f"gpu:{zone}")}
            if f"zone:{zone}:ppue" in joint:
                fields.update(known(f"zone:{zone}:ppue", (schema.PPUE_BOUNDARY_WH, schema.PPUE_IT_WH,
                                                          schema.PPUE_KNOWN_S)))
            out.add(*schema.zone_energy(self.site.name, zone), ends, fields)
        # 3. history and rolling ratios
        self._append(self._fine, ends, joint)
        self._rolling(out, self._fine, [w for w in self.windows if w <= self.fine_max], n)
        n_minutes = self._roll_minutes(ends, joint)
        if n_minutes:
            self._rolling(out, self._coarse, [w for w in self.windows if w > self.fine_max], n_minutes)
        self.cells_written += n
        return out

    def _append(self, level: _Level, ends: np.ndarray, joint: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                *, windows_for_each: bool = True) -> None:
        # The longest window's cells before each new cell: the new ones' windows all need them (with only
        # `keep` kept, a step that wrote several cells gave all but its last a shorter longest window: found by
        # the live-PUE audit). The next append trims back to what its cells need. Cells no window is computed
        # for (a restart's missing ones, catch_up) keep the longest window alone: a long downtime's are not kept.
        keep = level.keep + (ends.shape[0] if windows_for_each else 0) + 1
        level.t_end = np.concatenate([level.t_end, ends])[-keep:]
        for r, (a, b, c) in joint.items():
            level.num[r] = np.concatenate([level.num[r], a])[-keep:]
            level.den[r] = np.concatenate([level.den[r], b])[-keep:]
            level.cov[r] = np.concatenate([level.cov[r], c])[-keep:]

    def _roll_minutes(self, ends: np.ndarray, joint, *, windows_for_each: bool = True) -> int:
        """Sum fine cells into whole minutes; returns how many minutes completed."""
        done_t = []
        done = {r: ([], [], []) for r in joint}
        for j, t in enumerate(ends):
            minute_end = int(t) + (-int(t)) % MINUTE
            if self._minute_end is not None and minute_end != self._minute_end:
                self._close_minute(done_t, done)
            if self._minute_end != minute_end:
                self._minute_end = minute_end
                self._minute_acc = {r: [0.0, 0.0, 0.0] for r in joint}
            for r, (a, b, c) in joint.items():
                acc = self._minute_acc[r]
                acc[0] += a[j]
                acc[1] += b[j]
                acc[2] = min(1.0, acc[2] + c[j] * self.interval / MINUTE)  # rounding must not pass 1
            if int(t) == minute_end:
                self._close_minute(done_t, done)
                self._minute_end = None
        if done_t:
            self._append(
                self._coarse,
                np.asarray(done_t, dtype=np.int64),
                {r: tuple(np.asarray(x) for x in v) for r, v in done.items()},
                windows_for_each=windows_for_each,
            )
        return len(done_t)

    def _close_minute(self, done_t, done) -> None:
        done_t.append(self._minute_end)
        for r, acc in self._minute_acc.items():
            for x, v in zip(done[r], acc):
                x.append(v)

    def _rolling(self, out: Batch, level: _Level, windows: list[int], n_new: int) -> None:
        """Add the rolling ratios of the `n_new` newest cells of `level` to `out`."""
        if not windows or level.t_end.shape[0] == 0:
            return
        t_end = level.t_end
        bounds = np.concatenate([[t_end[0] - level.res_ns], t_end])
        n_new = min(n_new, t_end.shape[0])
        category = str(self.site.category)
        # Only the last cells are new; compute over what the longest window needs.
        for w in windows:
            need = w // level.res_ns + n_new
            s = max(0, t_end.shape[0] - need)
            values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for r in self._ratios:
                rr = k.rolling_ratio(
                    bounds[s:],
                    level.num[r][s:],
                    level.den[r][s:],
                    np.array([w], dtype=np.int64),
                    min_coverage=self.min_coverage,
                    numerator_coverage=level.cov[r][s:],
                    denominator_coverage=level.cov[r][s:],
                )
                wtag = format_window(w)
                cov = rr.coverage[0, -n_new:]
                # Unknown for its denominator before the floor takes its own: a ratio under its
                # floor is counted as that, not as a denominator of 0 or less.
                self._count_no_denominator(r, rr.ratio[0, -n_new:], cov, wtag)
                ratio = self._floored(r, rr.ratio[0, -n_new:], wtag)
                values[r] = (ratio, cov)
            ends = t_end[-n_new:]
            fields: dict[str, np.ndarray] = {}
            zfields: dict[str, dict[str, np.ndarray]] = {}
            for r, (ratio, cov) in values.items():
                if r.startswith("zone:"):
                    _, z, name = r.split(":", 2)
                    zfields.setdefault(z, {}).update({name: ratio, schema.coverage_field(name): cov})
                else:
                    fields.update({r: ratio, schema.coverage_field(r): cov})
            out.add(*schema.pue(self.site.name, wtag, category), ends, fields)
            for z in self.site.zone_names():
                if z in zfields:
                    out.add(*schema.ppue(self.site.name, z, wtag), ends, zfields[z])

    def _floored(self, ratio: str, values: np.ndarray, window: str) -> np.ndarray:
        """`values` with those below the ratio's physical floor made NaN (never published), counted
        and warned about (at most once an hour per ratio), naming the meters behind it."""
        low = values < policy.floor_of(ratio)
        n = int(np.count_nonzero(low))
        if not n:
            return values
        if self._count_hourly(self.below_floor, self._floor_logged, ratio, n):
            num, den, _ = self._ratios[ratio]
            log.warning("%s over %s would be %.6g, below its physical floor %g: not published (%d so far). "
                        "Numerator meters: %s; denominator meters: %s. Check these meters (a frozen or reset "
                        "register, a wrong role or coefficient)", ratio, window, float(values[low][0]),
                        policy.floor_of(ratio), self.below_floor[ratio], ", ".join(self._group_meters(num)) or "none",
                        ", ".join(self._group_meters(den)) or "none")
        return np.where(low, np.nan, values)

    def _count_no_denominator(self, ratio: str, values: np.ndarray, cov: np.ndarray, window: str) -> None:
        """Count (and warn about, at most once an hour per ratio) the windows covered well enough whose
        ratio is still unknown: its denominator's energy was 0 or less, as a report says of its period."""
        unknown = np.isnan(values) & (cov >= self.min_coverage)
        n = int(np.count_nonzero(unknown))
        if not n:
            return
        if self._count_hourly(self.no_denominator, self._no_denominator_logged, ratio, n):
            _, den, _ = self._ratios[ratio]
            log.warning("%s over %s cannot be known: its denominator's energy is 0 or less: not published (%d so far). "
                        "Denominator meters: %s. Check these meters (a frozen register, a wrong role or coefficient)",
                        ratio, window, self.no_denominator[ratio], ", ".join(self._group_meters(den)) or "none")

    def _count_hourly(self, counts: dict[str, int], logged: dict[str, int], ratio: str, n: int) -> bool:
        """Add `n` to `counts[ratio]`; True when it is to be logged now (at most once an hour of cells per ratio)."""
        counts[ratio] = counts.get(ratio, 0) + n
        last = logged.get(ratio)
        if self.horizon is None or (last is not None and self.horizon - last < 3600 * SECOND):
            return False
        logged[ratio] = self.horizon
        return True

    def _group_meters(self, group: str) -> list[str]:
        if group.startswith("gpu"):
            return [f"gpu:{node}" for node, _ in sorted(self.gpu_streams)]
        return sorted(self._groups.get(group, {}))

    # ---- latest values (for /metrics and status) --------------------------------

    def latest(self, ratio: str = "pue", window_ns: int | None = None) -> tuple[float, float]:
        """The most recent (ratio, coverage) for a window (default the shortest)."""
        w = window_ns or self.windows[0]
        level = self._fine if w <= self.fine_max else self._coarse
        if level.t_end.shape[0] == 0:
            return math.nan, 0.0
        need = w // level.res_ns
        s = max(0, level.t_end.shape[0] - need)
        bounds = np.concatenate([[level.t_end[0] - level.res_ns], level.t_end])
        rr = k.rolling_ratio(bounds[s:], level.num[ratio][s:], level.den[ratio][s:], np.array([w]),
                             min_coverage=self.min_coverage, numerator_coverage=level.cov[ratio][s:],
                             denominator_coverage=level.cov[ratio][s:])
        value = float(rr.ratio[0, -1])
        if value < policy.floor_of(ratio):
            value = math.nan  # below its physical floor: never published (counted in _floored)
        return value, float(rr.coverage[0, -1])

    # ---- checkpoint -------------------------------------------------------------

    def _fingerprint(self) -> str:
        return json.dumps({"ratios": sorted(self._ratios), "interval": self.interval, "windows": self.windows}, sort_keys=True)

    def save(self) -> None:
        """Write the rolling history atomically to the state directory."""
        if self.state_dir is None or self.horizon is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        arrays = {"horizon": np.array([self.horizon], dtype=np.int64)}
        for name, level in (("fine", self._fine), ("coarse", self._coarse)):
            arrays[f"{name}.t_end"] = level.t_end
            for r in self._ratios:
                arrays[f"{name}.num.{r}"] = level.num[r]
                arrays[f"{name}.den.{r}"] = level.den[r]
                arrays[f"{name}.cov.{r}"] = level.cov[r]
        if self._minute_end is not None:
            arrays["minute_end"] = np.array([self._minute_end], dtype=np.int64)
            for r, acc in self._minute_acc.items():
                arrays[f"minute.{r}"] = np.asarray(acc)
        arrays["fingerprint"] = np.frombuffer(self._fingerprint().encode(), dtype=np.uint8)
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".pipeline-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_dir / "pipeline.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def restore(self) -> bool:
        """Rebuild the rolling history from the last checkpoint; False when there is none that fits."""
        if self.state_dir is None:
            return False
        path = self.state_dir / "pipeline.npz"
        if not path.exists():
            return False
        try:
            with np.load(path) as z:
                if bytes(z["fingerprint"]).decode() != self._fingerprint():
                    log.warning("%s: the site's meters, interval or windows changed; rolling history starts afresh", path)
                    return False
                for name, level in (("fine", self._fine), ("coarse", self._coarse)):
                    level.t_end = z[f"{name}.t_end"]
                    for r in self._ratios:
                        level.num[r] = z[f"{name}.num.{r}"]
                        level.den[r] = z[f"{name}.den.{r}"]
                        level.cov[r] = z[f"{name}.cov.{r}"]
                if "minute_end" in z:
                    self._minute_end = int(z["minute_end"][0])
                    self._minute_acc = {r: [float(x) for x in z[f"minute.{r}"]] for r in self._ratios}
                self.horizon = int(z["horizon"][0])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable checkpoint (%s); rolling history starts afresh", path, exc)
            return False
        return True

    def catch_up(self, now_ns: int) -> None:
        """After a restore: the cells between the checkpoint and now are missing (no data), not skipped."""
        if self.horizon is None:
            return
        h = now_ns - self.settle
        h -= h % self.interval
        if h - self.horizon > self.windows[-1]:
            # Down for longer than the longest window: nothing of the history is still in a window.
            self._fine = self._new_level(self._fine.res_ns, self._fine.keep)
            self._coarse = self._new_level(MINUTE, self._coarse.keep)
            self._minute_end = None
            self.horizon = h
        elif h > self.horizon:
            gap = (h - self.horizon) // self.interval
            # Missing cells go into the history as uncovered; nothing is written for them.
            grid = np.arange(self.horizon, h + 1, self.interval, dtype=np.int64)
            ends = grid[1:]
            zeros = np.zeros(gap)
            joint = {r: (zeros, zeros, zeros) for r in self._ratios}
            self._append(self._fine, ends, joint, windows_for_each=False)
            self._roll_minutes(ends, joint, windows_for_each=False)
            self.horizon = h


def compile_kernels() -> None:
    """Run every kernel the pipeline uses once on a few values, so that Numba compiles them
    (or loads them from its cache, NUMBA_CACHE_DIR) now rather than in the first step.

    Compiling takes tens of seconds on a cold cache (45 s on an AMD EPYC vCPU, 2026-12, most of it the
    rolling ratios' windows; 0.5 s from the cache), holding the GIL: the collector calls this before it starts polling and serving ingest, so no
    SNMP poll or ingest request waits on a compilation.
    """
    t = np.arange(5, dtype=np.int64) * 1_000_000_000
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    d = k.register_deltas(t, x, modulus=2.0**32, resolution=1.0, reset_from_zero=False,
                          max_power_w=1e6, joules_per_unit=3600.0)
    e = k.integrate_power(t, x, max_gap_ns=2_000_000_000).energy_j
    r = k.rebin_energy(t, d.delta, t[::2])
    k.group_sums(np.vstack([e, e]), np.ones((1, 2)))
    k.hourly_sums(t, x, register=True, max_interval_ns=2_000_000_000)
    k.rolling_ratio(t, e, e, np.array([2_000_000_000]), min_coverage=0.5, numerator_coverage=np.ones(4),
                    denominator_coverage=np.ones(4))
    del r


def unit_factor(unit: str) -> float:
    return UNITS[unit][1]
