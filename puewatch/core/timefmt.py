"""Time, one way everywhere: int64 nanoseconds since the Unix epoch (UTC) inside, RFC 3339 at the edges.

`format_time` writes whole seconds as `...T00:00:00Z` and anything finer with nine fraction
digits; `format_times` is the same for an array (NumPy in C; a test pins them equal).
`parse_time` reads a date (UTC midnight) or an RFC 3339 time with any offset, up to ns; a
time without an offset is refused (an auditor must never guess a time zone), and so is a time
outside `FIRST_NS` .. `LAST_NS` (`in_range`): int64 nanoseconds reach from 1677 to 2262, and the
years at either end are kept free for the margins a report reads around its period.
"""

from __future__ import annotations

import calendar
import datetime as dt

import numpy as np

NS = 1_000_000_000
SECOND = NS
MINUTE = 60 * NS
HOUR = 3600 * NS
DAY_NS = 86_400 * NS
# The times puewatch reads: 1679-01-01 .. 2261-01-01 (exclusive), inside int64 ns with a year to spare.
FIRST_NS = -9_183_024_000 * NS
LAST_NS = 9_183_110_400 * NS

__all__ = ["DAY_NS", "HOUR", "MINUTE", "NS", "SECOND", "add_months", "day_grid", "format_period", "format_time", "format_times",
           "in_range", "is_annual", "month_start", "parse_time"]


def format_time(t_ns: int) -> str:
    """RFC 3339 UTC: whole seconds as `...T00:00:00Z`, else with nanoseconds."""
    sec, frac = divmod(int(t_ns), NS)
    base = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}Z" if frac == 0 else f"{base}.{frac:09d}Z"


def format_period(start_ns: int, end_ns: int) -> str:
    """`<from>..<to>`, each a date where it is a UTC midnight, else the RFC 3339 time (a period
    shorter than a day reads `2026-12-03T10:00:00Z..2026-12-03T10:10:00Z`, not `2026-12-03..2026-12-03`)."""

    def short(t: int) -> str:
        return format_time(t)[:10] if t % DAY_NS == 0 else format_time(t)

    return f"{short(start_ns)}..{short(end_ns)}"


def parse_time(text: str) -> int:
    """A date (`2025-01-01`, UTC midnight) or an RFC 3339 time (with offset or Z, up to ns) -> int ns.

    Raises ValueError with the reason.
    """
    s = text.strip()
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


def add_months(t_ns: int, months: int) -> int:
    d = dt.datetime.fromtimestamp(t_ns // NS, dt.UTC)
    y, m = divmod(d.month - 1 + months, 12)
    return calendar.timegm((d.year + y, m + 1, 1, 0, 0, 0)) * NS


def month_start(t_ns: int) -> int:
    d = dt.datetime.fromtimestamp(t_ns // NS, dt.UTC)
    return calendar.timegm((d.year, d.month, 1, 0, 0, 0)) * NS


def is_annual(start_ns: int, end_ns: int) -> bool:
    """The period is exactly 12 whole calendar months (UTC)."""
    return start_ns == month_start(start_ns) and end_ns == add_months(start_ns, 12)


def annual_period(start_ns: int, end_ns: int, made_ns: int | None) -> bool:
    """Whether a report over [start, end) made at `made_ns` is an annual one (ISO/IEC 30134-2: energies
    measured over 12 months): 12 whole calendar months (UTC) that had ended when it was made. A year not
    yet over has not been measured (2 months of data in a year still running read PUE_L1,YC, and passed
    an annual cap: found by the city audit). `made_ns` None (a report that does not say when it was
    made): the calendar alone. The one rule of the report, `check` and `city`."""
    return is_annual(start_ns, end_ns) and (made_ns is None or end_ns <= made_ns)


def day_grid(start_ns: int, end_ns: int) -> np.ndarray:
    """start, every UTC midnight strictly inside, end."""
    first = (start_ns // DAY_NS + 1) * DAY_NS
    inner = np.arange(first, end_ns, DAY_NS, dtype=np.int64)
    return np.concatenate(([start_ns], inner, [end_ns])).astype(np.int64)


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
