"""The report computation on hand-computed sites."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from puewatch.core.site import Meter, SiteModel
from puewatch.core.timefmt import NS, format_time, is_annual, parse_time
from puewatch.report.engine import MeterReadings, ReportOptions, compute_report

H = 3600 * NS
START = parse_time("2025-03-01")
END = parse_time("2025-03-03")  # two days


def _site(it_point: str = "ups_output", **extra: Meter) -> SiteModel:
    meters = {
        "inc": Meter(role="facility_input", device="d1", accuracy_pct=0.5),
        "it1": Meter(role="it", point=it_point, device="d2", accuracy_pct=1.0),
        **extra,
    }
    return SiteModel("s", meters)


def _times(step_s: int = 60, start: int = START, end: int = END) -> np.ndarray:
    return np.arange(start - 15 * 60 * NS, end + 15 * 60 * NS + 1, step_s * NS, dtype=np.int64)


def _register(t: np.ndarray, watts: float, start_wh: float = 1000.0) -> np.ndarray:
    return start_wh + watts * (t - t[0]) / H


def _const(t: np.ndarray, watts: float) -> np.ndarray:
    return np.full(t.size, watts)


@pytest.mark.parametrize("point,category", [("ups_output", 1), ("pdu_output", 2), ("it_input", 3)])
def test_constant_loads_give_exact_energies_and_pue_per_category(point: str, category: int) -> None:
    t = _times()
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(_site(point), readings, START, END)
    assert r["category"] == category
    assert r["label"] == f"iPUE_L{category} 2025-03-01..2025-03-03"
    assert r["annual"] is False
    assert r["facility_energy_wh"] == pytest.approx(150.0 * 48, rel=1e-12)
    assert r["it_energy_wh"] == pytest.approx(100.0 * 48, rel=1e-12)
    assert r["pue"] == pytest.approx(1.5, rel=1e-12)
    assert r["completeness"] == 1.0
    by = {m["meter"]: m for m in r["meters"]}
    assert by["inc"]["method"] == "register" and by["inc"]["estimated_wh"] == 0.0
    assert by["it1"]["method"] == "integrated" and by["it1"]["estimated_wh"] == pytest.approx(4800.0, rel=1e-12)
    # Estimated share: all of E_IT, none of E_DC.
    assert r["estimated_share"] == pytest.approx(4800.0 / (4800.0 + 7200.0), rel=1e-12)
    assert [d["pue"] for d in r["daily"]] == pytest.approx([1.5, 1.5], rel=1e-12)
    assert [d["facility_energy_wh"] for d in r["daily"]] == pytest.approx([3600.0, 3600.0], rel=1e-12)
    assert len(r["monthly"]) == 1 and r["monthly"][0]["pue"] == pytest.approx(1.5, rel=1e-12)
    assert r["schema"] == "puewatch.report/1" and r["clf"] is None and r["wue"] is None and r["ref"] is None
    assert r["cop"] is None


def test_a_meter_with_no_energy_in_the_period_is_named_where_its_nulls_come_from() -> None:
    """Found by the foreign-CSV audit: the IT meter absent from the readings (or with one reading, which spans
    no interval) gave PUE null and completeness 0 with no warning: the null's reason is said."""
    t = _times()
    for it_readings in (MeterReadings(t[:0], None, None), MeterReadings(t[:1], None, _register(t[:1], 100.0))):
        r = compute_report(_site(), {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": it_readings}, START, END)
        assert r["pue"] is None and r["it_energy_wh"] is None and r["completeness"] == 0.0
        assert any(w.startswith("meter 'it1' (it): no energy in the period: no two of its readings") for w in r["warnings"])
        assert not any(w.startswith("meter 'inc'") and "no energy" in w for w in r["warnings"])
    # Readings enough, every interval refused (a limit below the load: jumps): the policy is named, not the data.
    site = _site(**{"it1": Meter(role="it", point="ups_output", device="d2", max_power_w=50.0)})
    r = compute_report(site, {"inc": MeterReadings(t, None, _register(t, 150.0)),
                              "it1": MeterReadings(t, None, _register(t, 100.0))}, START, END)
    (w,) = [w for w in r["warnings"] if "no energy in the period" in w]
    assert w.startswith("meter 'it1' (it): no energy in the period: none of its ") and " jump: see the warnings" in w, w


def test_register_wrap_and_reset_inside_the_period() -> None:
    t = np.arange(START - H, END + H + 1, H, dtype=np.int64)  # hourly
    modulus = 1000.0
    true_wh = 100.0 * (t - t[0]) / H  # 100 W
    reading = np.mod(500.0 + true_wh, modulus)  # wraps every 10 hours
    reset_i = int(np.searchsorted(t, START + 30 * H))
    # reset to 0, then 40 Wh counted at t[reset_i], wrapping on as a register does
    reading[reset_i:] = np.mod(40.0 + 100.0 * (t[reset_i:] - t[reset_i]) / H, modulus)
    site = SiteModel("s", {
        "inc": Meter(role="facility_input", device="d1", modulus=modulus),
        "it1": Meter(role="it", point="pdu_output", device="d2"),
    })
    readings = {"inc": MeterReadings(t, None, reading, modulus_wh=modulus), "it1": MeterReadings(t, _const(t, 50.0), None)}
    r = compute_report(site, readings, START, END, ReportOptions(max_gap_ns=2 * H))
    inc = next(m for m in r["meters"] if m["meter"] == "inc")
    assert inc["resets"] == 1
    # 48 h at 100 W, except the reset hour: only a lower bound of its energy (the 40 Wh counted
    # since the restart) is known, so it is not counted (core.energy: live and report alike).
    assert inc["energy_wh"] == pytest.approx(4800.0 - 100.0, rel=1e-12)
    assert inc["register_intervals"] == {"counted": 43, "wrap": 4, "reset": 1, "jump": 0, "missing": 0}
    # and said, with where (the live-vs-report audit: a reset on a meter of known modulus went unsaid)
    assert [w for w in r["warnings"] if w.startswith("meter 'inc': 1 register reset(s), the first "
                                                     "2025-03-02T05:00:00Z..2025-03-02T06:00:00Z: a drop no wrap")], r["warnings"]
    assert inc["register_readings_refused"] == 0
    assert inc["method"] == "register"
    assert r["pue"] == pytest.approx(4700.0 / 2400.0, rel=1e-12)
    assert r["pue_uncertainty"] is None  # no accuracy classes declared


def test_gaps_give_exact_completeness_and_gap_list() -> None:
    t = _times(60)
    hole = (t > START + 10 * H) & (t < START + 12 * H)  # no samples strictly inside 10:00..12:00 on day 1
    tp = t[~hole]
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(tp, _const(tp, 100.0), None)}
    r = compute_report(_site(), readings, START, END, ReportOptions(max_gap_ns=15 * 60 * NS))
    it1 = next(m for m in r["meters"] if m["meter"] == "it1")
    assert it1["gaps"] == [{"start": "2025-03-01T10:00:00Z", "end": "2025-03-01T12:00:00Z"}]
    assert it1["completeness"] == pytest.approx(46 / 48, rel=1e-12)
    assert it1["energy_wh"] == pytest.approx(100.0 * 46, rel=1e-12)  # a gap is never bridged
    assert r["completeness"] == pytest.approx(46 / 48, rel=1e-12)
    assert [d["completeness"] for d in r["daily"]] == pytest.approx([22 / 24, 1.0], rel=1e-12)
    inc = next(m for m in r["meters"] if m["meter"] == "inc")
    assert inc["gaps"] == [] and inc["completeness"] == 1.0


def test_a_meter_read_more_seldom_than_max_gap_is_named_with_the_max_gap_it_needs() -> None:
    """Hourly readings under the default 15-minute max gap observe nothing: the report says why, and what to give."""
    from puewatch.report.render import to_html, to_table

    hourly = np.arange(START - H, END + H + 1, H, dtype=np.int64)
    t = _times(60)
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)),
                "it1": MeterReadings(hourly, _const(hourly, 100.0), None)}
    r = compute_report(_site(), readings, START, END, ReportOptions(max_gap_ns=15 * 60 * NS))
    assert r["it_energy_wh"] is None and r["pue"] is None
    # That it has no energy, then why.
    assert len(r["warnings"]) == 2 and r["warnings"][0].startswith("meter 'it1' (it): no energy in the period")
    w = r["warnings"][1]
    assert w.startswith("meter 'it1': its readings are 3600 s apart (median), longer than") and "900 s" in w
    assert "--max-gap 3600" in w
    assert "warning: meter 'it1'" in to_table(r, width=400)
    assert "<h2>Warnings</h2><ul><li>meter &#x27;it1&#x27;" in to_html(r)
    # With the max gap it needs, it is observed throughout, and nothing is said.
    r = compute_report(_site(), readings, START, END, ReportOptions(max_gap_ns=H))
    assert r["warnings"] == [] and r["it_energy_wh"] == pytest.approx(4800.0, rel=1e-12)
    # A meter silent for most of the period but read often while it spoke is a gap, not a sampling rate.
    part = t[t < START + 10 * H]
    readings["it1"] = MeterReadings(part, _const(part, 100.0), None)
    r = compute_report(_site(), readings, START, END, ReportOptions(max_gap_ns=15 * 60 * NS))
    assert r["completeness"] == pytest.approx((part[-1] - START) / (48 * H), rel=1e-12)
    # Nothing about the sampling; what is said is that `pue` divides energies over different times (its gaps).
    (w,) = r["warnings"]
    assert w.startswith(f"pue {r['pue']:.6g} divides each side's energy over the time its meters were observed") \
        and f"pue_joint is {r['pue_joint']:.6g}, which gaps do not bias" in w, w


def test_pue_joint_is_unbiased_by_one_meter_s_gap() -> None:
    """IT (integrated power) is silent 06:30..18:30 on day 1; the incomer's hourly register and the
    hall's cooling are not. `pue` divides 48 h of E_DC by 36 h of E_IT; `pue_joint` takes both over the
    36 h every PUE meter was observed, cutting the incomer's 06:00..07:00 and 18:00..19:00 intervals
    in proportion."""
    t = _times(60)
    hole = (t > START + 6 * H + H // 2) & (t < START + 18 * H + H // 2)
    tp = t[~hole]
    th = np.arange(START - H, END + H + 1, H, dtype=np.int64)
    site = _site(cool=Meter(role="cooling", zone="a", device="d3"))
    site.meters["it1"].zone = "a"
    readings = {"inc": MeterReadings(th, None, _register(th, 150.0)), "it1": MeterReadings(tp, _const(tp, 100.0), None),
                "cool": MeterReadings(t, None, _register(t, 30.0))}
    r = compute_report(site, readings, START, END, ReportOptions(max_gap_ns=2 * H))
    assert r["completeness"] == pytest.approx(36 / 48, rel=1e-12)
    assert r["facility_energy_wh"] == pytest.approx(150.0 * 48, rel=1e-12)
    assert r["it_energy_wh"] == pytest.approx(100.0 * 36, rel=1e-12)
    assert r["pue"] == pytest.approx(2.0, rel=1e-12)  # biased high by the IT gap
    assert r["facility_energy_joint_wh"] == pytest.approx(150.0 * 36, rel=1e-12)
    assert r["it_energy_joint_wh"] == pytest.approx(100.0 * 36, rel=1e-12)
    assert r["pue_joint"] == pytest.approx(1.5, rel=1e-12)
    assert r["pue_joint_uncertainty"] == pytest.approx(1.5 * (0.005 + 0.010), rel=1e-12)
    # The warning docs/auditor-guide.md quotes for this example.
    assert ("pue 2 divides each side's energy over the time its meters were observed, and their gaps differ "
            "(completeness 75.0%): over the time both were observed, pue_joint is 1.5, which gaps do not bias"
            ) in r["warnings"], r["warnings"]
    day1, day2 = r["daily"]
    assert day1["pue"] == pytest.approx(3600.0 / 1200.0, rel=1e-12)
    assert day1["facility_energy_joint_wh"] == pytest.approx(150.0 * 12, rel=1e-12)
    assert day1["it_energy_joint_wh"] == pytest.approx(100.0 * 12, rel=1e-12)
    assert day1["pue_joint"] == pytest.approx(1.5, rel=1e-12)
    assert day2["pue"] == pytest.approx(1.5, rel=1e-12) and day2["pue_joint"] == pytest.approx(1.5, rel=1e-12)
    assert r["monthly"][0]["pue_joint"] == pytest.approx(1.5, rel=1e-12)
    (zone,) = r["zones"]
    # Hall a's boundary is its IT and cooling: (3600 + 30 x 48) / 3600 over the period, 30 x 36 jointly.
    assert zone["ppue"] == pytest.approx((3600.0 + 1440.0) / 3600.0, rel=1e-12)
    assert zone["boundary_energy_joint_wh"] == pytest.approx(3600.0 + 1080.0, rel=1e-12)
    assert zone["ppue_joint"] == pytest.approx(1.3, rel=1e-12)


def test_pue_joint_is_null_without_joint_coverage() -> None:
    t = _times(60)
    t1, t2 = t[t <= START + 24 * H], t[t >= START + 24 * H]  # the incomer on day 1 only, IT on day 2 only
    readings = {"inc": MeterReadings(t1, None, _register(t1, 150.0)), "it1": MeterReadings(t2, _const(t2, 100.0), None)}
    r = compute_report(_site(), readings, START, END)
    assert r["pue"] == pytest.approx(1.5, rel=1e-12)  # a ratio of energies of different days
    assert r["completeness"] == 0.0
    assert r["pue_joint"] is None and r["facility_energy_joint_wh"] is None and r["it_energy_joint_wh"] is None
    assert r["pue_joint_uncertainty"] is None
    assert all(d["pue_joint"] is None for d in r["daily"])


def test_joint_energy_of_fully_observed_meters_is_their_daily_energy() -> None:
    """Where every meter was observed all the time the report takes the joint energies from the
    daily ones instead of the meters' intervals (which it would read again): both must agree.

    Irregular readings (jittered 1-minute polls, a mixed meter) so that intervals straddle the
    period's and the days' edges.
    """
    from puewatch.core.timefmt import day_grid
    from puewatch.report.engine import DEFAULT_MAX_GAP_NS
    from puewatch.report.intervals import clip, intersect
    from puewatch.report.meters import EnergyBefore, JointEnergy, MeterScan, scan_meter

    rng = np.random.default_rng(5)
    t = _times(60) + rng.integers(-20, 20, _times(60).size) * NS
    power = 100.0 + 10.0 * np.sin(np.arange(t.size) / 50.0)
    energy = _register(t, 150.0)
    energy[1000:1005] = np.nan  # the mixed meter's power fills in here (5 minutes < max gap)
    readings = {"inc": MeterReadings(t, power * 1.5, energy), "it1": MeterReadings(t, power, None)}
    grid = day_grid(START, END)
    gap = DEFAULT_MAX_GAP_NS

    def meter(name: str, points: np.ndarray | None = None) -> MeterScan:
        return scan_meter(readings[name], grid, START, END, gap, None, points)

    results = {name: meter(name) for name in readings}
    read_again: list[str] = []

    def before_of(name: str, points: np.ndarray) -> np.ndarray:
        read_again.append(name)
        return meter(name, points).before

    spans = clip(*intersect([r.observed for r in results.values()]), START, END)
    before = EnergyBefore(np.unique(np.concatenate([grid, *spans])), before_of)
    fast = JointEnergy(results, spans, grid, before)
    assert fast.full
    slow = JointEnergy(results, spans, grid, before)
    slow.full = False
    month = np.array([START, END], np.int64)
    for name in readings:
        np.testing.assert_allclose(fast.meter(name, grid), slow.meter(name, grid), rtol=1e-12)
        np.testing.assert_allclose(fast.meter(name, month), slow.meter(name, month), rtol=1e-12)
    assert read_again == ["inc", "it1"]  # only the slow one, once per meter
    r = compute_report(_site(), readings, START, END)
    assert r["completeness"] == 1.0 and r["pue_joint"] == r["pue"]


def test_register_read_again_after_an_outage_is_exact_but_spread_is_estimated() -> None:
    t = _times(60)
    hole = (t > START + 10 * H) & (t < START + 12 * H)
    te = t[~hole]
    readings = {"inc": MeterReadings(te, None, _register(te, 150.0)), "it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(_site(), readings, START, END)
    inc = next(m for m in r["meters"] if m["meter"] == "inc")
    assert inc["energy_wh"] == pytest.approx(150.0 * 48, rel=1e-12)  # the register knows the gap's energy
    assert inc["estimated_wh"] == pytest.approx(300.0, rel=1e-12)  # 2 h spread over the grid
    assert inc["completeness"] == pytest.approx(46 / 48, rel=1e-12)
    assert r["estimated_share"] == pytest.approx((300.0 + 4800.0) / (7200.0 + 4800.0), rel=1e-12)


def test_mixed_meter_fills_register_gaps_with_power_only_there() -> None:
    t = _times(60)
    energy = _register(t, 150.0)
    energy[t >= START + 30 * H] = np.nan  # the register stopped answering; the power reading did not
    readings = {"inc": MeterReadings(t, _const(t, 150.0), energy), "it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(_site(), readings, START, END)
    inc = next(m for m in r["meters"] if m["meter"] == "inc")
    assert inc["method"] == "mixed"
    assert inc["energy_wh"] == pytest.approx(150.0 * 48, rel=1e-12)  # power is never added on top of the register
    assert inc["estimated_wh"] == pytest.approx(150.0 * (18 + 1 / 60), rel=1e-12)  # from the last register reading on
    assert inc["completeness"] == 1.0


def test_meter_without_data_makes_totals_null() -> None:
    t = _times()
    readings = {"it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(_site(), readings, START, END)
    assert r["facility_energy_wh"] is None and r["pue"] is None and r["pue_uncertainty"] is None
    assert r["completeness"] == 0.0
    inc = next(m for m in r["meters"] if m["meter"] == "inc")
    assert inc["method"] is None and inc["energy_wh"] is None
    assert inc["gaps"] == [{"start": "2025-03-01T00:00:00Z", "end": "2025-03-03T00:00:00Z"}]


def test_annual_and_interim_labels() -> None:
    assert is_annual(parse_time("2025-01-01"), parse_time("2026-01-01"))
    assert is_annual(parse_time("2025-07-01"), parse_time("2026-07-01"))
    assert not is_annual(parse_time("2025-01-01"), parse_time("2025-12-31"))
    assert not is_annual(parse_time("2025-01-02"), parse_time("2026-01-02"))
    s, e = parse_time("2025-07-01"), parse_time("2026-07-01")
    t = np.arange(s - H, e + 2 * H, H, dtype=np.int64)
    readings = {"inc": MeterReadings(t, None, _register(t, 130.0)), "it1": MeterReadings(t, None, _register(t, 100.0))}
    r = compute_report(_site("it_input"), readings, s, e)
    assert r["annual"] is True and r["label"] == "PUE_L3,YC"
    assert len(r["monthly"]) == 12 and len(r["daily"]) == 365
    assert r["monthly"][0]["period_start"] == "2025-07-01T00:00:00Z"
    assert r["monthly"][-1]["period_end"] == "2026-07-01T00:00:00Z"
    assert r["pue"] == pytest.approx(1.3, rel=1e-12)
    # Not whole days: the label carries the times.
    r2 = compute_report(_site("it_input"), readings, s + H, s + 5 * H)
    assert r2["label"] == "iPUE_L3 2025-07-01T01:00:00Z..2025-07-01T05:00:00Z"
    assert len(r2["daily"]) == 1 and r2["pue"] == pytest.approx(1.3, rel=1e-12)


def test_ppue_per_zone_clf_plf_ref_erf_wue_cop() -> None:
    t = _times(300)
    site = SiteModel("s", {
        "inc": Meter(role="facility_input", device="d"),
        "hall-a-in": Meter(role="facility_input", zone="a", device="d"),
        "it-a": Meter(role="it", point="pdu_output", zone="a", device="d"),
        "it-b": Meter(role="it", point="it_input", zone="b", device="d"),
        "cool-b": Meter(role="cooling", zone="b", device="d"),
        "loss": Meter(role="losses", device="d"),
        "pv": Meter(role="renewable", device="d"),
        "heat": Meter(role="reused_heat", device="d"),
        "chw": Meter(role="heat_removed", device="d"),  # a chilled-water heat meter
        "water": Meter(role="water", measurement="w", field="l", unit="L", register=True),
    })
    watts = {"inc": 300.0, "hall-a-in": 130.0, "it-a": 100.0, "it-b": 100.0, "cool-b": 40.0, "loss": 20.0,
             "pv": 60.0, "heat": 30.0, "chw": 160.0}
    readings = {name: MeterReadings(t, None, _register(t, w)) for name, w in watts.items()}
    readings["water"] = MeterReadings(t, None, _register(t, 50.0))  # 50 L per hour
    r = compute_report(site, readings, START, END)
    assert r["category"] == 2
    # E_DC is the site incomer alone: hall a's sub-incomer is behind it (counted once, in zone a's pPUE).
    assert r["facility_energy_wh"] == pytest.approx(300.0 * 48, rel=1e-12)
    assert r["pue"] == pytest.approx(300.0 / 200.0, rel=1e-12)
    assert r["clf"] == pytest.approx(40.0 / 200.0, rel=1e-12)
    assert r["plf"] == pytest.approx(20.0 / 200.0, rel=1e-12)
    assert r["ref"] == pytest.approx(60.0 / 300.0, rel=1e-12)
    assert r["erf"] == pytest.approx(30.0 / 300.0, rel=1e-12)
    assert r["wue"] == pytest.approx(50.0 / (200.0 / 1000.0), rel=1e-12)  # L per kWh of IT energy
    assert r["cop"] == pytest.approx(160.0 / 40.0, rel=1e-12)  # heat removed per Wh of cooling electricity
    assert r["pue"] == pytest.approx(1.5, rel=1e-12)  # the heat meter is not electricity: not in any PUE term
    zones = {z["zone"]: z for z in r["zones"]}
    # Zone a has its own input meter; zone b's boundary is its consuming meters (IT + cooling).
    assert zones["a"]["ppue"] == pytest.approx(1.3, rel=1e-12)
    assert zones["a"]["boundary_energy_wh"] == pytest.approx(130.0 * 48, rel=1e-12)
    assert zones["b"]["ppue"] == pytest.approx(1.4, rel=1e-12)
    assert zones["b"]["completeness"] == 1.0


def test_uncertainty_is_the_sum_of_energy_weighted_relative_errors() -> None:
    t = _times()
    site = SiteModel("s", {
        "inc1": Meter(role="facility_input", device="d", accuracy_pct=0.5),
        "inc2": Meter(role="facility_input", device="d", accuracy_pct=2.0),
        "it1": Meter(role="it", point="ups_output", device="d", accuracy_pct=1.0),
    })
    readings = {"inc1": MeterReadings(t, None, _register(t, 100.0)), "inc2": MeterReadings(t, None, _register(t, 50.0)),
                "it1": MeterReadings(t, None, _register(t, 120.0))}
    r = compute_report(site, readings, START, END)
    f, i = 150.0 * 48, 120.0 * 48
    rel_f = (0.005 * 100.0 * 48 + 0.02 * 50.0 * 48) / f
    rel_i = 0.01
    assert r["pue"] == pytest.approx(f / i, rel=1e-12)
    assert r["pue_uncertainty"] == pytest.approx(f / i * (rel_f + rel_i), rel=1e-12)
    by = {m["meter"]: m for m in r["meters"]}
    assert by["inc2"]["accuracy_pct"] == 2.0
    site.meters["inc2"].accuracy_pct = None
    assert compute_report(site, readings, START, END)["pue_uncertainty"] is None


def test_report_has_every_schema_field_and_no_nan() -> None:
    t = _times()
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(_site(), readings, START, END)
    for key in ("schema", "site", "period_start", "period_end", "annual", "category", "label", "pue", "pue_uncertainty",
                "facility_energy_wh", "it_energy_wh", "pue_joint", "pue_joint_uncertainty", "facility_energy_joint_wh",
                "it_energy_joint_wh", "completeness", "estimated_share", "clf", "plf", "erf", "ref",
                "wue", "cop", "zones", "meters", "warnings", "monthly", "daily", "generated_at", "generator", "source"):
        assert key in r, key
    for m in r["meters"]:
        assert set(m) == {"meter", "role", "zone", "point", "energy_wh", "estimated_wh", "method", "completeness",
                          "gaps", "resets", "accuracy_pct", "modulus_wh", "power_limit_w", "power_limit_source",
                          "register_intervals", "power_readings_refused", "register_readings_refused", "polls"}

    def walk(x: object) -> None:
        if isinstance(x, float):
            assert math.isfinite(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(r)


def test_a_frozen_incomer_register_gives_no_pue_and_names_the_meters() -> None:
    # The incomer's register froze (its energy is 0) while IT drew 100 W: PUE would be 0,
    # below the physical floor of 1. It is null, with a warning naming the meters.
    t = _times()
    readings = {"inc": MeterReadings(t, None, np.full(t.size, 5000.0)), "it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(_site(), readings, START, END)
    assert r["facility_energy_wh"] == 0.0 and r["it_energy_wh"] == pytest.approx(4800.0)
    assert r["pue"] is None and r["pue_joint"] is None
    assert all(row["pue"] is None for row in r["daily"] + r["monthly"])
    floor = [w for w in r["warnings"] if "below its physical floor 1" in w]
    assert floor and any("pue of the period would be 0" in w and "inc (0)" in w and "it1 (4800)" in w for w in floor)
    assert any("(2 pue values of this kind not published)" in w for w in floor)  # the two days


def test_a_frozen_it_register_gives_no_pue_and_says_why() -> None:
    # The IT register froze (its energy is 0) while the incomer counted: PUE cannot be known (a
    # division by 0). It is null, and, like a ratio below its floor, a warning names the meters
    # (it was once null with no word).
    t = _times()
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, None, np.full(t.size, 7e3))}
    r = compute_report(_site(), readings, START, END)
    assert r["it_energy_wh"] == 0.0 and r["facility_energy_wh"] == pytest.approx(7200.0)
    assert r["pue"] is None and r["pue_joint"] is None
    assert all(row["pue"] is None and row["pue_joint"] is None for row in r["daily"] + r["monthly"])
    unknown = [w for w in r["warnings"] if "cannot be known" in w]
    period = [w for w in unknown if w.startswith("pue of the period cannot be known")]
    assert len(period) == 1 and "its denominator's energy is 0, not positive" in period[0]
    assert "inc (7200)" in period[0] and "it1 (0)" in period[0]
    assert any(w.startswith("pue (pue_joint) of the period cannot be known") for w in unknown)
    assert any(w.startswith("pue of days") and "(2 pue values of this kind not published)" in w for w in unknown)
    assert not [w for w in r["warnings"] if "physical floor" in w]
    # A day's warning quotes that day's energies, naming it (it quoted the period's: 7200 Wh for a day, found by the
    # reference audit), as the daily row states them.
    (day,) = [w for w in unknown if w.startswith("pue of days")]
    first = r["daily"][0]
    assert day.startswith(f"pue of days (the first: {first['period_start']}..{first['period_end']}) cannot be known")
    assert f"inc ({first['facility_energy_wh']:g})" in day and "it1 (0)" in day and "7200" not in day


def test_a_role_ratio_below_its_floor_is_null_and_named_in_a_warning() -> None:
    # A cooling meter wired backwards (coefficient -1 on a positive load) gives a negative CLF:
    # null, like a PUE under 1, and the warning names the meters (it was once dropped silently).
    t = _times()
    site = _site(cool=Meter(role="cooling", device="d3", coefficient=-1.0))
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, _const(t, 100.0), None),
                "cool": MeterReadings(t, _const(t, 20.0), None)}
    r = compute_report(site, readings, START, END)
    assert r["clf"] is None and r["pue"] == pytest.approx(1.5, rel=1e-12)
    floor = [w for w in r["warnings"] if "clf of the period" in w]
    assert len(floor) == 1 and "below its physical floor 0" in floor[0], r["warnings"]
    assert "cool (960)" in floor[0] and "it1 (4800)" in floor[0]


def test_an_impossible_jump_is_not_counted_and_is_named() -> None:
    t = _times()
    inc = _register(t, 150.0)
    i = t.size // 2
    inc[i:] += 100_000.0  # +100 kWh in one minute: 6 MW on a meter limited to 10 kW
    site = _site()
    site.meters["inc"].max_power_w = 10_000.0
    readings = {"inc": MeterReadings(t, None, inc), "it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(site, readings, START, END)
    by = {m["meter"]: m for m in r["meters"]}
    assert by["inc"]["register_intervals"]["jump"] == 1
    assert by["inc"]["power_limit_w"] == 10_000.0 and by["inc"]["power_limit_source"] == "configured"
    # The jump's minute is missing: the energy is 48 h at 150 W less that one minute.
    assert by["inc"]["energy_wh"] == pytest.approx(150.0 * 48 - 150.0 / 60, rel=1e-12)
    assert any("implies a mean power of 6.0" in w and "above its limit 10000 W (configured)" in w for w in r["warnings"])


def test_a_wrap_across_a_long_gap_is_a_wrap_when_the_meter_could_count_that_much() -> None:
    # A register of modulus 1000 Wh at 100 W, read every minute, then silent for 7.5 hours
    # (the wrapped increase is 750 Wh, over half the modulus): possible under the meter's
    # derived limit (4 x 100 W), so it is a wrap, not a reset.
    t = _times()
    # (From 500 Wh, where the register reads 500, to 250: a drop, so a wrap or a reset.)
    gap = (t > START + 14.75 * H) & (t < START + 14.75 * H + 7.5 * H)
    t = t[~gap]
    reading = np.mod(_register(t, 100.0), 1000.0)
    site = _site()
    site.meters["inc"].modulus = 1000.0
    readings = {"inc": MeterReadings(t, None, reading, modulus_wh=1000.0), "it1": MeterReadings(t, _const(t, 80.0), None)}
    r = compute_report(site, readings, START, END, ReportOptions(max_gap_ns=15 * 60 * NS))
    by = {m["meter"]: m for m in r["meters"]}
    assert by["inc"]["power_limit_source"] == "derived" and by["inc"]["register_intervals"]["reset"] == 0
    assert by["inc"]["energy_wh"] == pytest.approx(100.0 * 48, rel=1e-9)
    # A reset in that gap would drop the reading alike: the report names the wrap, its energy and the reading after
    # it (found by the reference audit: a reset in a gap read as a wrap, E_DC 2.9 MWh for 2.4, with no word).
    (named,) = [w for w in r["warnings"] if "across a gap longer than --max-gap" in w]
    i = int(np.searchsorted(t, START + 14.75 * H + 7.5 * H)) - 1
    assert (reading[i], reading[i + 1]) == (500.0, 250.0) and by["inc"]["register_intervals"]["wrap"] >= 1
    assert named.startswith("meter 'inc': 1 register drop(s) across a gap longer than --max-gap (900 s) counted as a "
                            f"wrap (the first {format_time(int(t[i]))}..{format_time(int(t[i + 1]))}: 750 Wh)")
    assert f"at least {reading[i + 1]:.6g} Wh, the reading after the drop" in named
    # No gap, no such warning: the same register's wraps a minute apart.
    t2 = _times()
    r2 = compute_report(site, {"inc": MeterReadings(t2, None, np.mod(_register(t2, 100.0), 1000.0), modulus_wh=1000.0),
                               "it1": MeterReadings(t2, _const(t2, 80.0), None)}, START, END,
                        ReportOptions(max_gap_ns=15 * 60 * NS))
    assert not any("across a gap" in w for w in r2["warnings"])


def test_a_device_rating_is_the_limit_where_none_is_configured() -> None:
    # The incomer's device rates itself 9 kW (W) and 10 kVA: the lower bounds active power, and
    # twice it (core.energy.RATED_LIMIT_FACTOR) is the limit. A jump implying 6 MW is refused by
    # it; a configured max_power_w still wins over the rating.
    from puewatch.core import energy as policy

    t = _times()
    inc = _register(t, 150.0)
    inc[t.size // 2:] += 100_000.0
    ratings = {"rated_power": 9000.0, "rated_apparent_power": 10_000.0}
    readings = {"inc": MeterReadings(t, None, inc, ratings=ratings), "it1": MeterReadings(t, _const(t, 100.0), None)}
    by = {m["meter"]: m for m in compute_report(_site(), readings, START, END)["meters"]}
    assert by["inc"]["power_limit_source"] == "rated"
    assert by["inc"]["power_limit_w"] == policy.RATED_LIMIT_FACTOR * 9000.0
    assert by["inc"]["register_intervals"]["jump"] == 1
    site = _site()
    site.meters["inc"].max_power_w = 50_000.0
    by = {m["meter"]: m for m in compute_report(site, readings, START, END)["meters"]}
    assert (by["inc"]["power_limit_w"], by["inc"]["power_limit_source"]) == (50_000.0, "configured")


def test_a_rating_of_zero_is_no_rating() -> None:
    # Some UPS cards leave upsConfigOutputPower unpopulated (0): no rating, so the limit is derived.
    from puewatch.core import energy as policy

    assert policy.rated_limit({"rated_power": 0.0}) is None
    # Nor is one no device has (above the 1e12 W that no meter reads): it would lift the limit past physics.
    assert policy.rated_limit({"rated_power": 1e15}) is None
    assert policy.rated_limit({"rated_power": 1e15, "rated_apparent_power": 5000.0}).watts == 10_000.0
    assert policy.rated_limit({"rated_power": math.nan, "rated_apparent_power": 5000.0}) == policy.PowerLimit(
        policy.RATED_LIMIT_FACTOR * 5000.0, "rated")
    t = _times()
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0), ratings={"rated_power": 0.0}),
                "it1": MeterReadings(t, _const(t, 100.0), None)}
    by = {m["meter"]: m for m in compute_report(_site(), readings, START, END)["meters"]}
    assert by["inc"]["power_limit_source"] == "derived"


def test_derived_limit_hours_as_the_auditor_guide_states_them() -> None:
    # docs/auditor-guide.md, `derived`: intervals are (a, b]; one ending exactly on the hour is
    # the hour before's, and an interval counts whole in the hour its end falls in. Found by the
    # issue-11 reference, which read "the hour in which each interval ends" the other way.
    # Quarter-hour register readings over 7 hours at 100, 300, 100, 300, 200, 100, 100 kW: these
    # are the hourly means, median 100 kW, limit 400 kW. Were each hh:45..hh+1:00 interval the
    # next hour's, the means would be 100, 250, 150, 250, 225, 125, 100: median 150, limit 600 kW.
    t = START + np.arange(7 * 4 + 1, dtype=np.int64) * 900 * NS
    watts = np.array([100e3, 300e3, 100e3, 300e3, 200e3, 100e3, 100e3])[(t[:-1] - START) // H]
    inc = np.concatenate(([0.0], np.cumsum(watts * 0.25)))
    it = MeterReadings(t, _const(t, 50e3), None)
    by = {m["meter"]: m for m in compute_report(_site(), {"inc": MeterReadings(t, None, inc), "it1": it},
                                                START, START + 7 * H)["meters"]}
    assert (by["inc"]["power_limit_w"], by["inc"]["power_limit_source"]) == (pytest.approx(400e3, rel=1e-12), "derived")
    # Readings at hh:55, hh+1:10, hh+1:25 only: each hour's two short intervals (12:55..13:10
    # whole in 13:00..14:00) add up to 30 min, so every hour qualifies although only 25 min
    # of each lies inside it.
    t = np.sort(np.concatenate([START + h * H + np.array([55, 70, 85]) * 60 * NS for h in range(8)]))
    inc = np.concatenate(([0.0], np.cumsum(100e3 * np.diff(t) / H)))
    by = {m["meter"]: m for m in compute_report(_site(), {"inc": MeterReadings(t, None, inc), "it1": it},
                                                START, START + 6 * H)["meters"]}
    assert (by["inc"]["power_limit_w"], by["inc"]["power_limit_source"]) == (pytest.approx(400e3, rel=1e-12), "derived")


def test_estimated_share_is_by_magnitude_with_a_subtracted_meter() -> None:
    # docs/auditor-guide.md: estimated_share = sum |c_i| estimated_i / sum |c_i E_i| over the E_DC
    # and E_IT meters. Incomer 200 kW (register), a tenant sub-meter -20 kW (integrated power,
    # coefficient -1), IT 100 kW (register): 20 / (200 + 20 + 100), not 20 / (180 + 100).
    t = _times()
    site = _site(tenant=Meter(role="facility_input", device="d3", coefficient=-1.0))
    readings = {"inc": MeterReadings(t, None, _register(t, 200e3)), "it1": MeterReadings(t, None, _register(t, 100e3)),
                "tenant": MeterReadings(t, _const(t, 20e3), None)}
    r = compute_report(site, readings, START, END)
    assert r["facility_energy_wh"] == pytest.approx(180e3 * 48, rel=1e-12)
    assert r["estimated_share"] == pytest.approx(20 / 320, rel=1e-12)


def test_a_gap_long_enough_for_another_wrap_is_named_as_a_lower_bound() -> None:
    # Found by the issue-11 reference: a cooling register in kWh wrapping at 100 kWh, 30 kW,
    # limit 60 kW, silent for 5 h. 150 kWh went through it; the readings show +50 kWh (one and a
    # half turns). The policy counts at most one wrap: 50 kWh, a lower bound, since 50 + 100 and
    # 50 + 200 were both possible under 60 kW x 5 h. The report must say so; a 1-hour gap
    # (30 kWh, 130 not possible) is not named.
    t = _times()
    keep = (t < START + 6 * H) | (t >= START + 11 * H)  # the 5-hour gap
    keep &= (t < START + 30 * H) | (t >= START + 31 * H)  # a 1-hour gap
    t = t[keep]
    kwh = (_register(t, 30.0, start_wh=0.0)) % 100.0  # kWh, as the meter's unit
    site = _site(cool=Meter(role="cooling", measurement="m", field="kwh", unit="kWh", register=True, modulus=100.0,
                            max_power_w=60_000.0))
    readings = {"inc": MeterReadings(t, None, _register(t, 150e3)), "it1": MeterReadings(t, _const(t, 100e3), None),
                "cool": MeterReadings(t, None, kwh * 1000.0, modulus_wh=100_000.0)}
    r = compute_report(site, readings, START, END)
    cool = {m["meter"]: m for m in r["meters"]}["cool"]
    assert cool["energy_wh"] == pytest.approx(30e3 * 48 - 100e3, rel=1e-9)  # one turn unseen
    named = [w for w in r["warnings"] if "wrap once more" in w]
    assert named == ["meter 'cool': 1 register interval(s) (the first 2025-03-01T05:59:00Z..2025-03-01T11:00:00Z) "
                     "long enough for its register to wrap once more unseen (modulus 100000, limit 60000 W "
                     "(configured)): counted with at most one wrap, their energy is a lower bound"]


@pytest.mark.parametrize("span_s", [17.99, 18.0, 18.01, 3600.0])
def test_uncertain_wraps_at_the_edge_of_one_modulus(span_s) -> None:
    # A 100 Wh modulus at 20 kW takes 18 s: an interval of 18 s with no increase could hide one
    # more wrap (0 + 100 <= 20,000 x 18 / 3600), one a little shorter could not. A series too
    # short for one modulus is answered without arrays: the same answer as interval by interval.
    from puewatch.core import energy as policy

    limit = policy.PowerLimit(20_000.0, "configured")
    ns = round(span_s * 1e9)
    for t in (np.array([0, ns]), np.array([0, 1_000_000_000, 1_000_000_000 + ns])):  # one interval; a short one first
        d = np.zeros(t.size - 1)
        got = policy.uncertain_wraps(t, d, modulus_wh=100.0, limit=limit).tolist()
        dt_s = np.diff(t) / 1e9
        assert got == [i for i in range(d.size) if d[i] + 100.0 <= 20_000.0 * dt_s[i] / 3600.0]
        assert got == ([d.size - 1] if span_s >= 18.0 else [])
        assert policy.uncertain_wraps(t, d, modulus_wh=100.0, limit=limit, resolution_wh=100.0).tolist() == list(
            range(d.size))
        assert policy.uncertain_wraps(t, d, modulus_wh=100.0, limit=policy.NO_LIMIT).tolist() == []


def test_a_register_with_no_limit_is_warned_about() -> None:
    """An hour's report has too few hours to derive a limit (3 needed): the register meter's jumps cannot be
    told from energy, and the collector, with a derived limit, may decide them otherwise: the report says so
    (found by the live-vs-report audit). With max_power_w configured, nothing is said."""
    t = _times(60, START, START + H)
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, _const(t, 100.0), None)}
    r = compute_report(_site(), readings, START, START + H, ReportOptions(max_gap_ns=15 * 60 * NS))
    inc = next(m for m in r["meters"] if m["meter"] == "inc")
    assert inc["power_limit_source"] == "none"
    assert [w for w in r["warnings"] if w.startswith("meter 'inc': no power limit (none configured or rated, and "
                                                     "fewer than 3 hours")], r["warnings"]
    assert not [w for w in r["warnings"] if "'it1'" in w]  # a power meter: nothing is decided by a limit there
    site = _site()
    site.meters["inc"] = Meter(role="facility_input", device="d1", accuracy_pct=0.5, max_power_w=1000.0)
    r = compute_report(site, readings, START, START + H, ReportOptions(max_gap_ns=15 * 60 * NS))
    assert r["warnings"] == []


def test_a_calendar_year_still_running_when_the_report_is_made_is_an_interim_report():
    """ISO/IEC 30134-2: an annual PUE is measured over 12 months. A report over a calendar year made before the
    year ended (two months of data, made in December) said annual, PUE_L2,YC, with no warning, and passed an
    annual cap (found by the city audit). Made after the year, the same report is annual."""
    start, end = parse_time("2025-01-01"), parse_time("2026-01-01")
    t = _times(3600, start, parse_time("2025-03-01"))
    readings = {"inc": MeterReadings(t, None, _register(t, 150e3)), "it1": MeterReadings(t, None, _register(t, 100e3))}
    early = compute_report(_site(), readings, start, end, ReportOptions(generated_at="2025-12-06T08:00:00Z"))
    assert early["annual"] is False and early["label"] == "iPUE_L1 2025-01-01..2026-01-01"
    assert any("had not ended when the report was made (2025-12-06T08:00:00Z)" in w for w in early["warnings"])
    late = compute_report(_site(), readings, start, end, ReportOptions(generated_at="2026-01-02T00:00:00Z"))
    assert late["annual"] is True and late["label"] == "PUE_L1,YC"
    assert not any("had not ended" in w for w in late["warnings"])


def test_estimated_share_is_null_where_e_it_cannot_be_known() -> None:
    # Found by the independent-reference audit: an IT meter with no energy in the period made E_IT and
    # PUE null, yet estimated_share was published over the meters that had energy.
    t = _times()
    site = _site(it2=Meter(role="it", point="ups_output", device="d3"))
    readings = {"inc": MeterReadings(t, None, _register(t, 150e3)), "it1": MeterReadings(t, _const(t, 100e3), None),
                "it2": MeterReadings(t[:0], None, None)}
    r = compute_report(site, readings, START, END)
    assert r["it_energy_wh"] is None and r["pue"] is None
    assert r["estimated_share"] is None
    del readings["it2"], site.meters["it2"]
    assert compute_report(site, readings, START, END)["estimated_share"] == pytest.approx(100 / 250, rel=1e-12)


def test_a_zone_without_an_it_meter_has_no_row_and_is_named() -> None:
    t = _times()
    site = _site(chiller=Meter(role="cooling", device="d3", zone="plant"),
                 rack=Meter(role="it", point="ups_output", device="d4", zone="hall"))
    readings = {"inc": MeterReadings(t, None, _register(t, 150e3)), "it1": MeterReadings(t, _const(t, 100e3), None),
                "chiller": MeterReadings(t, _const(t, 20e3), None), "rack": MeterReadings(t, _const(t, 10e3), None)}
    r = compute_report(site, readings, START, END)
    assert [z["zone"] for z in r["zones"]] == ["hall"]
    assert [w for w in r["warnings"] if "zone" in w] == [
        "zone 'plant' has no IT meter: it has no pPUE (no IT energy to divide by) and no row in zones"]


def test_a_meter_s_gaps_are_explained_by_its_device_s_polls() -> None:
    # The IT meter's power is silent 06:00..12:00 on day 1. Its device's polls there: timeouts (and one cut
    # off as slow) until 09:00, then answers without a value for its reading until 10:00, then nothing
    # recorded (the collector down) until 12:00; one timeout on day 2 is bridged by the readings around it.
    from puewatch.report.meters import PollRecord
    from puewatch.core.timefmt import format_time

    t = _times()
    it = _const(t, 100.0)
    it[(t >= START + 6 * H) & (t < START + 12 * H)] = np.nan
    minute = 60 * NS
    timeouts = np.concatenate([np.arange(START + 6 * H, START + 9 * H, minute), [START + 30 * H + 30 * NS]])
    slow = np.array([START + 9 * H + 20 * NS], np.int64)
    empty = np.arange(START + 9 * H + minute, START + 10 * H, minute)
    answered = t[(t >= START) & (t < END) & ((t < START + 6 * H) | (t >= START + 12 * H))]
    polls = PollRecord({"ok": np.sort(np.concatenate([answered, empty])), "timeout": timeouts, "slow": slow})
    recorded = answered.size + empty.size + timeouts.size + slow.size
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, it, None, polls=polls)}
    r = compute_report(_site(), readings, START, END)
    rows = {m["meter"]: m for m in r["meters"]}
    assert rows["it1"]["polls"] == {"recorded": recorded, "failed": timeouts.size + 1,
                                    "causes": {"slow": 1, "timeout": timeouts.size}}
    assert rows["inc"]["polls"] is None  # no poll records for it: unknown, not "none failed"
    said = [w for w in r["warnings"] if w.startswith("meter 'it1'")]
    polled = f"of {recorded} polls recorded in the period"
    assert said == [
        f"meter 'it1': {timeouts.size} poll(s) of its device 'd2' failed in its gaps ({timeouts.size - 1} timeout, "
        f"1 slow; {polled}), the first at {format_time(int(timeouts[0]))}, the last at {format_time(int(slow[0]))}: "
        "its energy there is missing, not zero (the causes: docs/auditor-guide.md)",
        f"meter 'it1': its device 'd2' answered {empty.size} poll(s) in its gaps ({polled}) without a value for the "
        "meter's reading: an object absent (noSuchObject, noSuchInstance: not there, or not in the view its community "
        "or user may read), a value refused as impossible or a 'not available' filler (the collector's log and "
        "puewatch_snmp_values_refused say which); its energy there is missing, not zero",
        f"meter 'it1': no poll of its device 'd2' is recorded from {format_time(int(empty[-1]))} to "
        f"{format_time(START + 12 * H)}: the collector was not running then, or not polling the device (not in its "
        "[[snmp.devices]])",
    ], said

    # Every failure bridged by readings: nothing is missing, and nothing is said.
    full = {"inc": readings["inc"], "it1": MeterReadings(t, _const(t, 100.0), None, polls=polls)}
    assert not [w for w in compute_report(_site(), full, START, END)["warnings"] if "poll" in w]


def test_a_reading_that_bounds_no_interval_is_not_named_an_answer_without_a_value() -> None:
    # Found by the demo audit: a meter read once (its one reading bounds no observed interval: all of the
    # period is its gap) was said to have "answered 1 poll(s) in its gaps without a value", where the poll
    # gave that reading. Readings 2 h apart (past --max-gap) are each inside a gap, each from its poll; one
    # poll between them answered without a value.
    from puewatch.report.meters import PollRecord

    t = _times()
    sparse = np.arange(START + H, END, 2 * H, dtype=np.int64)
    empty = sparse[:-1] + H
    polls = PollRecord({"ok": np.sort(np.concatenate([sparse, empty[:1]]))})
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)),
                "it1": MeterReadings(sparse, np.full(sparse.size, 100.0), None, polls=polls)}
    said = [w for w in compute_report(_site(), readings, START, END)["warnings"] if "without a value" in w]
    assert len(said) == 1 and "answered 1 poll(s) in its gaps" in said[0], said
    polls = PollRecord({"ok": sparse})
    readings["it1"] = MeterReadings(sparse, np.full(sparse.size, 100.0), None, polls=polls)
    assert not [w for w in compute_report(_site(), readings, START, END)["warnings"] if "without a value" in w]


def test_a_meter_with_no_reading_and_no_poll_recorded_was_not_polled() -> None:
    from puewatch.report.meters import PollRecord
    from puewatch.core.timefmt import format_time

    t = _times()
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)),
                "it1": MeterReadings(np.empty(0, np.int64), polls=PollRecord({}))}
    r = compute_report(_site(), readings, START, END)
    assert {m["meter"]: m["polls"] for m in r["meters"]}["it1"] == {"recorded": 0, "failed": 0, "causes": {}}
    assert (f"meter 'it1': no poll of its device 'd2' is recorded from {format_time(START)} to {format_time(END)}: the "
            "collector was not running then, or not polling the device (not in its [[snmp.devices]])") in r["warnings"]


def test_a_report_made_before_its_period_ended_says_so() -> None:
    # Found by an outside audit: a report to an hour ahead counted the hour as every meter's gap, silently.
    from puewatch.core.timefmt import format_period, format_time

    t = _times()
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, _const(t, 100.0), None)}
    made = format_time(END - H)
    r = compute_report(_site(), readings, START, END, ReportOptions(generated_at=made))
    assert (f"the period {format_period(START, END)} had not ended when the report was made ({made}): the time after "
            "that is a gap of every meter, and the report's numbers change once the period is over; report it "
            "then") in r["warnings"]
    after = compute_report(_site(), readings, START, END, ReportOptions(generated_at=format_time(END)))
    assert not [w for w in after["warnings"] if "had not ended" in w]


def test_a_site_s_time_zone_makes_its_year_months_and_days() -> None:
    """A UTC+8 site's 2025 is 2024-12-31T16:00Z..2025-12-31T16:00Z: annual in its calendar, interim in UTC's,
    with its days and months cut at 16:00 UTC. The load grows hour by hour, so a row cut at another hour
    has other energies: each row's are the register's rise between its midnights, read off the readings."""
    site = SiteModel("s", {"inc": Meter(role="facility_input", device="d1"),
                           "it1": Meter(role="it", point="it_input", device="d2")}, timezone="Asia/Shanghai")
    s, e = site.calendar.parse_time("2025-01-01"), site.calendar.parse_time("2026-01-01")
    assert (s, e) == (parse_time("2024-12-31T16:00:00Z"), parse_time("2025-12-31T16:00:00Z"))
    t = np.arange(s - H, e + 2 * H, H, dtype=np.int64)
    k = np.arange(t.size, dtype=np.float64)
    it_wh = 1000.0 + 50.0 * k + 0.01 * k * k  # hourly energy 50 + 0.01 (2k + 1) Wh: growing
    inc_wh = 1000.0 + 1.25 * (it_wh - 1000.0) + 7.0 * k
    readings = {"inc": MeterReadings(t, None, inc_wh), "it1": MeterReadings(t, None, it_wh)}
    r = compute_report(site, readings, s, e, ReportOptions(generated_at="2026-01-05T00:00:00Z"))
    assert r["timezone"] == "Asia/Shanghai" and r["annual"] is True and r["label"] == "PUE_L3,YC"
    assert len(r["monthly"]) == 12 and len(r["daily"]) == 365
    assert [m["period_start"] for m in r["monthly"][:3]] == ["2024-12-31T16:00:00Z", "2025-01-31T16:00:00Z",
                                                             "2025-02-28T16:00:00Z"]
    assert all(d["period_start"].endswith("T16:00:00Z") for d in r["daily"])

    def rise(reg: np.ndarray, a: str, b: str) -> float:
        i, j = np.searchsorted(t, [parse_time(a), parse_time(b)])
        assert t[i] == parse_time(a) and t[j] == parse_time(b)
        return float(reg[j] - reg[i])

    for row in (r["monthly"][1], r["daily"][0], r["daily"][200], r["daily"][-1]):
        assert row["it_energy_wh"] == pytest.approx(rise(it_wh, row["period_start"], row["period_end"]), rel=1e-12)
        assert row["facility_energy_wh"] == pytest.approx(rise(inc_wh, row["period_start"], row["period_end"]),
                                                          rel=1e-12)
    assert r["it_energy_wh"] == pytest.approx(rise(it_wh, r["period_start"], r["period_end"]), rel=1e-12)
    # The same instants in UTC's calendar: not a year, and its rows cut at UTC's midnights.
    utc = SiteModel("s", site.meters)
    u = compute_report(utc, readings, s, e, ReportOptions(generated_at="2026-01-05T00:00:00Z"))
    assert u["timezone"] == "UTC" and u["annual"] is False
    assert u["label"] == "iPUE_L3 2024-12-31T16:00:00Z..2025-12-31T16:00:00Z"
    assert len(u["daily"]) == 366 and u["daily"][1]["period_start"] == "2025-01-01T00:00:00Z"
    assert u["it_energy_wh"] == r["it_energy_wh"] and u["pue"] == r["pue"]
    # A period that does not begin at the site's midnight is named at its offset.
    p = compute_report(site, readings, s + 9 * H, s + 30 * H, ReportOptions(generated_at="2026-01-05T00:00:00Z"))
    assert p["label"] == "iPUE_L3 2025-01-01T09:00:00+08:00..2025-01-02T06:00:00+08:00"
    assert [d["period_end"] for d in p["daily"]] == ["2025-01-01T16:00:00Z", "2025-01-01T22:00:00Z"]


def test_a_recompute_s_default_period_counts_readings_alone() -> None:
    """`span_days`: the whole days of the site's calendar that the readings span. A value that is no reading (a
    negative register, a negative or absurd power) far beyond the data does not stretch the period (found by
    the time zone audit: a -1 Wh register two days after the data made a period of 34 % completeness); a
    register's lone reading more than --max-gap from the next is an export's margin and is left out."""
    from puewatch.core.timefmt import Calendar
    from puewatch.report.sources import span_days

    t = np.arange(parse_time("2025-02-28T15:45:00Z"), parse_time("2025-03-01T16:30:00Z"), 15 * 60 * NS, dtype=np.int64)
    late = parse_time("2025-03-04T03:00:00Z")
    tt = np.append(t, late)
    reg = MeterReadings(tt, None, np.append(_register(t, 100.0), -1.0))
    power = MeterReadings(tt, np.append(_const(t, 50.0), -5.0), None)
    absurd = MeterReadings(tt, np.append(_const(t, 50.0), 1e13), None)
    shanghai = Calendar("Asia/Shanghai")
    for meters in ({"a": reg}, {"a": power}, {"a": absurd}, {"a": reg, "b": power}):
        assert span_days(meters, 900 * NS, shanghai) == (parse_time("2025-02-28T16:00:00Z"),
                                                          parse_time("2025-03-01T16:00:00Z"))
        with pytest.raises(Exception, match="span no whole day"):
            span_days(meters, 900 * NS)
    # Readable, the late register reading is still a margin (more than --max-gap after the one before it)...
    margin = MeterReadings(tt, None, np.append(_register(t, 100.0), 1e6))
    assert span_days({"a": margin}, 900 * NS, shanghai)[1] == parse_time("2025-03-01T16:00:00Z")
    # ...but a power reading there is a reading.
    assert span_days({"a": MeterReadings(tt, _const(tt, 50.0), None)}, 900 * NS, shanghai)[1] == \
        parse_time("2025-03-03T16:00:00Z")


def test_a_meter_name_is_drawn_as_text_never_as_a_formula() -> None:
    """Found by the HTML audit: a meter named "crac-a$x$$\\foo$" stopped `report --format html` with a traceback
    (matplotlib read it as mathtext), and "ups-a$\\mathrm{PASS}$" was drawn as "ups-aPASS" beside the table's
    raw name. The figures draw names as the text they are."""
    from puewatch.report.engine import build_report
    from puewatch.report.render import render

    t = _times()
    names = ("crac-a$x$$\\foo$", "ups-a$\\mathrm{PASS}$")
    site = _site(**{names[0]: Meter(role="cooling", device="d3"), names[1]: Meter(role="cooling", device="d4")})
    readings = {"inc": MeterReadings(t, None, _register(t, 150.0)), "it1": MeterReadings(t, _const(t, 100.0), None),
                names[0]: MeterReadings(t, _const(t, 20.0), None), names[1]: MeterReadings(t, _const(t, 10.0), None)}
    report = build_report(site, readings, START, END, figures=True)
    page = render(report.to_dict(), "html", figures=report.figures)
    # The completeness figure's tick labels are the names, as SVG text (svg.fonttype none), escaped.
    svgs = "".join(re.findall(r"<svg.*?</svg>", page, re.S))
    for name in names:
        # In the figure, the name is one text element as written (mathtext drew "ups-a" and "PASS" apart).
        assert re.search(r"<text[^>]*>" + re.escape(name.replace("&", "&amp;")) + "</text>", svgs), name


def test_a_share_is_shown_rounded_down_everywhere() -> None:
    """Found by the HTML audit: 0.99996 showed 100.0 % in a statement and 0.9496 95.0 % in a report, where the city
    showed 94.9 % beside a FAIL of min_completeness 0.95: one rule (core.numbers.percent_down)."""
    from puewatch.core.numbers import percent_down
    from puewatch.report.render import _pct

    assert [percent_down(x) for x in (0.99996, 0.9496, 0.95, 0.57, 1.0, 0.0, 0.95 - 5e-13, float("nan"))] == [
        "99.9", "94.9", "95.0", "57.0", "100.0", "0.0", "94.9", "n/a"]
    assert _pct(0.99996) == "99.9 %" and _pct(None) == "n/a"
