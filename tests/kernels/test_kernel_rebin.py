"""rebin_energy: interval energies spread over a grid, with coverage and spread; vs tests/naive.py."""

from __future__ import annotations

import math
from unittest import mock

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_support import (SECOND_NS, T0_NS, assert_close, assert_same_bits, floats, fsum_finite, scale_of, times_ns,
                            with_nans)

from puewatch.kernels import RebinnedEnergy, rebin_energy
from puewatch.kernels import rebin as rebin_module

NAN = math.nan


def test_hand_computed():
    t = [0, 10, 20, 40]
    e = [10.0, NAN, 40.0]  # (0,10]: 10, (10,20]: unknown, (20,40]: 40
    grid = [0, 5, 15, 25, 40, 50]
    # [0,5]:   5/10 of 10 = 5                 covered 5/5   = 1
    # [5,15]:  5/10 of 10 = 5 (+ NaN part)    covered 5/10  = 0.5
    # [15,25]: (NaN part) + 5/20 of 40 = 10   covered 5/10  = 0.5
    # [25,40]: 15/20 of 40 = 30               covered 15/15 = 1
    # [40,50]: no data -> NaN                 covered 0
    # spread (max span 15: only (20,40], 20 ns long, is longer): 0, 0, 10, 30, NaN
    expected_e = [5.0, 5.0, 10.0, 30.0, NAN]
    expected_cov = [1.0, 0.5, 0.5, 1.0, 0.0]
    expected_spread = [0.0, 0.0, 10.0, 30.0, NAN]
    res = rebin_energy(t, e, grid, max_span_ns=15)
    assert isinstance(res, RebinnedEnergy)
    for got in (res, naive.rebin_energy(t, e, grid, max_span_ns=15)):
        energy, cov, spread = got
        assert_close(energy, expected_e, rtol=1e-12)
        assert_close(cov, expected_cov, rtol=1e-12)
        assert_close(spread, expected_spread, rtol=1e-12)
    # 5 + 5 + 10 + 30 = 50 = 10 + 40: nothing lost
    assert np.nansum(res.energy) == pytest.approx(50.0, rel=1e-12)


def test_default_has_no_spread():
    res = rebin_energy([0, 10, 20, 40], [10.0, NAN, 40.0], [0, 5, 15, 25, 40, 50])
    assert_close(res.spread, [0.0, 0.0, 0.0, 0.0, NAN])


def test_register_read_again_after_an_outage_keeps_the_gap_energy():
    # one 3600 Wh delta over a 1 h gap, grid of 15 min: 900 Wh in each, all of it estimated
    h = 3600 * SECOND_NS
    res = rebin_energy([0, h], [3600.0], np.arange(5) * (h // 4), max_span_ns=h // 2)
    assert_close(res.energy, [900.0] * 4, rtol=1e-12)  # 3600 * 1/4
    assert_close(res.coverage, [1.0] * 4, rtol=1e-12)
    assert_close(res.spread, [900.0] * 4, rtol=1e-12)


def test_zero_energy_is_covered_not_missing():
    res = rebin_energy([0, 10], [0.0], [0, 10, 20])
    assert_close(res.energy, [0.0, NAN])
    assert_close(res.coverage, [1.0, 0.0])


def test_interval_exactly_max_span_is_not_spread():
    res = rebin_energy([0, 10], [4.0], [0, 10], max_span_ns=10)
    assert_close(res.spread, [0.0])
    res = rebin_energy([0, 10], [4.0], [0, 10], max_span_ns=9)
    assert_close(res.spread, [4.0])


@pytest.mark.parametrize(
    "t, e, grid, n_out",
    [
        ([], [], [0, 10], 1),  # no input at all
        ([5], [], [0, 10], 1),  # one sample, no interval
        ([0, 10], [1.0], [], 0),  # empty grid
        ([0, 10], [1.0], [3], 0),  # one grid boundary, no grid interval
    ],
)
def test_degenerate_inputs(t, e, grid, n_out):
    res = rebin_energy(np.array(t, dtype=np.int64), e, np.array(grid, dtype=np.int64))
    assert res.energy.shape == res.coverage.shape == res.spread.shape == (n_out,)
    assert np.all(np.isnan(res.energy)) and np.all(res.coverage == 0.0)


def test_grid_outside_the_data():
    res = rebin_energy([100, 200], [5.0], [0, 50, 100, 300, 400])
    # only [100, 300] overlaps: all 5, covered 100 of 200 ns
    assert_close(res.energy, [NAN, NAN, 5.0, NAN], rtol=1e-12)
    assert_close(res.coverage, [0.0, 0.0, 0.5, 0.0], rtol=1e-12)


# ---------------------------------------------------------------------------
# random cases


@st.composite
def rebin_case(draw, spanning=False):
    t = draw(times_ns(max_size=80, max_step=20 * SECOND_NS))
    n_int = max(len(t) - 1, 0)
    e = draw(st.lists(floats(0.0, 1e6), min_size=n_int, max_size=n_int))
    e = draw(with_nans(e, 0.25))
    if len(t):
        lo, hi = int(t[0]), int(t[-1])
    else:
        lo, hi = 0, 10**11
    pad = 30 * SECOND_NS
    inner = draw(st.sets(st.integers(lo - pad, hi + pad), max_size=40))
    if spanning:
        inner |= {lo - draw(st.integers(0, pad)), hi + draw(st.integers(1, pad))}
    grid = np.array(sorted(inner), dtype=np.int64)
    max_span = draw(st.one_of(st.none(), st.integers(1, 20 * SECOND_NS)))
    return t, e, grid, max_span


@given(rebin_case())
def test_rebin_matches_naive(case):
    t, e, grid, max_span = case
    res = rebin_energy(t, e, grid, max_span_ns=max_span)
    ref_e, ref_cov, ref_spread = naive.rebin_energy(t, e, grid, max_span_ns=max_span)
    atol = 1e-12 * scale_of(e)
    assert_close(res.energy, ref_e, atol=atol)
    assert_close(res.coverage, ref_cov)
    assert_close(res.spread, ref_spread, atol=atol)
    assert np.all((res.coverage >= 0) & (res.coverage <= 1))
    known = ~np.isnan(res.energy)
    np.testing.assert_array_equal(known, res.coverage > 0)
    assert np.all(res.spread[known] <= res.energy[known] * (1 + 1e-12) + atol)


@given(rebin_case(spanning=True))
def test_rebinning_conserves_energy_when_the_grid_spans_the_data(case):
    t, e, grid, max_span = case
    res = rebin_energy(t, e, grid, max_span_ns=max_span)
    assert math.isclose(fsum_finite(res.energy), fsum_finite(e), rel_tol=1e-9, abs_tol=1e-12 * scale_of(e))


@given(data=st.data(), n_chunks=st.integers(2, 7))
def test_parallel_chunks_of_bins_give_the_same_bits(data, n_chunks):
    # The parallel kernel gathers each block of grid bins on its own; any split gives the same result.
    from puewatch.kernels.rebin import _rebin_energy

    t = data.draw(times_ns(min_size=2, max_size=60))
    e = data.draw(with_nans(data.draw(st.lists(floats(-1e6, 1e6), min_size=t.size - 1, max_size=t.size - 1))))
    g = np.unique(data.draw(st.lists(st.integers(int(t[0]) - 5 * SECOND_NS, int(t[-1]) + 5 * SECOND_NS),
                                     min_size=2, max_size=40)))
    if g.size < 2:
        return
    outs = []
    for chunks in (1, n_chunks):
        out = tuple(np.empty(g.size - 1) for _ in range(3))
        _rebin_energy(t, e, g, 3 * SECOND_NS, chunks, *out, np.empty((chunks, 3), dtype=np.int64))
        outs.append(out)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    assert_close(outs[0][0], naive.rebin_energy(t, e, g, max_span_ns=3 * SECOND_NS)[0], rtol=1e-9,
                 atol=1e-9 * scale_of(e))


def _check_error(t, g):
    # The error the separate checks give (times first, then the grid), or None.
    from puewatch.kernels import _validate as v

    try:
        v.strictly_increasing(t)
        v.strictly_increasing(g, "grid_ns")
    except ValueError as exc:
        return str(exc)
    return None


@given(data=st.data(), n_chunks=st.integers(1, 7))
def test_times_checked_while_read_refuse_exactly_what_a_separate_check_refuses(data, n_chunks):
    # The kernel compares the times it reads; the rest (before and after the grid, between
    # tasks) is compared after it: together the same error, at the same index, as checking
    # every time first, wherever the fault lies (inside the grid, outside it, in the grid).
    from puewatch.kernels.rebin import _rebin_energy, _times_checked

    t = data.draw(times_ns(min_size=2, max_size=60)).copy()
    g = np.unique(data.draw(st.lists(st.integers(int(t[0]) - 5 * SECOND_NS, int(t[-1]) + 5 * SECOND_NS),
                                     min_size=2, max_size=40)))
    if data.draw(st.booleans()):
        i = data.draw(st.integers(1, t.size - 1))
        t[i] = t[i - 1] - data.draw(st.integers(0, 3 * SECOND_NS))  # equal or earlier
    if g.size > 2 and data.draw(st.booleans()):
        k = data.draw(st.integers(1, g.size - 1))
        g[k] = g[k - 1] - data.draw(st.integers(0, 3 * SECOND_NS))
    if g.size < 2:
        return
    e = np.ones(t.size - 1)
    expected = _check_error(t, g)
    checked = np.empty((n_chunks, 3), dtype=np.int64)
    # Times out of order give meaningless sums, 0 / 0 among them (which NumPy warns of where the
    # kernels run without the JIT): refused below.
    with np.errstate(divide="ignore", invalid="ignore"):
        _rebin_energy(t, e, g, 3 * SECOND_NS, n_chunks, *(np.empty(g.size - 1) for _ in range(3)), checked)
        try:
            _times_checked(t, g, checked)
            got = None
        except ValueError as exc:
            got = str(exc)
        assert got == expected
        # And through the public function (one task for a series this short).
        if expected is None:
            rebin_energy(t, e, g)
        else:
            with pytest.raises(ValueError) as exc:
                rebin_energy(t, e, g)
            assert str(exc.value) == expected


def test_a_fault_the_grid_never_reaches_is_still_refused():
    # Times out of order long before and long after the grid: the kernel never reads them.
    t = np.array([0, 5, 5, 10, 20, 30, 40, 50, 49, 60], dtype=np.int64)
    e = np.ones(t.size - 1)
    with pytest.raises(ValueError, match=r"t_ns: times must be strictly increasing; index 2 \(5\)"):
        rebin_energy(t, e, [20, 30])
    t[2] = 7
    with pytest.raises(ValueError, match=r"t_ns: .*index 8 \(49\) is not after index 7 \(50\)"):
        rebin_energy(t, e, [20, 30])
    t[8] = 55
    assert rebin_energy(t, e, [20, 30]).energy[0] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# the kernel's exact bits


def _rebin_in_order(t, e, grid, max_span_ns):
    # The kernel's arithmetic, one bin at a time over every interval: each overlapping
    # interval with a finite energy adds x * (overlap / dt) to the bin, in the order of the
    # intervals, starting from 0.0; coverage is the summed overlap over the bin's width.
    # The int64 differences are converted to float64 before dividing, as the kernel does.
    span = np.iinfo(np.int64).max if max_span_ns is None else max_span_ns
    t = [int(v) for v in t]
    g = [int(v) for v in grid]
    out = np.empty((3, max(len(g) - 1, 0)))
    for k in range(len(g) - 1):
        g0, g1 = g[k], g[k + 1]
        acc_e = acc_cov = acc_spread = 0.0
        for j in range(len(t) - 1):
            a, b, x = t[j], t[j + 1], float(e[j])
            overlap = min(b, g1) - max(a, g0)
            if math.isfinite(x) and overlap > 0:
                share = x * (float(overlap) / float(b - a))
                acc_e += share
                acc_cov += float(overlap)
                if b - a > span:
                    acc_spread += share
        out[1, k] = acc_cov / float(g1 - g0)
        out[0, k] = NAN if acc_cov == 0.0 else acc_e
        out[2, k] = NAN if acc_cov == 0.0 else acc_spread
    return out


@st.composite
def jittered_case(draw):
    # A meter's series as the collector sees it: polls every `step` with jitter, now and
    # then a gap; energies with NaNs, zeros and signs; a regular grid finer or coarser
    # than the polls, starting before or after the series and ending before or after it.
    n = draw(st.integers(2, 60))
    step = draw(st.sampled_from([SECOND_NS, 10 * SECOND_NS, 997]))
    jitter = draw(st.integers(0, step // 2))
    steps = [step + draw(st.integers(-jitter, jitter)) for _ in range(n - 1)]
    for i in draw(st.sets(st.integers(0, n - 2), max_size=3)):  # gaps
        steps[i] *= draw(st.integers(2, 40))
    t = T0_NS + np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)
    e = draw(st.lists(st.one_of(floats(-1e6, 1e6), st.sampled_from([0.0, -0.0, 1.0])), min_size=n - 1,
                      max_size=n - 1))
    e = draw(with_nans(e, 0.2))
    if draw(st.booleans()):
        e[draw(st.integers(0, n - 2))] = draw(st.sampled_from([math.inf, -math.inf]))
    ratio = draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0]))
    g_step = max(1, int(step * ratio)) + draw(st.sampled_from([0, 0, 1, -1]))
    g_step = max(g_step, 1)
    span = int(t[-1] - t[0])
    g_start = int(t[0]) + draw(st.integers(-3 * g_step, span // 2))
    g_n = draw(st.integers(2, max(2, span // g_step + 6)))
    grid = g_start + g_step * np.arange(g_n, dtype=np.int64)
    max_span = draw(st.one_of(st.none(), st.integers(1, 3 * step)))
    return t, e, grid, max_span


@given(st.one_of(jittered_case(), rebin_case()), st.integers(1, 7))
def test_kernel_gives_the_in_order_sums_bits(case, n_chunks):
    # Exact, not close: the kernel's sums are those of _rebin_in_order, bit for bit, however
    # the bins are split between parallel tasks (so a faster kernel cannot change a result).
    t, e, grid, max_span = case
    with mock.patch.object(rebin_module, "_n_chunks", lambda n_grid: n_chunks):
        res = rebin_energy(t, e, grid, max_span_ns=max_span)
    for got, want in zip(res, _rebin_in_order(t, e, grid, max_span)):
        assert_same_bits(got, want)

