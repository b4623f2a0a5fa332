"""Time, one way everywhere: int64 nanoseconds since the Unix epoch (UTC) inside, RFC 3339 at the edges.

`format_time` writes whole seconds as `...T00:00:00Z` and anything finer with nine fraction
digits; `format_times` is the same for an array (NumPy in C; a test pins them equal).
`parse_time` reads a date (UTC midnight) or an RFC 3339 time with any offset, up to ns; a
time without an offset is refused (an auditor must never guess a time zone), and so is a time
outside `FIRST_NS` .. `LAST_NS` (`in_range`): int64 nanoseconds reach from 1677 to 2262, and the
years at either end are kept free for the margins a report reads around its period.

`Calendar` is the one place a site's days, months and years are made: in its time zone
(`[collector] timezone`, an IANA name; `UTC` unless set). The module's functions of that kind
(`month_start`, `add_months`, `is_annual`, `annual_period`, `day_grid`, `format_period`) are
UTC's (`UTC`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import zoneinfo

import numpy as np

NS = 1_000_000_000
SECOND = NS
MINUTE = 60 * NS
HOUR = 3600 * NS
DAY_NS = 86_400 * NS
# The times puewatch reads: 1679-01-01 .. 2261-01-01 (exclusive), inside int64 ns with a year to spare.
FIRST_NS = -9_183_024_000 * NS
LAST_NS = 9_183_110_400 * NS

__all__ = ["DAY_NS", "HOUR", "MINUTE", "NS", "SECOND", "UTC", "Calendar", "add_months", "day_grid", "format_period", "format_time", "format_times",
           "in_range", "is_annual", "month_start", "parse_time"]


def format_time(t_ns: int) -> str:
    """RFC 3339 UTC: whole seconds as `...T00:00:00Z`, else with nanoseconds."""
    sec, frac = divmod(int(t_ns), NS)
    base = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}Z" if frac == 0 else f"{base}.{frac:09d}Z"


def format_period(start_ns: int, end_ns: int) -> str:
    """`Calendar.format_period` in UTC."""
    return UTC.format_period(start_ns, end_ns)


def parse_time(text: str, *, date_ok: bool = True) -> int:
    """A date (`2025-01-01`, UTC midnight) or an RFC 3339 time (with offset or Z, up to ns) -> int ns.
    `date_ok` False: a date alone is refused too (an instant in a document: midnight in which zone?).

    Raises ValueError with the reason.
    """
    s = text.strip()
    if not date_ok and len(s) == 10:
        raise ValueError(f"{text!r} is a date alone, not an RFC 3339 time (midnight in which time zone?)")
    if not s.isascii():
        shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}... ({len(text):,} characters)"
        raise ValueError(f"time {shown} holds characters that are not ASCII (RFC 3339's digits are 0-9)")
    if len(s) == 10:
        d = dt.date.fromisoformat(s)
        return in_range(calendar.timegm(d.timetuple()) * NS, text)
    frac_ns = 0
    head = s
    # Python's datetime keeps microseconds only: take the fraction apart by hand.
    if "." in s:
        i = s.index(".")
        j = i + 1
        while j < len(s) and s[j].isdigit():
            j += 1
        digits = s[i + 1 : j]
        if not digits or len(digits) > 9:
            raise ValueError(f"bad fractional seconds in {text!r}")
        frac_ns = int(digits.ljust(9, "0"))
        head = s[:i] + s[j:]
    if head.endswith(("Z", "z")):
        head = head[:-1] + "+00:00"
    t = dt.datetime.fromisoformat(head)
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset (add Z)")
    return in_range(calendar.timegm(t.utctimetuple()) * NS + frac_ns, text)


def in_range(t_ns: int, text: str) -> int:
    """`t_ns`, or a ValueError naming `text` when it lies outside the times puewatch reads."""
    if not FIRST_NS <= t_ns < LAST_NS:
        raise ValueError(f"time {text!r} is outside the times puewatch reads (1679-01-01 .. 2260-12-31: "
                         "int64 nanoseconds, with a year to spare for a report's margins)")
    return t_ns


class Calendar:
    """A site's calendar: its days, months and years, midnight to midnight in its time zone (an IANA
    name, `Asia/Shanghai`; `UTC` by default). A day is whatever lies between two local midnights
    (23 or 25 hours where the zone's clocks change), a month from its first day's midnight, a year from
    1 January's. Instants stay int64 ns UTC; only where a period is cut or named does the zone count.
    A midnight the clocks skip (a change at 00:00) is the instant the day begins, the change itself."""

    def __init__(self, zone: str = "UTC") -> None:
        self.zone = check_zone(zone)
        self._tz = dt.UTC if self.zone == "UTC" else _zone(self.zone)

    def __repr__(self) -> str:
        return f"Calendar({self.zone!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Calendar) and other.zone == self.zone

    def __hash__(self) -> int:
        return hash(self.zone)

    def local(self, t_ns: int) -> dt.datetime:
        """The wall-clock time of an instant (whole seconds, rounded down)."""
        return dt.datetime.fromtimestamp(t_ns // NS, self._tz)

    def midnight(self, day: dt.date) -> int:
        """The instant `day` begins, ns."""
        wall = dt.datetime(day.year, day.month, day.day, tzinfo=self._tz)
        offset = wall.utcoffset()
        assert offset is not None
        return (calendar.timegm(day.timetuple()) - int(offset.total_seconds())) * NS

    def _day(self, t_ns: int) -> dt.date:
        """The date whose day `t_ns` lies in: the latest of the dates about its wall clock's whose midnight is not
        after it. Its wall-clock date alone is not always it: after clocks go back across a midnight the wall
        clock shows the day before again (America/St_Johns, 2010-11-07 00:01), and a skipped midnight
        begins its day at the change."""
        d = self.local(t_ns).date()
        for day in (d + dt.timedelta(days=1), d, d - dt.timedelta(days=1)):
            if self.midnight(day) <= t_ns:
                return day
        return d - dt.timedelta(days=2)  # not reached: a midnight is at most a day and some hours from its date

    def day_start(self, t_ns: int) -> int:
        """The start of the day `t_ns` lies in."""
        return self.midnight(self._day(t_ns))

    def next_midnight(self, t_ns: int) -> int:
        """The first midnight after `t_ns`."""
        return self.day_grid(t_ns, t_ns + 3 * DAY_NS)[1].item()

    def month_start(self, t_ns: int) -> int:
        d = self._day(t_ns)
        return self.midnight(dt.date(d.year, d.month, 1))

    def add_months(self, t_ns: int, months: int) -> int:
        """The start of the month `months` after the one `t_ns` lies in."""
        d = self._day(t_ns)
        y, m = divmod(d.month - 1 + months, 12)
        return self.midnight(dt.date(d.year + y, m + 1, 1))

    def year(self, t_ns: int) -> int:
        """The calendar year `t_ns` lies in."""
        return self._day(t_ns).year

    def years(self, t_ns: np.ndarray) -> np.ndarray:
        """`year` of every element (int64)."""
        t = np.asarray(t_ns, dtype=np.int64)
        if not t.size:
            return np.zeros(0, np.int64)
        first = self.year(int(t.min()))
        starts = np.array([self.year_bounds(y)[0] for y in range(first, self.year(int(t.max())) + 2)], np.int64)
        return first + np.searchsorted(starts, t, side="right") - 1

    def year_bounds(self, year: int) -> tuple[int, int]:
        """[start, end) of a calendar year."""
        return self.midnight(dt.date(year, 1, 1)), self.midnight(dt.date(year + 1, 1, 1))

    def is_midnight(self, t_ns: int) -> bool:
        return self.day_start(t_ns) == t_ns

    def is_annual(self, start_ns: int, end_ns: int) -> bool:
        """The period is exactly 12 whole calendar months."""
        return bool(start_ns == self.month_start(start_ns) and end_ns == self.add_months(start_ns, 12))

    def annual_period(self, start_ns: int, end_ns: int, made_ns: int | None) -> bool:
        """Whether a report over [start, end) made at `made_ns` is an annual one (ISO/IEC 30134-2: energies
        measured over 12 months): 12 whole calendar months that had ended when it was made. A year not
        yet over has not been measured (2 months of data in a year still running read PUE_L1,YC, and passed
        an annual cap: found by the city audit). `made_ns` None (a report that does not say when it was
        made): the calendar alone. The one rule of the report, `check` and `city`."""
        return self.is_annual(start_ns, end_ns) and (made_ns is None or end_ns <= made_ns)

    def day_grid(self, start_ns: int, end_ns: int) -> np.ndarray:
        """start, every midnight strictly inside, end."""
        if self.zone == "UTC":
            first = (start_ns // DAY_NS + 1) * DAY_NS
            inner = np.arange(first, end_ns, DAY_NS, dtype=np.int64)
        else:
            inner_list: list[int] = []
            last = start_ns
            d = self._day(start_ns) + dt.timedelta(days=1)
            while (m := self.midnight(d)) < end_ns:
                # A date the zone skipped whole (Pacific/Apia, 2011-12-30) has its next one's midnight: no day.
                if m > last:
                    inner_list.append(m)
                    last = m
                d += dt.timedelta(days=1)
            inner = np.array(inner_list, dtype=np.int64)
        return np.concatenate(([start_ns], inner, [end_ns])).astype(np.int64)

    def format_time(self, t_ns: int) -> str:
        """RFC 3339 in the zone's offset at that instant (UTC: `Z`, as `format_time`). An offset of seconds
        (local mean time before a zone's standard time), which RFC 3339 cannot write, is written in UTC."""
        if self.zone == "UTC":
            return format_time(t_ns)
        sec, frac = divmod(int(t_ns), NS)
        wall = dt.datetime.fromtimestamp(sec, self._tz)
        offset = wall.strftime("%z")
        if len(offset) > 5:
            return format_time(t_ns)
        offset = f"{offset[:3]}:{offset[3:5]}"
        base = wall.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{base}{offset}" if frac == 0 else f"{base}.{frac:09d}{offset}"

    def format_period(self, start_ns: int, end_ns: int) -> str:
        """`<from>..<to>`, each a date where it is a midnight, else the RFC 3339 time (a period
        shorter than a day reads `2026-12-03T10:00:00Z..2026-12-03T10:10:00Z`, not `2026-12-03..2026-12-03`)."""

        def short(t: int) -> str:
            return self.local(t).date().isoformat() if self.is_midnight(t) else self.format_time(t)

        return f"{short(start_ns)}..{short(end_ns)}"

    def name(self, text: str, unit: str) -> str:
        """The month (`YYYY-MM`) or day (`YYYY-MM-DD`, `unit` "day") of this calendar that a row starting at
        `text` (RFC 3339) names: a UTC+8 site's January begins at `...-12-31T16:00:00Z`. Where `text` is not
        a time, its first characters."""
        n = 10 if unit == "day" else 7
        try:
            return self.local(parse_time(text)).date().isoformat()[:n]
        except (TypeError, ValueError):
            return str(text)[:n]

    def parse_time(self, text: str) -> int:
        """`parse_time`, a date being the instant it begins here (its midnight in the zone)."""
        s = text.strip()
        if len(s) == 10 and s.isascii():
            try:
                d = dt.date.fromisoformat(s)
            except ValueError:
                pass
            else:
                return in_range(self.midnight(d), text)
        return parse_time(text)


def _tzdata_version() -> str | None:
    """The IANA database version of the `tzdata` package; None where it is not installed."""
    try:
        import tzdata
    except ImportError:
        return None
    return str(tzdata.IANA_VERSION)


def _tzdata_file(zone: str):
    from importlib import resources

    return resources.files("tzdata.zoneinfo").joinpath(*zone.split("/"))


@functools.lru_cache(maxsize=64)
def _zone(zone: str) -> dt.tzinfo:
    """The zone's rules from the `tzdata` package, a dependency, so that the machine that makes a report and the
    city's that checks it cut the same days with the same puewatch (zoneinfo prefers the system's files, whose
    version differs from host to host); the system's where the package is missing."""
    try:
        with _tzdata_file(zone).open("rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key=zone)
    except (ImportError, OSError, ValueError):
        return zoneinfo.ZoneInfo(zone)


@functools.lru_cache(maxsize=64)
def check_zone(zone: str) -> str:
    """`zone` when it names a time zone of the IANA database (`UTC` included), else a ValueError naming it."""
    if zone == "UTC":
        return zone
    if not isinstance(zone, str) or not zone or zone != zone.strip():
        raise ValueError(f"time zone {zone!r} is not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)")
    if zone in ("localtime", "posixrules", "Factory"):
        # The machine's own zone (a link that differs from host to host) and tzdata's placeholders: a report
        # made again elsewhere must cut the same days.
        raise ValueError(f"time zone {zone!r} is not a place's time zone: name the site's (e.g. Asia/Shanghai, UTC)")
    try:
        # A name only the machine's own files hold (`posix/...`, `right/...`: copies, and leap-second clocks) would
        # be another database's rules, there and nowhere else: the `tzdata` package's names alone.
        if _tzdata_version() is not None and not _tzdata_file(zone).is_file():
            raise ValueError(zone)
        _zone(zone)  # read as the calendar will read it
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"time zone {zone!r} is not in the IANA time zone database (e.g. Asia/Shanghai, "
                         "Europe/Berlin, UTC)") from None
    return zone


UTC = Calendar("UTC")


def calendar_of(document: dict) -> Calendar:
    """The calendar a report's or statement's days, months and years are in: its `timezone` (a document made
    before there was one: UTC, the only calendar then). ValueError where it names no zone."""
    zone = document.get("timezone", "UTC")
    return Calendar(zone if isinstance(zone, str) else "")


def add_months(t_ns: int, months: int) -> int:
    return UTC.add_months(t_ns, months)


def month_start(t_ns: int) -> int:
    return UTC.month_start(t_ns)


def is_annual(start_ns: int, end_ns: int) -> bool:
    """The period is exactly 12 whole calendar months (UTC)."""
    return UTC.is_annual(start_ns, end_ns)


def annual_period(start_ns: int, end_ns: int, made_ns: int | None) -> bool:
    """`Calendar.annual_period` in UTC."""
    return UTC.annual_period(start_ns, end_ns, made_ns)


def day_grid(start_ns: int, end_ns: int) -> np.ndarray:
    """start, every UTC midnight strictly inside, end."""
    return UTC.day_grid(start_ns, end_ns)


def format_times(t_ns: np.ndarray) -> list[str]:
    """`format_time` of every element, formatted by NumPy in C (an export writes millions)."""
    t = np.asarray(t_ns, dtype=np.int64)
    sec = t // NS
    frac = t - sec * NS
    base = np.datetime_as_string(sec.astype("datetime64[s]"), unit="s").tolist()
    out = [b + "Z" for b in base]
    for i in np.flatnonzero(frac).tolist():
        out[i] = f"{base[i]}.{int(frac[i]):09d}Z"
    return out
