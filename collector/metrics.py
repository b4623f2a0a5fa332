"""Prometheus `/metrics` for the collector, on its own port.

Counters that the parts keep themselves (the ingest server's, the store
writer's) are read when Prometheus scrapes, through small *stat providers*,
so the hot paths only bump plain integers. SNMP polls and pipeline results
are recorded as they happen.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping

from puewatch.core import schema
from puewatch.errors import ConfigError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("puewatch.collector.metrics")

StatProvider = Callable[[], Mapping[str, float]]

# name in a provider's stats -> (metric name, help, counter?)
_INGEST = {
    "requests": ("puewatch_ingest_requests", "HTTP write requests received", True),
    "lines_accepted": ("puewatch_ingest_lines", "Line-protocol lines accepted", True),
    "parse_errors": ("puewatch_ingest_parse_errors", "Malformed lines refused (400, partial write)", True),
    "store_refused": (
        "puewatch_ingest_store_refused",
        "Lines refused because the store would refuse them: field type conflict, unsigned integer, key length (400, partial write)",
        True,
    ),
    "clock_skew_refused": (
        "puewatch_ingest_clock_skew_refused",
        "Lines refused for a time further from the collector's clock than max_clock_skew_s / max_age_s (400, partial write)",
        True,
    ),
    "retention_refused": (
        "puewatch_ingest_retention_refused",
        "Lines refused as older than the store's raw retention (raw_retention_days), which would delete them (400, partial write)",
        True,
    ),
    "bytes_received": ("puewatch_ingest_received_bytes", "Request body bytes received (before decompression)", True),
    "unauthorized": ("puewatch_ingest_unauthorized", "Requests refused for a missing or wrong token (401)", True),
    "forbidden": ("puewatch_ingest_forbidden", "Requests refused whole for a series out of the token's scope (403)", True),
    "scope_refused_lines": (
        "puewatch_ingest_scope_refused_lines", "Well-formed lines of the requests refused for their scope (403)", True
    ),
    "too_large": ("puewatch_ingest_too_large", "Requests refused as too large (413)", True),
    "timeouts": ("puewatch_ingest_timeouts", "Connections cut off by a timeout", True),
    "connections_open": ("puewatch_ingest_connections", "Open ingest connections", False),
    "connections_unauthenticated": (
        "puewatch_ingest_connections_unauthenticated", "Open ingest connections that have not yet shown a valid token", False,
    ),
    "connections_evicted": (
        "puewatch_ingest_connections_evicted",
        "Unauthenticated connections closed to make room for a new one (a connection cap was reached)", True,
    ),
    "connections_refused": (
        "puewatch_ingest_connections_refused",
        "New connections closed at once: a cap was reached and no unauthenticated connection could be evicted", True,
    ),
    "backpressure": (
        "puewatch_ingest_backpressure",
        "Requests answered 503 with Retry-After: spool full, a disk full or the collector degraded (nothing acknowledged)",
        True,
    ),
    "paced": (
        "puewatch_ingest_paced",
        "Accepted requests whose answer waited for the store to catch up (flow control: pace_backlog_bytes)", True,
    ),
    "paced_seconds": ("puewatch_ingest_paced_seconds", "Time answers waited for the store to catch up", True),
}
_STORE = {
    "points_written": ("puewatch_store_points_written", "Points the store acknowledged", True),
    "batches_written": ("puewatch_store_batches_written", "Batches the store acknowledged", True),
    "spool_bytes": ("puewatch_spool_bytes", "Bytes waiting in the on-disk spool", False),
    "spool_batches": ("puewatch_spool_batches", "Batches waiting in the on-disk spool", False),
    "held_points": ("puewatch_spool_held_points", "Points held in memory because the spool's disk is full", False),
    "dropped_points": ("puewatch_dropped_points", "Points dropped because the spool was full (oldest first)", True),
    "rejected_points": ("puewatch_rejected_points", "Lines the store refused (4xx other than 429) or failed on alone, set aside", True),
    "rejected_pruned_points": (
        "puewatch_rejected_points_pruned", "Set-aside lines deleted from rejected/ to keep the newest within its byte budget", True,
    ),
    "refused_points": (
        "puewatch_refused_points", "Points refused at ingest (503) because the spool could not take them: the sender keeps them", True,
    ),
    "commits": ("puewatch_group_commits", "Group commits: records written and fsync'd before ingest answered", True),
    "commit_batches": ("puewatch_group_commit_batches", "Batches (requests) those group commits held", True),
    "commit_seconds_sum": ("puewatch_group_commit_seconds", "Time spent writing and fsyncing group commits", True),
    "commit_seconds_max": ("puewatch_group_commit_max_seconds", "The longest group commit so far", False),
}


class _Pull(Collector):
    def __init__(self) -> None:
        self._providers: list[tuple[str, StatProvider, Mapping[str, tuple[str, str, bool]], dict[str, str]]] = []
        self._lock = threading.Lock()
        self._missing: set[tuple[str, str]] = set()

    def add(self, provider: StatProvider, names: Mapping[str, tuple[str, str, bool]], labels: dict[str, str]) -> None:
        with self._lock:
            self._providers.append((",".join(f"{k}={v}" for k, v in labels.items()), provider, names, labels))

    def collect(self) -> Iterable:
        with self._lock:
            providers = list(self._providers)
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for _, provider, names, labels in providers:
            stats = provider()
            for key, (metric, help_text, counter) in names.items():
                if key not in stats:
                    # A metric the provider does not give is a fault of the collector, said (it went unseen:
                    # puewatch_ingest_store_refused was never exported; found by the config audit).
                    if (metric, key) not in self._missing:
                        self._missing.add((metric, key))
                        log.error("metrics: %s has no value (its provider gives no %r)", metric, key)
                    continue
                fam = families.get(metric)
                if fam is None:
                    cls = CounterMetricFamily if counter else GaugeMetricFamily
                    fam = cls(metric, help_text, labels=list(labels))
                    families[metric] = fam
                fam.add_metric(list(labels.values()), float(stats[key]))
        yield from families.values()

    def describe(self) -> Iterable:
        return []


class _PipelineQuality(Collector):
    """What the register-energy policy decided per meter (core.energy), read at scrape time."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterable:
        p = self.pipeline
        intervals = CounterMetricFamily(
            "puewatch_register_intervals", "Register intervals per meter by outcome (counted, wrap, reset, jump, "
            "missing: docs/auditor-guide.md)", labels=["meter", "outcome"])
        power = CounterMetricFamily(
            "puewatch_power_readings_refused", "Power readings not counted: negative or above the meter's power limit",
            labels=["meter"])
        register = CounterMetricFamily(
            "puewatch_register_readings_refused", "Register readings that are not readings: negative, or at or above "
            "the register's modulus (docs/auditor-guide.md)", labels=["meter"])
        future = CounterMetricFamily(
            "puewatch_readings_from_future", "Readings refused by the live pipeline: stamped further ahead of the "
            "collector's clock than [ingest] max_clock_skew_s (which ingest refuses too), or beyond the readings a "
            "stream holds until their time; one less than settle_s ahead is taken at once, one further (within "
            "max_clock_skew_s) held until its time and taken (docs/auditor-guide.md)", labels=["stream"])
        late = CounterMetricFamily(
            "puewatch_readings_too_late", "Readings refused by the live pipeline: stamped at or before a reading "
            "whose interval is already in written cells (they came later than settle_s); in the store and in "
            "reports, not in live cells (docs/auditor-guide.md)", labels=["stream"])
        limit = GaugeMetricFamily("puewatch_power_limit_watts", "Each meter's power limit (NaN: none)",
                                  labels=["meter", "source"])
        uncertain = CounterMetricFamily(
            "puewatch_register_uncertain_wraps", "Counted register intervals long enough for the register to wrap "
            "once more unseen: their energy is a lower bound (docs/auditor-guide.md)", labels=["meter"])
        streams = list(p.streams.items()) + [(st.key, st) for st in list(p.gpu_streams.values())]
        retired = dict(p.retired)
        for name, st in streams:
            # With the counts of the meter's streams that ended (Pipeline.restart_meter): a counter never falls.
            old = retired.pop(name, {})
            for outcome, n in list(st.outcomes.items()):
                intervals.add_metric([name, outcome], n + old.get(f"outcome:{outcome}", 0))
            power.add_metric([name], st.power_refused + old.get("power_refused", 0))
            if st.register or old.get("register_refused"):
                register.add_metric([name], st.register_refused + old.get("register_refused", 0))
            future.add_metric([name], st.future_refused + old.get("future_refused", 0))
            late.add_metric([name], st.late_refused + old.get("late_refused", 0))
            if (st.register and st.modulus is not None) or old.get("uncertain_wraps"):  # (GPU counters: 64-bit)
                uncertain.add_metric([name], st.uncertain_wraps + old.get("uncertain_wraps", 0))
            lim = st.limit()
            limit.add_metric([name, lim.source], math.nan if lim.watts is None else lim.watts)
        for name, old in retired.items():  # a meter whose new stream has no reading yet
            for key, n in old.items():
                if key.startswith("outcome:"):
                    intervals.add_metric([name, key.split(":", 1)[1]], n)
            for family, key in ((power, "power_refused"), (future, "future_refused"), (late, "late_refused")):
                family.add_metric([name], old.get(key, 0))
            for family, key in ((register, "register_refused"), (uncertain, "uncertain_wraps")):
                if old.get(key):
                    family.add_metric([name], old[key])
        floor = CounterMetricFamily("puewatch_ratio_below_floor", "Rolling ratio values below their physical floor "
                                    "(PUE < 1, ...), never published: one per window and cell whose coverage was "
                                    "enough; ratio is its name (pue, clf, ...) or zone:<zone>:ppue",
                                    labels=["ratio"])
        for ratio, n in list(p.below_floor.items()):
            floor.add_metric([ratio], n)
        no_den = CounterMetricFamily("puewatch_ratio_denominator_not_positive", "Rolling ratio values over a covered "
                                     "window whose denominator's energy was 0 or less (a frozen register): cannot be "
                                     "known, never published", labels=["ratio"])
        for ratio, n in list(p.no_denominator.items()):
            no_den.add_metric([ratio], n)
        yield from (intervals, power, register, future, late, limit, uncertain, floor, no_den)

    def describe(self) -> Iterable:
        return []


class _Health(Collector):
    """The degraded state (collector.health), read at scrape time."""

    def __init__(self, health) -> None:
        self.health = health

    def collect(self) -> Iterable:
        from puewatch.collector.health import REASONS

        active = self.health.active()
        degraded = GaugeMetricFamily("puewatch_degraded", "1 while the collector is degraded for this reason "
                                     "(ingest may answer 503; collector/README.md)", labels=["reason"])
        events = CounterMetricFamily("puewatch_degraded_events", "Times each degrading condition was met",
                                     labels=["reason"])
        for reason in REASONS:
            degraded.add_metric([reason], 1.0 if reason in active else 0.0)
            events.add_metric([reason], self.health.events.get(reason, 0))
        yield from (degraded, events)

    def describe(self) -> Iterable:
        return []


class CollectorMetrics:
    """Every metric the collector exports, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._pull = _Pull()
        self.registry.register(self._pull)
        self.snmp_polls = Counter(
            "puewatch_snmp_polls", "Polls per device by result", ["device", "result"], registry=self.registry
        )
        self.snmp_failures = Counter(
            "puewatch_snmp_poll_failures",
            f"Failed polls per device by cause ({', '.join(schema.SNMP_POLL_CAUSES)}: docs/operator-guide.md)",
            ["device", "cause"], registry=self.registry,
        )
        self.snmp_latency = Histogram(
            "puewatch_snmp_poll_seconds",
            "Time from sending a device's first request to its last answer",
            ["device"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.snmp_refused = Counter(
            "puewatch_snmp_values_refused",
            "Values a device answered that were recorded as missing, by reason: out_of_range (outside the MIB "
            "object's SYNTAX range), unavailable (the vendor's 'not available' filler), negative (power or energy), "
            "non_finite, not_a_number (text that is not a decimal number, or a value typed IpAddress, TimeTicks, OID "
            "or Opaque), not_measured (a 0 the profile's "
            "zero_valid_if refuses: a loaded UPS line answering 0 W), "
            "absent (no value: the object answered noSuchObject, noSuchInstance or endOfMibView)",
            ["device", "reason"], registry=self.registry,
        )
        self.snmp_absent = Counter(
            "puewatch_snmp_rows_absent",
            "Readings of table rows found at discovery that answered 'no such instance' (recorded as missing, and "
            "so are the device totals they are part of)", ["device"], registry=self.registry,
        )
        self.snmp_rows_refused = Gauge(
            "puewatch_snmp_rows_refused",
            "Table rows the device's latest discovery found that its profile cannot name (the row index lacks a "
            "component the reading's name template uses): not read; the collector's log names each",
            ["device"], registry=self.registry,
        )
        self.snmp_up = Gauge("puewatch_snmp_up", "1 when the device's last poll answered", ["device"], registry=self.registry)
        self.ratio = Gauge(
            "puewatch_ratio", "Latest rolling ratio (pue, clf, plf, ...) per window; NaN when unknown",
            ["ratio", "window"], registry=self.registry,
        )
        self.coverage = Gauge(
            "puewatch_ratio_coverage", "Share of the window with data behind the ratio", ["ratio", "window"], registry=self.registry
        )
        self.store_write = Histogram(
            "puewatch_store_write_seconds", "Duration of one successful store write",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry,
        )
        self.horizon_lag = Gauge(
            "puewatch_pipeline_lag_seconds", "How far the pipeline's finalised cells lag the clock", registry=self.registry
        )
        self.step_seconds = Histogram(
            "puewatch_pipeline_step_seconds", "Time one pipeline step takes", registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        self.token_reloads = Counter(
            "puewatch_token_reloads", "Reloads of the writers' tokens (SIGHUP) by result: ok (swapped in), failed "
            "(the token source failed the start's checks; the tokens before it still hold)", ["result"],
            registry=self.registry,
        )
        for result in ("ok", "failed"):  # both shown from the start, at 0
            self.token_reloads.labels(result)

    def add_pipeline(self, pipeline) -> None:
        self.registry.register(_PipelineQuality(pipeline))

    def add_health(self, health) -> None:
        self.registry.register(_Health(health))

    def add_ingest(self, provider: StatProvider) -> None:
        self._pull.add(provider, _INGEST, {})

    def add_store(self, name: str, provider: StatProvider) -> None:
        self._pull.add(provider, _STORE, {"store": name})

    def token_reload(self, ok: bool) -> None:
        self.token_reloads.labels("ok" if ok else "failed").inc()

    def poll(self, device: str, cause: str | None, seconds: float) -> None:
        """One poll of `device`: answered (cause None) or failed, by its cause (`schema.SNMP_POLL_CAUSES`)."""
        ok = cause is None
        self.snmp_polls.labels(device, "ok" if ok else "error").inc()
        if not ok:
            self.snmp_failures.labels(device, cause).inc()
        self.snmp_up.labels(device).set(1 if ok else 0)
        if ok and math.isfinite(seconds):
            self.snmp_latency.labels(device).observe(seconds)

    def rows_refused(self, device: str, n: int) -> None:
        self.snmp_rows_refused.labels(device).set(n)

    def refused(self, device: str, readings) -> None:
        """Count the readings whose answered value was refused (`snmp.validate`)."""
        for r in readings:
            if r.refused is not None:
                self.snmp_refused.labels(device, r.refused.reason).inc()
            if getattr(r, "absent", False):
                self.snmp_absent.labels(device).inc()

    def serve(self, address: str, port: int):
        """Start the HTTP endpoint in a daemon thread; returns (server, thread)."""
        try:
            return start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {address}:{port}: {exc.strerror or exc}") from None
