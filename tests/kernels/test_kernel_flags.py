"""describe_flags / flag_counts: the per-interval quality bit mask."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from puewatch.kernels import FLAG_BAD_TIME, FLAG_JUMP, FLAG_MISSING, FLAG_OK, FLAG_RESET, FLAG_WRAP, describe_flags, register_deltas
from puewatch.kernels.flags import flag_counts


def test_describe_ok_is_empty():
    assert describe_flags(FLAG_OK) == []


def test_describe_single_and_combined_bits():
    assert describe_flags(FLAG_WRAP) == ["wrap"]
    assert describe_flags(FLAG_BAD_TIME) == ["bad_time"]
    # 2 | 4 = 6: a reset whose new reading is impossible
    assert describe_flags(FLAG_RESET | FLAG_JUMP) == ["reset", "jump"]
    assert describe_flags(31) == ["wrap", "reset", "jump", "missing", "bad_time"]
    assert describe_flags(np.uint8(FLAG_MISSING)) == ["missing"]


@pytest.mark.parametrize("value, message", [(32, "unknown flag bits 0x20 in 0x20"), (33, "unknown flag bits 0x20 in 0x21"), (255, "0xe0 in 0xff")])
def test_describe_unknown_bits_raise(value, message):
    with pytest.raises(ValueError, match=message):
        describe_flags(value)


def test_flag_counts_hand_computed():
    flags = np.array([FLAG_OK, FLAG_WRAP, FLAG_RESET | FLAG_JUMP, FLAG_MISSING, FLAG_MISSING, FLAG_JUMP], dtype=np.uint8)
    # wrap 1, reset 1, jump 2 (one with the reset), missing 2, bad_time 0
    expected = {"wrap": 1, "reset": 1, "jump": 2, "missing": 2, "bad_time": 0}
    assert flag_counts(flags) == expected
    assert naive.flag_counts(flags) == expected


def test_flag_counts_empty_and_lists():
    assert flag_counts([]) == {"wrap": 0, "reset": 0, "jump": 0, "missing": 0, "bad_time": 0}
    assert flag_counts([1, 1, 16])["wrap"] == 2


def test_flag_counts_of_register_deltas():
    # wrap (2**32), missing twice, reset: see test_kernel_counters for the arithmetic
    res = register_deltas([0, 1, 2, 3, 4, 5], [2.0**32 - 5, 5.0, float("nan"), 7.0, 3.0, 4.0], modulus=2**32)
    assert flag_counts(res.flags) == {"wrap": 1, "reset": 1, "jump": 0, "missing": 2, "bad_time": 0}


@given(st.lists(st.integers(0, 31), max_size=50))
def test_flags_match_naive(values):
    arr = np.array(values, dtype=np.uint8)
    assert flag_counts(arr) == naive.flag_counts(arr)
    for v in values:
        assert describe_flags(v) == naive.describe_flags(v)
