"""integrate_power: trapezoidal energy that never bridges gaps; compared with tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_support import SECOND_NS, T0_NS, assert_close, floats, scale_of, times_ns, with_nans

from puewatch.kernels import PowerIntegral, integrate_power

NAN = math.nan


def secs(*s):
    return T0_NS + np.array([int(x * SECOND_NS) for x in s], dtype=np.int64)


def test_hand_computed_series_with_gap_and_missing_sample():
    t = secs(0, 1, 3, 13, 14)
    p = [100.0, 200.0, 200.0, 50.0, NAN]
    # (0,1]:  (100 + 200) / 2 * 1 s = 150 J
    # (1,3]:  (200 + 200) / 2 * 2 s = 400 J
    # (3,13]: 10 s > max gap 5 s -> NaN, 10 s missing
    # (13,14]: NaN power at the end -> NaN, 1 s missing
    expected = [150.0, 400.0, NAN, NAN]
    res = integrate_power(t, p, max_gap_ns=5 * SECOND_NS)
    assert isinstance(res, PowerIntegral)
    assert_close(res.energy_j, expected, rtol=1e-12)
    assert res.total_j == pytest.approx(550.0, rel=1e-12)  # 150 + 400
    assert res.missing_ns == 11 * SECOND_NS  # 10 s + 1 s
    assert isinstance(res.total_j, float) and isinstance(res.missing_ns, int)
    ref_e, ref_total, ref_missing = naive.integrate_power(t, p, max_gap_ns=5 * SECOND_NS)
    assert_close(ref_e, expected, rtol=1e-12)
    assert (ref_total, ref_missing) == (pytest.approx(550.0), 11 * SECOND_NS)


def test_interval_exactly_max_gap_is_integrated():
    # 2 s interval with max_gap 2 s: (10 + 30) / 2 * 2 = 40 J; 1 ns longer than max_gap is not.
    res = integrate_power(secs(0, 2), [10.0, 30.0], max_gap_ns=2 * SECOND_NS)
    assert_close(res.energy_j, [40.0], rtol=1e-12)
    res = integrate_power(secs(0, 2), [10.0, 30.0], max_gap_ns=2 * SECOND_NS - 1)
    assert_close(res.energy_j, [NAN])
    assert (res.total_j, res.missing_ns) == (0.0, 2 * SECOND_NS)


def test_infinite_power_is_missing():
    # (0,1]: inf at the end -> NaN, 1 s missing; (1,2]: inf at the start -> NaN; (2,3]: (2 + 4) / 2 * 1 = 3 J
    t, p = secs(0, 1, 2, 3), [1.0, math.inf, 2.0, 4.0]
    res = integrate_power(t, p, max_gap_ns=5 * SECOND_NS)
    assert_close(res.energy_j, [NAN, NAN, 3.0], rtol=1e-12)
    assert (res.total_j, res.missing_ns) == (pytest.approx(3.0), 2 * SECOND_NS)
    ref_e, _, ref_missing = naive.integrate_power(t, p, max_gap_ns=5 * SECOND_NS)
    assert_close(ref_e, res.energy_j)
    assert ref_missing == 2 * SECOND_NS


@pytest.mark.parametrize("t", [[], [T0_NS]])
def test_empty_and_single_sample(t):
    res = integrate_power(np.array(t, dtype=np.int64), [1.0] * len(t), max_gap_ns=SECOND_NS)
    assert res.energy_j.shape == (0,) and res.energy_j.dtype == np.float64
    assert (res.total_j, res.missing_ns) == (0.0, 0)


def test_datetime64_times_are_nanoseconds():
    t = np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:10"], dtype="datetime64[s]")
    # 10 s at 5 W = 50 J
    res = integrate_power(t, [5.0, 5.0], max_gap_ns=60 * SECOND_NS)
    assert_close(res.energy_j, [50.0], rtol=1e-12)


def test_whole_float_times_are_accepted():
    res = integrate_power([0.0, 2e9], [1.0, 3.0], max_gap_ns=3 * SECOND_NS)
    assert_close(res.energy_j, [4.0], rtol=1e-12)  # (1 + 3) / 2 * 2 s


@st.composite
def power_case(draw, min_size=0):
    t = draw(times_ns(min_size=min_size, max_size=200))
    p = draw(st.lists(floats(0.0, 1e5), min_size=len(t), max_size=len(t)))
    p = draw(with_nans(p, 0.2))
    max_gap = draw(st.integers(1, 20 * SECOND_NS))
    return t, p, max_gap


@given(power_case())
def test_integrate_power_matches_naive(case):
    t, p, max_gap = case
    res = integrate_power(t, p, max_gap_ns=max_gap)
    ref_e, ref_total, ref_missing = naive.integrate_power(t, p, max_gap_ns=max_gap)
    assert_close(res.energy_j, ref_e)
    assert math.isclose(res.total_j, ref_total, rel_tol=1e-9, abs_tol=1e-12 * scale_of(ref_e))
    assert res.missing_ns == ref_missing
    # the integrated and the missing time add up to the span
    dt = np.diff(t)
    assert int(dt[np.isfinite(res.energy_j)].sum()) + res.missing_ns == (int(t[-1] - t[0]) if len(t) else 0)


@given(power_case(min_size=1), st.data())
def test_energy_of_a_series_is_the_sum_over_a_split(case, data):
    t, p, max_gap = case
    k = data.draw(st.integers(0, len(t) - 1))
    whole = integrate_power(t, p, max_gap_ns=max_gap)
    left = integrate_power(t[: k + 1], p[: k + 1], max_gap_ns=max_gap)
    right = integrate_power(t[k:], p[k:], max_gap_ns=max_gap)
    assert_close(np.concatenate([left.energy_j, right.energy_j]), whole.energy_j, rtol=0, atol=0)
    assert math.isclose(left.total_j + right.total_j, whole.total_j, rel_tol=1e-9, abs_tol=1e-9)
    assert left.missing_ns + right.missing_ns == whole.missing_ns


@given(times_ns(min_size=2, max_size=200, max_step=SECOND_NS), floats(0.0, 1e6))
def test_constant_power_gives_power_times_duration(t, power_w):
    res = integrate_power(t, np.full(len(t), power_w), max_gap_ns=SECOND_NS)
    assert res.missing_ns == 0  # no step is longer than max_gap_ns
    duration_s = (int(t[-1]) - int(t[0])) / 1e9
    assert math.isclose(res.total_j, power_w * duration_s, rel_tol=1e-9, abs_tol=1e-12)


def test_parallel_blocks_sum_in_order():
    # Block totals are added in block order: the total is the same for any thread count
    # and close to the exact sum.
    from puewatch.kernels.integrate import _integrate_power

    rng = np.random.default_rng(4)
    t = T0_NS + np.cumsum(rng.integers(1, 3 * SECOND_NS, 500)).astype(np.int64)
    p = rng.random(500) * 1e5
    p[rng.random(500) < 0.05] = NAN
    e = np.empty(499)
    for blocks in (1, 3, 8):
        total, missing, bad = _integrate_power(t, p, 2 * SECOND_NS, blocks, e)
        assert bad == -1  # every time after the one before
        ref_e, ref_total, ref_missing = naive.integrate_power(t, p, max_gap_ns=2 * SECOND_NS)
        assert_close(e, ref_e)
        assert total == pytest.approx(ref_total, rel=1e-12) and missing == ref_missing
