"""Polling SNMP meters: one asyncio task per device, on a fixed-rate schedule.

A `Meter` is one device's session: on (re)connect it reads sysDescr and
sysObjectID, picks the profile (named in the config, else the best match for
the sysObjectID whose `requires_any` subtrees exist), and discovers the table
rows (GETBULK walks of the columns, the row filters, the per-row scale
columns). A poll is then one GET of every value OID (split into requests of
`max_varbinds`), turned into `Reading`s: sentinels, absent objects and
`valid_if` failures become NaN, never 0 (a `valid_if` column that the agent
does not have at all leaves the value as it is).

The `Poller` runs every device in its own task: each has its own interval,
timeout and retries, so a slow or dead device only delays itself. Poll slots
are `start + k * interval` (no drift). A poll, connecting and walking included,
is cut off at `POLL_SHARE` of the interval, so a dead or slow device cannot
stretch its own cycle either; should a slot still be overrun (a stalled event
loop), the slots it covered are skipped and each is still reported (NaN, with
the reason). A failing device is logged once, with the count of failed polls
when it answers again. `on_poll(device, time_ns, readings, error)` is called once per device
per slot; on any failure the readings are NaN and `error` (a `PollError`) says why, with its
kind in `error.cause`, and the next slot reconnects (sysObjectID, discovery).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from puewatch.collector.snmp import profiles as pf
from puewatch.collector.snmp.client import SnmpClient, SnmpError, Value
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.validate import NO_VALUE_REASONS, Refusal, absent, check_apparent, check_value, number_of
from puewatch import config as cfg
from puewatch.core import schema
from puewatch.errors import ConfigError

log = logging.getLogger("puewatch.collector.snmp")

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"

NAN = math.nan

# A poll gets this share of its device's interval, whatever it does (tries x timeout,
# discovery walks): the rest is margin for reporting it and for a busy event loop, so
# the next slot is never overrun by a device that does not answer.
POLL_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class Reading:
    device: str  # device name from the collector config
    name: str  # profile reading name, e.g. "total_active_power", "inlet1_active_energy"
    quantity: str  # active_power | active_energy | apparent_power | ...
    kind: str  # "gauge" or "register" (cumulative, may wrap at `modulus` or be reset)
    unit: str  # "W" or "Wh" for power and energy (always converted), else the profile's unit
    oid: str
    raw: int | float | None  # as received; None when absent/noSuchInstance/error
    value: float  # raw * scale in `unit`; NaN when missing, unsupported (-1 etc.) or invalid
    modulus: float | None  # register wrap modulus in `unit` (e.g. 2**32 * scale), None for gauges
    time_ns: int  # when the response arrived
    refused: Refusal | None = None  # why the answered value is not a reading (`validate.check_value`)
    location: str = ""  # where it sits at the device (`profiles.LOCATIONS`); "" for a configured OID
    absent: bool = False  # a row of a table, found at discovery, that answered "no such instance" now
    # "estimated": the device derives it (the profile's `status`: e.g. watts from a configured voltage x
    # measured current); a total is estimated where a row it sums is.
    status: str = "measured"


OnPoll = Callable[[str, int, list[Reading], "PollError | None"], "None | Awaitable[None]"]


# Polls a discovered row may answer "no such instance" before its table is walked again.
ABSENT_POLLS_BEFORE_WALK = 5


@dataclass(slots=True)
class _Row:
    """One polled object: a scalar or one row of a column, with its scale fixed at discovery."""

    spec: pf.ReadingSpec
    index: str
    oid: str
    name: str
    factor: float  # spec.scale x per-row factors (NaN if a per-row scale could not be read)
    valid_oid: str | None
    apparent_oids: tuple[str, str] | None = None  # the row's voltage and current (spec.apparent_check)


def _number(raw: Value) -> float | None:
    """A raw value as a number (NaN and infinities included: `check_value` refuses them), or None
    (absent, or text that is not a number: `validate.number_of`)."""
    return number_of(raw)[0]


def _int(raw: Value) -> int | None:
    x = _number(raw)
    return int(x) if x is not None and math.isfinite(x) and x == int(x) else None


class Meter:
    """One device: connect (identify, choose the profile, discover rows) and poll."""

    def __init__(self, device: SnmpDevice, profiles: dict[str, pf.Profile], engine=None) -> None:
        self.device = device
        self.profiles = profiles
        if device.profile and device.profile not in profiles:
            known = ", ".join(sorted(profiles))
            raise ConfigError(f"device {device.name!r}: unknown profile {device.profile!r}; profiles: {known}")
        self.client = SnmpClient(device, engine)
        self.sys_descr: str | None = None
        self.sys_object_id: str | None = None
        self.profile: pf.Profile | None = self._configured_profile()
        self.rows: list[_Row] | None = None
        self.connected = False
        self._discovered_at = 0.0
        self._rediscover = False
        self._refusals_logged: set[tuple[str, str]] = set()  # (reading, reason): each is logged once
        # Rows found at discovery that answer "no such instance" now: row name -> polls in a row. A row away
        # for one poll is a glitch (its table walked at once lost it for an hour, and the device's total
        # read half: found by the SNMP audit); one away for ABSENT_POLLS_BEFORE_WALK polls, a table change.
        self.absent: dict[str, int] = {}
        # Rows a walk found gone (away ABSENT_POLLS_BEFORE_WALK polls in a row): the table is walked again after
        # as many polls, then twice as many, and so on up to rediscover_s, so that a row back after a longer
        # outage is read again within polls (it waited for the next rediscovery, an hour: found by the SNMP
        # operator audit).
        self.gone: set[str] = set()
        self._gone_walk_polls = 0  # polls after a walk before the next one while rows are gone (0: none gone)
        self._polls_since_walk = 0
        self.absent_polls = 0  # polls of absent rows, counted (/metrics)
        # Table rows the latest discovery found whose index lacks a component the reading's name uses: not read,
        # counted (/metrics), logged once each ((reading key, index)).
        self.rows_refused = 0
        self._rows_refused_logged: set[tuple[str, str]] = set()
        self._unnamed: set[str] = set()  # keys of the readings with rows refused so (their totals are missing)

    def _configured_profile(self) -> pf.Profile | None:
        name = self.device.profile
        if not name:
            return None
        base = self.profiles[name]
        return pf.generic_profile(base, self.device.oids) if base.profile.generic else base

    # --- connect ---------------------------------------------------------

    async def connect(self) -> None:
        """Identify the device, choose its profile, discover rows. Raises SnmpError."""
        self.connected = False
        descr, oid = await self.client.get([SYS_DESCR, SYS_OBJECT_ID])
        self.sys_descr = descr if isinstance(descr, str) else None
        self.sys_object_id = pf.sys_object_id(oid)
        if not self.device.profile:
            self.profile = await self._match()
        await self.discover()
        self.connected = True

    async def _match(self) -> pf.Profile:
        soid = self.sys_object_id or ""
        for cand in pf.candidates(self.profiles, soid):
            if cand.profile.generic:
                continue
            if not cand.match.requires_any:
                return cand
            for subtree in cand.match.requires_any:
                if await self.client.exists(subtree):
                    return cand
        raise SnmpError(
            f"{self.device.address}: no meter profile matches sysObjectID {soid or '(none)'} "
            f"({(self.sys_descr or '').strip()[:60]!r}); name one with `profile` (or --profile)"
        )

    async def discover(self) -> None:
        """Find the rows of every reading: walk the columns, apply the filters, read the per-row scales."""
        assert self.profile is not None
        walks: dict[str, dict[str, Value]] = {}

        async def walk(column: str) -> dict[str, Value]:
            if column not in walks:
                walks[column] = dict(await self.client.walk(column))
            return walks[column]

        rows: list[_Row] = []
        self.rows_refused = 0
        self._unnamed = set()
        for spec in self.profile.readings:
            if spec.oid:
                rows.append(_Row(spec, "", spec.oid, spec.name_for(""), spec.scale, None))
                continue
            indices = [idx for idx, v in (await walk(spec.column)).items() if v is not None]
            indices = [idx for idx in indices if _index_ok(spec, idx)]
            for flt in spec.where:
                if not indices:
                    break
                if not flt.via:
                    col = await walk(flt.column)
                    indices = [idx for idx in indices if flt.keeps(_int(col.get(idx)))]
                else:
                    pointers = await self.client.get([f"{flt.via}.{idx}" for idx in indices])
                    targets = sorted({p for p in (_int(x) for x in pointers) if p is not None and p > 0})
                    tvals = dict(zip(targets, await self.client.get([f"{flt.column}.{t}" for t in targets])))
                    indices = [
                        idx for idx, p in zip(indices, pointers) if _int(p) is not None and flt.keeps(_int(tvals.get(_int(p))))
                    ]
            if spec.label_column and indices:
                pattern = re.compile(spec.label_match)
                labels = await self.client.get([f"{spec.label_column}.{idx}" for idx in indices])
                indices = [idx for idx, t in zip(indices, labels) if isinstance(t, str) and pattern.search(t)]
            factors = [spec.scale] * len(indices)
            if spec.unit_column and indices:
                # A variable table: rows in other units are other variables, not this reading.
                units = await self.client.get([f"{spec.unit_column}.{idx}" for idx in indices])
                kept = [(idx, f * spec.units[u.strip()]) for idx, f, u in zip(indices, factors, units)
                        if isinstance(u, str) and u.strip() in spec.units]
                indices, factors = [k[0] for k in kept], [k[1] for k in kept]
            for column, fn in (
                (spec.entity_scale_column, pf.entity_scale_factor),
                (spec.entity_precision_column, lambda p: 1.0 / pf.entity_precision_divisor(p)),
                (spec.decimal_digits_column, lambda d: 1.0 / pf.decimal_digits_divisor(d)),
                (spec.signed_factor_column, pf.signed_factor),
            ):
                if not column or not indices:
                    continue
                got = await self.client.get([f"{column}.{idx}" for idx in indices])
                for i, g in enumerate(got):
                    n = _int(g)
                    try:
                        factors[i] *= fn(n) if n is not None else NAN
                    except ValueError:
                        factors[i] = NAN
            for idx, f in zip(indices, factors):
                try:
                    name = spec.name_for(idx)
                except pf.IndexTooShort as exc:
                    self._refuse_row(spec, idx, exc)
                    continue
                gate = spec.valid_if or spec.zero_valid_if
                valid = f"{gate.column}.{idx}" if gate else None
                ac = spec.apparent_check
                volts_amps = (f"{ac.voltage}.{idx}", f"{ac.current}.{idx}") if ac else None
                rows.append(_Row(spec, idx, f"{spec.column}.{idx}", name, f, valid, volts_amps))
        self.rows = rows
        self._discovered_at = time.monotonic()
        self._rediscover = False
        names = {r.name for r in rows}
        back = sorted(self.gone & names)
        for name in back:
            log.warning("device %s: %s is back in its table: it is read again", self.device.name, name)
        self.gone -= names
        went = [n for n in self.absent if n not in names]
        for name in went:
            del self.absent[name]
            self.gone.add(name)
            log.warning("device %s: %s is gone from its table (walked again after it stayed away): it is not read "
                        "while it is gone, and the totals are those of the rows that remain; the table is walked "
                        "again after %d polls, then after twice as many, to find it if it comes back",
                        self.device.name, name, ABSENT_POLLS_BEFORE_WALK)
        if not self.gone:
            self._gone_walk_polls = 0
        elif went or back or not self._gone_walk_polls:
            self._gone_walk_polls = ABSENT_POLLS_BEFORE_WALK
        else:
            most = self.device.rediscover_s / self.device.interval_s if self.device.rediscover_s > 0 else float("inf")
            self._gone_walk_polls = max(ABSENT_POLLS_BEFORE_WALK, min(2 * self._gone_walk_polls, int(most)))
        self._polls_since_walk = 0

    def _refuse_row(self, spec: pf.ReadingSpec, index: str, why: pf.IndexTooShort) -> None:
        """A row that the profile cannot name (its index lacks a component the name uses): not read, counted,
        logged once per row. Named with the placeholder left in, every such row had one name, and their
        values were one series (found by an outside audit)."""
        self.rows_refused += 1
        self._unnamed.add(spec.key)
        key = (spec.key, index)
        if key in self._rows_refused_logged:
            return
        self._rows_refused_logged.add(key)
        assert self.profile is not None
        log.warning("device %s: profile %r: %s (%s.%s): the row is not read, and the device totals that sum this reading "
                    "are missing; fix the profile's name template "
                    "(or its index_parts) for this table", self.device.name, self.profile.name, why, spec.column, index)

    # --- poll ----------------------------------------------------------------

    def due_for_discovery(self) -> bool:
        every = self.device.rediscover_s
        return (self._rediscover or (every > 0 and time.monotonic() - self._discovered_at >= every)
                or 0 < self._gone_walk_polls <= self._polls_since_walk)

    async def poll(self) -> list[Reading]:
        """One poll (connecting first when needed). Raises SnmpError; the caller reports NaN readings."""
        try:
            if not self.connected:
                await self.connect()
            elif self.due_for_discovery():
                await self.discover()
            assert self.rows is not None
            oids: list[str] = []
            pos: dict[str, int] = {}
            for row in self.rows:
                for o in (row.oid, row.valid_oid, *(row.apparent_oids or ())):
                    if o and o not in pos:
                        pos[o] = len(oids)
                        oids.append(o)
            answered: dict[str, str] = {}
            values = await self.client.get(oids, answered)
            self._polls_since_walk += 1
        except SnmpError:
            self.connected = False
            raise
        t_ns = time.time_ns()
        return self.evaluate([values[pos[r.oid]] for r in self.rows], [values[pos[r.valid_oid]] if r.valid_oid else None for r in self.rows], t_ns,
                             answered, [tuple(values[pos[o]] for o in r.apparent_oids) if r.apparent_oids else None
                                        for r in self.rows])

    def evaluate(self, raws: Sequence[Value], valids: Sequence[Value], t_ns: int,
                 answered: dict[str, str] | None = None, volts_amps: Sequence[tuple[Value, ...] | None] | None = None
                 ) -> list[Reading]:
        """Readings (rows then totals) from the raw values of `self.rows`; `answered`: what the agent said
        instead of a value, by OID (`SnmpClient.get`); `volts_amps`: each row's voltage and current where its
        spec checks its power against them (`apparent_check`)."""
        assert self.rows is not None and self.profile is not None
        dev = self.device.name
        out: list[Reading] = []
        by_key: dict[str, list[Reading]] = {}
        for n_row, (row, raw, valid) in enumerate(zip(self.rows, raws, valids)):
            spec = row.spec
            if getattr(valid, "snmp_type", None) is not None:
                # A status or load column that answered no number of any type (NULL: the cxc UPS's
                # upsOutputPercentLoad) says nothing about the row, as one the agent has not got.
                valid = None
            x, refused = number_of(raw)
            if raw is None:
                refused = absent(row.oid, (answered or {}).get(row.oid))
            if raw is None and row.index:
                self._note_absent(row)  # logged there, as a row away
            elif self.absent.pop(row.name, None) is not None:
                log.info("device %s: %s (%s) answers again", self.device.name, row.name, row.oid)
            if refused is not None:
                value = NAN  # (text that is not a number: an impossible value, not an absent row)
                if not (raw is None and row.index):
                    self._log_refusal(row, raw, refused)
            elif x is None:
                value = NAN
            elif spec.valid_if is not None and valid is not None and not spec.valid_if.keeps(_int(valid)):
                # (An agent without the column at all (no such object) says nothing about the
                # row: its value counts. Captures often hold only the value columns.) The device says
                # the value is not available, as a filler does: counted and shown as such, and left
                # out of the totals (found by the SNMP audit: a sensor unavailable(2) was counted nowhere).
                value = NAN
                refused = Refusal("unavailable", f"{row.valid_oid} is {_int(valid)}: the device says the value is not "
                                                 "available (profile: valid_if)")
                self._log_refusal(row, raw, refused)
            elif x == 0 and spec.zero_valid_if is not None and valid is not None \
                    and not spec.zero_valid_if.keeps(_int(valid)):
                value = NAN
                # Not a filler left out of a total: the row is loaded, so a total without it would understate.
                refused = Refusal("not_measured", f"raw 0 where {row.valid_oid} is {_int(valid)}: not measured "
                                                  "(profile: zero_valid_if)")
                self._log_refusal(row, raw, refused)
            else:
                value, refused = check_value(spec, x, row.factor, self.profile.profile.max_power_w)
                if refused is None and spec.apparent_check is not None and volts_amps and volts_amps[n_row]:
                    volts, amps = volts_amps[n_row]
                    refused = check_apparent(spec.apparent_check, value, _number(volts), _number(amps))
                    if refused is not None:
                        value = NAN
                if refused is not None:
                    self._log_refusal(row, raw, refused)
            raw_out: int | float | None = raw if isinstance(raw, int) else x + 0.0 if x is not None and math.isfinite(x) else None
            modulus = spec.modulus_raw * row.factor if spec.modulus_raw is not None and math.isfinite(row.factor) else None
            r = Reading(dev, row.name, spec.quantity, spec.kind, spec.unit, row.oid, raw_out, value, modulus, t_ns, refused,
                        spec.location, absent=raw is None and bool(row.index), status=spec.status)
            out.append(r)
            by_key.setdefault(spec.key, []).append(r)
        for total in self.profile.totals:
            out.append(_total(dev, total, self.profile, by_key, t_ns, self._unnamed))
        return out

    def _note_absent(self, row: _Row) -> None:
        """A row of a table that answered "no such instance": counted; logged as it goes; the table walked
        again only once it stays away (a walk while it is away would drop it until the next one)."""
        n = self.absent[row.name] = self.absent.get(row.name, 0) + 1
        self.absent_polls += 1
        if n == 1:
            log.warning("device %s: %s (%s) answered no such instance: it is missing, and so are the totals it "
                        "is part of, while it is away (the table is walked again if it stays away %d polls)",
                        self.device.name, row.name, row.oid, ABSENT_POLLS_BEFORE_WALK)
        if n == ABSENT_POLLS_BEFORE_WALK:
            self._rediscover = True

    def _log_refusal(self, row: _Row, raw: Value, refused: Refusal) -> None:
        """Once per reading and reason: a device that keeps answering -1 must not fill the log."""
        if (row.name, refused.reason) in self._refusals_logged:
            return
        self._refusals_logged.add((row.name, refused.reason))
        # A declared filler or an absent object is the device saying "no value"; the other reasons are a broken answer.
        level = logging.INFO if refused.reason in NO_VALUE_REASONS else logging.WARNING
        log.log(level, "device %s: %s (%s = %r) refused: %s; it is recorded as missing (logged once)",
                self.device.name, row.name, row.oid, raw, refused.text)

    def failed(self, t_ns: int) -> list[Reading]:
        """NaN readings for a failed poll: every known row and total (scalars and totals before the first discovery)."""
        dev = self.device.name
        if self.rows is not None and self.profile is not None:
            out = [
                Reading(dev, r.name, r.spec.quantity, r.spec.kind, r.spec.unit, r.oid, None, NAN, None, t_ns, location=r.spec.location)
                for r in self.rows
            ]
            return out + [_total(dev, t, self.profile, {}, t_ns) for t in self.profile.totals]
        if self.profile is not None:
            # Not discovered yet: the scalar readings are known without walking anything.
            out = [
                Reading(dev, s.name_for(""), s.quantity, s.kind, s.unit, s.oid, None, NAN, None, t_ns)
                for s in self.profile.readings
                if s.oid
            ]
            return out + [_total(dev, t, self.profile, {}, t_ns) for t in self.profile.totals]
        return [
            Reading(dev, "total_active_power", "active_power", "gauge", "W", "", None, NAN, None, t_ns),
            Reading(dev, "total_active_energy", "active_energy", "register", "Wh", "", None, NAN, None, t_ns),
        ]

    def close(self) -> None:
        self.client.close()


def _index_ok(spec: pf.ReadingSpec, index: str) -> bool:
    parts = index.split(".")
    for flt in spec.index_filter:
        i = flt.position - 1 if flt.position > 0 else len(parts) + flt.position
        if not 0 <= i < len(parts) or int(parts[i]) not in flt.values:
            return False
    return True


def _total(dev: str, total: pf.TotalSpec, profile: pf.Profile, by_key: dict[str, list[Reading]], t_ns: int,
           unnamed: set[str] = frozenset()) -> Reading:
    """A device total: sum the valid rows of `sum`, else of the first `fallback` reading that has one.

    A row whose value was refused as impossible (negative, out of range, not finite), or that
    answered "no such instance" (a row of its table that went away, see Device._note_absent),
    makes the total missing: the other rows alone would understate it. So does a reading with rows
    the profile cannot name (`unnamed`: their keys; see Meter._refuse_row), which are not read. A
    declared 'not available' filler is left out.
    """
    chosen: list[Reading] = []
    for group in [total.sum, *([k] for k in total.fallback)]:
        rows = [r for k in group for r in by_key.get(k, [])]
        if any(math.isfinite(r.value) or _broken(r) for r in rows) or unnamed.intersection(group):
            chosen = rows if not unnamed.intersection(group) else []
            break
    specs = [profile.reading(k) for k in total.sources]
    kind = "register" if any(s.kind == "register" for s in specs) else "gauge"
    unit = pf.QUANTITY_UNITS[total.quantity]
    valid = [r for r in chosen if math.isfinite(r.value)]
    if not valid or any(_broken(r) for r in chosen):
        return Reading(dev, total.name, total.quantity, kind, unit, "", None, NAN, None, t_ns, location=total.location)
    status = "estimated" if any(r.status == "estimated" for r in valid) else "measured"
    if len(chosen) == 1:
        # One source object: the total is that register, with its wrap modulus.
        r = chosen[0]
        return Reading(dev, total.name, total.quantity, r.kind, unit, r.oid, r.raw, r.value, r.modulus, t_ns,
                       location=total.location, status=status)
    # A sum of registers has no single wrap point: modulus None (a wrap of one row
    # looks like a reset downstream and is flagged, never turned into negative energy).
    return Reading(dev, total.name, total.quantity, kind, unit, "", None, float(math.fsum(r.value for r in valid)), None, t_ns,
                   location=total.location, status=status)


def _broken(r: Reading) -> bool:
    """The row answered a value that cannot be true (not merely 'not available'), or, a row of a table,
    no value at all (no such instance: a total without it would understate)."""
    return r.absent or (r.refused is not None and r.refused.reason not in NO_VALUE_REASONS)


# --- the poller ------------------------------------------------------------------


class PollError(str):
    """A failed poll's message, as text, with its kind (`cause`: a key of `schema.SNMP_POLL_CAUSES`),
    which /metrics counts and the store records with each poll."""

    cause: str

    def __new__(cls, text: str, cause: str) -> PollError:
        if cause not in schema.SNMP_POLL_CAUSES:
            raise ValueError(f"unknown poll failure cause {cause!r}")
        error = super().__new__(cls, text)
        error.cause = cause
        return error


@dataclass
class DeviceStats:
    """Per-device counters (for /metrics and the benchmark)."""

    polls: int = 0
    errors: int = 0
    skipped_slots: int = 0
    last_duration_s: float = 0.0
    last_error: str | None = None
    failed_in_row: int = 0  # polls failed since the last answer (logged once, then counted)
    slot_lateness_s: list[float] = field(default_factory=list)


class Poller:
    """Poll many devices concurrently; a slow or dead device never delays the others.

    devices: the device configs (names must be unique).
    on_poll: called once per device per slot (plain function or coroutine function).
    profiles: meter profiles by name (default: the shipped ones).
    max_in_flight: devices polled at the same moment (bounds sockets and memory, not the schedule
      of a healthy device unless more than this many are dead at once).
    start_spread_s: first polls are spread evenly over this many seconds (or the device's interval, if shorter).
    """

    def __init__(
        self,
        devices: Sequence[SnmpDevice],
        on_poll: OnPoll,
        *,
        profiles: dict[str, pf.Profile] | None = None,
        max_in_flight: int = 256,
        start_spread_s: float = 1.0,
    ) -> None:
        dup = cfg.duplicate([d.name for d in devices])
        if dup is not None:
            raise ConfigError(f"SNMP device name {dup!r} is used twice")
        self.profiles = profiles if profiles is not None else pf.load_profiles()
        self.devices = list(devices)
        self.on_poll = on_poll
        self.max_in_flight = max_in_flight
        self.start_spread_s = start_spread_s
        self.stats: dict[str, DeviceStats] = {d.name: DeviceStats() for d in devices}
        self._engine = None
        self.meters: dict[str, Meter] = {}
        for d in devices:
            self.meters[d.name] = Meter(d, self.profiles, engine=self._shared_engine() if d.version == "2c" else None)

    def _shared_engine(self):
        if self._engine is None:
            from puewatch.collector.snmp.client import snmp_engine

            self._engine = snmp_engine()
        return self._engine

    async def run(self) -> None:
        """Poll until cancelled."""
        sem = asyncio.Semaphore(self.max_in_flight)
        n = max(1, len(self.devices))
        loop = asyncio.get_running_loop()
        base_loop = loop.time()
        base_wall_ns = time.time_ns()
        try:
            async with asyncio.TaskGroup() as tg:
                for i, d in enumerate(self.devices):
                    offset = i / n * min(self.start_spread_s, d.interval_s)
                    tg.create_task(self._device_task(self.meters[d.name], sem, base_loop + offset, base_wall_ns, base_loop))
        finally:
            self.close()

    async def _device_task(self, meter: Meter, sem: asyncio.Semaphore, t0: float, base_wall_ns: int, base_loop: float) -> None:
        loop = asyncio.get_running_loop()
        d = meter.device
        st = self.stats[d.name]
        k = 0
        while True:
            slot = t0 + k * d.interval_s
            delay = slot - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            slot_wall_ns = base_wall_ns + round((slot - base_loop) * 1e9)
            started = loop.time()
            st.slot_lateness_s.append(started - slot)
            if len(st.slot_lateness_s) > 1000:
                del st.slot_lateness_s[:500]
            error: PollError | None = None
            async with sem:
                # The cap counts from the slot: time spent waiting for `sem` is part of it.
                budget = max(0.0, slot + POLL_SHARE * d.interval_s - loop.time())
                try:
                    readings = await asyncio.wait_for(meter.poll(), budget)
                except SnmpError as exc:
                    error = PollError(str(exc), exc.cause)
                except TimeoutError:
                    meter.connected = False
                    error = PollError(
                        f"{d.address}: poll cut off at {POLL_SHARE * d.interval_s:g} s ({POLL_SHARE:.0%} of interval_s "
                        f"{d.interval_s:g} s): the device answers too slowly, or lower timeout_s x (retries + 1)", "slow"
                    )
                except Exception as exc:  # a bug or an agent answer we cannot parse: report, never kill the task
                    log.exception("device %s: poll failed", d.name)
                    meter.connected = False
                    error = PollError(f"{d.address}: internal error: {type(exc).__name__}: {exc}", "internal")
            st.last_duration_s = loop.time() - started
            st.polls += 1
            if error is not None:
                st.errors += 1
                st.failed_in_row += 1
                readings = meter.failed(time.time_ns())
                if error != st.last_error:
                    log.warning("device %s: %s (logged once; failed polls are counted until it answers)", d.name, error)
            elif st.last_error is not None:
                log.info("device %s: polling again after %d failed poll(s)", d.name, st.failed_in_row)
                st.failed_in_row = 0
            st.last_error = error
            await self._emit(d.name, slot_wall_ns, readings, error)
            # Next slot on the grid; slots the cycle ran over are skipped but still reported.
            now = loop.time()
            nxt = max(k + 1, math.ceil((now - t0) / d.interval_s - 1e-9))
            for j in range(k + 1, nxt):
                st.skipped_slots += 1
                wall = base_wall_ns + round((t0 + j * d.interval_s - base_loop) * 1e9)
                skipped = PollError(f"{d.address}: slot skipped: the previous poll took {st.last_duration_s:.3g} s "
                                    f"(interval {d.interval_s:g} s)", "skipped")
                if st.skipped_slots == 1:
                    log.warning("device %s: %s (logged once; skipped slots are counted as failed polls)", d.name, skipped)
                await self._emit(d.name, wall, meter.failed(time.time_ns()), skipped)
            k = nxt

    async def _emit(self, device: str, t_ns: int, readings: list[Reading], error: PollError | None) -> None:
        try:
            result = self.on_poll(device, t_ns, readings, error)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_poll failed for device %s", device)

    def close(self) -> None:
        for m in self.meters.values():
            m.close()
        if self._engine is not None:
            try:
                self._engine.close_dispatcher()
            except Exception:
                pass
            self._engine = None


# --- register helper -----------------------------------------------------------------


@dataclass(frozen=True)
class RegisterEnergy:
    """Energy counted by a register over a stream of readings (see `register_energy`)."""

    energy: float  # sum of the valid interval increases, in the register's unit (Wh)
    deltas: np.ndarray  # per-interval increase (NaN where unknown)
    flags: np.ndarray  # puewatch.kernels.flags bits per interval
    wraps: int
    resets: int
    missing: int


def register_energy(readings: Sequence[Reading], *, max_power_w: float | None = None) -> RegisterEnergy:
    """Per-interval increases of one register reading over time, by the one register-energy
    policy (`puewatch.core.energy`, as the pipeline and the reports): the modulus comes from the
    readings, the power limit is `max_power_w` or derived from them, a drop that no possible
    wrap explains is a reset (its interval not counted), never negative energy.
    """
    from puewatch.core import energy as policy
    from puewatch.kernels import FLAG_MISSING, FLAG_RESET, FLAG_WRAP

    if not readings:
        raise ValueError("no readings")
    names = {(r.device, r.name) for r in readings}
    if len(names) != 1:
        raise ValueError(f"readings of more than one register: {sorted(names)[:3]}")
    if readings[0].kind != "register" or readings[0].unit != "Wh":
        raise ValueError(f"{readings[0].name} is a {readings[0].kind} in {readings[0].unit}, not a register in Wh")
    t = np.array([r.time_ns for r in readings], dtype=np.int64)
    v = np.array([r.value for r in readings], dtype=np.float64)
    modulus = next((r.modulus for r in readings if r.modulus is not None), None)
    limit = policy.power_limit(max_power_w, t, v)
    res = policy.register_energy(t, v, modulus_wh=modulus, limit=limit)
    finite = res.delta[np.isfinite(res.delta)]
    return RegisterEnergy(
        energy=float(finite.sum()),
        deltas=res.delta,
        flags=res.flags,
        wraps=int(np.count_nonzero(res.flags & FLAG_WRAP)),
        resets=int(np.count_nonzero(res.flags & FLAG_RESET)),
        missing=int(np.count_nonzero(res.flags & FLAG_MISSING)),
    )
