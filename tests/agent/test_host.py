"""The host source on a fixture sysfs tree: RAPL wrap handling, unreadable zones reported once, not as zero."""

import logging

from agent_support import parse_line

from puewatch.agent.sources.base import Context
from puewatch.agent.sources.host import Config, Source


def rapl_tree(root, zones):
    base = root / "class" / "powercap"
    base.mkdir(parents=True)
    for zone, name, energy, max_range in zones:
        d = base / zone
        d.mkdir()
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return base


def by_measurement(lines):
    out = {}
    for line in lines:
        m, tags, fields, ts = parse_line(line)
        out.setdefault(m, []).append((tags, fields, ts))
    return out


def test_host_fields_and_rapl_wrap(tmp_path):
    base = rapl_tree(tmp_path, [("intel-rapl:0", "package-0", 262_143_000_000, 262_143_328_850), ("intel-rapl:0:0", "dram", 5_000, 65_532_610_987)])
    ctx = Context("n1", {"site": "s"})
    src = Source(Config(sysfs_root=str(tmp_path)), ctx)
    src.open()
    first = by_measurement(src.sample())
    host = first["host"][0]
    assert host[0] == {"node": "n1", "site": "s"}
    assert 0.0 <= host[1]["cpu_util_pct"] <= 100.0
    assert host[1]["memory_total_bytes"] > 0 and host[1]["memory_used_bytes"] > 0
    assert {"load1", "load5", "load15", "cpus", "memory_available_bytes"} <= set(host[1])
    rapl = {t["zone"]: f for t, f, _ in first["host_rapl"]}
    assert rapl["intel-rapl:0"] == {"energy_uj": 0}  # counter starts; no power without a delta yet
    assert first["host_rapl"][0][0]["domain"] == "package-0"

    # package wraps: 262_143_000_000 -> max 262_143_328_850 -> 0 -> 671_150 = 1_000_000 uJ
    (base / "intel-rapl:0" / "energy_uj").write_text("671150\n")
    (base / "intel-rapl:0:0" / "energy_uj").write_text("2005000\n")
    second = by_measurement(src.sample())
    rapl = {t["zone"]: f for t, f, _ in second["host_rapl"]}
    assert rapl["intel-rapl:0"]["energy_uj"] == 1_000_000
    assert rapl["intel-rapl:0"]["power_w"] > 0
    assert rapl["intel-rapl:0:0"]["energy_uj"] == 2_000_000


def test_unreadable_rapl_reported_once_and_never_as_zero(tmp_path, caplog):
    base = rapl_tree(tmp_path, [("intel-rapl:0", "package-0", 1000, 262_143_328_850)])
    energy = base / "intel-rapl:0" / "energy_uj"
    energy.unlink()
    energy.mkdir()  # reading it fails (root can read mode-0400 files, so use EISDIR instead)
    ctx = Context("n1")
    src = Source(Config(sysfs_root=str(tmp_path)), ctx)
    src.open()
    with caplog.at_level(logging.WARNING):
        out = [src.sample() for _ in range(3)]
    for sample in out:
        assert not any(l.startswith("host_rapl") for l in sample)  # left out, not zero
        assert any(l.startswith("host,") for l in sample)  # the rest goes on
    warnings = [r for r in caplog.records if "RAPL zone intel-rapl:0" in r.getMessage()]
    assert len(warnings) == 1 and "unreadable" in warnings[0].getMessage()
    events = ctx.take_pending()
    assert len(events) == 1
    m, tags, fields, _ = parse_line(events[0])
    assert m == "puewatch_event" and tags["event"] == "rapl_unreadable" and "intel-rapl:0" in fields["message"]
    assert ctx.errors == 1


def test_no_powercap_says_so_without_error(tmp_path, caplog):
    ctx = Context("n1")
    src = Source(Config(sysfs_root=str(tmp_path)), ctx)
    with caplog.at_level(logging.INFO):
        src.open()
    assert "no powercap zones" in caplog.text
    assert ctx.errors == 0 and not ctx.pending
    assert [l for l in src.sample() if l.startswith("host,")]
