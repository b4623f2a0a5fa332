"""How a number is published (puewatch.core.numbers), the one rule the report, jobs and the demo use."""

from __future__ import annotations

import math

import numpy as np
import pytest

from puewatch.core.numbers import published, ratio


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf, np.float64("nan"), None])
def test_what_is_not_a_finite_number_is_null(x):
    assert published(x) is None


def test_a_finite_number_is_a_plain_float():
    for x in (0.0, -0.0, 1.25, np.float64(3.5), np.float32(0.5), 7, np.int64(-2)):
        out = published(x)
        assert type(out) is float and out == float(x)


@pytest.mark.parametrize("b", [0.0, -0.0, -1.0, math.nan, None])
def test_a_ratio_over_a_denominator_that_is_not_positive_or_unknown_is_null(b):
    assert ratio(1.0, b) is None


def test_a_ratio_of_an_unknown_or_infinite_numerator_is_null_and_otherwise_a_float():
    assert ratio(None, 2.0) is None and ratio(math.nan, 2.0) is None and ratio(math.inf, 2.0) is None
    assert ratio(1e308, 1e-308) is None  # overflows to inf
    assert ratio(3.0, 2.0) == 1.5 and type(ratio(np.float64(3.0), np.float64(2.0))) is float


def test_a_share_of_a_whole_is_within_zero_and_one_rounding_included() -> None:
    """Found by the pages audit: a signed voucher statement said completeness 1.0000000000000022 (the
    covered and the whole IT energy, the same energies summed in other orders). Beyond rounding a share
    above 1 is published as it is: the part is then not in the whole, which must show."""
    from puewatch.core.numbers import share

    assert share(1.0000000000000022, 1.0) == 1.0
    assert share(-1e-18, 1.0) == 0.0
    assert share(0.25, 1.0) == 0.25
    assert share(1.01, 1.0) == 1.01
    assert share(-0.5, 1.0) == -0.5
    assert share(1.0, 0.0) is None and share(None, 1.0) is None and share(float("nan"), 1.0) is None
