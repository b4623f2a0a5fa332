"""The report as typed rows (docs/report-schema.md is the contract), and its one serialisation.

`Report.to_dict()` gives the JSON document field for field, in the schema's order: what
`puewatch report --json` writes, `puewatch sign` signs and the city tools read. Energies are Wh
(water L), ratios plain numbers; None is JSON null (unknown), never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["CarbonRow", "EmissionFactorRow", "Gap", "GreenEntryRow", "MeterRow", "PeriodRow", "PollCounts", "Report", "ReportFigures",
           "ZoneRow"]


def _plain(value: Any) -> Any:
    if isinstance(value, _Row):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Row:
    def to_dict(self) -> dict[str, Any]:
        """The row as the schema's JSON object (fields in declaration order; those marked
        `serialised=False` are for in-process use only)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)  # type: ignore[arg-type]
                if f.metadata.get("serialised", True)}


@dataclass
class Gap(_Row):
    """A stretch of the period in which a meter was not observed (UTC, RFC 3339)."""

    start: str
    end: str


@dataclass
class PollCounts(_Row):
    """A device's polls in a report's period: how many were recorded, and the failed ones by cause."""

    recorded: int
    failed: int
    causes: dict[str, int]  # cause (schema.SNMP_POLL_CAUSES) -> failed polls


@dataclass
class MeterRow(_Row):
    meter: str
    role: str
    zone: str
    point: str
    energy_wh: float | None
    estimated_wh: float | None
    method: str | None  # register, integrated, mixed; None: no data
    completeness: float
    gaps: list[Gap]
    resets: int
    accuracy_pct: float | None
    modulus_wh: float | None
    power_limit_w: float | None
    power_limit_source: str
    register_intervals: dict[str, int]  # outcome (core.energy.OUTCOMES) -> intervals in the period
    power_readings_refused: int
    register_readings_refused: int
    # An SNMP meter's device's polls in the period, as the collector recorded them (null: not an SNMP meter,
    # or the input holds no poll records, as an export CSV does not).
    polls: PollCounts | None = None


@dataclass
class ZoneRow(_Row):
    zone: str
    ppue: float | None
    boundary_energy_wh: float | None
    it_energy_wh: float | None
    completeness: float
    ppue_joint: float | None
    boundary_energy_joint_wh: float | None
    it_energy_joint_wh: float | None


@dataclass
class PeriodRow(_Row):
    """One month or one day of the period (the first and last may be partial)."""

    period_start: str
    period_end: str
    pue: float | None
    facility_energy_wh: float | None
    it_energy_wh: float | None
    completeness: float
    pue_joint: float | None
    facility_energy_joint_wh: float | None
    it_energy_joint_wh: float | None


@dataclass
class EmissionFactorRow(_Row):
    """A grid emission factor used, from the operator's carbon data file, with its source."""

    region: str
    year: int  # calendar year (the site's: Report.timezone)
    kg_co2e_per_kwh: float
    source: str
    period_share: float  # the share of the report's period's time in this year
    facility_energy_wh: float  # E_DC in this year's part of the period (the monthly rows')
    green_energy_wh: float  # green energy in it (capped at that E_DC); the factor weighs the rest


@dataclass
class GreenEntryRow(_Row):
    """A green certificate or PPA delivery of the carbon data file that overlaps the period."""

    kind: str  # certificate | ppa
    id: str
    start: str  # the entry's own period (UTC, RFC 3339; end excluded)
    end: str
    mwh: float  # over its own period
    source: str
    energy_in_period_wh: float  # its part inside the report's period (spread evenly in time)


@dataclass
class CarbonRow(_Row):
    """Green share, carbon and CUE of the period (`report --carbon`): added to the report's fields
    as they are (flat), after the others, before signing. None is unknown, never 0."""

    green_energy_wh: float | None  # renewable meters + entries, capped at E_DC in each year
    green_share: float | None  # green_energy_wh / E_DC
    carbon_kg: float | None  # sum over years of (E_DC - green) x the year's factor, kg CO2e
    cue_kg_per_kwh: float | None  # ISO/IEC 30134-8: carbon_kg / E_IT in kWh
    emission_factors: list[EmissionFactorRow]
    carbon_region: str  # the site's grid region (the data file's `region`)
    renewable_meters: list[str]  # the site's renewable meters (REF's numerator)
    renewable_meters_wh: float | None  # REF x E_DC; None: not known (then counted as no green energy)
    green_entries: list[GreenEntryRow]
    green_capped_wh: float  # green energy above E_DC, not counted (0 unless more was retired than used)
    carbon_unknown: str | None  # why carbon_kg (and CUE) are null; None when they are known
    cue_unknown: str | None  # why cue_kg_per_kwh is null


@dataclass
class ReportFigures:
    """What the HTML figures need beyond the schema (not serialised)."""

    # The figures' bins: a day over a long period, finer over a short one (`figure_step_ns`).
    edges_ns: list[int]  # bin edges, the period's start to its end
    step: str  # the bins' length in words ("1 day", "15 min", ...)
    pue: list[float | None]  # PUE per bin (E_DC / E_IT of the bin); None where unknown
    pue_joint: list[float | None]  # PUE over the bin's jointly observed time; None where there is none
    roles: dict[str, list[float | None]]  # role -> energy per bin, Wh (L); None where unknown
    completeness: dict[str, list[float]]  # meter -> share of each bin it was observed


@dataclass
class Report(_Row):
    schema: str
    site: str
    period_start: str
    period_end: str
    timezone: str  # the site's calendar ([collector] timezone): its days, months and years
    annual: bool
    category: int
    label: str
    pue: float | None
    pue_uncertainty: float | None
    facility_energy_wh: float | None
    it_energy_wh: float | None
    pue_joint: float | None
    pue_joint_uncertainty: float | None
    facility_energy_joint_wh: float | None
    it_energy_joint_wh: float | None
    completeness: float
    estimated_share: float | None
    clf: float | None
    plf: float | None
    erf: float | None
    ref: float | None
    cop: float | None
    wue: float | None
    zones: list[ZoneRow]
    meters: list[MeterRow]
    warnings: list[str]
    monthly: list[PeriodRow]
    daily: list[PeriodRow]
    generated_at: str
    generator: str
    source: dict[str, Any]
    figures: ReportFigures | None = field(default=None, compare=False, metadata={"serialised": False})
    # The renewable meters' energy per row of `monthly`, Wh (None: unknown or no such meter): what
    # `report --carbon` splits green energy by year with (not serialised; REF is the period's).
    renewable_monthly_wh: list[float | None] | None = field(default=None, compare=False,
                                                            metadata={"serialised": False})
