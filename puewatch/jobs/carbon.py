"""The operator's carbon data file: grid emission factors and green-energy entries.

No factor is built in: every one comes from this file and carries its source (ISO/IEC
30134-8 asks for the factor's origin beside CUE). Format (TOML), documented in
docs/operator-guide.md and config/carbon.toml:

    region = "CN-NW"                  # the site's grid region: which factors apply

    [[emission_factor]]
    region = "CN-NW"
    year = 2025                       # the calendar year (the site's: [collector] timezone) the factor is for
    kg_co2e_per_kwh = 0.0             # grid CO2e per kWh taken from the grid
    source = "publisher, document, table"

    [[green_energy]]                  # a green certificate or a PPA delivery, retired for the site
    kind = "certificate"              # certificate | ppa
    id = "GEC-..."                    # the certificate's (or contract's) id
    start = "2025-01-01"              # the period it covers (a date: the site's midnight; end excluded)
    end = "2025-02-01"
    mwh = 100.0
    source = "registry or contract"   # optional: where the entry can be checked
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from puewatch.config import read_toml
from puewatch.core.timefmt import UTC, Calendar
from puewatch.errors import UserError

if TYPE_CHECKING:
    from puewatch.report.model import CarbonRow

GREEN_KINDS = ("certificate", "ppa")
# The most one green-energy entry may hold: 10 TWh, a year of a 1 GW site (more is a typo, not a certificate).
MAX_GREEN_MWH = 1e7


@dataclass(frozen=True)
class EmissionFactor:
    region: str
    year: int
    kg_co2e_per_kwh: float
    source: str


@dataclass(frozen=True)
class GreenEntry:
    kind: str
    id: str
    start_ns: int
    end_ns: int
    mwh: float
    source: str = ""  # registry or contract, as the operator enters it


@dataclass
class CarbonData:
    region: str = ""
    factors: list[EmissionFactor] = field(default_factory=list)
    green: list[GreenEntry] = field(default_factory=list)
    path: str = ""

    def factor(self, year: int) -> EmissionFactor | None:
        return next((f for f in self.factors if f.region == self.region and f.year == year), None)

    def green_wh(self, edges_ns: np.ndarray) -> np.ndarray:
        """Certificate and PPA energy per interval between `edges_ns`, Wh: each entry spread
        evenly in time over its own period (the part of it outside the edges is not counted)."""
        out = np.zeros(max(edges_ns.shape[0] - 1, 0))
        for g in self.green:
            overlap = np.clip(np.minimum(edges_ns[1:], g.end_ns) - np.maximum(edges_ns[:-1], g.start_ns), 0, None)
            out += g.mwh * 1e6 * overlap / (g.end_ns - g.start_ns)
        return out


def _get(table: dict, key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise UserError(f"{where}: missing {key!r}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        # TOML has inf and nan: a certificate of inf MWh made the green share 100 % and the carbon 0, and the
        # JSON out of it unreadable (found by the input audit).
        raise UserError(f"{where}.{key}: expected a finite number, got {value!r}")
    return value


def _unknown(table: dict, allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise UserError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(allowed)})")


def load_carbon(path: str | Path, calendar: Calendar = UTC) -> CarbonData:
    """The data file, validated: errors name the file, the entry and the key. A date is the site's midnight
    (`calendar`: its time zone)."""
    p = Path(path)
    doc = read_toml(p, "carbon data file")  # as every TOML file is read (a BOM, bytes that are not UTF-8)
    _unknown(doc, ("region", "emission_factor", "green_energy"), str(p))
    data = CarbonData(region=str(doc.get("region", "")), path=str(p))
    for key in ("emission_factor", "green_energy"):
        if not isinstance(doc.get(key, []), list) or not all(isinstance(t, dict) for t in doc.get(key, [])):
            # [emission_factor] (a table) where [[emission_factor]] (an array of tables) is meant: its keys were
            # read as entries ("unknown key 'e'"; found by the input audit).
            what = ("a table" if isinstance(doc[key], dict) else "a list of values" if isinstance(doc[key], list)
                    else repr(doc[key]))
            raise UserError(f"{p}: {key}: must be an array of tables, [[{key}]] (one per entry), not {what}")
    seen: set[tuple[str, int]] = set()
    for i, t in enumerate(doc.get("emission_factor", [])):
        where = f"{p}: emission_factor[{i}]"
        _unknown(t, ("region", "year", "kg_co2e_per_kwh", "source"), where)
        f = EmissionFactor(_get(t, "region", str, where), _get(t, "year", int, where),
                           _get(t, "kg_co2e_per_kwh", float, where), _get(t, "source", str, where).strip())
        if not f.source:
            raise UserError(f"{where}.source: give where the factor comes from (publisher, document, table)")
        if not 0 <= f.kg_co2e_per_kwh < 10:
            raise UserError(f"{where}.kg_co2e_per_kwh: expected 0 to 10 kg CO2e per kWh, got {f.kg_co2e_per_kwh}")
        if (f.region, f.year) in seen:
            raise UserError(f"{where}: a second factor for region {f.region!r} and year {f.year}")
        seen.add((f.region, f.year))
        data.factors.append(f)
    ids: set[str] = set()
    for i, t in enumerate(doc.get("green_energy", [])):
        where = f"{p}: green_energy[{i}]"
        _unknown(t, ("kind", "id", "start", "end", "mwh", "source"), where)
        kind = _get(t, "kind", str, where)
        if kind not in GREEN_KINDS:
            raise UserError(f"{where}.kind: expected one of {', '.join(GREEN_KINDS)}, got {kind!r}")
        times = []
        for key in ("start", "end"):
            value = t.get(key)
            text = value.isoformat() if hasattr(value, "isoformat") else value
            try:
                times.append(calendar.parse_time(str(text)))
            except (TypeError, ValueError):
                raise UserError(f"{where}.{key}: expected a date (the site's midnight, {calendar.zone}) or an RFC 3339 "
                                f"time, got {value!r}") from None
        g = GreenEntry(kind, _get(t, "id", str, where), times[0], times[1], _get(t, "mwh", float, where),
                       _get(t, "source", str, where).strip() if "source" in t else "")
        if g.end_ns <= g.start_ns:
            raise UserError(f"{where}: end must be after start")
        if not 0 <= g.mwh <= MAX_GREEN_MWH:
            raise UserError(f"{where}.mwh: expected 0 to {MAX_GREEN_MWH:g} MWh (one certificate or PPA), got {g.mwh}")
        if g.id in ids:
            raise UserError(f"{where}.id: {g.id!r} is entered twice (a certificate counts once)")
        ids.add(g.id)
        data.green.append(g)
    if data.factors and not data.region:
        raise UserError(f"{p}: give `region` (the site's grid region; which emission factors apply)")
    return data


NO_CARBON_FILE = "no carbon data file given (puewatch report --carbon FILE: the grid's emission factors)"


@dataclass(frozen=True)
class YearPart:
    """The part of a report's period in one calendar year (the site's) and its energies (from the monthly rows)."""

    year: int
    start_ns: int
    end_ns: int
    facility_wh: float  # E_DC in it (months without data count none, as in the period's E_DC)
    renewable_wh: float | None  # the renewable meters' energy in it; None: not known


def year_parts(start_ns: int, end_ns: int, month_starts_ns: list[int], facility_wh: list[float | None],
               renewable_wh: list[float | None] | None, calendar: Calendar = UTC) -> list[YearPart]:
    """The period's calendar years (`calendar`: the site's), each with the sums of the monthly rows starting
    in it (a month never crosses a year). `renewable_wh` None: the site has no renewable meter (0 in every
    year)."""
    out = []
    for year in range(calendar.year(start_ns), calendar.year(end_ns - 1) + 1):
        lo, hi = calendar.year_bounds(year)
        rows = [k for k, t in enumerate(month_starts_ns) if lo <= t < hi]
        fac = sum(facility_wh[k] or 0.0 for k in rows)
        if renewable_wh is None:
            ren: float | None = 0.0
        else:
            parts = [renewable_wh[k] for k in rows]
            ren = None if any(x is None for x in parts) and fac > 0 else sum(x or 0.0 for x in parts)
        out.append(YearPart(year, max(start_ns, lo), min(end_ns, hi), fac, ren))
    return out


def carbon_row(e_dc_wh: float | None, e_it_wh: float | None, ref: float | None, renewable_meters: list[str],
               years: list[YearPart], data: CarbonData, start_ns: int, end_ns: int) -> CarbonRow:
    """The period's green share, carbon and CUE, with where each figure comes from.

    Green energy, year by year: the renewable meters' plus the certificates and PPAs (each spread
    evenly in time over its own period), capped at that year's E_DC. Carbon: each year's grid part
    (its E_DC less its green energy) times the region's factor for that year; green energy counts
    as emitting none. CUE (ISO/IEC 30134-8) = kg CO2e of the data centre's energy / kWh of IT
    energy. Unknown is None with the reason, never 0.
    """
    from puewatch.core.timefmt import format_time
    from puewatch.report.model import CarbonRow, EmissionFactorRow, GreenEntryRow

    def entries_wh(lo: int, hi: int, g: GreenEntry) -> float:
        return float(CarbonData(green=[g]).green_wh(np.array([lo, hi], dtype=np.int64))[0])

    entries = [GreenEntryRow(g.kind, g.id, format_time(g.start_ns), format_time(g.end_ns), g.mwh, g.source,
                             entries_wh(start_ns, end_ns, g))
               for g in data.green if g.start_ns < end_ns and g.end_ns > start_ns]
    # REF is null without renewable meters (no green energy from meters) or when their energy is not known.
    meters_wh = ref * e_dc_wh if ref is not None and e_dc_wh is not None else (None if renewable_meters else 0.0)
    row = CarbonRow(green_energy_wh=None, green_share=None, carbon_kg=None, cue_kg_per_kwh=None, emission_factors=[],
                    carbon_region=data.region, renewable_meters=list(renewable_meters), renewable_meters_wh=meters_wh,
                    green_entries=entries, green_capped_wh=0.0, carbon_unknown=None, cue_unknown=None)
    if e_dc_wh is None or e_dc_wh <= 0:
        row.carbon_unknown = row.cue_unknown = "facility energy (E_DC) not known for the period"
        return row
    green, offered, grid, used, missing = 0.0, 0.0, [], [], None
    for y in years:
        y_offered = ((y.renewable_wh or 0.0) if meters_wh is not None else 0.0) + sum(
            entries_wh(y.start_ns, y.end_ns, g) for g in data.green)
        y_green = min(y_offered, y.facility_wh)
        green, offered = green + y_green, offered + y_offered
        grid.append(y.facility_wh - y_green)
        f = data.factor(y.year)
        if f is None and missing is None:
            missing = (f"no emission factor for region {data.region!r} and year {y.year} in {data.path}"
                       if data.region else f"{data.path} names no region and no emission factor")
        if f is not None:
            used.append(EmissionFactorRow(f.region, f.year, f.kg_co2e_per_kwh, f.source,
                                          (y.end_ns - y.start_ns) / (end_ns - start_ns), y.facility_wh, y_green))
    row.green_energy_wh, row.green_share, row.green_capped_wh = green, green / e_dc_wh, offered - green
    if missing is not None:
        row.carbon_unknown = row.cue_unknown = missing
        return row
    row.emission_factors = used
    row.carbon_kg = sum(g * f.kg_co2e_per_kwh / 1000.0 for g, f in zip(grid, used))
    if e_it_wh is None or e_it_wh <= 0:
        row.cue_unknown = "IT energy (E_IT) not known for the period"
    else:
        row.cue_kg_per_kwh = row.carbon_kg / (e_it_wh / 1000.0)
    return row


def report_years(document: dict[str, Any], renewable_monthly_wh: list[float | None] | None) -> list[YearPart]:
    """`year_parts` of a report's JSON document (its `monthly` rows, in its calendar: `timezone`)."""
    from puewatch.core.timefmt import parse_time

    start, end = parse_time(document["period_start"]), parse_time(document["period_end"])
    monthly = document.get("monthly") or []
    return year_parts(start, end, [parse_time(r["period_start"]) for r in monthly],
                      [r["facility_energy_wh"] for r in monthly], renewable_monthly_wh, document_calendar(document))


def document_calendar(document: dict[str, Any]) -> Calendar:
    """`timefmt.calendar_of`, its error a UserError."""
    from puewatch.core.timefmt import calendar_of

    try:
        return calendar_of(document)
    except ValueError as exc:
        raise UserError(f"timezone: {exc}") from None


def report_carbon(document: dict[str, Any], data: CarbonData | None, start_ns: int, end_ns: int) -> dict[str, Any]:
    """`carbon_row` of a report-like document holding only the period's figures (E_DC, E_IT, REF):
    its energies are split among the years by time. `puewatch report --carbon` uses the monthly rows
    instead (`report_years`)."""
    renewable = [m["meter"] for m in document.get("meters", []) if m.get("role") == "renewable"]
    e_dc, ref = document.get("facility_energy_wh"), document.get("ref")
    span = end_ns - start_ns
    years = [YearPart(y.year, y.start_ns, y.end_ns, (e_dc or 0.0) * (y.end_ns - y.start_ns) / span,
                      None if ref is None or e_dc is None else ref * e_dc * (y.end_ns - y.start_ns) / span)
             for y in year_parts(start_ns, end_ns, [], [], None, document_calendar(document))]
    row = carbon_row(e_dc, document.get("it_energy_wh"), ref, renewable, years,
                     data if data is not None else CarbonData(), start_ns, end_ns)
    return row.to_dict()
