"""group_sums: weighted meter sums into groups with NaN accounting; compared with tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from kernel_support import assert_close, floats, with_nans

from puewatch.kernels import GroupSums, group_sums

NAN = math.nan

VALUES = [
    [1.0, 2.0, NAN],  # meter 0
    [10.0, 20.0, 30.0],  # meter 1
    [100.0, NAN, 300.0],  # meter 2
]
COEF = [
    [1, 1, 0],  # group 0 = m0 + m1
    [1, 0, -1],  # group 1 = m0 - m2 (a tenant sub-meter behind the incomer)
]


def test_hand_computed_skipna_false():
    # g0: 1+10 = 11, 2+20 = 22, m0 missing -> NaN       missing 0, 0, 1 (m2's NaN is not a member)
    # g1: 1-100 = -99, m2 missing -> NaN, m0 missing -> NaN   missing 0, 1, 1
    expected_total = [[11.0, 22.0, NAN], [-99.0, NAN, NAN]]
    expected_missing = [[0, 0, 1], [0, 1, 1]]
    res = group_sums(VALUES, COEF)
    assert isinstance(res, GroupSums)
    assert res.total.dtype == np.float64 and res.n_missing.dtype == np.int32
    assert_close(res.total, expected_total, rtol=1e-12)
    np.testing.assert_array_equal(res.n_missing, expected_missing)
    ref_total, ref_missing = naive.group_sums(VALUES, COEF)
    assert_close(ref_total, expected_total, rtol=1e-12)
    np.testing.assert_array_equal(ref_missing, expected_missing)


def test_hand_computed_skipna_true():
    # g0: 11, 22, 30 (only m1 present); g1: -99, 2 (only m0), -300 (only -m2)
    expected_total = [[11.0, 22.0, 30.0], [-99.0, 2.0, -300.0]]
    res = group_sums(VALUES, COEF, skipna=True)
    assert_close(res.total, expected_total, rtol=1e-12)
    np.testing.assert_array_equal(res.n_missing, [[0, 0, 1], [0, 1, 1]])
    assert_close(naive.group_sums(VALUES, COEF, skipna=True)[0], expected_total, rtol=1e-12)


def test_fractional_weights():
    # 0.5 * 4 + 2 * 3 = 8
    res = group_sums([[4.0], [3.0]], [[0.5, 2.0]])
    assert_close(res.total, [[8.0]], rtol=1e-12)


def test_all_members_missing_with_skipna_is_zero_and_counted():
    res = group_sums([[NAN], [NAN]], [[1, 1]], skipna=True)
    assert_close(res.total, [[0.0]])
    np.testing.assert_array_equal(res.n_missing, [[2]])


def test_empty_shapes():
    res = group_sums(np.empty((2, 0)), [[1, 1]])
    assert res.total.shape == (1, 0) and res.n_missing.shape == (1, 0)
    res = group_sums(np.empty((0, 3)), np.empty((2, 0)))
    assert_close(res.total, np.zeros((2, 3)))  # a group of no meters sums to 0
    np.testing.assert_array_equal(res.n_missing, np.zeros((2, 3)))


def test_more_grid_columns_than_one_parallel_block():
    # the kernel works in blocks of grid columns; cross a block boundary
    n_grid = 4096 * 2 + 3
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 100, size=(3, n_grid))
    values[1, ::97] = np.nan
    coef = [[1, 1, 1], [1, -1, 0], [0, 0, 2]]
    for skipna in (False, True):
        res = group_sums(values, coef, skipna=skipna)
        expected = np.stack(
            [
                (values[0] + values[1] + values[2]) if not skipna else values[0] + np.nan_to_num(values[1]) + values[2],
                (values[0] - values[1]) if not skipna else values[0] - np.nan_to_num(values[1]),
                2 * values[2],
            ]
        )
        assert_close(res.total, expected, atol=1e-9)
        np.testing.assert_array_equal(res.n_missing[0], np.isnan(values[1]).astype(int))
        np.testing.assert_array_equal(res.n_missing[2], 0)


@st.composite
def group_case(draw):
    n_meters = draw(st.integers(0, 6))
    n_grid = draw(st.integers(0, 40))
    n_groups = draw(st.integers(1, 4))
    values = np.array(
        [draw(with_nans(draw(st.lists(floats(-1e6, 1e6), min_size=n_grid, max_size=n_grid)), 0.2)) for _ in range(n_meters)]
    ).reshape(n_meters, n_grid)
    weight = st.one_of(st.sampled_from([0.0, 1.0, -1.0]), floats(-2.0, 2.0))
    coef = np.array(
        draw(st.lists(st.lists(weight, min_size=n_meters, max_size=n_meters), min_size=n_groups, max_size=n_groups))
    ).reshape(n_groups, n_meters)
    return values, coef


@given(group_case(), st.booleans())
def test_group_sums_matches_naive(case, skipna):
    values, coef = case
    res = group_sums(values, coef, skipna=skipna)
    ref_total, ref_missing = naive.group_sums(values, coef, skipna=skipna)
    # the sum may cancel (weights -1): the floor scales with the magnitudes added
    scale = float(np.nansum(np.abs(values))) * float(np.max(np.abs(coef), initial=1.0)) + 1.0
    assert_close(res.total, ref_total, atol=1e-12 * scale)
    np.testing.assert_array_equal(res.n_missing, ref_missing)
