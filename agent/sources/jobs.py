"""The job ledger (schema.JOB_LEDGER): which job holds each GPU, and its energy per interval.

Every `sample_interval_s` the holders of each GPU are read (jobholders.py: Slurm processes, the
prolog/epilog hook, Kubernetes, a static map) and the GPU is split among them by the rule below.
Every `interval_s` one record per (GPU, job) is written: the job's mean share over the interval times
the GPU's energy over it. A sample's shares hold until the next sample, so the mean weighs each by the
time it held (a sample at the ledger's tick closes the interval and opens the next; a second sample at
the same moment weighs nothing): a job that starts or ends mid-interval gets the part it held, to a
sample interval. (Each sample counted once whatever the time between them, the tick's moment counted in
two intervals: a job held for 1 s of two 5-s intervals sampled each second was billed 1/7 + 1/6 of
them, 1.55 s; found by the job-holders audit.)

- NVML is read by the nvml source alone (one reading per GPU and cycle, shared): the ledger takes its
  energy readings, and its last process sample (compute processes and, for the split, their SM
  utilisation). [sources.jobs] needs [sources.nvml].
- GPU energy: the NVML energy counter's difference between the nvml source's readings that close the
  previous interval and this one (the record's time is the later reading's, its interval_s the time
  between them); without a counter (before Volta), the nvml source's integral of its power samples,
  `gpu_wh_estimated=true`.
- The split (one rule, `split()`): one holder takes the whole GPU. Several holders (MPS,
  time-slicing, a reservation shared with a running job) share it by their processes' SM
  utilisation where NVML gives it (nvmlDeviceGetProcessUtilization, the holders without processes
  get none), otherwise equally among all holders; such shares are `shared=true`. A sample with no
  holder leaves its part of the GPU's energy unattributed (no record: the collector side counts it).
- Reserved idle: a job that held the GPU with no process on it all interval (hook, Kubernetes or
  static map) still gets its share of the GPU's energy, idle included (as the Green Software
  Foundation's SCI does), flagged `reserved_idle=true`. A holder whose processes cannot be known (a
  pod, the static map's job, the hook's job without `slurm`) ran where the GPU had a process that no
  holder claims; such processes' utilisation is theirs in the split, and they are no "process of no
  job".
- Host energy (`host_wh`), the policy: the node's host energy, its CPU packages' and memory's (the
  scope RAPL measures; the rest of the node, fans, power-supply losses, NICs, disks, is no job's and
  stays in the site's IT energy, unattributed), from the host source's RAPL
  readings ([sources.host] with `rapl = true`: the sum of the zones its rule counts, package and
  DRAM, never psys with them; see host.py), the difference between its readings that close the
  previous interval and this one, as a mean power; RAPL is read there alone, once per zone and
  cycle. Where that is not known (no [sources.host] or `rapl = false`, no counted zone readable,
  a zone unreadable during the interval): `host_estimate_w` (the operator's documented figure for
  the same scope) x the interval, `host_estimated=true`; else none is known:
  `host_wh=0` and `host_unknown=true`, and that energy stays unattributed (never silently 0). Each
  of the node's N GPUs carries 1/N of the node's host power, split like the GPU's own energy: a
  job's host share is proportional to the GPUs it holds, and the part of idle, unheld GPUs stays
  unattributed.
- Processes on a GPU that belong to no job (Slurm finds none for them) are counted, never dropped
  silently: each interval with any writes one `job_ledger_stats` record for the node
  (`unattributed_processes`: the distinct GPU processes without a job in the interval).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from puewatch.agent.sources import jobholders
from puewatch.agent.sources.base import Context, Job, SourceUnavailable
from puewatch.agent.sources.host import HostReading
from puewatch.config import setting
from puewatch.core.schema import JOB_LEDGER, JOB_LEDGER_STATS
from puewatch.errors import UserError
from puewatch.lineprotocol import LineProtocolError, encode_line

log = logging.getLogger("puewatch.agent.jobs")

SOURCE = "jobs"
DEFAULT_HOOK_STATE_DIR = "/run/puewatch/jobs"
MJ_PER_WH = 3_600_000.0


@dataclass
class Config:
    """Which job holds each GPU (Slurm, the prolog/epilog hook, Kubernetes, a static map), written as the job ledger."""

    interval_s: float = setting(60.0, min=1.0, max=3600.0, doc="Length of a ledger interval: one `job_ledger` record per GPU and job each.")
    sample_interval_s: float = setting(5.0, min=0.1, max=600.0, doc="How often the holders of each GPU are read within an interval.")
    slurm: bool = setting(True, doc="Follow the GPUs' NVML compute processes to their Slurm job (/proc/PID/cgroup, environ).")
    proc_root: str = setting("/proc", min=1, doc="Root of procfs; tests point it elsewhere only to check errors.")
    hook_state_dir: str = setting(
        DEFAULT_HOOK_STATE_DIR, doc="Where `puewatch agent job-start`/`job-end` (Slurm Prolog/Epilog) keep the jobs' GPUs; empty: no hook."
    )
    kubernetes: bool = setting(False, doc="Ask the kubelet's PodResources API which pod holds each GPU (needs `puewatch[kubernetes]`).")
    kubelet_socket: str = setting("/var/lib/kubelet/pod-resources/kubelet.sock", min=1, doc="The kubelet's PodResources socket.")
    kubernetes_resources: list[str] = setting(
        default_factory=lambda: ["nvidia.com/gpu", "nvidia.com/gpu.shared"],
        doc="Extended resources that are GPUs (device IDs = GPU UUIDs; `nvidia.com/gpu.shared`: the NVIDIA device "
        "plugin's name for time-sliced GPUs with renameByDefault). A pod holding GPU or MIG UUIDs under another "
        "resource is said (event `resource_unlisted`): its energy stays unattributed.")
    kubernetes_timeout_s: float = setting(2.0, min=0.1, max=60.0, doc="Timeout of one PodResources List call; it is "
                                          "asked in a thread of its own, outside the other sources' sampling.")
    static_map: str = setting("", doc="A TOML file of `[[gpu]]` tables (`gpu` index or UUID, `job`, `tenant`); empty: none. Re-read when it changes.")
    host_estimate_w: float | None = setting(
        None, min=0.0, max=100000.0,
        doc="The node's host power (its CPU packages and memory: RAPL's scope) where RAPL is not known ([sources.host] with "
        "rapl gives it); measured for that scope (e.g. RAPL read once as root at typical load, or the BMC's CPU and memory "
        "sensors), not the outlet's whole non-GPU power, whose fans and supply losses a measured node's share leaves out. "
        "Its energy is flagged `host_estimated`. Unset and no RAPL: the host share is recorded as unknown (`host_unknown`), "
        "never as 0 silently.",
    )

    def check(self) -> list[tuple[str, str]]:
        if self.sample_interval_s > self.interval_s:
            return [("sample_interval_s", f"must be at most interval_s ({self.interval_s}), got {self.sample_interval_s}")]
        return []


def unlinked(holder: jobholders.Holder, slurm: bool) -> bool:
    """Whether `holder`'s processes cannot be known (a pod: the kubelet names none; the static map's job; the hook's
    job where Slurm's processes are not followed): the GPU's processes that no holder claims are then its."""
    return holder.source in ("kubernetes", "static") or (holder.source == "hook" and not slurm)


def split(holders: list[jobholders.Holder], util_by_pid: dict[int, int] | None,
          unlinked_jobs: frozenset[str] = frozenset()) -> dict[str, float]:
    """The documented rule: one GPU's share per holder (by job) at one sample; see the module's docstring. The
    utilisation of processes that no holder claims goes to the holders whose processes cannot be known
    (`unlinked_jobs`), equally: a pod running 90 % beside a Slurm job's 10 % got none, and the Slurm job the
    whole GPU (found by the Kubernetes audit)."""
    if not holders:
        return {}
    if len(holders) == 1:
        return {holders[0].job: 1.0}
    if util_by_pid is not None:
        util = {h.job: float(sum(util_by_pid.get(p, 0) for p in h.pids)) for h in holders}
        owned = {p for h in holders for p in h.pids}
        free = sum(u for p, u in util_by_pid.items() if p not in owned)
        takers = [h.job for h in holders if h.job in unlinked_jobs]
        for job in takers if free else ():
            util[job] += free / len(takers)
        total = sum(util.values())
        if total > 0:
            return {job: u / total for job, u in util.items()}
    return {h.job: 1.0 / len(holders) for h in holders}


def host_power_w(start: HostReading | None, end: HostReading | None, estimate_w: float | None) -> tuple[float, bool, bool]:
    """(the node's host (CPU and memory) mean W over an interval, estimated, unknown): the policy in the module's docstring.
    Measured where both RAPL readings exist, the later is newer and no counted zone broke between them."""
    if start is not None and end is not None and end.breaks == start.breaks and end.mono_ns > start.mono_ns:
        # Over the monotonic clock: a wall-clock step between the readings distorts nothing.
        return (end.energy_uj - start.energy_uj) / 1e6 / ((end.mono_ns - start.mono_ns) / 1e9), False, False
    if estimate_w is not None:
        return estimate_w, True, False
    return 0.0, False, True


@dataclass
class _Held:
    """One job's accumulated share of one GPU over the current interval."""

    tenant: str
    source: str
    share_sum: float = 0.0
    shared: bool = False
    ran: bool = False  # a process of its ran on the GPU in some sample


@dataclass
class _Acc:
    """One GPU's interval: the energy reading it started at, the samples and the holders' shares."""

    start: tuple[float, int, int] | None = None  # (mJ, ns, monotonic ns) of the nvml source's reading
    start_breaks: int = 0  # the GPU's energy discontinuities (nvml _Gpu.breaks) at `start`
    started: bool = False  # a reading was ever taken (a None start after it is a gap)
    samples: int = 0
    held: dict[str, _Held] = field(default_factory=dict)
    blind: int = 0  # samples whose process reading failed: the GPU's processes, and Slurm's jobs, unknown
    # The last sample (monotonic ns) and its holders' shares, held until the next sample; `held_ns`, the
    # time the interval's samples have held so far (each _Held.share_sum is share x ns over it).
    last_ns: int | None = None
    last: list[tuple[jobholders.Holder, float]] = field(default_factory=list)
    held_ns: int = 0


def _hold(acc: _Acc, now_ns: int) -> None:
    """The last sample's shares held from its time to `now_ns` (monotonic), added to the interval's."""
    if acc.last_ns is not None and now_ns > acc.last_ns:
        dt = now_ns - acc.last_ns
        acc.held_ns += dt
        for h, share in acc.last:
            if share > 0:
                a = acc.held.setdefault(h.job, _Held(h.tenant, h.source))
                a.share_sum += share * dt
    acc.last_ns = now_ns


class Source:
    name = SOURCE

    def __init__(self, config: Config, ctx: Context) -> None:
        self.cfg = config
        self.ctx = ctx
        self.nvml = None  # the nvml source: every GPU reading comes from it
        self.acc: dict[str, _Acc] = {}  # GPU UUID -> its interval
        self.pods: jobholders.PodResources | None = None
        self._kubelet_down = False  # the kubelet did not answer the last List (said once an outage)
        # The kubelet's latest answer fetch_pods got outside the sampling lock: (pods, unlisted), its error, or None
        # (none asked yet).
        self._fetched: tuple[dict, dict] | OSError | None = None
        self._prepared = False  # the sample job's prepare asks the kubelet (set by jobs()): never the sample itself
        self._static: dict[str, tuple[str, str]] = {}
        self._static_mtime_ns = -1
        self.host = None  # the host source: the node's RAPL readings come from it
        self._interval_start_ns = 0
        self._host_start: HostReading | None = None
        self.unattributed: set[tuple[int, int]] = set()  # (GPU index, PID) of processes without a job, this interval
        self.unattributed_processes = 0  # their count over all intervals
        self._unknown_devices: set[str] = set()  # kubelet device IDs that are no sampled GPU, said once each

    def open(self) -> None:
        self.nvml = self.ctx.sources.get("nvml")
        if self.nvml is None:
            raise SourceUnavailable("the job ledger reads the GPUs through the nvml source: add [sources.nvml]")
        self.nvml.process_utilisation = True
        if self.cfg.kubernetes:
            try:
                self.pods = jobholders.PodResources(self.cfg.kubelet_socket, tuple(self.cfg.kubernetes_resources), self.cfg.kubernetes_timeout_s)
            except UserError as exc:
                raise SourceUnavailable(str(exc)) from None
            self.fetch_pods()  # the first samples' answer, before the sample job's prepare gives the next
        host = self.ctx.sources.get("host")
        self.host = host if host is not None and host.cfg.rapl else None
        if self.host is None or not any(z.counted for z in self.host.zones):
            why = ("no [sources.host] with rapl = true" if self.host is None
                   else f"no package, DRAM or psys RAPL zone under {self.host.cfg.sysfs_root}")
            fallback = (f"host_estimate_w ({self.cfg.host_estimate_w} W), flagged host_estimated"
                        if self.cfg.host_estimate_w is not None else
                        "unknown (host_unknown): the node's host energy stays unattributed")
            log.warning("jobs: %s: the ledger's host share is %s", why, fallback)
        self._read_static()
        self._interval_start_ns = time.time_ns()
        self._host_start = self.host.energy_reading() if self.host else None
        log.info("jobs: %d GPU(s) from the nvml source; holders from %s; ledger every %.0f s", len(self._gpus()),
                 ", ".join(self._sources()) or "nothing", self.cfg.interval_s)

    def _sources(self) -> list[str]:
        c = self.cfg
        return [n for n, on in (("slurm", c.slurm), ("hook", c.hook_state_dir), ("kubernetes", c.kubernetes), ("static", c.static_map)) if on]

    def _gpus(self) -> list:
        """The nvml source's GPUs that can be read now (none while NVML is away)."""
        if not self.nvml.initialised:
            return []
        return [g for g in self.nvml.gpus if not g.lost and g.uuid]

    def jobs(self) -> list[Job]:
        # With the kubelet, in a thread of its own, which its List (up to its timeout) holds up alone: not the
        # event loop, nor, outside the sampling lock, the power samples.
        kubelet = self._prepared = self.pods is not None
        return [Job("jobs.sample", self.cfg.sample_interval_s, self.sample, samples=False, hot=kubelet,
                    prepare=self.fetch_pods if kubelet else None),
                Job("jobs.ledger", self.cfg.interval_s, self.ledger)]

    # -- sampling ----------------------------------------------------------------------------------

    def holders(self, gpus: list) -> dict[int, list[jobholders.Holder]]:
        """GPU index -> the jobs holding it now, merged from every configured reader. The GPUs' processes
        are the nvml source's last process sample (one NVML reading per GPU and cycle, shared)."""
        by_gpu: dict[int, dict[str, jobholders.Holder]] = {g.index: {} for g in gpus}
        t_ns = time.time_ns()
        # A job's tenant is the job's, on every GPU it holds: the one Slurm's Prolog recorded (the hook, from
        # slurmd's environment), the kubelet's or the static map's, where one names it; else the account its
        # own processes' environment names, which a job can set itself (SLURM_JOB_ACCOUNT) and so charge its
        # energy to another tenant. Decided per job once every reader is in (it was per GPU: a hook naming the
        # job on one GPU left the tenant its processes named on another, and processes naming two accounts
        # kept the first with no word; found by the job-holders audit).
        claimed: dict[str, list[str]] = {}  # job -> the accounts its processes name, in the order seen
        given: dict[str, tuple[str, str]] = {}  # job -> (tenant, source) a hook, the kubelet or the map gives
        no_job: set[int] = set()  # GPUs with a process of no Slurm job on them
        hooked: dict[int, list[str]] = {}  # GPU -> the jobs the hook's files name on it

        def add(gpu, job: str, tenant: str, source: str, pid: int | None = None) -> None:
            held = by_gpu[gpu.index]
            old = held.get(job)
            pids = (old.pids if old else ()) + ((pid,) if pid is not None else ())
            # A Slurm job seen by its processes and by the hook is one job; the processes name the source.
            src = source if old is None or source == "slurm" else old.source
            if source == "slurm":
                if tenant and tenant not in claimed.setdefault(job, []):
                    claimed[job].append(tenant)
            elif tenant and job not in given:
                given[job] = (tenant, source)
            held[job] = jobholders.Holder(job, tenant or (old.tenant if old else ""), src, pids)

        if self.cfg.slurm:
            for gpu in gpus:
                for proc in gpu.pids or ():
                    try:
                        found = jobholders.slurm_job_of(proc, self.cfg.proc_root)
                        read = True
                    except OSError:
                        found, read = None, False  # gone between NVML's list and /proc, or not ours to read
                    if found is None:
                        self.unattributed.add((gpu.index, proc))
                        if read:  # seen to be of no job (one that could not be read may be the hook job's own)
                            no_job.add(gpu.index)
                        continue
                    if found.refused:
                        self._say_once(("refused", found.job, found.refused), "tenant_refused",
                                       f"job {found.job}: its processes' environment names an account that cannot be "
                                       f"a tenant ({found.refused}); left out: the job's tenant is the hook's or the "
                                       "map's, else none", t_ns)
                    add(gpu, found.job, found.account, "slurm", proc)
        keyed = {**{str(g.index): g for g in gpus}, **{g.uuid: g for g in gpus}}
        if self.cfg.hook_state_dir:
            state, bad = jobholders.read_hook_state(self.cfg.hook_state_dir)
            for name in bad:
                if self.ctx.once((SOURCE, "hook", name), logging.WARNING, "jobs: hook state file %s/%s, left out",
                                 self.cfg.hook_state_dir, name):
                    self.ctx.event(SOURCE, "hook_state_unreadable", f"{self.cfg.hook_state_dir}/{name}, left out", t_ns)
            for gpu_id, jobs in state.items():
                gpu = keyed.get(gpu_id)
                if gpu is None:
                    # Slurm gave the job a GPU id that is none of the sampled GPUs' (a MIG slice, a GPU that
                    # [sources.nvml] gpus leaves out, an index past the node's): said, as the kubelet's are.
                    names = ", ".join(sorted(j for j, _ in jobs))
                    self._say_once(("hook_device", gpu_id, names), "device_unknown",
                                   f"the hook state names GPU {gpu_id!r} for job(s) {names}, which is none of the "
                                   "sampled GPUs' index or UUID: their energy on it stays unattributed", t_ns)
                for job, tenant in jobs if gpu else ():
                    add(gpu, job, tenant, "hook")
                    hooked.setdefault(gpu.index, []).append(job)
        if self.pods is not None:
            try:
                # The latest answer the sample job's prepare fetched outside the lock (the ledger's tick samples too,
                # between two of them); asked here only where no prepare runs (a source driven without its jobs).
                fetched = self._fetched if self._prepared else self.pods.gpu_pods()
                if fetched is None:
                    fetched = {}, {}
                if isinstance(fetched, OSError):
                    raise fetched
                pods, unlisted = fetched
            except OSError as exc:
                # Said once an outage, and its end (a second outage was never said, nor any end: found by the
                # Kubernetes audit); the pods' energy is unattributed meanwhile.
                if not self._kubelet_down:
                    self._kubelet_down = True
                    log.warning("jobs: %s (the pods' GPU energy is unattributed until it answers)", exc)
                    self.ctx.errors += 1
                    self.ctx.event(SOURCE, "kubelet_unavailable", str(exc), t_ns)
                pods = {}
            else:
                if self._kubelet_down:
                    self._kubelet_down = False
                    log.info("jobs: the kubelet answers again")
                    self.ctx.event(SOURCE, "kubelet_available", f"kubelet PodResources List on "
                                   f"{self.cfg.kubelet_socket} answers again", t_ns)
                for resource, holders in sorted(unlisted.items()):
                    self._say_once(("unlisted", resource), "resource_unlisted",
                                   f"the kubelet assigns GPU or MIG devices of resource {resource!r} to "
                                   f"{', '.join(sorted(holders))}, which [sources.jobs] kubernetes_resources does not "
                                   "list: their energy stays unattributed (list the resource if its devices are "
                                   "whole GPUs)", t_ns)
            for device, held in pods.items():
                gpu = keyed.get(device)
                if gpu is None and held and device not in self._unknown_devices:
                    # A device the kubelet names that is none of the sampled GPUs (a MIG device's MIG-…
                    # ID, a GPU that [sources.nvml] gpus leaves out): its pods' energy stays unattributed.
                    self._unknown_devices.add(device)
                    message = (f"the kubelet assigns device {device!r} to {', '.join(sorted(j for j, _ in held))}, "
                               "which is none of the sampled GPUs' index or UUID (a MIG device?): their energy "
                               "on it stays unattributed")
                    log.warning("jobs: %s", message)
                    self.ctx.errors += 1
                    self.ctx.event(SOURCE, "device_unknown", message, t_ns)
                for job, tenant in held if gpu else ():
                    add(gpu, job, tenant, "kubernetes")
        if self.cfg.static_map:
            self._read_static()
            for gpu_id, (job, tenant) in self._static.items():
                gpu = keyed.get(gpu_id)
                if gpu:
                    add(gpu, job, tenant, "static")
        # A process of no Slurm job on a GPU that a pod or the static map holds is that holder's, as far as can be
        # known (the kubelet names no processes): not a process of no job (the Kubernetes audit).
        held_blind = {i for i, held in by_gpu.items() if any(unlinked(h, self.cfg.slurm) for h in held.values())}
        self.unattributed = {(i, p) for i, p in self.unattributed if i not in held_blind}
        self._disagreements(by_gpu, hooked, no_job - held_blind, t_ns)
        tenants = {job: given[job][0] if job in given else accounts[0] for job, accounts in claimed.items() if accounts}
        tenants.update({job: tenant for job, (tenant, _) in given.items()})
        for job, accounts in claimed.items():
            other = [a for a in accounts if a != tenants[job]]
            if other and self.ctx.once((SOURCE, "claimed", job, *accounts), logging.WARNING,
                                       "jobs: job %s's processes name the account(s) %s: its energy goes to %r (%s)",
                                       job, ", ".join(map(repr, accounts)), tenants[job],
                                       f"the {given[job][1]}'s" if job in given else "the first seen"):
                whose = f"the {given[job][1]} {tenants[job]!r}, which is kept" if job in given else (
                    f"{tenants[job]!r}, the first seen, is kept")
                self.ctx.event(SOURCE, "tenant_claimed", f"job {job}: its processes' environment names the account(s) "
                               f"{', '.join(map(repr, accounts))}; {whose}", t_ns)
        return {i: [jobholders.Holder(h.job, tenants.get(h.job, h.tenant), h.source, h.pids) for h in held.values()]
                for i, held in by_gpu.items()}

    def _disagreements(self, by_gpu: dict[int, dict[str, jobholders.Holder]], hooked: dict[int, list[str]],
                       no_job: set[int], t_ns: int) -> None:
        """Said once each (`holders_disagree`), not decided: where the hook's files name a GPU for a job that
        runs nothing on it while other processes do, or name two jobs for one GPU. Both are normal under
        gres/shard or MPS (jobs share the GPU); otherwise a file left behind (an Epilog that never ran) or
        Slurm's GPU ids not NVML's indexes (a gres.conf whose File= lines skip or reorder /dev/nvidia*), and
        the GPU's energy is split with a job that does not hold it (found by the job-holders audit)."""
        for index, jobs in hooked.items():
            held = by_gpu[index]
            idle = sorted(j for j in jobs if not held[j].pids)
            running = sorted(j for j, h in held.items() if h.pids)
            why = []
            if len(set(jobs)) > 1:
                why.append(f"the hook names {len(set(jobs))} jobs for it ({', '.join(sorted(set(jobs)))})")
            if idle and (running or index in no_job):
                others = ", ".join(f"job {j}" for j in running if j not in idle) or "a process of no job"
                if index in no_job and running:
                    others += " and a process of no job"
                why.append(f"the hook's job(s) {', '.join(idle)} run nothing on it while {others} does")
            if why:
                self._say_once(("disagree", index, tuple(sorted(set(jobs))), tuple(running)), "holders_disagree",
                               f"GPU {index}: {'; '.join(why)}: normal under gres/shard or MPS; otherwise a hook file "
                               "left behind, or SLURM_JOB_GPUS ids that are not NVML's indexes (gres.conf File= "
                               "order), and its energy is split with a job that does not hold it", t_ns,
                               gpu=str(index))

    def _say_once(self, key: tuple, event: str, message: str, t_ns: int, **tags: str) -> None:
        """A warning and an event, once per key (while the agent runs)."""
        if self.ctx.once((SOURCE, *key), logging.WARNING, "jobs: %s", message):
            self.ctx.errors += 1
            self.ctx.event(SOURCE, event, message, t_ns, **tags)

    def fetch_pods(self) -> None:
        """The kubelet's List for the next sample, asked outside the sampling lock (the jobs sample job's
        `prepare`): a kubelet that hangs until its timeout holds up this source alone."""
        try:
            answer: tuple[dict, dict] | OSError = self.pods.gpu_pods()
        except OSError as exc:
            answer = exc
        self._fetched = answer

    def sample(self) -> list[str]:
        gpus = self._gpus()
        holders = self.holders(gpus)
        now_ns = time.monotonic_ns()
        for gpu in gpus:
            acc = self.acc.setdefault(gpu.uuid, _Acc())
            if not acc.started:
                # The interval starts at the GPU's first energy reading and process sample by the nvml
                # source: samples before them would share no energy, or miss the GPU's processes.
                if gpu.pids is None and "processes" not in gpu.unsupported and not gpu.processes_failed:
                    continue
                acc.start, acc.start_breaks = gpu.energy_reading(), gpu.breaks
                acc.started = acc.start is not None
                if not acc.started:
                    continue
            held = holders.get(gpu.index, [])
            blind = frozenset(h.job for h in held if unlinked(h, self.cfg.slurm))
            shares = split(held, gpu.util_by_pid if len(held) > 1 else None, blind)
            _hold(acc, now_ns)
            acc.samples += 1
            if gpu.processes_failed:
                acc.blind += 1
            acc.last = [(h, shares.get(h.job, 0.0)) for h in held]
            # Processes on the GPU that no holder claims: those of the holders whose processes cannot be known.
            unclaimed = bool(set(gpu.pids or ()) - {p for h in held for p in h.pids})
            for h in held:
                a = acc.held.setdefault(h.job, _Held(h.tenant, h.source))
                a.shared = a.shared or len(held) > 1
                # Idle only where seen idle (two running pods were flagged reserved idle: the Kubernetes audit).
                a.ran = a.ran or bool(h.pids) or gpu.processes_failed or (h.job in blind and unclaimed)
                a.tenant, a.source = a.tenant or h.tenant, h.source if h.source == "slurm" else a.source
        return []

    # -- the ledger -------------------------------------------------------------------------------

    def ledger(self) -> list[str]:
        """One record per (GPU, job) for the interval now ending; then a new interval starts.

        A GPU's record spans its two energy readings by the nvml source (the last one before the
        previous ledger and the last one before this): its time is the later reading's, its
        interval_s the time between them, so the energy is the counter's own difference and the
        intervals of a GPU follow each other without gap or overlap.
        """
        self.sample()
        end_ns = time.time_ns()
        end = self.host.energy_reading() if self.host else None
        host_w, host_estimated, host_unknown = host_power_w(self._host_start, end, self.cfg.host_estimate_w)
        self._host_start = end
        # The node's host power per GPU of the node (also those [sources.nvml] gpus leaves out).
        per_gpu_host_w = host_w / max(self.nvml.gpu_count, 1)
        out: list[str] = self._unattributed_line(end_ns)
        gpus = self._gpus()
        live = {g.uuid for g in gpus}
        for gpu in gpus:
            acc = self.acc.get(gpu.uuid)
            if acc is None or not acc.started:
                continue
            reading = gpu.energy_reading()
            if reading is not None and acc.start is not None and reading[2] <= acc.start[2]:
                continue  # no newer reading yet (the GPU just came back): the interval goes on to the next
            energy = self._gpu_energy(gpu, acc, reading, end_ns)
            if energy is not None and acc.held_ns > 0:
                gpu_wh, interval_s, t_ns = energy
                for slot, job in enumerate(sorted(acc.held)):
                    a = acc.held[job]
                    share = min(1.0, a.share_sum / acc.held_ns)
                    if share <= 0:
                        continue
                    fields = {
                        "job": job, "tenant": a.tenant, "source": a.source, "gpu_model": gpu.info.get("name", ""),
                        "interval_s": float(interval_s), "gpu_wh": gpu_wh * share, "gpu_wh_estimated": not gpu.has_counter,
                        "share": share, "shared": a.shared, "reserved_idle": not a.ran,
                        "host_wh": per_gpu_host_w * interval_s / 3600.0 * share, "host_estimated": host_estimated,
                        "host_unknown": host_unknown,
                    }
                    try:
                        line = encode_line(self.ctx.key(JOB_LEDGER, gpu=str(gpu.index), slot=str(slot)), fields, t_ns)
                    except LineProtocolError as exc:
                        # Names are checked where they are read (jobholders.name_problem); whatever slips past
                        # costs this record, said, never the ledger (an exception here kept the interval open:
                        # every later tick failed the same way).
                        self._gap(gpu.uuid, f"job {job!r}'s record cannot be written ({exc})", end_ns, gpu.index,
                                  whole=False)
                        continue
                    if line:
                        out.append(line)
            if acc.blind and self.cfg.slurm:
                # Its processes could not be read (NVML NO_PERMISSION on a MIG GPU to an unprivileged agent):
                # the Slurm jobs on it cannot be found, and its energy in those samples stays unattributed.
                # Said, not left to a log line (found by the NVML audit: every job on such a node billed
                # nothing, silently).
                self._gap(gpu.uuid, f"its compute processes could not be read by NVML in {acc.blind} of "
                          f"{acc.samples} sample(s), so the Slurm jobs on it are not known (their energy stays "
                          "unattributed)", end_ns, gpu.index, whole=False)
            # The tick's sample (taken above) goes on holding into the next interval.
            acc.start, acc.samples, acc.blind, acc.held_ns = reading, 0, 0, 0
            acc.start_breaks = gpu.breaks
            acc.held = {h.job: _Held(h.tenant, h.source, 0.0, len(acc.last) > 1, bool(h.pids) or gpu.processes_failed)
                        for h, _ in acc.last}
        for uuid in [u for u in self.acc if u not in live]:
            # Lost (or NVML away) at the interval's end: no reading closes the interval, and the next
            # starts afresh once the GPU is back (its energy meanwhile held by no sampled job).
            if self.acc[uuid].held:
                self._gap(uuid, "the GPU is lost or NVML is unavailable", end_ns)
            del self.acc[uuid]
        self._interval_start_ns = end_ns
        return out

    def _gpu_energy(self, gpu, acc: _Acc, reading: tuple[float, int] | None, end_ns: int
                    ) -> tuple[float, float, int] | None:
        """(Wh, interval s, record time ns) between the interval's two readings; None (and an event) when unknown."""
        start = acc.start
        why = None
        if start is None or reading is None:
            why = "the energy counter could not be read"
        elif reading[0] < start[0]:
            why = "the energy counter went back (driver reload)"
        elif gpu.breaks != acc.start_breaks:
            why = ("the energy counter restarted or rose faster than the GPU can draw (energy_counter_reset, "
                   "energy_counter_jump)")
        if why is not None:
            if acc.held:
                self._gap(gpu.uuid, why, end_ns, gpu.index)
            return None
        # The interval's length on the monotonic clock; the record's time is the reading's (wall clock).
        return (reading[0] - start[0]) / MJ_PER_WH, (reading[2] - start[2]) / 1e9, reading[1]

    def _gap(self, uuid: str, why: str, t_ns: int, index: int | None = None, whole: bool = True) -> None:
        """A ledger_gap event: the GPU has no records for the interval (`whole`), or some of its energy no job's."""
        self.ctx.errors += 1
        name = f"GPU {index}" if index is not None else f"GPU {uuid}"
        what = "no ledger records for this interval" if whole else "part of its energy in this interval is no job's"
        self.ctx.event(SOURCE, "ledger_gap", f"{name}: {what}: {why}", t_ns,
                       **({"gpu": str(index)} if index is not None else {}))

    def _unattributed_line(self, end_ns: int) -> list[str]:
        """The node's count of GPU processes without a job over the interval now ending (none: no line)."""
        n, self.unattributed = len(self.unattributed), set()
        if not n:
            return []
        self.unattributed_processes += n
        line = encode_line(self.ctx.key(JOB_LEDGER_STATS), {"unattributed_processes": n,
                           "interval_s": (end_ns - self._interval_start_ns) / 1e9}, end_ns)
        return [line] if line else []

    def _read_static(self) -> None:
        if not self.cfg.static_map:
            return
        try:
            mtime = os.stat(self.cfg.static_map).st_mtime_ns
        except OSError as exc:
            raise SourceUnavailable(f"{self.cfg.static_map}: cannot read the static job map: {exc.strerror}") from None
        if mtime != self._static_mtime_ns:
            try:
                self._static = jobholders.read_static_map(self.cfg.static_map)
            except UserError as exc:
                if not self._static_mtime_ns < 0:
                    # A broken edit while running: keep the last good map, say so once.
                    if self.ctx.once((SOURCE, "static", mtime), logging.ERROR, "jobs: %s; keeping the previous map", exc):
                        self.ctx.errors += 1
                    return
                raise SourceUnavailable(str(exc)) from None
            self._static_mtime_ns = mtime

    def final(self) -> list[str]:
        """At the agent's stop: the records of the interval since the last ledger tick, up to the GPUs' last
        energy readings (a stop or a restart lost up to interval_s of every running job's energy to
        "unattributed", without a record or a ledger_gap event: found by the jobs audit)."""
        return self.ledger()

    def close(self) -> None:
        if self.pods is not None:
            self.pods.close()
