"""The host source on fixture sysfs trees: RAPL wrap handling, unreadable zones reported once, not as zero; which
zones are the node's host energy (the job ledger's host share) and how a break in them is handled."""

import logging

import pytest
from agent_support import parse_line

from puewatch.agent.sources.base import Context
from puewatch.agent.sources.host import Config, Source, counted_zones
from puewatch.agent.sources.jobs import host_power_w


class Clock:
    """The host module's clock: samples 1 s apart on the monotonic clock, as the agent takes them (a step of a
    counter is judged against the time between its readings); `wall_offset_ns` steps the wall clock alone."""

    def __init__(self) -> None:
        self.mono = 10**12
        self.wall_offset_ns = 1_800_000_000 * 10**9

    def monotonic_ns(self) -> int:
        self.mono += 10**9
        return self.mono

    def time_ns(self) -> int:
        return self.mono + 10**9 + self.wall_offset_ns  # the sample reads the wall clock first


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    import puewatch.agent.sources.host as host

    c = Clock()
    monkeypatch.setattr(host, "time", c)
    return c


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
    assert rapl["intel-rapl:0"] == {"energy_uj": 0, "counted": True}  # counter starts; no power without a delta yet
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


def _sources(tmp_path, zones):
    base = rapl_tree(tmp_path, zones)
    src = Source(Config(sysfs_root=str(tmp_path)), Context("n1"))
    src.open()
    return base, src


def test_the_host_energy_rule_packages_and_dram_never_psys_with_them(tmp_path):
    # A two-socket server (package + core + dram each) and a client with psys beside its package.
    server = [("intel-rapl:0", "package-0", 0, 10**12), ("intel-rapl:0:0", "core", 0, 10**12), ("intel-rapl:0:1", "dram", 0, 10**12),
              ("intel-rapl:1", "package-1", 0, 10**12), ("intel-rapl:1:0", "core", 0, 10**12), ("intel-rapl:1:1", "dram", 0, 10**12)]
    _, src = _sources(tmp_path / "server", server)
    assert {z.zone for z in src.zones if z.counted} == {"intel-rapl:0", "intel-rapl:0:1", "intel-rapl:1", "intel-rapl:1:1"}
    client = [("intel-rapl:0", "package-0", 0, 10**12), ("intel-rapl:0:0", "core", 0, 10**12),
              ("intel-rapl:0:1", "uncore", 0, 10**12), ("intel-rapl:1", "psys", 0, 10**12)]
    _, src = _sources(tmp_path / "client", client)
    assert {z.zone for z in src.zones if z.counted} == {"intel-rapl:0"}  # psys holds the package: never both
    _, src = _sources(tmp_path / "psys", [("intel-rapl:1", "psys", 0, 10**12)])
    assert [z.counted for z in src.zones] == [True]  # the platform alone, where no package zone exists
    assert counted_zones(["package-0", "core", "uncore", "dram", "psys"]) == [True, False, False, True, False]


def test_host_reading_sums_the_counted_zones_across_a_wrap_of_each(tmp_path):
    # The ranges of a real package (and psys) and DRAM zone: 262 kJ and 65.7 kJ.
    pkg, dram = 262_143_328_850, 65_712_999_613
    zones = [("intel-rapl:0", "package-0", pkg - 1_000, pkg), ("intel-rapl:0:0", "core", 500, pkg),
             ("intel-rapl:0:1", "dram", dram - 1_999_990, dram), ("intel-rapl:1", "psys", 5, pkg)]
    base, src = _sources(tmp_path, zones)
    src.sample()
    first = src.energy_reading()
    assert first.energy_uj == 0
    steps = [{"intel-rapl:0": 1_000, "intel-rapl:0:0": 900_000, "intel-rapl:0:1": dram - 1_000, "intel-rapl:1": 3_000_000},
             {"intel-rapl:0": 3_000, "intel-rapl:0:0": 1_000_000, "intel-rapl:0:1": 9_000, "intel-rapl:1": 3_000_100}]
    # package: wraps -> 1_000 (2_000), then 2_000; dram: 1_998_990, then wraps: 10_000
    expected = [2_000 + 1_998_990, 2_000 + 10_000]
    total = 0
    for step, uj in zip(steps, expected):
        for zone, raw in step.items():
            (base / zone / "energy_uj").write_text(f"{raw}\n")
        src.sample()
        reading = src.energy_reading()
        total += uj
        assert reading.energy_uj == total and reading.breaks == 0 and reading.time_ns > first.time_ns
    start, end = first, src.energy_reading()
    w, estimated, unknown = host_power_w(start, end, None)
    assert w == total / 1e6 / ((end.time_ns - start.time_ns) / 1e9) and not estimated and not unknown


def test_an_unreadable_counted_zone_breaks_the_host_energy(tmp_path):
    base, src = _sources(tmp_path, [("intel-rapl:0", "package-0", 1000, 10**12), ("intel-rapl:0:0", "dram", 1000, 10**12)])
    src.sample()
    start = src.energy_reading()
    energy = base / "intel-rapl:0:0" / "energy_uj"
    energy.unlink()
    energy.mkdir()  # unreadable (EISDIR: root reads mode-0400 files)
    src.sample()
    assert src.energy_reading() is None
    assert host_power_w(start, None, 350.0) == (350.0, True, False)
    assert host_power_w(start, None, None) == (0.0, False, True)
    energy.rmdir()
    energy.write_text("900000\n")
    src.sample()
    end = src.energy_reading()
    assert end is not None and end.breaks == start.breaks + 1
    # The energy while the zone was unreadable is not known: never the two readings' difference.
    assert host_power_w(start, end, None) == (0.0, False, True)
    assert host_power_w(None, end, 200.0) == (200.0, True, False)


def test_a_counter_that_goes_back_or_cannot_be_is_no_energy_and_breaks_the_host_energy(tmp_path, clock):
    """Found by the host audit: any drop was taken as a wrap (a reset to 0 added a whole max_energy_range_uj:
    261 kW of package power, billed as measured), a value past the range gave trillions of watts and then
    negative ones, and a wall-clock step divided by the wrong time (100 W read 1.6 W)."""
    pkg_range, dram_range = 262_143_328_850, 65_712_999_613
    base, src = _sources(tmp_path, [("intel-rapl:0", "package-0", 1_200_000_000, pkg_range),
                                    ("intel-rapl:0:0", "dram", 5_000_000, dram_range)])
    ctx = src.ctx
    src.sample()
    start = src.energy_reading()

    def step(pkg: int, dram: int) -> dict:
        (base / "intel-rapl:0" / "energy_uj").write_text(f"{pkg}\n")
        (base / "intel-rapl:0:0" / "energy_uj").write_text(f"{dram}\n")
        return {t["zone"]: f for t, f, _ in by_measurement(src.sample()).get("host_rapl", [])}

    ok = step(1_300_000_000, 5_010_000)  # 100 W and 10 mW
    assert ok["intel-rapl:0"]["power_w"] == pytest.approx(100.0) and ok["intel-rapl:0:0"]["power_w"] == pytest.approx(0.01)
    # The package reset to 0 (a driver reload), the DRAM counter 5 mJ back: neither is a wrap.
    bad = step(0, 5_005_000)
    assert "power_w" not in bad["intel-rapl:0"] and "power_w" not in bad["intel-rapl:0:0"]
    assert bad["intel-rapl:0"]["energy_uj"] == 100_000_000 and bad["intel-rapl:0:0"]["energy_uj"] == 10_000
    end = src.energy_reading()
    assert end.breaks == start.breaks + 2  # both counted zones broke: the ledger estimates the host share there
    assert host_power_w(start, end, None) == (0.0, False, True)
    # On from the new values: 100 W again.
    assert step(100_000_000, 5_015_000)["intel-rapl:0"]["power_w"] == pytest.approx(100.0)
    # A value past max_energy_range_uj is no reading: no line for the zone, no negative power after it.
    assert "intel-rapl:0" not in step(pkg_range + 10**15, 5_025_000)
    after = step(300_000_000, 5_035_000)
    assert after["intel-rapl:0"]["power_w"] == pytest.approx(100.0)  # 200 J over the 2 s since the last good one
    # (A real wrap still counts: test_host_reading_sums_the_counted_zones_across_a_wrap_of_each.)
    # The wall clock stepped a minute ahead between two samples: the rate is still over the 1 s between them.
    clock.wall_offset_ns += 60 * 10**9
    assert step(400_000_000, 5_045_000)["intel-rapl:0"]["power_w"] == pytest.approx(100.0)
    said = [parse_line(e) for e in ctx.take_pending()]
    assert [(t["event"], t["zone"]) for _, t, _, _ in said] == [
        ("energy_counter_reset", "intel-rapl:0"), ("energy_counter_reset", "intel-rapl:0:0"),
        ("energy_counter_jump", "intel-rapl:0")]
    assert "went back from 1300000000 to 0: a reset, not a wrap" in said[0][2]["message"]
    assert "is outside 0..max_energy_range_uj" in said[2][2]["message"]


def test_a_zone_added_after_the_start_is_read_and_the_counted_ones_are_marked(tmp_path, clock, caplog):
    """Found by the host audit: a zone that appeared after the start (a socket, the powercap driver loaded later)
    was never read, and nothing said so; and the stored host_rapl points did not say which zones make the host
    energy (core lies inside the package, psys holds the packages: summing every zone counted some twice)."""
    import puewatch.agent.sources.host as host

    base, src = _sources(tmp_path, [("intel-rapl:0", "package-0", 1_000_000, 10**12),
                                    ("intel-rapl:0:0", "core", 1_000_000, 10**12)])
    first = {t["zone"]: f for t, f, _ in by_measurement(src.sample())["host_rapl"]}
    assert first["intel-rapl:0"]["counted"] is True and first["intel-rapl:0:0"]["counted"] is False
    breaks = src.energy_reading().breaks
    d = base / "intel-rapl:1"
    d.mkdir()
    (d / "name").write_text("package-1\n")
    (d / "energy_uj").write_text("5000000\n")
    (d / "max_energy_range_uj").write_text(f"{10**12}\n")
    clock.mono += host.RESCAN_NS  # a minute on: the zones are listed again
    with caplog.at_level(logging.WARNING):
        lines = by_measurement(src.sample())
    zones = {t["zone"]: f for t, f, _ in lines["host_rapl"]}
    assert zones["intel-rapl:1"] == {"energy_uj": 0, "counted": True}
    assert src.energy_reading().breaks == breaks + 1  # the host energy is another sum from here
    (event,) = [parse_line(e) for e in src.ctx.take_pending()]
    assert event[1]["event"] == "rapl_zones_changed"
    assert event[2]["message"] == ("RAPL zone(s) added: intel-rapl:1 (package-1); the node's host energy is "
                                   "package-0 + package-1")
    assert any("RAPL zone(s) added" in r.getMessage() for r in caplog.records)


def test_a_first_reading_that_cannot_be_starts_nothing(tmp_path, clock):
    """Found by the host audit: the first reading (and the first after a zone came back) was never checked, so
    one past the range became the counter's start and every later energy negative (-1e9 W), with no break."""
    pkg = 262_143_328_850
    base, src = _sources(tmp_path, [("intel-rapl:0", "package-0", pkg + 10**15, pkg)])
    energy = base / "intel-rapl:0" / "energy_uj"
    assert "host_rapl" not in by_measurement(src.sample())  # no reading: no line, no start
    assert src.energy_reading() is None  # the zone's energy, so the node's host energy, is not known
    assert "host_rapl" not in by_measurement(src.sample()) and src.energy_reading() is None  # said once (below)
    for raw in (300_000_000, 400_000_000):
        energy.write_text(f"{raw}\n")
        lines = by_measurement(src.sample())
    (tags, fields, _), = lines["host_rapl"]
    assert fields["energy_uj"] == 100_000_000 and fields["power_w"] == pytest.approx(100.0)
    reading = src.energy_reading()
    assert reading.energy_uj == 100_000_000 and reading.breaks == 1
    (event,) = [parse_line(e) for e in src.ctx.take_pending()]
    assert event[1]["event"] == "energy_counter_jump"
    assert event[2]["message"] == (f"RAPL zone intel-rapl:0 (package-0): energy_uj {pkg + 10**15} is outside "
                                   f"0..max_energy_range_uj ({pkg}); no start for its energy yet")
    assert src.ctx.errors == 1


def test_an_interval_long_enough_for_a_counter_to_wrap_is_refused_with_rapl():
    """Found by the closing review: interval_s up to 3600 was taken, and every interval over 33 s is a break for a
    65.7 kJ DRAM counter (unwrap_uj): the host energy would never be measured."""
    assert Config(interval_s=15.0).check() == []
    assert Config(interval_s=20.0, rapl=False).check() == []
    (problem,) = Config(interval_s=20.0).check()
    assert problem[0] == "interval_s" and problem[1].startswith("must be at most 15 with rapl = true, got 20: a RAPL "
                                                                "counter can wrap unseen in 33 s")


def test_readings_far_enough_apart_to_hide_a_wrap_are_a_break(tmp_path, clock):
    """Found by the host audit: a 1000 s stall at 350 W (350 kJ, more than the package's 262 kJ range) read as
    87.9 kJ, one wrap, measured. At ZONE_MAX_W a 262 kJ counter can wrap every 131 s: readings further apart
    than that hold an unknown number of wraps."""
    import puewatch.agent.sources.host as host

    pkg = 262_143_328_850
    base, src = _sources(tmp_path, [("intel-rapl:0", "package-0", 1_000_000, pkg)])
    energy = base / "intel-rapl:0" / "energy_uj"
    src.sample()
    start = src.energy_reading()
    clock.mono += int(pkg / 1e6 / host.ZONE_MAX_W * 1e9)  # 131 s more: 132 s since the last reading
    energy.write_text(f"{(1_000_000 + 350_000_000_000) % pkg}\n")
    (tags, fields, _), = by_measurement(src.sample())["host_rapl"]
    assert "power_w" not in fields and fields["energy_uj"] == 0
    end = src.energy_reading()
    assert end.breaks == start.breaks + 1 and host_power_w(start, end, None) == (0.0, False, True)
    (event,) = [parse_line(e) for e in src.ctx.take_pending()]
    assert event[1]["event"] == "energy_counter_gap" and "how many times it wrapped is not known" in event[2]["message"]
    # 1 s later it counts again: one step (the time just under a wrap at ZONE_MAX_W still counts: 130 s).
    energy.write_text(f"{(1_000_000 + 350_100_000_000) % pkg}\n")
    (tags, fields, _), = by_measurement(src.sample())["host_rapl"]
    assert fields["power_w"] == pytest.approx(100.0)
    assert host.unwrap_uj(5, pkg - 5, pkg, 130.0) == (10, "", "")


def test_a_zone_whose_domain_or_range_cannot_be_read_is_said_and_never_guessed(tmp_path, clock, caplog):
    """Found by the host audit: a package zone whose `name` could not be read took its directory's name, was not
    counted, and the host energy became DRAM alone, without a word; an unreadable max_energy_range_uj was
    silently unknown (every later wrap a break). And int() took energy_uj "1_000"."""
    base = rapl_tree(tmp_path, [("intel-rapl:0", "package-0", 1_000, 10**12), ("intel-rapl:0:0", "dram", 1_000, 10**12)])
    (base / "intel-rapl:0" / "name").unlink()
    (base / "intel-rapl:0" / "name").mkdir()  # unreadable (EISDIR)
    (base / "intel-rapl:0:0" / "max_energy_range_uj").write_text("garbage\n")
    src = Source(Config(sysfs_root=str(tmp_path)), Context("n1"))
    with caplog.at_level(logging.WARNING):
        src.open()
    assert [z.name for z in src.zones] == ["unknown", "dram"] and src.zones[1].max_range_uj is None
    src.sample()
    src.sample()
    assert src.energy_reading() is None  # which zones make it is not known
    said = {parse_line(e)[1]["zone"]: parse_line(e)[2]["message"] for e in src.ctx.take_pending()}
    assert "which domain it is is not known, so neither is the node's host energy" in said["intel-rapl:0"]
    assert ("max_energy_range_uj: not a whole number of µJ: b'garbage'" in said["intel-rapl:0:0"]
            and "where it wraps is not known" in said["intel-rapl:0:0"])
    assert src.ctx.errors == 2
    (base / "intel-rapl:0:0" / "energy_uj").write_text("1_000\n")
    src.sample()
    (event,) = [parse_line(e) for e in src.ctx.take_pending()]
    assert event[1]["event"] == "rapl_unreadable" and "not a whole number of µJ: b'1_000'" in event[2]["message"]

