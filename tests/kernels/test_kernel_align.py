"""align / align_many: hold and linear alignment onto a grid; compared with tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_support import SECOND_NS, assert_close, floats, scale_of, times_ns, with_nans

from puewatch.kernels import align, align_many

NAN = math.nan

T = np.array([10, 20, 30, 40], dtype=np.int64)
X = [1.0, 2.0, NAN, 4.0]
GRID = np.array([5, 10, 15, 25, 31, 35, 40, 45, 100], dtype=np.int64)


def both(t, x, grid, **kw):
    return align(t, x, grid, **kw), naive.align(t, x, grid, **kw)


def test_hold_hand_computed():
    # grid:      5    10  15  25  31   35   40  45  100
    # last at/before: -  10  10  20  30   30   40  40  40
    # age:       -    0   5   5   1    5    0   5   60  (max 6)
    # value:   NaN    1   1   2  NaN  NaN   4   4  NaN   (30 is a failed poll: holds as NaN)
    expected = [NAN, 1.0, 1.0, 2.0, NAN, NAN, 4.0, 4.0, NAN]
    for out in both(T, X, GRID, method="hold", max_age_ns=6):
        assert_close(out, expected, rtol=1e-12)


def test_hold_is_the_default_method():
    assert_close(align(T, X, GRID, max_age_ns=6), align(T, X, GRID, method="hold", max_age_ns=6), rtol=0, atol=0)


def test_hold_age_limit_is_inclusive():
    # 15 - 10 = 5 <= 5 -> held; with max age 4 it is too old
    assert_close(align(T, X, [15], max_age_ns=5), [1.0])
    assert_close(align(T, X, [15], max_age_ns=4), [NAN])


def test_linear_hand_computed():
    # 5: before the series -> NaN; 10: a sample -> 1; 15: 1 + (2 - 1) * 5/10 = 1.5
    # 25, 31, 35: a neighbour is NaN -> NaN; 40: the last sample -> 4; 45, 100: after -> NaN
    expected = [NAN, 1.0, 1.5, NAN, NAN, NAN, 4.0, NAN, NAN]
    for out in both(T, X, GRID, method="linear", max_age_ns=10):
        assert_close(out, expected, rtol=1e-12)


def test_linear_needs_neighbours_at_most_max_age_apart():
    # samples 10 and 20 are 10 ns apart; max age 9: 15 cannot be interpolated, 10 and 20 still exact
    for out in both(T, X, [10, 15, 20], method="linear", max_age_ns=9):
        assert_close(out, [1.0, NAN, 2.0], rtol=1e-12)


def test_linear_irregular_hand_computed():
    t = [0, 4, 10]
    x = [0.0, 8.0, 2.0]
    # 1: 0 + 8 * 1/4 = 2; 7: 8 + (2 - 8) * 3/6 = 5; 9: 8 - 6 * 5/6 = 3
    for out in both(t, x, [1, 7, 9], method="linear", max_age_ns=100):
        assert_close(out, [2.0, 5.0, 3.0], rtol=1e-12)


def test_empty_series_and_empty_grid():
    e = np.array([], dtype=np.int64)
    assert_close(align(e, [], [1, 2], max_age_ns=5), [NAN, NAN])
    assert_close(align(e, [], [1, 2], method="linear", max_age_ns=5), [NAN, NAN])
    out = align(T, X, e, max_age_ns=5)
    assert out.shape == (0,) and out.dtype == np.float64


def test_single_sample():
    for method in ("hold", "linear"):
        assert_close(align([10], [7.0], [9, 10, 11], method=method, max_age_ns=5), [NAN, 7.0, 7.0 if method == "hold" else NAN])


def test_datetime64_series_and_grid():
    t = np.array(["2024-01-01T00:00:00", "2024-01-01T00:01:00"], dtype="datetime64[s]")
    grid = np.array(["2024-01-01T00:00:30"], dtype="datetime64[ns]")
    # halfway between 100 and 200
    assert_close(align(t, [100.0, 200.0], grid, method="linear", max_age_ns=120 * SECOND_NS), [150.0], rtol=1e-12)


def test_infinite_samples_are_nan():
    """Module docstring: interpolate only 'if both are finite', an infinite sample holds as NaN.

    d514ade returned inf for the interpolation between 1 and inf.
    """
    t, x = [0, 10, 20], [1.0, math.inf, 3.0]
    for out in both(t, x, [5, 10, 15], method="linear", max_age_ns=100):
        assert_close(out, [NAN, NAN, NAN])
    for out in both(t, x, [5, 10, 15, 20], method="hold", max_age_ns=100):
        assert_close(out, [1.0, NAN, NAN, 3.0])


# ---------------------------------------------------------------------------
# align_many


def test_align_many_hand_computed():
    # series 0: t 0, 10 -> 1, 2 ; series 1: empty ; series 2: t 5 -> 7
    offsets = [0, 2, 2, 3]
    t = [0, 10, 5]
    x = [1.0, 2.0, 7.0]
    grid = [0, 5, 10, 20]
    # hold, max age [5, 5, 100]:
    #   s0: 0->1 (age 0), 5->1 (age 5), 10->2, 20: age 10 > 5 -> NaN
    #   s1: nothing -> NaN
    #   s2: 0 -> before -> NaN, 5, 10, 20 -> 7 (age <= 15)
    expected = [[1.0, 1.0, 2.0, NAN], [NAN] * 4, [NAN, 7.0, 7.0, 7.0]]
    out = align_many(offsets, t, x, grid, max_age_ns=[5, 5, 100])
    assert out.shape == (3, 4) and out.dtype == np.float64 and out.flags.c_contiguous
    assert_close(out, expected, rtol=1e-12)
    assert_close(naive.align_many(offsets, t, x, grid, max_age_ns=[5, 5, 100]), expected, rtol=1e-12)
    # linear, one max age for all: s0: 0->1, 5->1.5, 10->2, 20 after -> NaN; s2: only 5 -> 7
    expected_lin = [[1.0, 1.5, 2.0, NAN], [NAN] * 4, [NAN, 7.0, NAN, NAN]]
    assert_close(align_many(offsets, t, x, grid, method="linear", max_age_ns=100), expected_lin, rtol=1e-12)


def test_align_many_no_series():
    out = align_many([0], np.array([], dtype=np.int64), [], [1, 2, 3], max_age_ns=5)
    assert out.shape == (0, 3)


# ---------------------------------------------------------------------------
# random cases


@st.composite
def series(draw, max_size=60):
    t = draw(times_ns(max_size=max_size, max_step=5 * SECOND_NS))
    x = draw(st.lists(floats(-1e6, 1e6), min_size=len(t), max_size=len(t)))
    return t, draw(with_nans(x, 0.2))


@st.composite
def grid_for(draw, t, max_size=60):
    """A grid around the series: before, inside (some on sample times) and after it."""
    if len(t):
        lo, hi = int(t.min()) - 10 * SECOND_NS, int(t.max()) + 10 * SECOND_NS
        pool = st.one_of(st.integers(lo, hi), st.sampled_from(t.tolist()))
    else:
        pool = st.integers(0, 10**12)
    g = draw(st.sets(pool, max_size=max_size))
    return np.array(sorted(g), dtype=np.int64)


@given(st.data(), st.sampled_from(["hold", "linear"]), st.integers(1, 20 * SECOND_NS))
def test_align_matches_naive(data, method, max_age):
    t, x = data.draw(series())
    grid = data.draw(grid_for(t))
    out = align(t, x, grid, method=method, max_age_ns=max_age)
    ref = naive.align(t, x, grid, method=method, max_age_ns=max_age)
    assert_close(out, ref, atol=1e-12 * scale_of(x))


@given(st.data(), st.sampled_from(["hold", "linear"]))
def test_align_many_matches_naive_and_align(data, method):
    n_series = data.draw(st.integers(0, 5))
    parts = [data.draw(series(max_size=30)) for _ in range(n_series)]
    offsets = np.concatenate([[0], np.cumsum([len(p[0]) for p in parts])]).astype(np.int64)
    t = np.concatenate([p[0] for p in parts] + [np.array([], dtype=np.int64)])
    x = np.concatenate([p[1] for p in parts] + [np.array([])])
    grid = data.draw(grid_for(t if len(t) else np.array([], dtype=np.int64)))
    if data.draw(st.booleans()):
        ages = data.draw(st.integers(1, 20 * SECOND_NS))
    else:
        ages = np.array(data.draw(st.lists(st.integers(1, 20 * SECOND_NS), min_size=n_series, max_size=n_series)), dtype=np.int64)
    out = align_many(offsets, t, x, grid, method=method, max_age_ns=ages)
    assert out.shape == (n_series, len(grid))
    ref = naive.align_many(offsets, t, x, grid, method=method, max_age_ns=ages)
    assert_close(out, ref, atol=1e-12 * scale_of(x))
    ages_each = np.broadcast_to(np.asarray(ages), (n_series,))
    for s, (ts, xs) in enumerate(parts):
        assert_close(out[s], align(ts, xs, grid, method=method, max_age_ns=int(ages_each[s])), rtol=0, atol=0)


@given(times_ns(min_size=1, max_size=60), floats(-1e3, 1e3), st.data())
def test_constant_series_aligns_to_the_constant_inside(t, value, data):
    grid = data.draw(grid_for(t))
    for method in ("hold", "linear"):
        out = align(t, np.full(len(t), value), grid, method=method, max_age_ns=10 * SECOND_NS)
        inside = (grid >= t[0]) & (grid <= t[-1])
        # every step is <= 10 s (times_ns default), so all inside points are known
        assert np.all(out[inside] == value)
        assert np.all(np.isnan(out[grid < t[0]]))
