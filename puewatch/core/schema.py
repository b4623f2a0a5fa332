"""The names, tags and fields of every series the collector stores and reads.

The collector writes these; the reports, the demo, the benchmarks and the InfluxDB
downsampling read them. Each is spelled here only: a function per series returns its
`SeriesId` (measurement and tags), constants name its fields.

| series         | tags                                   | fields                                        |
|----------------|----------------------------------------|-----------------------------------------------|
| `snmp_reading` | site, device, reading, unit            | value (in `unit`), raw (as received)          |
| `snmp_poll`    | site, device, result                   | seconds, error (failed polls: a string)       |
| `meter_energy` | site, meter, role, zone, method        | energy_wh (volume_l for a water meter)        |
| `gpu_energy`   | site, node, zone                       | energy_wh                                     |
| `site_energy`  | site, category                         | `<group>_wh` (`water_l`) per site total;      |
|                |                                        | pue_facility_input_wh, pue_it_wh, pue_known_s |
| `zone_energy`  | site, zone                             | boundary_wh, it_wh, gpu_wh;                   |
|                |                                        | ppue_boundary_wh, ppue_it_wh, ppue_known_s    |
| `pue`          | site, window, category                 | `<ratio>`, `<ratio>_coverage` (pue, clf, ...) |
| `ppue`         | site, zone, window                     | ppue, ppue_coverage                           |

A meter's own readings (what the pipeline and the reports take as its input) come from
`meter_sources()`: an SNMP meter's `snmp_reading` series, or an ingest meter's series as
it arrived (its `measurement`, `tags`, `field`, converted by the unit factor of
`core.site.UNITS`). Agents' GPU energy arrives as `gpu_power` lines carrying `energy_mj`.

Who may write what (the ingest endpoint's token scopes, `collector.scopes`): the series
above are the collector's own (`COLLECTOR_MEASUREMENTS`), which no client writes; the
measurements agents write (`AGENT_MEASUREMENTS`) carry a `node` tag that must be the
writing agent's; an ingest meter's series is written only by a feeder token naming the
meter, and an ingest meter never reads from a measurement of either set
(`ingest_measurement_fault`), so a client-written series cannot pass for an SNMP reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from puewatch.core.site import UNITS, Meter, role_flows

__all__ = [
    "ANY_FIELD", "FIELD_TYPES", "JOB_LEDGER", "JOB_LEDGER_FIELDS", "JOB_LEDGER_STATS", "JOB_LEDGER_STATS_FIELDS", "NUMBER",
    "GPU_ENERGY_MJ", "GPU_POWER", "MeterSource", "SeriesId", "SNMP_ENERGY_READING", "SNMP_POWER_READING",
    "SNMP_POLL", "SNMP_POLL_CAUSES", "SNMP_POLL_ERROR", "SNMP_POLL_OK",
    "SNMP_POLL_SECONDS", "SNMP_RATING_READINGS", "SNMP_RAW", "SNMP_VALUE", "AGENT_MEASUREMENTS", "AGENT_TAG_KEYS", "CELL_MEASUREMENTS", "COLLECTOR_MEASUREMENTS", "NODE_TAG",
    "ingest_measurement_fault", "ZONE_FIELDS", "coverage_field", "gpu_energy", "meter_energy", "meter_energy_field",
    "meter_sources", "ppue", "pue", "rating_sources", "site_energy", "site_energy_field", "snmp_poll", "snmp_reading", "zone_energy",
]

SNMP_READING = "snmp_reading"
METER_ENERGY = "meter_energy"
GPU_ENERGY = "gpu_energy"
SITE_ENERGY = "site_energy"
ZONE_ENERGY = "zone_energy"
PUE = "pue"
PPUE = "ppue"

# snmp_reading's fields: the value in the reading's unit (W, Wh, ...), and the raw number received.
SNMP_VALUE = "value"
SNMP_RAW = "raw"
# The profile readings a meter reads by default: the energy register where the device has one.
SNMP_ENERGY_READING = "total_active_energy"
SNMP_POWER_READING = "total_active_power"
# A device's ratings (reading name -> unit), where its profile reads them: the power limit of
# the meters read from it when none is configured (core.energy, `rated`).
SNMP_RATING_READINGS: Mapping[str, str] = {"rated_power": "W", "rated_apparent_power": "VA"}

# What agents send: GPU power lines, one in ten carrying the NVML energy counter (mJ).
GPU_POWER = "gpu_power"
GPU_ENERGY_MJ = "energy_mj"
GPU_ENERGY_ESTIMATED = "energy_estimated"
# Their power fields: NVML's 1-second average where the driver has it, else the instantaneous power.
GPU_POWER_FIELDS = ("power_average_w", "power_instant_w")

# The job ledger (issue 16): one record per GPU (or host share) and interval, written by the
# agent of the node the job ran on. Tags: node, gpu (the GPU's index, or "host" for a job's
# share of the node's host (CPU and memory) energy when it holds no GPU), slot ("0", "1", ...: one per job
# sharing that GPU in the interval). The job is a field, never a tag, so the number of series
# is nodes x GPUs x sharers, whatever the number of jobs. Time: the interval's end.
JOB_LEDGER = "job_ledger"
JOB_LEDGER_FIELDS: Mapping[str, str] = {
    "job": "string",             # the job's id (Slurm job id, Kubernetes namespace/pod, a static map's name)
    "tenant": "string",          # Slurm account, Kubernetes namespace, or the static map's tenant
    "source": "string",          # slurm | kubernetes | static | hook
    "gpu_model": "string",       # NVML's name of the GPU ("" for a host record)
    "interval_s": "float",       # the interval's length
    "gpu_wh": "float",           # the job's share of the GPU's energy over the interval
    "gpu_wh_estimated": "boolean",  # from polled power: the GPU has no energy counter
    "share": "float",            # the job's share of the GPU (1 unless shared)
    "shared": "boolean",         # MPS or time-slicing: split by the documented rule
    "reserved_idle": "boolean",  # the job held the GPU but ran nothing on it (its idle energy is the job's)
    "host_wh": "float",          # the job's share of the node's host (CPU and memory) energy
    "host_estimated": "boolean",  # that share is the configured estimate (host_estimate_w: no RAPL readable)
    "host_unknown": "boolean",   # no RAPL and no estimate configured: host_wh is 0, the host energy stays unattributed
}

# Per node and ledger interval, written only when there is something to count: the GPU processes
# that belong to no job (Slurm finds none for them), so they are reported, never dropped silently.
JOB_LEDGER_STATS = "job_ledger_stats"
JOB_LEDGER_STATS_FIELDS: Mapping[str, str] = {
    "unattributed_processes": "integer",  # distinct (GPU, PID) without a job in the interval
    "interval_s": "float",
}

# The collector's own series: derived from what it polled and received, never written by a client.
# One point per SNMP poll of a device (an answered poll at its readings' time, a failed one at its slot's),
# tagged with its result ("ok", or a failed poll's cause: a key of `SNMP_POLL_CAUSES`, a small fixed set):
# how long it took and, failed, the message. A failed poll stores no reading, so without these a report
# could not tell a device that was down from one nobody polled (found by the SNMP operator audit).
SNMP_POLL = "snmp_poll"
SNMP_POLL_OK = "ok"
SNMP_POLL_SECONDS = "seconds"
SNMP_POLL_ERROR = "error"
SNMP_POLL_CAUSES: Mapping[str, str] = {
    "timeout": "no answer within the timeout (device down or unreachable, or a wrong v2c community)",
    "auth": "refused: wrong community, SNMPv3 user, keys or protocols, or no access to the objects",
    "error": "the agent answered with an error",
    "slow": "answered too slowly: the poll was cut off",
    "skipped": "not polled: the previous poll ran into its slot",
    "internal": "puewatch could not read the answer (an internal error, logged)",
}

# The energy cells: each point is the energy of the interval (t - cell, t], stamped at its end t (an
# hour's cells are those stamped in (start, start + 1h]; influx setup's hourly sums group them so).
CELL_MEASUREMENTS = frozenset((METER_ENERGY, GPU_ENERGY, SITE_ENERGY, ZONE_ENERGY))

COLLECTOR_MEASUREMENTS = frozenset((SNMP_READING, SNMP_POLL, METER_ENERGY, GPU_ENERGY, SITE_ENERGY, ZONE_ENERGY, PUE,
                                    PPUE))
# What the node agent writes (agent/sources, agent/main.py), every line with its node's `node` tag.
AGENT_MEASUREMENTS = frozenset(
    (GPU_POWER, "gpu_state", "gpu_info", "gpu_process", "host", "host_rapl", "puewatch_event", "puewatch_agent",
     JOB_LEDGER, JOB_LEDGER_STATS)
)
NODE_TAG = "node"
# The tag keys the agent's sources set on their lines (node; a GPU's index and UUID; a process's PID; a RAPL
# zone and domain; an event's source and kind): `agent.tags`, the extra tags of every line, may not name one
# (a `node` there replaced the agent's own, and the collector refused every batch, 403).
AGENT_TAG_KEYS = frozenset((NODE_TAG, "gpu", "uuid", "pid", "zone", "domain", "source", "event"))

# Field types fixed by puewatch for the series it defines (InfluxDB's names: float, integer,
# unsigned, string, boolean; NUMBER: any of the first three, the first write decides which).
# Ingest refuses a line of another type (collector/fieldtypes.py), so no client decides them by
# writing first: a `gpu_power` string must never lock the agents' numbers out.
NUMBER = "number"
ANY_FIELD = "*"  # the type of a field the table does not name

ENERGY_WH = "energy_wh"
VOLUME_L = "volume_l"
ZONE_BOUNDARY_WH = "boundary_wh"
ZONE_IT_WH = "it_wh"
ZONE_GPU_WH = "gpu_wh"
ZONE_FIELDS = (ZONE_BOUNDARY_WH, ZONE_IT_WH, ZONE_GPU_WH)
# A cell's PUE (site_energy) and pPUE (zone_energy) sides where both are known, and the cell's length then
# (absent where one side is not): summed over any span (an InfluxDB hourly downsample, a month of those),
# they give the ratio over the time both sides were known and how long that was. The sums of each side over
# its own cells do not: where one meter was away, they made an hour's PUE 1.87 or 0.83 for a site at 1.25
# (found by the InfluxDB audit).
PUE_FACILITY_WH, PUE_IT_WH, PUE_KNOWN_S = "pue_facility_input_wh", "pue_it_wh", "pue_known_s"
PPUE_BOUNDARY_WH, PPUE_IT_WH, PPUE_KNOWN_S = "ppue_boundary_wh", "ppue_it_wh", "ppue_known_s"


FIELD_TYPES: dict[str, dict[str, str]] = {
    GPU_POWER: {"power_average_w": "float", "power_instant_w": "float", GPU_ENERGY_MJ: "integer",
                GPU_ENERGY_ESTIMATED: "boolean", ANY_FIELD: NUMBER},
    JOB_LEDGER: dict(JOB_LEDGER_FIELDS),
    JOB_LEDGER_STATS: dict(JOB_LEDGER_STATS_FIELDS),
    # The collector's own series: every field a float (typed batches of float64 columns).
    **{m: {ANY_FIELD: "float"} for m in (SNMP_READING, METER_ENERGY, GPU_ENERGY, SITE_ENERGY, ZONE_ENERGY, PUE, PPUE)},
    SNMP_POLL: {SNMP_POLL_SECONDS: "float", SNMP_POLL_ERROR: "string"},
}


class SeriesId(NamedTuple):
    """A stored series: its measurement and tags (empty tag values are never stored)."""

    measurement: str
    tags: dict[str, str]


def snmp_reading(site: str, device: str, reading: str, unit: str) -> SeriesId:
    return SeriesId(SNMP_READING, {"site": site, "device": device, "reading": reading, "unit": unit})


def snmp_poll(site: str, device: str, result: str) -> SeriesId:
    """A device's polls of one result: `SNMP_POLL_OK`, or a failed poll's cause (`SNMP_POLL_CAUSES`)."""
    return SeriesId(SNMP_POLL, {"site": site, "device": device, "result": result})


def meter_energy(site: str, meter: str, m: Meter, integrated: bool) -> SeriesId:
    """One meter's energy per cell; `method` says whether it was integrated from power or read from a register."""
    return SeriesId(METER_ENERGY, {"site": site, "meter": meter, "role": m.role, "zone": m.zone,
                                   "method": "integrated" if integrated else "register"})


def meter_energy_field(role: str) -> str:
    """A water meter counts litres, every other meter Wh (`site.role_flows`)."""
    return VOLUME_L if role_flows(role) else ENERGY_WH


def gpu_energy(site: str, node: str, zone: str) -> SeriesId:
    return SeriesId(GPU_ENERGY, {"site": site, "node": node, "zone": zone})


def site_energy(site: str, category: int | str) -> SeriesId:
    return SeriesId(SITE_ENERGY, {"site": site, "category": str(category)})


def site_energy_field(group: str) -> str:
    """`facility_input_wh`, `it_wh`, `gpu_wh`, ...; the water total in litres (`water_l`)."""
    return f"{group}_{'l' if role_flows(group) else 'wh'}"


def zone_energy(site: str, zone: str) -> SeriesId:
    return SeriesId(ZONE_ENERGY, {"site": site, "zone": zone})


def pue(site: str, window: str, category: int | str | None = None) -> SeriesId:
    """Rolling site ratios over `window` (`1m`, `15m`, ...); without `category` it selects every category."""
    tags = {"site": site, "window": window}
    if category is not None:
        tags["category"] = str(category)
    return SeriesId(PUE, tags)


def ppue(site: str, zone: str, window: str) -> SeriesId:
    return SeriesId(PPUE, {"site": site, "zone": zone, "window": window})


def coverage_field(ratio: str) -> str:
    """The field holding the share of the window a ratio covers."""
    return f"{ratio}_coverage"


@dataclass(frozen=True)
class MeterSource:
    """Where a meter's readings are stored: one field of one series, and what its values are."""

    measurement: str
    tags: Mapping[str, str]
    field: str
    register: bool  # a cumulative register (energy, volume) rather than a gauge (power, flow)
    factor: float = 1.0  # to W, Wh, L or L/s
    alternatives: tuple[MeterSource, ...] = field(default=(), compare=False)  # read when this one is empty

    def matches(self, tags: Mapping[str, str]) -> bool:
        """Whether a point with `tags` belongs to this source (every selecting tag equal)."""
        return all(tags.get(k) == v for k, v in self.tags.items())


def ingest_measurement_fault(measurement: str) -> str | None:
    """Why an ingest meter may not read from `measurement` (None: it may).

    The collector's own series and the agents' are written under other scopes than a
    feeder's: a meter reading them could be fed by a writer that is not its feeder.
    """
    if measurement in COLLECTOR_MEASUREMENTS:
        return f"{measurement!r} is the collector's own series; an ingest meter reads the series its feeder writes"
    if measurement in AGENT_MEASUREMENTS:
        return f"{measurement!r} is written by the node agents; an ingest meter reads the series its feeder writes"
    return None


def meter_sources(site: str, m: Meter) -> list[MeterSource]:
    """The series a meter's readings are stored in, the preferred first.

    An SNMP meter: its `reading` (stored in Wh, or W), else the device's energy register and
    its power reading (both read; the register is preferred). An ingest meter: its series.
    """
    if m.device:
        def snmp(reading: str, unit: str, register: bool, *alt: MeterSource) -> MeterSource:
            return MeterSource(SNMP_READING, snmp_reading(site, m.device, reading, unit).tags, SNMP_VALUE, register,
                               alternatives=alt)

        if m.reading:
            return [snmp(m.reading, "Wh", True, snmp(m.reading, "W", False))]
        return [snmp(SNMP_ENERGY_READING, "Wh", True), snmp(SNMP_POWER_READING, "W", False)]
    fault = ingest_measurement_fault(m.measurement)
    if fault is not None:  # Meter.check refuses such a site file; never read one anyway
        raise ValueError(fault)
    return [MeterSource(m.measurement, dict(m.tags), m.field, m.register, UNITS[m.unit][1])]


def rating_sources(site: str, m: Meter) -> list[MeterSource]:
    """The series of the ratings of an SNMP meter's device (none for an ingest meter)."""
    if not m.device:
        return []
    return [MeterSource(SNMP_READING, snmp_reading(site, m.device, reading, unit).tags, SNMP_VALUE, False)
            for reading, unit in SNMP_RATING_READINGS.items()]
