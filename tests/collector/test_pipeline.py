"""The live pipeline against hand-computed energies and ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest

from puewatch.collector.pipeline import Pipeline, format_window, parse_duration
from puewatch.core.timefmt import MINUTE, SECOND
from puewatch.core.site import Meter, SiteModel, Zone

T0 = 1_700_000_000 * SECOND  # a whole minute


def site(**extra) -> SiteModel:
    meters = {
        "incomer": Meter(role="facility_input", device="pdu0"),
        "ups": Meter(role="it", point="ups_output", device="ups0", zone="hall-a"),
        "crac": Meter(role="cooling", device="crac0", zone="hall-a"),
    }
    meters.update(extra)
    return SiteModel("fra1", meters, {"hall-a": Zone(nodes=["gpu-a-*"])})


def parse(batches):
    """measurement -> list of (tags, fields, time) of the pipeline's typed batches."""
    out = {}
    for batch in batches:
        for m, tags, fields, t in batch.rows():
            out.setdefault(m, []).append((tags, fields, t))
    return out


def feed(p: Pipeline, seconds: int, *, fac_w=1300.0, it_w=1000.0, cool_w=250.0, it_alive=lambda s: True, start=0,
         it_register=None, step=True):
    """One reading per second per meter (at +0.3 s); IT as a Wh register unless it_register gives values."""
    lines = []
    for s in range(start, start + seconds):
        t = T0 + s * SECOND + 300_000_000
        p.add_meter("incomer", t, fac_w, t)
        p.add_meter("crac", t, cool_w, t)
        if it_alive(s):
            value = it_register(s) if it_register else 5000.0 + it_w * (s + 0.3) / 3600.0
            p.add_meter("ups", t, value, t, register=True, resolution=0.0)
        if step:
            lines.append(p.step(t + 100_000_000))
    return lines


def test_constant_power_gives_the_power_ratio_in_every_window():
    p = Pipeline(site(), windows_ns=[MINUTE, 2 * MINUTE], settle_ns=5 * SECOND, min_coverage=0.9)
    out = parse(feed(p, 200))
    energy = [f for _, f, _ in out["site_energy"]]
    assert len(energy) > 150
    for f in energy:
        assert f["facility_input_wh"] == pytest.approx(1300 / 3600, rel=1e-12)
        assert f["it_wh"] == pytest.approx(1000 / 3600, rel=1e-9)
        assert f["cooling_wh"] == pytest.approx(250 / 3600, rel=1e-12)
    pue = [(tags, f) for tags, f, _ in out["pue"] if "pue" in f]
    assert {tags["window"] for tags, _ in pue} == {"1m", "2m"}
    assert all(tags["category"] == "1" for tags, _ in pue)
    for _, f in pue:
        assert f["pue"] == pytest.approx(1.3, rel=1e-9)
        assert f["clf"] == pytest.approx(0.25, rel=1e-9)
        assert f["pue_coverage"] >= 0.9
    # Full windows are fully covered.
    assert max(f["pue_coverage"] for _, f in pue) == pytest.approx(1.0, abs=1e-12)
    # Partial PUE of the hall: (IT + cooling) / IT.
    ppue = [f for _, f, _ in out["ppue"] if "ppue" in f]
    assert ppue and all(f["ppue"] == pytest.approx(1.25, rel=1e-9) for f in ppue)
    # Early windows (history shorter than the window) are reported with their coverage but no ratio.
    early = [f for tags, f, _ in out["pue"] if tags["window"] == "2m" and f["pue_coverage"] < 0.9]
    assert early and all("pue" not in f for f in early)


@pytest.mark.parametrize("cells_a_step", [1, 5])
def test_every_window_is_the_ratio_of_its_cells_also_when_a_step_writes_several(cells_a_step):
    """Found by the live-PUE audit: where one step writes several cells (a meter read every 5 s, a stream that
    lags then catches up, a restart), the longest window of each but the last lost its oldest cells: the history
    kept only the longest window's cells, so its coverage and ratio were those of a shorter span (a CLF left out
    at 0.878 coverage whose own was 0.911). Each window's ratio and coverage, recomputed here from the cells'
    jointly known sides (site_energy's pue_* fields), for every window and every cell."""
    windows = [20 * SECOND, MINUTE, 2 * MINUTE]
    p = Pipeline(site(), windows_ns=windows, settle_ns=5 * SECOND, min_coverage=0.9)
    rng = np.random.default_rng(5)
    reg = 5000.0
    batches = []
    for s in range(400):
        t = T0 + s * SECOND + 300_000_000
        reg += float(rng.uniform(800, 1200)) / 3600.0
        p.add_meter("incomer", t, float(rng.uniform(1200, 1500)), t)
        p.add_meter("crac", t, 250.0, t)
        if not 150 <= s < 160:  # IT away for 10 s: coverage below 1 for a while
            p.add_meter("ups", t, reg, t, register=True, resolution=0.0)
        if s % cells_a_step == cells_a_step - 1:
            batches.append(p.step(t + 100_000_000))
    out = parse(batches)
    cells = {t: f for _, f, t in out["site_energy"]}
    checked = 0
    for tags, f, end in out["pue"]:
        w = int(parse_duration(tags["window"]))
        inside = [c for t, c in cells.items() if end - w < t <= end]
        covered = sum(c.get("pue_known_s", 0.0) for c in inside) * SECOND / w
        assert f["pue_coverage"] == pytest.approx(covered, rel=1e-12, abs=1e-12), (tags["window"], end)
        if covered >= 0.9:
            fac = sum(c.get("pue_facility_input_wh", 0.0) for c in inside)
            it = sum(c.get("pue_it_wh", 0.0) for c in inside)
            assert f["pue"] == pytest.approx(fac / it, rel=1e-12), (tags["window"], end)
            checked += 1
        else:
            assert "pue" not in f
    assert checked > 3 * 250


def test_energy_is_conserved_across_steps_and_meters():
    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    out = parse(feed(p, 90))
    meters = {}
    for tags, f, t in out["meter_energy"]:
        meters.setdefault(tags["meter"], []).append((t, f["energy_wh"], tags["method"]))
    assert {m for m, *_ in [(k,) for k in meters]} == {"incomer", "ups", "crac"}
    assert {x[2] for x in meters["ups"]} == {"register"}
    assert {x[2] for x in meters["incomer"]} == {"integrated"}
    times = [t for t, _, _ in meters["ups"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert np.all(np.diff(times) == SECOND)
    total = sum(e for _, e, _ in meters["ups"])
    assert total == pytest.approx(1000 / 3600 * len(times), rel=1e-9)


def test_register_wrap_and_reset_never_give_negative_energy():
    modulus = 1000.0
    it_w = 3600.0 * 10  # 10 Wh per second: wraps every 100 s

    def register(s):
        if s < 150:
            return (900.0 + 10.0 * s) % modulus
        return 10.0 * (s - 150)  # reset to zero at s = 150

    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    lines = []
    for s in range(0, 200):
        t = T0 + s * SECOND
        p.add_meter("incomer", t, 1.1 * it_w, t)
        p.add_meter("crac", t, 0.0, t)
        p.add_meter("ups", t, register(s), t, register=True, modulus=modulus)
        lines.append(p.step(t + 1))
    out = parse(lines)
    ups = [(t, f["energy_wh"]) for tags, f, t in out["meter_energy"] if tags["meter"] == "ups"]
    assert all(e == pytest.approx(10.0) for _, e in ups)  # across both wraps
    # The interval across the reset (s = 149 -> 150) is missing, not a lower bound: no
    # energy for that cell, and no PUE bias from it.
    times = {t for t, _ in ups}
    assert T0 + 150 * SECOND not in times and T0 + 149 * SECOND in times and T0 + 151 * SECOND in times
    assert p.streams["ups"].outcomes["wrap"] == 2  # at s = 10 and s = 110
    assert p.streams["ups"].outcomes["reset"] == 1
    pue = [f["pue"] for tags, f, _ in out["pue"] if "pue" in f]
    assert pue and all(x == pytest.approx(1.1, rel=1e-9) for x in pue)  # the reset cell biases nothing


def test_a_dead_meter_becomes_missing_and_the_pue_disappears_below_coverage():
    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND, min_coverage=0.9)
    out = parse(feed(p, 240, it_alive=lambda s: s < 100 or s >= 160))
    it = {t: f.get("it_wh") for _, f, t in out["site_energy"]}
    dead = [t for t, v in it.items() if v is None]
    # The hole is about 60 s long (the cells around it are not fully covered) and never zero.
    assert 55 <= len(dead) <= 63
    assert all(v is None or v > 0 for v in it.values())
    # The horizon kept moving while the meter was dead: the facility kept being written.
    fac_times = [t for _, f, t in out["site_energy"] if "facility_input_wh" in f]
    assert max(fac_times) >= T0 + 230 * SECOND
    rows = [(t, f) for tags, f, t in out["pue"] if tags["window"] == "1m"]
    gap_rows = [f for t, f in rows if T0 + 120 * SECOND <= t <= T0 + 160 * SECOND]
    assert gap_rows and all("pue" not in f and f["pue_coverage"] < 0.9 for f in gap_rows)
    later = [f for t, f in rows if t > T0 + 230 * SECOND]
    assert later and all(f["pue"] == pytest.approx(1.3, rel=1e-9) for f in later)


def test_the_jointly_known_sides_of_pue_and_ppue_sum_to_the_ratio_over_any_span():
    """Found by the InfluxDB audit: an hour's PUE made from the hourly sums of facility_input_wh and it_wh (what
    `influx setup` downsamples) was 1.87 for a site at 1.25 where the IT meter was away for 20 minutes (each side
    summed over its own cells). Each cell also holds the PUE's (and each zone's pPUE's) sides where both are
    known, and the cell's length then: summed over any span, they give the ratio over the time both were known."""
    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND, min_coverage=0.9)
    out = parse(feed(p, 240, it_alive=lambda s: s < 100 or s >= 160))
    rows = [f for _, f, _ in out["site_energy"]]
    one_sided = [f for f in rows if "facility_input_wh" in f and "it_wh" not in f]
    assert one_sided and all("pue_facility_input_wh" not in f and "pue_known_s" not in f for f in one_sided)
    both = [f for f in rows if "facility_input_wh" in f and "it_wh" in f]
    assert all(f["pue_facility_input_wh"] == f["facility_input_wh"] and f["pue_it_wh"] == f["it_wh"]
               and f["pue_known_s"] == 1.0 for f in both)
    fac = sum(f.get("pue_facility_input_wh", 0.0) for f in rows)
    it = sum(f.get("pue_it_wh", 0.0) for f in rows)
    assert fac / it == pytest.approx(1.3, rel=1e-9)  # the site's PUE, where summing each side alone is not
    assert sum(f.get("facility_input_wh", 0.0) for f in rows) / sum(f.get("it_wh", 0.0) for f in rows) > 1.5
    assert sum(f.get("pue_known_s", 0.0) for f in rows) == len(both)
    zone = [f for _, f, _ in out["zone_energy"]]
    assert all(("ppue_it_wh" in f) == ("it_wh" in f and "boundary_wh" in f) for f in zone)
    assert (sum(f.get("ppue_boundary_wh", 0.0) for f in zone) / sum(f.get("ppue_it_wh", 0.0) for f in zone)
            == pytest.approx(1.25, rel=1e-9))


def test_gpu_energy_per_node_and_zone_and_its_share_of_it():
    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    lines = []
    for s in range(120):
        t = T0 + s * SECOND + 200_000_000
        p.add_meter("incomer", t, 1300.0, t)
        p.add_meter("crac", t, 250.0, t)
        p.add_meter("ups", t, 1000.0 * s / 3600, t, register=True)
        for node in ("gpu-a-1", "gpu-b-1"):
            for gpu in ("0", "1"):
                p.add_gpu(node, gpu, t, 100_000.0 * s, t)  # 100 W each, in mJ
        lines.append(p.step(t + 1))
    out = parse(lines)
    nodes = {tags["node"]: tags.get("zone") for tags, _, _ in out["gpu_energy"]}
    assert nodes == {"gpu-a-1": "hall-a", "gpu-b-1": None}
    for _, f, _ in out["gpu_energy"]:
        assert f["energy_wh"] == pytest.approx(200 / 3600, rel=1e-9)
    share = [f["gpu_it_share"] for tags, f, _ in out["pue"] if "gpu_it_share" in f]
    assert share and all(x == pytest.approx(0.4, rel=1e-9) for x in share)
    zshare = [f["gpu_it_share"] for _, f, _ in out["ppue"] if "gpu_it_share" in f]
    assert zshare and all(x == pytest.approx(0.2, rel=1e-9) for x in zshare)


def test_long_windows_run_on_minutes_and_survive_a_restart(tmp_path):
    windows = [MINUTE, 3 * 3600 * SECOND]
    p = Pipeline(site(), windows_ns=windows, settle_ns=5 * SECOND, min_coverage=0.0, state_dir=tmp_path)
    out = parse(feed(p, 600))
    long = [(t, f) for tags, f, t in out["pue"] if tags["window"] == "3h"]
    # One point per completed minute, at whole minutes.
    assert long and all(t % MINUTE == 0 for t, _ in long)
    assert all(f["pue"] == pytest.approx(1.3, rel=1e-9) for _, f in long)
    cov_before = long[-1][1]["pue_coverage"]
    p.save()
    # A new process: the history comes back from the checkpoint.
    q = Pipeline(site(), windows_ns=windows, settle_ns=5 * SECOND, min_coverage=0.0, state_dir=tmp_path)
    assert q.restore()
    out2 = parse(feed(q, 300, start=600))
    long2 = [f for tags, f, t in out2["pue"] if tags["window"] == "3h"]
    assert long2 and long2[-1]["pue_coverage"] > cov_before
    assert long2[-1]["pue_coverage"] == pytest.approx((900 - 10) / (3 * 3600), abs=2 / 180)
    # A pipeline with other windows does not take the checkpoint.
    r = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND, state_dir=tmp_path)
    assert not r.restore()


def test_restart_after_downtime_counts_the_gap_as_missing(tmp_path):
    windows = [15 * MINUTE]
    p = Pipeline(site(), windows_ns=windows, settle_ns=5 * SECOND, min_coverage=0.0, state_dir=tmp_path)
    feed(p, 900)
    p.save()
    q = Pipeline(site(), windows_ns=windows, settle_ns=5 * SECOND, min_coverage=0.0, state_dir=tmp_path)
    assert q.restore()
    q.catch_up(T0 + 1200 * SECOND)  # five minutes down
    # The missing cells go into the history, but no more of it than the longest window (review: the history
    # kept a window's cells more for each new one, which a downtime's, no window computed for, need not).
    assert q._fine.t_end.shape[0] == q._fine.keep + 1
    out = parse(feed(q, 30, start=1200))
    cov = [f["pue_coverage"] for tags, f, t in out["pue"]]
    # About 10 of the last 15 minutes have data.
    assert cov and cov[-1] == pytest.approx(10 / 15, abs=0.03)


def test_a_hall_sub_incomer_feeds_its_pue_boundary_not_e_dc():
    """A zoned facility_input behind the site incomer is the hall's pPUE boundary: E_DC counts the incomer once."""
    s = site(**{"hall-a-in": Meter(role="facility_input", device="pdu9", zone="hall-a")})
    assert s.members("facility_input") == {"incomer": 1.0}
    assert s.boundary("hall-a") == {"hall-a-in": 1.0}
    p = Pipeline(s, windows_ns=[MINUTE], settle_ns=5 * SECOND, min_coverage=0.9)
    lines = []
    for sec in range(120):
        t = T0 + sec * SECOND + 300_000_000
        p.add_meter("incomer", t, 1300.0, t)
        p.add_meter("hall-a-in", t, 1200.0, t)  # the hall's share of the incomer's 1300 W
        p.add_meter("crac", t, 250.0, t)
        p.add_meter("ups", t, 1000.0, t)
        lines.append(p.step(t + 100_000_000))
    out = parse(lines)
    energy = [f for _, f, _ in out["site_energy"]]
    assert energy and all(f["facility_input_wh"] == pytest.approx(1300 / 3600, rel=1e-12) for f in energy)
    pue = [f["pue"] for _, f, _ in out["pue"] if "pue" in f]
    assert pue and all(x == pytest.approx(1.3, rel=1e-9) for x in pue)  # not (1300 + 1200) / 1000
    ppue = [f["ppue"] for _, f, _ in out["ppue"] if "ppue" in f]
    assert ppue and all(x == pytest.approx(1.2, rel=1e-9) for x in ppue)
    # Without a site-level incomer, the halls' own feeds are summed.
    halls = SiteModel("x", {
        "a-in": Meter(role="facility_input", device="d1", zone="a"),
        "b-in": Meter(role="facility_input", device="d2", zone="b"),
        "it": Meter(role="it", point="pdu_output", device="d3", zone="a"),
    })
    assert halls.members("facility_input") == {"a-in": 1.0, "b-in": 1.0}
    assert halls.members("facility_input", "b") == {"b-in": 1.0}
    assert halls.problems() == []


@pytest.mark.parametrize("zone", ["c", ""])
def test_it_fed_by_no_input_is_refused_when_every_input_is_zoned(zone):
    """Every facility_input in a zone: E_DC is the zones' inputs, so IT elsewhere would make PUE too low."""
    meters = {
        "a-in": Meter(role="facility_input", device="d1", zone="a"),
        "it-a": Meter(role="it", point="pdu_output", device="d2", zone="a"),
        "it-x": Meter(role="it", point="pdu_output", device="d3", zone=zone),
    }
    problems = SiteModel("x", meters).problems()
    assert [key for key, _ in problems] == ["meters.it-x.zone"]
    where = "zone 'c', which has" if zone else "no zone, and the site has"
    assert problems[0][1].startswith(f"the site cannot give a PUE: IT meter 'it-x' is in {where} no facility_input meter")
    # A site-level incomer feeds it: fine.
    meters["incomer"] = Meter(role="facility_input", device="d4")
    assert SiteModel("x", meters).problems() == []


def test_a_series_is_one_meter_s():
    """Found by the operator audit: one series mapped to the incomer and to an IT meter passed --check-config and
    gave PUE 1.000 with no warning; a meter whose tags also select another's series read both as one."""
    def ingest(role: str, **tags: str) -> Meter:
        return Meter(role=role, point="ups_output" if role == "it" else "", measurement="meter", tags=tags, field="e",
                     unit="Wh", register=True)

    meters = {"inc": ingest("facility_input", name="inc"), "it": ingest("it", name="it"),
              "cool": ingest("cooling", name="cool", host="a"), "pdu": Meter(role="it", point="pdu_output", device="p"),
              "out1": Meter(role="it", point="it_input", device="p", reading="outlet_1")}
    assert SiteModel("x", meters).problems() == []
    meters["itx"] = ingest("it", name="inc")
    meters["cool2"] = ingest("cooling", name="cool")  # selects cool's series (name=cool, host=a) too
    meters["pdu2"] = Meter(role="it", point="pdu_output", device="p")
    meters["out1b"] = Meter(role="it", point="it_input", device="p", reading="outlet_1")
    meters["other"] = ingest("cooling", name="cool", host="b")  # tells itself apart from cool: fine
    assert sorted(SiteModel("x", meters).problems()) == [
        ("meters.cool2.tags", "also select the series of meter 'cool' (meter.e, host=a, name=cool): a series is one "
                              "meter's; list a tag that tells them apart"),
        ("meters.cool2.tags", "also select the series of meter 'other' (meter.e, host=b, name=cool): a series is one "
                              "meter's; list a tag that tells them apart"),
        ("meters.itx", "reads the same series as meter 'inc' (meter.e, tags {'name': 'inc'}): a series is one meter's"),
        ("meters.out1b", "reads what meter 'out1' reads (device 'p', outlet_1): a reading is one meter's"),
        ("meters.pdu2", "reads what meter 'pdu' reads (device 'p', the device's total): a reading is one meter's"),
    ]
    # Naming the device's total reads what naming nothing reads (its energy register, else its power).
    for reading in ("total_active_energy", "total_active_power"):
        named = {"inc": meters["inc"], "it": meters["it"], "pdu": meters["pdu"],
                 "pdu-total": Meter(role="it", point="pdu_output", device="p", reading=reading)}
        assert SiteModel("x", named).problems() == [
            ("meters.pdu-total", "reads what meter 'pdu' reads (device 'p', the device's total): a reading is one "
                                 "meter's")]


def test_site_model_rules():
    s = site(
        pdu=Meter(role="it", point="pdu_output", device="pdu1"),
        outlet=Meter(role="it", point="it_input", device="pdu2"),
    )
    assert s.category == 1  # the coarsest IT measurement point wins
    assert SiteModel("x", {"u": Meter(role="it", point="pdu_output", device="d")}).problems()[0][1].startswith(
        "the site cannot give a PUE: no meter has role \"facility_input\""
    )
    assert "no meter has role \"it\"" in SiteModel("x", {"u": Meter(role="facility_input", device="d")}).problems()[0][1]
    assert s.zone_of_node("gpu-a-17") == "hall-a" and s.zone_of_node("login-1") == ""
    assert s.node_zone_warning("gpu-a-17") is None
    # A site named with a space around it would be another site to the city (found by the input audit).
    assert SiteModel("fra1 ", s.meters).problems() == [
        ("collector.site", "must be a name without spaces around it or control characters, got 'fra1 '")]


def test_zones_whose_node_patterns_overlap_are_refused_and_a_node_in_two_is_said(caplog):
    """Found by the input audit: [zones.hall-a] nodes = ["gpu-*"] beside [zones.hall-b] nodes = ["gpu-b-*"] passed
    --check-config, and node gpu-b-01 took hall-a's pPUE and counted in hall-a's GPU energy, unsaid."""
    meters = {"inc": Meter(role="facility_input", device="d0"), "it": Meter(role="it", point="ups_output", device="d1")}
    overlap = SiteModel("x", meters, {"hall-a": Zone(nodes=["gpu-*"]), "hall-b": Zone(nodes=["login", "gpu-b-*"])})
    assert overlap.problems() == [("zones.hall-b.nodes", "pattern 'gpu-b-*' overlaps zone 'hall-a''s 'gpu-*': a node in "
                                   "both would count in one zone alone; make the zones' patterns disjoint")]
    assert SiteModel("x", meters, {"hall-a": Zone(nodes=["gpu-a-*"]), "hall-b": Zone(nodes=["gpu-b-*"])}).problems() == []
    # An overlap no pattern shows (gpu-a1 is both): said where the node is seen, the first zone keeps it.
    hidden = SiteModel("x", meters, {"hall-a": Zone(nodes=["gpu-?1"]), "hall-b": Zone(nodes=["gpu-a*"])})
    assert hidden.problems() == [] and hidden.zone_of_node("gpu-a1") == "hall-a"
    said = ("node 'gpu-a1' matches the node patterns of zones 'hall-a', 'hall-b': its GPU energy counts in 'hall-a' "
            "alone; make the zones' [zones] nodes patterns disjoint")
    assert hidden.node_zone_warning("gpu-a1") == said and hidden.node_zone_warning("gpu-b1") is None
    p = Pipeline(hidden, windows_ns=[MINUTE], settle_ns=5 * SECOND)
    with caplog.at_level("WARNING"):
        for gpu in ("0", "1"):
            p.add_gpu("gpu-a1", gpu, 10**18, 1000.0, 10**18)
    assert [r.getMessage() for r in caplog.records] == [f"pipeline: {said}"]
    assert Meter(role="it", device="d").check()[0][0] == "point"
    assert Meter(role="cooling", device="d", measurement="m").check()[0][0] == "device"
    assert ("register", "a field in kWh is cumulative: set `register = true`") in Meter(
        role="cooling", measurement="modbus", field="e", unit="kWh"
    ).check()
    assert Meter(role="water", measurement="m", field="v", unit="m3", register=True).check() == []
    assert Meter(role="water", measurement="m", field="v", unit="kWh", register=True).check()[0][0] == "unit"


def test_durations():
    assert [format_window(w) for w in (MINUTE, 15 * MINUTE, 3600 * SECOND, 86400 * SECOND, 30 * 86400 * SECOND)] == [
        "1m", "15m", "1h", "24h", "30d"]
    assert parse_duration("30d") == 30 * 86400 * SECOND
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("15 minutes")
    with pytest.raises(ValueError, match="must divide one minute"):
        Pipeline(site(), interval_ns=7 * SECOND)
    assert math.isnan(Pipeline(site()).latest()[0])


def test_a_frozen_incomer_gives_no_pue_below_one_and_counts_it():
    # The incomer's register is frozen (0 Wh per cell) while IT draws 1 kW: PUE would be 0.
    p = Pipeline(site(incomer=Meter(role="facility_input", device="pdu0")), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    lines = []
    for s in range(150):
        t = T0 + s * SECOND
        p.add_meter("incomer", t, 777.0, t, register=True)
        p.add_meter("crac", t, 100.0, t)
        p.add_meter("ups", t, 5000.0 + 1000.0 * s / 3600.0, t, register=True)
        lines.append(p.step(t + 1))
    out = parse(lines)
    assert out["site_energy"] and any(f.get("facility_input_wh") == 0.0 for _, f, _ in out["site_energy"])
    assert not [f for _, f, _ in out["pue"] if "pue" in f]  # never published below its floor
    assert any("pue_coverage" in f for _, f, _ in out["pue"])  # the point is still written, without the ratio
    assert p.below_floor["pue"] > 0
    assert "pue" not in p.no_denominator  # IT energy was there: a PUE under 1, not an unknown denominator
    assert math.isnan(p.latest("pue")[0])


def test_a_clock_jump_ahead_invents_no_energy_and_later_readings_still_count():
    # An agent's clock jumps a year ahead for 15 s: those readings are refused (further ahead
    # of their arrival than settle_s), so the later, right readings still count, and nothing is
    # interpolated towards the future reading.
    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    year = 365 * 86400 * SECOND
    lines = []
    for s in range(120):
        t = T0 + s * SECOND
        stamp = t + year if 40 <= s < 55 else t
        p.add_meter("incomer", t, 1300.0, t)
        p.add_meter("crac", t, 250.0, t)
        p.add_meter("ups", t, 5000.0 + 1000.0 * s / 3600.0, t, register=True)
        p.add_gpu("gpu-a-1", "GPU-0", stamp, 1e6 + 700.0 * 1000 * s, t)
        lines.append(p.step(t + 1))
    out = parse(lines)
    gpu = sorted((t, f["energy_wh"]) for _, f, t in out["gpu_energy"])
    assert p.gpu_streams[("gpu-a-1", "GPU-0")].future_refused == 15
    assert max(t for t, _ in gpu) <= T0 + 120 * SECOND  # nothing past the clock
    assert all(e == pytest.approx(700.0 / 3600.0, rel=1e-9) for _, e in gpu)  # 700 W, every cell it has
    assert any(t > T0 + 60 * SECOND for t, _ in gpu)  # readings after the jump count again


def test_metrics_show_each_meter_s_outcomes_limit_and_refusals():
    from prometheus_client import generate_latest

    from puewatch.collector.metrics import CollectorMetrics

    p = Pipeline(site(ups=Meter(role="it", point="ups_output", device="ups0", zone="hall-a", max_power_w=20_000.0),
                      pdu=Meter(role="it", point="pdu_output", device="pdu1", zone="hall-a")),
                 windows_ns=[MINUTE], settle_ns=5 * SECOND)
    m = CollectorMetrics()
    m.add_pipeline(p)
    for s in range(30):
        t = T0 + s * SECOND
        p.add_meter("incomer", t, -26.0 if s == 10 else 1300.0, t)
        p.add_meter("crac", t, 250.0, t)
        p.add_meter("ups", t, 5000.0 + (1000.0 if s >= 20 else 0.0) + s, t, register=True)  # +1000 Wh in 1 s
        # a register reading of -3 Wh cannot be: not a reading, counted and logged once
        p.add_meter("pdu", t, -3.0 if s in (12, 13) else 100.0 + s, t, register=True)
        p.step(t + 1)
    text = generate_latest(m.registry).decode()
    assert 'puewatch_register_readings_refused_total{meter="pdu"} 2.0' in text
    assert 'puewatch_register_readings_refused_total{meter="ups"} 0.0' in text
    assert "puewatch_register_readings_refused_total{meter=\"incomer\"}" not in text  # a power meter
    assert 'puewatch_register_intervals_total{meter="ups",outcome="jump"} 1.0' in text
    assert 'puewatch_power_readings_refused_total{meter="incomer"} 1.0' in text
    assert 'puewatch_power_limit_watts{meter="ups",source="configured"} 20000.0' in text
    assert 'puewatch_power_limit_watts{meter="crac",source="none"} NaN' in text
    # A meter whose readings change kind (restart_meter: an SNMP energy register answers where its power was read)
    # keeps its counts: they fell to 0 inside one process (found by the metrics audit).
    p.restart_meter("incomer")
    p.restart_meter("ups")
    text = generate_latest(m.registry).decode()
    assert 'puewatch_power_readings_refused_total{meter="incomer"} 1.0' in text
    assert 'puewatch_register_intervals_total{meter="ups",outcome="jump"} 1.0' in text
    t = T0 + 31 * SECOND
    p.add_meter("ups", t, 100.0, t, register=True)
    p.add_meter("ups", t + SECOND, 101.0, t + SECOND, register=True)
    p.step(t + 2 * SECOND)
    text = generate_latest(m.registry).decode()
    assert 'puewatch_register_intervals_total{meter="ups",outcome="jump"} 1.0' in text
    assert 'puewatch_register_intervals_total{meter="ups",outcome="counted"} ' in text


def test_an_interval_that_could_hide_one_more_wrap_is_counted_and_logged_live(caplog):
    # A 100 Wh register (modulus) at 5 kW, limit 20 kW: a 40 s silence could hide one more
    # wrap (its increase + 100 Wh is still possible in 40 s at 20 kW), so its energy is a lower
    # bound: counted, on /metrics, and logged in a report's words; the 1 s intervals could not.
    import logging

    from prometheus_client import generate_latest

    from puewatch.collector.metrics import CollectorMetrics

    p = Pipeline(site(ups=Meter(role="it", point="ups_output", device="ups0", zone="hall-a", max_power_w=20_000.0)),
                 windows_ns=[MINUTE], settle_ns=5 * SECOND)
    m = CollectorMetrics()
    m.add_pipeline(p)
    with caplog.at_level(logging.WARNING, logger="puewatch.collector.pipeline"):
        for s in range(120):
            t = T0 + s * SECOND
            p.add_meter("incomer", t, 1300.0, t)
            p.add_meter("crac", t, 250.0, t)
            if not 30 < s < 70:
                p.add_meter("ups", t, (50.0 + s * 5000.0 / 3600.0) % 100.0, t, register=True, modulus=100.0)
            p.step(t + 1)
    ups = p.streams["ups"]
    assert ups.uncertain_wraps == 1
    assert ups.outcomes["wrap"] == 2 and ups.outcomes["reset"] == 0  # the gap's, and a certain one 1 s long
    text = generate_latest(m.registry).decode()
    assert 'puewatch_register_uncertain_wraps_total{meter="ups"} 1.0' in text
    assert 'puewatch_register_uncertain_wraps_total{meter="incomer"}' not in text  # a gauge has no wraps
    warned = [r.getMessage() for r in caplog.records if "wrap once more unseen" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("meter 'ups': 1 register interval(s) (the first ")
    assert "limit 20000 W (configured)" in warned[0]


def test_a_device_rating_limits_its_meters_live_as_in_a_report():
    # The UPS's device reports its ratings (upsConfigOutputPower / upsConfigOutputVA): without a
    # configured max_power_w the stream's limit is twice the lower one, the jump above it is
    # refused, and a later, lower report of the rating does not lower the limit (the largest is kept,
    # as a report takes the largest over its period). A 0 (unpopulated) is no rating.
    from prometheus_client import generate_latest

    from puewatch.collector.metrics import CollectorMetrics
    from puewatch.core import energy as policy

    p = Pipeline(site(ups=Meter(role="it", point="ups_output", device="ups0", zone="hall-a")),
                 windows_ns=[MINUTE], settle_ns=5 * SECOND)
    m = CollectorMetrics()
    m.add_pipeline(p)
    p.add_rating("ups0", "rated_power", 0.0)
    for s in range(30):
        t = T0 + s * SECOND
        if s == 1:
            p.add_rating("ups0", "rated_power", 9000.0)
            p.add_rating("ups0", "rated_apparent_power", 10_000.0)
        if s == 25:
            p.add_rating("ups0", "rated_power", 4000.0)
        p.add_meter("incomer", t, 1300.0, t)
        p.add_meter("crac", t, 250.0, t)
        p.add_meter("ups", t, 5000.0 + (1000.0 if s >= 20 else 0.0) + s, t, register=True)  # +1000 Wh in 1 s
        p.step(t + 1)
    assert p.streams["ups"].limit() == policy.PowerLimit(policy.RATED_LIMIT_FACTOR * 9000.0, "rated")
    text = generate_latest(m.registry).decode()
    assert 'puewatch_register_intervals_total{meter="ups",outcome="jump"} 1.0' in text
    assert 'puewatch_power_limit_watts{meter="ups",source="rated"} 18000.0' in text


def test_a_register_interval_longer_than_settle_is_a_gap_live_however_many_cells_are_open():
    """The IT register is silent for 350 s with settle_s 300, while a cooling gauge that stopped earlier holds
    the horizon back: the interval's second reading finds many of its cells still open. Live, none of them is
    observed (the report counts that interval's energy as estimated, its time a gap); before, the open part
    was counted as observed energy and the live PUE had coverage 1 over time the report calls a gap (found
    by the live-vs-report audit)."""
    from puewatch.core import schema

    sm = SiteModel("s", {
        "incomer": Meter(role="facility_input", device="d0"),
        "it": Meter(role="it", point="pdu_output", device="d1"),
        "crac": Meter(role="cooling", device="d2"),
    })
    p = Pipeline(sm, windows_ns=[MINUTE], settle_ns=300 * SECOND)
    it_cells: dict[int, float] = {}
    for s in range(0, 1201, 5):
        t = T0 + s * SECOND
        p.add_meter("incomer", t, 150_000.0 * s / 3600.0, t, register=True)
        if not 600 < s < 950:
            p.add_meter("it", t, 100_000.0 * s / 3600.0, t, register=True)
        if s < 800:
            p.add_meter("crac", t, 20_000.0, t)
        for measurement, tags, fields, ts in p.step(t + SECOND).rows():
            if measurement == schema.METER_ENERGY and tags["meter"] == "it":
                it_cells[ts] = fields[schema.ENERGY_WH]
    silent = [ts for ts in it_cells if T0 + 600 * SECOND < ts <= T0 + 950 * SECOND]
    assert silent == [], f"{len(silent)} cells of the 350 s interval observed live"
    assert any(T0 + 955 * SECOND <= ts for ts in it_cells)  # the readings after it count again
    assert any(ts <= T0 + 600 * SECOND for ts in it_cells)


def test_a_frozen_it_register_gives_no_pue_and_is_counted_and_logged(caplog):
    """The UPS (IT) register is frozen while the incomer draws 1.3 kW: the window is covered, but the PUE cannot be
    known (its denominator's energy is 0). It is left out, as a report leaves it out, and now counted on /metrics
    and logged once, naming the meters (the live-vs-report audit: live said nothing)."""
    import logging

    from prometheus_client import generate_latest

    from puewatch.collector.metrics import CollectorMetrics

    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    m = CollectorMetrics()
    m.add_pipeline(p)
    lines = []
    with caplog.at_level(logging.WARNING, logger="puewatch.collector.pipeline"):
        for s in range(150):
            t = T0 + s * SECOND
            p.add_meter("incomer", t, 1300.0, t)
            p.add_meter("crac", t, 100.0, t)
            p.add_meter("ups", t, 5000.0, t, register=True)  # frozen
            lines.append(p.step(t + 1))
    out = parse(lines)
    assert not [f for _, f, _ in out["pue"] if "pue" in f]
    assert p.no_denominator["pue"] > 0 and "pue" not in p.below_floor
    text = generate_latest(m.registry).decode()
    assert f'puewatch_ratio_denominator_not_positive_total{{ratio="pue"}} {float(p.no_denominator["pue"])}' in text
    said = [r.getMessage() for r in caplog.records if "cannot be known" in r.getMessage()]
    # once each ratio whose denominator is IT energy: the PUE, the CLF and the hall's pPUE
    assert sorted(x.split(" over ")[0] for x in said) == ["clf", "pue", "zone:hall-a:ppue"], said
    assert all("its denominator's energy is 0 or less" in x and "Denominator meters: ups." in x for x in said), said


def test_a_reading_stamped_ahead_within_ingest_s_window_is_taken_at_its_time_as_a_report_takes_it():
    """Found by the collector audit: a reading 45 s ahead (inside ingest's 300 s window, so stored with a 204
    and counted by `report`) was refused by the pipeline (further ahead than settle_s): live PUE and the
    stored cells left it out. It is held until the horizon reaches it, then taken in order; and a meter
    whose clock runs a minute fast has every reading held and its cells all the same."""
    from puewatch.collector.pipeline import Stream

    st = Stream("m", False)
    half = SECOND // 2
    assert st.add(T0 + 45 * SECOND + half, 500.0, T0, 5 * SECOND, 300 * SECOND)  # held
    assert st.t == [] and len(st.future) == 1
    for s in range(45):
        assert st.add(T0 + s * SECOND, 100.0, T0 + s * SECOND, 5 * SECOND, 300 * SECOND)
    assert st.release(T0 + 44 * SECOND, T0 + 40 * SECOND) == 0 and st.future  # past the horizon, the stream heard: held
    for s in range(45, 50):  # the reading at 46 s takes the held one in first, between 45 s and 46 s
        assert st.add(T0 + s * SECOND, 100.0, T0 + s * SECOND, 5 * SECOND, 300 * SECOND)
    assert not st.future and st.t[44:48] == [T0 + 44 * SECOND, T0 + 45 * SECOND, T0 + 45 * SECOND + half, T0 + 46 * SECOND]
    assert st.v[46] == 500.0 and st.future_refused == 0
    # Held, and then written again at its time: the later write is the reading, as the store keeps it.
    assert st.add(T0 + 60 * SECOND, 7.0, T0 + 49 * SECOND, 5 * SECOND, 300 * SECOND) and st.future
    assert st.add(T0 + 60 * SECOND, 100.0, T0 + 60 * SECOND, 5 * SECOND, 300 * SECOND) and not st.future
    assert st.add(T0 + 61 * SECOND, 100.0, T0 + 61 * SECOND, 5 * SECOND, 300 * SECOND) and st.future_refused == 0
    assert st.t[-2:] == [T0 + 60 * SECOND, T0 + 61 * SECOND] and st.v[-2:] == [100.0, 100.0]
    # Beyond ingest's window (which keeps such a line out of the store too): refused and counted.
    assert not st.add(T0 + 400 * SECOND, 1.0, T0, 5 * SECOND, 300 * SECOND) and st.future_refused == 1

    fast = 60 * SECOND
    def run(skew: int) -> dict:
        p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
        lines = []
        for s in range(240):
            t = T0 + s * SECOND
            p.add_meter("incomer", t + skew, 1300.0, t)
            p.add_meter("crac", t, 250.0, t)
            p.add_meter("ups", t, 5000.0 + 1000.0 * s / 3600.0, t, register=True)
            lines.append(p.step(t + 1))
        return parse(lines)

    on_time, ahead = run(0), run(fast)
    def incomer(out):
        return {t: f for tags, f, t in out["meter_energy"] if tags.get("meter") == "incomer"}
    a, b = incomer(on_time), incomer(ahead)
    shared = sorted(set(a) & set(b))
    assert len(shared) > 100  # the fast meter's cells, a minute later in its own time, are there
    for t in shared:
        assert b[t] == a[t]


def test_readings_out_of_order_are_taken_in_time_order_until_their_cells_are_written():
    """Found by the live/report audit: a reading sent after a later one (in one request, or within
    settle_s) was refused live while the store kept it, and a reading rewritten at its time kept its
    first value live where the store keeps the last write. Now both are taken as the store keeps them,
    up to the readings whose interval has gone into written cells (frozen): later than that, a reading
    is refused and counted, the one difference by construction (docs/auditor-guide.md)."""
    from puewatch.collector.pipeline import Stream

    st = Stream("m", True, max_power_w=1e9)
    def add(s: int, v: float) -> bool:
        return st.add(T0 + s * SECOND, v, T0 + 30 * SECOND, 5 * SECOND, 300 * SECOND)
    assert all(add(s, float(s)) for s in (0, 10, 30, 20))  # 20 after 30: taken between them
    assert st.t == [T0, T0 + 10 * SECOND, T0 + 20 * SECOND, T0 + 30 * SECOND]
    assert add(20, 21.0) and st.v == [0.0, 10.0, 21.0, 30.0]  # written again at its time: the last write
    cells, _ = st.cells(T0 + np.arange(0, 16, dtype=np.int64) * SECOND)  # horizon 15 s: (10, 20] across it
    assert cells.tolist() == [1.0] * 10 + [1.1] * 5
    assert st.frozen_ns == T0 + 20 * SECOND and st.t[0] == T0 + 10 * SECOND
    assert not add(15, 15.0) and not add(20, 22.0) and st.late_refused == 2  # its cells written: too late
    assert add(25, 25.0) and st.t == [T0 + 10 * SECOND, T0 + 20 * SECOND, T0 + 25 * SECOND, T0 + 30 * SECOND]

    # Counted on /metrics, per stream.
    from prometheus_client import generate_latest

    from puewatch.collector.metrics import CollectorMetrics

    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    m = CollectorMetrics()
    m.add_pipeline(p)
    for s in range(30):
        t = T0 + s * SECOND
        p.add_meter("ups", t, 5000.0 + s, t, register=True)
        p.step(t + 1)
    p.add_meter("ups", T0 + 3 * SECOND, 5003.0, T0 + 30 * SECOND, register=True)
    assert 'puewatch_readings_too_late_total{stream="ups"} 1.0' in generate_latest(m.registry).decode()


def test_a_new_stream_s_backlog_behind_written_cells_is_too_late_not_counted():
    """Found by the collector fault audit: a feeder whose first readings arrive stamped 5 minutes back (Telegraf's
    buffer after a restart) had them run through the register policy, which counted their intervals as
    "counted" on /metrics, though their cells were written already (as missing) and got no energy. They are
    too late, counted so; the last of them stays, as the start of the interval into the cells still open."""
    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    feed(p, 400, it_alive=lambda s: False)  # the incomer and the CRAC for 400 s: cells written to ~395 s
    written = p.horizon
    assert written is not None and written >= T0 + 390 * SECOND
    # The UPS register's first readings: 25, 10 s apart, from 300 s back, then the present ones.
    arrival = T0 + 400 * SECOND
    for s in range(100, 350, 10):
        p.add_meter("ups", T0 + s * SECOND, 5000.0 + s / 3.6, arrival, register=True, resolution=0.0)
    out = feed(p, 20, start=400, it_register=lambda s: 5000.0 + (s + 0.3) / 3.6)
    st = p.streams["ups"]
    assert st.late_refused == 24  # all but the last (at 340 s): their intervals lie in written cells
    # The intervals counted are those that reach into cells written from now on: (340 s, 400.3 s] and the
    # present ones, never the 24 before.
    assert st.outcomes["counted"] <= 20, st.outcomes
    rows = parse(out).get("meter_energy", [])
    ups = [(f["energy_wh"], t) for tags, f, t in rows if tags["meter"] == "ups"]
    assert ups and all(t > written for _, t in ups)


def test_readings_from_before_a_fresh_start_are_not_counted_late():
    """Review: a fresh collector's first step only sets its horizon; readings stamped before it had no cell,
    written or not, so they are let go without counting them too late (an alert on the count fired on every
    cold start). After a restore, cells before the checkpoint were written: there they count."""
    p = Pipeline(site(), windows_ns=[MINUTE], settle_ns=5 * SECOND)
    for s in range(-60, 1):  # a minute of the incomer's buffered readings, sent at start
        t = T0 + s * SECOND
        p.add_meter("incomer", t, 1300.0, T0)
    p.step(T0 + SECOND)
    assert p.fresh_from == T0
    feed(p, 10, it_alive=lambda s: True)
    assert p.streams["incomer"].late_refused == 0 and len(p.streams["incomer"].t) <= 3
