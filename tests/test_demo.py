"""`puewatch demo`: the whole simulated site as a real process tree, its summary checked against the store it leaves."""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from puewatch import demo, demo_site as site
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.demo import parse_store
from puewatch.errors import UserError

PUEWATCH = [sys.executable, "-m", "puewatch.cli"]


def _processes_under(d: Path) -> list[psutil.Process]:
    """Processes whose command line names the demo directory (agents, collector, snmpsim)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(d) in a for a in (p.info["cmdline"] or [])):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def _joint_sums(store: EmbeddedStore, start_ns: int, end_ns: int) -> tuple[float, float, int]:
    tags = {"site": "demo"}
    tf, f = store.series("site_energy", "facility_input_wh", tags, start_ns, end_ns)
    ti, it = store.series("site_energy", "it_wh", tags, start_ns, end_ns)
    fac = dict(zip(tf.tolist(), f.tolist()))
    both = [(fac[t], v) for t, v in zip(ti.tolist(), it.tolist()) if t in fac and math.isfinite(fac[t]) and math.isfinite(v)]
    return sum(a for a, _ in both), sum(b for _, b in both), len(both)


@pytest.mark.slow
def test_demo_runs_a_site_and_its_summary_is_the_store_s_energy_ratio(tmp_path):
    d = tmp_path / "site"
    t0 = time.monotonic()
    r = subprocess.run([*PUEWATCH, "demo", "--duration", "25", "--nodes", "2", "--json", "--dir", str(d)],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - t0 < 90
    summary = json.loads(r.stdout)
    for key in ("pue", "it_energy_wh", "facility_energy_wh", "category", "coverage", "zones", "start_ns", "end_ns"):
        assert key in summary, key
    assert summary["category"] == 2  # IT measured at the rack PDUs (pdu_output)
    assert 1.05 < summary["pue"] < 1.6
    assert 0 < summary["coverage"] <= 1
    assert summary["interrupted"] is False
    assert set(summary["zones"]) == {"hall-a", "hall-b"}
    for z in summary["zones"].values():
        assert 1.0 < z["ppue"] < 1.2  # the zone's CRAH over its PDU

    path = Path(summary["store"]["path"])
    assert path == d / "state" / "puewatch.sqlite"
    store = EmbeddedStore(path)
    fac, it, cells = _joint_sums(store, summary["start_ns"], summary["end_ns"])
    assert cells == summary["cells"] and cells >= 5
    assert summary["facility_energy_wh"] == pytest.approx(fac, rel=1e-9)
    assert summary["it_energy_wh"] == pytest.approx(it, rel=1e-9)
    assert summary["pue"] == pytest.approx(fac / it, rel=1e-6)
    # About 2 x (1.5 kW host + ~4 kW of GPUs) + 2 x 0.6 kW of network per second of data.
    assert 2.0 < it / cells < 5.0, it / cells

    # The real profiles answered over SNMP, and the meters moved with the load.
    readings = set(store.tag_values("snmp_reading", "reading"))
    assert {"unit0_input1_active_energy", "output_active_energy", "psu_sensor12_active_power",
            "incomer_energy", "total_active_power"} <= readings, readings
    start, end = summary["start_ns"], summary["end_ns"]
    _, pdu_w = store.series("snmp_reading", "value", {"device": "pdu-hall-a", "reading": "total_active_power"}, start, end)
    assert len(pdu_w) >= 10 and len(set(pdu_w.tolist())) > 3
    _, wh = store.series("snmp_reading", "value", {"device": "incomer", "reading": "total_active_energy"}, start, end)
    assert wh[-1] > wh[0] and all(b >= a for a, b in zip(wh, wh[1:]))
    methods = store.tag_values("meter_energy", "method")
    assert {"register", "integrated"} <= set(methods)  # PDUs' Wh registers, the CRAHs' power integrated
    assert set(store.tag_values("gpu_energy", "node")) == {"gpu-a-1", "gpu-b-1"}

    # The summary's closing lines give the auditor's report of the run; it runs, from the raw readings,
    # and its PUE over the jointly observed time is the live pipeline's.
    text = io.StringIO()
    demo.print_summary(summary, parse_store(None, d), d, False, out=text)
    command = next(line.split() for line in text.getvalue().splitlines() if line.strip().startswith("puewatch report"))
    rep = subprocess.run([*PUEWATCH, *command[1:], "--json"], capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    report = json.loads(rep.stdout)
    assert report["category"] == 2 and report["source"]["kind"] == "embedded"
    assert report["pue_joint"] == pytest.approx(summary["pue"], rel=0.05)

    # Nothing left behind.
    assert json.loads((d / "pids.json").read_text())["children"] == {}
    assert _processes_under(d) == []


@pytest.mark.slow
def test_ctrl_c_stops_every_process_and_still_summarises(tmp_path):
    d = tmp_path / "site"
    proc = subprocess.Popen([*PUEWATCH, "demo", "--duration", "300", "--nodes", "1", "--json", "--dir", str(d)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(n.startswith("agent-") for n in pids):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            try:
                pids = json.loads((d / "pids.json").read_text())["children"]
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        assert {"snmpsim", "collector", "agent-gpu-a-1"} <= set(pids), pids
        time.sleep(12)
        t_int = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - t_int
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 130), err[-3000:]
    assert stopped_in < 40
    summary = json.loads(out)
    assert summary["interrupted"] is True
    # A few seconds of 1 Wh registers: the incomer (facility) and the two PDUs (IT) are each known to
    # one register step, and each recording is up to RECORDING_PERIOD_S stale at either end of the run.
    # The site model's PUE (1.24-1.34 for one node) must lie inside what those readings allow.
    fac, it, cells = summary["facility_energy_wh"], summary["it_energy_wh"], summary["cells"]
    assert cells >= 3, summary
    stale = demo.RECORDING_PERIOD_S / (cells * demo.INTERVAL_S)  # relative, per meter
    lo = (fac * (1 - stale) - 1.0) / (it * (1 + stale) + 2.0)
    hi = (fac * (1 + stale) + 1.0) / (it * (1 - stale) - 2.0)
    assert lo < 1.34 and hi > 1.24, (summary["pue"], lo, hi, fac, it, cells)
    assert summary["pue"] == pytest.approx(fac / it, rel=1e-9)
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
    assert _processes_under(d) == []
    assert json.loads((d / "pids.json").read_text())["children"] == {}


def test_meter_registers_are_the_integral_of_the_simulated_power():
    """The PDU's Wh register advances by the exact energy of the nodes the agents simulate."""
    nodes = site.make_nodes(3)
    t0 = 1_800_000_000.0
    state = site.SiteState(nodes, t0)
    before = dict(state.energy_wh)
    for k in range(1, 121):  # two minutes in half-second updates, as the demo does
        state.advance(t0 + 0.5 * k)
    t1 = t0 + 60.0
    for zone in site.ZONES:
        members = [n for n in nodes if n.zone == zone]
        exact_j = site.ZONE_BASE_W * 60.0 + sum(
            site.HOST_BASE_W * 60.0 + sum(g.energy_j(t1) - g.energy_j(t0) for g in n.gpus) / site.PSU_EFFICIENCY
            for n in members
        )
        assert state.energy_wh[f"pdu-{zone}"] - before[f"pdu-{zone}"] == pytest.approx(exact_j / 3600.0, rel=1e-4)
    p = site.powers(nodes, t1)
    it = sum(p[f"pdu-{z}"] for z in site.ZONES)
    assert 1.15 < p["incomer"] / it < 1.4
    assert p["incomer"] > p["ups"] > it


def test_recordings_keep_their_layout_as_values_move(tmp_path):
    """Fixed widths: rewriting a recording never moves a line (snmpsim may keep its offset index)."""
    nodes = site.make_nodes(2)
    state = site.SiteState(nodes, 1_800_000_000.0)
    first = site.recordings(state, 1_800_000_000.0)
    state.advance(1_800_000_123.4)
    later = site.recordings(state, 1_800_000_000.0)
    assert first.keys() == later.keys() == {"incomer", "ups", "chiller", "pdu-hall-a", "crah-hall-a", "pdu-hall-b", "crah-hall-b"}
    for name in first:
        a, b = first[name].splitlines(), later[name].splitlines()
        assert [len(x) for x in a] == [len(x) for x in b], name
        oids = [tuple(int(p) for p in line.split("|")[0].split(".")) for line in a]
        assert oids == sorted(oids), name
    assert first["pdu-hall-a"] != later["pdu-hall-a"]
    site.write_recordings(tmp_path, later, 1_800_000_555)
    assert (tmp_path / "ups.snmprec").read_text() == later["ups"]
    assert int((tmp_path / "ups.snmprec").stat().st_mtime) == 1_800_000_555


def test_store_forms(tmp_path):
    assert parse_store(None, tmp_path).path == tmp_path / "state" / "puewatch.sqlite"
    assert parse_store("sqlite:///x/y.sqlite", tmp_path).path == Path("/x/y.sqlite")
    assert parse_store("sqlite:rel.sqlite", tmp_path).path == Path("rel.sqlite").resolve()
    s = parse_store("http://u:p%40ss@127.0.0.1:8086/site", tmp_path)
    assert (s.kind, s.url, s.database, s.user, s.password) == ("influx1", "http://127.0.0.1:8086", "site", "u", "p@ss")
    for bad in ("http://127.0.0.1:8086", "http://127.0.0.1:8086/a/b", "ftp://h/db", "sqlite:"):
        with pytest.raises(UserError):
            parse_store(bad, tmp_path)


def test_bad_arguments_are_one_line_errors(tmp_path):
    r = subprocess.run([*PUEWATCH, "demo", "--nodes", "0", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip() == "puewatch demo: error: --nodes must be between 1 and 64, got 0"
    r = subprocess.run([*PUEWATCH, "demo", "--store", "ftp://x/y", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "--store" in r.stderr


@pytest.mark.slow
def test_demo_writes_to_influxdb_with_store_url(tmp_path):
    """`--store http://host:port/DB`: the database is created, the collector writes there, the summary reads it back."""
    sys.path.insert(0, str(Path(__file__).parent))
    from servers import influxd

    from puewatch.collector.stores.influx1 import Influx1Store

    with influxd(tmp_path / "influxd") as db:
        d = tmp_path / "site"
        r = subprocess.run(
            [*PUEWATCH, "demo", "--duration", "12", "--nodes", "1", "--json", "--dir", str(d), "--store", f"{db.url}/demo_site"],
            capture_output=True, text=True, timeout=150,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        summary = json.loads(r.stdout)
        assert summary["store"]["kind"] == "influx1" and summary["store"]["database"] == "demo_site"
        assert not (d / "state" / "puewatch.sqlite").exists()
        reader = Influx1Store(db.url, "demo_site")
        tf, f = reader.series("site_energy", "facility_input_wh", {"site": "demo"}, summary["start_ns"], summary["end_ns"])
        ti, it = reader.series("site_energy", "it_wh", {"site": "demo"}, summary["start_ns"], summary["end_ns"])
        fac = dict(zip(tf.tolist(), f.tolist()))
        both = [(fac[t], v) for t, v in zip(ti.tolist(), it.tolist()) if t in fac]
        assert len(both) == summary["cells"] >= 3
        assert summary["pue"] == pytest.approx(sum(a for a, _ in both) / sum(b for _, b in both), rel=1e-6)
        assert 1.05 < summary["pue"] < 1.6 and summary["category"] == 2
        assert _processes_under(d) == []
