"""Token scopes: which series each writer of the ingest endpoint may write.

Every token in the token file has a scope (its third column; collector/README.md, "Tokens"):

    gpu-a-1   <token>                         an agent token for node gpu-a-1 (no column: the same)
    gpu-a-1   <token>  agent                  the same, spelled out
    relay-1   <token>  agent:gpu-a-*,gpu-b-7  an agent token for the nodes matching these globs (a relay)
    telegraf  <token>  feeder:incomer,ups     a feeder token for ingest meters `incomer` and `ups`

What a scope allows, series by series (measurement and tags of each line):

1. The collector's own series (`schema.COLLECTOR_MEASUREMENTS`: `snmp_reading`, the
   derived energies and ratios): nobody.
2. A measurement an ingest meter reads (`[meters.X] measurement = ...`): only a feeder
   token, and only series that match its meters and no other meter (`MeterSource.matches`).
3. The agents' measurements (`schema.AGENT_MEASUREMENTS`: `gpu_power`, ...): only an agent
   token, and only with a `node` tag that is its own (its name, or one its globs match).
4. Anything else: any token. puewatch reads none of it, so it cannot move a reading,
   a ratio or a report; the store keeps it, as InfluxDB would.

A request with any line out of scope is refused whole (403, nothing stored), as InfluxDB
refuses a write to a database the user may not write: a forged line must not ride in
with good ones, and the writer learns nothing from a partial acceptance. Its agent's
own good lines come again with the next (fixed) batch from its spool.

The check runs once per distinct series of a body (`ParseResult.series`), not per line.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from puewatch.core import schema
from puewatch.core.site import Meter
from puewatch.errors import ConfigError

__all__ = ["AGENT", "FEEDER", "Scope", "WriteScopes", "parse_scope", "series_text"]

AGENT = "agent"
FEEDER = "feeder"
_GLOB_RE = re.compile(r"[A-Za-z0-9_.:@*?\[\]!-]{1,128}")
_METER_RE = re.compile(r"[^\s,]{1,128}")
_NODES_MAX = 100_000  # node names remembered per writer


@dataclass(frozen=True)
class Scope:
    """What one token may write: an agent's nodes (`nodes`: globs; empty: its own name) or a feeder's meters."""

    kind: str
    nodes: tuple[str, ...] = ()
    meters: tuple[str, ...] = ()
    # Where the token file gives it (`FILE:LINE`): what a message about it names, never the token's name,
    # which with the columns swapped is the token.
    where: str = field(default="", compare=False)

    def text(self, name: str) -> str:
        """The scope as the token file's third column reads, for messages."""
        if self.kind == FEEDER:
            return f"feeder:{','.join(self.meters)}"
        return f"agent:{','.join(self.nodes)}" if self.nodes else f"agent (node {name})"


def parse_scope(text: str) -> Scope:
    """The token file's scope column (`agent`, `agent:GLOB,...`, `feeder:METER,...`); ValueError says what is wrong."""
    kind, sep, rest = text.partition(":")
    items = tuple(rest.split(",")) if sep else ()
    if kind == AGENT:
        bad = next((g for g in items if not _GLOB_RE.fullmatch(g)), None)
        if bad is not None or (sep and not items):
            raise ValueError(f"scope {text!r}: node patterns are 1-128 of A-Z a-z 0-9 _ . : @ - * ? [ ] !, comma-separated")
        return Scope(AGENT, nodes=items)
    if kind == FEEDER:
        if not sep or any(not _METER_RE.fullmatch(m) for m in items):
            raise ValueError(f"scope {text!r}: a feeder names its meters, e.g. feeder:incomer,ups")
        return Scope(FEEDER, meters=tuple(dict.fromkeys(items)))
    # Not quoted: a line with its columns swapped would put the token here.
    raise ValueError("the third column is not a scope; expected agent, agent:NODE-GLOB,... or feeder:METER,...")


def series_text(measurement: str, tags: Mapping[str, str]) -> str:
    """A series as a line-protocol series key (tags sorted), to name it in a refusal."""
    return ",".join([measurement, *(f"{k}={v}" for k, v in sorted(tags.items()))])


class WriteScopes:
    """The scope rules for one site: `refusal(writer, series)` says why a body may not be stored, or None."""

    def __init__(self, scopes: Mapping[str, Scope], meters: Mapping[str, Meter] | None = None, site: str = "") -> None:
        self.scopes = dict(scopes)
        # measurement -> [(meter, its source)] for the ingest meters
        self._meters: dict[str, list[tuple[str, schema.MeterSource]]] = {}
        for name, m in (meters or {}).items():
            if m.measurement:
                (source,) = schema.meter_sources(site, m)
                self._meters.setdefault(source.measurement, []).append((name, source))
        self._ingest_meters = {name for sources in self._meters.values() for name, _ in sources}
        # writer -> node -> allowed (globs are matched once per node)
        self._nodes: dict[str, dict[str, bool]] = {name: {} for name in self.scopes}

    def is_feeder(self, writer: str) -> bool:
        """Whether `writer`'s token is a meters' feeder (`feeder:...`)."""
        scope = self.scopes.get(writer)
        return scope is not None and scope.kind == FEEDER

    def check_meters(self, meters: Mapping[str, Meter]) -> None:
        """Refuse a feeder that names a meter the site does not feed through ingest (start-up, one line)."""
        problems = self.meter_problems(meters)
        if problems:
            raise ConfigError(problems[0])

    def meter_problems(self, meters: Mapping[str, Meter]) -> list[str]:
        """Every meter a feeder names that the site does not feed through ingest (--check-config: all at once)."""
        out = []
        for writer, scope in self.scopes.items():
            for meter in scope.meters:
                if meter in self._ingest_meters:
                    continue
                where = scope.where or "the token file"
                if meter in meters:
                    out.append(f"{where}: the feeder scope names meter {meter!r}, which the collector reads over "
                               "SNMP; a feeder token names ingest meters (those with `measurement`)")
                    continue
                known = ", ".join(sorted(self._ingest_meters)) or "none"
                out.append(f"{where}: the feeder scope names meter {meter!r}, which is not in [meters] "
                           f"(ingest meters: {known})")
        return out

    def unfed_meters(self) -> list[str]:
        """Ingest meters that no feeder token names: every write to them will be refused."""
        fed = {m for s in self.scopes.values() for m in s.meters}
        return sorted(self._ingest_meters - fed)

    def refusal(self, writer: str, series: Iterable[tuple[str, Mapping[str, str]]]) -> tuple[str, int] | None:
        """(why the first series out of scope may not be written, how many are), or None when all may."""
        scope = self.scopes.get(writer)
        first = None
        count = 0
        for measurement, tags in series:
            why = self._why(writer, scope, measurement, tags)
            if why is not None:
                count += 1
                if first is None:
                    first = f"{writer!r} may not write {series_text(measurement, tags)}: {why}"
        return None if first is None else (first, count)

    def _why(self, writer: str, scope: Scope | None, measurement: str, tags: Mapping[str, str]) -> str | None:
        if measurement in schema.COLLECTOR_MEASUREMENTS:
            return "it is the collector's own series; no client writes it"
        sources = self._meters.get(measurement)
        if sources is not None:
            matched = [name for name, source in sources if source.matches(tags)]
            mine = scope.meters if scope is not None and scope.kind == FEEDER else ()
            if matched and all(m in mine for m in matched):
                return None
            if not matched:
                return f"it is none of the meters {measurement!r} holds, and only meters' feeders write {measurement!r}"
            other = next(m for m in matched if m not in mine)
            return f"it is the series of meter {other!r}; only a feeder token naming {other!r} writes it"
        if measurement in schema.AGENT_MEASUREMENTS:
            if scope is None or scope.kind != AGENT:
                return "a feeder token writes only its meters' series"
            node = tags.get(schema.NODE_TAG)
            if node is None:
                return "agents' series carry a node tag"
            known = self._nodes[writer]
            allowed = known.get(node)
            if allowed is None:
                allowed = (any(fnmatch.fnmatchcase(node, g) for g in scope.nodes) if scope.nodes else node == writer)
                if len(known) >= _NODES_MAX:
                    known.clear()
                known[node] = allowed
            if not allowed:
                own = f"node matching {','.join(scope.nodes)}" if scope.nodes else f"node={writer}"
                return f"an agent token writes only its own node's series ({own})"
        return None
