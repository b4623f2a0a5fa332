"""`puewatch collector` end to end: a real process, real HTTP ingest, the embedded store, /metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from puewatch.collector.stores.embedded import EmbeddedStore

from collector_support import FEEDER_TOKEN, PUEWATCH, free_port, post, wait_port, write_config  # noqa: E402


def test_collector_computes_pue_from_ingested_meters_and_writes_the_embedded_store(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def read_notifications():  # as systemd does: keep reading
        while not done.is_set():
            try:
                messages.append(sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                pass

    reader = threading.Thread(target=read_notifications, daemon=True)
    reader.start()
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    proc = subprocess.Popen([*PUEWATCH, "collector", "--config", str(conf)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(ingest_port)
        t_start = time.time_ns()
        energy = 1000.0
        for i in range(24):  # 12 s of readings: 130 kW in, 100 kW of IT, two GPUs at 300 W
            now = time.time_ns()
            energy = 1000.0 + 100_000.0 * (now - t_start) / 3.6e12
            mj = 300_000.0 * (now - t_start) / 1e9  # 300 W in mJ
            meters = f"modbus,meter=incomer power_kw=130.0 {now}\nmodbus,meter=ups energy_wh={energy!r} {now}\n"
            assert post(ingest_port, meters, FEEDER_TOKEN) == 204
            body = (
                f"gpu_power,gpu=0,node=gpu-a-1,uuid=GPU-1 power_average_w=300.0,energy_mj={int(mj)}i {now}\n"
                f"gpu_power,gpu=1,node=gpu-a-1,uuid=GPU-2 power_average_w=300.0,energy_mj={int(mj)}i {now}\n"
            )
            assert post(ingest_port, body) == 204
            time.sleep(0.5)
        assert post(ingest_port, "modbus,meter=ups energy_wh=\n", FEEDER_TOKEN) == 400
        assert post(ingest_port, f"modbus,meter=ups energy_wh=1 {time.time_ns()}\n") == 403  # the agent is no feeder
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        values = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line and not line.startswith("#")
        }
        assert values['puewatch_ratio{ratio="pue",window="1m"}'] == pytest.approx(1.3, rel=1e-9)
        assert 0 < values['puewatch_ratio_coverage{ratio="pue",window="1m"}'] < 1
        assert "puewatch_ingest_parse_errors_total 1.0" in metrics
        assert "puewatch_ingest_forbidden_total 1.0" in metrics and "puewatch_ingest_scope_refused_lines_total 1.0" in metrics
        assert "puewatch_store_points_written_total" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    time.sleep(0.5)
    done.set()
    reader.join()
    sock.close()
    assert proc.returncode == 0, err
    assert "READY=1" in messages and "WATCHDOG=1" in messages and "STOPPING=1" in messages

    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    end = time.time_ns() + 10**9
    t, pue = store.series("pue", "pue", {"site": "lab", "window": "1m", "category": "1"}, t_start, end)
    assert len(pue) >= 5
    assert pue == pytest.approx([1.3] * len(pue), rel=1e-6)
    t, share = store.series("pue", "gpu_it_share", {"site": "lab", "window": "1m", "category": "1"}, t_start, end)
    assert len(share) >= 3 and share == pytest.approx([0.006] * len(share), rel=1e-3)
    # The agents' raw lines are stored as they came.
    t, raw = store.series("modbus", "power_kw", {"meter": "incomer"}, t_start, end)
    assert len(raw) == 24 and set(raw) == {130.0}
    t, it = store.series("site_energy", "it_wh", {"site": "lab", "category": "1"}, t_start, end)
    assert len(it) >= 5 and it == pytest.approx([100_000 / 3600] * len(it), rel=1e-6)
    assert (tmp_path / "state" / "pipeline.npz").exists()


def test_check_config_accepts_a_good_file_and_names_what_is_wrong(tmp_path):
    conf = write_config(tmp_path, free_port(), free_port())
    ok = subprocess.run([*PUEWATCH, "collector", "--config", str(conf), "--check-config"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "PUE category 1" in ok.stdout
    text = conf.read_text().replace('role = "facility_input"', 'role = "cooling"')
    conf.write_text(text)
    bad = subprocess.run([*PUEWATCH, "collector", "--config", str(conf), "--check-config"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert 'the site cannot give a PUE: no meter has role "facility_input"' in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    conf.write_text(text.replace('role = "cooling"', 'role = "facility_input"') + "\n[meters.x]\nrole = \"it\"\npoint = \"pdu_output\"\ndevice = \"nope\"\n")
    bad = subprocess.run([*PUEWATCH, "collector", "--config", str(conf), "--check-config"], capture_output=True, text=True)
    assert bad.returncode == 2 and "meters.x.device: no SNMP device 'nope'" in bad.stderr
