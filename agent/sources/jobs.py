"""The job ledger (schema.JOB_LEDGER): which job holds each GPU, and its energy per interval.

Every `sample_interval_s` the holders of each GPU are read (jobholders.py: Slurm processes, the
prolog/epilog hook, Kubernetes, a static map) and the GPU is split among them by the rule below.
Every `interval_s` one record per (GPU, job) is written: the job's mean share over the samples times
the GPU's energy over the interval.

- GPU energy: the NVML energy counter's difference over the interval; without a counter (before
  Volta), power read at every sample and integrated (trapezoids), `gpu_wh_estimated=true`.
- The split (one rule, `split()`): one holder takes the whole GPU. Several holders (MPS,
  time-slicing, a reservation shared with a running job) share it by their processes' SM
  utilisation where NVML gives it (nvmlDeviceGetProcessUtilization, the holders without processes
  get none), otherwise equally among all holders; such shares are `shared=true`. A sample with no
  holder leaves its part of the GPU's energy unattributed (no record: the collector side counts it).
- Reserved idle: a job that held the GPU with no process on it all interval (hook, Kubernetes or
  static map) still gets its share of the GPU's energy, idle included (as the Green Software
  Foundation's SCI does), flagged `reserved_idle=true`.
- Host energy (`host_wh`): the node's non-GPU energy over the interval, from RAPL (package and
  DRAM zones) where readable, else `host_estimate_w` x the interval (`host_estimated=true`). Each
  GPU carries 1/N of it (N: the node's GPUs), split like the GPU's own energy: a job's host share
  is proportional to the GPUs it holds, and the part of idle, unheld GPUs stays unattributed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pynvml

from puewatch.agent.sources import jobholders
from puewatch.agent.sources.base import Context, Job, SourceUnavailable
from puewatch.agent.sources.host import unwrap_uj
from puewatch.config import setting
from puewatch.core.schema import JOB_LEDGER
from puewatch.errors import UserError
from puewatch.lineprotocol import encode_line

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
    kubernetes_resources: list[str] = setting(default_factory=lambda: ["nvidia.com/gpu"], doc="Extended resources that are GPUs (device IDs = GPU UUIDs).")
    kubernetes_timeout_s: float = setting(2.0, min=0.1, max=60.0, doc="Timeout of one PodResources List call.")
    static_map: str = setting("", doc="A TOML file of `[[gpu]]` tables (`gpu` index or UUID, `job`, `tenant`); empty: none. Re-read when it changes.")
    sysfs_root: str = setting("/sys", min=1, doc="Root of sysfs, for the RAPL host energy (class/powercap).")
    host_estimate_w: float = setting(
        0.0, min=0.0, max=100000.0,
        doc="The node's non-GPU power where RAPL cannot be read (e.g. measured at the PDU outlet, idle); its energy is flagged `host_estimated`.",
    )

    def check(self) -> list[tuple[str, str]]:
        if self.sample_interval_s > self.interval_s:
            return [("sample_interval_s", f"must be at most interval_s ({self.interval_s}), got {self.sample_interval_s}")]
        return []


def split(holders: list[jobholders.Holder], util_by_pid: dict[int, int] | None) -> dict[str, float]:
    """The documented rule: one GPU's share per holder (by job) at one sample; see the module's docstring."""
    if not holders:
        return {}
    if len(holders) == 1:
        return {holders[0].job: 1.0}
    if util_by_pid is not None:
        util = {h.job: sum(util_by_pid.get(p, 0) for p in h.pids) for h in holders}
        total = sum(util.values())
        if total > 0:
            return {job: u / total for job, u in util.items()}
    return {h.job: 1.0 / len(holders) for h in holders}


@dataclass
class _Held:
    """One job's accumulated share of one GPU over the current interval."""

    tenant: str
    source: str
    share_sum: float = 0.0
    shared: bool = False
    ran: bool = False  # a process of its ran on the GPU in some sample


@dataclass
class _Gpu:
    index: int
    handle: object
    uuid: str
    name: str
    has_counter: bool = True
    energy_mj: float | None = None  # counter (or integrated power) at the interval's start
    integrated_mj: float = 0.0
    last_power: tuple[float, int] | None = None  # (W, ns)
    samples: int = 0
    held: dict[str, _Held] = field(default_factory=dict)


class Source:
    name = SOURCE

    def __init__(self, config: Config, ctx: Context) -> None:
        self.cfg = config
        self.ctx = ctx
        self.gpus: list[_Gpu] = []
        self.pods: jobholders.PodResources | None = None
        self._static: dict[str, tuple[str, str]] = {}
        self._static_mtime_ns = -1
        self._rapl: list[tuple[Path, int | None]] = []
        self._rapl_last: dict[Path, int] = {}
        self._host_uj = 0
        self._interval_start_ns = 0
        self._host_start_uj: int | None = None
        self.unattributed_processes = 0  # processes on GPUs that belong to no Slurm job, counted

    def open(self) -> None:
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            for index in range(count):
                h = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(h)
                self.gpus.append(_Gpu(index, h, _str(pynvml.nvmlDeviceGetUUID(h)), _str(name)))
        except pynvml.NVMLError as exc:
            raise SourceUnavailable(f"the job ledger needs NVML: {exc}") from None
        if self.cfg.kubernetes:
            try:
                self.pods = jobholders.PodResources(self.cfg.kubelet_socket, tuple(self.cfg.kubernetes_resources), self.cfg.kubernetes_timeout_s)
            except UserError as exc:
                raise SourceUnavailable(str(exc)) from None
        self._rapl = self._find_rapl()
        self._read_static()
        self._start_interval(time.time_ns())
        log.info("jobs: %d GPU(s); holders from %s; ledger every %.0f s", len(self.gpus), ", ".join(self._sources()) or "nothing", self.cfg.interval_s)

    def _sources(self) -> list[str]:
        c = self.cfg
        return [n for n, on in (("slurm", c.slurm), ("hook", c.hook_state_dir), ("kubernetes", c.kubernetes), ("static", c.static_map)) if on]

    def jobs(self) -> list[Job]:
        return [Job("jobs.sample", self.cfg.sample_interval_s, self.sample, samples=False),
                Job("jobs.ledger", self.cfg.interval_s, self.ledger)]

    # -- sampling ----------------------------------------------------------------------------------

    def holders(self) -> dict[int, list[jobholders.Holder]]:
        """GPU index -> the jobs holding it now, merged from every configured reader."""
        by_gpu: dict[int, dict[str, jobholders.Holder]] = {g.index: {} for g in self.gpus}
        t_ns = time.time_ns()

        def add(gpu: _Gpu, job: str, tenant: str, source: str, pid: int | None = None) -> None:
            held = by_gpu[gpu.index]
            old = held.get(job)
            pids = (old.pids if old else ()) + ((pid,) if pid is not None else ())
            # A Slurm job seen by its processes and by the hook is one job; the processes name the source.
            src = source if old is None or source == "slurm" else old.source
            held[job] = jobholders.Holder(job, tenant or (old.tenant if old else ""), src, pids)

        if self.cfg.slurm:
            for gpu in self.gpus:
                for proc in self._processes(gpu):
                    try:
                        found = jobholders.slurm_job_of(proc, self.cfg.proc_root)
                    except OSError:
                        found = None  # gone between NVML's list and /proc, or not ours to read
                    if found is None:
                        self.unattributed_processes += 1
                        continue
                    add(gpu, found.job, found.account, "slurm", proc)
        keyed = {**{str(g.index): g for g in self.gpus}, **{g.uuid: g for g in self.gpus}}
        if self.cfg.hook_state_dir:
            state, bad = jobholders.read_hook_state(self.cfg.hook_state_dir)
            for name in bad:
                if self.ctx.once((SOURCE, "hook", name), logging.WARNING, "jobs: hook state file %s unreadable, left out", name):
                    self.ctx.event(SOURCE, "hook_state_unreadable", f"{self.cfg.hook_state_dir}/{name} unreadable", t_ns)
            for gpu_id, jobs in state.items():
                gpu = keyed.get(gpu_id)
                for job, tenant in jobs if gpu else ():
                    add(gpu, job, tenant, "hook")
        if self.pods is not None:
            try:
                pods = self.pods.gpu_pods()
            except OSError as exc:
                if self.ctx.once((SOURCE, "kubelet", str(exc)), logging.WARNING, "jobs: %s", exc):
                    self.ctx.errors += 1
                    self.ctx.event(SOURCE, "kubelet_unavailable", str(exc), t_ns)
                pods = {}
            for device, held in pods.items():
                gpu = keyed.get(device)
                for job, tenant in held if gpu else ():
                    add(gpu, job, tenant, "kubernetes")
        if self.cfg.static_map:
            self._read_static()
            for gpu_id, (job, tenant) in self._static.items():
                gpu = keyed.get(gpu_id)
                if gpu:
                    add(gpu, job, tenant, "static")
        return {i: list(h.values()) for i, h in by_gpu.items()}

    def _processes(self, gpu: _Gpu) -> list[int]:
        try:
            return [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle)]
        except pynvml.NVMLError as exc:
            if self.ctx.once((SOURCE, gpu.uuid, "processes", exc.value), logging.WARNING, "jobs: GPU %d: compute processes: %s", gpu.index, exc):
                self.ctx.errors += 1
            return []

    def _utilisation(self, gpu: _Gpu) -> dict[int, int] | None:
        """SM utilisation per PID over the last samples NVML keeps, or None where NVML gives none."""
        try:
            samples = pynvml.nvmlDeviceGetProcessUtilization(gpu.handle, 0)
        except pynvml.NVMLError:
            return None
        return {s.pid: int(s.smUtil) for s in samples}

    def sample(self) -> list[str]:
        t_ns = time.time_ns()
        holders = self.holders()
        for gpu in self.gpus:
            held = holders.get(gpu.index, [])
            util = self._utilisation(gpu) if len(held) > 1 else None
            shares = split(held, util)
            gpu.samples += 1
            for h in held:
                acc = gpu.held.setdefault(h.job, _Held(h.tenant, h.source))
                acc.share_sum += shares.get(h.job, 0.0)
                acc.shared = acc.shared or len(held) > 1
                acc.ran = acc.ran or bool(h.pids)
                acc.tenant, acc.source = acc.tenant or h.tenant, h.source if h.source == "slurm" else acc.source
            if not gpu.has_counter:
                self._integrate(gpu, t_ns)
        return []

    # -- the ledger -------------------------------------------------------------------------------

    def ledger(self) -> list[str]:
        """One record per (GPU, job) for the interval now ending; then a new interval starts."""
        self.sample()
        end_ns = time.time_ns()
        interval_s = (end_ns - self._interval_start_ns) / 1e9
        host_wh, host_estimated = self._host_wh(interval_s)
        per_gpu_host_wh = host_wh / len(self.gpus) if self.gpus else 0.0
        out: list[str] = []
        for gpu in self.gpus:
            gpu_wh = self._gpu_wh(gpu, end_ns)
            if gpu_wh is not None and gpu.samples:
                for slot, job in enumerate(sorted(gpu.held)):
                    acc = gpu.held[job]
                    share = acc.share_sum / gpu.samples
                    if share <= 0:
                        continue
                    fields = {
                        "job": job, "tenant": acc.tenant, "source": acc.source, "gpu_model": gpu.name,
                        "interval_s": float(interval_s), "gpu_wh": gpu_wh * share, "gpu_wh_estimated": not gpu.has_counter,
                        "share": share, "shared": acc.shared, "reserved_idle": not acc.ran,
                        "host_wh": per_gpu_host_wh * share, "host_estimated": host_estimated,
                    }
                    line = encode_line(self.ctx.key(JOB_LEDGER, gpu=str(gpu.index), slot=str(slot)), fields, end_ns)
                    if line:
                        out.append(line)
            gpu.samples, gpu.held = 0, {}
        self._interval_start_ns = end_ns
        return out

    def _start_interval(self, t_ns: int) -> None:
        self._interval_start_ns = t_ns
        for gpu in self.gpus:
            gpu.energy_mj = self._energy_mj(gpu, t_ns)
        self._host_start_uj = self._rapl_uj()

    def _energy_mj(self, gpu: _Gpu, t_ns: int) -> float | None:
        if gpu.has_counter:
            try:
                return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
            except pynvml.NVMLError as exc:
                if exc.value not in (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND):
                    self.ctx.once((SOURCE, gpu.uuid, "energy", exc.value), logging.WARNING, "jobs: GPU %d energy: %s", gpu.index, exc)
                    return None
                gpu.has_counter = False
                log.info("jobs: GPU %d has no energy counter; its ledger energy is integrated from power (gpu_wh_estimated)", gpu.index)
        self._integrate(gpu, t_ns)
        return gpu.integrated_mj

    def _integrate(self, gpu: _Gpu, t_ns: int) -> None:
        try:
            power_w = pynvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0
        except pynvml.NVMLError:
            gpu.last_power = None  # the time in between is unknown
            return
        if gpu.last_power is not None:
            last_w, last_ns = gpu.last_power
            gpu.integrated_mj += (last_w + power_w) / 2 * (t_ns - last_ns) / 1e9 * 1000.0
        gpu.last_power = (power_w, t_ns)

    def _gpu_wh(self, gpu: _Gpu, end_ns: int) -> float | None:
        """The GPU's energy over the interval; None (and an event) when it cannot be known."""
        start, end = gpu.energy_mj, self._energy_mj(gpu, end_ns)
        gpu.energy_mj = end
        if start is None or end is None or end < start:
            why = "the energy counter went back (driver reload)" if start is not None and end is not None else "the energy counter could not be read"
            if gpu.held:
                self.ctx.errors += 1
                self.ctx.event(SOURCE, "ledger_gap", f"GPU {gpu.index}: no ledger records for this interval: {why}", end_ns, gpu=str(gpu.index))
            return None
        return (end - start) / MJ_PER_WH

    # -- host energy --------------------------------------------------------------------------------

    def _find_rapl(self) -> list[tuple[Path, int | None]]:
        """Package zones and their DRAM sub-zones (the other sub-zones lie inside the package's energy)."""
        root = Path(self.cfg.sysfs_root) / "class" / "powercap"
        zones = []
        try:
            entries = sorted(p for p in root.iterdir() if p.name.startswith("intel-rapl:"))
        except OSError:
            return zones
        for path in entries:
            try:
                name = (path / "name").read_text().strip()
                max_range = int((path / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                name, max_range = "", None
            if path.name.count(":") == 1 or name == "dram":
                zones.append((path, max_range))
        return zones

    def _rapl_uj(self) -> int | None:
        """The node's RAPL energy counter (unwrapped, µJ), or None when any zone cannot be read."""
        if not self._rapl:
            return None
        for path, max_range in self._rapl:
            try:
                raw = int((path / "energy_uj").read_bytes())
            except (OSError, ValueError):
                self._rapl_last.clear()
                return None
            last = self._rapl_last.get(path)
            if last is not None:
                self._host_uj += unwrap_uj(raw, last, max_range)
            self._rapl_last[path] = raw
        return self._host_uj

    def _host_wh(self, interval_s: float) -> tuple[float, bool]:
        start, end = self._host_start_uj, self._rapl_uj()
        self._host_start_uj = end
        if start is not None and end is not None:
            return (end - start) / 3.6e9, False
        return self.cfg.host_estimate_w * interval_s / 3600.0, True

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

    def close(self) -> None:
        if self.pods is not None:
            self.pods.close()
        if self.gpus:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass


def _str(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
