"""rolling_ratio: time windows with partial overlap and coverage; vs tests/naive.py."""

from __future__ import annotations

import contextlib
import math
from unittest import mock

import naive
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_support import (SECOND_NS, T0_NS, assert_close, assert_same_bits, dyadic, float_bits, floats, scale_of,
                            times_ns, with_nans)

from puewatch.kernels import RollingRatio, rolling_ratio
from puewatch.kernels import rolling as rolling_module

NAN = math.nan

# 4 intervals: (0,10] 10, (10,20] 20, (20,30] missing, (30,50] 40
T = np.array([0, 10, 20, 30, 50], dtype=np.int64)
E = [10.0, 20.0, NAN, 40.0]


def test_rolling_ratio_hand_computed_partial_windows():
    # Denominator 1 per ns of each interval: the ratio is the numerator's sum over the valid ns.
    # W=10:  (0,10] 10 | (10,20] 20 | (20,30] missing: 0/0 | (40,50]: 10/20 of 40 = 20
    #        coverage 10/10, 10/10, 0/10, 10/10
    # W=25:  (-15,10] 10, cov 10/25 | (-5,20] 30, cov 20/25 | (5,30] 5/10*10 + 20 = 25, cov 15/25
    #        (25,50] (missing 5 ns) + 40 = 40, cov 20/25
    # W=100 (longer than the series): 10, 30, 30, 70; cov 10/100, 20/100, 20/100, 40/100
    den = np.diff(T).astype(float)
    expected = [[1.0, 2.0, NAN, 2.0], [1.0, 1.5, 25 / 15, 2.0], [1.0, 1.5, 1.5, 1.75]]
    expected_cov = [[1.0, 1.0, 0.0, 1.0], [0.4, 0.8, 0.6, 0.8], [0.1, 0.2, 0.2, 0.4]]
    res = rolling_ratio(T, E, den, [10, 25, 100])
    assert isinstance(res, RollingRatio)
    assert res.ratio.shape == res.coverage.shape == (3, 4)
    assert_close(res.ratio, expected, rtol=1e-12)
    assert_close(res.coverage, expected_cov, rtol=1e-12)
    ref_ratio, ref_cov = naive.rolling_ratio(T, E, den, [10, 25, 100])
    assert_close(ref_ratio, expected, rtol=1e-12)
    assert_close(ref_cov, expected_cov, rtol=1e-12)


def test_rolling_ratio_with_input_coverage():
    cov = [1.0, 0.5, 1.0, 0.25]
    den = np.diff(T).astype(float)
    # W=25, end 30: (5,30]: 1*5 + 0.5*10 + 0 (missing) = 10 -> 10/25 = 0.4
    # W=10, end 50: (40,50]: 0.25*10 = 2.5 -> 0.25
    res = rolling_ratio(T, E, den, [25, 10], numerator_coverage=cov, denominator_coverage=[1.0] * 4)
    assert res.coverage[0, 2] == pytest.approx(0.4, rel=1e-12)
    assert res.coverage[1, 3] == pytest.approx(0.25, rel=1e-12)
    # coverage does not change the ratio
    assert_close(res.ratio, rolling_ratio(T, E, den, [25, 10]).ratio, rtol=0, atol=0)
    ref_ratio, ref_cov = naive.rolling_ratio(T, E, den, [25, 10], numerator_coverage=cov, denominator_coverage=[1.0] * 4)
    assert_close(res.coverage, ref_cov, rtol=1e-12)


def test_rolling_ratio_scalar_window_and_no_intervals():
    res = rolling_ratio(T, E, E, 10)
    assert res.ratio.shape == (1, 4)
    res = rolling_ratio([5], [], [], [10, 20])
    assert res.ratio.shape == res.coverage.shape == (2, 0)


def test_window_shorter_than_the_first_interval():
    """Regression (d514ade): the first interval, longer than the window, was counted whole *and* by its overlap."""
    # one interval (0,100] with 50 and 100: a 10 ns window holds 10/100 of each: 5 / 10, coverage 10/10 = 1
    assert_close(naive.rolling_ratio([0, 100], [50.0], [100.0], [10])[0], [[0.5]], rtol=1e-12)
    res = rolling_ratio([0, 100], [50.0], [100.0], [10])
    assert_close(res.ratio, [[0.5]], rtol=1e-12)
    assert_close(res.coverage, [[1.0]], rtol=1e-12)  # d514ade: 11 = (100 + 10) / 10
    # and it stays in the running sums for the rest of the series:
    # (0,2] 1 and 4, (2,4] 3 and 4, window 1: each window holds half an interval, coverage 1
    res = rolling_ratio([0, 2, 4], [1.0, 3.0], [4.0, 4.0], [1])
    assert_close(res.ratio, [[0.25, 0.75]], rtol=1e-12)  # d514ade: (1 + 0.5) / (4 + 2), (4 + 1.5) / (8 + 2)
    assert_close(res.coverage, [[1.0, 1.0]], rtol=1e-12)  # d514ade: 3, 3


def test_rolling_ratio_window_shorter_than_the_first_interval():
    # (0,10] num 10 den 10, (10,20] num 30 den 10; window 5 ending at 20 = (15,20]:
    # half of interval 1: 15 / 5 = 3, coverage 5/5 = 1
    t, num, den = [0, 10, 20], [10.0, 30.0], [10.0, 10.0]
    assert_close(naive.rolling_ratio(t, num, den, [5])[0], [[1.0, 3.0]], rtol=1e-12)
    res = rolling_ratio(t, num, den, [5])
    assert_close(res.ratio, [[1.0, 3.0]], rtol=1e-12)  # d514ade: 1, 1.667 = (10 + 15) / (10 + 5)
    assert_close(res.coverage, [[1.0, 1.0]], rtol=1e-12)  # d514ade: 3, 3


def test_window_shorter_than_a_later_interval():
    # (0,1] 2 / 1, (1,101] 50 / 100: a 10 ns window ending at 101 holds 10/100 of the second: 5 / 10, coverage 1
    res = rolling_ratio([0, 1, 101], [2.0, 50.0], [1.0, 100.0], [10])
    assert_close(res.ratio, [[2.0, 0.5]], rtol=1e-12)  # first window (-9,1]: 2 / 1, coverage 1/10
    assert_close(res.coverage, [[0.1, 1.0]], rtol=1e-12)


def test_small_window_after_huge_values_keeps_precision():
    # 1e15 J per interval for 50 intervals, then 1, 2, 3 J: the last 3-interval window is exactly 6 (over 3)
    e = [1e15] * 50 + [1.0, 2.0, 3.0]
    t = np.arange(len(e) + 1, dtype=np.int64) * SECOND_NS
    res = rolling_ratio(t, e, e[::-1], [3 * SECOND_NS, 2 * SECOND_NS])
    assert res.ratio[0, -1] == 6.0 / 3e15  # (1 + 2 + 3) / 3e15
    assert res.ratio[1, -1] == 5.0 / 2e15
    res = rolling_ratio(t, e[::-1], e, [3 * SECOND_NS, 2 * SECOND_NS])
    assert res.ratio[0, -1] == 3e15 / 6.0
    assert res.ratio[1, -1] == 2e15 / 5.0


def test_rolling_ratio_hand_computed():
    t = [0, 10, 20, 30]
    num = [30.0, 20.0, 15.0]
    den = [20.0, 0.0, 10.0]
    # W=20: end 10: (-10,10] 30/20 = 1.5, cov 10/20 = 0.5
    #       end 20: (0,20]  (30+20)/(20+0) = 2.5, cov 1
    #       end 30: (10,30] (20+15)/(0+10) = 3.5, cov 1
    # W=10: end 20: (10,20] 20/0 -> zero IT energy -> NaN
    expected = [[1.5, 2.5, 3.5], [1.5, NAN, 1.5]]
    expected_cov = [[0.5, 1.0, 1.0], [1.0, 1.0, 1.0]]
    res = rolling_ratio(t, num, den, [20, 10])
    assert isinstance(res, RollingRatio)
    assert_close(res.ratio, expected, rtol=1e-12)
    assert_close(res.coverage, expected_cov, rtol=1e-12)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, [20, 10])
    assert_close(ref_ratio, expected, rtol=1e-12)
    assert_close(ref_cov, expected_cov, rtol=1e-12)
    # below min coverage 0.75: the first 20 ns window (cov 0.5) is NaN; 0.5 itself is enough for 0.5
    assert_close(rolling_ratio(t, num, den, [20], min_coverage=0.75).ratio, [[NAN, 2.5, 3.5]], rtol=1e-12)
    assert_close(rolling_ratio(t, num, den, [20], min_coverage=0.5).ratio, [[1.5, 2.5, 3.5]], rtol=1e-12)


def test_rolling_ratio_counts_only_jointly_valid_intervals():
    t = [0, 10, 20, 30]
    num = [30.0, 20.0, 15.0]
    den = [20.0, NAN, 10.0]
    # W=30 end 30: interval 1 is dropped from both sums: (30 + 15) / (20 + 10) = 1.5, cov 20/30
    res = rolling_ratio(t, num, den, [30])
    assert res.ratio[0, 2] == pytest.approx(1.5, rel=1e-12)
    assert res.coverage[0, 2] == pytest.approx(2 / 3, rel=1e-12)
    # partial straddling interval: W=15 end 30 = (15,30]: half of interval 1 (invalid) + interval 2: 15/10
    assert rolling_ratio(t, num, den, [15]).ratio[0, 2] == pytest.approx(1.5, rel=1e-12)


def test_rolling_ratio_joint_coverage_is_the_smaller():
    t = [0, 10, 20]
    # cov W=20 end 20: min(1, 0.5)*10 + min(0.25, 1)*10 = 7.5 -> 7.5/20 = 0.375
    res = rolling_ratio(t, [1.0, 1.0], [1.0, 1.0], [20], numerator_coverage=[1.0, 0.25], denominator_coverage=[0.5, 1.0])
    assert res.coverage[0, 1] == pytest.approx(0.375, rel=1e-12)
    res = rolling_ratio(
        t, [1.0, 1.0], [1.0, 1.0], [20], numerator_coverage=[1.0, 0.25], denominator_coverage=[0.5, 1.0], min_coverage=0.4
    )
    assert np.isnan(res.ratio[0, 1])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # NUMBA_DISABLE_JIT
def test_rolling_ratio_non_positive_or_infinite_is_nan():
    t = [0, 10, 20]
    # negative denominator sum: NaN; a finite/huge ratio that overflows: NaN
    res = rolling_ratio(t, [1.0, 1.0], [-1.0, -1.0], [10])
    assert np.all(np.isnan(res.ratio))
    res = rolling_ratio(t, [1e300, 1e300], [1e-300, 1e-300], [10])
    assert np.all(np.isnan(res.ratio))


def test_rolling_ratio_window_with_zero_it_energy_after_load_is_nan():
    """Regression (d514ade): zero IT energy in the window must give NaN, not residual / residual.

    1 min intervals; the 1 min window ending at the last boundary holds only the last
    interval, whose IT energy is 0 (IT off, facility still drawing 2 J): PUE is unknown
    (NaN). The compensated running denominator, after the earlier intervals are
    subtracted again, was 1.65e-24 > 0, and d514ade returned a PUE of 1.2e24.
    """
    den = [2e7, 2153.6, 6004.576533, 4e7, 8.275e-05, 7e7, 35.209772393, 1.315e-08, 1e7, 0.0]
    num = [1.0] * 9 + [2.0]
    t = T0_NS + np.arange(len(den) + 1, dtype=np.int64) * 60 * SECOND_NS
    window = [60 * SECOND_NS]
    ref_ratio, _ = naive.rolling_ratio(t, num, den, window)
    assert np.isnan(ref_ratio[0, -1])
    res = rolling_ratio(t, num, den, window)
    assert np.isnan(res.ratio[0, -1]), f"PUE over a window with zero IT energy: {res.ratio[0, -1]}"


# ---------------------------------------------------------------------------
# random cases


@st.composite
def rolling_case(draw, max_size=60):
    """Boundaries and window lengths (some shorter than an interval, some longer than the series)."""
    t = draw(times_ns(min_size=1, max_size=max_size + 1, max_step=10 * SECOND_NS))
    n = len(t) - 1
    span = int(t[-1] - t[0]) + 1
    windows = draw(
        st.lists(st.one_of(st.integers(1, 100), st.integers(1, 2 * span), st.integers(1, 100 * SECOND_NS)), min_size=1, max_size=3)
    )
    return t, n, windows


@given(st.data())
def test_rolling_ratio_matches_naive(data):
    # dyadic energies: every sum is exact, so a window whose IT energy is truly 0 is 0 in both
    t, n, windows = data.draw(rolling_case())
    num = data.draw(with_nans(data.draw(st.lists(dyadic(), min_size=n, max_size=n)), 0.2))
    den = data.draw(with_nans(data.draw(st.lists(st.one_of(st.just(0.0), dyadic()), min_size=n, max_size=n)), 0.2))
    if data.draw(st.booleans()):
        ca = data.draw(st.lists(dyadic(64, 64), min_size=n, max_size=n))
        cb = data.draw(st.lists(dyadic(64, 64), min_size=n, max_size=n))
    else:
        ca = cb = None
    min_cov = data.draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]))
    kw = dict(min_coverage=min_cov, numerator_coverage=ca, denominator_coverage=cb)
    res = rolling_ratio(t, num, den, windows, **kw)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows, **kw)
    assert_close(res.coverage, ref_cov)
    assert_close(res.ratio, ref_ratio)


@given(st.data())
def test_rolling_ratio_general_floats_with_positive_it_energy(data):
    t, n, windows = data.draw(rolling_case())
    num = data.draw(with_nans(data.draw(st.lists(floats(0.0, 1e7), min_size=n, max_size=n)), 0.2))
    den = data.draw(st.lists(floats(1e-3, 1e7), min_size=n, max_size=n))
    res = rolling_ratio(t, num, den, windows)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows)
    assert_close(res.coverage, ref_cov)
    assert_close(res.ratio, ref_ratio)


@given(
    times_ns(min_size=2, max_size=80, max_step=10 * SECOND_NS),
    floats(1.0, 1e7),
    floats(1.0, 1e7),
    st.lists(st.integers(1, 200 * SECOND_NS), min_size=1, max_size=4),
)
def test_constant_power_rolling_pue_is_the_power_ratio(t, facility_w, it_w, windows):
    dt_s = np.diff(t) / 1e9
    res = rolling_ratio(t, facility_w * dt_s, it_w * dt_s, windows)
    full = res.coverage == 1.0
    # a window is fully covered once it starts at or after the first boundary
    ends = t[1:]
    np.testing.assert_array_equal(full, np.array([[e - w >= t[0] for e in ends] for w in windows]))
    assert_close(res.ratio[full], np.full(int(full.sum()), facility_w / it_w))
    assert not np.any(np.isnan(res.ratio))  # partial coverage still gives the (constant) ratio


@given(
    times_ns(min_size=2, max_size=80, max_step=10 * SECOND_NS),
    floats(0.0, 1e7),
    st.lists(st.integers(1, 200 * SECOND_NS), min_size=1, max_size=4),
)
def test_constant_power_over_time_is_the_power_and_coverage_the_covered_share(t, power_w, windows):
    dt_s = np.diff(t) / 1e9
    res = rolling_ratio(t, power_w * dt_s, dt_s, windows)
    for w, window in enumerate(windows):
        for i, end in enumerate(t[1:]):
            covered_ns = min(window, int(end - t[0]))
            assert math.isclose(res.coverage[w, i], covered_ns / window, rel_tol=1e-12)
            assert math.isclose(res.ratio[w, i], power_w, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("outage_start", [0, 100, 1380])
def test_one_day_of_minute_samples_with_an_hour_outage(outage_start):
    # 1 min intervals for a day, 100 W -> 6000 J each; one hour (60 intervals) missing; 15 min window.
    n = 24 * 60
    t = T0_NS + np.arange(n + 1, dtype=np.int64) * 60 * SECOND_NS
    e = np.full(n, 6000.0)
    it = np.full(n, 4800.0)
    e[outage_start : outage_start + 60] = NAN
    res = rolling_ratio(t, e, it, [15 * 60 * SECOND_NS])
    for i in range(n):
        # the window ending at t[i+1] holds intervals max(0, i-14) .. i, each whole
        valid = sum(1 for k in range(max(0, i - 14), i + 1) if not math.isnan(e[k]))
        if valid:
            assert res.ratio[0, i] == pytest.approx(1.25, rel=1e-12)
        else:
            assert math.isnan(res.ratio[0, i])
        assert res.coverage[0, i] == pytest.approx(valid / 15, rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------------------
# chunked / blocked execution: results must not depend on how the series is cut


@contextlib.contextmanager
def chunking(n_chunks: int, block: int, ring: int = 1 << 17, trail: int = 1 << 12):
    with (
        mock.patch.object(rolling_module, "_n_chunks", lambda t, w: n_chunks),
        mock.patch.object(rolling_module, "_BLOCK", block),
        mock.patch.object(rolling_module, "_RING", ring),
        mock.patch.object(rolling_module, "_TRAIL_ROWS", trail),
    ):
        yield


@given(st.data(), st.integers(1, 7), st.integers(1, 5), st.sampled_from([1, 4, 16, 1 << 17]),
       st.sampled_from([2, 4, 8, 1 << 12]))
def test_rolling_ratio_does_not_depend_on_chunks_blocks_and_ring(data, n_chunks, block, ring, trail):
    # A small ring makes the longer windows read their trail from rings of their own (and switch
    # between theirs and the lead's as the sampling changes); small rings of their own wrap
    # every few rows. Several windows take the ring's path.
    t, n, windows = data.draw(rolling_case(max_size=40))
    num = data.draw(with_nans(data.draw(st.lists(dyadic(), min_size=n, max_size=n)), 0.2))
    den = data.draw(with_nans(data.draw(st.lists(st.one_of(st.just(0.0), dyadic()), min_size=n, max_size=n)), 0.2))
    cov = data.draw(st.one_of(st.none(), st.lists(dyadic(64, 64), min_size=n, max_size=n)))
    kw = dict(numerator_coverage=cov, denominator_coverage=cov, min_coverage=data.draw(st.sampled_from([0.0, 0.5, 1.0])))
    with chunking(n_chunks, block, ring, trail):
        res = rolling_ratio(t, num, den, windows, **kw)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows, **kw)
    assert_close(res.coverage, ref_cov)
    assert_close(res.ratio, ref_ratio)


@pytest.mark.parametrize("ring, trail", [(16, 2), (16, 256), (64, 8), (1 << 17, 1 << 12)])
def test_window_starts_that_stay_skip_or_jump_match_naive(ring, trail):
    # Outputs are computed in spans, each output's start taken to be one of a pair (see
    # _pair_out); a span ends where a start leaves its pair. Sampling that changes density
    # (starts that stay put, or skip a boundary), jitter, a gap and a burst move the starts off
    # their pairs at many points, and a small ring cuts the spans where they would wrap it. With
    # a small lead's ring the windows read their trails from rings of their own (trail rows
    # each), whose trail leads the starts outrun where the sampling gets denser.
    rng = np.random.default_rng(11)
    steps = np.concatenate([
        SECOND_NS + rng.integers(-400, 400, 150) * 1_000_000,  # 1 s, jittered by up to 40 %
        rng.integers(200, 300, 150) * 1_000_000,  # 4x denser
        3 * SECOND_NS + rng.integers(-900, 900, 100) * 1_000_000,  # 3x sparser
        [40 * SECOND_NS],  # a gap
        rng.integers(1, 50, 40) * 1_000_000,  # a burst
        SECOND_NS + rng.integers(-50, 50, 160) * 1_000_000,
    ]).astype(np.int64)
    t = T0_NS + np.concatenate([[0], np.cumsum(steps)])
    n = len(steps)
    num = rng.integers(0, 1 << 20, n) / 64.0  # dyadic: every sum exact
    den = rng.integers(1, 1 << 20, n) / 64.0
    num[rng.random(n) < 0.05] = NAN
    windows = [10 * SECOND_NS, 37 * SECOND_NS + 123]
    with chunking(2, 256, ring, trail):
        res = rolling_ratio(t, num, den, windows, min_coverage=0.5)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows, min_coverage=0.5)
    assert_close(res.coverage, ref_cov)
    assert_close(res.ratio, ref_ratio)
    assert np.isfinite(res.ratio).sum() > 0.8 * res.ratio.size  # mostly known: the checks above compare numbers


def test_intervals_and_windows_past_2_to_the_52_ns_match_naive():
    # A span's integers (interval lengths, overlaps, covered ns) become floats in two instructions
    # when all are below 2**52 ns (52 days), through uint64 otherwise (see _pair_out). Daily
    # samples with gaps of 60 days and windows of 10, 30 and 100 days take both paths, and spans
    # that hold a gap take the slow one.
    day = 86_400 * SECOND_NS
    rng = np.random.default_rng(5)
    steps = day + rng.integers(-3_600, 3_600, 240) * SECOND_NS
    steps[[40, 41, 150]] = 60 * day + rng.integers(0, 1000, 3)
    t = T0_NS + np.concatenate([[0], np.cumsum(steps)])
    n = len(steps)
    num = rng.random(n) * 1e6
    den = rng.random(n) * 1e6 + 1.0
    num[rng.random(n) < 0.05] = NAN
    windows = [10 * day + 7, 30 * day, 100 * day]
    assert 100 * day > rolling_module._F52_LIMIT > 30 * day
    assert steps.max() > rolling_module._F52_LIMIT
    res = rolling_ratio(t, num, den, windows, min_coverage=0.5)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows, min_coverage=0.5)
    assert_close(res.coverage, ref_cov)
    assert_close(res.ratio, ref_ratio)
    assert np.isfinite(res.ratio).sum() > 0.5 * res.ratio.size


@pytest.mark.parametrize("data", ["signed", "energies"])
@pytest.mark.parametrize("with_cov", [False, True])
def test_the_leads_vector_sums_have_the_walks_bits(with_cov, data):
    # The lead sums a block's terms with its double-double sums side by side in one vector
    # register (_lead_rows, compiled: an LLVM loop), in runs that start where the blocks, a
    # chunk's start-up or a long window's trail lead start: a window of zeros is exactly zero
    # only if every run gives every bit of each prefix as TwoSum one interval at a time does
    # (naive.two_sum_prefix). Values of every magnitude, NaNs, a wrapping ring.
    # Energies (>= 0) take Fast2Sum (see _fast) in most runs: their spikes, far above the running
    # sum, a -0.0 and a negative term send their runs to TwoSum, where Fast2Sum would lose bits.
    rng = np.random.default_rng(3)
    n = 3000
    t = T0_NS + np.concatenate([[0], np.cumsum(rng.integers(1, 5 * SECOND_NS, n))]).astype(np.int64)
    if data == "signed":
        num = rng.standard_normal(n) * 10.0 ** rng.integers(-12, 15, n)
        den = rng.random(n) * 10.0 ** rng.integers(-12, 15, n)
    else:
        num = rng.random(n) * 10.0 ** rng.integers(2, 6, n)
        den = rng.random(n) * 10.0 ** rng.integers(2, 6, n)
        num[[1500, 2500]] = [3.3e13 + 0.1, 7.7e19]
        den[1700] = 1.1e15 + 0.3
        num[2050] = -0.0
        den[2900] = -1.5
    num[rng.random(n) < 0.03] = NAN
    den[rng.random(n) < 0.03] = NAN
    cov = rng.random(n) if with_cov else np.empty(0)
    size = 1024
    ring = np.zeros((rolling_module._RING_COLS, size))
    ring_ns = np.zeros(size, dtype=np.int64)
    k0 = 500

    def walked(k):
        return naive.two_sum_prefix(t, num, den, cov if with_cov else None, k)

    s = walked(k0)
    for k1 in (1200, 2100, n):  # blocks whose rows wrap the ring
        out = rolling_module._lead_rows(t, num, den, cov, cov, with_cov, ring, ring_ns, k0, k1, s)
        s = out[:7]
        assert out[7:] == (np.diff(t)[k0:k1].min(), np.diff(t)[k0:k1].max())  # shortest, longest
        assert s == walked(k1)
        for k in (k1, k1 - 300, k0 + 1):  # rows this block wrote: the prefix P_k
            p = walked(k)
            r = k & (size - 1)
            got = tuple(ring[c, r] for c in range(6 if with_cov else 4))
            assert got == p[:len(got)]
            if not with_cov:
                assert ring_ns[r] == p[6]
        k0 = k1
    assert np.isfinite(s[0]) and s[0] != 0.0


@pytest.mark.parametrize("fast", [False, True])
def test_the_scans_vector_loop_has_the_python_loops_bits(fast):
    # The compiled scan (four rows at a time, then one) against _scan_py by TwoSum, on runs of
    # every length mod 4; with `fast` (Fast2Sum, on terms that allow it: see _fast) the same bits.
    rng = np.random.default_rng(5)
    size = 32
    for count in range(14):
        ring = np.zeros((rolling_module._RING_COLS, size))
        ring[0] = rng.random(size) * 10.0 ** rng.integers(-3, 6, size)
        ring[2] = rng.random(size) * 10.0 ** rng.integers(-3, 6, size)
        ring[0, 7] = 0.0
        ring_ns = rng.integers(0, 5 * SECOND_NS, size)
        s = (1e7 * (1 + rng.random()), 1e-10 * rng.random(), 2e7 * (1 + rng.random()), -1e-10 * rng.random(), 0.0,
             0.0, 12345)
        if fast:
            signs = np.bitwise_or.reduce(float_bits(ring[[0, 2], 3:3 + count]).ravel())
            assert rolling_module._fast(s, signs, float_bits(ring[0, 3:3 + count]).max(initial=0),
                                        float_bits(ring[2, 3:3 + count]).max(initial=0))
        want_ring, want_ns = ring.copy(), ring_ns.copy()
        got = rolling_module._scan(False, ring, ring_ns, 3, count, s, fast)
        want = rolling_module._scan_py(False, want_ring, want_ns, 3, count, s, False)
        assert np.array_equal(float_bits(got[:6]), float_bits(want[:6])) and got[6] == want[6]
        assert np.array_equal(float_bits(ring), float_bits(want_ring)) and np.array_equal(ring_ns, want_ns)
        if count:  # the last row holds the final sums
            assert (ring[0, 2 + count], ring[2, 2 + count], ring_ns[2 + count]) == (got[0], got[2], got[6])


def test_fast_sums_only_where_fast2sum_has_twosums_bits():
    # _fast: no negative or -0.0 term, running sums finite, >= 0 and >= each sum's largest term.
    def fast(s_a, s_b, x, y):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        signs = np.bitwise_or.reduce(np.concatenate([float_bits(x), float_bits(y)]))
        return rolling_module._fast((s_a, 0.0, s_b, 0.0, 0.0, 0.0, 0), signs, float_bits(x).max(initial=0),
                                    float_bits(y).max(initial=0))

    assert fast(1e6, 2e6, [1.0, 1e6, 0.0], [2e6, 3.0, 0.0])
    assert fast(0.0, 0.0, [0.0], [0.0])
    assert not fast(1e6, 2e6, [1e6 * (1 + 2**-50)], [1.0])  # a term above the sum
    assert not fast(1e6, 2e6, [1.0], [2e6 * (1 + 2**-50)])
    assert not fast(1e6, 2e6, [1.0, -1.0], [1.0])  # a negative term
    assert not fast(1e6, 2e6, [1.0], [-0.0])  # -0.0
    assert not fast(-1e6, 2e6, [1.0], [1.0])  # a negative sum
    assert not fast(-0.0, 2e6, [0.0], [1.0])
    assert not fast(math.inf, 2e6, [1.0], [1.0])
    assert not fast(2.0**1000, 2e6, [1.0], [1.0])  # a run might overflow (Fast2Sum: -inf, TwoSum: NaN)
    assert fast(2.0**999, 2.0**999, [2.0**999], [1.0])
    assert not fast(NAN, 2e6, [1.0], [1.0])
    assert not fast(1e6, NAN, [1.0], [1.0])
    # The largest term is found by its bits, the floats' order for floats >= 0: subnormals too.
    assert fast(5e-324 * 3, 1.0, [5e-324, 5e-324 * 3], [1.0])
    assert not fast(5e-324 * 2, 1.0, [5e-324 * 3], [1.0])


def test_chunk_count_follows_the_series_and_the_windows_not_the_threads():
    # one chunk for short series; a power of two up to 64, each at least as long as the longest window
    assert rolling_module._n_chunks(np.arange(11, dtype=np.int64), np.array([5])) == 1
    assert rolling_module._n_chunks(np.arange(1, dtype=np.int64), np.array([5])) == 1
    t = np.arange((1 << 22) + 1, dtype=np.int64)
    assert rolling_module._n_chunks(t, np.array([900])) == 64
    assert rolling_module._n_chunks(t, np.array([900, 3 << 20])) == 1  # 4Mi / 3Mi intervals a chunk at least
    assert rolling_module._n_chunks(t, np.array([1 << 20, 900])) == 4
    assert rolling_module._n_chunks(t, np.array([(1 << 22) // 6])) == 4  # 6 chunks: a power of two, 4
    with mock.patch.object(numba, "get_num_threads", lambda: 1):
        assert rolling_module._n_chunks(t, np.array([900])) == 64


def test_chunk_start_inside_a_long_interval():
    """Cut into 2 chunks, the second starts at interval 2, which is longer than the window."""
    t = [0, 1, 2, 12, 22]
    e = [1.0, 1.0, 10.0, 10.0]
    den = [1.0, 1.0, 2.0, 4.0]
    # window 5: (-4,1] 1/1, cov 1/5 | (-3,2] 2/2, cov 2/5 | (7,12] 5/1, cov 1 | (17,22] 5/2, cov 1
    expected, expected_cov = [[1.0, 1.0, 5.0, 2.5]], [[0.2, 0.4, 1.0, 1.0]]
    assert_close(naive.rolling_ratio(t, e, den, [5])[0], expected, rtol=1e-12)
    for n_chunks in (1, 2):  # at d514ade, 2 chunks counted interval 2 whole and by its half
        with chunking(n_chunks, 16384):
            res = rolling_ratio(t, e, den, [5])
        assert_close(res.ratio, expected, rtol=1e-12)
        assert_close(res.coverage, expected_cov, rtol=1e-12)


@given(st.data())
def test_rolling_ratio_zero_it_energy_windows_are_nan(data):
    """General floats with runs of zero IT energy: NaN exactly where the window's IT energy is 0."""
    t, n, windows = data.draw(rolling_case())
    num = data.draw(st.lists(floats(0.0, 1e7), min_size=n, max_size=n))
    den = np.array(data.draw(st.lists(floats(1e-3, 1e7), min_size=n, max_size=n)))
    if n:
        lo = data.draw(st.integers(0, n - 1))
        den[lo : lo + data.draw(st.integers(1, n))] = 0.0
    den = data.draw(with_nans(den.tolist(), 0.2))
    res = rolling_ratio(t, num, den, windows)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows)
    np.testing.assert_array_equal(np.isnan(res.ratio), np.isnan(ref_ratio))
    assert_close(res.coverage, ref_cov)


def test_exact_coverage_share_meets_its_threshold():
    """Regression: a window exactly one interval long at coverage 0.25 has coverage exactly 0.25,
    so min_coverage=0.25 keeps its ratio (covered / window, not covered * (1 / window): 13679.25
    * (1 / 54717) is 0.24999999999999997)."""
    t = T0_NS + np.array([0, 18, 54735], dtype=np.int64)
    res = rolling_ratio(t, [0.0, 1 / 64], [0.0, 1 / 256], [54717], min_coverage=0.25,
                        numerator_coverage=[0.0, 0.25], denominator_coverage=[0.0, 0.25])
    assert res.coverage[0, 1] == 0.25
    assert res.ratio[0, 1] == 4.0


@pytest.mark.parametrize("with_cov", [False, True])
def test_chunk_start_up_walks_past_the_ring(with_cov):
    """The second chunk's lead first runs over the long window's span (the ring keeps only its
    last rows), and the long window reads its trail from a ring of its own; huge values then a
    stretch of zeros there: the short window over the zeros is exactly empty (NaN, IT energy 0),
    and every result agrees with one chunk."""
    n = 2000
    rng = np.random.default_rng(11)
    t = np.cumsum(rng.integers(8, 13, n + 1)).astype(np.int64)
    num = rng.random(n) * 1e15
    den = rng.random(n) * 1e15
    num[1500:1600] = 0.0
    den[1500:1600] = 0.0
    num[rng.random(n) < 0.02] = NAN
    cov = rng.random(n) if with_cov else None
    kw = dict(numerator_coverage=cov, denominator_coverage=cov)
    windows = [50, 6000]  # ~5 and ~600 intervals
    with chunking(2, 16, ring=4):
        assert rolling_module._ring_size(t, np.array(windows)) < 100  # the long window's trail: its own ring
        res = rolling_ratio(t, num, den, windows, **kw)
    with chunking(1, 16, ring=4):
        one = rolling_ratio(t, num, den, windows, **kw)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows, **kw)
    assert_close(res.ratio, ref_ratio)
    assert_close(res.coverage, ref_cov)
    assert_close(res.ratio, one.ratio, rtol=1e-14)
    assert np.all(np.isnan(res.ratio[0, 1510:1600]))


@pytest.mark.parametrize("highlight", ["", "\x1b[1m\x1b[1m\n"])
def test_only_rollings_expected_parallel_warning_is_silenced(highlight):
    """`several` is compiled with parallel=True for Numba's passes alone: its "no transformation for parallel
    execution" warning is expected and ignored, also where Numba highlights its messages with ANSI codes (seen on
    a GPU node); the same warning from any other file still shows."""
    import warnings

    from numba.core.errors import NumbaPerformanceWarning

    import puewatch.kernels.rolling  # noqa: F401 (installs the filter)

    text = highlight + "The keyword argument 'parallel=True' was specified but no transformation for parallel execution was possible."
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit(text, NumbaPerformanceWarning, "/opt/x/kernels/rolling.py", 559)
        warnings.warn_explicit(text, NumbaPerformanceWarning, "/opt/x/kernels/other.py", 12)
    assert [w.filename for w in seen] == ["/opt/x/kernels/other.py"]


# ---------------------------------------------------------------------------
# regular grids: the vectorised path gives the general path's bits


def _general(t, num, den, windows, **kw):
    with mock.patch.object(rolling_module, "_grid_step", lambda t, w: 0):
        return rolling_ratio(t, num, den, windows, **kw)


def _grid_only(t, num, den, windows, min_coverage=0.0, numerator_coverage=None, denominator_coverage=None):
    """The grid path alone (no fallback to the general path), and whether every chunk took it."""
    t = np.asarray(t, dtype=np.int64)
    w = np.asarray(windows, dtype=np.int64)
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    has_cov = numerator_coverage is not None
    ca = np.asarray(numerator_coverage, dtype=np.float64) if has_cov else np.empty(0)
    cb = np.asarray(denominator_coverage, dtype=np.float64) if has_cov else np.empty(0)
    step = rolling_module._grid_step(t, w)
    assert step > 0, "the case is not a regular grid for these windows"
    n_chunks = rolling_module._n_chunks(t, w)
    bad = np.empty(n_chunks, dtype=np.int64)
    out0 = np.full((w.shape[0], num.shape[0]), -1.0)
    out1 = np.full((w.shape[0], num.shape[0]), -1.0)
    ring = 1 << (int(w.max()) // step + rolling_module._BLOCK).bit_length()
    rolling_module._RUN[has_cov](t, num, den, ca, cb, w, np.argsort(-w, kind="stable"), float(min_coverage),
                                 rolling_module._cuts(t, w, n_chunks), rolling_module._BLOCK, ring,
                                 rolling_module._TRAIL_ROWS, step, out0, out1, bad)
    return RollingRatio(out0, out1), bool(np.all(bad == -1))


@given(st.data(), st.integers(1, 7), st.integers(1, 5), st.sampled_from([4, 16, 1 << 17]))
def test_regular_grid_path_gives_the_general_paths_bits(data, n_chunks, block, ring):
    n = data.draw(st.integers(1, 120))
    step = data.draw(st.integers(1, 3 * SECOND_NS))
    t = T0_NS + np.arange(n + 1, dtype=np.int64) * step
    # whole numbers of intervals: shorter than the series, longer, and up to the ring's rows
    windows = data.draw(st.lists(st.integers(1, min(2 * n + 2, ring)), min_size=1, max_size=4))
    windows = [k * step for k in windows]
    # Signed numerators (a -0.0 among them): where a window starts on a boundary the general
    # path adds the interval before it times a fraction of +0.0, a signed zero (see _pair_out),
    # which must leave the sum's bits, and so the sign of a zero ratio, as the grid's.
    signed = st.one_of(dyadic(), dyadic().map(lambda x: -x))
    num = data.draw(with_nans(data.draw(st.lists(signed, min_size=n, max_size=n)), 0.2))
    den = data.draw(with_nans(data.draw(st.lists(st.one_of(st.just(0.0), dyadic()), min_size=n, max_size=n)), 0.2))
    cov = data.draw(st.one_of(st.none(), st.lists(dyadic(64, 64), min_size=n, max_size=n)))
    kw = dict(numerator_coverage=cov, denominator_coverage=cov, min_coverage=data.draw(st.sampled_from([0.0, 0.5, 1.0])))
    with chunking(n_chunks, block, ring):
        grid, took_it = _grid_only(t, num, den, windows, **kw)
        public = rolling_ratio(t, num, den, windows, **kw)
        general = _general(t, num, den, windows, **kw)
    assert took_it
    assert_same_bits(grid.ratio, general.ratio)
    assert_same_bits(grid.coverage, general.coverage)
    assert_same_bits(public.ratio, general.ratio)
    ref_ratio, ref_cov = naive.rolling_ratio(t, num, den, windows, **kw)
    assert_close(grid.coverage, ref_cov)
    assert_close(grid.ratio, ref_ratio)


def test_regular_grid_with_huge_values_then_zeros_is_exactly_empty():
    """The grid path's prefixes are the general path's double-double sums: a 1 s grid with huge
    energies, then an hour of zeros; a 15 min window inside the zeros is exactly empty (NaN), as
    in the general path, and every bit agrees with it."""
    n = 4 * 3600
    t = T0_NS + np.arange(n + 1, dtype=np.int64) * SECOND_NS
    rng = np.random.default_rng(5)
    num = rng.random(n) * 1e15
    den = rng.random(n) * 1e15
    num[7200:10800] = 0.0
    den[7200:10800] = 0.0
    grid, took_it = _grid_only(t, num, den, [900 * SECOND_NS], min_coverage=0.5)
    assert took_it
    assert np.all(np.isnan(grid.ratio[0, 8100:10800]))
    assert np.all(grid.coverage[0, 8100:10800] == 1.0)
    general = _general(t, num, den, [900 * SECOND_NS], min_coverage=0.5)
    assert_same_bits(grid.ratio, general.ratio)
    assert_same_bits(grid.coverage, general.coverage)


@pytest.mark.parametrize("t, message", [
    ([0, 2, 3, 6], None),  # spans three steps of 2, but its intervals are 2, 1 and 3 long
    ([0, 2, 2, 6], "strictly increasing"),  # an interval of 0: refused, by the general path
])
def test_a_series_that_only_looks_regular_takes_the_general_path(t, message):
    t = T0_NS + np.array(t, dtype=np.int64)
    e = [1.0, 2.0, 4.0]
    assert rolling_module._grid_step(t, np.array([2])) == 2
    _, took_it = _grid_only(t, e, e, [2])
    assert not took_it
    if message is None:
        res = rolling_ratio(t, e, [1.0, 1.0, 1.0], [2])
        ref_ratio, ref_cov = naive.rolling_ratio(t, e, [1.0, 1.0, 1.0], [2])
        assert_close(res.ratio, ref_ratio)
        assert_close(res.coverage, ref_cov)
    else:
        with pytest.raises(ValueError, match=message):
            rolling_ratio(t, e, e, [2])


def test_grid_step_needs_every_window_a_whole_number_of_steps_within_the_ring():
    t = np.arange(11, dtype=np.int64) * 10
    assert rolling_module._grid_step(t, np.array([20, 50])) == 10
    assert rolling_module._grid_step(t, np.array([20, 55])) == 0  # 5.5 intervals: a partial one
    assert rolling_module._grid_step(t, np.array([10 * (rolling_module._RING + 1)])) == 0
    assert rolling_module._grid_step(t[:1], np.array([10])) == 0
    assert rolling_module._grid_step(np.array([0, 10, 25]), np.array([10])) == 0
