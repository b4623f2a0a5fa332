"""Who holds each GPU, seen from the node: Slurm processes, the prolog/epilog hook, Kubernetes, a static map.

Each reader answers for one moment: GPU (index or UUID) -> the jobs holding it. The jobs source
(jobs.py) merges them, splits shared GPUs and writes the ledger; nothing here touches NVML.

- Slurm processes: a PID NVML lists on a GPU is followed to /proc/PID/cgroup (Slurm's
  `.../job_<id>/...` path, which the job cannot change) and /proc/PID/environ (SLURM_JOB_ID where the
  cgroup names none, and SLURM_JOB_ACCOUNT, the tenant). A process of no Slurm job is counted, not guessed.
- The hook: `puewatch agent job-start` in Slurm's Prolog writes one small JSON file per job
  (job, account, GPUs from SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES) into the state directory;
  `job-end` in the Epilog removes it. A GPU reserved but idle is still the job's.
- Kubernetes: the kubelet's PodResources API (v1 List) over its unix socket: namespace/pod per device
  ID of the GPU resources (the NVIDIA device plugin's IDs are GPU UUIDs; time-slicing replicas are
  `UUID::N`).
- A static map (TOML): `[[gpu]] gpu = 0 | "GPU-…", job = "…", tenant = "…"`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from puewatch.config import read_toml
from puewatch.errors import UserError
from puewatch.lineprotocol import has_control

# The longest job id or tenant taken (Slurm's account names are at most 64; a Kubernetes namespace/pod 317).
NAME_MAX = 512


def name_problem(text: object, what: str) -> str:
    """Why `text` cannot be a job id or tenant ("" where it can): one rule for every reader. They are names
    in the ledger, reports and statements: a string, with no control character (a newline cannot be written
    to the ledger at all: one tenant's made every later record of the node fail, so every job's energy went
    unattributed, silently; found by the job-holders audit), and not absurdly long."""
    if not isinstance(text, str):
        return f"{what} must be a string, got {type(text).__name__} {text!r}"
    if has_control(text):
        return f"{what} {text[:80]!r} contains a control character"
    if len(text) > NAME_MAX:
        return f"{what} is {len(text)} characters long (at most {NAME_MAX})"
    return ""


@dataclass(frozen=True)
class Holder:
    """A job holding a GPU at one moment."""

    job: str
    tenant: str
    source: str  # slurm | kubernetes | static | hook
    pids: tuple[int, ...] = ()  # its processes on the GPU (empty: reserved, nothing running)


# -- Slurm: processes followed to their job ------------------------------------------------------------

_CGROUP_JOB = re.compile(r"/job_(\d+)(?:/|$)")


@dataclass(frozen=True)
class SlurmProcess:
    job: str
    account: str
    refused: str = ""  # why the account its environment names cannot be a tenant (name_problem), if so


def slurm_job_of(pid: int, proc_root: str = "/proc") -> SlurmProcess | None:
    """The Slurm job a process belongs to, from its cgroup and environment; None when it is no job's.

    Raises OSError when the process cannot be read (gone, or not permitted).
    """
    base = Path(proc_root) / str(pid)
    job = ""
    for line in (base / "cgroup").read_text().splitlines():
        m = _CGROUP_JOB.search(line.split(":", 2)[-1])
        if m:
            job = m.group(1)
            break
    env = _environ(base / "environ")
    # The cgroup wins: a process can set its own environment, not its cgroup. The environment is
    # still read for the account, which only it carries. A job id is Slurm's, digits (an environment's
    # other value is no job: the process is counted as of none).
    env_job = env.get("SLURM_JOB_ID", "")
    job = job or (env_job if env_job.isdigit() and env_job.isascii() else "")
    if not job:
        return None
    account = env.get("SLURM_JOB_ACCOUNT", "") if env.get("SLURM_JOB_ID", job) == job else ""
    why = name_problem(account, "SLURM_JOB_ACCOUNT")
    return SlurmProcess(job, "", why) if why else SlurmProcess(job, account)


def _environ(path: Path) -> dict[str, str]:
    out = {}
    for item in path.read_bytes().split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


# -- the prolog/epilog hook ---------------------------------------------------------------------------

def hook_gpus(env: dict[str, str]) -> list[str]:
    """The GPUs Slurm gave the job: SLURM_JOB_GPUS (node-wide indexes), else CUDA_VISIBLE_DEVICES."""
    raw = env.get("SLURM_JOB_GPUS") or env.get("CUDA_VISIBLE_DEVICES") or ""
    return [g.strip() for g in raw.split(",") if g.strip()]


def hook_start(state_dir: str | Path, env: dict[str, str]) -> Path:
    """Record the job of a Slurm Prolog's environment and its GPUs; returns the state file written."""
    job = env.get("SLURM_JOB_ID", "").strip()
    if not job.isdigit():
        raise UserError(f"job-start: SLURM_JOB_ID must be a job id, got {job!r} (run it from Slurm's Prolog)")
    state = Path(state_dir)
    # Writable by its owner alone, whatever the Prolog's umask (000 made both world-writable, and any user
    # could then charge GPUs to any job): the agent trusts no state file others may write (read_hook_state).
    state.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(state, state.stat().st_mode & 0o7755)
    record = {"job": job, "tenant": env.get("SLURM_JOB_ACCOUNT", ""), "gpus": hook_gpus(env)}
    path = state / f"{job}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(json.dumps(record))
    os.replace(tmp, path)  # the agent never reads half a file
    return path


def hook_end(state_dir: str | Path, env: dict[str, str]) -> bool:
    """Forget the job of a Slurm Epilog's environment; False when it had no state file."""
    job = env.get("SLURM_JOB_ID", "").strip()
    if not job.isdigit():
        raise UserError(f"job-end: SLURM_JOB_ID must be a job id, got {job!r} (run it from Slurm's Epilog)")
    try:
        (Path(state_dir) / f"{job}.json").unlink()
    except FileNotFoundError:
        return False
    return True


def _untrusted(st: os.stat_result) -> str | None:
    """Why a hook state file or its directory is not to be trusted: others may write it (group or world
    writable, or owned by a user who is neither root nor the agent's), so any user could charge a GPU's
    energy to any job and tenant. None where only root or the agent can."""
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {st.st_mode & 0o777:04o})"
    if st.st_uid not in (0, os.geteuid()):
        return f"owned by uid {st.st_uid}, neither root nor the agent's"
    return None


def read_hook_state(state_dir: str | Path) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """GPU (index or UUID as Slurm gave it) -> [(job, tenant)], and the files left out: "name: why" (unreadable,
    not a record, or one others may write: `_untrusted`; a directory others may write leaves out every file)."""
    out: dict[str, list[tuple[str, str]]] = {}
    bad: list[str] = []
    try:
        names = sorted(os.listdir(state_dir))
        why_dir = _untrusted(os.stat(state_dir))
    except FileNotFoundError:
        return out, bad
    for name in names:
        if not name.endswith(".json"):
            continue
        if why_dir:
            bad.append(f"{name}: its directory is {why_dir}")
            continue
        try:
            path = Path(state_dir) / name
            why = _untrusted(os.stat(path))
            if why:
                bad.append(f"{name}: {why}")
                continue
            record = json.loads(path.read_text())
        except FileNotFoundError:
            continue  # the epilog removed it meanwhile
        except (OSError, ValueError) as exc:
            bad.append(f"{name}: {exc.strerror if isinstance(exc, OSError) else 'not JSON'}")
            continue
        why = _hook_record_problem(name, record)
        if why:
            bad.append(f"{name}: not a job record: {why}")
            continue
        for gpu in record["gpus"]:
            out.setdefault(gpu, []).append((record["job"], record.get("tenant", "")))
    return out, bad


def _hook_record_problem(name: str, record: object) -> str:
    """Why a hook state file's content is not the record `hook_start` writes ("" where it is): its job's
    id in digits, the file's own name (`<job>.json`: another job's record under a job's name took that
    job's place), a tenant, and the GPUs as a list of ids (a string "10" was read as GPUs 1 and 0;
    found by the job-holders audit)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    job, gpus = record.get("job"), record.get("gpus")
    if not (isinstance(job, str) and job.isdigit() and job.isascii()):
        return f"job must be a Slurm job id (digits), got {job!r}"
    if name != f"{job}.json":
        return f"it names job {job}, not the job of its name"
    why = name_problem(record.get("tenant", ""), "tenant")
    if why:
        return why
    if not isinstance(gpus, list) or not all(isinstance(g, str) and g and g == g.strip() for g in gpus):
        return f"gpus must be a list of GPU ids (strings), got {gpus!r}"
    return ""


# -- a static map --------------------------------------------------------------------------------------

def read_static_map(path: str | Path) -> dict[str, tuple[str, str]]:
    """GPU (index as text, or UUID) -> (job, tenant), from `[[gpu]]` tables; a one-line error when malformed."""
    doc = read_toml(path, "static job map")
    unknown = set(doc) - {"gpu"}
    if unknown:
        raise UserError(f"{path}: unknown key {sorted(unknown)[0]!r}; the static job map has only [[gpu]] tables")
    out: dict[str, tuple[str, str]] = {}
    for i, entry in enumerate(doc.get("gpu", [])):
        where = f"{path}: gpu[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: must be a table with gpu, job and tenant")
        extra = set(entry) - {"gpu", "job", "tenant"}
        if extra:
            raise UserError(f"{where}: unknown key {sorted(extra)[0]!r} (allowed: gpu, job, tenant)")
        gpu, job, tenant = entry.get("gpu"), entry.get("job"), entry.get("tenant", "")
        if isinstance(gpu, bool) or not (isinstance(gpu, int) and gpu >= 0 or isinstance(gpu, str) and gpu.startswith("GPU-")):
            raise UserError(f"{where}.gpu: must be a GPU index (0, 1, ...) or UUID (\"GPU-...\"), got {gpu!r}")
        if not isinstance(job, str) or not job:
            raise UserError(f"{where}.job: must be a non-empty string, got {job!r}")
        for key, value in (("job", job), ("tenant", tenant)):
            why = name_problem(value, "it")
            if why:
                raise UserError(f"{where}.{key}: {why.removeprefix('it ')}")
        if str(gpu) in out:
            raise UserError(f"{where}.gpu: GPU {gpu} is mapped twice")
        out[str(gpu)] = (job, tenant)
    return out


# -- Kubernetes: the kubelet's PodResources API ----------------------------------------------------------

class PodResources:
    """A client of the kubelet's PodResources v1 API (List) over its unix socket."""

    def __init__(self, socket_path: str, resource_names: tuple[str, ...], timeout_s: float) -> None:
        try:
            import grpc

            from puewatch.agent.sources import podresources_v1_pb2 as pb
            from puewatch.agent.sources import podresources_v1_pb2_grpc as pb_grpc
        except ImportError as exc:
            raise UserError(
                f"[sources.jobs] kubernetes needs grpcio and protobuf ({exc.name} is missing): "
                "pip install 'puewatch[kubernetes]'"
            ) from None
        self._grpc, self._pb = grpc, pb
        self.socket_path = socket_path
        self.resource_names = resource_names
        self.timeout_s = timeout_s
        self._stub_class = pb_grpc.PodResourcesListerStub
        self._connect()

    def _connect(self) -> None:
        self._channel = self._grpc.insecure_channel(f"unix://{self.socket_path}")
        self._stub = self._stub_class(self._channel)

    def gpu_pods(self) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[str]]]:
        """(Device ID -> [(namespace/pod, namespace)], unlisted); time-slicing replicas (`UUID::N`) under their
        UUID. Devices of a resource that `resource_names` does not list but whose IDs are NVIDIA GPU or MIG UUIDs
        are not taken (which resources are GPUs is the configuration's to say), and are named in `unlisted`:
        resource name -> the pods holding them (a pod on `nvidia.com/gpu.shared` or a MIG resource was billed to
        nobody, unsaid: found by the Kubernetes audit).

        Raises OSError with the gRPC status when the kubelet does not answer.
        """
        try:
            reply = self._stub.List(self._pb.ListPodResourcesRequest(), timeout=self.timeout_s)
        except self._grpc.RpcError as exc:
            # A new channel for the next call: gRPC's own reconnect backs off up to 120 s, blind time after the
            # kubelet is back (10 s after a one-minute restart: found by the Kubernetes audit).
            self._channel.close()
            self._connect()
            raise OSError(f"kubelet PodResources List on {self.socket_path}: {exc.code().name}: {exc.details()}") from None
        out: dict[str, list[tuple[str, str]]] = {}
        unlisted: dict[str, list[str]] = {}
        for pod in reply.pod_resources:
            holder = (f"{pod.namespace}/{pod.name}", pod.namespace)
            for container in pod.containers:
                for devices in container.devices:
                    if devices.resource_name not in self.resource_names:
                        if any(d.startswith(("GPU-", "MIG-")) for d in devices.device_ids):
                            held_by = unlisted.setdefault(devices.resource_name, [])
                            if holder[0] not in held_by:
                                held_by.append(holder[0])
                        continue
                    for device_id in devices.device_ids:
                        held = out.setdefault(device_id.split("::", 1)[0], [])
                        if holder not in held:
                            held.append(holder)
        return out, unlisted

    def close(self) -> None:
        self._channel.close()
