"""A real Slurm (Debian slurm-wlm 22.05 with munge) on 127.0.0.1 for one test: munged, slurmctld, slurmd.

The configuration is written into a temporary directory with free ports; the daemons run in the
foreground (-D) and are stopped by their PIDs. munged is started only when none runs (it is shared,
as its socket path is fixed) and then left for the next test: it holds no state of ours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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


class Slurm:
    def __init__(self, directory: Path, prolog: str = "", epilog: str = "", gpus: int = 2) -> None:
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.procs: list[subprocess.Popen] = []
        for d in ("state", "spool", "log"):
            (directory / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"""ClusterName=pw
SlurmctldHost=localhost
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/log/slurmctld.log
SlurmdLogFile={directory}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AuthType=auth/munge
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
{f"Prolog={prolog}" if prolog else ""}
{f"Epilog={epilog}" if epilog else ""}
NodeName=localhost CPUs=2 RealMemory=1000 State=UNKNOWN
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
        out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=self.env, check=True)
        return out.stdout.strip().split(";")[0]

    def logs(self) -> str:
        return "".join((self.dir / "log" / f).read_text(errors="replace")[-2000:] for f in os.listdir(self.dir / "log"))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
