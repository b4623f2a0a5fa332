"""hourly_sums: energy and covered time per UTC hour (what a derived power limit is made of); vs tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_support import SECOND_NS, assert_close, floats, times_ns, with_nans

from puewatch.kernels import hourly_sums

H = 3600 * SECOND_NS
T = 1_767_225_600 * SECOND_NS  # an hour boundary


def test_a_register_by_hour_with_a_drop_and_a_missing_reading_and_a_long_interval():
    t = T + np.array([0, 600, 1200, 3600, 4200, 4800, 6000, 9000], dtype=np.int64) * SECOND_NS
    x = np.array([0.0, 10.0, 20.0, 60.0, math.nan, 5.0, 25.0, 100.0])
    s = hourly_sums(t, x, register=True, max_interval_ns=20 * 60 * SECOND_NS)
    # Hour 0: 0->10, 10->20; 20->60 is 2400 s long (too long); 60 -> 5 is a drop over the
    # missing reading (left out); 5 -> 25 (1200 s) ends in hour 1; the last interval is 3000 s.
    assert s.hour.tolist() == [T // H, T // H + 1]
    assert s.energy.tolist() == [20.0, 20.0]
    assert s.covered_ns.tolist() == [1200 * SECOND_NS, 1200 * SECOND_NS]
    # An interval that ends exactly on the hour belongs to the hour before.
    s = hourly_sums(T + np.array([3000, 3600], dtype=np.int64) * SECOND_NS, np.array([0.0, 7.0]), register=True,
                    max_interval_ns=H)
    assert s.hour.tolist() == [T // H] and s.energy.tolist() == [7.0]


def test_power_trapezoids_in_wh_and_a_negative_reading_is_no_reading():
    t = T + np.array([0, 60, 120, 180], dtype=np.int64) * SECOND_NS
    s = hourly_sums(t, np.array([3600.0, -26.0, 3600.0, 7200.0]), register=False, max_interval_ns=300 * SECOND_NS)
    # 0 -> 120 s at 3600 W (the -26 W is skipped): 120 Wh; then 120 -> 180 s from 3600 to 7200 W: 90 Wh.
    assert s.energy.tolist() == pytest.approx([3600 * 120 / 3600 + 5400 * 60 / 3600])
    assert s.covered_ns.tolist() == [180 * SECOND_NS]


def test_errors_name_what_is_wrong():
    t = T + np.array([0, 10, 10], dtype=np.int64) * SECOND_NS
    with pytest.raises(ValueError, match="strictly increasing; index 2"):
        hourly_sums(t, np.zeros(3), register=True, max_interval_ns=SECOND_NS)
    with pytest.raises(ValueError, match="values"):
        hourly_sums(t[:2], np.zeros(3), register=True, max_interval_ns=SECOND_NS)
    empty = hourly_sums(np.empty(0, np.int64), np.empty(0), register=False, max_interval_ns=SECOND_NS)
    assert empty.hour.size == 0 and empty.energy.size == 0


@given(t=times_ns(max_size=80, max_step=20 * 60 * SECOND_NS), data=st.data(), register=st.booleans())
def test_matches_the_naive_reference(t, data, register):
    values = data.draw(st.lists(floats(-50.0, 5000.0), min_size=t.size, max_size=t.size))
    x = data.draw(with_nans(values))
    if register:
        x = np.where(np.isnan(x), np.nan, np.cumsum(np.nan_to_num(np.abs(x))) * np.where(np.arange(t.size) % 17 == 16, 0.1, 1))
    got = hourly_sums(t, x, register=register, max_interval_ns=15 * 60 * SECOND_NS)
    want = naive.hourly_sums(t, x, register=register, max_interval_ns=15 * 60 * SECOND_NS)
    assert got.hour.tolist() == want[0].tolist()
    assert_close(got.energy, want[1])
    assert_close(got.covered_ns, want[2])
