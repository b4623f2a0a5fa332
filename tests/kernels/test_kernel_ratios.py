"""ratio / pue / partial_pue / clf / plf / cop: guarded energy ratios; compared with tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kernel_support import assert_close

from puewatch.kernels import clf, cop, partial_pue, plf, pue, ratio

NAN = math.nan
INF = math.inf
ALL = [ratio, pue, partial_pue, clf, plf, cop]


@pytest.mark.parametrize("fn", ALL)
def test_scalar_hand_computed(fn):
    out = fn(1500.0, 1000.0)  # 1500 / 1000
    assert isinstance(out, float) and out == pytest.approx(1.5, rel=1e-15)
    assert naive.ratio(1500.0, 1000.0) == pytest.approx(1.5, rel=1e-15)


def test_named_ratios_hand_computed():
    # facility 1.2 MWh over IT 1 MWh; hall boundary 1.1 MWh; cooling 150 kWh; losses 50 kWh
    it = 1000.0
    assert pue(1200.0, it) == pytest.approx(1.2)
    assert partial_pue(1100.0, it) == pytest.approx(1.1)
    assert clf(150.0, it) == pytest.approx(0.15)
    assert plf(50.0, it) == pytest.approx(0.05)
    # chiller removes 3517 kWh of heat for 1000 kWh electric: COP 3.517 -> 1 kW/ton
    assert cop(3517.0, 1000.0) == pytest.approx(3.517)
    assert 3.517 / cop(3517.0, 1000.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "num, den",
    [
        (NAN, 1000.0),  # missing facility energy
        (1500.0, NAN),  # missing IT energy
        (1500.0, 0.0),  # zero IT energy
        (0.0, 0.0),
        (1500.0, -10.0),  # a negative denominator is a metering fault
        (INF, 1000.0),  # not finite
        (-INF, 1000.0),
        (1500.0, INF),
    ],
)
def test_guarded_cases_are_nan(num, den):
    assert math.isnan(pue(num, den))
    assert math.isnan(naive.ratio(num, den))


def test_pue_below_one_is_returned_as_computed():
    assert pue(900.0, 1000.0) == pytest.approx(0.9)  # a fault to flag, not to hide


def test_zero_numerator_is_zero():
    assert clf(0.0, 10.0) == 0.0


def test_arrays_keep_their_shape_and_broadcast():
    num = np.array([[1500.0, 1200.0], [NAN, 1300.0]])
    den = np.array([[1000.0, 0.0], [1000.0, 1000.0]])
    # [[1.5, zero IT -> NaN], [missing -> NaN, 1.3]]
    expected = [[1.5, NAN], [NAN, 1.3]]
    out = pue(num, den)
    assert out.shape == (2, 2) and out.dtype == np.float64
    assert_close(out, expected, rtol=1e-15)
    assert_close(naive.ratio(num, den), expected, rtol=1e-15)
    # a scalar denominator broadcasts: [3000, 1500] / 1000
    assert_close(pue([3000.0, 1500.0], 1000.0), [3.0, 1.5], rtol=1e-15)
    # integer inputs are energies too
    assert_close(pue(np.array([3, 6]), np.array([2, 4])), [1.5, 1.5], rtol=1e-15)


def test_empty_array():
    out = pue(np.array([]), np.array([]))
    assert out.shape == (0,)


def test_coverage_threshold():
    # coverage 1 >= 0.9 -> 1.5; 0.5 < 0.9 -> NaN; exactly 0.9 is enough
    out = pue([1500.0, 1500.0, 1500.0], [1000.0, 1000.0, 1000.0], coverage=[1.0, 0.5, 0.9], min_coverage=0.9)
    assert_close(out, [1.5, NAN, 1.5], rtol=1e-15)
    # coverage given but default min_coverage 0: never limits
    assert_close(pue([1500.0], [1000.0], coverage=[0.0]), [1.5], rtol=1e-15)
    # scalar coverage broadcasts
    assert_close(pue([1500.0, 1200.0], [1000.0, 1000.0], coverage=0.5, min_coverage=0.6), [NAN, NAN])
    assert math.isnan(pue(1500.0, 1000.0, coverage=0.2, min_coverage=0.5))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # NUMBA_DISABLE_JIT
def test_overflowing_ratio_is_nan_never_inf():
    """Module docstring: 'The result is NaN, never inf'; 1e300 / 1e-10 overflows (d514ade returned inf)."""
    out = pue(1e300, 1e-10)
    assert math.isnan(out), f"expected NaN, got {out}"
    assert math.isnan(naive.ratio(1e300, 1e-10))


finite_or_special = st.one_of(
    st.floats(-1e6, 1e9, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, NAN, INF, -INF, 1e-300]),
)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # NUMBA_DISABLE_JIT
@given(st.data())
def test_ratio_matches_naive(data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6))
    num = data.draw(hnp.arrays(np.float64, shape, elements=finite_or_special))
    # the denominator either has the same shape or is a scalar (broadcast)
    den_shape = data.draw(st.sampled_from([shape, ()]))
    den = data.draw(hnp.arrays(np.float64, den_shape, elements=finite_or_special))
    if data.draw(st.booleans()):
        cov = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0.0, 1.0)))
        min_cov = data.draw(st.floats(0.0, 1.0))
        out = ratio(num, den, coverage=cov, min_coverage=min_cov)
        ref = naive.ratio(num, den, coverage=cov, min_coverage=min_cov)
    else:
        out = ratio(num, den)
        ref = naive.ratio(num, den)
    if shape == ():
        assert isinstance(out, float)
    else:
        assert out.shape == shape
    assert_close(out, ref, rtol=1e-15, atol=0)
    assert not np.any(np.isinf(out))
