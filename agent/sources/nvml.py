"""NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`).

pynvml and its NVMLError stop at this module: everything outside sees line
protocol, `SourceUnavailable` at start-up, and events in the stream.

Power: NVML's field values 185 (NVML_FI_DEV_POWER_AVERAGE, 1-second average) and
186 (NVML_FI_DEV_POWER_INSTANT) name their kind; where the driver supports
neither, nvmlDeviceGetPowerUsage is used with its documented meaning: a
1-second average on Ampere (except GA100) and newer, instantaneous on GA100
and older. Either way the field name says which kind it is.

Energy: nvmlDeviceGetTotalEnergyConsumption (mJ since the driver loaded) where
supported, read every `energy_interval_s` (default 1 s, not at the power rate: on
an H100 one call costs about 3.9 ms, against 2.3 µs for a power reading); a
counter that goes backwards means the driver reloaded and is reported as an
event. Where there is no counter, energy is integrated from every power sample
(trapezoids) and marked `energy_estimated=true`; the integral restarts from 0 after the GPU
was lost or NVML was away (that time has no samples: its energy is not known, and the
counter going back says so downstream).

The power samples are the agent's hot path (8 GPUs at 10 Hz by default): they
call the NVML C functions directly, through pynvml's own function-pointer cache,
with ctypes buffers built once per GPU. pynvml's wrappers build a ctypes array
and raise and catch a TypeError per field on every nvmlDeviceGetFieldValues
call, and its structures have a slow `__getattribute__`; that was most of the
cost of a sample.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pynvml

from puewatch.agent.sources.base import Context, Job, SourceUnavailable
from puewatch.config import setting
from puewatch.lineprotocol import encode_line

log = logging.getLogger("puewatch.agent.nvml")

SOURCE = "nvml"

FI_POWER_AVERAGE = 185  # NVML_FI_DEV_POWER_AVERAGE, mW, 1-second average
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, mW

# Errors that mean this GPU is gone (fallen off the bus, needs a reset).
_LOST = {pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED}
# Errors that mean the library itself needs re-initialising (driver unloaded or replaced).
_LIBRARY = {
    pynvml.NVML_ERROR_UNINITIALIZED,
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
}
_UNSUPPORTED = {pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}

_ARCH_NAMES = {
    pynvml.NVML_DEVICE_ARCH_KEPLER: "kepler",
    pynvml.NVML_DEVICE_ARCH_MAXWELL: "maxwell",
    pynvml.NVML_DEVICE_ARCH_PASCAL: "pascal",
    pynvml.NVML_DEVICE_ARCH_VOLTA: "volta",
    pynvml.NVML_DEVICE_ARCH_TURING: "turing",
    pynvml.NVML_DEVICE_ARCH_AMPERE: "ampere",
    pynvml.NVML_DEVICE_ARCH_ADA: "ada",
    pynvml.NVML_DEVICE_ARCH_HOPPER: "hopper",
    pynvml.NVML_DEVICE_ARCH_BLACKWELL: "blackwell",
}

# The most any GPU board draws, where NVML gives no power limit to bound it by (twice the highest limit where
# it does): a reading above is a broken sensor's or NVML's "not available" (0xFFFFFFFF mW, 4294967.295 W),
# never a reading. Found by the agent audit: with no limit, 4.29 MW was shipped and integrated.
GPU_POWER_CEILING_W = 10_000.0
_NOT_AVAILABLE_W = 0xFFFFFFFF / 1000.0
# An energy counter's rise is impossible above the GPU's power bound over the time between its readings
# (monotonic) and this much more: the counter updates some tens of ms apart, so a reading can hold energy of
# a moment before the previous one was taken.
COUNTER_SKEW_S = 0.25

# pynvml's function-pointer cache (private, but part of every nvidia-ml-py release since 7.352):
# it returns the ctypes function of the loaded libnvidia-ml, which the hot path calls directly.
_nvml_function = pynvml._nvmlGetFunctionPointer


class _FieldValue(ctypes.Structure):
    """nvmlFieldValue_t with pynvml's layout, without its slow `__getattribute__`."""

    _fields_ = pynvml.c_nvmlFieldValue_t._fields_


assert ctypes.sizeof(_FieldValue) == ctypes.sizeof(pynvml.c_nvmlFieldValue_t)


def _c_function(name: str):
    """The NVML C function `name`, or a stand-in answering NVML_ERROR_FUNCTION_NOT_FOUND (old drivers)."""
    try:
        return _nvml_function(name)
    except pynvml.NVMLError:
        return lambda *args: pynvml.NVML_ERROR_FUNCTION_NOT_FOUND


_VALUE_ATTR = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}


@dataclass
class Config:
    """NVIDIA GPUs through NVML: power, energy, utilisation, memory, clocks, processes."""

    interval_s: float = setting(0.1, min=0.01, max=60.0, doc="Period of the power samples (`gpu_power`).")
    energy_interval_s: float = setting(
        1.0,
        min=0.01,
        max=3600.0,
        doc="Period of the energy-counter readings: `energy_mj` is on the first `gpu_power` point of every period "
        "(aligned to the wall clock). One reading costs about 3.9 ms per GPU on an H100. At least `interval_s`.",
    )
    state_interval_s: float = setting(
        1.0, min=0.1, max=300.0, doc="Period of utilisation, memory, temperature, clocks, power limit and clock event reasons (`gpu_state`)."
    )
    process_interval_s: float = setting(5.0, min=0.5, max=3600.0, doc="Period of the per-process GPU memory samples (`gpu_process`).")
    info_interval_s: float = setting(300.0, min=10.0, max=86400.0, doc="Period of the static GPU description (`gpu_info`).")
    gpus: list[int | str] = setting(
        default_factory=list, doc='GPUs to sample, by index (`0`) or UUID (`"GPU-…"`), e.g. `[0, 1]`; empty means all.'
    )
    optional: bool = setting(
        False, doc="Start without GPUs when NVML or the driver is missing (retrying with backoff) instead of refusing to start."
    )
    retry_initial_s: float = setting(1.0, min=0.1, max=600.0, doc="First delay before re-initialising NVML or a lost GPU.")
    retry_max_s: float = setting(60.0, min=0.1, max=3600.0, doc="Longest delay between re-initialisation attempts.")

    def check(self) -> list[tuple[str, str]]:
        if self.energy_interval_s < self.interval_s:
            return [("energy_interval_s", f"must be at least interval_s ({self.interval_s}), got {self.energy_interval_s}")]
        for i, gpu in enumerate(self.gpus):
            if isinstance(gpu, int) and gpu < 0:
                return [(f"gpus[{i}]", f"a GPU index must be 0 or more, got {gpu}")]
            if isinstance(gpu, str) and not gpu.startswith("GPU-"):
                return [(f"gpus[{i}]", f"must be a GPU index (0, 1, ...) or a GPU UUID (\"GPU-...\", as nvidia-smi -L shows it), got {gpu!r}")]
        return []


def _power_usage_kind(arch: int | None, pci_device_id: int | None, name: str) -> str:
    """What nvmlDeviceGetPowerUsage returns on this GPU: 'average' (1 s) or 'instant'.

    NVML documents a 1-second average on Ampere (except GA100) and newer, and an
    instantaneous reading on GA100 and older architectures.
    """
    if arch is None or arch == pynvml.NVML_DEVICE_ARCH_UNKNOWN or arch < pynvml.NVML_DEVICE_ARCH_AMPERE:
        return "instant"
    if arch == pynvml.NVML_DEVICE_ARCH_AMPERE:
        device_id = (pci_device_id or 0) >> 16
        ga100 = 0x2080 <= device_id <= 0x20FF or any(m in name for m in ("A100", "A30 ", "A30-"))
        if ga100 or name.endswith("A30"):
            return "instant"
    return "average"


@dataclass
class _Gpu:
    index: int
    handle: Any
    uuid: str
    power_key: str
    state_key: str
    info_key: str
    tags: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)
    field_ids: list[int] = field(default_factory=list)  # power field values supported
    # Buffers of the hot path, built once: the field values array (fieldId set) and per supported
    # field (position, "field_name=", attribute of the value union); the power and energy outputs.
    field_values: Any = None
    field_count: Any = None
    field_reads: list[tuple[int, str, str]] = field(default_factory=list)
    power_mw: Any = field(default_factory=ctypes.c_uint)
    energy_mj: Any = field(default_factory=ctypes.c_ulonglong)
    usage_kind: str | None = None  # kind of nvmlDeviceGetPowerUsage when used instead of fields
    usage_field: str = ""  # "power_average_w=" or "power_instant_w="
    has_counter: bool | None = None  # None: not tried yet
    last_energy_mj: int | None = None
    last_energy_ns: int = 0  # when last_energy_mj was read (wall clock: the reading's time)
    last_energy_mono_ns: int = 0  # the same on the monotonic clock: rates are judged on it
    est_energy_mj: float = 0.0
    last_power_w: float | None = None
    last_power_ns: int = 0
    last_power_mono_ns: int = 0  # the trapezoids' widths: a wall-clock step invents or removes no energy
    # Discontinuities of the energy (a counter that went back, or rose faster than the GPU can draw): the job
    # ledger counts no interval across one.
    breaks: int = 0
    unsupported: set[str] = field(default_factory=set)
    # The most this GPU can draw (W): twice the highest power limit its board allows, where NVML says
    # (a GPU exceeds its limit only in brief excursions), else GPU_POWER_CEILING_W. A reading above it is
    # a broken sensor's.
    max_power_w: float = GPU_POWER_CEILING_W
    lost: bool = False
    retry_at: float = 0.0
    backoff_s: float = 0.0
    # The last process sample, for the job ledger (jobs.py reads these, never NVML itself):
    pids: list[int] | None = None  # compute processes; None: not read yet or the reading failed
    processes_failed: bool = False  # the last process reading failed (not unsupported): pids unknown
    util_by_pid: dict[int, int] | None = None  # SM utilisation per PID, where NVML gives it (and the ledger wants it)

    def energy_reading(self) -> tuple[float, int, int] | None:
        """(energy mJ, time ns, monotonic ns) of the last counter reading, or of the power integral where the
        GPU has no counter; None before the first or while the GPU is lost. Durations between readings are
        the monotonic times' (a wall-clock step lengthened a ledger interval by the step)."""
        if self.lost or self.has_counter is None:
            return None
        if self.has_counter:
            return None if self.last_energy_mj is None else (float(self.last_energy_mj), self.last_energy_ns,
                                                              self.last_energy_mono_ns)
        return None if self.last_power_w is None else (self.est_energy_mj, self.last_power_ns, self.last_power_mono_ns)


class Source:
    name = SOURCE

    def __init__(self, config: Config, ctx: Context) -> None:
        self.cfg = config
        self.ctx = ctx
        self.gpus: list[_Gpu] = []
        self.driver_version = ""
        self.initialised = False
        self._retry_at = 0.0
        self._backoff_s = 0.0
        # Energy is read at the first power sample of each wall-clock period of energy_interval_s.
        self._energy_ns = round(config.energy_interval_s * 1e9)
        self._energy_period = -1
        self._energy_every_sample = config.energy_interval_s <= config.interval_s
        self._c_field_values = self._c_power_usage = self._c_energy = None
        self.gpu_count = 0  # the node's GPUs (also those `gpus` leaves out)
        # Set by the job ledger (jobs.py): read per-process utilisation in the process sample too.
        self.process_utilisation = False

    # -- start-up -------------------------------------------------------------------------

    def open(self) -> None:
        try:
            self._init()
        except SourceUnavailable as exc:
            if not self.cfg.optional:
                raise SourceUnavailable(f"{exc} (set optional = true in [sources.nvml] to run without GPUs)") from None
            log.warning("%s; [sources.nvml] is optional: going on without GPUs, retrying in %g s", exc, self.cfg.retry_initial_s)
            self.ctx.event(SOURCE, "nvml_unavailable", str(exc), time.time_ns())
            self._schedule_library_retry()

    def _init(self) -> None:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            raise SourceUnavailable("NVML library libnvidia-ml.so.1 not found: is the NVIDIA driver installed?") from None
        except pynvml.NVMLError as exc:
            raise SourceUnavailable(f"NVML initialisation failed: {exc}") from None
        try:
            self.driver_version = _str(pynvml.nvmlSystemGetDriverVersion())
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as exc:
            # Initialised, then not usable: shut down again, or every retry left one more initialisation open
            # (NVML counts them; found by the NVML audit).
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass
            raise SourceUnavailable(f"NVML: cannot list GPUs: {exc}") from None
        self.gpu_count = count
        self._c_field_values = _c_function("nvmlDeviceGetFieldValues")
        self._c_power_usage = _c_function("nvmlDeviceGetPowerUsage")
        self._c_energy = _c_function("nvmlDeviceGetTotalEnergyConsumption")
        self.gpus = []
        now_ns = time.time_ns()
        for index in self._wanted(count):
            gpu = self._setup_gpu(index, now_ns)
            if gpu is not None:
                self.gpus.append(gpu)
        self.initialised = True
        if not self.gpus and count == 0:
            log.info("NVML: driver %s reports no GPUs on this node", self.driver_version)
        else:
            log.info(
                "NVML: driver %s, sampling %d of %d GPU(s)%s",
                self.driver_version,
                len(self.gpus),
                count,
                " ([sources.nvml] gpus)" if self.cfg.gpus else "",
            )

    def _wanted(self, count: int) -> list[int]:
        """Indexes of the GPUs to sample: all, or those `gpus` lists by index or UUID."""
        if not self.cfg.gpus:
            return list(range(count))
        indexes = {g for g in self.cfg.gpus if isinstance(g, int)}
        uuids = {g for g in self.cfg.gpus if isinstance(g, str)}
        wanted, found = [], set()
        for index in range(count):
            if index in indexes:
                wanted.append(index)
                continue
            if not uuids:
                continue
            try:
                uuid = _str(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(index)))
            except pynvml.NVMLError as exc:
                # Its UUID cannot be read now, so it cannot be matched; it is looked at again at the
                # next NVML initialisation.
                log.warning("NVML: GPU %d cannot be opened to read its UUID (%s); [sources.nvml] gpus cannot match it", index, exc)
                continue
            if uuid in uuids:
                wanted.append(index)
                found.add(uuid)
        missing = sorted(i for i in indexes if i >= count) + sorted(uuids - found)
        if missing:
            log.warning("[sources.nvml] gpus lists %s, not found among this node's %d GPU(s)", ", ".join(map(str, missing)), count)
        return wanted

    def _setup_gpu(self, index: int, now_ns: int, lost: _Gpu | None = None) -> _Gpu | None:
        """Describe one GPU and find which power and energy readings it supports."""
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _str(pynvml.nvmlDeviceGetUUID(handle))
        except pynvml.NVMLError as exc:
            if lost is not None:
                raise
            log.error("NVML: GPU %d cannot be opened: %s; it is left out and retried", index, exc)
            gpu = _Gpu(index, None, "", "", "", "", {})
            self._mark_lost(gpu, now_ns, f"GPU {index} cannot be opened: {exc}")
            return gpu
        tags = {"gpu": str(index), "uuid": uuid}
        gpu = _Gpu(
            index=index,
            handle=handle,
            uuid=uuid,
            power_key=self.ctx.key("gpu_power", **tags),
            state_key=self.ctx.key("gpu_state", **tags),
            info_key=self.ctx.key("gpu_info", **tags),
            tags=tags,
        )
        name = self._opt(gpu, "name", pynvml.nvmlDeviceGetName, handle)
        serial = self._opt(gpu, "serial", pynvml.nvmlDeviceGetSerial, handle)
        pci = self._opt(gpu, "pci_info", pynvml.nvmlDeviceGetPciInfo, handle)
        arch = self._opt(gpu, "architecture", pynvml.nvmlDeviceGetArchitecture, handle)
        name = _str(name) if name is not None else ""
        pci_device_id = pci.pciDeviceId if pci is not None else None

        # Power: the explicit field values first. An error other than "not supported" is transient (a
        # timeout, an unknown error, a GPU busy resetting): with no power reading found, the GPU is set up
        # again with backoff (one UNKNOWN and one TIMEOUT at start-up switched its power off for good and
        # labelled it unsupported: found by the NVML audit).
        probe_error: pynvml.NVMLError | None = None
        try:
            values = pynvml.nvmlDeviceGetFieldValues(handle, [FI_POWER_AVERAGE, FI_POWER_INSTANT])
            ok = [v for v in values if v.nvmlReturn == pynvml.NVML_SUCCESS]
            gpu.field_ids = [v.fieldId for v in ok]
            if ok:
                gpu.field_values = (_FieldValue * len(ok))()
                for i, v in enumerate(ok):
                    gpu.field_values[i].fieldId = v.fieldId
                gpu.field_count = ctypes.c_int32(len(ok))
                gpu.field_reads = [
                    (i, "power_average_w=" if v.fieldId == FI_POWER_AVERAGE else "power_instant_w=", _VALUE_ATTR.get(v.valueType, "uiVal"))
                    for i, v in enumerate(ok)
                ]
            for v in values:
                if v.nvmlReturn != pynvml.NVML_SUCCESS:
                    label = "power_average_w (field 185)" if v.fieldId == FI_POWER_AVERAGE else "power_instant_w (field 186)"
                    self.ctx.once((SOURCE, uuid, v.fieldId), logging.INFO, "NVML: GPU %d: %s not supported, left out", index, label)
        except pynvml.NVMLError as exc:
            self._classify(exc, gpu)
            if exc.value not in _UNSUPPORTED | _LOST | _LIBRARY:
                probe_error = exc
            self.ctx.once((SOURCE, uuid, "fields"), logging.INFO, "NVML: GPU %d: field values not available (%s)", index, exc)
        power_sources = {}
        if gpu.field_ids:
            for fid in gpu.field_ids:
                power_sources["power_average_w" if fid == FI_POWER_AVERAGE else "power_instant_w"] = f"field_{fid}"
        else:
            kind = _power_usage_kind(arch, pci_device_id, name)
            try:
                pynvml.nvmlDeviceGetPowerUsage(handle)
                gpu.usage_kind = kind
                gpu.usage_field = f"power_{kind}_w="
                power_sources[f"power_{kind}_w"] = "nvmlDeviceGetPowerUsage"
            except pynvml.NVMLError as exc:
                self._classify(exc, gpu)
                if exc.value not in _UNSUPPORTED | _LOST | _LIBRARY:
                    probe_error = probe_error or exc
                elif probe_error is None:
                    self.ctx.once((SOURCE, uuid, "power"), logging.WARNING, "NVML: GPU %d reports no power at all (%s)", index, exc)
        if not power_sources and probe_error is not None and not gpu.lost:
            if lost is not None:
                raise probe_error  # _retry_gpu: the next try after a longer wait
            self._mark_lost(gpu, now_ns, f"GPU {index} {uuid}: its power could not be read when it was set up "
                                         f"({probe_error}); set up again with backoff")
            return gpu

        gpu.max_power_w = self._power_bound(gpu, handle)

        # Energy counter support is found at the first power sample (every reading taken is
        # a sample sent: nothing is read here that does not reach the stream). Carried over from
        # the same board only: a replaced one starts afresh (it inherited the old board's counter
        # reading, against which its own was then compared: found by the NVML audit). Without a
        # counter, the integral of power restarts from 0: the time the GPU was away has no power
        # samples, and an integral carried across it counted that time as no energy (found by the
        # NVML audit); restarted, it goes back, which the ledger and the collector take as a reset
        # (that interval not counted).
        if lost is not None and lost.uuid == uuid:
            gpu.has_counter = lost.has_counter
            gpu.last_energy_mj, gpu.last_energy_ns = lost.last_energy_mj, lost.last_energy_ns
            gpu.last_energy_mono_ns, gpu.breaks = lost.last_energy_mono_ns, lost.breaks

        not_read = "unsupported" if probe_error is None else f"not read at set-up: {probe_error}"
        gpu.info = {
            "name": name,
            "serial": _str(serial) if serial is not None else None,
            "pci_bus_id": _str(pci.busId) if pci is not None else None,
            "pci_device_id": pci_device_id,
            "architecture": _ARCH_NAMES.get(arch, "unknown") if arch is not None else None,
            "driver_version": self.driver_version,
            "power_average_source": power_sources.get("power_average_w", not_read),
            "power_instant_source": power_sources.get("power_instant_w", not_read),
        }
        log.info(
            "NVML: GPU %d %s %s: power %s",
            index,
            uuid,
            name,
            ", ".join(f"{k} from {v}" for k, v in power_sources.items()) or "unsupported",
        )
        return gpu

    def _power_bound(self, gpu: _Gpu, handle) -> float:
        """Twice the highest power limit the board allows (its constraints' maximum, else the limit in force)."""
        try:
            top_mw = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)[1]
        except pynvml.NVMLError:
            top_mw = self._opt(gpu, "power_limit", pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        return 2.0 * top_mw / 1000.0 if top_mw else GPU_POWER_CEILING_W

    def _impossible_power(self, gpu: _Gpu, what: str, watts: float, t_ns: int) -> None:
        """A power reading above what the GPU can draw: left out, counted, said once per GPU."""
        self.ctx.errors += 1
        bound = (f"more than any GPU board draws ({GPU_POWER_CEILING_W:g} W; NVML gives no power limit)"
                 if gpu.max_power_w == GPU_POWER_CEILING_W else
                 f"above twice its highest power limit ({gpu.max_power_w / 2:g} W)")
        what_it_is = ("NVML's 'not available' (0xFFFFFFFF mW)" if watts == _NOT_AVAILABLE_W else
                      "a broken sensor's value")
        message = f"GPU {gpu.index} read {what} {watts:.6g} W, {bound}: {what_it_is}, not a reading; left out"
        if self.ctx.once((SOURCE, gpu.uuid, "power_impossible"), logging.WARNING, "NVML: %s (logged once)", message):
            self.ctx.event(SOURCE, "power_impossible", message, t_ns, gpu=str(gpu.index))

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        c = self.cfg
        return [
            Job("nvml.power", c.interval_s, self.sample_power, hot=True),
            Job("nvml.state", c.state_interval_s, self.sample_state),
            Job("nvml.process", c.process_interval_s, self.sample_processes),
            Job("nvml.info", c.info_interval_s, self.sample_info, at_start=True),
        ]

    def sample_power(self) -> list[str]:
        """Power of every GPU, and once per `energy_interval_s` its energy: the hot path.

        No logging, dicts or pynvml wrappers here unless something fails: NVML's C functions
        fill buffers built once per GPU, and each GPU's point is one f-string.
        """
        if not self.initialised:
            self._retry_library()
            return []
        period = time.time_ns() // self._energy_ns
        energy_due = period != self._energy_period or self._energy_every_sample
        self._energy_period = period
        c_field_values, c_power_usage, c_energy = self._c_field_values, self._c_power_usage, self._c_energy
        time_ns = time.time_ns
        out: list[str] = []
        now = 0.0
        for gpu in self.gpus:
            if gpu.lost:
                now = now or time.monotonic()
                if now >= gpu.retry_at:
                    self._retry_gpu(gpu)
                if gpu.lost:
                    continue
            t_ns = time_ns()
            mono_ns = time.monotonic_ns()
            parts: list[str] = []
            power_w = None
            reading = "power"
            try:
                if gpu.field_reads:
                    ret = c_field_values(gpu.handle, gpu.field_count, gpu.field_values)
                    if ret:
                        raise pynvml.NVMLError(ret)
                    values = gpu.field_values
                    for i, prefix, attr in gpu.field_reads:
                        v = values[i]
                        code = v.nvmlReturn
                        if code == 0:  # NVML_SUCCESS
                            w = getattr(v.value, attr) / 1000.0
                            if w > gpu.max_power_w:
                                self._impossible_power(gpu, prefix[:-1], w, t_ns)
                                continue
                            parts.append(f"{prefix}{w!r}")
                            if power_w is None:  # the first field: the average where supported
                                power_w = w
                        else:
                            self._field_error(gpu, prefix[:-1], code)
                elif gpu.usage_kind is not None:
                    ret = c_power_usage(gpu.handle, ctypes.byref(gpu.power_mw))
                    if ret:
                        raise pynvml.NVMLError(ret)
                    power_w = gpu.power_mw.value / 1000.0
                    if power_w > gpu.max_power_w:
                        self._impossible_power(gpu, gpu.usage_field[:-1], power_w, t_ns)
                        power_w = None
                    else:
                        parts.append(f"{gpu.usage_field}{power_w!r}")
                if gpu.has_counter is False:
                    self._integrate(gpu, parts, power_w, t_ns, mono_ns, energy_due)
                elif energy_due:
                    reading = "energy"
                    ret = c_energy(gpu.handle, ctypes.byref(gpu.energy_mj))
                    if ret:
                        raise pynvml.NVMLError(ret)
                    energy = gpu.energy_mj.value
                    if gpu.has_counter is None:
                        gpu.has_counter = True
                        out.append(self._info_line(gpu, t_ns))  # the energy source is known now
                    last = gpu.last_energy_mj
                    if last is not None and energy < last:
                        self._counter_reset(gpu, last, energy, t_ns)
                    elif last is not None:
                        self._check_rise(gpu, last, energy, (mono_ns - gpu.last_energy_mono_ns) / 1e9, t_ns)
                    gpu.last_energy_mj, gpu.last_energy_ns, gpu.last_energy_mono_ns = energy, t_ns, mono_ns
                    parts.append(f"energy_mj={energy}i,energy_estimated=false")
            except pynvml.NVMLError as exc:
                if reading == "energy" and exc.value in _UNSUPPORTED and gpu.has_counter is None:
                    # No energy counter (before Volta): integrate power from now on.
                    gpu.has_counter = False
                    self.ctx.once(
                        (SOURCE, gpu.uuid, "energy"),
                        logging.INFO,
                        "NVML: GPU %d has no energy counter (%s); energy is integrated from power and marked estimated",
                        gpu.index,
                        exc,
                    )
                    self._integrate(gpu, parts, power_w, t_ns, mono_ns, True)
                    out.append(self._info_line(gpu, t_ns))
                elif self._classify(exc, gpu, t_ns):
                    if not self.initialised:  # NVML itself went away: the other GPUs wait for it too
                        break
                    continue
                # A reading that failed this once: the rest of this GPU's point still goes out.
            if parts:
                out.append(f"{gpu.power_key} {','.join(parts)} {t_ns}")
        return out

    @staticmethod
    def _integrate(gpu: _Gpu, parts: list[str], power_w: float | None, t_ns: int, mono_ns: int, emit: bool) -> None:
        """Energy from power by trapezoids between samples, for GPUs without the counter. Their widths are
        monotonic time: a wall-clock step of an hour added 303 Wh in one 0.1 s sample, or made the energy
        negative from then on (found by the agent audit)."""
        if power_w is None:
            return
        if gpu.last_power_w is not None:
            gpu.est_energy_mj += (gpu.last_power_w + power_w) * 0.5 * ((mono_ns - gpu.last_power_mono_ns) / 1e9) * 1000.0
        gpu.last_power_w, gpu.last_power_ns, gpu.last_power_mono_ns = power_w, t_ns, mono_ns
        if emit:
            parts.append(f"energy_mj={int(gpu.est_energy_mj)}i,energy_estimated=true")

    def _live_gpus(self):
        """The GPUs to sample now; stops early when NVML goes away mid-sample (re-initialised later)."""
        for gpu in self.gpus:
            if not self.initialised:
                return
            if not gpu.lost:
                yield gpu

    def sample_state(self) -> list[str]:
        if not self.initialised:
            return []
        out = []
        for gpu in self._live_gpus():
            t_ns = time.time_ns()
            h = gpu.handle
            fields: dict[str, Any] = {}
            util = self._opt(gpu, "utilization", pynvml.nvmlDeviceGetUtilizationRates, h)
            if util is not None:
                fields["util_gpu_pct"] = int(util.gpu)
                fields["util_memory_pct"] = int(util.memory)
            mem = self._opt(gpu, "memory", pynvml.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                fields["memory_used_bytes"] = int(mem.used)
                fields["memory_total_bytes"] = int(mem.total)
            fields["temperature_c"] = self._opt(gpu, "temperature", pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
            fields["clock_sm_mhz"] = self._opt(gpu, "clock_sm", pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM)
            fields["clock_mem_mhz"] = self._opt(gpu, "clock_mem", pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM)
            limit = self._opt(gpu, "power_limit", pynvml.nvmlDeviceGetEnforcedPowerLimit, h)
            if limit is not None:
                fields["power_limit_w"] = limit / 1000.0
                # A cap raised since set-up raises the bound (where the board's constraints were not read, the
                # bound is twice the cap then in force): else every counter reading at the new power would be
                # an impossible jump, and no job billed (review).
                gpu.max_power_w = max(gpu.max_power_w, 2.0 * limit / 1000.0)
            reasons = self._opt(gpu, "clock_event_reasons", _clock_event_reasons, h)
            if reasons is not None:
                fields["clock_event_reasons"] = int(reasons)
            if gpu.lost or not self.initialised:  # lost, or NVML went away, during this sample
                continue
            line = encode_line(gpu.state_key, fields, t_ns)
            if line:
                out.append(line)
        return out

    def sample_processes(self) -> list[str]:
        """The compute processes of every GPU (and their SM utilisation where the job ledger splits GPUs by
        it): the one reading per GPU and cycle that `gpu_process` and the job ledger (jobs.py) share."""
        if not self.initialised:
            return []
        out = []
        for gpu in self._live_gpus():
            t_ns = time.time_ns()
            procs = self._opt(gpu, "processes", pynvml.nvmlDeviceGetComputeRunningProcesses, gpu.handle)
            gpu.pids = None if procs is None else [p.pid for p in procs]
            # Failed, not unsupported (NO_PERMISSION on a MIG GPU to an unprivileged agent): the job ledger
            # must say so, not wait for a reading that never comes (found by the NVML audit).
            gpu.processes_failed = procs is None and "processes" not in gpu.unsupported and not gpu.lost
            gpu.util_by_pid = None
            if procs and self.process_utilisation and "process_utilization" not in gpu.unsupported:
                try:
                    gpu.util_by_pid = {u.pid: int(u.smUtil) for u in pynvml.nvmlDeviceGetProcessUtilization(gpu.handle, 0)}
                except pynvml.NVMLError as exc:
                    # Not every GPU or driver keeps per-process samples: the ledger then splits equally.
                    if exc.value in _UNSUPPORTED:
                        gpu.unsupported.add("process_utilization")
                    elif exc.value != pynvml.NVML_ERROR_NOT_FOUND:  # NOT_FOUND: no sample kept right now
                        self._classify(exc, gpu, t_ns)
            for p in procs or ():
                key = self.ctx.key("gpu_process", pid=str(p.pid), **gpu.tags)
                line = encode_line(key, {"used_memory_bytes": p.usedGpuMemory}, t_ns)
                if line:
                    out.append(line)
        return out

    def sample_info(self) -> list[str]:
        out = []
        t_ns = time.time_ns()
        for gpu in self.gpus:
            if gpu.info:
                out.append(self._info_line(gpu, t_ns))
        return out

    @staticmethod
    def _info_line(gpu: _Gpu, t_ns: int) -> str:
        energy_source = {True: "counter", False: "integrated", None: "unknown"}[gpu.has_counter]
        return encode_line(gpu.info_key, {**gpu.info, "energy_source": energy_source}, t_ns)

    def close(self) -> None:
        if self.initialised:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass
            self.initialised = False

    # -- errors, loss and recovery ---------------------------------------------------------------

    def _opt(self, gpu: _Gpu, what: str, fn, *args):
        """Call an NVML function whose failure leaves one field out; None when it fails."""
        if what in gpu.unsupported or gpu.lost:
            return None
        try:
            return fn(*args)
        except pynvml.NVMLError as exc:
            if exc.value in _UNSUPPORTED:
                gpu.unsupported.add(what)
                self.ctx.once((SOURCE, gpu.uuid, what), logging.INFO, "NVML: GPU %d: %s not supported, left out", gpu.index, what)
            else:
                self._classify(exc, gpu)
            return None

    def _field_error(self, gpu: _Gpu, what: str, code: int) -> None:
        if code in _LOST:
            self._mark_lost(gpu, time.time_ns(), f"GPU {gpu.index} lost ({what}: NVML error {code})")
            return
        # Counted every time, as every other failed reading is; logged once per field and code.
        self.ctx.errors += 1
        self.ctx.once((SOURCE, gpu.uuid, what, code), logging.WARNING, "NVML: GPU %d: %s failed with NVML error %d",
                      gpu.index, what, code)

    def _classify(self, exc: pynvml.NVMLError, gpu: _Gpu, t_ns: int | None = None) -> bool:
        """Handle an NVML error for one GPU; True when the GPU is now unusable."""
        code = exc.value
        if code in _LOST:
            self._mark_lost(gpu, t_ns or time.time_ns(), f"GPU {gpu.index} {gpu.uuid} lost: {exc}")
            return True
        if code in _LIBRARY or (code == pynvml.NVML_ERROR_UNINITIALIZED and not self.initialised):
            if not self.initialised:  # already handled: the other GPUs of the same sample fail too
                return True
            self.ctx.errors += 1
            log.error("NVML: library error (%s): re-initialising NVML with backoff", exc)
            self.ctx.event(SOURCE, "nvml_reinit", f"NVML library error: {exc}", t_ns or time.time_ns())
            self.close()
            self.initialised = False
            self._schedule_library_retry()
            return True
        self.ctx.errors += 1
        self.ctx.once((SOURCE, gpu.uuid, "error", code), logging.WARNING, "NVML: GPU %d: %s", gpu.index, exc)
        return False

    def _mark_lost(self, gpu: _Gpu, t_ns: int, message: str) -> None:
        if gpu.lost:
            return  # lost once (a sample's later reading of it failing too): its backoff is not doubled again
        gpu.lost = True
        self.ctx.errors += 1
        log.error("NVML: %s; the other GPUs go on, re-opening it with backoff", message)
        self.ctx.event(SOURCE, "gpu_lost", message, t_ns, gpu=str(gpu.index))
        gpu.backoff_s = min(self.cfg.retry_max_s, gpu.backoff_s * 2 if gpu.backoff_s else self.cfg.retry_initial_s)
        gpu.retry_at = time.monotonic() + gpu.backoff_s

    def _retry_gpu(self, gpu: _Gpu) -> None:
        t_ns = time.time_ns()
        try:
            fresh = self._setup_gpu(gpu.index, t_ns, lost=gpu)
            if fresh is None or fresh.lost:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        except pynvml.NVMLError as exc:
            if exc.value in _LIBRARY:
                self._classify(exc, gpu, t_ns)
                return
            gpu.backoff_s = min(self.cfg.retry_max_s, gpu.backoff_s * 2 or self.cfg.retry_initial_s)
            gpu.retry_at = time.monotonic() + gpu.backoff_s
            log.debug("NVML: GPU %d still unavailable (%s), next try in %.1f s", gpu.index, exc, gpu.backoff_s)
            return
        if gpu.uuid and fresh.uuid != gpu.uuid:
            self.ctx.event(SOURCE, "gpu_replaced", f"GPU {gpu.index} was {gpu.uuid}, now {fresh.uuid}", t_ns, gpu=str(gpu.index))
        idx = self.gpus.index(gpu)
        self.gpus[idx] = fresh
        if fresh.has_counter is False:
            self._integral_restarted(fresh, t_ns, "it was lost")
        log.warning("NVML: GPU %d %s is back", fresh.index, fresh.uuid)
        self.ctx.event(SOURCE, "gpu_recovered", f"GPU {fresh.index} {fresh.uuid} is back", t_ns, gpu=str(fresh.index))

    def _integral_restarted(self, gpu: _Gpu, t_ns: int, why: str) -> None:
        message = (f"GPU {gpu.index} has no energy counter: its energy integrated from power restarts from 0 mJ, as "
                   f"{why} and the time meanwhile has no power samples (not counted: its energy is not known)")
        log.warning("NVML: %s", message)
        self.ctx.event(SOURCE, "energy_counter_reset", message, t_ns, gpu=str(gpu.index))

    def _counter_reset(self, gpu: _Gpu, last: int, now: int, t_ns: int) -> None:
        gpu.breaks += 1
        message = (f"GPU {gpu.index} energy counter went back from {last} mJ to {now} mJ: restarted, as a driver reload "
                   "or a GPU reset restarts it")
        log.warning("NVML: %s", message)
        self.ctx.event(SOURCE, "energy_counter_reset", message, t_ns, gpu=str(gpu.index))

    def _check_rise(self, gpu: _Gpu, last: int, now: int, elapsed_s: float, t_ns: int) -> None:
        """A counter that rose more than the GPU can draw in the time since its last reading (its power bound
        over that time, monotonic, and COUNTER_SKEW_S more): an impossible jump, as the collector's own rule
        for GPU energy says. The reading is shipped as read (the collector judges its intervals); the job
        ledger counts no interval across it (`breaks`), where it would have billed the jump to the jobs
        (found by the agent audit: 1 GJ in 0.2 s on a 700 W board, shipped without a word)."""
        allowed_mj = gpu.max_power_w * (max(elapsed_s, 0.0) + COUNTER_SKEW_S) * 1000.0
        if now - last <= allowed_mj:
            return
        gpu.breaks += 1
        self.ctx.errors += 1
        mean_w = (now - last) / 1000.0 / max(elapsed_s, 1e-9)
        message = (f"GPU {gpu.index} energy counter rose {now - last} mJ in {elapsed_s:.3g} s ({mean_w:.6g} W on "
                   f"average), more than it can draw ({gpu.max_power_w:g} W): an impossible jump; no job is billed "
                   "for the interval across it")
        log.warning("NVML: %s", message)
        self.ctx.event(SOURCE, "energy_counter_jump", message, t_ns, gpu=str(gpu.index))

    def _schedule_library_retry(self) -> None:
        self._backoff_s = min(self.cfg.retry_max_s, self._backoff_s * 2 or self.cfg.retry_initial_s)
        self._retry_at = time.monotonic() + self._backoff_s

    def _retry_library(self) -> None:
        if time.monotonic() < self._retry_at:
            return
        previous = {g.uuid: g for g in self.gpus}
        try:
            self._init()
        except SourceUnavailable as exc:
            self._schedule_library_retry()
            log.debug("NVML still unavailable (%s); next try in %.1f s", exc, self._backoff_s)
            return
        self._backoff_s = 0.0
        t_ns = time.time_ns()
        for gpu in self.gpus:
            old = previous.get(gpu.uuid)
            if old is not None:
                # The same GPU: its energy goes on from where it was. The next counter reading is
                # compared with the last one before the outage, so a driver reload (the counter
                # restarts from 0) is reported as energy_counter_reset.
                # Without a counter, the integral restarts from 0 (see _setup_gpu).
                gpu.has_counter = old.has_counter
                gpu.last_energy_mj, gpu.last_energy_ns = old.last_energy_mj, old.last_energy_ns
                gpu.last_energy_mono_ns, gpu.breaks = old.last_energy_mono_ns, old.breaks
                if gpu.has_counter is False:
                    self._integral_restarted(gpu, t_ns, "NVML was away")
        # GPUs that did not come back, and new ones: said once each, with the GPU they are.
        now = {g.uuid for g in self.gpus}
        for old in previous.values():
            if old.uuid not in now and not old.lost:
                message = f"GPU {old.index} ({old.uuid}) is not among the GPUs NVML lists since it came back"
                log.warning("NVML: %s", message)
                self.ctx.event(SOURCE, "gpu_lost", message, t_ns, gpu=str(old.index))
        if previous:
            for gpu in self.gpus:
                if gpu.uuid not in previous:
                    message = f"GPU {gpu.index} ({gpu.uuid}) is new since NVML came back"
                    log.warning("NVML: %s", message)
                    self.ctx.event(SOURCE, "gpu_added", message, t_ns, gpu=str(gpu.index))
        self._energy_period = -1  # read the energy counters at the first sample
        log.warning("NVML: initialised, %d GPU(s)", len(self.gpus))
        self.ctx.event(SOURCE, "nvml_ready", f"NVML initialised, driver {self.driver_version}, {len(self.gpus)} GPU(s)", t_ns)


def _clock_event_reasons(handle) -> int:
    try:
        return pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
    except pynvml.NVMLError as exc:
        if exc.value != pynvml.NVML_ERROR_FUNCTION_NOT_FOUND:
            raise
    # Drivers before 535 only have the older name.
    return pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)


def _str(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
