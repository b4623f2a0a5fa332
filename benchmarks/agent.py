"""`puewatch bench agent`: the node agent's CPU and memory, beside a bare NVML polling loop.

Both run at the same time, as separate processes, against the fake NVML library
(compiled here with gcc) serving N GPUs, or with `--driver real` against the
machine's own driver (libnvidia-ml.so.1) and every GPU it has:

- the agent, started by its CLI with the nvml source at H Hz (power), energy
  every second (`energy_interval_s`, the default), 1 s state and 5 s process
  samples, shipping to a local HTTP endpoint;
- the floor: a loop that makes the same NVML calls at the same rates through
  pynvml's public functions, and nothing else.

CPU time is read from /proc/<pid>/task/*/schedstat (all threads, ns) over the measured window,
after a warm-up that excludes start-up (imports, NVML initialisation). RSS is
the agent's peak (VmHWM) at the end of the run, beside the floor's (what Python, pynvml
and the NVML library take alone).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from puewatch.agent import fake_nvml
from puewatch.errors import UserError

WARMUP_S = 3.0

FLOOR = r"""
import sys, time
import pynvml
gpus, hz, stop_after = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
pynvml.nvmlInit()
handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]
period = 1.0 / hz
start = time.time()
tick = 0
while time.time() - start < stop_after:
    t = start + tick * period
    for h in handles:
        pynvml.nvmlDeviceGetFieldValues(h, [185, 186])
    if tick % max(1, round(hz)) == 0:  # 1 s: the agent's energy reading and state sample
        for h in handles:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        for h in handles:
            pynvml.nvmlDeviceGetUtilizationRates(h)
            pynvml.nvmlDeviceGetMemoryInfo(h)
            pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
            pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
            pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
            pynvml.nvmlDeviceGetEnforcedPowerLimit(h)
            pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
    if tick % max(1, round(5 * hz)) == 0:  # 5 s: the agent's process sample
        for h in handles:
            pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    tick += 1
    delay = start + tick * period - time.time()
    if delay > 0:
        time.sleep(delay)
"""


def _cpu_s(pid: int) -> float:
    """CPU time of all the process's threads, in ns resolution (/proc/PID/task/*/schedstat).

    /proc/PID/stat counts in clock ticks (10 ms): too coarse for ~0.1 s over a minute.
    Threads that end inside the window would be missed; the agent's threads all live
    from start-up to shutdown.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e9


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    points = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Sink.points += 1 if body else 0
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


COUNT = r"""
import pynvml
pynvml.nvmlInit()
print(pynvml.nvmlDeviceGetCount())
"""


def _real_gpu_count() -> int:
    """The GPUs the machine's driver serves, asked in a child process (this one never loads NVML)."""
    done = subprocess.run([sys.executable, "-c", COUNT], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"--driver real: NVML did not start on this machine: {last}")
    count = int(done.stdout)
    if count < 1:
        raise UserError("--driver real: the NVIDIA driver serves no GPU on this machine")
    return count


def run(gpus: int, hz: float, duration_s: float, driver: str = "fake") -> dict:
    if gpus < 1 or hz <= 0 or duration_s <= 0:
        raise UserError("--gpus, --hz and --duration must be positive")
    if driver not in ("fake", "real"):
        raise UserError(f"--driver must be fake or real, not {driver!r}")
    with tempfile.TemporaryDirectory(prefix="puewatch-bench-agent-") as tmp_name:
        tmp = Path(tmp_name)
        if driver == "real":
            gpus = _real_gpu_count()
            env = dict(os.environ)
        else:
            fake_nvml.build(tmp / "lib")
            script = tmp / "gpus.txt"
            script.write_text(f"count {gpus}\n")
            env = {**os.environ, "LD_LIBRARY_PATH": str(tmp / "lib"), "FAKE_NVML_CONFIG": str(script)}
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        config = tmp / "agent.toml"
        config.write_text(
            f"""
[agent]
node = "bench"
spool_dir = "{tmp / 'spool'}"
log_level = "warning"
[output]
url = "http://127.0.0.1:{server.server_address[1]}/api/v2/write"
[sources.nvml]
interval_s = {1.0 / hz!r}
energy_interval_s = {max(1.0, 1.0 / hz)!r}
state_interval_s = 1.0
process_interval_s = 5.0
"""
        )
        env.pop("NOTIFY_SOCKET", None)
        total_s = WARMUP_S + duration_s + 1.0
        agent = subprocess.Popen([sys.executable, "-m", "puewatch.cli", "agent", "--config", str(config)], env=env, stderr=subprocess.PIPE)
        floor = subprocess.Popen([sys.executable, "-c", FLOOR, str(gpus), str(hz), str(total_s)], env=env, stderr=subprocess.PIPE)
        try:
            time.sleep(WARMUP_S)
            for p in (agent, floor):
                if p.poll() is not None:
                    raise UserError(f"benchmark process exited early: {p.stderr.read().decode(errors='replace').strip()}")
            wall0 = time.monotonic()
            a0, f0 = _cpu_s(agent.pid), _cpu_s(floor.pid)
            time.sleep(duration_s)
            a1, f1 = _cpu_s(agent.pid), _cpu_s(floor.pid)
            wall = time.monotonic() - wall0
            rss_mb = _peak_rss_mb(agent.pid)
            floor_rss_mb = _peak_rss_mb(floor.pid)
        finally:
            for p in (agent, floor):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in (agent, floor):
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            server.shutdown()
            server.server_close()
        if agent.returncode != 0:
            raise UserError(f"the agent failed: {agent.stderr.read().decode(errors='replace').strip()[-2000:]}")
        return {
            "driver": driver,
            "gpus": gpus,
            "hz": hz,
            "cpu_fraction": round((a1 - a0) / wall, 5),
            "floor_cpu_fraction": round((f1 - f0) / wall, 5),
            "rss_mb": round(rss_mb, 1),
            "floor_rss_mb": round(floor_rss_mb, 1),
            "duration_s": round(wall, 1),
            "batches_received": _Sink.points,
        }


def main(args) -> int:
    result = run(args.gpus, args.hz, args.duration, args.driver)
    if args.json:
        # The contract: exactly these fields.
        print(json.dumps({k: result[k] for k in ("gpus", "hz", "cpu_fraction", "floor_cpu_fraction", "rss_mb")}))
        return 0
    ratio = result["cpu_fraction"] / result["floor_cpu_fraction"] if result["floor_cpu_fraction"] else float("inf")
    print(f"agent, {result['gpus']} GPUs at {result['hz']:g} Hz through {'the fake NVML library' if result['driver'] == 'fake' else 'the real NVIDIA driver'}, "
          f"{result['duration_s']} s measured:")
    print(f"  agent CPU      {result['cpu_fraction'] * 100:.3f} % of one core   (target <= 0.5 % and <= 2x floor)")
    print(f"  floor CPU      {result['floor_cpu_fraction'] * 100:.3f} % of one core   (bare loop, same NVML calls)")
    print(f"  agent / floor  {ratio:.2f}x")
    print(f"  agent peak RSS {result['rss_mb']:.1f} MB   (target <= 60 MB)")
    print(f"  floor peak RSS {result['floor_rss_mb']:.1f} MB   (Python, pynvml and the NVML library alone)")
    print(f"  batches received by the local endpoint: {result['batches_received']}")
    return 0
