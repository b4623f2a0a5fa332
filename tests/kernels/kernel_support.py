"""Comparison helpers and hypothesis strategies shared by the kernel tests."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

# A realistic epoch-ns start (2024-01-01T00:00:00Z) and the two moduli seen in the field.
T0_NS = 1_704_067_200_000_000_000
SECOND_NS = 1_000_000_000
U32_MODULUS = 2.0**32
RAPL_MODULUS = 262_143_328_850.0  # a typical max_energy_range_uj


def assert_close(actual, expected, *, rtol: float = 1e-9, atol: float = 1e-12):
    """Relative comparison with a tiny absolute floor; NaN positions must match exactly."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN positions differ")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def float_bits(x) -> np.ndarray:
    """The float64 values' bits, as int64."""
    return np.asarray(x, dtype=np.float64).view(np.int64)


def assert_same_bits(got, want):
    """NaN where NaN (whatever its payload), every other bit the same (+0.0 is not -0.0 here)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != expected {want.shape}"
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg="NaN positions differ")
    np.testing.assert_array_equal(float_bits(got[~nan]), float_bits(want[~nan]))


def scale_of(*arrays) -> float:
    """Largest finite magnitude in the arrays (1 if none): sets the absolute floor for sums."""
    m = 1.0
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        f = np.abs(a[np.isfinite(a)])
        if f.size:
            m = max(m, float(f.sum()))
    return m


# ---------------------------------------------------------------------------
# strategies


@st.composite
def times_ns(draw, min_size: int = 0, max_size: int = 60, max_step: int = 10 * SECOND_NS):
    """Strictly increasing int64 ns times near a realistic epoch, irregular steps."""
    n = draw(st.integers(min_size, max_size))
    start = T0_NS + draw(st.integers(-(10**15), 10**15))
    steps = draw(
        st.lists(
            st.one_of(st.integers(1, 1000), st.integers(1, max_step)),
            min_size=max(n - 1, 0),
            max_size=max(n - 1, 0),
        )
    )
    return np.array([start] + [start + s for s in np.cumsum(steps, dtype=np.int64).tolist()], dtype=np.int64)[:n]


@st.composite
def with_nans(draw, values: list[float], max_share: float = 0.3) -> np.ndarray:
    """The values with a random subset (up to ``max_share``) replaced by NaN."""
    n = len(values)
    arr = np.array(values, dtype=np.float64)
    if n:
        idx = draw(st.sets(st.integers(0, n - 1), max_size=int(n * max_share) + 1))
        arr[list(idx)] = np.nan
    return arr


def floats(lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def dyadic(max_units: int = 2**20, denom: int = 256):
    """Non-negative multiples of 1/denom: sums of a few hundred are exact in float64."""
    return st.integers(0, max_units).map(lambda k: k / denom)


def fsum_finite(a) -> float:
    return math.fsum(float(x) for x in np.asarray(a, dtype=np.float64).ravel() if not math.isnan(x))
