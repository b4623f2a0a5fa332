"""A site's calendar (core.timefmt.Calendar): its days, months and years begin at its midnights in its
time zone. Each expectation is written from the wall clock by hand (offsets from the IANA database's
published rules), not from the code's own arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from puewatch.core.timefmt import NS, UTC, Calendar, is_annual, parse_time

H = 3600 * NS
SHANGHAI = Calendar("Asia/Shanghai")  # UTC+8 all year, no DST
BERLIN = Calendar("Europe/Berlin")  # UTC+1, UTC+2 from the last Sunday of March to the last of October


def test_a_utc_plus_8_site_s_year_days_and_months_begin_at_16_00_utc() -> None:
    start, end = SHANGHAI.parse_time("2025-01-01"), SHANGHAI.parse_time("2026-01-01")
    assert (start, end) == (parse_time("2024-12-31T16:00:00Z"), parse_time("2025-12-31T16:00:00Z"))
    assert SHANGHAI.year_bounds(2025) == (start, end)
    assert SHANGHAI.is_annual(start, end) and not is_annual(start, end) and not UTC.is_annual(start, end)
    assert UTC.is_annual(parse_time("2025-01-01"), parse_time("2026-01-01"))
    assert not SHANGHAI.is_annual(parse_time("2025-01-01"), parse_time("2026-01-01"))
    grid = SHANGHAI.day_grid(start, end)
    assert grid.size == 366 and np.all(np.diff(grid) == 24 * H)
    assert np.all(grid % (24 * H) == 16 * H)
    # The year 2025 runs from 16:00 UTC on 31 December 2024: the last second before it is in 2024.
    assert SHANGHAI.year(start) == 2025 and SHANGHAI.year(start - 1) == 2024 and UTC.year(start) == 2024
    assert SHANGHAI.year(end - 1) == 2025 and SHANGHAI.year(end) == 2026
    assert SHANGHAI.month_start(parse_time("2025-03-31T16:00:00Z")) == parse_time("2025-03-31T16:00:00Z")
    assert SHANGHAI.month_start(parse_time("2025-03-31T15:59:59Z")) == parse_time("2025-02-28T16:00:00Z")
    assert SHANGHAI.add_months(start, 2) == parse_time("2025-02-28T16:00:00Z")
    assert SHANGHAI.add_months(start, 14) == parse_time("2026-02-28T16:00:00Z")
    assert SHANGHAI.add_months(start, -1) == parse_time("2024-11-30T16:00:00Z")
    assert SHANGHAI.day_start(parse_time("2025-06-01T15:59:59.999999999Z")) == parse_time("2025-05-31T16:00:00Z")
    # Its dates are named as the site names them; a time that is not its midnight at its offset.
    assert SHANGHAI.format_period(start, end) == "2025-01-01..2026-01-01"
    assert SHANGHAI.format_period(start + H, end) == "2025-01-01T01:00:00+08:00..2026-01-01"
    assert SHANGHAI.format_time(start + 1) == "2025-01-01T00:00:00.000000001+08:00"
    assert UTC.format_period(start, end) == "2024-12-31T16:00:00Z..2025-12-31T16:00:00Z"
    # An RFC 3339 time is the instant it names, whatever the calendar.
    assert SHANGHAI.parse_time("2025-01-01T00:00:00Z") == parse_time("2025-01-01")


def test_a_day_is_23_or_25_hours_where_the_clocks_change() -> None:
    # 2025-03-30 02:00 CET -> 03:00 CEST (01:00 UTC); 2025-10-26 03:00 CEST -> 02:00 CET (01:00 UTC).
    grid = BERLIN.day_grid(BERLIN.parse_time("2025-03-29"), BERLIN.parse_time("2025-04-01"))
    assert grid.tolist() == [parse_time(t) for t in ("2025-03-28T23:00:00Z", "2025-03-29T23:00:00Z",
                                                     "2025-03-30T22:00:00Z", "2025-03-31T22:00:00Z")]
    assert (np.diff(grid) // H).tolist() == [24, 23, 24]
    autumn = BERLIN.day_grid(BERLIN.parse_time("2025-10-26"), BERLIN.parse_time("2025-10-27"))
    assert (np.diff(autumn) // H).tolist() == [25]
    start, end = BERLIN.year_bounds(2025)
    assert (start, end) == (parse_time("2024-12-31T23:00:00Z"), parse_time("2025-12-31T23:00:00Z"))
    assert BERLIN.day_grid(start, end).size == 366
    # A summer month begins at 22:00 UTC; 12 months from one is annual.
    july = BERLIN.parse_time("2025-07-01")
    assert july == parse_time("2025-06-30T22:00:00Z")
    assert BERLIN.is_annual(july, BERLIN.parse_time("2026-07-01"))
    assert BERLIN.format_time(july + H) == "2025-07-01T01:00:00+02:00"
    assert BERLIN.format_time(parse_time("2025-01-15T12:00:00Z")) == "2025-01-15T13:00:00+01:00"


def test_a_midnight_the_clocks_skip_begins_its_day_at_the_change() -> None:
    # Brazil's summer time began at 00:00 local on 2018-11-04 (-03:00 -> -02:00): that day began at 03:00 UTC
    # (00:00 -03:00 = 01:00 -02:00) and was 23 hours long.
    sp = Calendar("America/Sao_Paulo")
    day = sp.parse_time("2018-11-04")
    assert day == parse_time("2018-11-04T03:00:00Z")
    grid = sp.day_grid(sp.parse_time("2018-11-03"), sp.parse_time("2018-11-06"))
    assert (np.diff(grid) // H).tolist() == [24, 23, 24]
    assert sp.day_start(day + 1) == day and sp.day_start(day - 1) == parse_time("2018-11-03T03:00:00Z")
    assert sp.month_start(day) == parse_time("2018-11-01T03:00:00Z")


def test_utc_is_the_calendar_unless_a_site_names_another() -> None:
    from puewatch.core.site import Meter, SiteModel

    site = SiteModel("s", {"a": Meter(role="facility_input", device="d")})
    assert site.calendar == UTC and site.timezone == "UTC"
    assert UTC.parse_time("2025-01-01") == parse_time("2025-01-01") == 1735689600 * NS
    grid = UTC.day_grid(parse_time("2025-03-01T06:00:00Z"), parse_time("2025-03-03"))
    assert grid.tolist() == [parse_time("2025-03-01T06:00:00Z"), parse_time("2025-03-02"), parse_time("2025-03-03")]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", " Asia/Shanghai", "localtime", "Factory", "../etc/passwd",
                                  "asia/shanghai/", "posix/Asia/Shanghai", "right/UTC"])
def test_a_zone_that_is_not_a_place_s_is_refused_naming_it(zone: str) -> None:
    from puewatch.core.site import Meter, SiteModel

    with pytest.raises(ValueError, match="time zone") as err:
        Calendar(zone)
    assert repr(zone) in str(err.value)
    site = SiteModel("s", {"a": Meter(role="facility_input", device="d")}, timezone=zone)
    assert any(key == "collector.timezone" and repr(zone) in msg for key, msg in site.problems())


def test_a_date_the_zone_skipped_is_no_day_and_a_midnight_that_repeats_begins_one() -> None:
    """Samoa skipped 30 December 2011 (UTC-10 -> UTC+14): 29 December ran to 10:00 UTC on the 30th, and 31
    December began then, so four dates make four 24-hour days. Newfoundland went back from 00:01 NDT to
    23:01 NST on 7 November 2010: the day began at the first midnight (02:30 UTC) and ran 25 hours, though
    the wall clock showed the 6th again after the change."""
    apia = Calendar("Pacific/Apia")
    grid = apia.day_grid(apia.parse_time("2011-12-28"), apia.parse_time("2012-01-02"))
    assert grid.tolist() == [parse_time(t) for t in ("2011-12-28T10:00:00Z", "2011-12-29T10:00:00Z",
                                                     "2011-12-30T10:00:00Z", "2011-12-31T10:00:00Z",
                                                     "2012-01-01T10:00:00Z")]
    assert apia.day_start(parse_time("2011-12-30T12:00:00Z")) == parse_time("2011-12-30T10:00:00Z")
    nl = Calendar("America/St_Johns")
    day = parse_time("2010-11-07T02:30:00Z")
    assert nl.parse_time("2010-11-07") == day
    assert nl.day_start(day + 60 * NS + 1) == day and nl.day_start(day - 1) == parse_time("2010-11-06T02:30:00Z")
    assert nl.next_midnight(day) == parse_time("2010-11-08T03:30:00Z")
    grid = nl.day_grid(nl.parse_time("2010-11-06"), nl.parse_time("2010-11-09"))
    assert (np.diff(grid) // H).tolist() == [24, 25, 24]
    assert nl.is_midnight(day) and not nl.is_midnight(day + 30 * 60 * NS)
    years = SHANGHAI.years(np.array([parse_time(t) for t in ("2024-12-31T15:59:59.999999999Z", "2024-12-31T16:00:00Z",
                                                             "2026-12-31T16:00:00Z")]))
    assert years.tolist() == [2024, 2025, 2027]
