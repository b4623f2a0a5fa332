"""Meter profiles: what to read from an SNMP power device, as data files.

A profile (``config/profiles/*.toml``, installed as package ``puewatch.profiles``)
says which devices it fits (sysObjectID prefixes, OID subtrees that must exist)
and which objects hold power and energy: a scalar OID or a table column, the
unit and the scale that turns the raw integer into W or Wh, whether it is a
gauge or a cumulative register (and where that register wraps), the sentinels
that mean "not supported", and how table rows are chosen and scaled. Adding a
PDU model is one new file; no code changes.

The schema is a set of dataclasses validated by `puewatch.config`, so every
error names the file, the key and what is allowed, in one line. Semantic checks
the types cannot express (units per quantity, totals that name real readings,
one of ``oid``/``column``) are in the models' ``check()`` methods.

Scaling a raw value (in this order)::

    value = raw * scale
            * units[unit text]                   # variable tables: the row's unit (e.g. kW -> 1000)
            * 10 ** (3 * (entity_scale - 9))     # ENTITY-SENSOR-MIB EntitySensorDataScale
            / 10 ** precision                    # ENTITY-SENSOR-MIB precision (>= 0 only)
            / 10 ** decimal_digits               # Raritan PDU2 *SensorDecimalDigits
            * signed_factor (n > 0) or / -n (n < 0)  # RITTAL-CMC-III-MIB cmcIIIVarScale

where the per-row numbers come from the named columns at the row's index, read
when the device is (re)discovered.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from puewatch import config as cfg
from puewatch.config import setting
from puewatch.core import schema
from puewatch.core.site import LOCATIONS, Meter
from puewatch.errors import ConfigError

#: The unit a reading of each quantity must be converted to (power always W, energy always Wh).
# Quantities that count up (registers): never a gauge.
ENERGY_QUANTITIES = ("active_energy", "apparent_energy")
QUANTITY_UNITS: dict[str, str] = {
    "active_power": "W",
    "apparent_power": "VA",
    "reactive_power": "var",
    "active_energy": "Wh",
    "apparent_energy": "VAh",
    "current": "A",
    "voltage": "V",
    "frequency": "Hz",
    "power_factor": "1",
    "load": "%",
    # The device's rating (nameplate or configured output capacity): a scalar named like its
    # quantity, read as the power limit of the meters on the device (puewatch.core.energy).
    "rated_power": "W",
    "rated_apparent_power": "VA",
}

#: The most one SNMP device of a profile that declares no other bound can carry (W, VA): a UPS system's output.
#: Above it a reading is not a measurement (a scale or filler read as watts: Liebert text "99999999999" kW).
DEVICE_MAX_W = 5e6

#: Raw values whose bits are all ones in a 16, 31, 32, 63 or 64-bit field: what agents answer when a value is not
#: available, declared in a MIB or not (UPS-MIB upsOutputPower 65535, Raritan 4294967295, Enlogic 2147483647,
#: a Counter64 at 2^64 - 1; found by the SNMP audit on captures no profile declared a filler for). As floats:
#: 2^63 - 1 and 2^64 - 1 are 2^63 and 2^64 (and so is every raw value within a few thousand of them).
ALL_ONES = {2.0**16 - 1: 16, 2.0**31 - 1: 31, 2.0**32 - 1: 32, 2.0**63: 63, 2.0**64: 64}  # value -> its bits

_OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME_FIELDS = re.compile(r"\{([a-z0-9_]*)\}")


def check_range(bounds: Sequence[float]) -> str | None:
    """None if `bounds` is empty or `[min, max]` with min <= max, else why not."""
    if bounds and (len(bounds) != 2 or not bounds[0] <= bounds[1]):
        return f"must be [min, max] with min <= max (the MIB object's SYNTAX range), got {list(bounds)}"
    return None


def check_oid(value: str) -> str | None:
    """None if `value` is a numeric OID (no leading dot), else why not."""
    if not _OID_RE.match(value):
        return f"must be a numeric OID like 1.3.6.1.2.1.1.2.0 (no leading dot), got {value!r}"
    return None


def check_oids(obj: object, *names: str) -> list[tuple[str, str]]:
    """[(name, why)] for the first of `obj`'s fields `names` that is not a numeric OID, else []."""
    for name in names:
        problem = check_oid(getattr(obj, name))
        if problem:
            return [(name, problem)]
    return []


class IndexTooShort(ValueError):
    """A table row's index lacks a component that the reading's name template uses."""


@dataclass
class ProfileInfo:
    """Who the profile is for."""

    name: str = setting(min=1, doc="Profile name, used in configs (`profile = \"...\"`) and `--profile`.")
    description: str = setting("", doc="One line for people: which devices and MIB.")
    mibs: list[str] = setting(default_factory=list, doc="MIB modules the OIDs come from (documentation).")
    generic: bool = setting(False, doc="The readings come from the device's configuration (`oids`), not from this file.")
    max_power_w: float = setting(
        DEVICE_MAX_W, min=1.0, doc="The most one device of this kind can carry, in W (in VA for apparent power): a "
        "power reading above it is refused (`out_of_range`), whatever its MIB range. 5 MW by default (a UPS system); "
        "meters that may sit on a site's feeders declare more."
    )

    def check(self) -> list[tuple[str, str]]:
        if not _KEY_RE.match(self.name.replace("-", "_")):
            return [("name", f"must be lower-case letters, digits, '-' and '_', got {self.name!r}")]
        return []


@dataclass
class Match:
    """How a device is recognised when its config names no profile."""

    sysobjectid_prefixes: list[str] = setting(
        default_factory=list, doc="sysObjectID prefixes (whole arcs) this profile fits; the longest matching prefix wins."
    )
    requires_any: list[str] = setting(
        default_factory=list,
        doc="OID subtrees of which at least one must exist on the device (checked with GETNEXT) for the profile to apply.",
    )
    fallback: bool = setting(
        False, doc="Also try this profile for devices whose sysObjectID matches no profile (standard MIBs: UPS-MIB, ENTITY-SENSOR-MIB)."
    )
    priority: int = setting(0, min=-1000, max=1000, doc="Order among candidates of equal prefix length (higher first).")

    def check(self) -> list[tuple[str, str]]:
        for name in ("sysobjectid_prefixes", "requires_any"):
            for i, oid in enumerate(getattr(self, name)):
                problem = check_oid(oid)
                if problem:
                    return [(f"{name}[{i}]", problem)]
        if self.fallback and not self.requires_any:
            return [("requires_any", "a fallback profile must name OID subtrees to check (requires_any)")]
        return []


@dataclass
class IndexFilter:
    """Keep table rows whose index has one of `values` at `position`."""

    position: int = setting(doc="1-based position in the row index (negative counts from the end: -1 is the last).")
    values: list[int] = setting(min=1, doc="Allowed index values at that position.")

    def check(self) -> list[tuple[str, str]]:
        if self.position == 0:
            return [("position", "must not be 0 (1 is the first index component, -1 the last)")]
        return []


@dataclass
class RowFilter:
    """Keep table rows where another column at the row's index (or at the row it points to) has one of `values`."""

    column: str = setting(doc="Column OID (without index) whose value is tested.")
    values: list[int] = setting(default_factory=list, doc="Allowed values (integers, e.g. enumerations).")
    range: list[int] = setting(
        default_factory=list,
        doc="Allowed values as `[min, max]` (e.g. the SYNTAX range of an outlet number, whose 0 marks an unused row); "
        "set `values` or `range`.",
    )
    via: str = setting(
        "",
        doc="Pointer column: its value at the row's index is the index at which `column` is read "
        "(e.g. entPhysicalContainedIn, to test the parent's entPhysicalClass).",
    )

    def check(self) -> list[tuple[str, str]]:
        for name in ("column", "via"):
            value = getattr(self, name)
            if value or name == "column":
                problem = check_oid(value)
                if problem:
                    return [(name, problem)]
        if bool(self.values) == bool(self.range):
            return [("values", "set exactly one of `values` (allowed values) and `range` ([min, max])")]
        problem = check_range(self.range)
        if problem:
            return [("range", problem)]
        return []

    def keeps(self, value: int | None) -> bool:
        """True if a row whose tested column holds `value` (None: absent or not a number) is kept."""
        if value is None:
            return False
        if self.range:
            return self.range[0] <= value <= self.range[1]
        return value in self.values


@dataclass
class ApparentCheck:
    """A true power checked against the volts and amps of its own row (polled with it): no power is more than
    its line's volts x amps (a power factor above 1), and none a sliver of them (UPS-MIB agents that do not
    measure a line's power answer 1 W or 0 W at 7 A and 230 V: found by the SNMP audit)."""

    voltage: str = setting(doc="Column OID (without index) of the row's RMS voltage.")
    current: str = setting(doc="Column OID (without index) of the row's RMS current.")
    voltage_scale: float = setting(1.0, min=1e-9, doc="Volts per raw unit of `voltage`.")
    current_scale: float = setting(1.0, min=1e-9, doc="Amps per raw unit of `current` (UPS-MIB: 0.1).")
    min_power_factor: float = setting(
        0.2, min=0.0, max=1.0, doc="The lowest power factor taken for a measurement where the line carries at least "
        "`min_apparent_va`; below it the power is not measured (`not_measured`)."
    )
    min_apparent_va: float = setting(
        1000.0, min=0.0, doc="Volts x amps below which a low power factor is possible (an idle line's filter "
        "capacitors draw reactive current): only the upper bound applies there."
    )

    def check(self) -> list[tuple[str, str]]:
        return check_oids(self, "voltage", "current")


#: How much a true power may exceed its row's volts x amps before it is no measurement: the three values are
#: sampled apart (a load step between them), each rounded to its resolution.
APPARENT_SLACK = 1.5


@dataclass
class ReadingSpec:
    """One reading: a scalar OID or a table column (one reading per row)."""

    key: str = setting(min=1, doc="Identifier inside the profile (lower case, digits, '_'); totals refer to it.")
    quantity: str = setting(choices=tuple(QUANTITY_UNITS), doc="What the reading measures.")
    unit: str = setting(min=1, doc="Unit of `value` (must be the quantity's unit: W, Wh, VA, ...).")
    location: str = setting(
        "", choices=("", *LOCATIONS),
        doc="Where the reading sits at the device: " + ", ".join(LOCATIONS) + " (required in a profile file).",
    )
    name: str = setting(
        "",
        doc="Reading name; for a column a template with `{index}` (row index, dots as '_') or `{i1}`, `{i2}`, ... "
        "(index components). Empty: the key (scalar) or `<key>_{index}` (column). A row whose index has fewer "
        "components than the template names is not read: it is logged and counted at discovery (never given a "
        "name with the placeholder left in, which other such rows would share), and the totals that sum the "
        "reading are missing.",
    )
    index_parts: int | None = setting(
        None, min=1, max=128,
        doc="How many components the column's row index has (the MIB table's INDEX clause), where fixed: a name "
        "placeholder `{iN}` or an `index_filter` position beyond it is refused when the profile loads. Unset: "
        "checked per row at discovery.",
    )
    oid: str = setting("", doc="Scalar object instance OID (e.g. `...16.0`). Set exactly one of `oid` and `column`.")
    column: str = setting("", doc="Table column OID (without index): walked with GETBULK at discovery, one reading per row.")
    scale: float = setting(1.0, min=0.0, min_exclusive=True, doc="value = raw x scale (before per-row scaling).")
    kind: str = setting("gauge", choices=("gauge", "register"), doc="gauge: instantaneous; register: cumulative, may wrap or be reset.")
    modulus_raw: float | None = setting(
        None, min=1.0, doc="Where a register wraps, in raw units (4294967296 for Unsigned32); unset: it does not wrap."
    )
    missing_values: list[int] = setting(default_factory=list, doc="Raw values that mean 'not supported' (e.g. -1): "
                                        "reported as missing. A negative one also matches its bits read unsigned "
                                        "(-1: 4294967295 from a Gauge32 or Unsigned32, 2^64 - 1 from a Counter64).")
    missing_below: float | None = setting(None, doc="Raw values below this mean 'not available' (e.g. 0 for 'negative = unavailable').")
    raw_range: list[float] = setting(
        default_factory=list,
        doc="The MIB object's SYNTAX range `[min, max]` in raw units (e.g. `[0, 2147483647]` for NonNegativeInteger, "
        "`[0, 4294967295]` for Unsigned32/Gauge32): a raw value outside it is refused (missing). Empty: no range check.",
    )
    status: str = setting(
        "measured", choices=("measured", "estimated"), doc="estimated: the device derives it (e.g. from a configured voltage)."
    )
    index_filter: list[IndexFilter] = setting(default_factory=list, doc="Keep only rows whose index matches (all filters).")
    where: list[RowFilter] = setting(default_factory=list, doc="Keep only rows where other columns match (all filters), read at discovery.")
    valid_if: RowFilter | None = setting(
        None, doc="Polled with the value: the row's value is missing unless this column (same index) has one of "
        "`values`; an agent without the column at all (no such object) leaves the value as it is."
    )
    zero_valid_if: RowFilter | None = setting(
        None, doc="As `valid_if`, for a raw 0 alone: a 0 is missing unless this column (same index) has one of "
        "`values` (UPS-MIB: an output power of 0 W counts only where the line's percent load is 0 too; agents that do "
        "not measure the power answer 0 under load). Not with `valid_if`."
    )
    apparent_check: ApparentCheck | None = setting(
        None, doc="A true power (W) checked against its row's volts x amps, polled with it (see ApparentCheck); "
        "an agent without those columns leaves the value as it is."
    )
    decimal_digits_column: str = setting("", doc="Column (same index) with the number of decimal digits: value / 10^digits (Raritan PDU2).")
    entity_scale_column: str = setting(
        "", doc="Column (same index) with an EntitySensorDataScale (1 = yocto ... 9 = units ... 17 = yotta): value x 10^(3 (s - 9))."
    )
    entity_precision_column: str = setting(
        "", doc="Column (same index) with an EntitySensorPrecision: value / 10^p for p in 1..9 (0 and negative: no change)."
    )
    # Generic variable tables (RITTAL-CMC-III-MIB cmcIIIVarTable, LIEBERT-GP-FLEXIBLE-MIB): every
    # row is some variable, with its name, unit and scale in other columns of the same row.
    label_column: str = setting("", doc="Column (same index) with the row's name as text; rows are kept where it matches `label_match`.")
    label_match: str = setting("", doc="Regular expression (Python `re.search`) the row's `label_column` text must match.")
    unit_column: str = setting(
        "", doc="Column (same index) with the row's unit as text (a variable table): only rows whose unit is a key "
        "of `units` are this reading, their value multiplied by its factor."
    )
    units: dict[str, float] = setting(
        default_factory=dict,
        doc="With `unit_column`: unit text as the device sends it -> factor into `unit` (e.g. {W = 1, kW = 1000}).",
    )
    signed_factor_column: str = setting(
        "", doc="Column (same index) with a signed scale factor: -n divides the value by n, +n multiplies it "
        "by n, 0 is invalid (RITTAL-CMC-III-MIB cmcIIIVarScale)."
    )
    doc: str = setting("", doc="Where the definition comes from (MIB object, units clause).")

    def check(self) -> list[tuple[str, str]]:
        problem = self._check_variable_table()
        if problem:
            return [problem]
        if not _KEY_RE.match(self.key):
            return [("key", f"must be lower case letters, digits and '_', starting with a letter; got {self.key!r}")]
        want = QUANTITY_UNITS[self.quantity]
        if self.unit != want:
            article = "an" if self.quantity[0] in "aeiou" else "a"
            return [("unit", f"{article} {self.quantity} reading must be in {want!r} (convert with `scale`), got {self.unit!r}")]
        if bool(self.oid) == bool(self.column):
            return [("oid", "set exactly one of `oid` (scalar) and `column` (table)")]
        if self.quantity in schema.SNMP_RATING_READINGS:
            # The device's one rating: a scalar named after it, or the rows of a column (each input's
            # capacity) that a total named after it sums (Profile.check).
            if self.oid and (self.name or self.key) != self.quantity:
                return [("name", f"a {self.quantity} reading must be named {self.quantity!r} (reports read it by that name)")]
            if self.column and (self.name or self.key) == self.quantity:
                return [("name", f"a {self.quantity} column has a row name of its own; the total named "
                                 f"{self.quantity!r} is the device's rating")]
        for name in ("oid", "column", "decimal_digits_column", "entity_scale_column", "entity_precision_column"):
            value = getattr(self, name)
            if value:
                problem = check_oid(value)
                if problem:
                    return [(name, problem)]
        if self.modulus_raw is not None and self.kind != "register":
            return [("modulus_raw", "only a register (kind = \"register\") wraps")]
        if self.quantity in ENERGY_QUANTITIES and self.kind != "register":
            # A gauge is read as a rate and integrated: its Wh would count as W (found by the SNMP operator audit).
            return [("kind", f"an {self.quantity} reading counts up: kind = \"register\" (a gauge is integrated as a rate)")]
        problem = check_range(self.raw_range)
        if problem:
            return [("raw_range", problem)]
        if self.oid:
            for name in ("index_filter", "where", "decimal_digits_column", "entity_scale_column", "entity_precision_column"):
                if getattr(self, name):
                    return [(name, "applies to table columns only (set `column`, not `oid`)")]
            for name in ("valid_if", "zero_valid_if"):
                if getattr(self, name) is not None:
                    return [(name, "applies to table columns only (set `column`, not `oid`)")]
        if self.apparent_check is not None and (self.oid or self.unit != "W"):
            return [("apparent_check", "applies to table columns of true power (unit W) only")]
        for name in ("valid_if", "zero_valid_if"):
            flt = getattr(self, name)
            if flt is not None and flt.via:
                return [(f"{name}.via", f"is not supported here: {name} is read at the row's own index")]
        if self.valid_if is not None and self.zero_valid_if is not None:
            return [("zero_valid_if", "set `valid_if` or `zero_valid_if`, not both")]
        fields = set(_NAME_FIELDS.findall(self.name))
        bad = [f for f in fields if not (f == "index" or re.fullmatch(r"i[1-9][0-9]*", f))]
        if bad:
            return [("name", f"unknown placeholder {{{bad[0]}}}; use {{index}} or {{i1}}, {{i2}}, ...")]
        if self.oid and fields:
            return [("name", "a scalar reading's name cannot have placeholders")]
        if self.column and self.name and not fields:
            return [("name", "a column reading's name needs {index} or {i1}, ... so that rows get distinct names")]
        if self.index_parts is not None:
            if self.oid:
                return [("index_parts", "applies to table columns only (set `column`, not `oid`)")]
            if self.parts_named() > self.index_parts:
                return [("name", f"{{i{self.parts_named()}}} names index component {self.parts_named()}, but the "
                                 f"row index has {self.index_parts} (index_parts)")]
            for i, flt in enumerate(self.index_filter):
                if abs(flt.position) > self.index_parts:
                    return [(f"index_filter[{i}].position", f"{flt.position} is beyond the row index's "
                                                             f"{self.index_parts} components (index_parts)")]
        return []

    def _check_variable_table(self) -> tuple[str, str] | None:
        for name in ("label_column", "unit_column", "signed_factor_column"):
            value = getattr(self, name)
            if value:
                if self.oid:
                    return (name, "applies to table columns only (set `column`, not `oid`)")
                problem = check_oid(value)
                if problem:
                    return (name, problem)
        if bool(self.label_column) != bool(self.label_match):
            return ("label_match", "set both `label_column` and `label_match`, or neither")
        if self.label_match:
            try:
                re.compile(self.label_match)
            except re.error as exc:
                return ("label_match", f"not a regular expression: {exc}")
        if bool(self.unit_column) != bool(self.units):
            return ("units", "set both `unit_column` and `units` (unit text -> factor), or neither")
        for text, factor in self.units.items():
            if not (math.isfinite(factor) and factor > 0):
                return (f"units.{text}", f"must be a factor > 0, got {factor}")
            if text == self.unit and factor != 1:
                return (f"units.{text}", f"is the reading's own unit: its factor must be 1, got {factor}")
        return None

    def template(self) -> str:
        """The reading's name: a scalar's, or a column's with its placeholders (`outlet{index}_active_power`)."""
        if self.oid:
            return self.name or self.key
        return self.name or f"{self.key}_{{index}}"

    def parts_named(self) -> int:
        """The highest index component the name uses (`{i3}`: 3); 0 when it names none."""
        return max((int(f[1:]) for f in _NAME_FIELDS.findall(self.template()) if f[1:].isdigit()), default=0)

    def name_for(self, index: str) -> str:
        """The reading name of the row at `index` (dotted), or of the scalar when `index` is empty.

        Raises IndexTooShort when the index has fewer components than the name uses: a name with
        `{i3}` left in would be every such row's name, one series for several rows.
        """
        template = self.template()
        if self.oid:
            return template
        parts = index.split(".")
        if self.parts_named() > len(parts):
            raise IndexTooShort(
                f"reading {self.key!r}: row index {index} has {len(parts)} component(s), but its name "
                f"{template!r} uses {{i{self.parts_named()}}}")

        def sub(m: re.Match[str]) -> str:
            f = m.group(1)
            if f == "index":
                return index.replace(".", "_")
            return parts[int(f[1:]) - 1]

        return _NAME_FIELDS.sub(sub, template)



@dataclass
class TotalSpec:
    """A device total: the sum of the valid rows of the `sum` readings, else of the first `fallback` reading with any."""

    name: str = setting(doc="Total name, e.g. `total_active_power` or `total_active_energy`.")
    quantity: str = setting(choices=tuple(QUANTITY_UNITS), doc="What the total measures (its sources must measure the same).")
    sum: list[str] = setting(
        min=1,
        doc="Reading keys whose rows are added up. Rows without a value (a 'not supported' sentinel, `valid_if` "
        "false, the object absent) are left out; a row that could not be read (an error) makes the total missing.",
    )
    location: str = setting(
        "total", choices=LOCATIONS, doc="Where the total sits at the device (a UPS's output total: `ups_output`)."
    )
    fallback: list[str] = setting(
        default_factory=list,
        doc="Reading keys tried in order when no row of `sum` has a value (e.g. a legacy object that the device "
        "estimates); the first with a valid row is summed the same way.",
    )

    def check(self) -> list[tuple[str, str]]:
        if not _KEY_RE.match(self.name):
            return [("name", f"must be lower case letters, digits and '_', got {self.name!r}")]
        return []

    @property
    def sources(self) -> list[str]:
        return [*self.sum, *self.fallback]


@dataclass
class ReadingsFrom:
    """Take every reading and total of another profile, its OIDs moved to another subtree.

    For vendors that ship one MIB under two enterprise arcs (Conteg's CONTEG-DATABUS-MIB is
    Schleifenbauer's databus model): the objects, units and ranges are written once.
    """

    profile: str = setting(min=1, doc="Name of the profile whose readings and totals are taken.")
    subtree: str = setting(doc="The OID subtree of that profile's objects (every OID it reads lies below it).")
    moved_to: str = setting(doc="The subtree that replaces it here.")

    def check(self) -> list[tuple[str, str]]:
        return check_oids(self, "subtree", "moved_to")


@dataclass
class Profile:
    """A meter profile file (`config/profiles/*.toml`)."""

    profile: ProfileInfo = setting(doc="Name and description.")
    match: Match = setting(default_factory=Match, doc="How devices are recognised.")
    readings: list[ReadingSpec] = setting(default_factory=list, doc="The readings.")
    totals: list[TotalSpec] = setting(default_factory=list, doc="Device totals.")
    readings_from: ReadingsFrom | None = setting(
        None, doc="Take the readings and totals of another profile with its OIDs moved (the same MIB under another arc)."
    )
    source: str = field(default="<profile>", init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.profile.name

    def reading(self, key: str) -> ReadingSpec:
        for spec in self.readings:
            if spec.key == key:
                return spec
        raise KeyError(key)

    def check(self) -> list[tuple[str, str]]:
        if self.readings_from is not None:
            if self.readings or self.totals:
                return [("readings", f"the readings and totals come from profile {self.readings_from.profile!r} "
                                     "(readings_from): list none here")]
            if not self.match.requires_any:
                return [("match.requires_any", "name the subtrees to check on the device (this profile's own OIDs)")]
            return []  # checked once the readings are taken (resolve_readings_from)
        keys: dict[str, int] = {}
        shown: dict[str, int] = {}
        for i, spec in enumerate(self.readings):
            if spec.key in keys:
                return [(f"readings[{i}].key", f"duplicate key {spec.key!r} (also readings[{keys[spec.key]}])")]
            keys[spec.key] = i
            # Two readings of one name are one stored series: a W and a Wh reading both named `outlet_energy`
            # loaded (found by the SNMP operator audit). One name for one quantity is allowed: the tables of two
            # generations of a MIB, of which a device has one (hpe-cpqpower).
            name = spec.template()
            other = self.readings[shown[name]] if name in shown else None
            if other is not None and (other.quantity, other.unit) != (spec.quantity, spec.unit):
                return [(f"readings[{i}].name", f"reading name {name!r} is readings[{shown[name]}]'s too, which "
                                                f"measures {other.quantity}: their values would be one series")]
            shown.setdefault(name, i)
        if not self.profile.generic:
            for i, spec in enumerate(self.readings):
                if not spec.location:
                    return [(f"readings[{i}].location", f"say where {spec.key!r} sits at the device: one of {', '.join(LOCATIONS)}")]
        by_key = {s.key: s for s in self.readings}
        names: set[str] = set()
        for i, total in enumerate(self.totals):
            if total.name in names:
                return [(f"totals[{i}].name", f"duplicate total {total.name!r}")]
            names.add(total.name)
            for where in ("sum", "fallback"):
                for j, src in enumerate(getattr(total, where)):
                    spec = by_key.get(src)
                    if spec is None:
                        allowed = ", ".join(sorted(by_key)) or "(no readings)"
                        return [(f"totals[{i}].{where}[{j}]", f"no reading with key {src!r}; keys: {allowed}")]
                    if spec.quantity != total.quantity:
                        return [(f"totals[{i}].{where}[{j}]", f"reading {src!r} measures {spec.quantity}, the total {total.quantity}")]
        if not self.profile.generic:
            # A device that measures no active power (only VA, or energy per outlet) has no power
            # total: it is never made up from apparent power.
            if "total_active_power" not in names and any(r.quantity == "active_power" for r in self.readings):
                return [("totals", "every profile must define a total named 'total_active_power'")]
            if not self.readings:
                return [("readings", "a profile needs at least one reading (or `generic = true`)")]
        elif self.readings or self.totals:
            return [("readings", "a generic profile takes its readings from the device's `oids`; list none here")]
        for i, spec in enumerate(self.readings):
            if spec.column and spec.quantity in schema.SNMP_RATING_READINGS and not any(
                    t.name == spec.quantity and spec.key in t.sum for t in self.totals):
                return [(f"readings[{i}].column", f"a {spec.quantity} column (a capacity per row) needs a total named "
                                                   f"{spec.quantity!r} that sums it: the device's one rating")]
        for name in names & {"total_active_power", "total_active_energy", *schema.SNMP_RATING_READINGS}:
            want = {"total_active_power": "active_power", "total_active_energy": "active_energy"}.get(name, name)
            total = next(t for t in self.totals if t.name == name)
            if total.quantity != want:
                return [("totals", f"{name} must have quantity {want!r}, got {total.quantity!r}")]
        return []


def _parse(text: str, source: str) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    profile = cfg.build(Profile, data, source)
    profile.source = source
    return profile


def load_profile_file(path: str | Path) -> Profile:
    """Read and validate one profile file; errors name the file and the key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read profile: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return _parse(text, str(path))


def builtin_profile_files() -> list[tuple[str, str]]:
    """(source name, text) of every profile shipped in the `puewatch.profiles` package."""
    out = []
    for entry in sorted(resources.files("puewatch.profiles").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            out.append((f"puewatch.profiles/{entry.name}", entry.read_text(encoding="utf-8")))
    return out


def load_profiles(extra_dirs: Iterable[str | Path] = ()) -> dict[str, Profile]:
    """The shipped profiles plus every `*.toml` in `extra_dirs` (a later file may not reuse a name)."""
    profiles: dict[str, Profile] = {}

    def add(p: Profile) -> None:
        if p.name in profiles:
            raise ConfigError(f"{p.source}: profile.name: {p.name!r} is already defined in {profiles[p.name].source}")
        profiles[p.name] = p

    for source, text in builtin_profile_files():
        add(_parse(text, source))
    for d in extra_dirs:
        d = Path(d)
        if not d.is_dir():
            raise ConfigError(f"{d}: profile directory not found")
        for path in sorted(d.glob("*.toml")):
            add(load_profile_file(path))
    for name, p in list(profiles.items()):
        if p.readings_from is not None:
            profiles[name] = resolve_readings_from(p, profiles)
    return profiles


# Every ReadingSpec field that holds an OID (RowFilter's `column` and `via` are moved too).
_OID_FIELDS = ("oid", "column", "decimal_digits_column", "entity_scale_column", "entity_precision_column",
               "label_column", "unit_column", "signed_factor_column")


def resolve_readings_from(p: Profile, profiles: dict[str, Profile]) -> Profile:
    """`p` with the readings and totals of the profile it names in `readings_from`, OIDs moved."""
    src = p.readings_from
    assert src is not None
    where = f"{p.source}: readings_from.profile"
    base = profiles.get(src.profile)
    if base is None:
        raise ConfigError(f"{where}: no profile named {src.profile!r}; profiles: {', '.join(sorted(profiles))}")
    if base.readings_from is not None:
        raise ConfigError(f"{where}: {src.profile!r} takes its own readings from {base.readings_from.profile!r}; "
                          "name that profile")

    def move(oid: str, key: str) -> str:
        if not oid:
            return oid
        if not oid_startswith(oid, src.subtree):
            raise ConfigError(f"{p.source}: readings_from.subtree: {src.profile!r} {key} {oid} is not below {src.subtree}")
        return src.moved_to + oid[len(src.subtree):]

    def move_filter(f: RowFilter | None, key: str) -> RowFilter | None:
        if f is None:
            return None
        return dataclasses.replace(f, column=move(f.column, key), via=move(f.via, key))

    readings = []
    for spec in base.readings:
        moved = {name: move(getattr(spec, name), f"{spec.key}.{name}") for name in _OID_FIELDS}
        readings.append(dataclasses.replace(
            spec, **moved, where=[move_filter(f, f"{spec.key}.where") for f in spec.where],
            valid_if=move_filter(spec.valid_if, f"{spec.key}.valid_if"),
            zero_valid_if=move_filter(spec.zero_valid_if, f"{spec.key}.zero_valid_if"),
            apparent_check=None if spec.apparent_check is None else dataclasses.replace(
                spec.apparent_check, voltage=move(spec.apparent_check.voltage, f"{spec.key}.apparent_check"),
                current=move(spec.apparent_check.current, f"{spec.key}.apparent_check"))))
    out = dataclasses.replace(p, readings=readings, totals=[dataclasses.replace(t) for t in base.totals])
    out.source = p.source
    return out


def _device_scaled(spec: ReadingSpec) -> bool:
    """Whether the rows of `spec` take a factor the device answers (Raritan decimal digits, ENTITY-SENSOR
    scale and precision, a signed factor, a unit column): the profile alone does not fix their scale."""
    return bool(spec.decimal_digits_column or spec.entity_scale_column or spec.entity_precision_column
                or spec.signed_factor_column or spec.unit_column)


def reading_specs(profile: Profile, reading: str) -> list[ReadingSpec]:
    """The profile's readings that a site file's `reading` names: a scalar by its name, or the columns
    whose name template (`outlet{index}_active_energy`) a row's name matches (empty: none; a total
    is not a reading, see `Profile.totals`)."""
    scalar = [s for s in profile.readings if s.oid and s.name_for("") == reading]
    if scalar:
        return scalar
    return [s for s in profile.readings if s.column and _template_matches(s.template(), reading)]


def _template_matches(template: str, name: str) -> bool:
    """Whether `name` is a row name of a column's name `template`, as `ReadingSpec.name_for` makes them: a
    row index is OID arcs, so `{i1}` ... stand for one arc's digits and `{index}` for all the arcs joined
    by `_` (`unit{i1}_input{i2}_active_energy` names unit0_input1_active_energy, not
    unit0_input1_phase1_active_energy, a row of another column)."""
    pattern = _NAME_FIELDS.sub(lambda m: r"[0-9]+(?:_[0-9]+)*" if m.group(1) == "index" else "[0-9]+",
                               re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
    return re.fullmatch(pattern, name) is not None


def register_step(profile: Profile, reading: str) -> float:
    """One step of a device's `reading` register in its unit, where the profile alone says: the
    common `scale` of the register readings it is made of (a sum of registers that step by q
    steps by q). 0 when a reading's scale comes from the device (Raritan decimal digits,
    ENTITY-SENSOR scale/precision) or the readings differ: no step is then allowed on top of
    the power limit (core.energy)."""
    total = next((t for t in profile.totals if t.name == reading), None)
    if total is None:
        specs = reading_specs(profile, reading)
    else:
        specs = [profile.reading(k) for k in [*total.sum, *total.fallback]]
    if not specs or any(s.kind != "register" or _device_scaled(s) for s in specs):
        return 0.0
    scales = {s.scale for s in specs}
    return scales.pop() if len(scales) == 1 else 0.0


def register_modulus(profile: Profile, reading: str) -> tuple[float | None, str | None]:
    """Where a device's `reading` wraps, in its unit, as the poller computes it, if the profile alone says.

    Returns (modulus, None) when the profile fixes it (modulus None: the reading does not
    wrap), or (None, why) when it depends on what the device answers at run time. The
    poller's rule (`poller.Meter.evaluate` and `_total`): a row wraps at `modulus_raw` x its
    scale (a table's row too, named by its column's template, where the profile fixes the
    column's scale); a total that is one row has that row's modulus; a total of several rows has none
    (a wrap of one row looks like a reset downstream). A table column has as many rows as
    the device has (and Raritan/ENTITY-SENSOR rows a scale read from the device), so a total
    over a column that wraps is known only when the column has no `modulus_raw`.
    """
    def row(spec: ReadingSpec) -> float | None:
        return None if spec.modulus_raw is None else spec.modulus_raw * spec.scale

    total = next((t for t in profile.totals if t.name == reading), None)
    if total is None:
        specs = reading_specs(profile, reading)
        if specs:
            moduli = {row(s) for s in specs}
            if any(_device_scaled(s) for s in specs if s.modulus_raw is not None):
                return None, (f"profile {profile.name!r}: the wrap value of table row reading {reading!r} depends on "
                              "the device (its scale is read from the device)")
            if len(moduli) == 1:
                return moduli.pop(), None
            return None, (f"profile {profile.name!r}: {reading!r} names rows of several columns that wrap at "
                          "different values (" + ", ".join("none" if m is None else f"{m:g}"
                                                           for m in sorted(moduli, key=str)) + ")")
        if not any(s.modulus_raw is not None for s in profile.readings if s.column):
            return None, None  # a table row, and no table of the profile wraps
        return None, f"profile {profile.name!r}: the wrap value of table row reading {reading!r} depends on the device"
    found: set[float | None] = set()
    for group in [total.sum, *([k] for k in total.fallback)]:
        specs = [profile.reading(k) for k in group]
        if all(s.modulus_raw is None for s in specs):
            found.add(None)
        elif len(specs) == 1 and specs[0].oid:
            found.add(row(specs[0]))
        elif all(s.oid for s in specs):
            found.add(None)  # several scalar rows: a sum, which does not wrap
        else:
            return None, (f"profile {profile.name!r}: {reading} sums the rows of a table that wraps "
                          f"(modulus_raw {next(s.modulus_raw for s in specs if s.modulus_raw is not None):g}); "
                          "it wraps only if the device has one row")
    if len(found) == 1:
        return found.pop(), None
    return None, (f"profile {profile.name!r}: {reading} wraps at a value that depends on which of its readings the "
                  "device answers (" + ", ".join("none" if m is None else f"{m:g}" for m in sorted(found, key=str)) + ")")


def oid_startswith(oid: str, prefix: str) -> bool:
    """True if `oid` is `prefix` or below it (whole arcs: 1.3.6.1.4.1.31 is not below 1.3.6.1.4.1.3)."""
    return oid == prefix or oid.startswith(prefix + ".")


def sys_object_id(value: object) -> str | None:
    """A device's sysObjectID as a dotted OID: as sent (OBJECT IDENTIFIER), or from the text some
    agents send instead (OCTET STRING, often with a leading dot: ".1.3.6.1.4.1.232.165.11").
    None when it is neither."""
    if not isinstance(value, str):
        return None
    text = value.strip().lstrip(".")
    return text if _OID_RE.match(text) else None


def candidates(profiles: dict[str, Profile], sys_object_id: str) -> list[Profile]:
    """Profiles that may fit a device, best first: longest sysObjectID prefix, then priority; then fallbacks.

    The caller checks each candidate's `match.requires_any` on the device and takes the first that passes.
    """
    ranked: list[tuple[int, int, str, Profile]] = []
    seen: set[str] = set()
    for p in profiles.values():
        best = max((len(px.split(".")) for px in p.match.sysobjectid_prefixes if oid_startswith(sys_object_id, px)), default=0)
        if best:
            ranked.append((best, p.match.priority, p.name, p))
            seen.add(p.name)
    ranked.sort(key=lambda r: (-r[0], -r[1], r[2]))
    fallbacks = sorted(
        (p for p in profiles.values() if p.match.fallback and p.name not in seen), key=lambda p: (-p.match.priority, p.name)
    )
    return [r[3] for r in ranked] + fallbacks


# --- scaling -----------------------------------------------------------------


def entity_scale_factor(scale_enum: int) -> float:
    """EntitySensorDataScale (RFC 3433): 1 = yocto (10^-24) ... 9 = units ... 17 = yotta (10^24)."""
    if not 1 <= scale_enum <= 17:
        raise ValueError(f"EntitySensorDataScale must be 1..17, got {scale_enum}")
    return 10.0 ** (3 * (scale_enum - 9))


def entity_precision_divisor(precision: int) -> float:
    """EntitySensorPrecision (RFC 3433): 1..9 = decimal places in the value.

    0 means an integer; -8..-1 only say how many integer digits are accurate
    and do not change the value (so the divisor is 1).
    """
    if not -8 <= precision <= 9:
        raise ValueError(f"EntitySensorPrecision must be -8..9, got {precision}")
    return 10.0 ** max(precision, 0)


def decimal_digits_divisor(digits: int) -> float:
    """Raritan PDU2 `*SensorDecimalDigits`: the value is an integer with this many implied decimal places."""
    if not 0 <= digits <= 15:
        raise ValueError(f"decimal digits must be 0..15, got {digits}")
    return 10.0 ** digits


def signed_factor(n: int) -> float:
    """RITTAL-CMC-III-MIB cmcIIIVarScale: -100 -> divide by 100, +100 -> multiply by 100 (0: no scale)."""
    if n == 0:
        raise ValueError("a signed scale factor of 0 means no scale")
    return 1.0 / -n if n < 0 else float(n)


def is_sentinel(spec: ReadingSpec, raw: float) -> bool:
    """True if the device uses `raw` to say 'not supported / not available'. A negative filler is also its
    two's complement in 32 and 64 bits: an agent that sends the -1 of an INTEGER through an Unsigned32 or
    Gauge32 (APC's upsAdvOutputActivePower) or a Counter64 sends 4294967295 or 18446744073709551615, which
    is -1's bits read unsigned (found by the SNMP audit: 4294967295 W stored as a reading)."""
    if raw in spec.missing_values:
        return True
    if raw >= 2**31 and any(v < 0 and raw in (v + 2**32, float(v + 2**64)) for v in spec.missing_values):
        return True
    return spec.missing_below is not None and raw < spec.missing_below


# --- generic profile from a device's configuration ------------------------------


def generic_profile(base: Profile, oids: Sequence[Any]) -> Profile:
    """A profile whose readings are the device's configured `oids` (see `collector.snmp.device.GenericOid`).

    Totals: `total_active_power` (and `total_active_energy`) sum the entries
    marked `total = true` of that quantity.
    """
    readings = []
    totals: dict[str, list[str]] = {}
    for o in oids:
        readings.append(
            ReadingSpec(
                key=o.name,
                name=o.name,
                quantity=o.quantity,
                unit=QUANTITY_UNITS[o.quantity],
                oid=o.oid,
                scale=o.scale,
                kind=o.kind,
                modulus_raw=o.modulus_raw,
                missing_values=list(o.missing_values),
                missing_below=o.missing_below,
                raw_range=list(o.raw_range),
                doc="configured",
            )
        )
        if o.total:
            totals.setdefault(o.quantity, []).append(o.name)
    total_specs = []
    for quantity, total_name in (("active_power", "total_active_power"), ("active_energy", "total_active_energy")):
        if quantity in totals:
            total_specs.append(TotalSpec(name=total_name, quantity=quantity, sum=totals[quantity]))
    p = dataclasses.replace(base, readings=readings, totals=total_specs)
    p.source = base.source
    return p


def is_finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# --- meters that name a location -----------------------------------------------------


def location_total(profile: Profile, location: str, quantity: str) -> tuple[TotalSpec | None, str | None]:
    """(the total a meter's `location` + `quantity` reads, None) or (None, why there is none).

    The profile's own total at that location when it has one (it already chooses between a
    device's alternative objects); else a total of every reading at that location measuring
    `quantity`, all their rows summed (named `sum_<location>_<quantity>`), as the poller sums
    any total.
    """
    own = [t for t in profile.totals if t.location == location and t.quantity == quantity]
    if len(own) == 1:
        return own[0], None
    if len(own) > 1:
        return None, (f"profile {profile.name!r} has several {quantity} totals at {location!r} "
                      f"({', '.join(t.name for t in own)}): name one with `reading`")
    keys = [s.key for s in profile.readings if s.location == location and s.quantity == quantity]
    if not keys:
        there = sorted({s.location for s in profile.readings if s.quantity == quantity} |
                       {t.location for t in profile.totals if t.quantity == quantity})
        has = f"it has {quantity} at: {', '.join(there)}" if there else f"it reads no {quantity}"
        return None, f"profile {profile.name!r} has no {quantity} reading at {location!r} ({has})"
    return TotalSpec(name=f"sum_{location}_{quantity}", quantity=quantity, sum=keys, location=location), None


def reading_names(profile: Profile, device: Any = None) -> list[str]:
    """The names a site file's `reading` may give on a device of `profile` (a generic profile: the device's `oids`):
    its readings' names, a column's as its template (`outlet{index}_active_power`), and its totals'."""
    if profile.profile.generic and device is not None:
        profile = generic_profile(profile, getattr(device, "oids", ()))
    return [*(s.template() for s in profile.readings), *(t.name for t in profile.totals)]


def names_reading(profile: Profile, device: Any, reading: str) -> bool:
    """Whether `reading` is one of `reading_names` (a column's template matching any row's name)."""
    return any(name == reading if "{" not in name else _template_matches(name, reading)
               for name in reading_names(profile, device))


def resolve_meter_locations(meters: dict[str, Meter], devices: Sequence[Any], profiles: dict[str, Profile]
                            ) -> tuple[dict[str, Profile], list[tuple[str, str]]]:
    """Turn every meter's `location` selector into the reading it names (the meter's `reading`).

    Returns the profiles with the totals the selectors add, which the poller polls (and a report
    reads wraps and steps from), and the problems as (key, message). The one place the
    live collector and the reports resolve a selector, so both read the same stored series.
    Idempotent: a meter already resolved resolves to the same reading again.
    """
    out = dict(profiles)
    problems: list[tuple[str, str]] = []
    by_name = {d.name: d for d in devices}
    for name, m in meters.items():
        if m.reading and not m.location:
            # A `reading` the named profile has not: the meter got no data, and nothing said so (found by the
            # SNMP operator audit). A device whose profile is chosen at run time is checked then (logged once).
            dev = by_name.get(m.device)
            profile = out.get(dev.profile) if dev is not None and dev.profile else None
            if profile is not None and not names_reading(profile, dev, m.reading):
                problems.append((f"meters.{name}.reading", f"device {dev.name!r} (profile {profile.name!r}) has no reading "
                                                           f"named {m.reading!r}; its readings: "
                                                           f"{', '.join(reading_names(profile, dev))}"))
            continue
        if not m.location:
            continue
        key = f"meters.{name}.location"
        dev = by_name.get(m.device)
        if dev is None:
            continue  # the config's own check names the missing device
        if not dev.profile:
            problems.append((key, f"device {dev.name!r} names no `profile` (it would be chosen from the device's "
                                  "sysObjectID at run time): name it so that the location can be resolved"))
            continue
        profile = out.get(dev.profile)
        if profile is None:
            problems.append((key, f"device {dev.name!r}: no profile named {dev.profile!r}"))
            continue
        total, why = location_total(profile, m.location, m.quantity)
        if total is None:
            problems.append((key, why))
            continue
        if all(t.name != total.name for t in profile.totals):
            out[profile.name] = profile = dataclasses.replace(profile, totals=[*profile.totals, total])
            profile.source = profiles[profile.name].source
        m.reading = total.name
    return out, problems
