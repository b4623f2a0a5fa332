"""The job ledger (issue 16) against real components.

- Slurm: real munged, slurmctld and slurmd (Debian slurm-wlm 22.05) on 127.0.0.1 (tests/slurm.py). Jobs
  are submitted with sbatch; the fake NVML library (the only fake: no GPU here) lists their real PIDs
  as compute processes (FAKE_NVML_PIDS). All of Slurm's parts the ledger relies on run for real:
  - GPUs allocated by Slurm's gres/gpu plugin (`GresTypes=gpu`, `Gres=gpu:3`, gres.conf with
    `AutoDetect=off`): with no NVIDIA device here, gres.conf's Files are character device nodes the
    test makes with mknod (/dev/null's major/minor), which slurmd accepts; jobs ask `--gres=gpu:K`
    and slurmd sets SLURM_JOB_GPUS/CUDA_VISIBLE_DEVICES in their environment and in the Prolog's.
  - The operator guide's own hook script as Prolog/Epilog (`PrologFlags=Alloc`), running
    `puewatch agent job-start`/`job-end`; the guide's slurm.conf settings are checked against the
    configuration the test runs.
  - proctrack/cgroup (cgroup/v1: this machine mounts a v1 freezer hierarchy slurmd can write), so a
    job's processes are in its real `job_<id>` cgroup, and the agent finds a job from it even when
    the process's environment names no job; the environment path (SLURM_JOB_ID, SLURM_JOB_ACCOUNT
    in /proc/PID/environ) is tested with plain processes.
  Not exercised: device confinement (ConstrainDevices; the "GPUs" are /dev/null) and slurmd's NVML
  autodetection (AutoDetect=nvml needs the real library).
- Kubernetes: kubelet cannot run here, so the PodResources API is answered over a real unix socket by
  a real gRPC server generated from kubelet's published proto (agent/sources/podresources_v1_pb2*.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

import puewatch.agent.sources.jobs as jobs_source

from agent_support import Receiver, nvml_env, parse_line, start_agent, wait_for, wait_log, write_config
from puewatch.agent.sources import jobholders, podresources_v1_pb2 as pb, podresources_v1_pb2_grpc as pb_grpc
from puewatch.agent.sources.jobs import split
from puewatch.core.schema import JOB_LEDGER, JOB_LEDGER_FIELDS, JOB_LEDGER_STATS
from puewatch.errors import UserError

sys.path.insert(0, str(Path(__file__).parent.parent))
from slurm import Slurm  # noqa: E402

PUEWATCH = str(Path(sys.executable).with_name("puewatch"))
UUID = "GPU-fa4e0000-0000-4000-8000-{:012x}"  # the fake library's UUIDs
POWER_MW = {0: 300000, 1: 301000, 2: 302000}  # the fake library's default power per GPU: energy is exact


def ledger(rx: Receiver) -> list[tuple[dict, dict]]:
    out = []
    for line in rx.lines():
        m, tags, fields, _ = parse_line(line)
        if m == JOB_LEDGER:
            assert set(fields) == set(JOB_LEDGER_FIELDS), fields
            out.append((tags, fields))
    return out


def test_the_ledger_does_not_read_nvml_itself():
    """The nvml source is the one NVML reader: the ledger module does not even import the binding."""
    assert not hasattr(jobs_source, "pynvml")


def test_split_rule():
    a = jobholders.Holder("1", "t", "slurm", (10,))
    b = jobholders.Holder("2", "t", "slurm", (20, 21))
    idle = jobholders.Holder("3", "t", "hook")
    assert split([], None) == {}
    assert split([idle], None) == {"3": 1.0}
    assert split([a, b], {10: 30, 20: 50, 21: 10}) == {"1": 30 / 90, "2": 60 / 90}
    assert split([a, b, idle], None) == {"1": 1 / 3, "2": 1 / 3, "3": 1 / 3}  # no utilisation: equally
    assert split([a, b], {99: 50}) == {"1": 0.5, "2": 0.5}  # none of theirs sampled: equally
    # A pod (whose processes the kubelet does not name) beside a Slurm job: the processes no holder claims are
    # the pod's (found by the Kubernetes audit: the job got the whole GPU for its 10 %).
    pod = jobholders.Holder("ns/p", "ns", "kubernetes")
    assert split([a, pod], {10: 10, 30: 90}, frozenset({"ns/p"})) == {"1": 0.1, "ns/p": 0.9}
    assert split([a, pod], {10: 10, 30: 90}) == {"1": 1.0, "ns/p": 0.0}  # (not known to be unlinked: as before)


def _exec_done(proc: subprocess.Popen, name: bytes = b"sleep") -> None:
    """Wait (up to 10 s) until the child runs its own program: its environment is the new one only then."""
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(name):
        assert time.monotonic() < deadline, "the child did not exec within 10 s"
        time.sleep(0.01)


def test_cgroup_path_names_the_job(tmp_path):
    """A real process moved into a real cgroup named as Slurm's cgroup plugin names it; its environment says otherwise."""
    # A parent of this run's own (removed at the end): runs of the suite at once must not share one.
    group = Path(f"/sys/fs/cgroup/pids/puewatch_test_{os.getpid()}") / f"job_{os.getpid()}"
    group.mkdir(parents=True)
    child = subprocess.Popen(["sleep", "30"], env={"SLURM_JOB_ID": "7", "SLURM_JOB_ACCOUNT": "acme"})
    try:
        _exec_done(child)
        (group / "cgroup.procs").write_text(str(child.pid))
        found = jobholders.slurm_job_of(child.pid)
        assert found == jobholders.SlurmProcess(str(os.getpid()), "")  # the cgroup wins; the account was another job's
        plain = subprocess.Popen(["sleep", "30"], env={"SLURM_JOB_ID": "7", "SLURM_JOB_ACCOUNT": "acme"})
        try:
            _exec_done(plain)
            assert jobholders.slurm_job_of(plain.pid) == jobholders.SlurmProcess("7", "acme")
        finally:
            plain.kill()
            plain.wait()
    finally:
        child.kill()
        child.wait()
        (Path("/sys/fs/cgroup/pids") / "cgroup.procs").write_text(str(os.getpid()))
        group.rmdir()
        group.parent.rmdir()


# The ledger reads NVML through the nvml source: its energy at every power sample, processes twice a second.
NVML_TABLE = "[sources.nvml]\ninterval_s = 0.05\nenergy_interval_s = 0.05\nprocess_interval_s = 0.5\n\n"


def _agent(procs, tmp_path, fake_nvml_dir, rx, jobs_table, gpus=2, pids="", script_lines=""):
    """An agent over the fake NVML; `pids` are the GPUs' processes from its first process sample (a test that
    writes them later has the samples before that count the GPU as held by no one); `script_lines`, more of
    the fake library's script (agent/fake_nvml/fake_nvml.c)."""
    script = tmp_path / "gpus.txt"
    script.write_text(f"count {gpus}\n{script_lines}")
    env = nvml_env(fake_nvml_dir, script, tmp_path / "nvml.log")
    env["FAKE_NVML_PIDS"] = str(tmp_path / "pids.txt")
    (tmp_path / "pids.txt").write_text(pids)
    cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool", NVML_TABLE + jobs_table)
    agent = start_agent(procs, cfg, tmp_path / "agent.log", env)
    wait_log(agent, "jobs:")
    return agent


GUIDE = Path(__file__).parent.parent.parent / "docs" / "operator-guide.md"
GUIDE_HOOK = "/usr/local/sbin/puewatch-slurm-hook"


def _guide_hook(tmp_path: Path, state: Path) -> tuple[Path, list[str]]:
    """The operator guide's Prolog/Epilog script (puewatch and the state directory in their test places) and its
    slurm.conf settings (the backquoted `Key=value` of the paragraph after the script)."""
    text = GUIDE.read_text()
    script = next(b for b in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M) if "SLURM_SCRIPT_CONTEXT" in b)
    hook = tmp_path / "puewatch-slurm-hook"
    hook.write_text(script.replace("/opt/puewatch/bin/puewatch", PUEWATCH).replace("/run/puewatch/jobs", str(state)))
    hook.chmod(0o755)
    after = text[text.index(script) + len(script):]
    paragraph = after[after.index("slurm.conf"):].split("\n\n")[0]
    return hook, [s.replace(GUIDE_HOOK, str(hook)) for s in re.findall(r"`([A-Z][A-Za-z]*=[^`]+)`", paragraph)]


def test_slurm_gres_jobs_cgroups_and_hook_in_the_ledger(tmp_path, procs, fake_nvml_dir):
    """Slurm allocates the node's three GPUs through gres/gpu: `train` asks for one, `pair` for two. The
    operator guide's hook script, as Slurm's Prolog/Epilog, records what Slurm gave each job, and the ledger
    gives each job exactly those GPUs. `stray`, given no GPU, runs on pair's second GPU anyway (devices are
    not constrained): that GPU is shared by stray's process and pair's reservation. train's process drops
    SLURM_JOB_ID from its environment: the agent finds its job from the cgroup Slurm put it in."""
    state = tmp_path / "hook"
    hook, settings = _guide_hook(tmp_path, state)
    slurm = Slurm(tmp_path / "slurm", prolog=str(hook), epilog=str(hook), gpus=3, cgroup=True)
    lines = slurm.conf.read_text().splitlines()
    # The guide's slurm.conf settings are those this Slurm runs with (the node's GPU count is the guide's example).
    node = next(ln for ln in lines if ln.startswith("NodeName="))
    assert {s.split("=")[0] for s in settings} >= {"Prolog", "Epilog", "PrologFlags", "GresTypes", "Gres"}, settings
    for s in settings:
        assert (s.split(":")[0] + ":" in node) if s.startswith("Gres=") else s in lines, (s, lines)
    rx = Receiver(procs, tmp_path).start()
    try:
        slurm.start()
        out = {a: tmp_path / f"{a}.out" for a in ("train", "pair", "stray")}
        body = "echo $$ $SLURM_JOB_GPUS > {out}.tmp; mv {out}.tmp {out}; exec {env}sleep 40"
        jobs = {
            "train": slurm.sbatch("-A", "train", "--gres=gpu:1", "-o", "/dev/null", "--wrap", body.format(out=out["train"], env="env -u SLURM_JOB_ID ")),
            "pair": slurm.sbatch("-A", "pair", "--gres=gpu:2", "-o", "/dev/null", "--wrap", body.format(out=out["pair"], env="")),
            "stray": slurm.sbatch("-A", "stray", "-o", "/dev/null", "--wrap", body.format(out=out["stray"], env="")),
        }
        seen = {a: wait_for(lambda p=p: p.exists() and p.read_text().split(), 20, f"{a} running: {slurm.logs()}") for a, p in out.items()}
        pids = {a: int(v[0]) for a, v in seen.items()}
        # The GPUs Slurm gave each job, as the job itself sees them (SLURM_JOB_GPUS in its environment).
        gpus = {a: v[1].split(",") if len(v) > 1 else [] for a, v in seen.items()}
        assert len(gpus["train"]) == 1 and len(gpus["pair"]) == 2 and gpus["stray"] == []
        assert sorted(gpus["train"] + gpus["pair"]) == ["0", "1", "2"]
        # The Prolog received the same GPUs: the hook's records.
        for a, job in jobs.items():
            assert json.loads((state / f"{job}.json").read_text()) == {"job": job, "tenant": a, "gpus": gpus[a]}
        # proctrack/cgroup put train's process in its job's cgroup; its environment no longer names the job.
        assert f"/job_{jobs['train']}/" in Path(f"/proc/{pids['train']}/cgroup").read_text()
        assert b"SLURM_JOB_ID=" not in Path(f"/proc/{pids['train']}/environ").read_bytes()
        assert jobholders.slurm_job_of(pids["train"]) == jobholders.SlurmProcess(jobs["train"], "train")
        agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                       f'[sources.jobs]\ninterval_s = 2.0\nsample_interval_s = 0.5\nhook_state_dir = "{state}"\n'
                       f'host_estimate_w = 360.0\n', gpus=3)
        (tmp_path / "pids.txt").write_text(
            f"{gpus['train'][0]} {pids['train']}\n{gpus['pair'][0]} {pids['pair']}\n{gpus['pair'][1]} {pids['stray']}\n")
        wait_for(lambda: len({f["job"] for _, f in ledger(rx)}) >= 3, 20, f"records of the three jobs {jobs} {pids}")
        time.sleep(2.5)  # a full interval with all three
        subprocess.run(["scancel", jobs["pair"]], env=slurm.env, check=True)
        wait_for(lambda: not (state / f"{jobs['pair']}.json").exists(), 20, "the epilog's job-end")
        assert agent.stop() == 0, agent.output()
    finally:
        slurm.stop()
    records = ledger(rx)
    assert {f["job"] for _, f in records} == set(jobs.values())
    full = [r for r in records if r[1]["interval_s"] > 1.9]
    for tags, f in full:
        assert tags["node"] == "testnode"
        assert f["source"] in ("slurm", "hook") and f["gpu_model"] == "NVIDIA H100 80GB HBM3"
        assert f["gpu_wh_estimated"] is False and f["host_estimated"] is True and f["host_unknown"] is False
        # The fake GPU's energy is exactly power x time: the share of it over the interval.
        exact_wh = POWER_MW[int(tags["gpu"])] * f["interval_s"] / 3.6e6
        assert f["gpu_wh"] == pytest.approx(exact_wh * f["share"], rel=0.02)
        assert f["host_wh"] == pytest.approx(360.0 * f["interval_s"] / 3600 / 3 * f["share"], rel=1e-6)
    # Each job's GPUs in the ledger are exactly those Slurm allocated (stray: the one it runs on).
    held = {a: {t["gpu"] for t, f in records if f["job"] == job} for a, job in jobs.items()}
    assert held == {"train": set(gpus["train"]), "pair": set(gpus["pair"]), "stray": {gpus["pair"][1]}}
    assert all(f["tenant"] == a for a, job in jobs.items() for _, f in records if f["job"] == job)
    train = [f for t, f in full if f["job"] == jobs["train"]]
    assert train and all(f["source"] == "slurm" and f["share"] == 1.0 and not f["shared"] and not f["reserved_idle"] for f in train)
    on_first = [f for t, f in full if t["gpu"] == gpus["pair"][0]]
    assert on_first and all(f["job"] == jobs["pair"] and f["source"] == "slurm" and f["share"] == 1.0 and not f["reserved_idle"]
                            for f in on_first)
    # pair's second GPU: its reservation (the hook, no process of its own) and stray's process share it equally.
    both: dict[float, dict[str, dict]] = {}
    for t, f in full:
        if t["gpu"] == gpus["pair"][1]:
            both.setdefault(f["interval_s"], {})[f["job"]] = f
    shared = [v for v in both.values() if len(v) == 2]
    assert shared, both
    for pair in shared:
        reserved, stray = pair[jobs["pair"]], pair[jobs["stray"]]
        assert reserved["shared"] and stray["shared"] and reserved["reserved_idle"] and not stray["reserved_idle"]
        assert reserved["source"] == "hook" and stray["source"] == "slurm"
        assert reserved["share"] + stray["share"] == pytest.approx(1.0)
    # Equal where both held the whole interval (the 2.5 s above holds one); in an interval in which stray's
    # process appeared (the fake NVML lists it once pids.txt is written) or pair's reservation ended, each
    # has its part of the samples (a loaded machine once gave 9/14 and 5/14).
    assert any(p[jobs["pair"]]["share"] == p[jobs["stray"]]["share"] == pytest.approx(0.5) for p in shared), shared
    _one_energy_reading_per_cycle(rx, tmp_path / "nvml.log")


def test_processes_split_by_their_utilisation_from_the_nvml_sources_sample(tmp_path, procs, fake_nvml_dir):
    """Two real processes of two Slurm jobs (their environment says which) on GPU 0, with SM utilisation 75 and
    25 from the fake library: the nvml source's process sample gives both, the ledger splits GPU 0 by them.
    A third process, of no job, on GPU 1 is counted (job_ledger_stats), never dropped silently. The host
    share comes from the host source's RAPL readings of a fixture tree (counters at rest: 0 Wh, measured)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    a = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "701", "SLURM_JOB_ACCOUNT": "alpha"})
    b = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "702", "SLURM_JOB_ACCOUNT": "beta"})
    stray = subprocess.Popen(["sleep", "60"], env=env)
    rapl = tmp_path / "sys" / "class" / "powercap"
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "dram"), ("intel-rapl:1", "psys")):
        (rapl / zone).mkdir(parents=True)
        for f, v in (("name", name), ("energy_uj", "1000"), ("max_energy_range_uj", "262143328850")):
            (rapl / zone / f).write_text(v + "\n")
    rx = Receiver(procs, tmp_path).start()
    try:
        agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                       f'[sources.host]\ninterval_s = 0.25\nsysfs_root = "{tmp_path}/sys"\n'
                       f'[sources.jobs]\ninterval_s = 1.0\nsample_interval_s = 0.25\nhook_state_dir = ""\n'
                       f'host_estimate_w = 100.0\n')
        (tmp_path / "pids.txt").write_text(f"0 {a.pid} 75\n0 {b.pid} 25\n1 {stray.pid}\n")
        wait_for(lambda: len([r for r in ledger(rx) if r[1]["interval_s"] > 0.9 and r[1]["share"] == pytest.approx(0.75)]) >= 2,
                 20, "intervals split 75/25")
        assert agent.stop() == 0, agent.output()
    finally:
        for p in (a, b, stray):
            p.kill()
            p.wait()
    split_records = [(t, f) for t, f in ledger(rx) if f["interval_s"] > 0.9 and f["share"] in (pytest.approx(0.75), pytest.approx(0.25))]
    seen: set[str] = set()
    for t, f in split_records:
        assert t["gpu"] == "0" and f["shared"] and f["source"] == "slurm" and not f["reserved_idle"]
        tenant, share = {"701": ("alpha", 0.75), "702": ("beta", 0.25)}[f["job"]]
        assert f["tenant"] == tenant and f["share"] == pytest.approx(share)
        # RAPL readable (the estimate is only its fallback): measured, and the counters did not move. Only a job's
        # first interval may be estimated: on a loaded machine it can begin before the host source's first RAPL
        # reading, and then it is flagged host_estimated, as the policy says (agent/sources/jobs.py); the lonely
        # test run met it once.
        if f["job"] in seen or not f["host_estimated"]:
            assert f["host_estimated"] is False and f["host_unknown"] is False and f["host_wh"] == 0.0, f
        seen.add(f["job"])
    assert {f["job"] for _, f in split_records} == {"701", "702"}
    assert sum(not f["host_estimated"] for _, f in split_records) >= 2  # measured intervals, not only estimates
    assert not [f for t, f in ledger(rx) if t["gpu"] == "1"]  # no job holds GPU 1
    stats = [(tags, f) for m, tags, f, _ in map(parse_line, rx.lines()) if m == JOB_LEDGER_STATS]
    assert stats and all(f["unattributed_processes"] == 1 and f["interval_s"] > 0 for _, f in stats)
    assert all(tags == {"node": "testnode"} for tags, _ in stats)
    _one_energy_reading_per_cycle(rx, tmp_path / "nvml.log")


class _Kubelet(pb_grpc.PodResourcesListerServicer):
    def __init__(self, pods):
        self.pods = pods

    def List(self, request, context):
        return pb.ListPodResourcesResponse(pod_resources=self.pods)


def _kubelet(sock: Path, pods) -> grpc.Server:
    """A real gRPC server, generated from kubelet's published proto, answering List with `pods` on `sock`."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_PodResourcesListerServicer_to_server(_Kubelet(pods), server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    return server


def test_kubernetes_pod_resources_and_static_map(tmp_path, procs, fake_nvml_dir):
    """kubelet cannot run here: a real gRPC server generated from kubelet's published proto answers List on a real unix socket."""
    sock = tmp_path / "kubelet.sock"
    pods = [
        pb.PodResources(name="trainer-0", namespace="team-a", containers=[pb.ContainerResources(
            name="main", devices=[pb.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[UUID.format(0)]),
                                  pb.ContainerDevices(resource_name="example.com/nic", device_ids=[UUID.format(1)])])]),
        # Time-slicing: two pods on replicas of GPU 1.
        *(pb.PodResources(name=f"notebook-{i}", namespace="team-b", containers=[pb.ContainerResources(
            name="nb", devices=[pb.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[f"{UUID.format(1)}::{i}"])])])
          for i in (1, 2)),
    ]
    server = _kubelet(sock, pods)
    static = tmp_path / "static.toml"
    static.write_text('[[gpu]]\ngpu = 2\njob = "render-farm"\ntenant = "studio"\n')
    rx = Receiver(procs, tmp_path).start()
    try:
        agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                       f'[sources.jobs]\ninterval_s = 1.0\nsample_interval_s = 0.25\nslurm = false\nhook_state_dir = ""\n'
                       f'kubernetes = true\nkubelet_socket = "{sock}"\nstatic_map = "{static}"\n', gpus=3)
        wait_for(lambda: len([r for r in ledger(rx) if r[1]["interval_s"] > 0.9]) >= 8, 20, "two full intervals")
        assert agent.stop() == 0, agent.output()
    finally:
        server.stop(0)
    full = [(t, f) for t, f in ledger(rx) if f["interval_s"] > 0.9]
    seen = {(t["gpu"], t["slot"], f["job"], f["tenant"], f["source"], f["share"], f["shared"], f["reserved_idle"]) for t, f in full}
    assert seen == {
        ("0", "0", "team-a/trainer-0", "team-a", "kubernetes", 1.0, False, True),
        ("1", "0", "team-b/notebook-1", "team-b", "kubernetes", 0.5, True, True),
        ("1", "1", "team-b/notebook-2", "team-b", "kubernetes", 0.5, True, True),
        ("2", "0", "render-farm", "studio", "static", 1.0, False, True),
    }
    for t, f in full:
        # No RAPL, no estimate configured: the host share is unknown, never an estimate of 0.
        assert f["host_wh"] == 0.0 and f["host_unknown"] is True and f["host_estimated"] is False
    _one_energy_reading_per_cycle(rx, tmp_path / "nvml.log")


def _one_energy_reading_per_cycle(rx: Receiver, nvml_log: Path) -> None:
    """The ledger reads no energy counter itself: every reading the fake library returned is an `energy_mj`
    the nvml source sent, and every record's energy is the difference of two of those readings."""
    readings: dict[str, list[int]] = {}
    for line in nvml_log.read_text().splitlines():
        _e, gpu, mj = line.split()
        readings.setdefault(gpu, []).append(int(mj))
    sent: dict[str, list[int]] = {}
    for line in rx.lines():
        m, tags, fields, _ = parse_line(line)
        if m == "gpu_power" and "energy_mj" in fields:
            sent.setdefault(tags["gpu"], []).append(fields["energy_mj"])
    for gpu, values in readings.items():
        assert sorted(sent.get(gpu, [])) == sorted(values)[:len(sent.get(gpu, []))]  # the last may be unsent at stop
        assert len(values) - len(sent.get(gpu, [])) <= 2
    by_slot: dict[tuple[str, str], list[dict]] = {}
    for tags, f in ledger(rx):
        by_slot.setdefault((tags["gpu"], tags["slot"]), []).append(f)
    checked = 0
    for (gpu, _slot), records in by_slot.items():
        diffs = {b - a for a, b in zip(readings[gpu], readings[gpu][1:])}
        cumulative = {v - readings[gpu][0] for v in readings[gpu]}
        for f in records:
            mj = f["gpu_wh"] / f["share"] * 3.6e6
            # A record spans one or more power samples: the difference of two readings, i.e. of two cumulative sums.
            assert any(abs((c2 - c1) - mj) < 1e-3 * max(mj, 1.0) for c1 in cumulative for c2 in cumulative if c2 > c1), (gpu, mj)
            checked += 1
    assert checked >= 4 and diffs


def test_hook_without_a_job_id_says_so_and_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    out = subprocess.run([PUEWATCH, "agent", "job-start", "--state-dir", str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 0  # a failing Prolog would drain the node
    assert out.stderr.strip() == "puewatch agent job-start: job-start: SLURM_JOB_ID must be a job id, got '' (run it from Slurm's Prolog)"
    assert list(tmp_path.iterdir()) == []
    # An Epilog for a job the Prolog never recorded: said, not silent (found by the job-holders audit), exit 0.
    out = subprocess.run([PUEWATCH, "agent", "job-end", "--state-dir", str(tmp_path)], capture_output=True, text=True,
                         env={**env, "SLURM_JOB_ID": "778"})
    assert out.returncode == 0
    assert out.stderr.strip() == (f"puewatch agent job-end: no state file for job 778 in {tmp_path} (the Prolog's "
                                  "job-start did not record it, or wrote elsewhere); nothing to remove")


# -- the same against a real driver ---------------------------------------------------------------

CUDA_LOAD = r"""
import sys, time
import torch  # the GPU machine's image has PyTorch; only this gpu-marked test uses it
x = torch.randn(4096, 4096, device="cuda")
print("on gpu", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(20):
        x = (x @ x).clamp_(-1, 1)
    torch.cuda.synchronize()
"""


@pytest.mark.gpu
def test_real_driver_two_jobs_share_gpu_0(tmp_path, procs):
    """On a GPU machine: two real CUDA processes of two Slurm jobs (their environment says which) on GPU 0. The
    real driver's process list and per-process utilisation (where it gives one) reach the ledger through the
    nvml source's one read: every interval of GPU 0 is split between jobs 901 and 902, the shares sum to 1,
    and the ledger's GPU energy is the real energy counter's difference over the same intervals."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    loads = [subprocess.Popen([sys.executable, "-c", CUDA_LOAD, "60"], stdout=subprocess.PIPE, text=True,
                              env={**env, "SLURM_JOB_ID": job, "SLURM_JOB_ACCOUNT": tenant})
             for job, tenant in (("901", "alpha"), ("902", "beta"))]
    try:
        for p in loads:
            assert p.stdout.readline().strip() == "on gpu", "the CUDA load did not start"
        rx = Receiver(procs, tmp_path).start()
        cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool",
                           "[sources.nvml]\ninterval_s = 0.1\nstate_interval_s = 0.5\nprocess_interval_s = 0.5\n"
                           "[sources.jobs]\ninterval_s = 2.0\nsample_interval_s = 0.5\nhook_state_dir = \"\"\n"
                           "host_estimate_w = 100.0\n")
        agent = start_agent(procs, cfg, tmp_path / "agent.log")
        wait_for(lambda: len({f["job"] for t, f in ledger(rx) if t["gpu"] == "0" and f["interval_s"] > 1.9}) >= 2
                 and len(ledger(rx)) >= 12, 60, "ledger records of both jobs on GPU 0")
        assert agent.stop() == 0, agent.output()
    finally:
        for p in loads:
            p.kill()
            p.wait()
    records = [(t, f) for t, f in ledger(rx) if t["gpu"] == "0"]
    by_end: dict[str, list[dict]] = {}
    for line in rx.lines():
        m, tags, fields, ts = parse_line(line)
        if m == JOB_LEDGER and tags["gpu"] == "0":
            by_end.setdefault(ts, []).append(fields)
    full = {ts: fs for ts, fs in by_end.items() if all(f["interval_s"] > 1.9 for f in fs) and {f["job"] for f in fs} == {"901", "902"}}
    assert full, by_end
    for fs in full.values():
        assert sum(f["share"] for f in fs) == pytest.approx(1.0, abs=1e-9)
        assert all(f["gpu_wh"] > 0 and f["gpu_wh_estimated"] is False for f in fs)
        assert {f["tenant"] for f in fs} == {"alpha", "beta"}
    # The ledger's energy of GPU 0 over its intervals is the real counter's difference (mJ -> Wh).
    readings = sorted((ts, f["energy_mj"]) for m, t, f, ts in map(parse_line, rx.lines())
                      if m == "gpu_power" and t["gpu"] == "0" and "energy_mj" in f)
    ledger_wh = sum(f["gpu_wh"] for _, f in records)
    counter_wh = (readings[-1][1] - readings[0][1]) / 3.6e6
    # The ledger's last interval may end at a reading the agent read but had not sent when it stopped.
    last_interval_wh = sum(f["gpu_wh"] for f in by_end[max(by_end)])
    assert 0 < ledger_wh <= counter_wh + last_interval_wh + 1e-9
    shares = sorted({round(f["share"], 3) for fs in full.values() for f in fs})
    print(f"real driver: {len(full)} split intervals of GPU 0, shares seen {shares}; ledger {ledger_wh:.4f} Wh of the "
          f"counter's {counter_wh:.4f} Wh over the run ({len(records)} records)")


def test_a_tenant_slurm_recorded_wins_over_the_account_a_job_s_processes_name(tmp_path, procs, fake_nvml_dir):
    """A job's processes can set SLURM_JOB_ACCOUNT themselves, and so charge their energy to another tenant
    (raised by the jobs audit). Where Slurm's Prolog recorded the job's account (the hook state, written from
    slurmd's environment), that one is kept, and the claim is logged and recorded as an event; a job the
    hook does not know keeps its processes' account. Plain processes stand for the jobs' (their environment
    is what the agent reads; the hook state file is the Prolog's, as the Slurm test above makes it)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    liar = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "801", "SLURM_JOB_ACCOUNT": "victim"})
    plain = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "802", "SLURM_JOB_ACCOUNT": "beta"})
    # Found by the job-holders audit: the hook's tenant held only on the GPUs its record lists (job 801 on GPU 2
    # went to its processes' 'victim'), and a job whose processes name two accounts kept the first, with no word.
    liar2 = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "801", "SLURM_JOB_ACCOUNT": "victim"})
    two = [subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "803", "SLURM_JOB_ACCOUNT": a})
           for a in ("gamma", "other")]
    state = tmp_path / "hook"
    state.mkdir()
    (state / "801.json").write_text(json.dumps({"job": "801", "tenant": "mallory", "gpus": ["0"]}))
    # A state file any user may write (a Prolog run with umask 000 made them so): not trusted, left out, said.
    planted = state / "804.json"
    planted.write_text(json.dumps({"job": "804", "tenant": "evil", "gpus": ["1"]}))
    planted.chmod(0o666)
    rx = Receiver(procs, tmp_path).start()
    try:
        agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                       f'[sources.jobs]\ninterval_s = 1.0\nsample_interval_s = 0.25\nhook_state_dir = "{state}"\n'
                       f'host_estimate_w = 100.0\n', gpus=4)
        (tmp_path / "pids.txt").write_text(f"0 {liar.pid}\n1 {plain.pid}\n2 {liar2.pid}\n3 {two[0].pid}\n3 {two[1].pid}\n")
        wait_for(lambda: {f["job"] for _, f in ledger(rx) if f["interval_s"] > 0.9} >= {"801", "802", "803"}, 20,
                 "records of the three jobs")
        assert agent.stop() == 0, agent.output()
    finally:
        for p in (liar, plain, liar2, *two):
            p.kill()
            p.wait()
    tenants = {(t["gpu"], f["job"], f["tenant"]) for t, f in ledger(rx)}
    assert tenants == {("0", "801", "mallory"), ("1", "802", "beta"), ("2", "801", "mallory"),
                       ("3", "803", "gamma")}, tenants
    events = [(tags, f) for m, tags, f, _ in map(parse_line, rx.lines()) if m == "puewatch_event"]
    claimed = sorted(f["message"] for tags, f in events if tags.get("event") == "tenant_claimed")
    assert len(claimed) == 2, events
    assert "job 801: its processes' environment names the account(s) 'victim'; the hook 'mallory'" in claimed[0]
    assert "job 803: its processes' environment names the account(s) 'gamma', 'other'; 'gamma', the first" in claimed[1]
    assert "job 801's processes name the account(s) 'victim'" in agent.output()
    left_out = [f["message"] for tags, f in events if tags.get("event") == "hook_state_unreadable"]
    assert left_out == [f"{state}/804.json: writable by group or others (mode 0666), left out"], left_out
    # The Prolog's own files are its alone, whatever its umask.
    out = subprocess.run(["sh", "-c", f"umask 000; exec {PUEWATCH} agent job-start --state-dir {tmp_path / 'hook2'}"],
                         capture_output=True, text=True,
                         env={**env, "SLURM_JOB_ID": "805", "SLURM_JOB_ACCOUNT": "a", "SLURM_JOB_GPUS": "0"})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "hook2").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "hook2" / "805.json").stat().st_mode & 0o777 == 0o644


def test_the_interval_since_the_last_ledger_tick_is_recorded_when_the_agent_stops(tmp_path, procs, fake_nvml_dir):
    """A stop (an upgrade, a restart) wrote nothing for the interval since the last ledger tick: up to
    interval_s of every running job's energy went to "unattributed" unsaid (found by the jobs audit). With
    a ledger tick every 60 s and a stop after a few seconds, the records of those seconds are there, up to
    the GPU's last energy reading, with the fake GPU's exact energy."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    job = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "901", "SLURM_JOB_ACCOUNT": "alpha"})
    rx = Receiver(procs, tmp_path).start()
    try:
        agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                       '[sources.jobs]\ninterval_s = 60.0\nsample_interval_s = 0.25\nhook_state_dir = ""\n'
                       'host_estimate_w = 100.0\n', pids=f"0 {job.pid}\n")
        time.sleep(3.0)
        assert ledger(rx) == []  # no tick yet
        assert agent.stop() == 0, agent.output()
    finally:
        job.kill()
        job.wait()
    records = ledger(rx)
    assert len(records) == 1, records
    tags, f = records[0]
    assert (tags["gpu"], f["job"], f["tenant"], f["share"]) == ("0", "901", "alpha", 1.0)
    assert 1.0 < f["interval_s"] < 4.0
    assert f["gpu_wh"] == pytest.approx(POWER_MW[0] * f["interval_s"] / 3.6e6, rel=0.02)


def test_a_gpu_whose_processes_cannot_be_read_is_said_not_skipped(tmp_path, procs, fake_nvml_dir):
    """Found by the NVML audit: on a MIG GPU an unprivileged agent's process query fails (NVML_ERROR_NO_PERMISSION,
    4); the ledger then waited for a process reading that never came: no record for the job the static map gives
    GPU 0, no ledger_gap, one log line. The GPU's interval starts anyway: the static map's job gets its records
    (not flagged reserved_idle: its processes were not seen, idle or not), and every interval says, as a ledger_gap,
    that Slurm's jobs on it cannot be found. A device the kubelet assigns that is none of the GPUs (a MIG device's
    MIG-... ID) is said once, with its pods."""
    sock = tmp_path / "kubelet.sock"
    pods = [pb.PodResources(name="mig-pod", namespace="team-m", containers=[pb.ContainerResources(
        name="main", devices=[pb.ContainerDevices(resource_name="nvidia.com/gpu",  # MIG's "single" strategy
                                                  device_ids=["MIG-4f1ad2c9-0000-5000-8000-000000000001"])])])]
    server = _kubelet(sock, pods)
    static = tmp_path / "static.toml"
    static.write_text('[[gpu]]\ngpu = 0\njob = "mig-job"\ntenant = "lab"\n')
    rx = Receiver(procs, tmp_path).start()
    try:
        agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                       f'[sources.jobs]\ninterval_s = 1.0\nsample_interval_s = 0.25\nhook_state_dir = ""\n'
                       f'kubernetes = true\nkubelet_socket = "{sock}"\nstatic_map = "{static}"\n', gpus=1,
                       script_lines="gpu 0 fail processes 4 -1\n")
        wait_for(lambda: len([r for r in ledger(rx) if r[1]["interval_s"] > 0.9]) >= 2, 20, "two full intervals")
        assert agent.stop() == 0, agent.output()
    finally:
        server.stop(0)
    full = [f for _, f in ledger(rx) if f["interval_s"] > 0.9]
    assert {(f["job"], f["tenant"], f["source"], f["share"], f["reserved_idle"]) for f in full} == {
        ("mig-job", "lab", "static", 1.0, False)}
    events = [(tags["event"], fields["message"]) for m, tags, fields, _ in map(parse_line, rx.lines())
              if m == "puewatch_event"]
    gaps = [msg for kind, msg in events if kind == "ledger_gap"]
    assert len(gaps) >= 2 and all("its compute processes could not be read by NVML" in g for g in gaps), events
    unknown = [msg for kind, msg in events if kind == "device_unknown"]
    assert len(unknown) == 1 and "MIG-4f1ad2c9" in unknown[0] and "team-m/mig-pod" in unknown[0], events


class _FakeGpu:
    """One GPU as the nvml source gives it to the ledger (what the ledger reads of it); 100 W on a counter."""

    def __init__(self, clock: dict) -> None:
        self.clock = clock
        self.index, self.uuid, self.info, self.has_counter = 0, "GPU-0", {"name": "fake"}, True
        self.pids, self.util_by_pid, self.unsupported, self.processes_failed, self.lost = (), None, set(), False, False
        self.breaks = 0

    def energy_reading(self):
        return (self.clock["mono"] / 1e9 * 100.0 * 1000.0, 1_800_000_000 * 10**9 + self.clock["mono"],
                self.clock["mono"])


def _in_process_source(monkeypatch, n_gpus: int, **config):
    """The jobs source over fake GPUs (_FakeGpu) and a fake clock (`clock["mono"]`, ns), in this process: the
    holders' readers (real /proc processes, real hook files, a real static map file) and the ledger are the unit
    under test. Returns the source, its GPUs and the clock."""
    import puewatch.agent.sources.jobs as jobs_mod
    from puewatch.agent.sources.base import Context

    clock = {"mono": 0}

    class FakeTime:
        @staticmethod
        def monotonic_ns() -> int:
            return clock["mono"]

        @staticmethod
        def time_ns() -> int:
            return 1_800_000_000 * 10**9 + clock["mono"]

    monkeypatch.setattr(jobs_mod, "time", FakeTime)
    gpus = []
    for i in range(n_gpus):
        gpu = _FakeGpu(clock)
        gpu.index, gpu.uuid = i, f"GPU-{i}"
        gpus.append(gpu)
    nvml = type("Nvml", (), {"initialised": True, "gpus": gpus, "gpu_count": n_gpus, "process_utilisation": False})()
    ctx = Context("n1")
    ctx.sources["nvml"] = nvml
    src = jobs_mod.Source(jobs_mod.Config(interval_s=5.0, sample_interval_s=1.0, host_estimate_w=0.0, **config), ctx)
    src.open()
    return src, gpus, clock


def _run_seconds(src, clock: dict, seconds: int) -> list:
    """A sample a second, and the ledger every 5 s: its records, parsed."""
    out = []
    for t in range(seconds):
        clock["mono"] += 10**9
        src.sample()
        if t % 5 == 4:
            out += [parse_line(line) for line in src.ledger()]
    return out


def test_a_job_holding_a_gpu_for_part_of_two_intervals_gets_the_time_it_held(tmp_path, monkeypatch):
    """Found by the job-holders audit: each sample counted the same whatever the time between samples, and the
    ledger's tick was sampled in both intervals, so a job held for 1 s of two 5-s intervals was billed 1.55 s.
    Each sample's shares now hold until the next: a job the hook names from the sample at 3 s to the one at
    7 s (ledger ticks at 5 and 10 s, samples every second, and the sampler's own sample at each tick too) holds
    2 s of each interval: share 0.4 twice, 4 s of the GPU in all. The clock and the GPU are fakes (the ledger's
    reading of them is the unit under test; the agent tests above run the real sources)."""
    state = tmp_path / "hook"
    state.mkdir()
    src, _, clock = _in_process_source(monkeypatch, 1, slurm=False, hook_state_dir=str(state))
    records = []
    for t in range(11):
        clock["mono"] = t * 10**9
        if t == 3:
            (state / "7.json").write_text(json.dumps({"job": "7", "tenant": "t", "gpus": ["0"]}))
        if t == 7:
            (state / "7.json").unlink()
        src.sample()
        if t in (5, 10):
            records += [parse_line(line) for line in src.ledger()]
            src.sample()  # the sampler's job at the same moment: it adds nothing
    shares = [(f["share"], f["interval_s"], f["gpu_wh"]) for m, _, f, _ in records if m == JOB_LEDGER]
    assert [s for s, _, _ in shares] == [pytest.approx(0.4), pytest.approx(0.4)], shares
    assert sum(wh for _, _, wh in shares) == pytest.approx(4 * 100.0 / 3600.0)  # 4 s of 100 W


def test_no_job_is_billed_across_an_impossible_counter_jump(tmp_path, procs, fake_nvml_dir):
    """Found by the agent audit: GPU 0's counter rises 1 GJ at 2.5 s (about 1 MW over a second, on a 700 W
    board); the ledger billed it to the job holding the GPU (278 Wh). The interval across it has no record, a
    ledger_gap says why, and the intervals before and after are the GPU's exact energy."""
    static = tmp_path / "static.toml"
    static.write_text('[[gpu]]\ngpu = 0\njob = "j1"\ntenant = "lab"\n')
    rx = Receiver(procs, tmp_path).start()
    agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                   f'[sources.jobs]\ninterval_s = 2.0\nsample_interval_s = 0.25\nhook_state_dir = ""\n'
                   f'static_map = "{static}"\n', gpus=1, script_lines="gpu 0 energy_jump_at_s 2.5 1000000000\n")
    wait_for(lambda: len([r for r in ledger(rx) if r[1]["interval_s"] > 1.9]) >= 3, 30, "three full intervals")
    assert agent.stop() == 0, agent.output()
    full = [f for _, f in ledger(rx) if f["interval_s"] > 1.9]
    for f in full:
        assert f["gpu_wh"] == pytest.approx(POWER_MW[0] * f["interval_s"] / 3.6e6, rel=0.05), f
    events = [(tags["event"], fields["message"]) for m, tags, fields, _ in map(parse_line, rx.lines())
              if m == "puewatch_event"]
    assert any(kind == "energy_counter_jump" for kind, _ in events), events
    gaps = [msg for kind, msg in events if kind == "ledger_gap"]
    assert len(gaps) == 1 and "rose faster than the GPU can draw" in gaps[0], events


def test_a_name_that_cannot_be_written_never_stops_the_ledger(tmp_path, monkeypatch):
    """Found by the job-holders audit: job 9's processes named the account "evil\\nname" (any user can set
    SLURM_JOB_ACCOUNT), which no ledger line can hold: every tick raised from then on, even after the process
    ended, and every GPU's energy on the node, job 10's too, went unattributed with no event. The account is
    refused where it is read (the job is billed, its tenant unknown, said once); a static map naming one is a
    clear error."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    bad = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "9", "SLURM_JOB_ACCOUNT": "evil\nname"})
    good = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "10", "SLURM_JOB_ACCOUNT": "lab"})
    # Not a job id: a process's own environment saying SLURM_JOB_ID=abc is no Slurm job's (counted as of none).
    other = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "abc", "SLURM_JOB_ACCOUNT": "lab"})
    try:
        for p in (bad, good, other):
            _exec_done(p)
        src, gpus, clock = _in_process_source(monkeypatch, 2, slurm=True, hook_state_dir="")
        gpus[0].pids, gpus[1].pids = (bad.pid, other.pid), (good.pid,)
        records = [(tags["gpu"], f["job"], f["tenant"]) for m, tags, f, _ in _run_seconds(src, clock, 10)
                   if m == JOB_LEDGER]
    finally:
        for p in (bad, good, other):
            p.kill()
            p.wait()
    assert records == [("0", "9", ""), ("1", "10", "lab")] * 2, records
    said = [f["message"] for m, tags, f, _ in map(parse_line, src.ctx.pending) if tags.get("event") == "tenant_refused"]
    assert said == ["job 9: its processes' environment names an account that cannot be a tenant (SLURM_JOB_ACCOUNT "
                    "'evil\\nname' contains a control character); left out: the job's tenant is the hook's or the "
                    "map's, else none"], said
    assert src.unattributed_processes == 2  # the process that named job "abc", in each interval
    static = tmp_path / "map.toml"
    static.write_text('[[gpu]]\ngpu = 0\njob = "j\\nx"\ntenant = "lab"\n')
    with pytest.raises(UserError, match=r"map.toml: gpu\[0\]\.job: 'j\\nx' contains a control character"):
        jobholders.read_static_map(static)


def test_hook_files_are_checked_against_their_names_and_the_gpus(tmp_path, monkeypatch):
    """Found by the job-holders audit: a record's "gpus": "10" billed GPUs 1 and 0 (a string read character by
    character), 6.json naming job 7 gave job 7 its tenant, "job": null made a job "None", GPU ids that are no
    GPU's were dropped without a word, and a file left behind (an Epilog that never ran) split a GPU with the
    job running on it, unsaid. Each is said; the split stays (normal under gres/shard or MPS)."""
    state = tmp_path / "hook"
    state.mkdir()
    files = {"5.json": {"job": "5", "tenant": "a", "gpus": "10"}, "6.json": {"job": "7", "tenant": "b", "gpus": ["1"]},
             "11.json": {"job": None, "gpus": ["1"]}, "12.json": {"job": "12", "tenant": "c", "gpus": ["3"]},
             "13.json": {"job": "13", "tenant": "d", "gpus": ["0"]}, "14.json": {"job": "14", "tenant": "e", "gpus": ["1"]},
             "15.json": {"job": "15", "tenant": "f", "gpus": ["1"]}}
    for name, record in files.items():
        (state / name).write_text(json.dumps(record))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    running = subprocess.Popen(["sleep", "60"], env={**env, "SLURM_JOB_ID": "9", "SLURM_JOB_ACCOUNT": "lab"})
    try:
        _exec_done(running)
        src, gpus, clock = _in_process_source(monkeypatch, 2, slurm=True, hook_state_dir=str(state))
        gpus[0].pids = (running.pid,)
        records = sorted((tags["gpu"], f["job"], f["tenant"], f["share"]) for m, tags, f, _ in _run_seconds(src, clock, 5)
                         if m == JOB_LEDGER)
    finally:
        running.kill()
        running.wait()
    assert records == [("0", "13", "d", 0.5), ("0", "9", "lab", 0.5), ("1", "14", "e", 0.5), ("1", "15", "f", 0.5)]
    events = [(tags["event"], f["message"]) for m, tags, f, _ in map(parse_line, src.ctx.pending)]
    left_out = sorted(msg for kind, msg in events if kind == "hook_state_unreadable")
    assert left_out == [
        f"{state}/11.json: not a job record: job must be a Slurm job id (digits), got None, left out",
        f"{state}/5.json: not a job record: gpus must be a list of GPU ids (strings), got '10', left out",
        f"{state}/6.json: not a job record: it names job 7, not the job of its name, left out"], events
    assert [msg for kind, msg in events if kind == "device_unknown"] == [
        "the hook state names GPU '3' for job(s) 12, which is none of the sampled GPUs' index or UUID: their "
        "energy on it stays unattributed"], events
    disagree = sorted(msg for kind, msg in events if kind == "holders_disagree")
    assert len(disagree) == 2, events
    # A process that cannot be read (gone, another PID namespace, no ptrace) is not "a process of no job": the
    # hook's job alone on its GPU says nothing (found by the closing review: it fired on every such node).
    gone = subprocess.Popen(["true"])
    gone.wait()
    state2 = tmp_path / "hook2"
    state2.mkdir()
    (state2 / "21.json").write_text(json.dumps({"job": "21", "tenant": "t", "gpus": ["0"]}))
    src, gpus, clock = _in_process_source(monkeypatch, 1, slurm=True, hook_state_dir=str(state2))
    gpus[0].pids = (gone.pid,)
    assert [(tags["gpu"], f["job"]) for m, tags, f, _ in _run_seconds(src, clock, 5) if m == JOB_LEDGER] == [("0", "21")]
    assert not [line for line in src.ctx.pending if "holders_disagree" in line], src.ctx.pending
    assert disagree[0].startswith("GPU 0: the hook's job(s) 13 run nothing on it while job 9 does: normal under "
                                  "gres/shard or MPS; otherwise a hook file left behind, or SLURM_JOB_GPUS ids"), disagree
    assert disagree[1].startswith("GPU 1: the hook names 2 jobs for it (14, 15): normal under gres/shard"), disagree


def test_a_kubelet_outage_is_said_each_time_with_its_end_and_unlisted_gpu_resources_are_said(tmp_path, monkeypatch):
    """Found by the Kubernetes audit: a second kubelet outage with the same error was never said, nor the end of
    any; a pod on `nvidia.com/gpu.shared` (the NVIDIA device plugin's time-sliced GPUs) or on a MIG resource was
    billed to nobody, unsaid. `gpu.shared` is a GPU resource by default; another resource holding GPU or MIG
    UUIDs is said. (The kubelet cannot run here: a real gRPC server from its published proto on a real socket.)"""
    sock = tmp_path / "kubelet.sock"
    pods = [pb.PodResources(name="nb", namespace="team-a", containers=[pb.ContainerResources(
                name="c", devices=[pb.ContainerDevices(resource_name="nvidia.com/gpu.shared", device_ids=["GPU-0::1"])])]),
            pb.PodResources(name="mig", namespace="team-b", containers=[pb.ContainerResources(
                name="c", devices=[pb.ContainerDevices(resource_name="nvidia.com/mig-1g.10gb", device_ids=["MIG-abc"])])])]
    server = _kubelet(sock, pods)
    src, _gpus, clock = _in_process_source(monkeypatch, 2, slurm=False, hook_state_dir="", kubernetes=True,
                                           kubelet_socket=str(sock), kubernetes_timeout_s=1.0)
    records = [(tags["gpu"], f["job"]) for m, tags, f, _ in _run_seconds(src, clock, 5) if m == JOB_LEDGER]
    assert records == [("0", "team-a/nb")]
    server.stop(0)
    _run_seconds(src, clock, 5)  # the kubelet is away
    server = _kubelet(sock, pods)
    _run_seconds(src, clock, 5)  # back
    server.stop(0)
    _run_seconds(src, clock, 5)  # away again
    events = [(tags["event"], f["message"]) for m, tags, f, _ in map(parse_line, src.ctx.pending)]
    kinds = [kind for kind, _ in events if kind.startswith("kubelet_")]
    assert kinds == ["kubelet_unavailable", "kubelet_available", "kubelet_unavailable"], events
    (unlisted,) = [msg for kind, msg in events if kind == "resource_unlisted"]
    assert unlisted.startswith("the kubelet assigns GPU or MIG devices of resource 'nvidia.com/mig-1g.10gb' to "
                               "team-b/mig, which [sources.jobs] kubernetes_resources does not list")


def test_running_pods_are_not_reserved_idle_and_their_processes_are_not_of_no_job(tmp_path, monkeypatch):
    """Found by the Kubernetes audit: two pods time-slicing a GPU that ran 80/20 were flagged reserved idle (the
    docs: "ran nothing on it"), and with `slurm` on their processes were counted as processes of no job. The
    GPU's processes that no holder claims are the pods' (the kubelet names no processes)."""
    sock = tmp_path / "kubelet.sock"
    pods = [pb.PodResources(name=f"nb-{i}", namespace="team-a", containers=[pb.ContainerResources(
                name="c", devices=[pb.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[f"GPU-0::{i}"])])])
            for i in (1, 2)]
    server = _kubelet(sock, pods)
    running = subprocess.Popen(["sleep", "60"])
    try:
        src, gpus, clock = _in_process_source(monkeypatch, 2, slurm=True, hook_state_dir="", kubernetes=True,
                                               kubelet_socket=str(sock), kubernetes_timeout_s=1.0)
        gpus[0].pids = (running.pid,)
        records = [(tags["gpu"], f["job"], f["share"], f["reserved_idle"]) for m, tags, f, _ in
                   _run_seconds(src, clock, 5) if m == JOB_LEDGER]
    finally:
        server.stop(0)
        running.kill()
        running.wait()
    assert sorted(records) == [("0", "team-a/nb-1", 0.5, False), ("0", "team-a/nb-2", 0.5, False)]
    assert src.unattributed_processes == 0


class _HangingKubelet(pb_grpc.PodResourcesListerServicer):
    def List(self, request, context):
        time.sleep(0.95)  # past the agent's timeout
        return pb.ListPodResourcesResponse()


def test_a_hanging_kubelet_holds_up_no_power_sample(tmp_path, procs, fake_nvml_dir):
    """Found by the Kubernetes audit: the List ran inside the sampling lock every job holds, so a kubelet that
    hangs to the timeout stopped the power samples as long (158 skipped at 8 s). It is asked in the jobs
    sample's own thread, outside the lock: the 20 Hz power samples go on. (A real gRPC server that hangs.)"""
    sock = tmp_path / "kubelet.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_PodResourcesListerServicer_to_server(_HangingKubelet(), server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    rx = Receiver(procs, tmp_path).start()
    try:
        agent = _agent(procs, tmp_path, fake_nvml_dir, rx,
                       f'[sources.jobs]\ninterval_s = 1.0\nsample_interval_s = 1.0\nslurm = false\nhook_state_dir = ""\n'
                       f'kubernetes = true\nkubelet_socket = "{sock}"\nkubernetes_timeout_s = 0.9\n', gpus=1)
        wait_for(lambda: "DEADLINE_EXCEEDED" in agent.output(), 20, "the kubelet's List to time out")
        before = sum(1 for line in rx.lines() if line.startswith("gpu_power"))
        time.sleep(4.0)
        after = sum(1 for line in rx.lines() if line.startswith("gpu_power"))
        assert agent.stop() == 0, agent.output()
    finally:
        server.stop(0)
    # 4 s at 20 Hz: 80 samples (shipped each flush); with the List in the lock, under a fifth of them.
    assert after - before >= 50, (before, after)
    assert " sample(s) skipped" not in agent.output()
