"""`puewatch collector`: one process per site that wires ingest, SNMP, the pipeline and the store.

Everything runs on one asyncio loop except the store writes (the store
writer's thread) and the Prometheus endpoint (its own thread). The loop:

- takes agents' batches from the ingest server: the lines go to the store as
  they are, and the points the pipeline needs (GPU energy counters, meters
  fed through ingest) go to the pipeline;
- takes every SNMP poll: the readings are written as raw series
  (`schema.snmp_reading`, a typed batch) and the meters' readings go to the pipeline;
- steps the pipeline every interval and writes the derived series (a typed batch);
- checkpoints the rolling history, and tells systemd it is alive.

SIGHUP (`systemctl reload`) re-reads the writers' token source (`load_writers`, as at start) and
swaps it into the ingest server whole; a source that fails the start's checks leaves the
writers as they were (logged, counted in `puewatch_token_reloads_total`).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import math
import os
import signal
import tempfile
import time
from pathlib import Path

from puewatch.sdnotify import SystemdNotifier
from puewatch.collector import config as ccfg
from puewatch.collector.health import Health
from puewatch.collector.metrics import CollectorMetrics
from puewatch.collector.fieldtypes import NUMBER, FieldTypes
from puewatch.collector.pipeline import Pipeline, compile_kernels, format_window
from puewatch.core import schema
from puewatch.core.timefmt import SECOND
from puewatch.collector.snmp.profiles import register_modulus, register_step
from puewatch.core.batch import Batch
from puewatch.errors import ConfigError, startup_error
from puewatch.redact import install_log_filter

log = logging.getLogger("puewatch.collector")

# The derived series held in memory while the disk under their spool is full (then the oldest
# held are dropped, counted): a few hundred points a second fit for hours.
DERIVED_MEMORY_MAX_BYTES = 64 << 20

# The pipeline looks for finished cells this many times per cell, this long after each tick.
STEPS_PER_CELL = 4
TICK_AFTER_CELL_S = 0.05
# How often the store's upkeep runs (the embedded store: retention and compaction), from the start on.
MAINTAIN_INTERVAL_S = 3600.0


def build_store(conf: ccfg.CollectorConfig):
    """The configured store (embedded by default)."""
    s = conf.store
    if s.influx2 is not None:
        from puewatch.collector.stores.influx2 import Influx2Store

        c = s.influx2
        return Influx2Store(
            c.url,
            ccfg.read_secret(c.token, c.token_file, "store.influx2.token_file"),
            c.org,
            c.bucket,
            gzip=c.gzip,
            timeout_s=c.timeout_s,
            ssl_ca_cert=c.ca_file or None,
        )
    if s.influx1 is not None:
        from puewatch.collector.stores.influx1 import Influx1Store

        c = s.influx1
        return Influx1Store(
            c.url,
            c.database,
            rp=c.retention_policy or None,
            user=c.user or None,
            password=ccfg.read_secret(c.password, c.password_file, "store.influx1.password_file") or None,
            gzip=c.gzip,
            timeout_s=c.timeout_s,
        )
    from puewatch.collector.stores.embedded import EmbeddedStore

    e = s.embedded or ccfg.EmbeddedStore()
    path = e.path or str(Path(conf.collector.state_dir) / "puewatch.sqlite")
    return EmbeddedStore(path, raw_retention_s=e.raw_retention_days * 86400, compact_after_s=e.compact_after_days * 86400)


def ingest_field_types(store, writer=None) -> FieldTypes:
    """The field types ingest checks lines against: the schema's, what the store already holds, what
    the writer's spool holds (`writer`, not started yet), and unsigned integers only where the store
    takes them (not InfluxDB 1.x)."""
    from puewatch.collector.lineparse import LineParser
    from puewatch.collector.stores.base import StoreRejected, StoreUnavailable
    from puewatch.collector.stores.influx1 import Influx1Store

    types = FieldTypes(unsigned=not isinstance(store, Influx1Store))
    # The embedded store keeps each field's InfluxDB type (`number`: a field from before it did);
    # InfluxDB 1.x says them with SHOW FIELD KEYS. (The v2 write API has no such question.)
    kinds = getattr(store, "field_types", None) or getattr(store, "field_kinds", None)
    try:
        stored = kinds() if kinds else {}
    except (StoreUnavailable, StoreRejected) as exc:
        stored = {}
        log.warning("field types of the stored series not known (%s): until their first write here, a line of "
                    "another type than stored is acknowledged, then refused by the store and set aside in "
                    "rejected/", exc)
    for (measurement, field), kind in stored.items():
        types.learn(measurement, field, NUMBER if kind == "number" else kind)
    if writer is not None:
        # Lines acknowledged before a crash and still in the spool are not in the store yet, but a
        # 204 promised they will be: a later line of another type would be taken, then refused by
        # the store (or take the field's type first). Their types are learnt as ingest learnt them
        # then: through the same parser and check, oldest batch first.
        # Parsed at ~90 MB/s here: a full 1 GiB spool holds ingest closed ~12 s longer (agents spool meanwhile).
        parser = LineParser(types=types)
        lines = 0
        t0 = time.monotonic()
        for body in writer.spooled_line_protocol():
            lines += parser.parse(body).lines
        if lines:
            log.info("field types: %d known, with those of %d spooled line(s) not yet in the store (read in %.1f s)",
                     len(types), lines, time.monotonic() - t0)
    return types


def ingest_retention_s(store) -> float | None:
    """The store's raw retention, which ingest refuses older lines by (a 204 must not be given to a line the
    store then drops): the embedded store's configured one; an InfluxDB's policy, asked at start (lines 31,
    45 and 100 days old were acknowledged, then refused by InfluxDB's 30-day policy: found by the collector
    audit). None: no limit, or not known (said)."""
    from puewatch.collector.stores.base import StoreRejected, StoreUnavailable

    ask = getattr(store, "retention_s", None)
    if ask is None:
        return getattr(store, "raw_retention_s", None)
    try:
        return ask()
    except (StoreUnavailable, StoreRejected) as exc:
        log.warning("retention of the store not known (%s): until the collector starts with it answering, a line "
                    "older than the store keeps is acknowledged, then refused by the store and set aside in "
                    "rejected/", exc)
        return None


class Collector:
    """The running collector for one site."""

    def __init__(self, conf: ccfg.CollectorConfig) -> None:
        self.conf = conf
        c = conf.collector
        self.site = conf.site_model()
        for key, msg in self.site.warnings():
            log.warning("%s: %s", key, msg)
        self.state_dir = Path(c.state_dir)
        self.lock_fd: int | None = None  # the state directory's lock while running (lock_state_dir)
        self.pipeline = Pipeline(
            self.site,
            interval_ns=round(c.interval_s * SECOND),
            windows_ns=c.windows_ns(),
            min_coverage=c.min_coverage,
            settle_ns=round(conf.settle_s() * SECOND),
            gpu_max_power_w=c.gpu_max_power_w,
            state_dir=self.state_dir,
            # What ingest stores ahead of the clock, the pipeline takes at its time: live and report alike.
            max_ahead_ns=round(conf.ingest.max_clock_skew_s * SECOND),
        )
        self.metrics = CollectorMetrics()
        self.metrics.add_pipeline(self.pipeline)
        # Ingest series that feed meters: measurement -> (meter, its source, register modulus).
        self.ingest_meters: dict[str, list[tuple[str, schema.MeterSource, float | None]]] = {}
        for name, m in conf.meters.items():
            if m.measurement:
                (source,) = schema.meter_sources(self.site.name, m)
                self.ingest_meters.setdefault(source.measurement, []).append((name, source, m.modulus))
        # What the ingest parser builds points for: GPU energy readings (one agent line in
        # ten carries `energy_mj`) and the meters' fields; every other line goes to the store
        # without a dict ever being built for it.
        subscribed: dict[str, set[str]] = {schema.GPU_POWER: {schema.GPU_ENERGY_MJ}}
        for measurement, meters in self.ingest_meters.items():
            subscribed.setdefault(measurement, set()).update(source.field for _, source, _ in meters)
        self.subscribed = {m: tuple(sorted(fields)) for m, fields in subscribed.items()}
        # SNMP meters: device -> [(meter, reading name or "" for the default)]
        self.snmp_meters: dict[str, list[tuple[str, str]]] = {}
        for name, m in conf.meters.items():
            if m.device:
                self.snmp_meters.setdefault(m.device, []).append((name, m.reading))
        self._chosen: dict[str, str] = {}  # meter -> reading name chosen on the first answer
        self._unread: set[tuple[str, str]] = set()  # (meter, reading) its device answered without: logged once
        self._register_rules: dict[tuple[str, str], tuple[float, float | None]] = {}  # (device, reading): _register_rule
        self.store = None
        self.writer = None
        self.derived_writer = None
        self.poller = None
        self.ingest = None
        self.started_ns = time.time_ns()
        self.running = False  # up and serving: an error from here on is not a start-up error
        self.health = Health()
        self.metrics.add_health(self.health)

    # ---- the ingest sink -------------------------------------------------------

    async def pace(self) -> float:
        """Ingest's flow control, after a body is on disk and before its 204 (collector/pacing.py)."""
        return await self.pacer.wait()

    def accept(self, agent: str, body: bytes, lines: int, points):
        """Durable: returns what ingest awaits before its 204 (the lines on disk), then the pipeline
        gets the points; raises `Backpressure` (503) while the collector is degraded."""
        from puewatch.collector.stores.spool import Backpressure

        blocked = self.health.blocking()
        if blocked is not None:
            raise Backpressure(f"the collector is degraded: {blocked}")
        committed = self.writer.commit(body, lines)
        return self._accepted(committed, points)

    async def _accepted(self, committed, points) -> None:
        await asyncio.wrap_future(committed)
        if points:
            self._feed(points)

    def _feed(self, points) -> None:
        now = time.time_ns()
        for p in points:
            if p.measurement == schema.GPU_POWER:
                e = p.fields.get(schema.GPU_ENERGY_MJ)
                node = p.tags.get("node")
                if e is None or node is None:
                    continue
                gpu = p.tags.get("uuid") or p.tags.get("gpu", "")
                self.pipeline.add_gpu(node, gpu, p.time_ns, float(e), now, estimated=bool(p.fields.get(schema.GPU_ENERGY_ESTIMATED)))
            for meter, source, modulus in self.ingest_meters.get(p.measurement, ()):
                if source.field not in p.fields or not source.matches(p.tags):
                    continue
                value = p.fields[source.field]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                self.pipeline.add_meter(meter, p.time_ns, float(value), now, register=source.register,
                                        factor=source.factor, modulus=modulus)

    # ---- SNMP --------------------------------------------------------------------

    def on_poll(self, device: str, time_ns: int, readings, error: str | None) -> None:
        ok = error is None
        # The poller's errors are PollErrors, which carry their kind; any other text is the agent's answer.
        cause = None if ok else getattr(error, "cause", "error")
        stats = self.poller.stats.get(device) if self.poller is not None else None
        seconds = stats.last_duration_s if stats is not None else math.nan
        self.metrics.poll(device, cause, seconds)
        self.metrics.refused(device, readings)
        meter = self.poller.meters.get(device) if self.poller is not None else None
        if meter is not None:
            self.metrics.rows_refused(device, meter.rows_refused)
        # (A failed poll is logged by the poller, once per failure, then counted: not here on every poll.)
        now = time.time_ns()
        out = Batch()
        # Every poll, answered or not: a failed poll stores no reading, and a report tells a device that was
        # down from one nobody polled by these (schema.SNMP_POLL). An answered poll is recorded at its
        # readings' time (a report tells the poll that gave a gap's edge reading from one inside the gap by
        # it), a failed one at its slot's. A skipped slot took no time of its own.
        at = readings[0].time_ns if ok and readings else time_ns
        out.add(*schema.snmp_poll(self.site.name, device, cause or schema.SNMP_POLL_OK), at, {
            schema.SNMP_POLL_SECONDS: 0.0 if cause == "skipped" or not math.isfinite(seconds) else float(seconds),
            schema.SNMP_POLL_ERROR: None if ok else str(error),
        })
        by_name = {}
        for r in readings:
            by_name[r.name] = r
            if r.name in schema.SNMP_RATING_READINGS:
                self.pipeline.add_rating(device, r.name, r.value)
            out.add(*schema.snmp_reading(self.site.name, device, r.name, r.unit), r.time_ns,
                    {schema.SNMP_VALUE: float(r.value), schema.SNMP_RAW: None if r.raw is None else float(r.raw)})
        if out:
            self.writer.submit(out)
        for meter, wanted in self.snmp_meters.get(device, ()):
            name = wanted or self._chosen.get(meter)
            if not wanted and name != schema.SNMP_ENERGY_READING:
                # A meter naming no reading reads the device's energy register once it answers one, as a
                # report prefers it (schema.meter_sources), else its power: a register whose first answer was
                # refused locked the meter onto integrated power for the whole run while the report read the
                # register (found by the SNMP operator audit). Never back from the register to power.
                better = self._default_reading(by_name, ok)
                if better is not None and better != name:
                    if name:  # from power to the register: a stream of the register's kind from here on
                        self.pipeline.restart_meter(meter)
                    self._chosen[meter] = name = better
                    log.info("meter %s reads %s/%s", meter, device, name)
            if not name:
                continue  # decided on the first answer that has data
            r = by_name.get(name)
            if r is None:
                if ok and (meter, name) not in self._unread:
                    # A `reading` the device does not have (a typo; a profile chosen at run time): the meter
                    # got no data, and nothing said so (found by the SNMP operator audit). Once per meter.
                    self._unread.add((meter, name))
                    log.error("meter %s: device %s answered, but has no reading named %r (its readings: %s): the "
                              "meter gets no data from it", meter, device, name, ", ".join(sorted(by_name)) or "none")
                continue
            register = r.kind == "register"
            # One register step and the register's wrap value, as the profile alone fixes them, and only
            # where the site file names the profile: a report knows no more (report.sources.resolve_snmp_wraps),
            # and the two must agree (a row's wrap known live from the device's answers, and not in the report,
            # made a drop a wrap live and a reset in the report).
            resolution, modulus = self._register_rule(device, name) if register else (0.0, None)
            self.pipeline.add_meter(meter, r.time_ns, r.value, now, register=register, modulus=modulus,
                                    resolution=resolution)

    @staticmethod
    def _default_reading(by_name: dict, ok: bool) -> str | None:
        """The reading a poll's answer offers a meter that names none: the energy register where it has a value,
        else the power (a device without energy metering: its power is integrated), else None (no data)."""
        energy = by_name.get(schema.SNMP_ENERGY_READING)
        if energy is not None and math.isfinite(energy.value):
            return schema.SNMP_ENERGY_READING
        if by_name.get(schema.SNMP_POWER_READING) is not None and ok:
            return schema.SNMP_POWER_READING
        return None

    def _register_rule(self, device: str, reading: str) -> tuple[float, float | None]:
        """A register reading's step and wrap value where the profile the site file names fixes them
        (profiles.register_step, register_modulus); (0, None) where the device decides them at run time.
        Found once per device and reading (a profile the site file names does not change), not each poll."""
        rule = self._register_rules.get((device, reading))
        if rule is None:
            meter = self.poller.meters.get(device) if self.poller is not None else None
            if meter is None or not meter.device.profile or meter.profile is None:
                rule = (0.0, None)
            else:
                rule = (register_step(meter.profile, reading), register_modulus(meter.profile, reading)[0])
            self._register_rules[(device, reading)] = rule
        return rule

    # ---- the writers' tokens -----------------------------------------------------

    def load_writers(self):
        """The writers' tokens and the site's scope rules for them, with every check the start makes
        (collector.ingest.Tokens.load; a feeder naming a meter the site does not feed through ingest):
        at start and on each reload. Raises ConfigError naming the file (and line)."""
        from puewatch.collector.ingest import Tokens
        from puewatch.collector.scopes import WriteScopes

        conf = self.conf
        tokens = Tokens.load(conf.ingest)
        scopes = WriteScopes(tokens.scopes, conf.meters, self.site.name)
        scopes.check_meters(conf.meters)
        for meter in scopes.unfed_meters():
            log.warning("meter %s is fed through ingest but no token is its feeder (feeder:%s in the token file): "
                        "its writes are refused (403)", meter, meter)
        return tokens, scopes

    def reload_writers(self) -> None:
        """SIGHUP: the token source read again and swapped in whole, or, when it fails a check, the
        writers kept as they were. Never logs a token; names the writers added and removed, those given
        a new token and those given a new scope (an audit trail of who may write what)."""
        old = self.ingest.tokens
        try:
            tokens, scopes = self.load_writers()
        except ConfigError as exc:
            self.metrics.token_reload(ok=False)
            log.error("tokens not reloaded, the %d writer(s) loaded before still hold: %s", len(old), exc)
            return
        self.ingest.replace_writers(tokens, scopes)
        self.metrics.token_reload(ok=True)
        changes = tokens.changes_from(old)
        note = ""
        if not any(changes.values()):
            note = "; no token changed"
            if self.conf.ingest.token_credential:
                # systemd copies a credential when the unit starts; a reload does not refresh the copy (unless
                # the unit says RefreshOnReload=credentials, systemd 260+): the edit is not seen until a restart.
                note += (f" (token_credential {self.conf.ingest.token_credential!r} is the copy systemd made when the "
                         "unit started: restart the unit to read an edited source, or see systemd/README.md)")
        # (Found by an outside audit: a rotated token and a widened scope left no trace in the log.)
        log.info("tokens reloaded: %d writer(s); %s%s", len(tokens),
                 "; ".join(f"{what}: {', '.join(names) or 'none'}" for what, names in changes.items()), note)

    # ---- the loop ------------------------------------------------------------------

    def _step(self) -> None:
        t0 = time.perf_counter()
        now = time.time_ns()
        before = self.pipeline.horizon
        derived = self.pipeline.step(now)
        if derived:
            self.derived_writer.submit(derived)
        # The lag every step: while a silent stream holds the horizon back, no cell finishes, and
        # the lag is what says the ratios below are that old.
        if self.pipeline.horizon is not None:
            self.metrics.horizon_lag.set((now - self.pipeline.horizon) / SECOND)
        if self.pipeline.horizon == before:
            return  # no cell finished since the last step
        self.metrics.step_seconds.observe(time.perf_counter() - t0)
        for w in self.pipeline.windows:
            value, cov = self.pipeline.latest(schema.PUE, w)
            self.metrics.ratio.labels(schema.PUE, format_window(w)).set(value)
            self.metrics.coverage.labels(schema.PUE, format_window(w)).set(cov)

    def _save(self) -> None:
        """Checkpoint the rolling history; a full or unwritable state directory degrades, never crashes."""
        try:
            self.pipeline.save()
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            self.health.degrade("state_disk_full" if full else "state_unwritable",
                                f"cannot checkpoint the pipeline to {self.state_dir}: {exc.strerror or exc}")
            return
        self.health.recover("state_disk_full")
        self.health.recover("state_unwritable")

    def _maintain(self) -> None:
        """The store's periodic upkeep, where it has one (`EmbeddedStore.maintain`: prune, then compact)."""
        try:
            done = self.store.maintain()
            log.debug("store upkeep: %s", done)
        except Exception as exc:  # noqa: BLE001 (a failed upkeep is retried at the next interval)
            from puewatch.collector.stores.base import StoreCorrupt

            if isinstance(exc, StoreCorrupt):
                self.health.degrade("store_corrupt", f"{exc}; batches are kept in the spool")
                return
            log.warning("store upkeep failed (retried in %.0f s): %s", MAINTAIN_INTERVAL_S, exc)

    async def run(self) -> int:
        from puewatch.collector.ingest import IngestServer
        from puewatch.collector.pacing import Pacer
        from puewatch.collector.snmp.poller import Poller
        from puewatch.collector.stores.spool import StoreWriter

        conf = self.conf
        # What the operator can get wrong comes first, before seconds of compiling: a one-line error at once.
        check_state_dir(self.state_dir)
        self.lock_fd = lock_state_dir(self.state_dir)
        tokens, scopes = self.load_writers()
        # A SIGHUP from here on reloads the tokens. Its handler runs on the loop, at the first await below,
        # which comes after the ingest server exists: one sent while the kernels compile is not lost (nor
        # does it end the process, as SIGHUP's default would), and reads the file as it is then.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_writers)
        # Compile the kernels (or load them from Numba's cache) before anything runs: a cold
        # cache takes seconds, and Numba holds the GIL meanwhile, which would stall the
        # event loop (SNMP polls timing out, ingest waiting). Agents spool until ingest opens.
        t0 = time.monotonic()
        compile_kernels()
        log.info("kernels ready in %.1f s", time.monotonic() - t0)
        self.store = build_store(conf)

        def raw_written(seconds: float, points: int) -> None:
            self.metrics.store_write.observe(seconds)
            self.pacer.written()

        self.writer = StoreWriter(
            self.store,
            self.state_dir / "spool",
            conf.store.spool_max_bytes,
            on_write=raw_written,
            durable=True,  # 204 means on disk: group commit before ingest answers
            health=self.health,
            start=False,  # not before the spool's field types are read (below)
        )
        # Flow control: answers wait while the store is up but behind (collector/pacing.py).
        self.pacer = Pacer(self.writer.backlog_bytes, lambda: self.writer.store_up, conf.ingest.pace_backlog_bytes,
                           conf.ingest.pace_max_s)
        types = ingest_field_types(self.store, self.writer)
        self.writer.start()
        self.metrics.add_store(conf.store.kind, self.writer.stats)
        # The derived series (PUE & co., a few hundred points a second) have their own writer,
        # connection and spool: behind the raw lines' queue they would wait for every agent
        # batch ahead of them, and a PUE point is what operators watch live.
        self.derived_writer = StoreWriter(
            build_store(conf),
            self.state_dir / "spool-derived",
            conf.store.spool_max_bytes,
            on_write=lambda seconds, points: self.metrics.store_write.observe(seconds),
            health=self.health,
            # A full state disk while the store is away: derived points wait in memory (hours of
            # them), not the oldest spooled ones dropped for room (collector/README.md).
            memory_on_full_disk_bytes=DERIVED_MEMORY_MAX_BYTES,
            disk_full_reason="derived_spool_disk_full",
        )
        self.metrics.add_store(f"{conf.store.kind}-derived", self.derived_writer.stats)
        if self.pipeline.restore():
            log.info("rolling history restored from %s", self.state_dir / "pipeline.npz")
            self.pipeline.catch_up(time.time_ns())
        self.ingest = ingest = IngestServer(conf.ingest, tokens, self, scopes, types=types,
                                            retention_s=ingest_retention_s(self.store))
        st = ingest.stats
        self.metrics.add_ingest(
            lambda: {
                "requests": sum(st.requests.values()),
                "lines_accepted": st.lines_accepted,
                "parse_errors": st.parse_errors,
                "store_refused": st.store_refused,
                "clock_skew_refused": st.clock_skew_refused,
                "retention_refused": st.retention_refused,
                "bytes_received": st.bytes_received,
                "unauthorized": st.requests.get(401, 0),
                "forbidden": st.requests.get(403, 0),
                "scope_refused_lines": st.scope_refused_lines,
                "too_large": st.requests.get(413, 0),
                "timeouts": st.timeouts,
                "connections_open": st.connections_open,
                "connections_unauthenticated": st.connections_unauthenticated,
                "connections_evicted": st.connections_evicted,
                "connections_refused": st.connections_refused,
                "backpressure": st.backpressure,
                "paced": st.paced,
                "paced_seconds": st.paced_seconds,
            }
        )
        await ingest.start()
        profiles, _ = conf.resolve_locations()  # (their problems refused the config at load)
        self.poller = Poller(conf.snmp.devices, self.on_poll, profiles=profiles)
        poll_task = asyncio.create_task(self.poller.run()) if conf.snmp.devices else None
        metrics_server = None
        if conf.metrics.listen:
            host, port = conf.metrics.address()
            metrics_server = self.metrics.serve(host, port)
        notifier = SystemdNotifier()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        interval = conf.collector.interval_s
        tick = interval / STEPS_PER_CELL
        last_checkpoint = time.monotonic()
        status_changes = self.health.changes
        # In a worker thread, never awaited by the loop: compacting a day of rows takes seconds.
        upkeep = None
        last_upkeep = -math.inf
        # What start-up built (modules, numba's kernels and typing tables, the site model) lives as
        # long as the process: frozen out of the garbage collector's reach, so the collections that
        # the requests' allocations set off do not walk it again and again.
        gc.collect()
        gc.freeze()
        notifier.ready()
        self.running = True
        log.info("collector for site %s: ingest on %s, %d SNMP devices, store %s",
                 self.site.name, f"{conf.ingest.listen}:{ingest.port}", len(conf.snmp.devices), self.store.name)
        try:
            while not stop.is_set():
                # Look for finished cells several times per cell, in phase with the wall clock: a
                # cell is final once every live stream has a reading at or after its end, which
                # comes some time after the end; one step per cell would hold it back up to a
                # whole interval. A step with nothing new returns at once.
                wall = time.time()
                delay = tick - wall % tick + TICK_AFTER_CELL_S
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                self._step()
                notifier.watchdog()
                if (hasattr(self.store, "maintain") and (upkeep is None or upkeep.done())
                        and time.monotonic() - last_upkeep >= MAINTAIN_INTERVAL_S):
                    upkeep = loop.run_in_executor(None, self._maintain)
                    last_upkeep = time.monotonic()
                # While the state disk is full the checkpoint is tried every tick: that is how the
                # collector notices the room is back.
                state_trouble = any(r in self.health.active() for r in ("state_disk_full", "state_unwritable"))
                status_due = self.health.changes != status_changes
                if state_trouble or time.monotonic() - last_checkpoint >= conf.collector.checkpoint_interval_s:
                    await loop.run_in_executor(None, self._save)
                    last_checkpoint = time.monotonic()
                    status_due = True
                if status_due:
                    status_changes = self.health.changes
                    value, cov = self.pipeline.latest(schema.PUE)
                    stats = self.writer.stats()
                    degraded = self.health.status()
                    notifier.status((f"{degraded}; " if degraded else "")
                                    + f"PUE {value:.3f} (coverage {cov:.0%}), spool {stats.get('spool_bytes', 0)} B")
        finally:
            notifier.stopping()
            await ingest.close()
            if poll_task is not None:
                poll_task.cancel()
                await asyncio.gather(poll_task, return_exceptions=True)
            self._step()
            self._save()
            if upkeep is not None:
                await upkeep  # before the writer closes the store under it
            await loop.run_in_executor(None, self.writer.close)
            await loop.run_in_executor(None, self.derived_writer.close)
            if metrics_server is not None:
                metrics_server[0].shutdown()
        return 0


def main(args: argparse.Namespace) -> int:
    if args.check_config:
        from puewatch import configcheck

        def summary(conf: ccfg.CollectorConfig) -> str:
            return (f"site {conf.collector.site} ({conf.collector.timezone} calendar), PUE category "
                    f"{conf.site_model().category}, {len(conf.meters)} meters, "
                    f"{len(conf.snmp.devices)} SNMP devices, store {conf.store.kind}")

        from puewatch.collector import tokenfile

        def content(conf: ccfg.CollectorConfig | None, path: str) -> tuple[list[str], list[str]]:
            errors, warnings = tokenfile.check(conf, path)
            site = [] if conf is None else [f"{path}: {key}: {msg}" for key, msg in conf.site_model().warnings()]
            return errors, warnings + site

        return configcheck.run("collector", args.config, ccfg.CollectorConfig, summary, ccfg.named_files, content)
    # The pipeline calls numba's parallel kernels on a few cells at a time, every step. OpenMP's
    # default is to spin after each call, waiting for the next: measured here, 480 us of CPU per
    # call where the work takes 1 us, and on the cores that ingest and the store need. Passive
    # waiting keeps the parallel loops (and their results) as they are. Set before numba starts
    # its thread pool; an operator's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    conf = ccfg.load(args.config)
    logging.basicConfig(
        level=conf.collector.log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_filter()
    collector = Collector(conf)
    try:
        return asyncio.run(collector.run())
    except OSError as exc:  # a file or directory it cannot use (ports and the store say so themselves)
        if collector.running:
            raise
        raise startup_error(exc) from None
    finally:
        if collector.lock_fd is not None:
            os.close(collector.lock_fd)  # the state directory is free again


def check_state_dir(path: Path) -> None:
    """The state directory exists (created if need be) and takes a new file; a one-line error otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"collector.state_dir {path}: not writable: {exc.strerror or exc}") from None


def lock_state_dir(path: Path) -> int:
    """Hold the state directory for this collector (an exclusive lock on `collector.lock` in it, released
    when the process ends, however it ends); returns the lock's file descriptor, kept open. A second
    collector on the same directory is refused, naming the first's PID: it would share the spools and
    replace the first one's rolling history with its own checkpoint (found by the collector audit)."""
    import fcntl

    lock = path / "collector.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"collector.state_dir {path}: in use by another collector (pid {holder}; {lock} is "
                          "locked): give each collector a state_dir of its own") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
