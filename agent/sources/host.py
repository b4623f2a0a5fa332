"""The host: CPU utilisation, load, memory (psutil) and CPU package/DRAM energy (RAPL).

RAPL zones are read from `<sysfs_root>/class/powercap/intel-rapl:*` (and their
sub-zones, e.g. dram), each once per sample. `energy_uj` wraps at `max_energy_range_uj`;
the agent unwraps it (`unwrap_uj`, the one wrap rule) into a counter that only grows while
the agent runs. A zone that cannot be read (mode 0400 since CVE-2020-8694: the agent is not
root) is reported once, in the log and as an event, and left out: never written as zero.
A reading that cannot be true (outside 0..max_energy_range_uj, the first one included, or a step
that would mean more than `ZONE_MAX_W`: a counter gone back, reset or reloaded, which taken as a
wrap added a whole range, 65-261 kW), and a step over so long a time that the counter could have
wrapped unseen, is no energy: the interval is a break (its energy unknown, the ledger's host
share estimated there), said once as an event (`unwrap_uj`). Rates are over the
monotonic clock (a wall-clock step made 100 W read 1.6 W).

The node's CPU and memory energy (`energy_reading()`, which the job ledger takes as the host
share) is the sum of some zones, by one rule (`counted_zones`), from the kernel's powercap
tree and Intel's RAPL domains: each `package-N` zone (the whole socket; its `core` and
`uncore` sub-zones lie inside it and are never added) plus each `dram` zone (a sub-zone in
sysfs, but a domain of its own whose energy the package's does not include). `psys` (the
platform domain) already holds the packages: it is counted only where no package zone
exists, never with them. `intel-rapl-mmio:*` zones are the same package read through MMIO
and are not read at all.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from puewatch.agent.sources.base import Context, Job
from puewatch.config import setting
from puewatch.lineprotocol import encode_line

log = logging.getLogger("puewatch.agent.host")

SOURCE = "host"


@dataclass
class Config:
    """The host: CPU utilisation, load average, memory, RAPL CPU package and DRAM energy."""

    interval_s: float = setting(1.0, min=0.1, max=3600.0, doc="Sampling period of `host` and `host_rapl`; at most 15 with "
                                "`rapl = true` (a RAPL counter can wrap unseen in 33 s).")
    sysfs_root: str = setting("/sys", min=1, doc="Root of sysfs (RAPL zones are under class/powercap); tests point it at a fixture tree.")
    rapl: bool = setting(True, doc="Read RAPL energy counters.")

    def check(self) -> list[tuple[str, str]]:
        if self.rapl and self.interval_s > RAPL_MAX_INTERVAL_S:
            # A DRAM zone's 65.7 kJ counter can wrap in 33 s at ZONE_MAX_W: readings further apart are a break
            # (unwrap_uj), so every interval would be, and the host energy never measured (closing review).
            return [("interval_s", f"must be at most {RAPL_MAX_INTERVAL_S:g} with rapl = true, got {self.interval_s:g}: "
                                   "a RAPL counter can wrap unseen in 33 s (a 65.7 kJ DRAM range at 2 kW), and readings "
                                   "further apart are breaks, their energy unknown")]
        return []


@dataclass
class _Zone:
    path: Path
    zone: str  # e.g. intel-rapl:0:0
    name: str  # e.g. package-0, dram
    max_range_uj: int | None
    key: str
    last_raw: int | None = None
    total_uj: int = 0
    last_mono_ns: int = 0  # time.monotonic_ns() of last_raw: rates never see a wall-clock step
    failed: bool = False  # unreadable at the last sample
    unstarted: bool = False  # no reading since it was read first (or again) has been one a counter can hold
    counted: bool = False  # in the node's host energy (counted_zones)


# The domain of a zone whose `name` cannot be read: while one is listed, the node's host energy is not known.
UNKNOWN_DOMAIN = "unknown"


def counted_zones(names: list[str]) -> list[bool]:
    """Which zones (by their `name`) add up to the node's CPU and memory energy: the rule in the module's docstring."""
    has_package = any(n.startswith("package-") for n in names)
    return [n.startswith("package-") or n == "dram" or (n == "psys" and not has_package) for n in names]


@dataclass(frozen=True)
class HostReading:
    """The node's counted RAPL zones at one sample: their summed unwrapped energy, its time, and the
    number of breaks so far (a counted zone unreadable: the energy across a break is unknown)."""

    energy_uj: int
    time_ns: int
    breaks: int
    mono_ns: int = 0  # time.monotonic_ns() at the sample: the job ledger's rates are over it


# The most one RAPL zone (a CPU package with its DRAM, a platform's psys) draws: a step that means more is no
# energy (a counter reset, gone back, or a value that cannot be), never a wrap.
ZONE_MAX_W = 2000.0
# The longest [sources.host] interval_s with RAPL read (Config.check): well under the 33 s a DRAM counter
# (65.7 kJ) takes to wrap at ZONE_MAX_W.
RAPL_MAX_INTERVAL_S = 15.0
# How often the powercap zones are listed again for new ones (_rescan).
RESCAN_NS = 60 * 10**9


def uj_problem(raw: int, max_range_uj: int | None) -> str:
    """Why a RAPL `energy_uj` reading cannot be a counter's value ("" where it can): a counter counts
    0 .. max_energy_range_uj and then wraps to 0."""
    if raw < 0 or (max_range_uj and raw > max_range_uj):
        return f"{raw} is outside 0..max_energy_range_uj ({max_range_uj})"
    return ""


def unwrap_uj(raw: int, last_raw: int, max_range_uj: int | None, dt_s: float) -> tuple[int | None, str, str]:
    """The energy between two readings of a RAPL `energy_uj`, which wraps at `max_energy_range_uj`, `dt_s`
    apart: (µJ, "", "") or (None, why, event) where the step cannot be known as energy: a reading outside
    0..max_range (`energy_counter_jump`); readings so far apart that at ZONE_MAX_W the counter could have
    wrapped a whole range more than it shows, so how many times it wrapped is not known
    (`energy_counter_gap`: the rule for meters' registers, core.energy, counts such an interval as a lower
    bound; a host share has no place for one); a drop that is no wrap (unwrapped, it would mean more than
    ZONE_MAX_W) or where the range is unknown (`energy_counter_reset`); a rise past ZONE_MAX_W
    (`energy_counter_jump`). A drop never becomes negative energy, nor a whole range of it."""
    why = uj_problem(raw, max_range_uj) or uj_problem(last_raw, max_range_uj)
    if why:
        return None, why, "energy_counter_jump"
    bound = ZONE_MAX_W * 1e6 * max(dt_s, 0.0)
    if max_range_uj and bound >= max_range_uj:
        return None, (f"read {dt_s:.0f} s after the last reading, long enough for it to wrap unseen (at "
                      f"{ZONE_MAX_W:g} W it wraps every {max_range_uj / 1e6 / ZONE_MAX_W:.0f} s): how many times it "
                      "wrapped is not known"), "energy_counter_gap"
    delta = raw - last_raw
    if delta < 0:
        if not max_range_uj:
            return None, f"went back from {last_raw} to {raw} and its max_energy_range_uj is unknown", "energy_counter_reset"
        delta += max_range_uj  # wrapped: (max - last) + now
        if delta > bound:
            return None, (f"went back from {last_raw} to {raw}: a reset, not a wrap (that would be "
                          f"{delta / 1e6 / dt_s if dt_s > 0 else float('inf'):.0f} W)"), "energy_counter_reset"
    elif delta > bound:
        return None, (f"rose from {last_raw} to {raw} in {dt_s:.3f} s: more than {ZONE_MAX_W:g} W, which no zone "
                      "draws"), "energy_counter_jump"
    return delta, "", ""


def _uj(text: bytes) -> int:
    """An `energy_uj` file's content: a whole number of µJ in decimal digits (a line of them), nothing else
    (Python's int() also takes "1_000", "+5" and other digits than ASCII's)."""
    digits = text.strip()
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(digits)
    return int(digits)


class Source:
    name = SOURCE

    def __init__(self, config: Config, ctx: Context) -> None:
        self.cfg = config
        self.ctx = ctx
        self.zones: list[_Zone] = []
        self.key = ctx.key("host")
        self.breaks = 0  # times a counted zone could not be read (HostReading.breaks)
        self._scanned_mono_ns = 0  # when the powercap zones were last listed (_rescan)
        self._reading: HostReading | None = None

    def open(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only primes the counters
        if self.cfg.rapl:
            self.zones = self._find_zones()
            self._scanned_mono_ns = time.monotonic_ns()
            for zone in self.zones:
                self._warn_wrap(zone)

    def _warn_wrap(self, zone: _Zone) -> None:
        """Said where a sample half an interval late would be a break (unwrap_uj: readings so far apart that the
        counter could wrap unseen at ZONE_MAX_W): a zone whose range is that small (a range a real zone has
        passes at the interval_s Config.check allows)."""
        if zone.max_range_uj and 2 * self.cfg.interval_s * ZONE_MAX_W * 1e6 >= zone.max_range_uj:
            log.warning("RAPL zone %s (%s) wraps at %d uJ, in %.1f s at %g W: with [sources.host] interval_s = %g, "
                        "a sample later than that is a break (energy_counter_gap: its energy unknown); sample more "
                        "often", zone.zone, zone.name, zone.max_range_uj, zone.max_range_uj / 1e6 / ZONE_MAX_W,
                        ZONE_MAX_W, self.cfg.interval_s)

    def _rescan(self, t_ns: int) -> None:
        """Zones added since the last scan (a socket or the powercap driver brought up after the agent started:
        found by the host audit, never read): read from now on, said as a `rapl_zones_changed` event; where
        the counted zones change, the host energy breaks there (its sum is of other zones before and after)."""
        known = {z.zone for z in self.zones}
        new = [z for z in self._find_zones(quiet=True) if z.zone not in known]
        if not new:
            return
        before = [z.zone for z in self.zones if z.counted]
        for zone in new:
            self._warn_wrap(zone)
        self.zones = sorted(self.zones + new, key=lambda z: z.zone)
        for zone, counted in zip(self.zones, counted_zones([z.name for z in self.zones])):
            zone.counted = counted
        after = [z.zone for z in self.zones if z.counted]
        if after != before:
            self.breaks += 1
        message = (f"RAPL zone(s) added: {', '.join(f'{z.zone} ({z.name})' for z in new)}; the node's host energy is "
                   f"{' + '.join(z.name for z in self.zones if z.counted) or 'none of them'}")
        log.warning("%s", message)
        self.ctx.event(SOURCE, "rapl_zones_changed", message, t_ns)

    def _find_zones(self, quiet: bool = False) -> list[_Zone]:
        root = Path(self.cfg.sysfs_root) / "class" / "powercap"
        found: list[_Zone] = []
        try:
            entries = sorted(p for p in root.iterdir() if p.name.startswith("intel-rapl:"))
        except OSError as exc:
            if not quiet:
                log.info("RAPL: no powercap zones under %s (%s); CPU energy is not reported", root, exc.strerror)
            return found
        for path in entries:
            problems = []
            try:
                name = (path / "name").read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                name = ""
                problems.append(f"{path / 'name'}: {getattr(exc, 'strerror', None) or exc}")
            if not name:
                # Which domain it is decides whether it counts (counted_zones): the node's host energy is not
                # known while any zone's is not (never counted, or left out, by a name made up here).
                name = UNKNOWN_DOMAIN
                if not problems:
                    problems.append(f"{path / 'name'}: empty")
            try:
                with open(path / "max_energy_range_uj", "rb") as f:
                    text = f.read()
                max_range: int | None = _uj(text) or None
                if max_range is None:
                    problems.append(f"{path / 'max_energy_range_uj'}: 0")
            except (OSError, ValueError) as exc:
                max_range = None
                problems.append(f"{path / 'max_energy_range_uj'}: " + ((exc.strerror or str(exc)) if isinstance(exc, OSError) else
                                                                       f"not a whole number of µJ: {text.strip()[:40]!r}"))
            zone = _Zone(path, path.name, name, max_range, self.ctx.key("host_rapl", zone=path.name, domain=name))
            found.append(zone)
            if problems:
                message = (f"RAPL zone {path.name}: {'; '.join(problems)}"
                           + ("; which domain it is is not known, so neither is the node's host energy"
                              if name == UNKNOWN_DOMAIN else "")
                           + ("; where it wraps is not known, so a drop of its counter is a break, never a wrap"
                              if max_range is None else ""))
                if self.ctx.once((SOURCE, path.name, "zone_unreadable"), logging.WARNING, "%s", message):
                    self.ctx.errors += 1
                    self.ctx.event(SOURCE, "rapl_unreadable", message, time.time_ns(), zone=path.name)
        for zone, counted in zip(found, counted_zones([z.name for z in found])):
            zone.counted = counted
        if quiet:
            return found
        if not found:
            log.info("RAPL: no intel-rapl zones under %s; CPU energy is not reported", root)
        else:
            log.info("RAPL: %d zone(s): %s; the node's host energy is %s", len(found),
                     ", ".join(f"{z.zone} ({z.name})" for z in found),
                     " + ".join(z.name for z in found if z.counted) or "none of them")
        return found

    def energy_reading(self) -> HostReading | None:
        """The counted zones' energy at the last sample, or None (no counted zone, none read yet, or
        one unreadable at the last sample)."""
        return self._reading

    def jobs(self) -> list[Job]:
        return [Job("host", self.cfg.interval_s, self.sample)]

    def sample(self) -> list[str]:
        t_ns, mono_ns = time.time_ns(), time.monotonic_ns()
        vm = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        fields = {
            "cpu_util_pct": psutil.cpu_percent(interval=None),
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "cpus": psutil.cpu_count() or 0,
            "memory_used_bytes": vm.total - vm.available,
            "memory_available_bytes": vm.available,
            "memory_total_bytes": vm.total,
        }
        out = []
        line = encode_line(self.key, fields, t_ns)
        if line:
            out.append(line)
        if self.cfg.rapl and mono_ns - self._scanned_mono_ns >= RESCAN_NS:
            self._scanned_mono_ns = mono_ns
            self._rescan(t_ns)
        counted_uj: int | None = 0
        for zone in self.zones:
            line = self._sample_zone(zone, t_ns, mono_ns)
            if line:
                out.append(line)
            if zone.counted:
                counted_uj = (None if zone.failed or zone.unstarted or counted_uj is None
                              else counted_uj + zone.total_uj)
        has_counted = any(z.counted for z in self.zones) and not any(z.name == UNKNOWN_DOMAIN for z in self.zones)
        self._reading = (HostReading(counted_uj, t_ns, self.breaks, mono_ns) if has_counted and counted_uj is not None
                         else None)
        return out

    def _sample_zone(self, zone: _Zone, t_ns: int, mono_ns: int) -> str | None:
        try:
            with open(zone.path / "energy_uj", "rb") as f:
                text = f.read()
            raw = _uj(text)
        except (OSError, ValueError) as exc:
            reason = ((exc.strerror or str(exc)) if isinstance(exc, OSError)
                      else f"not a whole number of µJ: {text.strip()[:40]!r}")
            if isinstance(exc, PermissionError):
                reason += " (RAPL is readable by root only since CVE-2020-8694)"
            message = f"RAPL zone {zone.zone} ({zone.name}) unreadable: {zone.path / 'energy_uj'}: {reason}; its energy is left out"
            if self.ctx.once((SOURCE, zone.zone, "unreadable"), logging.WARNING, "%s", message):
                self.ctx.errors += 1
                self.ctx.event(SOURCE, "rapl_unreadable", message, t_ns, zone=zone.zone)
            if zone.counted and not zone.failed:
                self.breaks += 1
            zone.failed = True
            return None
        if zone.failed:
            zone.failed = False
            self.ctx.forget((SOURCE, zone.zone, "unreadable"))
            log.info("RAPL zone %s readable again", zone.zone)
            zone.last_raw = None  # the time in between is unknown: restart the deltas
        fields: dict[str, object] = {}
        dt_s = (mono_ns - zone.last_mono_ns) / 1e9
        if zone.last_raw is not None:
            delta, why, event = unwrap_uj(raw, zone.last_raw, zone.max_range_uj, dt_s)
        else:
            # The first reading (or the first since the zone was unreadable) starts the counter: checked as
            # every other is (one past the range made every later energy negative: found by the host audit).
            delta, why, event = 0, uj_problem(raw, zone.max_range_uj), "energy_counter_jump"
        impossible = uj_problem(raw, zone.max_range_uj)
        if why:
            # No energy for this interval: a break (the ledger's host share is estimated across it).
            message = (f"RAPL zone {zone.zone} ({zone.name}): energy_uj {why}; "
                       + (f"its energy over the last {dt_s:.3f} s is unknown, left out" if zone.last_raw is not None
                          else "no start for its energy yet"))
            # A value no counter holds is said once while it lasts (a zone that always reads one said it every
            # sample); a step (a reset, a jump, a gap) each time it happens.
            if (self.ctx.once((SOURCE, zone.zone, "impossible"), logging.WARNING, "%s", message) if impossible
                    else log.warning("%s", message) or True):
                self.ctx.errors += 1
                self.ctx.event(SOURCE, event, message, t_ns, zone=zone.zone)
            if zone.counted and not zone.unstarted:
                self.breaks += 1
            if impossible:
                # No reading at all: the next one goes on from the last good one, or, with none, starts the
                # counter; until then the zone's energy is not known (nor the node's host energy).
                zone.unstarted = zone.last_raw is None
                return None
        self.ctx.forget((SOURCE, zone.zone, "impossible"))
        zone.unstarted = False
        if not why and zone.last_raw is not None and delta is not None:
            zone.total_uj += delta
            if dt_s > 0:
                fields["power_w"] = delta / 1e6 / dt_s
        zone.last_raw, zone.last_mono_ns = raw, mono_ns
        fields["energy_uj"] = zone.total_uj
        fields["counted"] = zone.counted  # in the node's host energy (counted_zones): an auditor can add them up
        return encode_line(zone.key, fields, t_ns)

    def close(self) -> None:
        pass
