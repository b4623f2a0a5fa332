"""The agent process: systemd notifications on a real socket, an unreachable collector at start-up,
SIGTERM with a final flush, and no numba/numpy/collector in its memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from agent_support import Receiver, parse_line, start_agent, wait_for, wait_log, write_config
from servers import free_port


def test_notify_unreachable_collector_then_recovery_and_final_flush(tmp_path, procs):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    messages: list[str] = []

    def drain():
        while True:
            try:
                messages.append(sock.recv(65536).decode())
            except (socket.timeout, BlockingIOError):
                return messages

    port = free_port()  # nobody listens here yet: the collector is unreachable at start-up
    rx = Receiver(procs, tmp_path, port=port)
    cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool", "[sources.sim]\ngpus = 2\nprofile = \"inference\"\n")
    agent = start_agent(procs, cfg, tmp_path / "agent.log", {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"})

    wait_for(lambda: any(m.startswith("READY=1") for m in drain()), 20, "READY=1")
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert "STATUS=last sample 20" in ready  # READY comes with the first sample, not before
    wait_log(agent, "unreachable ([Errno 111] Connection refused); batches are kept in the spool")
    wait_for(lambda: sum(m == "WATCHDOG=1" for m in drain()) >= 3, 10, "watchdog pings from the loop")
    wait_for(lambda: list((tmp_path / "spool").glob("*.rec")), 10, "spooled batches")

    # The collector appears; the spool drains.
    rx.start()
    wait_for(lambda: any(m.startswith("STATUS=") and "last ship 20" in m for m in drain()), 20, "a STATUS with a ship time")
    assert agent.stop() == 0, agent.output()
    drain()
    assert any(m.startswith("STOPPING=1") for m in messages)

    points = [parse_line(l) for l in rx.lines()]
    final = max((p for p in points if p[0] == "puewatch_agent"), key=lambda p: p[3])[2]
    samples = [p for p in points if p[0] != "puewatch_agent"]
    # Everything sampled, including what waited in the spool and the final flush, arrived once.
    assert final["samples_taken"] == len(samples)
    assert len({(p[0], tuple(sorted(p[1].items())), p[3]) for p in samples}) == len(samples)
    assert final["dropped_points"] == 0 and final["send_failures"] > 0
    assert not [p for p in (tmp_path / "spool").iterdir() if p.is_file()]
    sock.close()


def test_agent_never_imports_numba_numpy_or_the_collector(tmp_path, procs, receiver):
    """The real agent, through the CLI, sampling and shipping; its sys.modules is dumped at exit."""
    dump = tmp_path / "modules.json"
    cfg = write_config(tmp_path / "agent.toml", receiver.url, tmp_path / "spool", "[sources.sim]\ngpus = 1\n[sources.host]\n")
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(dump)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "from puewatch.cli import main\n"
        f"sys.exit(main(['agent', '--config', {str(cfg)!r}]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(l.startswith("gpu_power") for l in receiver.lines()), 20, "delivered samples")
    finally:
        p.terminate()
        _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    modules = set(json.loads(dump.read_text()))
    assert "puewatch.agent.main" in modules and "psutil" in modules
    forbidden = sorted(m for m in modules if m.split(".")[0] in ("numba", "numpy", "pandas", "llvmlite") or m.startswith("puewatch.collector") or m.startswith("puewatch.kernels"))
    assert forbidden == []
