"""A real Slurm (Debian slurm-wlm 22.05 with munge) on 127.0.0.1 for one test: munged, slurmctld, slurmd.

The configuration is written into a temporary directory with free ports; the daemons run in the
foreground (-D) and are stopped by their PIDs. munged is started only when none runs (it is shared,
as its socket path is fixed) and then left for the next test: it holds no state of ours.

With `gpus=N` the node has N GPUs through Slurm's own gres/gpu plugin (`GresTypes=gpu`,
`Gres=gpu:N`, gres.conf `Name=gpu File=...` with `AutoDetect=off`): there is no NVIDIA device here,
so each File is a character device node made with mknod in the temporary directory with /dev/null's
major/minor, which is all gres/gpu asks of a File (a device it can stat). slurmd then allocates
them to `--gres=gpu:K` jobs and sets SLURM_JOB_GPUS / CUDA_VISIBLE_DEVICES in the Prolog, Epilog
and job environments exactly as on a GPU node.

With `cgroup=True` the job's processes are tracked by proctrack/cgroup (cgroup/v1, the freezer
hierarchy this machine mounts at /sys/fs/cgroup/freezer): slurmstepd puts each job's tasks into
`slurm_<node>/uid_<uid>/job_<id>/step_<step>`. As that hierarchy is the machine's, shared with
other runs of the suite, each run's job ids start at a number of its own (FirstJobId from the PID).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from puewatch.benchmarks.servers import free_port

MUNGE_KEY = Path("/etc/munge/munge.key")


def _munged() -> None:
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    if not MUNGE_KEY.exists():
        subprocess.run(["/usr/sbin/mungekey", "--create"], check=True)
    shutil.chown(MUNGE_KEY, "munge", "munge")
    os.chmod(MUNGE_KEY, 0o400)
    Path("/run/munge").mkdir(exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"], check=True)


def _gres_conf(directory: Path, gpus: int) -> str:
    """gres.conf for `gpus` GPUs whose Files are character devices made here (no NVIDIA device exists)."""
    (directory / "dev").mkdir(exist_ok=True)
    null = os.stat("/dev/null").st_rdev
    lines = ["AutoDetect=off"]
    for i in range(gpus):
        dev = directory / "dev" / f"nvidia{i}"
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(os.major(null), os.minor(null)))
        lines.append(f"Name=gpu File={dev}")
    return "\n".join(lines) + "\n"


class Slurm:
    def __init__(self, directory: Path, prolog: str = "", epilog: str = "", gpus: int = 0, cgroup: bool = False) -> None:
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.procs: list[subprocess.Popen] = []
        for d in ("state", "log"):
            (directory / d).mkdir(parents=True, exist_ok=True)
        # slurmstepd binds a Unix socket in the spool directory (localhost_JOBID.STEPID), whose path
        # must be under 108 bytes: a test's directory can be longer (pytest-xdist adds popen-gwN/), and
        # a job then never starts ("Unix socket name exceeded maximum length"). A short one of its own.
        self.spool = Path(tempfile.mkdtemp(prefix="pw-slurmd-", dir="/tmp"))
        if gpus:
            (directory / "gres.conf").write_text(_gres_conf(directory, gpus))
        if cgroup:
            # Only tracking: no cores, memory or devices constrained (the devices here are /dev/null).
            (directory / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n")
        self.first_job = os.getpid() * 10 + 1  # below Slurm's largest job id (0x03ff0000) for any PID up to 2^22
        self.conf.write_text(
            f"""ClusterName=pw
SlurmctldHost=localhost
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={directory}/state
SlurmdSpoolDir={self.spool}
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/log/slurmctld.log
SlurmdLogFile={directory}/log/slurmd.log
FirstJobId={self.first_job}
ProctrackType={"proctrack/cgroup" if cgroup else "proctrack/linuxproc"}
TaskPlugin={"task/cgroup" if cgroup else "task/none"}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AuthType=auth/munge
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
{"GresTypes=gpu" if gpus else ""}
{"PrologFlags=Alloc" if prolog else ""}
{f"Prolog={prolog}" if prolog else ""}
{f"Epilog={epilog}" if epilog else ""}
NodeName=localhost CPUs=2 RealMemory=1000 {f"Gres=gpu:{gpus}" if gpus else ""} State=UNKNOWN
PartitionName=p Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""
        )
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> Slurm:
        _munged()
        for daemon in ("slurmctld", "slurmd"):
            log = open(self.dir / "log" / f"{daemon}.out", "ab")
            self.procs.append(subprocess.Popen([daemon, "-D", "-f", str(self.conf)], stdout=log, stderr=subprocess.STDOUT, env=self.env))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if out.stdout.strip() == "idle":
                return self
            time.sleep(0.3)
        raise AssertionError(f"slurmd never became idle: {self.logs()}")

    def sbatch(self, *args: str) -> str:
        out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=self.env)
        assert out.returncode == 0, f"sbatch {' '.join(args)}: {out.stderr.strip()}"
        return out.stdout.strip().split(";")[0]

    def logs(self) -> str:
        return "".join((self.dir / "log" / f).read_text(errors="replace")[-2000:] for f in os.listdir(self.dir / "log"))

    def _jobs(self) -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=self.env).stdout.strip()

    def stop(self) -> None:
        # Jobs first: a slurmstepd whose slurmd is gone outlives the test, retrying to report its job's end.
        if all(p.poll() is None for p in self.procs):
            subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True)
            deadline = time.monotonic() + 20
            while self._jobs() and time.monotonic() < deadline:
                time.sleep(0.3)
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(self.spool, ignore_errors=True)
