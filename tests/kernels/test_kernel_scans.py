"""energy_before, register_spans, power_fill: one-pass scans of a meter's intervals; vs tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_support import SECOND_NS, T0_NS, assert_close, floats, scale_of, times_ns, with_nans

from puewatch.kernels import (
    FLAG_JUMP,
    FLAG_RESET,
    FLAG_WRAP,
    PowerFill,
    RegisterSpans,
    energy_before,
    power_fill,
    register_spans,
)

NAN = math.nan
EMPTY = np.empty(0, np.int64)


def secs(*s):
    return T0_NS + np.array([int(x * SECOND_NS) for x in s], dtype=np.int64)


def as_lists(spans):
    return [np.asarray(x).tolist() if isinstance(x, np.ndarray) else x for x in spans]


# ---------------------------------------------------------------------------
# hand-computed cases


def test_energy_before_hand_computed():
    t = secs(0, 10, 20, 40, 100)
    e = [10.0, NAN, 40.0, 60.0]  # (20,40]: 40 over 20 s; (40,100]: 60 over 60 s, longer than 30 s
    x = secs(-5, 0, 5, 10, 15, 30, 40, 70, 200)
    # before -5 and 0: nothing; 5: half of 10; 10: 10; 15: NaN interval adds nothing; 30: 10 + 20;
    # 40: 10 + 40; 70: 50 + 30 without a limit, 50 with max 30 s (the 60 s interval is left out)
    expected_all = [0.0, 0.0, 5.0, 10.0, 10.0, 30.0, 50.0, 80.0, 110.0]
    expected_30s = [0.0, 0.0, 5.0, 10.0, 10.0, 30.0, 50.0, 50.0, 50.0]
    assert_close(energy_before(t, e, x), expected_all, rtol=1e-12)
    assert_close(energy_before(t, e, x, max_interval_ns=30 * SECOND_NS), expected_30s, rtol=1e-12)
    assert_close(naive.energy_before(t, e, x), expected_all, rtol=1e-12)
    assert_close(naive.energy_before(t, e, x, max_interval_ns=30 * SECOND_NS), expected_30s, rtol=1e-12)


def test_register_spans_hand_computed():
    t = secs(0, 60, 120, 1200, 1260, 1320, 1380)
    d = [1.0, 2.0, 5.0, NAN, 0.5, 0.5]  # (120,1200]: read again after 18 min; (1200,1260]: unknown
    f = [0, FLAG_WRAP, 0, FLAG_JUMP, FLAG_RESET, FLAG_RESET]
    got = register_spans(t, d, f, secs(0)[0], secs(1320)[0], 900 * SECOND_NS)
    assert isinstance(got, RegisterSpans)
    # one reset in the period [0, 1320 s) (the last interval starts at its end); every known
    # delta is a known span, only the short ones are observed
    expected = (1, True, secs(0, 1260).tolist(), secs(1200, 1380).tolist(),
                secs(0, 1260).tolist(), secs(120, 1380).tolist())
    assert tuple(as_lists(got)) == expected
    assert tuple(as_lists(naive.register_spans(t, d, f, secs(0)[0], secs(1320)[0], 900 * SECOND_NS))) == expected
    assert isinstance(got.resets, int) and isinstance(got.used, bool)


def test_register_spans_outside_the_period_are_returned_but_not_used():
    t = secs(0, 60, 120)
    got = register_spans(t, [1.0, 1.0], [FLAG_RESET, 0], secs(500)[0], secs(600)[0], 900 * SECOND_NS)
    assert (got.resets, got.used) == (0, False)
    assert got.known_start_ns.tolist() == secs(0).tolist() and got.known_end_ns.tolist() == secs(120).tolist()


def test_power_fill_hand_computed():
    t = secs(0, 60, 120, 180, 240, 300)
    e = [1.0, 2.0, 3.0, NAN, 5.0]
    # the register knows [90 s, 150 s): intervals (60,120] and (120,180] overlap it
    got = power_fill(t, e, secs(90), secs(150), secs(0)[0], secs(300)[0])
    assert isinstance(got, PowerFill)
    assert_close(got.energy, [1.0, NAN, NAN, NAN, 5.0])
    assert got.used is True
    assert got.observed_start_ns.tolist() == secs(0, 240).tolist()
    assert got.observed_end_ns.tolist() == secs(60, 300).tolist()
    ref = naive.power_fill(t, e, secs(90), secs(150), secs(0)[0], secs(300)[0])
    assert_close(ref[0], got.energy)
    assert as_lists(ref[1:]) == as_lists(got[1:])


def test_power_fill_touching_a_register_span_is_kept():
    # A span ending where an interval starts does not overlap it (half-open spans).
    t = secs(0, 60, 120)
    got = power_fill(t, [1.0, 2.0], secs(0), secs(60), secs(0)[0], secs(120)[0])
    assert_close(got.energy, [NAN, 2.0])
    got = power_fill(t, [1.0, 2.0], EMPTY, EMPTY, secs(200)[0], secs(300)[0])
    assert_close(got.energy, [1.0, 2.0])
    assert got.used is False and got.observed_start_ns.tolist() == secs(0).tolist()


@pytest.mark.parametrize("n", [0, 1])
def test_no_intervals(n):
    t = secs(*range(n))
    assert energy_before(t, [], secs(0, 1)).tolist() == [0.0, 0.0]
    got = register_spans(t, [], np.empty(0, np.uint8), 0, 1, SECOND_NS)
    assert (got.resets, got.used) == (0, False) and all(x.shape == (0,) for x in got[2:])
    got = power_fill(t, [], EMPTY, EMPTY, 0, 1)
    assert got.energy.shape == (0,) and got.used is False and got.observed_start_ns.shape == (0,)


# ---------------------------------------------------------------------------
# against the references


@st.composite
def intervals(draw, max_size: int = 50):
    t = draw(times_ns(min_size=0, max_size=max_size))
    e = draw(with_nans(draw(st.lists(floats(-1e6, 1e6), min_size=max(t.size - 1, 0), max_size=max(t.size - 1, 0)))))
    return t, e


@st.composite
def instants(draw, t: np.ndarray, max_size: int = 20):
    """Sorted times in and around t, sample times included."""
    lo = int(t[0]) - 5 * SECOND_NS if t.size else T0_NS
    hi = int(t[-1]) + 5 * SECOND_NS if t.size else T0_NS + SECOND_NS
    xs = draw(st.lists(st.one_of(st.integers(lo, hi), st.sampled_from(t.tolist() or [lo])), max_size=max_size))
    return np.array(sorted(xs), dtype=np.int64)


@st.composite
def period(draw, t: np.ndarray):
    lo = int(t[0]) - 5 * SECOND_NS if t.size else T0_NS
    hi = int(t[-1]) + 5 * SECOND_NS if t.size else T0_NS + SECOND_NS
    choice = st.one_of(st.integers(lo, hi), st.sampled_from(t.tolist() or [lo]))
    a, b = draw(choice), draw(choice)
    return min(a, b), max(a, b) + 1


@given(data=st.data(), limit=st.one_of(st.none(), st.integers(1, 20 * SECOND_NS)))
def test_energy_before_matches_reference(data, limit):
    t, e = data.draw(intervals())
    x = data.draw(instants(t))
    got = energy_before(t, e, x, max_interval_ns=limit)
    assert_close(got, naive.energy_before(t, e, x, max_interval_ns=limit), rtol=1e-9, atol=1e-9 * scale_of(e))


@given(data=st.data(), max_gap=st.integers(1, 20 * SECOND_NS))
def test_register_spans_matches_reference(data, max_gap):
    t, d = data.draw(intervals())
    f = np.array(data.draw(st.lists(st.integers(0, 31), min_size=d.size, max_size=d.size)), dtype=np.uint8)
    start, end = data.draw(period(t))
    got = register_spans(t, d, f, start, end, max_gap)
    assert tuple(as_lists(got)) == tuple(as_lists(naive.register_spans(t, d, f, start, end, max_gap)))


@given(data=st.data())
def test_power_fill_matches_reference(data):
    t, e = data.draw(intervals())
    lo = int(t[0]) - 5 * SECOND_NS if t.size else T0_NS
    hi = int(t[-1]) + 5 * SECOND_NS if t.size else T0_NS + SECOND_NS
    # Sorted distinct edges paired up: sorted, disjoint, non-empty spans, some on sample times.
    edges = sorted(set(data.draw(st.lists(st.one_of(st.integers(lo, hi), st.sampled_from(t.tolist() or [lo])),
                                          max_size=12))))
    edges = edges[: len(edges) // 2 * 2]
    rs, re_ = np.array(edges[0::2], np.int64), np.array(edges[1::2], np.int64)
    start, end = data.draw(period(t))
    got = power_fill(t, e, rs, re_, start, end)
    ref = naive.power_fill(t, e, rs, re_, start, end)
    assert_close(got.energy, ref[0], rtol=0, atol=0)
    assert as_lists(got[1:]) == as_lists(ref[1:])


def test_register_spans_of_register_deltas_agree_with_rebin_coverage():
    # The spans are where the register's energy is known: the same time rebin_energy counts as covered.
    from puewatch.kernels import rebin_energy, register_deltas

    t = secs(0, 60, 120, 180, 2000, 2060, 2120)
    reading = [10.0, 11.0, NAN, 13.0, 20.0, 21.0, 22.0]
    d = register_deltas(t, reading)
    got = register_spans(t, d.delta, d.flags, t[0], t[-1], 900 * SECOND_NS)
    grid = np.array([t[0], t[-1]])
    covered_ns = rebin_energy(t, d.delta, grid).coverage[0] * (t[-1] - t[0])
    assert covered_ns == pytest.approx(float(np.sum(got.known_end_ns - got.known_start_ns)))


# ---------------------------------------------------------------------------
# bad input: one-line errors naming what is wrong


def test_times_must_increase_and_the_error_names_the_index():
    t = [0, 10, 10, 20]
    with pytest.raises(ValueError, match="index 2"):
        energy_before(t, [1.0, 1.0, 1.0], [5])
    with pytest.raises(ValueError, match="index 2"):
        register_spans(t, [1.0, 1.0, 1.0], [0, 0, 0], 0, 30, 100)
    with pytest.raises(ValueError, match="index 2"):
        power_fill(t, [1.0, 1.0, 1.0], EMPTY, EMPTY, 0, 30)


def test_lengths_must_match():
    with pytest.raises(ValueError, match="energy: length 1 does not match len"):
        energy_before([0, 10, 20], [1.0], [5])
    with pytest.raises(ValueError, match="delta: length 3"):
        register_spans([0, 10, 20], [1.0, 1.0, 1.0], [0, 0, 0], 0, 30, 100)
    with pytest.raises(ValueError, match="flags: length 1"):
        register_spans([0, 10, 20], [1.0, 1.0], [0], 0, 30, 100)
    with pytest.raises(ValueError, match="register_end_ns: length 0"):
        power_fill([0, 10], [1.0], [5], EMPTY, 0, 30)


def test_flags_must_be_integer_bits_in_one_dimension():
    with pytest.raises(TypeError, match="flags: expected integer flag bits"):
        register_spans([0, 10], [1.0], [0.5], 0, 30, 100)
    with pytest.raises(ValueError, match="flags: expected a 1-D array"):
        register_spans([0, 10], [1.0], [[0]], 0, 30, 100)


def test_instants_must_not_decrease():
    with pytest.raises(ValueError, match=r"x_ns: times must be non-decreasing; index 2"):
        energy_before([0, 10], [1.0], [1, 5, 4])
    assert energy_before([0, 10], [1.0], [5, 5]).tolist() == [0.5, 0.5]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "x", None])
def test_durations_must_be_positive_whole_ns(bad):
    if bad is not None:
        with pytest.raises(ValueError, match="max_interval_ns"):
            energy_before([0, 10], [1.0], [5], max_interval_ns=bad)
    with pytest.raises(ValueError, match="max_gap_ns"):
        register_spans([0, 10], [1.0], [0], 0, 30, bad)


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [(30, 30, "end_ns: the period must end after it starts"), (1.5, 30, "start_ns: must be a whole number"),
     ("a", 30, "start_ns: must be a whole number"), (0, 2**63, "end_ns: must be a whole number of int64")],
)
def test_period_must_be_whole_ns_and_not_empty(start, end, match):
    with pytest.raises(ValueError, match=match):
        register_spans([0, 10], [1.0], [0], start, end, 100)
    with pytest.raises(ValueError, match=match):
        power_fill([0, 10], [1.0], EMPTY, EMPTY, start, end)


@pytest.mark.parametrize(
    ("starts", "ends", "match"),
    [([5], [5], "register_end_ns: span 0 is empty or reversed"),
     ([0, 5], [6, 9], "register_start_ns: spans must be sorted and disjoint; span 1"),
     ([5, 0], [6, 1], "register_start_ns: spans must be sorted and disjoint; span 1")],
)
def test_register_spans_must_be_sorted_disjoint_and_non_empty(starts, ends, match):
    with pytest.raises(ValueError, match=match):
        power_fill([0, 10], [1.0], starts, ends, 0, 30)
    # touching spans are fine
    assert_close(power_fill([0, 10, 20], [1.0, 2.0], [0, 5], [5, 10], 0, 30).energy, [NAN, 2.0])
