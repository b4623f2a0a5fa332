"""`puewatch agent`: sample the node's sources on a schedule, spool, ship.

Threads: the asyncio event loop runs the jobs of a second or more (state, processes,
info, host, self monitoring, systemd notifications) on its own timers (`LoopTimers`),
and each hot sub-second job (the 10 Hz power samples) runs in a `FixedRateThread`; a
sampling lock keeps them from running side by side. Both keep their deadlines on the
monotonic clock: a step of the wall clock (NTP correcting it, an RTC in local time)
neither stops nor bursts them. One shipping thread seals spool segments and sends them:
sampling never waits for the network.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from puewatch.agent import config as agent_config
from puewatch.agent.shipper import Endpoint, Shipper
from puewatch.agent.sources import REGISTRY
from puewatch.agent.sources import load as load_source
from puewatch.agent.sources.base import Context, Job, SourceUnavailable
from puewatch.agent.spool import Spool
from puewatch.errors import UserError, startup_error
from puewatch.lineprotocol import encode_line
from puewatch.sdnotify import SystemdNotifier, watchdog_interval_s
from puewatch.redact import install_log_filter, redact_url

log = logging.getLogger("puewatch.agent")

SELF_MEASUREMENT = "puewatch_agent"


class LoopTimers:
    """The agent's jobs of a second or more, at a fixed rate on the event loop's clock.

    Fire times are `t0 + k * interval`, `t0` on a multiple of the interval on the wall clock when
    the job is added (samples line up across jobs and nodes), then kept on the loop's monotonic
    clock: a step of the wall clock (an NTP correction, an RTC kept in local time) neither stops
    the jobs for the size of a backward step (as a scheduler on wall-clock datetimes does, the
    systemd watchdog ping with them) nor runs them in a burst after a forward one. A run missed
    by a whole period or more (a stalled host) is skipped, not run late in a burst, and counted
    (`ticks_missed`). Jobs run inline in the loop: they are short and synchronous.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: Stats) -> None:
        self._loop = loop
        self._stats = stats
        self._handles: dict[str, asyncio.Handle] = {}
        self._stopped = False

    def every(self, name: str, interval_s: float, func, *, first_wall_s: float | None = None) -> None:
        """Run `func` every `interval_s`, first at wall time `first_wall_s` (default: one interval from now)."""
        t0 = self._loop.time() + (interval_s if first_wall_s is None else max(0.0, first_wall_s - time.time()))
        self._handles[name] = self._loop.call_at(t0, self._tick, name, interval_s, func, t0, 0)

    def once(self, name: str, func) -> None:
        """Run `func` once, as soon as the loop is free."""
        self._handles[name] = self._loop.call_soon(self._run, name, func)

    def shutdown(self) -> None:
        self._stopped = True
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def _run(self, name: str, func) -> None:
        if self._stopped:
            return
        try:
            func()
        except Exception:  # a job's own errors are its business; never let one stop the timers
            log.exception("%s: unexpected error", name)

    def _tick(self, name: str, interval_s: float, func, t0: float, k: int) -> None:
        if self._stopped:
            return
        self._run(name, func)
        k += 1
        now = self._loop.time()
        if t0 + (k + 1) * interval_s <= now:  # missed by a whole period: on to the latest due
            latest = int((now - t0) / interval_s)
            self._stats.ticks_missed += latest - k
            log.warning("%s ran %.3f s late: %d run(s) skipped", name, now - (t0 + k * interval_s), latest - k)
            k = latest
        self._handles[name] = self._loop.call_at(t0 + k * interval_s, self._tick, name, interval_s, func, t0, k)


class FixedRateThread(threading.Thread):
    """Runs `func` at `t0 + k * interval_s` in its own thread: the lean path of the hot jobs.

    Measured on the benchmark's machine, a 10 Hz tick costs about 65 µs of CPU as a
    `time.sleep()` loop and 140 µs as an asyncio timer (`_run_once`, a TimerHandle, epoll); a
    general scheduler's run (APScheduler: a job-store lookup, trigger arithmetic on time-zone-aware
    datetimes, executor bookkeeping and event dispatch) cost more than reading the power of 8 GPUs.
    Deadlines are absolute, so the rate does not drift with the run time. A tick missed by a
    whole period or more (a stalled host) is skipped, not run late in a burst, and counted.
    `func` takes the agent's sampling lock, so it never runs beside another job.
    """

    MAX_SLEEP_S = 0.25  # how long stop() may wait for the thread to notice

    def __init__(self, name: str, interval_s: float, start_wall_s: float, func, stats: Stats) -> None:
        super().__init__(name=f"puewatch-{name}", daemon=True)
        self.interval_s = interval_s
        self._func = func
        self._stats = stats
        # The first tick is on the wall clock (a multiple of the interval, as for the loop's jobs);
        # the deadlines are kept in the monotonic clock.
        self._t0 = time.monotonic() + (start_wall_s - time.time())
        self._stopping = False
        self.last_run_s = time.monotonic()  # monotonic time of the last run, for the watchdog

    def healthy(self) -> bool:
        """Alive and on time: what the systemd watchdog ping vouches for, besides the event loop."""
        return self.is_alive() and time.monotonic() - self.last_run_s < max(5.0, 5 * self.interval_s)

    def stop(self, timeout_s: float) -> None:
        self._stopping = True
        self.join(timeout_s)

    def run(self) -> None:
        interval_s, t0, func = self.interval_s, self._t0, self._func
        monotonic, sleep = time.monotonic, time.sleep
        k = 0
        while not self._stopping:
            delay = t0 + k * interval_s - monotonic()
            if delay > 0:
                sleep(delay if delay < self.MAX_SLEEP_S else self.MAX_SLEEP_S)
                continue
            try:
                func()
            except Exception:  # never let the sampling thread die
                log.exception("%s: unexpected error", self.name)
            now = self.last_run_s = monotonic()
            k += 1
            if t0 + (k + 1) * interval_s <= now:
                # Missed by a whole period or more: on to the latest deadline due (a tick only a little
                # late runs late, as the next loop does at once).
                latest = int((now - t0) / interval_s)
                self._stats.ticks_missed += latest - k
                log.warning("%s ran %.3f s late: %d sample(s) skipped", self.name, now - (t0 + k * interval_s), latest - k)
                k = latest


@dataclass
class Stats:
    samples_taken: int = 0
    points_sent: int = 0
    batches_sent: int = 0
    send_failures: int = 0
    unauthorized: int = 0  # 401/403 replies (retried: the token may be fixed)
    rejected_batches: int = 0
    split_batches: int = 0  # batches the collector refused as too large (413), sent again in parts
    job_errors: int = 0
    ticks_missed: int = 0
    last_sample_ns: int = 0
    last_ship_ns: int = 0


def _iso(ns: int) -> str:
    if not ns:
        return "never"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Agent:
    def __init__(self, conf: agent_config.AgentConfig, notifier: SystemdNotifier | None = None) -> None:
        self.conf = conf
        self.notifier = notifier or SystemdNotifier()
        self.stats = Stats()
        self.ctx = Context(conf.agent.node, conf.agent.tags)
        a = conf.agent
        self.spool = Spool(
            a.spool_dir,
            max_bytes=a.spool_max_bytes,
            segment_max_bytes=min(a.batch_max_bytes, max(1024, a.spool_max_bytes // 4)),
            rejected_max_bytes=max(1024, a.spool_max_bytes // 4),
        )
        self.sources: list = []
        self.ready = False
        self.started_ns = time.time_ns()
        self.self_key = self.ctx.key(SELF_MEASUREMENT)
        self.shipper: Shipper | None = None
        # Held by every job while it runs: the sources, the context's pending events and the stats
        # are touched by one job at a time, whichever thread it runs in.
        self._sampling_lock = threading.Lock()
        self._timers: list[FixedRateThread] = []

    def open(self) -> None:
        self.spool.open()
        for name in REGISTRY:
            source_conf = getattr(self.conf.sources, name, None)
            if source_conf is None:
                continue
            source = load_source(name).Source(source_conf, self.ctx)
            self.ctx.sources[name] = source
            try:
                source.open()
            except SourceUnavailable as exc:
                raise UserError(f"source {name}: {exc}") from None
            self.sources.append(source)
        out = self.conf.output
        self.shipper = Shipper(
            self.spool,
            Endpoint(out.write_url(), out.token or None, out.auth_scheme, out.ca_file or None, out.timeout_s, out.gzip_level,
                     out.token_file or None),
            self.stats,
            flush_interval_s=self.conf.agent.flush_interval_s,
            retry_initial_s=out.retry_initial_s,
            retry_max_s=out.retry_max_s,
        )

    # -- jobs -----------------------------------------------------------------------------------

    def _job(self, job: Job):
        func, samples, prepare = job.func, job.samples, job.prepare
        stats, ctx, spool, lock = self.stats, self.ctx, self.spool, self._sampling_lock

        def run() -> None:
            if prepare is not None:
                prepare()  # (outside the lock: see Job.prepare; it says its own failures)
            with lock:  # the hot jobs run in their own threads: one job at a time, as before
                lines: list[str]
                try:
                    lines = func()
                except Exception as exc:  # a source must never stop the agent
                    stats.job_errors += 1
                    ctx.errors += 1
                    if ctx.once((job.name, type(exc).__name__, str(exc)), logging.ERROR, "job %s failed: %s", job.name, exc):
                        log.debug("job %s failed", job.name, exc_info=True)
                        ctx.event(job.name.split(".")[0], "job_failed", f"{job.name}: {exc}", time.time_ns())
                    lines = []
                if ctx.pending:
                    lines = lines + ctx.take_pending()
                if not lines:
                    return
                n = len(lines)
                spool.append(lines)
                if samples:
                    stats.samples_taken += n
                    stats.last_sample_ns = time.time_ns()
                    if not self.ready:
                        self.ready = True
                        log.info("first sample taken; ready")
                        self.notifier.ready(self._status_text())

        run.__name__ = job.name
        return run

    def self_report(self) -> list[str]:
        s = self.stats
        try:
            with open("/proc/self/statm", "rb") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            rss = None
        cpu = os.times()
        fields = {
            "samples_taken": s.samples_taken,
            "points_sent": s.points_sent,
            "batches_sent": s.batches_sent,
            "spool_bytes": self.spool.bytes,
            "spool_batches": self.spool.records,
            "dropped_points": self.spool.lost_points,
            "rejected_points": self.spool.rejected_points,
            "source_errors": self.ctx.errors,
            "send_failures": s.send_failures,
            "unauthorized_replies": s.unauthorized,
            "split_batches": s.split_batches,
            "ticks_missed": s.ticks_missed,
            "uptime_s": (time.time_ns() - self.started_ns) / 1e9,
            "cpu_s": cpu.user + cpu.system,
            "rss_bytes": rss,
        }
        line = encode_line(self.self_key, fields, time.time_ns())
        return [line] if line else []

    def _status_text(self) -> str:
        s = self.stats
        return (
            f"last sample {_iso(s.last_sample_ns)}, last ship {_iso(s.last_ship_ns)}; "
            f"spool {self.spool.records} batch(es) {self.spool.bytes} B; dropped {self.spool.lost_points} point(s)"
        )

    # -- main loop --------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        assert self.shipper is not None
        self.shipper.start()
        scheduler = LoopTimers(loop, self.stats)
        now = time.time()
        jobs = [job for source in self.sources for job in source.jobs()]
        jobs.append(Job("agent.self", self.conf.agent.self_interval_s, self.self_report, samples=False))
        timers = self._timers
        for job in jobs:
            # Fixed rate: fire times are start + k * interval, so they never drift. Starting on a
            # multiple of the interval lines samples up across jobs and nodes.
            start = math.ceil(now / job.interval_s) * job.interval_s
            if job.hot:
                timers.append(FixedRateThread(job.name, job.interval_s, start, self._job(job), self.stats))
                continue
            scheduler.every(job.name, job.interval_s, self._job(job), first_wall_s=start)
            if job.at_start:
                scheduler.once(job.name + ".start", self._job(job))
        scheduler.every("agent.status", self.conf.agent.status_interval_s, self._status)
        wd = watchdog_interval_s() if self.notifier.enabled else None
        if wd:
            # From the event loop itself: a hung loop stops pinging and systemd restarts the agent.
            scheduler.every("agent.watchdog", wd / 2, self._watchdog)
            self.notifier.watchdog()
        for timer in timers:
            timer.start()
        log.info(
            "puewatch agent on %s: %d source(s) (%s), shipping to %s every %.1f s, spool %s",
            self.conf.agent.node,
            len(self.sources),
            ", ".join(s.name for s in self.sources),
            redact_url(self.conf.output.write_url()),
            self.conf.agent.flush_interval_s,
            self.spool.dir,
        )
        await stop.wait()

        log.info("stopping: final flush (up to %.1f s)", self.conf.agent.shutdown_timeout_s)
        self.notifier.stopping(self._status_text())
        scheduler.shutdown()
        for timer in timers:
            timer.stop(timer.MAX_SLEEP_S + 5.0)
        self.spool.append(self.self_report())
        # A source's last words before any source closes (the job ledger's interval since its last tick,
        # from the readings the sources took: the nvml source's GPUs still open).
        for source in self.sources:
            final = getattr(source, "final", None)
            if final is None:
                continue
            try:
                self.spool.append(final())
            except Exception as exc:
                log.warning("final records of source %s: %s", source.name, exc)
        for source in self.sources:
            try:
                source.close()
            except Exception as exc:
                log.warning("closing source %s: %s", source.name, exc)
        if self.ctx.pending:
            self.spool.append(self.ctx.take_pending())
        await loop.run_in_executor(None, self.shipper.stop, self.conf.agent.shutdown_timeout_s)
        self.spool.close()
        log.info("stopped: %d sample(s) taken, %d point(s) sent, %d dropped", self.stats.samples_taken, self.stats.points_sent, self.spool.lost_points)
        return 0

    def _status(self) -> None:
        self.notifier.status(self._status_text())

    def _watchdog(self) -> None:
        # The event loop runs this; the hot jobs' threads must be alive and on time as well.
        if all(t.healthy() for t in self._timers):
            self.notifier.watchdog()
        else:
            log.error("a sampling thread is stuck or dead: no watchdog ping (systemd restarts the agent)")


def setup_logging(level: str) -> None:
    # Under systemd the journal adds its own timestamps.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr, format=fmt)
    install_log_filter()


def hook(args) -> int:
    """`puewatch agent job-start|job-end`, run by Slurm's Prolog/Epilog.

    It exits 0 even when it cannot record the job: a failing Prolog drains the node in Slurm, a
    missing record only leaves the job's idle reservation unattributed. The error is printed.
    """
    from puewatch.agent.sources import jobholders, jobs

    state_dir = args.state_dir
    try:
        if state_dir is None and args.config:
            conf = agent_config.load(args.config)
            state_dir = conf.sources.jobs.hook_state_dir if conf.sources.jobs else ""
        state_dir = state_dir or jobs.DEFAULT_HOOK_STATE_DIR
        env = dict(os.environ)
        if args.hook == "job-start":
            jobholders.hook_start(state_dir, env)
        elif not jobholders.hook_end(state_dir, env):
            # Said, not silent (found by the job-holders audit): the Prolog did not run for this job, ran with
            # another state directory, or an Epilog ran twice; nothing is billed either way.
            print(f"puewatch agent job-end: no state file for job {env.get('SLURM_JOB_ID', '').strip()} in "
                  f"{state_dir} (the Prolog's job-start did not record it, or wrote elsewhere); nothing to remove",
                  file=sys.stderr)
    except (UserError, OSError) as exc:
        print(f"puewatch agent {args.hook}: {exc}", file=sys.stderr)
    return 0


def main(args) -> int:
    if args.hook:
        return hook(args)
    if not args.config:
        raise UserError("puewatch agent: --config FILE is required (or give a hook: job-start, job-end)")
    if args.check_config:
        from puewatch import configcheck

        def summary(conf: agent_config.AgentConfig) -> str:
            enabled = [name for name in REGISTRY if getattr(conf.sources, name, None) is not None]
            return f"sources: {', '.join(enabled)}; output: {redact_url(conf.output.write_url())}"

        return configcheck.run("agent", args.config, agent_config.AgentConfig, summary, agent_config.named_files)
    conf = agent_config.load(args.config)
    setup_logging(conf.agent.log_level)
    agent = Agent(conf)
    try:
        agent.open()
    except OSError as exc:  # the spool directory, the CA file, a device file it cannot use
        raise startup_error(exc) from None
    return asyncio.run(agent.run())
