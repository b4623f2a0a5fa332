"""cell_shares: ledger records spread pro rata over attribution cells; compared with tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_support import assert_close

from puewatch.kernels import cell_shares

NAN = math.nan
S = 1_000_000_000


def test_hand_computed():
    # Cells of 60 s from t=0: [0,60), [60,120), [120,180). Zone 0 factors 1.5, NaN, 1.2; zone 1 all 2.0.
    factor = [[1.5, NAN, 1.2], [2.0, 2.0, 2.0]]
    green = [0.5, 0.0, 0.25]
    # r0: (30, 90] in zone 0, 10 Wh: 5 Wh in cell 0 (x1.5 = 7.5), 5 Wh in cell 1 (no factor).
    # r1: (150, 210] in zone 1, 4 Wh: half outside the cells.
    res = cell_shares([90 * S, 210 * S], [60 * S, 60 * S], [10.0, 4.0], [0, 1], 0, 60 * S, factor, green,
                      [1e-3, 0.0, 2e-3])
    assert_close(res.in_period, [1.0, 0.5], rtol=1e-12)
    assert_close(res.facility_wh, [7.5, 4.0], rtol=1e-12)
    assert_close(res.covered_it_wh, [5.0, 2.0], rtol=1e-12)
    assert_close(res.green_wh, [3.75, 1.0], rtol=1e-12)
    assert_close(res.carbon_kg, [7.5e-3, 8e-3], rtol=1e-12)
    assert_close(res.job_it_wh, [[5.0, 5.0, 0.0], [0.0, 0.0, 2.0]], rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_naive(data):
    n_cells = data.draw(st.integers(1, 6))
    n_zones = data.draw(st.integers(1, 3))
    n = data.draw(st.integers(0, 12))
    cell = data.draw(st.sampled_from([10 * S, 60 * S]))
    ends = [data.draw(st.integers(-cell, (n_cells + 1) * cell)) for _ in range(n)]
    durs = [data.draw(st.integers(1, 3 * cell)) for _ in range(n)]
    it = [data.draw(st.floats(0, 1e4)) for _ in range(n)]
    zone = [data.draw(st.integers(0, n_zones - 1)) for _ in range(n)]
    factor = [[data.draw(st.one_of(st.just(NAN), st.floats(1.0, 3.0))) for _ in range(n_cells)] for _ in range(n_zones)]
    green = [data.draw(st.floats(0, 1)) for _ in range(n_cells)]
    co2 = [data.draw(st.floats(0, 1e-3)) for _ in range(n_cells)]
    got = cell_shares(np.array(ends, np.int64), np.array(durs, np.int64), it, zone, 0, cell, factor, green, co2)
    want = naive.cell_shares(ends, durs, it, zone, 0, cell, factor, green, co2)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bad, message", [
    (dict(interval_ns=[0]), "interval_ns: must be > 0"),
    (dict(it_wh=[NAN]), "it_wh: must be finite"),
    (dict(zone=[2]), "zone: must index"),
    (dict(green_frac=[0.5]), "green_frac: length 1"),
])
def test_bad_input_named(bad, message):
    args = dict(end_ns=[60 * S], interval_ns=[60 * S], it_wh=[1.0], zone=[0], t0_ns=0, cell_ns=60 * S,
                factor=[[1.2, 1.3]], green_frac=[0.0, 0.0])
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        cell_shares(**args)
