"""Start-up errors are one line and exit 2 (issue 12 item 10), for `puewatch collector` and `puewatch agent`,
as real processes: ports in use, addresses that cannot be bound, files that cannot be read, directories
that cannot be written.

The tests run as root, which reads and writes every ordinary file whatever its mode, so the unreadable file
is a write-only sysfs attribute (`/sys/bus/*/uevent`, mode 0200, refused even to root) and the unwritable
directory is in sysfs, where nobody may create files.
"""

from __future__ import annotations

import glob
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "collector"))

from collector_support import PUEWATCH, CollectorProcess, free_port, write_config  # noqa: E402

UNWRITABLE_DIR = Path("/sys")
NEW_DIR_UNDER_UNWRITABLE = Path("/sys/puewatch-test-state")


def unreadable_file() -> str:
    """A file that open() refuses even to root."""
    found = sorted(glob.glob("/sys/bus/*/uevent"))
    assert found, "no /sys/bus/*/uevent: sysfs is not mounted"
    return found[0]


def run_puewatch(*args: str) -> tuple[int, str]:
    done = subprocess.run([*PUEWATCH, *args], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr + done.stdout


def assert_one_line_exit_2(result: tuple[int, str], command: str, *expected: str) -> str:
    code, out = result
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if "error" in line.lower()]
    assert code == 2, out
    assert len(errors) == 1 and errors[0] == out.strip().splitlines()[-1], out
    assert errors[0].startswith(f"puewatch {command}: error: "), out
    for text in expected:
        assert text in errors[0], out
    return errors[0]


def collector(tmp_path: Path, extra: str = "", **replace: str) -> tuple[Path, int, int]:
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port, extra)
    text = conf.read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    conf.write_text(text)
    return conf, ingest_port, metrics_port


def test_collector_ports_in_use_or_not_bindable(tmp_path):
    conf, ingest_port, metrics_port = collector(tmp_path)
    for port, what in ((ingest_port, "ingest"), (metrics_port, "metrics")):
        with socket.socket() as held:
            held.bind(("127.0.0.1", port))
            held.listen()
            line = assert_one_line_exit_2(run_puewatch("collector", "--config", str(conf)), "collector",
                                          f"{what}: cannot listen on 127.0.0.1:{port}")
            assert "in use" in line
    # an address that is not this machine's (TEST-NET-1)
    conf, _, _ = collector(tmp_path, **{'listen = "127.0.0.1"': 'listen = "192.0.2.1"'})
    assert_one_line_exit_2(run_puewatch("collector", "--config", str(conf)), "collector", "ingest: cannot listen on 192.0.2.1")


def test_collector_unwritable_state_dir(tmp_path):
    for state in (UNWRITABLE_DIR, NEW_DIR_UNDER_UNWRITABLE):
        conf, _, _ = collector(tmp_path, **{f'state_dir = "{tmp_path / "state"}"': f'state_dir = "{state}"'})
        assert_one_line_exit_2(run_puewatch("collector", "--config", str(conf)), "collector",
                               f"collector.state_dir {state}: not writable")


def test_collector_unreadable_files(tmp_path):
    bad = unreadable_file()
    conf, _, _ = collector(tmp_path, **{f'token_file = "{tmp_path / "tokens"}"': f'token_file = "{bad}"'})
    assert_one_line_exit_2(run_puewatch("collector", "--config", str(conf)), "collector", bad, "Permission denied")
    conf, _, _ = collector(tmp_path, **{f'token_file = "{tmp_path / "tokens"}"': f'token_file = "{tmp_path}"'})
    assert_one_line_exit_2(run_puewatch("collector", "--config", str(conf)), "collector", str(tmp_path), "directory")
    conf, _, _ = collector(tmp_path, **{"[ingest]": f'[ingest]\ntls_cert = "{bad}"\ntls_key = "{bad}"'})
    assert_one_line_exit_2(run_puewatch("collector", "--config", str(conf)), "collector", "TLS", bad)
    assert_one_line_exit_2(run_puewatch("collector", "--config", bad), "collector", bad, "Permission denied")


def agent_config(tmp_path: Path, spool: str, output_extra: str = "") -> Path:
    conf = tmp_path / "agent.toml"
    conf.write_text(f"""
[agent]
node = "n1"
spool_dir = "{spool}"
[output]
url = "https://127.0.0.1:{free_port()}/api/v2/write"
token = "agent-token-0123456789abcdef"
{output_extra}
[sources.sim]
gpus = 1
""")
    return conf


def test_agent_start_up_errors(tmp_path):
    bad = unreadable_file()
    for spool in (str(NEW_DIR_UNDER_UNWRITABLE), str(UNWRITABLE_DIR)):
        conf = agent_config(tmp_path, spool)
        assert_one_line_exit_2(run_puewatch("agent", "--config", str(conf)), "agent", "/sys")
    conf = agent_config(tmp_path, str(tmp_path / "spool"), f'ca_file = "{bad}"')
    assert_one_line_exit_2(run_puewatch("agent", "--config", str(conf)), "agent", bad, "Permission denied")
    conf = agent_config(tmp_path, str(tmp_path / "spool")).read_text().replace('token = "agent-token-0123456789abcdef"',
                                                                              f'token_file = "{bad}"')
    (tmp_path / "agent.toml").write_text(conf)
    assert_one_line_exit_2(run_puewatch("agent", "--config", str(tmp_path / "agent.toml")), "agent", bad, "Permission denied")
    assert_one_line_exit_2(run_puewatch("agent", "--config", bad), "agent", bad, "Permission denied")


def test_a_second_collector_on_the_same_state_dir_is_refused(tmp_path):
    """Found by the collector audit: a second collector (a copied config, a manual start beside the unit) ran
    on the first one's state_dir, sharing its spools, and its checkpoint replaced the first one's rolling
    history. It is refused at start, naming the first one's PID; once the first stops, the directory is free."""
    conf, ingest_port, _ = collector(tmp_path)
    first = CollectorProcess(conf, ingest_port)
    try:
        other = tmp_path / "other.toml"  # the same config, its own ports: only the state_dir is shared
        other.write_text(conf.read_text().replace(f"port = {ingest_port}", f"port = {free_port()}"))
        assert_one_line_exit_2(run_puewatch("collector", "--config", str(other)), "collector",
                               f"collector.state_dir {tmp_path / 'state'}: in use by another collector "
                               f"(pid {first.proc.pid};")
    finally:
        first.stop()
    again = CollectorProcess(conf, ingest_port)  # the lock went with the process
    deadline = time.monotonic() + 60
    while "collector for site" not in again.output() and again.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    again.stop()
