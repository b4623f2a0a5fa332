"""Where a report's raw readings come from: a store (embedded SQLite or InfluxDB v1 API) or an exported CSV.

What the collector stores for each meter (collector/README.md, "Derived series"):

- an SNMP meter (`device`): `snmp_reading,site=,device=,reading=,unit= value=` with W or Wh
  values as read. The report reads the device's `total_active_energy` (Wh) and
  `total_active_power` (W) readings, or the meter's own `reading`, and prefers the register;
- an ingest meter (`measurement`): the series as it arrived (`tags`, `field`), in the meter's
  `unit`, converted here with `collector.site.UNITS`.

The export CSV (long format, one reading per row, rows ordered by meter then time):

    time,meter,power_w,energy_wh
    2025-01-01T00:00:00Z,incomer,,123456.5

`time` is RFC 3339 UTC with up to nanoseconds; `power_w` a power gauge (W; L/s for a water
meter), `energy_wh` a cumulative register reading (Wh; L for a water meter); either may be
empty, not both. Floats are written with Python's shortest round-trip form, so a CSV read
back gives the very same numbers (report and recompute agree bit for bit).

A register's wrap value is not stored with its readings. For an ingest meter it is the
meter's `modulus` (converted to Wh/L) where configured. For an SNMP meter it is what the live
collector uses: the wrap its device's profile declares (built-in profiles plus `[snmp]
profile_dirs`, `resolve_snmp_wraps`), where the profile alone fixes it. Else it is unknown, a
drop counts as a reset, and the report warns when that happens.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import json
import math
import re
import sys
from array import array
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from puewatch import config as cfg
from puewatch.core import schema
from puewatch.core.energy import NO_LIMIT, power_impossible, register_readable
from puewatch.core.numbers import decimal
from puewatch.core.site import UNITS, Meter, SiteModel, Zone, timezone_setting
from puewatch.collector.snmp.device import GenericOid
from puewatch.config import setting
from puewatch.errors import ConfigError, UserError
from puewatch.core.timefmt import NS, UTC, Calendar, format_time, format_times, in_range
from puewatch.report.engine import MeterReadings
from puewatch.report.meters import PollRecord
from puewatch.redact import redact_url

CSV_HEADER = ("time", "meter", "power_w", "energy_wh")
# Added where a meter has device ratings (its `rated` power limit, core.energy): each rating its
# device reported, at its time (on the row of a reading at that time, else on a row of its own,
# with no reading), so that a recompute of any part of the export takes that part's largest
# (`ratings_over`), as the report of that part does. Without them recompute would derive another
# limit than the report and count other readings.
CSV_RATING_COLUMNS = {key: f"{key}_{unit.lower()}" for key, unit in schema.SNMP_RATING_READINGS.items()}
CSV_HEADER_RATED = CSV_HEADER + tuple(CSV_RATING_COLUMNS.values())
# Added where a meter's tags select several stored series with readings (two writers of one meter: a
# report warns, see `_series_read`): on each of its rows, the series (a JSON list of their tags) that
# had a reading at that time, so that a recompute of any window names the same series as the report
# of it (found by the export audit: the recompute of such a meter said nothing).
CSV_SERIES_COLUMN = "series"

__all__ = [
    "CSV_HEADER",
    "CSV_HEADER_RATED",
    "SiteFile",
    "StoreReadings",
    "load_site",
    "meter_modulus",
    "register_modulus",
    "resolve_snmp_wraps",
    "open_store",
    "read_csv",
    "read_store",
    "stream_store",
    "write_csv",
]


# -- the site ---------------------------------------------------------------------------------


@dataclass
class SiteSection:
    """The `[collector]` table, of which a report needs only the site name and its time zone."""

    site: str = setting(min=1, doc="Site name.")
    timezone: str = timezone_setting()


@dataclass
class SiteFile:
    """What a report needs from collector.toml: `[collector] site`, `[meters]`, `[zones]`."""

    collector: SiteSection = setting(doc="The site.")
    meters: dict[str, Meter] = setting(doc="Facility meters by name.")
    zones: dict[str, Zone] = setting(default_factory=dict, doc="Zones (halls).")

    def check(self) -> list[tuple[str, str]]:
        return self.site_model().problems()

    def site_model(self) -> SiteModel:
        return SiteModel(self.collector.site, self.meters, self.zones, timezone=self.collector.timezone)


@dataclass
class SiteDevice:
    """What a report needs of an `[[snmp.devices]]` entry: its name and profile (credentials may be removed)."""

    name: str = setting(min=1, doc="Device name.")
    profile: str = setting("", doc="Meter profile name; empty: chosen from the device's sysObjectID at run time.")
    oids: list[GenericOid] = setting(default_factory=list, doc="The OIDs of a `generic` device.")


def load_site(path: str | Path) -> SiteModel:
    """The site model from a site file or a whole collector.toml (other tables and keys are ignored here).

    SNMP meters' register wrap values come from `[[snmp.devices]]` (`name`, `profile`, `oids`)
    and `[snmp] profile_dirs`, as the collector finds them (`resolve_snmp_wraps`).
    """
    path = Path(path)
    data = cfg.read_toml(path, "site file")
    section = data.get("collector")
    if not isinstance(section, dict) or "site" not in section:
        raise ConfigError(f"{path}: collector.site: is required (the site name)")
    subset = {"collector": {k: section[k] for k in ("site", "timezone") if k in section}, "meters": data.get("meters", {}), "zones": data.get("zones", {})}
    site = cfg.build(SiteFile, subset, str(path)).site_model()
    snmp = data.get("snmp", {})
    if not isinstance(snmp, dict):
        raise ConfigError(f"{path}: snmp: must be a table")
    raw_devices = snmp.get("devices", [])
    dirs = snmp.get("profile_dirs", [])
    if not isinstance(raw_devices, list) or not all(isinstance(d, dict) for d in raw_devices):
        raise ConfigError(f"{path}: snmp.devices: must be a list of tables ([[snmp.devices]])")
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(f"{path}: snmp.profile_dirs: must be a list of directory names")
    keys = ("name", "profile", "oids")
    devices = [cfg.build(SiteDevice, {k: v for k, v in d.items() if k in keys}, f"{path}: snmp.devices[{i}]")
               for i, d in enumerate(raw_devices)]
    dup = cfg.duplicate([d.name for d in devices])
    if dup is not None:  # as the collector and `report` refuse it: the wraps would be the last entry's
        raise ConfigError(f"{path}: snmp.devices: device name {dup!r} is used twice")
    resolve_snmp_wraps(site, devices, dirs, str(path))
    return site


def resolve_snmp_wraps(site: SiteModel, devices: list[Any], profile_dirs: list[str], source: str) -> None:
    """Fill `site.snmp_modulus_wh` / `site.snmp_modulus_unknown` for the SNMP meters.

    A meter reads its `reading` (a `location` selector resolved to one, `profiles.resolve_meter_locations`,
    as the collector does), else the device's `total_active_energy` register (the one the
    report prefers). A device that names a profile which neither the built-in profiles nor
    `profile_dirs` hold, or a meter whose device has no `[[snmp.devices]]` entry, is a
    ConfigError: the report would wrap its register differently from the collector. A device
    whose profile is chosen from its sysObjectID at run time, or whose profile leaves the wrap
    to the device (a table's row count or per-row scale), gets a reason in `snmp_modulus_unknown`.
    """
    from puewatch.collector.snmp import profiles as pf

    snmp_meters = {name: m for name, m in site.meters.items() if m.device}
    if not snmp_meters:
        return
    missing = [d for d in profile_dirs if not Path(d).is_dir()]
    by_name = {d.name: d for d in devices}
    # The same resolution and checks as the collector's (`CollectorConfig.check`): the meter reads the
    # stored series of the reading its location names, with that total's wrap and step; a `reading` its
    # device's profile has not is an error (checked only where some meter had a location before).
    profiles, problems = pf.resolve_meter_locations(
        snmp_meters, devices, pf.load_profiles([d for d in profile_dirs if d not in missing]))
    for key, message in problems:
        raise ConfigError(f"{source}: {key}: {message}")
    for name, m in snmp_meters.items():
        dev = by_name.get(m.device)
        if dev is None:
            raise ConfigError(f"{source}: meters.{name}.device: no [[snmp.devices]] entry named {m.device!r}: the "
                              "report needs the device's `profile` to know where its register wraps (keep `name` and "
                              "`profile`; credentials can be removed)")
        if not dev.profile:
            site.snmp_modulus_unknown[name] = (f"device {dev.name!r} names no profile (it is chosen from the device's "
                                               "sysObjectID at run time): name it with `profile` to know where its "
                                               "register wraps")
            continue
        base = profiles.get(dev.profile)
        if base is None:
            where = "the built-in profiles" + (f" and {', '.join(profile_dirs)}" if profile_dirs else "")
            hint = f" ({', '.join(missing)} not found here)" if missing else ""
            raise ConfigError(f"{source}: snmp.devices {dev.name!r}: profile {dev.profile!r} is not in {where}{hint}: "
                              "the report cannot know where its register wraps; give the profile directory")
        profile = pf.generic_profile(base, dev.oids) if base.profile.generic else base
        site.snmp_step_wh[name] = pf.register_step(profile, m.reading or schema.SNMP_ENERGY_READING)
        modulus, why = pf.register_modulus(profile, m.reading or schema.SNMP_ENERGY_READING)
        if why:
            site.snmp_modulus_unknown[name] = f"device {dev.name!r}: {why}"
        else:
            site.snmp_modulus_wh[name] = modulus


def register_modulus(site: SiteModel, name: str) -> float | None:
    """Where meter `name`'s register wraps, in Wh (L for water), or None when it does not or it is unknown."""
    m = site.meters[name]
    if m.device:
        return site.snmp_modulus_wh.get(name)
    return meter_modulus(m)


def meter_modulus(meter: Meter) -> float | None:
    """The register's wrap value in Wh (L for water), or None when unknown."""
    if meter.modulus is None:
        return None
    factor = UNITS[meter.unit][1] if meter.unit else 1.0
    return meter.modulus * factor


# -- stores -----------------------------------------------------------------------------------


def open_store(conf: Any, store: str | None, *, database: str | None = None, user: str | None = None,
               password_file: str | None = None, token_file: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(Reader, source description) for `--store` (an address as `core.storeaddr` reads it), else the config's store.

    Every InfluxDB is read with InfluxQL on `/query`: 1.x natively, 2.x and 3.x through their
    v1 compatibility API (a token in `Authorization: Token`, the bucket as the database; on
    2.x the bucket needs a DBRP mapping, which 2.x makes for every bucket by its name).
    """
    from puewatch.collector.config import read_secret
    from puewatch.collector.stores.embedded import EmbeddedStore
    from puewatch.collector.stores.influx1 import Influx1Store
    from puewatch.core.storeaddr import parse_store_address

    if user and token_file:
        raise UserError("give --user and --password-file (InfluxDB 1.x), or --token-file (2.x, 3.x), not both")
    # One parser for store addresses: what `demo --store` accepts, this does (a database in the URL or --database).
    addr = parse_store_address(store, "--store", need_database=False) if store else None
    if addr is not None and addr.kind == "influx1":
        if addr.database and database and addr.database != database:
            raise UserError(f"--store names database {addr.database!r} and --database {database!r}: give one")
        db = addr.database or database
        if not db and conf is not None:
            db = (conf.store.influx1.database if conf.store.influx1 else
                  conf.store.influx2.bucket if conf.store.influx2 else None)
        if not db:
            raise UserError("--store is an InfluxDB URL: give the database in it (http://host:8086/DATABASE) or --database")
        if addr.user and (user or token_file):
            raise UserError("--store has a user in it: give no --user or --token-file besides")
        password = (read_secret("", password_file or "", "--password-file") if password_file
                    else addr.password or None)
        token = read_secret("", token_file, "--token-file") if token_file else None
        return (Influx1Store(addr.url, db, user=user or addr.user or None, password=password, token=token),
                {"kind": "influx1", "url": addr.url, "database": db})
    if addr is not None:
        path = addr.path
    elif conf is None:
        raise UserError("give --store (an embedded store file or an InfluxDB URL)")
    elif conf.store.kind == "influx1":
        s = conf.store.influx1
        password = read_secret(s.password, s.password_file, "store.influx1.password_file") or None
        db = database or s.database
        return (Influx1Store(s.url, db, rp=s.retention_policy or None, user=s.user or None, password=password,
                             timeout_s=max(s.timeout_s, 60.0)),
                {"kind": "influx1", "url": redact_url(s.url.rstrip("/")), "database": db})
    elif conf.store.kind == "influx2":
        s = conf.store.influx2
        token = (read_secret("", token_file, "--token-file") if token_file
                 else read_secret(s.token, s.token_file, "store.influx2.token_file")) or None
        db = database or s.bucket
        return (Influx1Store(s.url, db, token=token, timeout_s=max(s.timeout_s, 60.0)),
                {"kind": "influx2", "url": redact_url(s.url.rstrip("/")), "database": db})
    else:
        path = Path(conf.store.embedded.path if conf.store.embedded and conf.store.embedded.path
                    else Path(conf.collector.state_dir) / "puewatch.sqlite")
    if database:
        # Read as given it would be ignored, and the report made from the file without a word.
        raise UserError(f"--database {database!r} names an InfluxDB database, but the store is the embedded file {path}")
    if not path.is_file():
        raise UserError(f"embedded store {path}: no such file")
    return EmbeddedStore(path), {"kind": "embedded", "path": str(path)}


def _series(reader: Any, measurement: str, fld: str, tags: dict[str, str], lo: int, hi: int
            ) -> tuple[np.ndarray, np.ndarray]:
    from puewatch.collector.stores.base import StoreError

    try:
        t, v = reader.series(measurement, fld, tags, lo, hi)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    return one_per_time(np.asarray(t, np.int64), np.asarray(v, np.float64))


def one_per_time(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Readings at ascending times `t` (ties where several series that a meter's tags select hold a point at one
    time) as one reading a time: the value where they agree, NaN (unknown) where they differ. A store returns
    such ties in its own order (the embedded store in the order the series were made, InfluxDB in series-key
    order) and the last was taken: one site's cooling energy was 238,980 Wh from one store and 239,983 Wh from
    the other (found by the store audit). The report warns of the several series (`series_read`)."""
    if t.size < 2 or bool(np.all(t[1:] > t[:-1])):
        return t, v
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    starts = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1])))
    lo, hi = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)  # NaN where any is NaN
    return t[starts], np.where(lo == hi, lo, np.nan)


def _increasing(t: np.ndarray) -> bool:
    return t.size < 2 or bool(np.all(t[1:] > t[:-1]))


def _combine(parts: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Readings of one meter at the union of their times: (t, power or None, energy or None)."""
    ts = [t for _, t, _ in parts if t.size]
    if not ts:
        t_all = np.empty(0, np.int64)
    elif all(_increasing(t) and np.array_equal(t, ts[0]) for t in ts):
        # The usual case (one series, or two read at the same polls): already the union, no sort.
        # (np.unique of a year of readings takes longer than reading them.)
        t_all = ts[0]
    else:
        c = np.sort(np.concatenate(ts), kind="stable")
        t_all = c[np.concatenate(([True], c[1:] != c[:-1]))]
    power = energy = None
    for kind, t, v in parts:
        if not t.size:
            continue
        if t is t_all or (t.size == t_all.size and _increasing(t) and np.array_equal(t, t_all)):
            col = np.asarray(v, dtype=np.float64)  # the reader's own fresh array: no copy
        else:
            col = np.full(t_all.size, np.nan)
            col[np.searchsorted(t_all, t)] = v
        if kind == "power":
            power = col
        else:
            energy = col
    return t_all, power, energy


def read_meter(reader: Any, site: SiteModel, name: str, lo: int, hi: int,
               period: tuple[int, int] | None = None, *, results: list[str] | None = None) -> MeterReadings:
    """One meter's raw readings for lo <= t < hi from a store (the series `schema.meter_sources` names);
    `results`: the store's poll results (`poll_results`), where the caller reads many meters (asked once).

    With the `period` [start, end) that window holds (with its margins), a register also gets its
    readings just outside the window where `edge_readings` says the period needs them."""
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []
    empty = np.empty(0, np.int64), np.empty(0, np.float64)
    modulus = register_modulus(site, name)
    for source in schema.meter_sources(site.name, site.meters[name]):
        candidates = (source, *source.alternatives)
        chosen = None
        for s in candidates:  # the first one that holds readings in the window
            t, v = _series(reader, s.measurement, s.field, dict(s.tags), lo, hi)
            if t.size or not source.alternatives:
                chosen = s, t, v
                break
        if period is not None:
            # A register's readings beyond the window; where no candidate holds any in it, the first
            # register that has some there.
            for s, t, v in [chosen] if chosen is not None else [(s, *empty) for s in candidates]:
                if s.register:
                    t, v = _with_neighbours(reader, s, t, v, lo, hi, period, modulus)
                    if t.size or chosen is not None:
                        chosen = s, t, v
                        break
        if chosen is not None:
            s, t, v = chosen
            parts.append(("energy" if s.register else "power", t, v * s.factor if s.factor != 1.0 else v))
    t, power, energy = _combine(parts)
    rating_times = read_rating_times(reader, site, name, lo, hi)
    several = _series_read(reader, site.meters[name], lo, hi)
    return MeterReadings(t, power, energy, modulus, ratings_over(rating_times, lo, hi), several,
                         read_polls(reader, site, name, *(period or (lo, hi)), t, results), rating_times,
                         _series_times(reader, site.meters[name], several, lo, hi) if several else ())


def poll_results(reader: Any, site: SiteModel) -> list[str]:
    """The results the store's poll records hold (`schema.SNMP_POLL`'s `result` tag); none for a site
    with no SNMP meter (nothing is asked)."""
    from puewatch.collector.stores.base import StoreError

    if not any(m.device for m in site.meters.values()):
        return []
    try:
        return list(reader.tag_values(schema.SNMP_POLL, "result"))
    except StoreError as exc:
        raise UserError(str(exc)) from None


def read_polls(reader: Any, site: SiteModel, name: str, lo: int, hi: int, t: np.ndarray,
               results: list[str] | None = None) -> PollRecord | None:
    """Meter `name`'s SNMP device's polls in lo <= t < hi as the collector recorded them (`schema.SNMP_POLL`,
    a series per result), given the meter's readings' times `t`. None where it cannot say: a meter not read
    over SNMP, a store that holds no poll of any device, and readings in the window with no poll recorded
    in it (written by a puewatch that recorded none, or by another writer). A result the store holds that
    this version does not name is counted as a failure of that name, never dropped."""
    m = site.meters[name]
    if not m.device:
        return None
    times: dict[str, np.ndarray] = {}
    if results is None:
        results = poll_results(reader, site)
    if not results:
        return None
    for result in results:
        series = schema.snmp_poll(site.name, m.device, result)
        at, _ = _series(reader, series.measurement, schema.SNMP_POLL_SECONDS, series.tags, lo, hi)
        if at.size:
            times[result] = at
    if not times and np.any((t >= lo) & (t < hi)):
        return None  # readings, and no poll: not the record of a collector that records its polls
    return PollRecord(times)


def _series_times(reader: Any, m: Meter, several: tuple[dict[str, str], ...], lo: int, hi: int
                  ) -> tuple[tuple[dict[str, str], np.ndarray], ...]:
    """Each of the series `several` names, with the times of its readings in lo <= t < hi (see
    MeterReadings.series_times); () for one series or none."""
    return tuple((tags, _series(reader, m.measurement, m.field, dict(tags), lo, hi)[0]) for tags in several)


def series_over(series_times: tuple[tuple[dict[str, str], np.ndarray], ...], lo: int, hi: int
                ) -> tuple[dict[str, str], ...]:
    """The series with readings in lo <= t < hi, where there are several (else ()): the window's `series_read`,
    as the store answers it for a report of that window."""
    held = tuple(tags for tags, t in series_times if np.any((t >= lo) & (t < hi)))
    return held if len(held) > 1 else ()


def _series_read(reader: Any, m: Meter, lo: int, hi: int) -> tuple[dict[str, str], ...]:
    """An ingest meter's series with readings in the window, where its tags select more than one (a second
    Telegraf with its own `host` tag): their readings are read together, and a report says so."""
    ask = getattr(reader, "series_read", None)
    if m.device or ask is None:  # an SNMP reading's series is the collector's own: one
        return ()
    from puewatch.collector.stores.base import StoreError

    try:
        return tuple(ask(m.measurement, m.field, dict(m.tags), lo, hi))
    except StoreError as exc:
        raise UserError(str(exc)) from None


def edge_readings(t: np.ndarray, period: tuple[int, int]) -> tuple[bool, bool]:
    """Whether a register whose readings in a report's window (the period and a margin of one max
    gap on each side; readings: values `core.energy.register_readable` accepts, never a refused
    one) are at times `t` (ascending) also needs its last reading before the window
    (no reading at or before the period's start) and its first after it (none at or after the end).

    The one rule for every store and for a recompute from an export: an interval that crosses the
    period's edge from beyond the margin (a meter silent across midnight for longer than --max-gap)
    is read, so that its energy is spread over its time like any other interval's, and reports of
    adjacent periods add up to one report over both (docs/auditor-guide.md)."""
    start, end = period
    return (t.size == 0 or int(t[0]) > start), (t.size == 0 or int(t[-1]) < end)


def _with_neighbours(reader: Any, s: schema.MeterSource, t: np.ndarray, v: np.ndarray, lo: int, hi: int,
                     period: tuple[int, int], modulus: float | None) -> tuple[np.ndarray, np.ndarray]:
    def readable(values: np.ndarray) -> np.ndarray:
        return register_readable(values * s.factor if s.factor != 1.0 else values, modulus)

    before, after = edge_readings(t[readable(v)], period)
    neighbours = getattr(reader, "neighbours", None)
    if not (before or after) or neighbours is None:
        return t, v
    from puewatch.collector.stores.base import StoreError

    # The store leaves out values outside [0, modulus) in its own units (a little wider: the exact rule,
    # on the value as read, is `readable`, and a neighbour it refuses is looked past).
    values = (0.0, None if modulus is None else modulus / s.factor * (1 + 1e-9))

    def ask(before_ns: int, after_ns: int) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
        try:
            return neighbours(s.measurement, s.field, dict(s.tags), before_ns, after_ns, values=values)
        except StoreError as exc:
            raise UserError(str(exc)) from None

    def refused(p: tuple[int, float] | None) -> bool:
        return p is not None and not bool(readable(np.array([p[1]], np.float64))[0])

    last, first = ask(lo, hi)
    while before and refused(last):
        last = ask(last[0], hi)[0]
    while after and refused(first):
        first = ask(lo, first[0] + 1)[1]
    head = [last] if before and last is not None else []
    tail = [first] if after and first is not None else []
    if not (head or tail):
        return t, v
    return (np.concatenate([np.array([p[0] for p in head], np.int64), t, np.array([p[0] for p in tail], np.int64)]),
            np.concatenate([np.array([p[1] for p in head], np.float64), v, np.array([p[1] for p in tail], np.float64)]))


def read_rating_times(reader: Any, site: SiteModel, name: str, lo: int, hi: int
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Each rating meter `name`'s SNMP device reported in lo <= t < hi, as (times, values), the positive
    finite ones (none: None). Not for water."""
    m = site.meters[name]
    if m.flows:
        return None
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in schema.rating_sources(site.name, m):
        t, v = _series(reader, s.measurement, s.field, dict(s.tags), lo, hi)
        keep = np.isfinite(v) & (v > 0)
        if keep.any():
            out[s.tags["reading"]] = t[keep], v[keep]
    return out or None


def ratings_over(rating_times: Mapping[str, tuple[np.ndarray, np.ndarray]] | None, lo: int, hi: int
                 ) -> dict[str, float] | None:
    """The largest of each rating reported in lo <= t < hi (none: None), as the collector keeps the largest it
    has seen (core.energy, `rated`): the one rule of a report from a store and of a recompute from an export
    of any span (a month recomputed from a year's export took the year's largest rating, and judged its
    readings against another limit than the month's report: found by the export audit)."""
    out: dict[str, float] = {}
    for key, (t, v) in (rating_times or {}).items():
        i0, i1 = np.searchsorted(t, [lo, hi], side="left")
        if i1 > i0:
            out[key] = float(v[i0:i1].max())
    return out or None


def data_range(reader: Any, site: SiteModel) -> tuple[int, int] | None:
    """(first, last) time in ns of any of the site's meters' readings in the store, or None when it holds none."""
    from puewatch.collector.stores.base import StoreError

    spans = []
    for name in site.meters:
        for source in schema.meter_sources(site.name, site.meters[name]):
            for s in (source, *source.alternatives):
                try:
                    span = reader.time_range(s.measurement, s.field, dict(s.tags))
                except StoreError as exc:
                    raise UserError(str(exc)) from None
                if span is not None:
                    spans.append(span)
    if not spans:
        return None
    return min(a for a, _ in spans), max(b for _, b in spans)


class NoData(UserError):
    """A report or export over a period in which the store holds no meter reading: exit status 1."""

    exit_code = 1


def check_period_has_data(span: tuple[int, int] | None, site: SiteModel, start: int, end: int, what: str,
                          holder: str = "the store") -> None:
    """Raise `NoData` naming the data's range (`span`: the first and last reading's times of any meter
    in the store or file, None for none) when no meter has a reading in start <= t < end.

    An all-n/a report with exit status 0 looks like a result; a period that simply misses the
    data (a date copied from a guide, a wrong year) must say so and where the data is: `report`
    and `export` on the store, `recompute` on its file alike.
    """
    period = f"{format_time(start)} .. {format_time(end)}"
    if span is None:
        raise NoData(f"no {what}: {holder} holds no readings of the site's {len(site.meters)} meters")
    lo, hi = span
    if lo >= end or hi < start:
        raise NoData(f"no {what}: no meter readings in {period}; {holder} holds readings from "
                     f"{format_time(lo)} to {format_time(hi)} (e.g. --from {format_time(lo // NS * NS)} "
                     f"--to {format_time((hi // NS + 1) * NS)})")


def no_energy(span: tuple[int, int] | None, start: int, end: int, what: str, holder: str = "the store") -> NoData:
    """The `NoData` for a period in which no meter has energy: readings lie around it, none in it or near enough
    to give an interval (a period inside a gap in the data). An all-n/a report with exit status 0 read as a result
    (found by the export audit: the check above saw only that the period lay within the data's first and last)."""
    where = "" if span is None else (f"; {holder} holds readings from {format_time(span[0])} to "
                                     f"{format_time(span[1])}")
    return NoData(f"no {what}: no meter has energy in {format_time(start)} .. {format_time(end)} (no two of any "
                  f"meter's readings in or around it within --max-gap){where}")


def readings_range(readings: Mapping[str, MeterReadings]) -> tuple[int, int] | None:
    """The first and last reading's times over every meter (None: no readings)."""
    ts = [r.t_ns for r in readings.values() if len(r.t_ns)]
    if not ts:
        return None
    return min(int(t[0]) for t in ts), max(int(t[-1]) for t in ts)


@contextmanager
def _progress(total: int, show: bool | None) -> Iterator[Callable[[str], None] | None]:
    """A rich progress bar over the meters on a terminal's stderr: yields the callback for each meter read."""
    if not (sys.stderr.isatty() if show is None else show):
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading meters", total=total)
        done: set[str] = set()

        def advance(name: str) -> None:
            if name in done:
                # A report reads a PUE meter again when the meters were not all observed
                # all the time (its energy over the jointly observed time).
                bar.update(task, description=f"read {name} again (jointly observed time)")
                return
            done.add(name)
            bar.update(task, description=f"read {name}")
            bar.advance(task)

        yield advance


def read_store(reader: Any, site: SiteModel, lo: int, hi: int, *, progress: bool | None = None,
               period: tuple[int, int] | None = None) -> dict[str, MeterReadings]:
    """Every meter's readings for lo <= t < hi (see `read_meter` for `period`), all held in memory; a rich
    progress bar on a terminal's stderr."""
    out: dict[str, MeterReadings] = {}
    with _progress(len(site.meters), progress) as advance:
        results = poll_results(reader, site)  # once, not once a meter
        for name in site.meters:
            out[name] = read_meter(reader, site, name, lo, hi, period, results=results)
            if advance:
                advance(name)
    return out


class StoreReadings(Mapping[str, MeterReadings]):
    """Every meter's readings for lo <= t < hi, read from the store when asked for and not kept.

    A year of 1-minute readings of 500 meters is 4 GB of arrays, and `compute_report` and
    `write_csv` need one meter's at a time (each asks for every meter once): read as they
    go, a report holds one or two meters' readings. Each access reads the store again.

    With `prefetch` = k, the k meters after the one asked for (in the site's order, the
    order `compute_report` asks in) are read on worker threads meanwhile: SQLite and the
    HTTP client release the GIL while they wait, the kernels while they compute, so the
    reading and the computing overlap (a report of 500 meter-years takes half the time on
    two cores), and a server answers several queries at once. The reader must then be
    usable from other threads (both stores are), and `close()` must be called
    (`stream_store` does). `on_read(name)` is called after each meter is read (a progress
    bar). An access out of that order reads its meter at once and drops what was ahead.
    """

    def __init__(self, reader: Any, site: SiteModel, lo: int, hi: int,
                 on_read: Callable[[str], None] | None = None, *, prefetch: int = 0,
                 period: tuple[int, int] | None = None) -> None:
        self.reader, self.site, self.lo, self.hi, self.on_read = reader, site, lo, hi, on_read
        self.period = period
        self._results = poll_results(reader, site)  # once, not once a meter
        self._names = list(site.meters)
        self._depth = max(0, int(prefetch))
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(self._depth, "prefetch") if self._depth else None
        self._ahead: dict[str, Future[MeterReadings]] = {}

    def _read(self, name: str) -> MeterReadings:
        return read_meter(self.reader, self.site, name, self.lo, self.hi, self.period, results=self._results)

    def __getitem__(self, name: str) -> MeterReadings:
        if name not in self.site.meters:
            raise KeyError(name)
        ahead = self._ahead.pop(name, None)
        if ahead is not None:
            readings = ahead.result()
        else:
            for future in self._ahead.values():
                future.cancel()
            self._ahead.clear()
            readings = self._read(name)
        if self._pool is not None:
            i = self._names.index(name) + 1
            for following in self._names[i:i + self._depth]:
                if following not in self._ahead:
                    self._ahead[following] = self._pool.submit(self._read, following)
        if self.on_read is not None:
            self.on_read(name)
        return readings

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> None:
        """Wait for a read in progress (the reader may be closed next) and stop the worker."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._ahead.clear()


@contextmanager
def stream_store(reader: Any, site: SiteModel, lo: int, hi: int, *, progress: bool | None = None,
                 period: tuple[int, int] | None = None) -> Iterator[StoreReadings]:
    """`StoreReadings` reading ahead, with `read_store`'s progress bar, for the `with` block.

    As many meters ahead as the reader says it serves at once (`read_ahead`, else one).
    While the block runs the kernels use one thread fewer than they may: the meter read ahead
    needs a core, and a parallel kernel whose chunk shares a core with it waits for that chunk
    (`puewatch bench report`, 2 cores, 500 meter-years end to end: 12.3 s with both threads, 7.5 s with one).
    """
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(max(1, threads - 1))
    try:
        with _progress(len(site.meters), progress) as advance:
            readings = StoreReadings(reader, site, lo, hi, advance, prefetch=getattr(reader, "read_ahead", 1),
                                     period=period)
            try:
                yield readings
            finally:
                readings.close()
    finally:
        numba.set_num_threads(threads)


# -- CSV --------------------------------------------------------------------------------------


def _csv_field(text: str) -> str:
    """One CSV field as csv.writer writes it (quoted only when it must be)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([text])
    return buf.getvalue()[:-1]


def write_csv(readings: Mapping[str, MeterReadings], out: IO[str]) -> int:
    """The export CSV (rows ordered by meter, then time); returns the number of rows.

    Written a meter at a time in large pieces, the times formatted by NumPy (a year of
    500 meters is 263 million rows); the bytes are what csv.writer would write. Where a
    meter has device ratings, the header adds `CSV_RATING_COLUMNS`, each rating at its time.
    """
    rated = any(r.ratings or r.rating_times for r in readings.values())
    several = any(r.series_times for r in readings.values())
    out.write(",".join((CSV_HEADER_RATED if rated else CSV_HEADER) + ((CSV_SERIES_COLUMN,) if several else ())) + "\n")
    tail = "," * (len(CSV_RATING_COLUMNS) if rated else 0) + ("," if several else "")
    rows = 0
    for name in sorted(readings):
        r = readings[name]
        if (rated and r.rating_times) or r.series_times:
            rows += _write_merged(name, r, out, rated, several)
            continue
        n = r.t_ns.size
        meter = _csv_field(name)
        # Python floats a piece at a time: a year of 10 s readings as two lists was 200 MB more.
        none = np.full(min(n, 1 << 16), math.nan)
        first = ("".join("," + (repr(float(r.ratings[k])) if r.ratings and k in r.ratings else "")
                         for k in CSV_RATING_COLUMNS) + ("," if several else "")) if rated and r.ratings else ""
        for i0 in range(0, n, 1 << 16):
            i1 = min(n, i0 + (1 << 16))
            lines = []
            power = (r.power_w[i0:i1] if r.power_w is not None else none[: i1 - i0]).tolist()
            energy = (r.energy_wh[i0:i1] if r.energy_wh is not None else none[: i1 - i0]).tolist()
            for ts, p, e in zip(format_times(r.t_ns[i0:i1]), power, energy):
                fp, fe = math.isfinite(p), math.isfinite(e)
                if not (fp or fe):
                    continue  # both absent: there is no reading at this time (cannot happen from _combine)
                lines.append(f"{ts},{meter},{repr(p) if fp else ''},{repr(e) if fe else ''}{first or tail}\n")
                first = ""
            out.write("".join(lines))
            rows += len(lines)
    return rows


def _write_merged(name: str, r: MeterReadings, out: IO[str], rated: bool, several: bool) -> int:
    """A meter's rows with its ratings at their times (see CSV_RATING_COLUMNS) and the series each reading came
    from (CSV_SERIES_COLUMN): its readings' times and its ratings', merged; a rating-only row has no reading."""
    rating_times = r.rating_times or {}
    times = [r.t_ns] + [t for t, _ in rating_times.values()]
    t_all = np.unique(np.concatenate(times)).astype(np.int64)
    at = np.searchsorted(t_all, r.t_ns)
    columns = []
    for values in (r.power_w, r.energy_wh):
        col = np.full(t_all.size, np.nan)
        if values is not None:
            col[at] = values
        columns.append(col)
    for key in CSV_RATING_COLUMNS if rated else ():
        col = np.full(t_all.size, np.nan)
        if key in rating_times:
            t, v = rating_times[key]
            col[np.searchsorted(t_all, t)] = v
        columns.append(col)
    series = [""] * t_all.size
    if several and r.series_times:
        held: list[list[dict[str, str]]] = [[] for _ in range(t_all.size)]
        for tags, t in r.series_times:
            at_t = np.searchsorted(t_all, t)
            ok = at_t < t_all.size
            ok[ok] = t_all[at_t[ok]] == t[ok]
            for i in at_t[ok].tolist():
                held[i].append(tags)
        series = [_csv_field(json.dumps(h, sort_keys=True, separators=(",", ":"), ensure_ascii=False)) if h else ""
                  for h in held]
    meter = _csv_field(name)
    rows = 0
    for i0 in range(0, t_all.size, 1 << 16):
        i1 = min(t_all.size, i0 + (1 << 16))
        cells = [c[i0:i1].tolist() for c in columns]
        lines = []
        for ts, cell, *values in zip(format_times(t_all[i0:i1]), series[i0:i1], *cells):
            if not any(math.isfinite(x) for x in values):
                continue  # nothing at this time (cannot happen: every time is a reading's or a rating's)
            lines.append(f"{ts},{meter}," + ",".join(repr(x) if math.isfinite(x) else "" for x in values)
                         + ("," + cell if several else "") + "\n")
        out.write("".join(lines))
        rows += len(lines)
    return rows


BLOCK_BYTES = 1 << 22  # read_csv reads, hashes and decodes this much at a time

# ASCII digits only (re.ASCII): RFC 3339's DIGIT is 0-9, and a reader in another language refuses "２０２５".
_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$",
                   re.ASCII)


def _clip(text: str, most: int = 40) -> str:
    """A value quoted in an error: whole when short, else its start and its length (a 5,000-digit number
    made a 5 kB "one-line" error)."""
    return repr(text) if len(text) <= most else f"{text[:most]!r}... ({len(text):,} characters)"


def _csv_fault(exc: csv.Error) -> str:
    """Python's csv module's words, in an auditor's."""
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field longer than {csv.field_size_limit():,} characters: no reading is (a file cut or joined wrongly?)"
    if "new-line character seen in unquoted field" in text:
        return "a line break (a bare CR) inside a field: line ends must be LF or CRLF"
    return f"{text} (line ends must be LF or CRLF)"


class _TimeParser:
    """RFC 3339 with up to 9 fractional digits, fast for millions of rows (dates cached).

    The export writes UTC (`Z`); any RFC 3339 offset is read too (`+00:00`, `+02:00`,
    and `-00:00`, which is UTC with no local offset known), so a file edited in another
    tool still reads. Lower-case `t` and `z` are RFC 3339 as well.
    """

    # An export lists each meter's readings in turn, so every time string comes back once per
    # meter: remembered, it is parsed once. Bounded, for files whose times never repeat.
    CACHE = 1 << 20

    def __init__(self) -> None:
        self._days: dict[str, int] = {}
        self.seen: dict[str, int] = {}  # text -> ns

    def __call__(self, text: str) -> int:
        t = self.seen.get(text)
        if t is None:
            t = self._parse(text)
            if len(self.seen) >= self.CACHE:
                self.seen.clear()
            self.seen[text] = t
        return t

    def _parse(self, text: str) -> int:
        m = _TIME.match(text)
        if not m:
            if not text.isascii():
                raise ValueError(f"time {_clip(text)} holds characters that are not ASCII (RFC 3339's digits are 0-9)")
            if re.search(r"\.[0-9]{10,}", text):
                raise ValueError(f"time {_clip(text)} has more than 9 fractional digits (nanoseconds are the finest)")
            raise ValueError(f"time {_clip(text)} is not RFC 3339 (e.g. 2025-01-01T00:00:00.123456789Z)")
        date, hh, mm, ss, frac, sign, oh, om = m.groups()
        day = self._days.get(date)
        if day is None:
            y, mo, d = (int(x) for x in date.split("-"))
            try:
                import datetime as dt

                dt.date(y, mo, d)
            except ValueError as exc:
                raise ValueError(f"time {text!r}: {exc}") from None
            day = calendar.timegm((y, mo, d, 0, 0, 0)) * NS
            self._days[date] = day
        h, mi, s = int(hh), int(mm), int(ss)
        offset_s = 0
        if sign:
            if int(oh) > 23 or int(om) > 59:
                raise ValueError(f"time {text!r}: offset out of range")
            offset_s = (1 if sign == "+" else -1) * (int(oh) * 3600 + int(om) * 60)
        if s == 60 and h <= 23 and mi <= 59 and (h * 3600 + mi * 60 + 59 - offset_s) % 86400 == 86399:
            # 23:59:60 UTC (here or at its offset): leap seconds fall there alone.
            raise ValueError(f"time {text!r}: a leap second, which puewatch's times (POSIX and InfluxDB time, in ns) "
                             "cannot hold: write the second before it with .999999999 or the next one")
        if h > 23 or mi > 59 or s > 59:
            raise ValueError(f"time {_clip(text)}: hour, minute or second out of range")
        return in_range(day + (h * 3600 + mi * 60 + s - offset_s) * NS + (int(frac.ljust(9, "0")) if frac else 0), text)


def _series_cell(text: str, meter: str, site: SiteModel) -> list[dict[str, str]]:
    """A row's `series` cell (CSV_SERIES_COLUMN): a JSON list of tag objects, each of text values."""
    try:
        held = json.loads(text)
    except ValueError:
        held = None
    if not (isinstance(held, list) and held and all(isinstance(tags, dict) and tags and all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()) for tags in held)):
        raise ValueError(f"{CSV_SERIES_COLUMN} {text!r} is not a JSON list of series' tags (objects of text values)")
    if site.meters[meter].device:
        raise ValueError(f"{CSV_SERIES_COLUMN} for meter {meter!r}, an SNMP meter (its series is the collector's own)")
    return held


def _number(text: str, what: str) -> float:
    if text == "":
        return math.nan
    x = decimal(text)
    if x is None:
        raise ValueError(f"{what} {_clip(text)} is not a number")
    if not math.isfinite(x):
        raise ValueError(f"{what} {_clip(text)} is not a finite number")
    return x


def read_csv(path: str | Path, site: SiteModel) -> tuple[dict[str, MeterReadings], dict[str, Any]]:
    """Readings from an export CSV, and the source description (path, rows, sha256).

    Every fault is a UserError naming the file, the line and the fault: an unknown meter,
    a bad time or number, rows out of time order within a meter, a duplicate (meter, time),
    a row with neither reading nor rating. Nothing is skipped. Ratings are kept at their times
    (`MeterReadings.rating_times`; a file written before they were, with a meter's ratings on its
    first row, gives them that row's time). A reading that cannot be (a negative power,
    a register reading past its modulus) is read as the store holds it: the register-energy
    policy refuses it as a reading, as in the report (core.energy).
    """
    path = Path(path)
    parse_time = _TimeParser()
    # Raw int64/float64 columns (array.array), not lists of Python numbers: a year of 1-minute
    # readings of 500 meters is 263 million rows, 6 GB this way and four times that as lists.
    cols: dict[str, tuple[array, array, array]] = {}
    digest = hashlib.sha256()
    try:
        f = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read readings: {exc.strerror}") from None
    unended: list[int] = []  # the number of a last line that has no line break
    with f:
        def lines() -> Iterator[str]:
            # Read, hash and decode in blocks of whole lines; csv gets the lines as they are.
            done = 0  # lines in the blocks before this one
            rest = b""
            first = True
            while True:
                block = f.read(BLOCK_BYTES)
                digest.update(block)
                if first:
                    first = False
                    if block.startswith(b"\xef\xbb\xbf"):
                        block = block[3:]  # a UTF-8 byte order mark (spreadsheets write one)
                if block:
                    data = rest + block
                    cut = data.rfind(b"\n") + 1
                    whole, rest = data[:cut], data[cut:]
                else:
                    whole, rest = rest, b""  # the last line, without its newline
                    if whole:
                        unended.append(done + 1)
                if whole:
                    try:
                        text = whole.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        bad_line = done + whole.count(b"\n", 0, exc.start) + 1
                        raise UserError(f"{path}:{bad_line}: not UTF-8 text") from None
                    done += whole.count(b"\n")
                    yield from io.StringIO(text, newline="\n")
                if not block:
                    return

        reader = csv.reader(lines())
        try:
            header = next(reader)
        except csv.Error as exc:
            raise UserError(f"{path}:{reader.line_num}: {_csv_fault(exc)}") from None
        except StopIteration:
            raise UserError(f"{path}: empty file (expected the header {','.join(CSV_HEADER)})") from None
        with_series = bool(header) and header[-1] == CSV_SERIES_COLUMN
        if tuple(header[:-1] if with_series else header) not in (CSV_HEADER, CSV_HEADER_RATED):
            raise UserError(f"{path}:1: header must be {','.join(CSV_HEADER)} (or with "
                            f"{','.join(CSV_RATING_COLUMNS.values())} after it, and {CSV_SERIES_COLUMN} last), "
                            f"got {','.join(header)}")
        ncols = len(header)
        rated_cols = ncols - with_series > len(CSV_HEADER)
        wide = ncols > len(CSV_HEADER)  # cells beyond the four: read by check()
        series_at: dict[str, dict[str, tuple[dict[str, str], array]]] = {}  # meter -> series key -> (tags, times)
        last: dict[str, int] = {}
        ratings: dict[str, dict[str, tuple[array, array]]] = {}  # meter -> rating -> (times, values)

        def rating(meter: str, cells: list[str]) -> list[tuple[str, float]]:
            """A row's rating cells, checked: the positive ones (0: none reported)."""
            out = []
            for key, column, text in zip(CSV_RATING_COLUMNS, CSV_RATING_COLUMNS.values(), cells):
                x = _number(text, column)
                if math.isnan(x):
                    continue
                if x < 0:
                    raise ValueError(f"negative {column} {text}")
                if not schema.rating_sources(site.name, site.meters[meter]):
                    raise ValueError(f"{column} for meter {meter!r}, which is not read from an SNMP device (no rating)")
                if x > 0:
                    out.append((key, x))
            return out

        def keep_rating(meter: str, t: int, found: list[tuple[str, float]]) -> None:
            for key, x in found:
                times, values = ratings.setdefault(meter, {}).setdefault(key, (array("q"), array("d")))
                times.append(t)
                values.append(x)

        # An ingest meter is one series, a register or a power: the store holds only that kind for it
        # (an SNMP meter may have both, its device's register preferred).
        only = {name: ("energy_wh" if m.register else "power_w") for name, m in site.meters.items() if not m.device}

        def check(row: list[str]) -> tuple[int, float, float]:
            """A row, every rule checked in order: the fault's ValueError names the first broken one."""
            if len(row) != ncols:
                raise ValueError(f"expected {ncols} columns ({','.join(header)}), got {len(row)}")
            ts, meter, ps, es = row[:4]
            if meter not in site.meters:
                raise ValueError(f"unknown meter {_clip(meter)} (not in the site's [meters])")
            t = parse_time(ts)
            p = _number(ps, "power_w")
            e = _number(es, "energy_wh")
            rating_cells = row[4:4 + len(CSV_RATING_COLUMNS)] if rated_cols else []
            rated = any(rating_cells)
            if math.isnan(p) and math.isnan(e) and not rated:
                raise ValueError("neither power_w nor energy_wh is given" + (" (nor a rating)" if rated_cols else ""))
            held = _series_cell(row[-1], meter, site) if with_series and row[-1] else []
            if held and math.isnan(p) and math.isnan(e):
                raise ValueError(f"{CSV_SERIES_COLUMN} given on a row without a reading")
            if meter in only:
                column = "energy_wh" if only[meter] == "power_w" else "power_w"
                if not math.isnan(e if column == "energy_wh" else p):
                    raise ValueError(f"{column} for meter {meter!r}, whose site file reads only its {only[meter]} "
                                     f"({'a register' if only[meter] == 'energy_wh' else 'a power series'}): "
                                     "not an export of this site's readings")
            found = rating(meter, rating_cells) if rated else []
            prev = last.get(meter)
            if prev is not None and t <= prev:
                if t == prev:
                    raise ValueError(f"duplicate reading for meter {meter!r} at {ts}")
                raise ValueError(f"meter {meter!r}: time {ts} is before the previous row's (rows must be in time order)")
            keep_rating(meter, t, found)
            for tags in held:
                key = json.dumps(tags, sort_keys=True)
                series_at.setdefault(meter, {}).setdefault(key, (tags, array("q")))[1].append(t)
            return t, p, e

        # The fast way for good rows (the same rules, fewer calls and lookups: rows come meter by
        # meter); anything unusual goes through check(), which says what is wrong.
        nan, isfinite, times = math.nan, math.isfinite, parse_time.seen
        cur: str | None = None
        kind: str | None = None
        rating_rows = 0
        prev_t = -(1 << 63)
        c = None
        start = reader.line_num + 1  # the line the next row begins on
        try:
            for row in reader:
                try:
                    if wide:
                        ts, meter, ps, es, *more = row
                        if len(more) != ncols - 4 or any(more):
                            raise ValueError  # rare (ratings, several series, a fault): check() reads them
                    else:
                        ts, meter, ps, es = row
                    if meter != cur:
                        if cur is not None:
                            last[cur] = prev_t
                        if meter not in site.meters:
                            raise ValueError
                        cur = meter
                        kind = only.get(meter)
                        prev_t = last.get(meter, -(1 << 63))
                        c = cols.get(meter)
                        if c is None:
                            c = cols[meter] = (array("q"), array("d"), array("d"))
                    t = times.get(ts)
                    if t is None:
                        t = parse_time(ts)
                    # check()'s rules, the common case first: a fault is named by check().
                    p = decimal(ps) if ps else nan
                    e = decimal(es) if es else nan
                    if (p is None or e is None or not (t > prev_t and (ps or es) and (isfinite(p) or not ps)
                                                       and (isfinite(e) or not es))
                            or (kind is not None and (es if kind == "power_w" else ps))):
                        raise ValueError
                except ValueError:
                    lineno = start
                    if reader.line_num > start:
                        raise UserError(f"{path}:{start}: a quoted field runs on to line {reader.line_num} "
                                        "(an unterminated quote?)") from None
                    if cur is not None:
                        last[cur] = prev_t
                    try:
                        t, p, e = check(row)
                    except ValueError as exc:
                        raise UserError(f"{path}:{lineno}: {exc}") from None
                    if not (wide and any(row[4:])):
                        raise AssertionError(f"{path}:{lineno}: row refused by the fast way, accepted by check()") from None
                    if meter != cur:  # a meter's first row, with its ratings: begin its columns as the fast way does
                        if cur is not None:
                            last[cur] = prev_t
                        cur = meter
                        kind = only.get(meter)
                        c = cols.get(meter)
                        if c is None:
                            c = cols[meter] = (array("q"), array("d"), array("d"))
                prev_t = t
                if p == p or e == e:
                    c[0].append(t)
                    c[1].append(p)
                    c[2].append(e)
                else:  # a rating's own row (see _write_merged)
                    rating_rows += 1
                start = reader.line_num + 1
        except csv.Error as exc:  # a bare CR in a field, CR-only line ends, a field past the size limit
            raise UserError(f"{path}:{start}: {_csv_fault(exc)}") from None
        if unended:
            raise UserError(f"{path}:{unended[0]}: the last line does not end with a line break: the file may be cut "
                            "short (an export ends every line); if that line is whole, end it with one")
        if cur is not None:
            last[cur] = prev_t
    out: dict[str, MeterReadings] = {}
    rows = rating_rows
    for name, (t, p, e) in cols.items():
        pa, ea = np.frombuffer(p, np.float64), np.frombuffer(e, np.float64)  # no copies
        rows += len(t)
        rating_times = {key: (np.frombuffer(rt, np.int64), np.frombuffer(rv, np.float64))
                        for key, (rt, rv) in ratings.get(name, {}).items()} or None
        series_times = tuple((tags, np.frombuffer(st, np.int64)) for tags, st in series_at.get(name, {}).values())
        out[name] = MeterReadings(
            np.frombuffer(t, np.int64),
            pa if np.isfinite(pa).any() else None,
            ea if np.isfinite(ea).any() else None,
            register_modulus(site, name),
            ratings_over(rating_times, -(1 << 63), (1 << 63) - 1),
            series_over(series_times, -(1 << 63), (1 << 63) - 1),
            rating_times=rating_times,
            series_times=series_times,
        )
    return out, {"kind": "csv", "path": str(path), "rows": rows, "sha256": digest.hexdigest()}


def window(readings: dict[str, MeterReadings], lo: int, hi: int,
           period: tuple[int, int] | None = None) -> dict[str, MeterReadings]:
    """The readings with lo <= t < hi: what `report` reads from a store for the same period
    (the period and one max gap on each side), with a register's last reading before the window
    and first after it where `edge_readings` says the `period` needs them, as the store gives them
    (the register's value alone: a power read at the same time lies outside the window). A report's
    derived power limits and outcome counts are taken from the readings it reads, so a CSV that
    holds more (a year's export, recomputed for a month) must give the figures the report of that
    month gives."""
    out = {}
    for name, r in readings.items():
        # The ratings reported in the window, as a report of it reads them (ratings_over).
        ratings = ratings_over(r.rating_times, lo, hi) if r.rating_times is not None else r.ratings
        several = series_over(r.series_times, lo, hi) if r.series_times else r.series_read
        i0, i1 = int(np.searchsorted(r.t_ns, lo, side="left")), int(np.searchsorted(r.t_ns, hi, side="left"))
        outside: list[int] = []
        if period is not None and r.energy_wh is not None:
            has = np.flatnonzero(register_readable(r.energy_wh, r.modulus_wh))
            k0, k1 = np.searchsorted(has, [i0, i1], side="left")
            before, after = edge_readings(r.t_ns[has[k0:k1]], period)
            if before and k0 > 0:
                outside.append(int(has[k0 - 1]))
            if after and k1 < has.size:
                outside.append(int(has[k1]))
        if not outside and i0 == 0 and i1 == r.t_ns.size and ratings == r.ratings and several == r.series_read:
            out[name] = r
            continue
        keep = np.sort(np.concatenate([np.arange(i0, i1), np.asarray(outside, np.int64)]))
        power = None
        if r.power_w is not None:
            power = r.power_w[keep]
            if outside:
                power[np.isin(keep, outside)] = np.nan
            if not np.isfinite(power).any():
                power = None
        energy = None
        if r.energy_wh is not None and np.isfinite(r.energy_wh[keep]).any():
            energy = r.energy_wh[keep]
        # Every row kept has a reading: a row of the CSV has one, and a row outside has the register's.
        out[name] = MeterReadings(r.t_ns[keep], power, energy, r.modulus_wh, ratings, several, polls=r.polls,
                                  rating_times=r.rating_times, series_times=r.series_times)
    return out


def span_days(readings: dict[str, MeterReadings], max_gap_ns: int, calendar: Calendar = UTC) -> tuple[int, int]:
    """The whole days the readings span (in the site's `calendar`): first reading's time rounded up, last's
    rounded down, to midnight. Only readings count: a value that is none (`register_readable`, a power
    `power_impossible` whatever the limit) is no reading here either. A register's first reading where its next is
    more than `max_gap_ns` later, and its last where the one before is, are left out: those an export adds
    beyond its window (see `window`), so that the default period of an export's recompute is the export's."""
    firsts, lasts = [], []
    for r in readings.values():
        t = r.t_ns
        ok = np.zeros(t.size, bool)
        if r.power_w is not None:
            with np.errstate(invalid="ignore"):
                ok |= np.isfinite(r.power_w) & ~power_impossible(r.power_w, NO_LIMIT)
        has = np.zeros(0, np.int64)
        if r.energy_wh is not None:
            with np.errstate(invalid="ignore"):
                readable = register_readable(r.energy_wh, r.modulus_wh)
            ok |= readable
            has = np.flatnonzero(readable)
        rows = np.flatnonzero(ok)
        if not rows.size:
            continue
        i0, i1 = int(rows[0]), int(rows[-1])
        if has.size >= 2 and has[0] == i0 and t[has[1]] - t[has[0]] > max_gap_ns:
            i0 = int(rows[1])
        if has.size >= 2 and has[-1] == i1 and t[has[-1]] - t[has[-2]] > max_gap_ns:
            i1 = int(rows[-2])
        if i0 <= i1:
            firsts.append(int(t[i0]))
            lasts.append(int(t[i1]))
    if not firsts:
        raise UserError("no readings: give --from and --to")
    lo, hi = min(firsts), max(lasts)
    start = calendar.day_start(lo)
    if start < lo:
        start = calendar.next_midnight(lo)
    end = calendar.day_start(hi)
    if end <= start:
        raise UserError(f"the readings span no whole day ({calendar.zone}): give --from and --to")
    return start, end


