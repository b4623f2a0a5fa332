"""The site model: which meter measures what, and what PUE the site can report.

A site config maps every meter to a *role* and, for IT meters, to the
*measurement point* that fixes the PUE category (ISO/IEC 30134-2):

| IT measured at | category | Green Grid |
|---|---|---|
| UPS outputs (`ups_output`) | 1 (basic) | PUE_L1 |
| PDU outputs (`pdu_output`) | 2 (intermediate) | PUE_L2 |
| IT equipment inputs (`it_input`) | 3 (advanced) | PUE_L3 |

Total facility energy (E_DC) is always measured at the utility input
(`facility_input` meters: the incomers, and on-site generation that feeds
the site). A site whose IT meters sit at different points reports the lowest
category among them: a PUE is only as good as its coarsest IT measurement.

Meters (and agents' nodes) belong to zones (halls); a zone with IT meters gets
a partial PUE (pPUE): the energy inside its boundary over its IT energy. The
boundary energy is the zone's own `facility_input` meters when it has any
(a hall sub-incomer), else the sum of the zone's consuming meters (IT,
cooling, power-chain losses, other).

Which `facility_input` meters make E_DC (`SiteModel.members("facility_input")`,
the one place the rule lives, so the live pipeline and the reports agree): the
site-level ones (no `zone`) when there are any; a zoned one is then a hall's
sub-incomer, downstream of them, and feeds only its zone's pPUE (adding it
would count the hall's energy twice). Only when every `facility_input` meter
has a zone (each hall has its own utility feed and there is no site incomer)
is E_DC the sum of the zoned ones; every IT meter must then be in a zone that
has one (`problems()` refuses the site otherwise: IT fed by none of the summed
inputs would make PUE too low).

Roles and what they feed:

| role | unit | feeds |
|---|---|---|
| `facility_input` | Wh | E_DC (PUE numerator), ERF/REF denominators |
| `it` | Wh | E_IT (PUE, CLF, PLF denominators) |
| `cooling` | Wh | CLF numerator, COP denominator |
| `losses` | Wh | PLF numerator (transformers, UPS, PDU losses) |
| `other` | Wh | lighting, offices (part of a zone's boundary) |
| `renewable` | Wh | REF numerator (renewable supply; its certificates must be retired) |
| `reused_heat` | Wh | ERF numerator (energy reused outside the data centre) |
| `heat_removed` | Wh (thermal) | COP numerator (chilled-water heat meters) |
| `water` | L | WUE numerator (site water use, L per kWh of IT energy) |

A meter's readings come either from an SNMP device polled by the collector
(`device` + `reading`) or from a series that arrives on the ingest endpoint
(`measurement` + `tags` + `field`), e.g. from Telegraf reading a Modbus meter.
Each reading is a power gauge (W, kW) or a cumulative energy register (Wh,
kWh; litres for water); registers are preferred and integrated power is
marked as such.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from puewatch.config import setting
from puewatch.core.names import name_key

if TYPE_CHECKING:
    from puewatch.core.timefmt import Calendar

ROLES = (
    "facility_input",
    "it",
    "cooling",
    "losses",
    "other",
    "renewable",
    "reused_heat",
    "heat_removed",
    "water",
)
IT_POINTS = {"ups_output": 1, "pdu_output": 2, "it_input": 3}
#: Where an SNMP reading sits at its device (every profile reading declares one): the device's total input,
#: one input cord/inlet, one phase (line) of an inlet, one branch circuit (breaker, fuse), one outlet,
#: a metering module or unit of a chain, a UPS's output, input or bypass (lines or totals), or a group of
#: outlets (a PDU's user-defined outlet group).
LOCATIONS: tuple[str, ...] = ("total", "inlet", "phase", "branch", "outlet", "module", "ups_output", "ups_input", "ups_bypass",
                              "outlet_group")
#: Locations whose readings may overlap one another and other locations' (an outlet in two groups, a group's
#: outlets read at `outlet` too): a meter's `location` selector, which sums every row there, never reads them.
OVERLAPPING_LOCATIONS: tuple[str, ...] = ("outlet_group",)
#: What a meter's `location` selector may read: the SNMP profile quantities a meter turns into energy.
SELECTOR_QUANTITIES = ("active_energy", "active_power")
# Roles whose energy lies inside a zone's boundary when the zone has no input meter of its own.
CONSUMING_ROLES = ("it", "cooling", "losses", "other")

# Unit -> (quantity, factor to the role's base unit, register?)
UNITS = {
    "W": ("power", 1.0),
    "kW": ("power", 1e3),
    "MW": ("power", 1e6),
    "Wh": ("energy", 1.0),
    "kWh": ("energy", 1e3),
    "MWh": ("energy", 1e6),
    "J": ("energy", 1 / 3600),
    "kJ": ("energy", 1e3 / 3600),
    "MJ": ("energy", 1e6 / 3600),
    "GJ": ("energy", 1e9 / 3600),
    "L": ("volume", 1.0),
    "m3": ("volume", 1e3),
    "L/s": ("flow", 1.0),
    "L/min": ("flow", 1 / 60),
    "m3/h": ("flow", 1e3 / 3600),
}


@dataclass
class Meter:
    """A facility meter: where its readings come from and what it measures for the site."""

    role: str = setting(doc="What the meter measures for the site.", choices=ROLES)
    point: str = setting(
        "",
        choices=("", *IT_POINTS),
        doc="For `role = \"it\"`: where IT energy is measured; fixes the PUE category "
        "(`ups_output` 1, `pdu_output` 2, `it_input` 3).",
    )
    zone: str = setting(
        "",
        doc="Zone (hall) the meter belongs to, for partial PUE; empty = the site only. A `facility_input` meter with "
        "a zone is that hall's sub-incomer (its pPUE boundary): E_DC is the `facility_input` meters without a zone "
        "when there are any, and the sum of the zoned ones only when every input meter has a zone. Where `[zones]` "
        "declares zones, a zone it does not name is warned about (--check-config, the log at start): a misspelt "
        "name would make a zone of its own.",
    )
    coefficient: float = setting(
        1.0,
        choices=(1.0, -1.0),
        doc="Weight of the meter in its role's total: 1 adds it, -1 subtracts it (e.g. a tenant sub-meter behind an "
        "incomer). Nothing else: a meter's energy is measured, never a share of it (0 would drop the meter unseen).",
    )
    device: str = setting("", doc="SNMP device (a key of `[snmp.devices]`) that serves the reading.")
    reading: str = setting(
        "",
        doc="The device profile's reading to use; default `total_active_energy` where the device has an energy "
        "register, else `total_active_power`.",
    )
    location: str = setting(
        "",
        choices=("", *LOCATIONS),
        doc="SNMP meter: where at the device to read, instead of naming a `reading`: the device's profile total at "
        "that location (e.g. `total`: `total_active_energy`), else the sum of every row of every profile reading "
        "there (e.g. `outlet`: all outlets, as the device answers them). The device must name its `profile`.",
    )
    quantity: str = setting(
        "", choices=("", *SELECTOR_QUANTITIES), doc="With `location`: what to read there, `active_energy` or `active_power`."
    )
    measurement: str = setting("", doc="Ingest series: measurement name (instead of `device`).")
    tags: dict[str, str] = setting(default_factory=dict, doc="Ingest series: tags that select the series (all must match; no empty key or value).")
    field: str = setting("", doc="Ingest series: the field holding the value.")
    unit: str = setting(
        "", choices=("", *UNITS), doc="Ingest series: unit of the field (power W/kW/MW, energy Wh/kWh/MWh/J/..., water L/m3, flow)."
    )
    register: bool = setting(
        False, doc="Ingest series: the field is a cumulative register (energy or volume) rather than a gauge."
    )
    modulus: float | None = setting(None, min=0, min_exclusive=True, doc="Ingest series: value at which the register wraps, in `unit`.")
    accuracy_pct: float | None = setting(
        None,
        min=0,
        min_exclusive=True,
        max=20,
        doc="The meter's declared accuracy class in percent of reading (e.g. 0.5 or 1.0, IEC 62053); reports bound "
        "PUE's error with it. Unset: the report's PUE uncertainty is unknown (null).",
    )
    max_power_w: float | None = setting(
        None,
        min=0,
        min_exclusive=True,
        doc="Largest power the meter can see (e.g. its circuit's rating): a register increase whose mean power is "
        "above it (plus one register step) is an impossible jump and not counted, a drop is a wrap only if the "
        "wrapped increase fits under it, and a power reading above it is no reading. Unset: 2 x the rating its "
        "SNMP device reports where its profile reads one, else 4 x the meter's highest sustained power, derived "
        "from its own readings (docs/auditor-guide.md, \"How readings become "
        "energy\").",
    )

    @property
    def flows(self) -> bool:
        """A water meter: its readings are litres (L, L/s), not energy and power. No power limit, configured or
        rated, applies to it, and its flow's time integral is litres as it is (`integral_divisor`)."""
        return role_flows(self.role)

    @property
    def integral_divisor(self) -> float:
        """What the time integral of its gauge (its base unit x s) is divided by to give its register's base
        unit: 3600 for a power (W x s = J, 3600 J a Wh), 1 for a water flow (L/s x s = L). The one rule, live
        (collector.pipeline) and in reports (report.meters) alike: reports once divided a flow by 3600 too."""
        return 1.0 if self.flows else 3600.0

    @property
    def limit_w(self) -> float | None:
        """The configured power limit where one applies (`max_power_w`; none for water)."""
        return None if self.flows else self.max_power_w

    def check(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.role == "it" and not self.point:
            problems.append(("point", "an IT meter needs its measurement point: ups_output, pdu_output or it_input"))
        if self.role != "it" and self.point:
            problems.append(("point", f"only IT meters have a measurement point (role is {self.role!r})"))
        if bool(self.device) == bool(self.measurement):
            problems.append(("device", "set exactly one source: `device` (SNMP) or `measurement` (ingest series)"))
        if self.location and not self.device:
            problems.append(("location", "selects a reading of an SNMP device: set `device` too"))
        elif self.location and self.reading:
            problems.append(("location", "name the reading (`reading`) or where it sits (`location`), not both"))
        elif self.location in OVERLAPPING_LOCATIONS:
            problems.append(("location", f"readings at {self.location!r} may overlap (an outlet in two groups, and every "
                                         "group's outlets are read at 'outlet' too): their sum is no meter; name one "
                                         "of them in `reading`"))
        elif self.location and not self.quantity:
            problems.append(("quantity", f"say what to read at {self.location!r}: {' or '.join(SELECTOR_QUANTITIES)}"))
        if self.quantity and not self.location:
            problems.append(("quantity", "only with `location` (the reading is what `reading` names)"))
        if self.measurement:
            from puewatch.core.schema import ingest_measurement_fault  # schema imports this module

            fault = ingest_measurement_fault(self.measurement)
            if fault is not None:
                problems.append(("measurement", fault))
            if not self.field:
                problems.append(("field", "an ingest series needs the field that holds the value"))
            if not self.unit:
                problems.append(("unit", f"an ingest series needs its unit, one of {', '.join(UNITS)}"))
            elif self.unit:
                quantity = UNITS[self.unit][0]
                if self.register and quantity not in ("energy", "volume"):
                    problems.append(("unit", f"a register counts energy or volume, not {quantity} ({self.unit})"))
                if not self.register and quantity in ("energy", "volume"):
                    problems.append(("register", f"a field in {self.unit} is cumulative: set `register = true`"))
                water = self.flows
                if water != (quantity in ("volume", "flow")):
                    problems.append(
                        ("unit", f"role {self.role!r} is measured in {'L or L/s' if water else 'W or Wh'}, not {self.unit}")
                    )
            for key, value in sorted(self.tags.items()):
                if not key or not value:
                    # Line protocol has no empty tag value: InfluxDB read `host = ""` as "no host tag", the embedded
                    # store as a tag no series can have, and the meter had energy in one store and none in the
                    # other (found by the store audit).
                    problems.append((f"tags.{key}", "a tag key and its value must not be empty: no series stores an "
                                                    "empty tag value (InfluxDB reads it as \"series without the tag\", "
                                                    "which the embedded store cannot select, so the meter read other "
                                                    "series in each); select its series by tags they have"))
        else:
            for key in ("field", "unit"):
                if getattr(self, key):
                    problems.append((key, "only for an ingest series (`measurement`); SNMP readings carry their unit"))
            if self.tags:
                problems.append(("tags", "only for an ingest series (`measurement`)"))
        return problems


@dataclass
class Zone:
    """A zone (hall): its agents' nodes, for GPU energy attribution."""

    nodes: list[str] = setting(
        default_factory=list, doc="Node names or glob patterns (e.g. `gpu-a-*`) of the agents in the zone. A node is in "
        "one zone: a pattern that matches another zone's (`gpu-*` and `gpu-b-*`) is refused, and a node that patterns "
        "of two zones match is counted in the first and logged."
    )


def role_flows(role: str) -> bool:
    """Whether a role's meters count a flow (litres: water), not energy: the one rule for their units, limits and
    the fields their sums are stored in (`Meter.flows`, `schema.meter_energy_field`, `schema.site_energy_field`)."""
    return role == "water"


def site_key(name: str) -> str:
    """A site's name as puewatch tells sites apart, the one rule for the city's sums, certificates, statements
    and the key ring's binding of a site to its key file (`SITE.pub`): `core.names.name_key` (Unicode forms,
    case, spaces and characters that show nothing aside: "t1", "T1", "t1 ", "ｔ１" and "t1" + U+200D are one)."""
    return name_key(name)


def timezone_setting() -> str:
    """`[collector] timezone`, read by the collector and by a report's site file alike (`SiteModel.problems`
    checks it)."""
    return setting(
        "UTC",
        min=1,
        doc="The site's time zone, an IANA name (`Asia/Shanghai`, `Europe/Berlin`): its calendar days, months and "
        "years are counted from its midnights (an annual PUE's year, a report's monthly and daily rows and its "
        "`--from`/`--to` dates, a statement's days, the carbon factors' and green power's years). The times in its "
        "data and documents stay UTC; labels and messages name a time at the site's offset.",
        example="Asia/Shanghai",
    )


@dataclass
class SiteModel:
    """What the configured meters can tell: PUE category, groups for every total and ratio."""

    name: str
    meters: dict[str, Meter]
    zones: dict[str, Zone] = field(default_factory=dict)
    # Reports only (`puewatch.report.sources.resolve_snmp_wraps` fills them from the SNMP
    # devices' profiles; the live pipeline takes each reading's own modulus): where an SNMP
    # meter's register wraps, in Wh (None: it does not), and why it is unknown for the others.
    snmp_modulus_wh: dict[str, float | None] = field(default_factory=dict)
    snmp_modulus_unknown: dict[str, str] = field(default_factory=dict)
    # One step of an SNMP meter's register in Wh (its profile's scale), allowed on top of its power
    # limit (core.energy); the live pipeline takes each reading's own (value / raw).
    snmp_step_wh: dict[str, float] = field(default_factory=dict)
    # The site's time zone ([collector] timezone): its calendar (`calendar`).
    timezone: str = "UTC"

    @property
    def calendar(self) -> Calendar:
        """The days, months and years the site's reports, statements and carbon count in."""
        from puewatch.core.timefmt import Calendar  # here: the agent reads the schema, and has no NumPy

        return Calendar(self.timezone)

    @property
    def category(self) -> int:
        return min(IT_POINTS[m.point] for m in self.meters.values() if m.role == "it")

    def members(self, role: str, zone: str | None = None) -> dict[str, float]:
        """Meter -> coefficient for a role's total (site-wide, or one zone's).

        Site-wide `facility_input` (E_DC) is the site-level incomers (no zone) when there
        are any: a zoned input meter behind them is a hall's sub-incomer, whose energy the
        site incomers already count. Only a site whose every input meter has a zone sums
        the zoned ones (see the module docstring).
        """
        out = {
            name: m.coefficient
            for name, m in self.meters.items()
            if m.role == role and (zone is None or m.zone == zone)
        }
        if role == "facility_input" and zone is None:
            site_level = {name: c for name, c in out.items() if not self.meters[name].zone}
            if site_level:
                return site_level
        return out

    def zone_names(self) -> list[str]:
        names = {m.zone for m in self.meters.values() if m.zone} | set(self.zones)
        return sorted(names)

    def boundary(self, zone: str) -> dict[str, float]:
        """Meters whose energy lies inside a zone's boundary (its pPUE numerator)."""
        own = self.members("facility_input", zone)
        if own:
            return own
        out: dict[str, float] = {}
        for role in CONSUMING_ROLES:
            out.update(self.members(role, zone))
        return out

    def zones_of_node(self, node: str) -> list[str]:
        """Every zone whose node patterns match `node`, in the config's order."""
        return [zone for zone, z in self.zones.items() if any(fnmatch.fnmatchcase(node, p) for p in z.nodes)]

    def zone_of_node(self, node: str) -> str:
        """The zone of an agent's node: the first whose patterns match it ("" none). Patterns one of which matches
        another are refused (`problems`); a node that others put in two zones is said where it is seen
        (`node_zone_warning`)."""
        zones = self.zones_of_node(node)
        return zones[0] if zones else ""

    def node_zone_warning(self, node: str) -> str | None:
        """What to say of a node in more than one zone (its GPU energy counts in the first alone), or None."""
        zones = self.zones_of_node(node)
        if len(zones) < 2:
            return None
        return (f"node {node!r} matches the node patterns of zones {', '.join(map(repr, zones))}: its GPU energy "
                f"counts in {zones[0]!r} alone; make the zones' [zones] nodes patterns disjoint")

    def _overlapping_zones(self) -> list[tuple[str, str]]:
        """Zones with a node pattern that another zone's pattern matches as a name (`gpu-*` matches `gpu-b-*`):
        every node of the one would be counted in whichever zone comes first, silently (found by the input
        audit: gpu-b-01 took hall-a's pPUE and counted in hall-a's GPU energy). Overlaps no pattern shows
        (`gpu-?1` and `gpu-a*`) are said per node (`node_zone_warning`)."""
        out = []
        zones = list(self.zones.items())
        for i, (a, za) in enumerate(zones):
            for b, zb in zones[i + 1:]:
                for pa in za.nodes:
                    hit = next((pb for pb in zb.nodes if fnmatch.fnmatchcase(pb, pa) or fnmatch.fnmatchcase(pa, pb)), None)
                    if hit is not None:
                        out.append((f"zones.{b}.nodes", f"pattern {hit!r} overlaps zone {a!r}'s {pa!r}: a node in both "
                                    "would count in one zone alone; make the zones' patterns disjoint"))
                        break
        return out

    def warnings(self) -> list[tuple[str, str]]:
        """What the site allows but is likely a slip (key, message): a meter's zone that the `[zones]` tables,
        where there are any, do not declare is a zone of its own, with its own pPUE and no agents' nodes, as
        a misspelt zone name would make silently."""
        if not self.zones:
            return []
        declared = ", ".join(sorted(self.zones))
        return [(f"meters.{name}.zone", f"zone {m.zone!r} is no [zones] table ({declared}): it is a zone of its own, "
                 "with its own pPUE and no agents' nodes (misspelt? else add [zones." + m.zone + "] to say so)")
                for name, m in self.meters.items() if m.zone and m.zone not in self.zones]

    def problems(self) -> list[tuple[str, str]]:
        """Why the site cannot give a PUE, or would give a wrong one (key, message); empty when it can."""
        from puewatch.core.timefmt import check_zone

        from puewatch.lineprotocol import has_control

        out = []
        if self.name != self.name.strip() or has_control(self.name):
            # The name reports, statements and the city's table carry: "fra1 " would be another site to a reader.
            out.append(("collector.site", f"must be a name without spaces around it or control characters, got "
                                          f"{self.name!r}"))
        try:
            check_zone(self.timezone)
        except ValueError as exc:
            out.append(("collector.timezone", str(exc)))
        if not self.members("facility_input"):
            out.append(
                ("meters", "the site cannot give a PUE: no meter has role \"facility_input\" (the utility incomers, E_DC)")
            )
        if not self.members("it"):
            out.append(("meters", "the site cannot give a PUE: no meter has role \"it\" (E_IT at UPS outputs, PDU outputs or IT inputs)"))
        inputs = [m for m in self.meters.values() if m.role == "facility_input"]
        if inputs and all(m.zone for m in inputs):
            # E_DC is then the sum of the halls' own inputs: IT outside those halls is fed by
            # none of them, and counting it in E_IT would make PUE too low (even below 1).
            fed = {m.zone for m in inputs}
            for name, m in self.meters.items():
                if m.role == "it" and m.zone not in fed:
                    where = f"zone {m.zone!r}, which has" if m.zone else "no zone, and the site has"
                    out.append((f"meters.{name}.zone", f"the site cannot give a PUE: IT meter {name!r} is in {where} no "
                                "facility_input meter, and every facility_input meter belongs to a zone (E_DC is the "
                                "sum of the zones' inputs): give that zone an input meter, or add a site-level one "
                                "(no zone)"))
        return out + self._shared_series() + self._overlapping_zones()

    def _shared_series(self) -> list[tuple[str, str]]:
        """A series is one meter's readings: two meters that read the same SNMP reading, or an ingest meter whose
        tags also select another's series (its tags a subset of the other's, same measurement and field), would
        count one series twice (as E_DC and E_IT: PUE 1.000), or read two series as one (found by the operator
        audit, neither warned about)."""
        out = []
        snmp: dict[tuple[str, ...], str] = {}
        ingest: dict[tuple[str, str, frozenset[tuple[str, str]]], str] = {}
        for name, m in self.meters.items():
            if m.device:
                # A meter naming no reading reads the device's total (its energy register, else its power):
                # the same as one naming either total.
                total = not m.location and m.reading in ("", "total_active_energy", "total_active_power")
                what = (m.device, "total") if total else (m.device, m.reading) if m.reading else (
                    m.device, m.location, m.quantity)
                other = snmp.setdefault(what, name)
                if other != name:
                    reading = ("the device's total" if total else m.reading
                               or f"{m.quantity} at {m.location}")
                    out.append((f"meters.{name}", f"reads what meter {other!r} reads (device {m.device!r}, {reading}): "
                                                  "a reading is one meter's"))
            elif m.measurement:
                other = ingest.setdefault((m.measurement, m.field, frozenset(m.tags.items())), name)
                if other != name:
                    out.append((f"meters.{name}", f"reads the same series as meter {other!r} ({m.measurement}.{m.field}, "
                                                  f"tags {dict(sorted(m.tags.items()))}): a series is one meter's"))
        for (measurement, field_name, tags), name in ingest.items():
            items = sorted(tags)
            # Every other meter whose tags are a proper subset of these selects this meter's series too.
            for k in range(len(items)):
                for sub in itertools.combinations(items, k):
                    other = ingest.get((measurement, field_name, frozenset(sub)))
                    if other is None:
                        continue
                    shown = ", ".join(f"{a}={b}" for a, b in items)
                    out.append((f"meters.{other}.tags", f"also select the series of meter {name!r} ({measurement}.{field_name}, "
                                                        f"{shown}): a series is one meter's; list a tag that tells "
                                                        f"them apart"))
        return out
