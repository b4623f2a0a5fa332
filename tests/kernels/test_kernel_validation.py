"""Argument checks of the public kernel wrappers: each error names the argument and says what is wrong."""

from __future__ import annotations

import math
import re
from unittest import mock

import numba
import numpy as np
import pytest

from puewatch.kernels import (
    group_sums,
    hourly_sums,
    integrate_power,
    rebin_energy,
    register_deltas,
    rolling_ratio,
)
from puewatch.kernels import _validate as validate_module
from puewatch.kernels import rolling as rolling_module

NAN = math.nan
T3 = np.array([0, 10, 20], dtype=np.int64)


def esc(s: str) -> str:
    return re.escape(s)


# ---------------------------------------------------------------------------
# times (shared by every wrapper)


def test_non_increasing_times_name_the_index():
    msg = "t_ns: times must be strictly increasing; index 2 (10) is not after index 1 (10)"
    with pytest.raises(ValueError, match=esc(msg)):
        register_deltas([0, 10, 10, 20], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=esc(msg)):
        integrate_power([0, 10, 10, 20], [1.0] * 4, max_gap_ns=100)
    with pytest.raises(ValueError, match=esc("t_ns: times must be strictly increasing; index 1 (0) is not after index 0 (0)")):
        rebin_energy([0, 0], [1.0], [0, 10])
    with pytest.raises(ValueError, match=esc("grid_ns: times must be strictly increasing; index 1 (0) is not after index 0 (10)")):
        rebin_energy([0, 10], [1.0], [10, 0])
    with pytest.raises(ValueError, match=esc("t_ns: times must be strictly increasing; index 2 (5) is not after index 1 (10)")):
        rolling_ratio([0, 10, 5], [1.0, 1.0], [1.0, 1.0], [10])
    with pytest.raises(ValueError, match=esc("t_ns: times must be strictly increasing; index 1 (0) is not after index 0 (0)")):
        rolling_ratio([0, 0], [1.0], [1.0], [10])


# Parallel chunks and blocks are _MIN_CHUNK rows (64 Ki) and more, in rolling and in _validate: a
# smaller one here makes a short series take the same path (several chunks) in a fraction of the
# time, with the JIT and without it (the coverage run, where 300,000 rows took 40 s a test).
SMALL_CHUNK = 256


# NUMBA_DISABLE_JIT: the outputs around a time out of order divide by a zero-length interval
# (NumPy's float64 warns; compiled, the same inf or NaN is silent) before the call refuses it.
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", [1, 2000, 2999])
def test_rolling_checks_times_in_every_parallel_chunk(bad):
    # The rolling kernel checks the times as they read them, chunk by chunk in
    # parallel: the first fault is named wherever it lies, also with faults in
    # several chunks (here a second one near the end).
    n = 3000
    t = np.arange(n + 1, dtype=np.int64) * 10
    t[bad] = t[bad - 1]
    t[n] = t[n - 1] - 1
    msg = f"t_ns: times must be strictly increasing; index {bad} ({t[bad]}) is not after index {bad - 1} ({t[bad - 1]})"
    with mock.patch.object(rolling_module, "_MIN_CHUNK", SMALL_CHUNK):
        assert rolling_module._n_chunks(np.arange(n + 1, dtype=np.int64) * 10, np.array([100, 10**4])) == 2
        with pytest.raises(ValueError, match=esc(msg)):
            rolling_ratio(t, np.ones(n), np.ones(n), [100, 10**4])
        with pytest.raises(ValueError, match=esc(msg)):
            rolling_ratio(t, np.ones(n), np.ones(n), [100], numerator_coverage=np.ones(n),
                          denominator_coverage=np.ones(n))


def test_time_dtypes():
    # strings are not times
    with pytest.raises(TypeError, match=esc("t_ns: expected int64 nanoseconds or datetime64, got dtype <U1")):
        register_deltas(["a", "b"], [1.0, 2.0])
    with pytest.raises(TypeError, match="t_ns: expected int64 nanoseconds or datetime64, got dtype bool"):
        integrate_power(np.array([False, True]), [1.0, 2.0], max_gap_ns=5)
    with pytest.raises(TypeError, match="grid_ns: expected int64 nanoseconds or datetime64"):
        rebin_energy([0, 1], [1.0], ["x"])


def test_uint64_times():
    with pytest.raises(ValueError, match="t_ns: values exceed int64 nanoseconds"):
        integrate_power(np.array([0, 2**63], dtype=np.uint64), [1.0, 1.0], max_gap_ns=5)
    # in range: accepted as int64 ns; 2 ns at 1e9 W = 2 J
    res = integrate_power(np.array([0, 2], dtype=np.uint64), [1e9, 1e9], max_gap_ns=5)
    assert res.energy_j[0] == pytest.approx(2.0)
    assert register_deltas(np.array([], dtype=np.uint64), []).delta.shape == (0,)
    assert register_deltas(np.array([1, 2], dtype=np.uint32), [1.0, 2.0]).delta[0] == 1.0


def test_float_times():
    with pytest.raises(ValueError, match="t_ns: times must be finite"):
        integrate_power([0.0, NAN], [1.0, 1.0], max_gap_ns=5)
    with pytest.raises(ValueError, match="t_ns: times must be finite"):
        integrate_power([0.0, math.inf], [1.0, 1.0], max_gap_ns=5)
    with pytest.raises(ValueError, match=esc("t_ns: times must be whole nanoseconds (int64 ns since the epoch)")):
        integrate_power([0.0, 1.5], [1.0, 1.0], max_gap_ns=5)
    assert integrate_power(np.array([], dtype=np.float64), [], max_gap_ns=5).energy_j.shape == (0,)


def test_times_must_be_one_dimensional():
    with pytest.raises(ValueError, match=esc("t_ns: expected a 1-D array, got shape (2, 2)")):
        register_deltas([[0, 1], [2, 3]], [1.0, 2.0])
    with pytest.raises(ValueError, match=esc("t_ns: expected a 1-D array, got shape ()")):
        integrate_power(5, [1.0], max_gap_ns=5)


def test_nat_times_are_rejected():
    """NaT is int64 min after the view: d514ade let it through and integrated -7.5e9 J from it."""
    t = np.array(["NaT", "2024-01-01T00:00:00", "2024-01-01T00:00:01"], dtype="datetime64[ns]")
    with pytest.raises(ValueError, match="t_ns: NaT is not a time"):
        integrate_power(t, [1.0, 1.0, 1.0], max_gap_ns=10**9)
    with pytest.raises(ValueError, match="grid_ns: NaT is not a time"):
        rebin_energy([0, 1], [1.0], np.array(["NaT"], dtype="datetime64[s]"))


# ---------------------------------------------------------------------------
# values


def test_values_dtype_and_rank():
    with pytest.raises(TypeError, match="reading: expected numbers, got dtype <U"):
        register_deltas(T3, ["a", "b", "c"])
    with pytest.raises(TypeError, match="power_w: expected numbers, got dtype object"):
        integrate_power(T3, np.array([1, None, 2], dtype=object), max_gap_ns=5)
    with pytest.raises(ValueError, match=esc("power_w: expected a 1-D array, got shape (3, 1)")):
        integrate_power(T3, [[1.0], [2.0], [3.0]], max_gap_ns=5)
    with pytest.raises(ValueError, match=esc("values: expected a 2-D array, got shape (3,)")):
        group_sums([1.0, 2.0, 3.0], [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=esc("coef: expected a 2-D array, got shape (3,)")):
        group_sums([[1.0], [2.0], [3.0]], [1.0, 1.0, 1.0])
    # booleans and integers are numbers
    assert register_deltas(T3, np.array([1, 2, 3], dtype=np.int32)).delta.tolist() == [1.0, 1.0]
    assert register_deltas(T3, [False, True, True]).delta.tolist() == [1.0, 0.0]


def test_wrong_lengths():
    with pytest.raises(ValueError, match="reading: length 2 does not match 3"):
        register_deltas(T3, [1.0, 2.0])
    with pytest.raises(ValueError, match="power_w: length 4 does not match 3"):
        integrate_power(T3, [1.0] * 4, max_gap_ns=5)
    with pytest.raises(ValueError, match="energy: length 3 does not match 2"):
        rebin_energy(T3, [1.0, 2.0, 3.0], [0, 10])
    with pytest.raises(ValueError, match=esc("energy: length 1 does not match len(t_ns) - 1 = -1")):
        rebin_energy(np.array([], dtype=np.int64), [1.0], [0, 10])
    with pytest.raises(ValueError, match=esc("t_ns: 3 intervals need 4 boundaries, got 3")):
        rolling_ratio(T3, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [10])
    with pytest.raises(ValueError, match=esc("t_ns: 0 intervals need 1 boundaries, got 0")):
        rolling_ratio(np.array([], dtype=np.int64), [], [], [10])
    with pytest.raises(ValueError, match="denominator: length 1 does not match 2"):
        rolling_ratio(T3, [1.0, 2.0], [1.0], [10])
    with pytest.raises(ValueError, match=esc("t_ns: 2 intervals need 3 boundaries, got 2")):
        rolling_ratio([0, 10], [1.0, 2.0], [1.0, 2.0], [10])
    with pytest.raises(ValueError, match=esc("coef: has 2 columns but values has 3 meters (rows)")):
        group_sums(np.ones((3, 4)), np.ones((1, 2)))


# ---------------------------------------------------------------------------
# register_deltas parameters


@pytest.mark.parametrize("modulus", [0, -1.0, math.inf, NAN])
def test_register_modulus_must_be_positive_and_finite(modulus):
    with pytest.raises(ValueError, match=esc(f"modulus: must be > 0 and finite, got {modulus!r}")):
        register_deltas(T3, [1.0, 2.0, 3.0], modulus=modulus)


def test_register_power_bound_parameters():
    r = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="max_power_w and joules_per_unit must be given together"):
        register_deltas(T3, r, max_power_w=100.0)
    with pytest.raises(ValueError, match="max_power_w and joules_per_unit must be given together"):
        register_deltas(T3, r, joules_per_unit=3600.0)
    with pytest.raises(ValueError, match=esc("max_power_w: must be > 0, got 0")):
        register_deltas(T3, r, max_power_w=0, joules_per_unit=1.0)
    with pytest.raises(ValueError, match=esc("joules_per_unit: must be > 0, got -1.0")):
        register_deltas(T3, r, max_power_w=10.0, joules_per_unit=-1.0)
    # an infinite power bound is no bound
    res = register_deltas(T3, [1.0, 1e12, 2e12], max_power_w=math.inf, joules_per_unit=1.0)
    assert res.delta.tolist() == [1e12 - 1.0, 1e12]


@pytest.mark.parametrize("resolution", [-1.0, math.inf, NAN])
def test_register_resolution_must_be_finite_and_non_negative(resolution):
    with pytest.raises(ValueError, match=esc(f"resolution: must be finite and >= 0, got {resolution!r}")):
        register_deltas(T3, [1.0, 2.0, 3.0], resolution=resolution)


# ---------------------------------------------------------------------------
# durations in ns


@pytest.mark.parametrize("bad", [0, -5, 1.5])
def test_positive_whole_nanosecond_parameters(bad):
    def msg(name):
        return esc(f"{name}: must be a positive whole number of nanoseconds, got {bad!r}")

    with pytest.raises(ValueError, match=msg("max_gap_ns")):
        integrate_power(T3, [1.0] * 3, max_gap_ns=bad)
    with pytest.raises(ValueError, match=msg("max_span_ns")):
        rebin_energy(T3, [1.0, 2.0], [0, 20], max_span_ns=bad)


@pytest.mark.parametrize("bad", [None, "5s", NAN, math.inf])
def test_durations_that_are_not_numbers(bad):
    with pytest.raises(ValueError, match=esc(f"max_gap_ns: must be a positive whole number of nanoseconds, got {bad!r}")):
        integrate_power(T3, [1.0] * 3, max_gap_ns=bad)


def test_whole_float_durations_are_accepted():
    assert integrate_power(T3, [1.0] * 3, max_gap_ns=10.0).missing_ns == 0


# ---------------------------------------------------------------------------
# group_sums


def test_group_sums_coef_must_be_finite():
    with pytest.raises(ValueError, match="coef: weights must be finite"):
        group_sums(np.ones((2, 3)), [[1.0, NAN]])
    with pytest.raises(ValueError, match="coef: weights must be finite"):
        group_sums(np.ones((2, 3)), [[1.0, math.inf]])
    with pytest.raises(TypeError, match="values: expected numbers"):
        group_sums(np.array([["a"]]), [[1.0]])


# ---------------------------------------------------------------------------
# rolling windows


def test_rolling_windows_argument():
    e = [1.0, 2.0]
    with pytest.raises(ValueError, match="windows_ns: expected one or more window lengths"):
        rolling_ratio(T3, e, e, [])
    with pytest.raises(ValueError, match="windows_ns: expected one or more window lengths"):
        rolling_ratio(T3, e, e, [[10, 20]])
    with pytest.raises(TypeError, match="windows_ns: expected whole nanoseconds, got float64"):
        rolling_ratio(T3, e, e, [1.5])
    with pytest.raises(TypeError, match="windows_ns: expected whole nanoseconds, got float64"):
        rolling_ratio(T3, e, e, [NAN])
    with pytest.raises(TypeError, match="windows_ns: expected whole nanoseconds, got <U"):
        rolling_ratio(T3, e, e, ["1m"])
    with pytest.raises(ValueError, match="windows_ns: every window must be > 0 ns"):
        rolling_ratio(T3, e, e, [10, 0])
    with pytest.raises(ValueError, match="windows_ns: every window must be > 0 ns"):
        rolling_ratio(T3, e, e, [-10])
    # whole floats and unsigned ints are fine
    assert rolling_ratio(T3, e, e, [10.0]).ratio.shape == (1, 2)
    assert rolling_ratio(T3, e, e, np.array([10, 20], dtype=np.uint32)).ratio.shape == (2, 2)


@pytest.mark.parametrize("cov", [[1.0, 1.5], [-0.1, 1.0], [NAN, 1.0]])
def test_rolling_coverage_must_lie_in_unit_interval(cov):
    with pytest.raises(ValueError, match=esc("numerator_coverage: coverage must lie in [0, 1]")):
        rolling_ratio(T3, [1.0, 2.0], [1.0, 2.0], [10], numerator_coverage=cov, denominator_coverage=[1.0, 1.0])
    with pytest.raises(ValueError, match=esc("denominator_coverage: coverage must lie in [0, 1]")):
        rolling_ratio(T3, [1.0, 2.0], [1.0, 2.0], [10], numerator_coverage=[1.0, 1.0], denominator_coverage=cov)


@pytest.mark.parametrize("bad", [NAN, -0.5, 2.0])
def test_rolling_coverage_checked_in_every_block_and_once_when_shared(bad, monkeypatch):
    # Long enough for the check to run in several parallel blocks; the fault in the last one.
    monkeypatch.setattr(rolling_module, "_MIN_CHUNK", SMALL_CHUNK)
    n = 3 * SMALL_CHUNK
    t = np.arange(n + 1, dtype=np.int64) * 10
    cov = np.ones(n)
    cov[-1] = bad
    with mock.patch.object(rolling_module, "_count_outside_unit", wraps=rolling_module._count_outside_unit) as count:
        with pytest.raises(ValueError, match=esc("numerator_coverage: coverage must lie in [0, 1]")):
            rolling_ratio(t, np.ones(n), np.ones(n), [100], numerator_coverage=cov, denominator_coverage=cov)
    assert count.call_args.args[1] == 3  # three blocks
    cov[-1] = 0.5
    with mock.patch.object(rolling_module, "_count_outside_unit", wraps=rolling_module._count_outside_unit) as count:
        shared = rolling_ratio(t, np.ones(n), np.ones(n), [100], numerator_coverage=cov, denominator_coverage=cov)
        assert count.call_count == 1
        apart = rolling_ratio(t, np.ones(n), np.ones(n), [100], numerator_coverage=cov, denominator_coverage=cov.copy())
        assert count.call_count == 3
    np.testing.assert_array_equal(shared.coverage, apart.coverage)
    np.testing.assert_array_equal(shared.ratio, apart.ratio)


def test_rolling_coverage_length_and_pairing():
    with pytest.raises(ValueError, match="denominator_coverage: length 1 does not match 2"):
        rolling_ratio(T3, [1.0, 2.0], [1.0, 2.0], [10], numerator_coverage=[1.0, 1.0], denominator_coverage=[1.0])
    with pytest.raises(ValueError, match="numerator_coverage: length 3 does not match 2"):
        rolling_ratio(T3, [1.0, 2.0], [1.0, 2.0], [10], numerator_coverage=[1.0] * 3, denominator_coverage=[1.0] * 2)
    with pytest.raises(ValueError, match="numerator_coverage and denominator_coverage must be given together"):
        rolling_ratio(T3, [1.0, 2.0], [1.0, 2.0], [10], numerator_coverage=[1.0, 1.0])
    with pytest.raises(ValueError, match="numerator_coverage and denominator_coverage must be given together"):
        rolling_ratio(T3, [1.0, 2.0], [1.0, 2.0], [10], denominator_coverage=[1.0, 1.0])


@pytest.mark.parametrize("mc", [-0.1, 1.5, NAN])
def test_min_coverage_must_lie_in_unit_interval(mc):
    with pytest.raises(ValueError, match=esc(f"min_coverage: must lie in [0, 1], got {mc!r}")):
        rolling_ratio(T3, [1.0, 2.0], [1.0, 2.0], [10], min_coverage=mc)


def test_reset_to_a_negative_reading_is_never_negative_energy():
    import numpy as np

    from puewatch.kernels import FLAG_RESET, register_deltas

    out = register_deltas([0, 10], [5.0, -3.0])
    assert np.isnan(out.delta[0])
    assert out.flags[0] == FLAG_RESET


@pytest.mark.parametrize("bad", [1, 700, 1999])
def test_long_series_are_checked_in_parallel_blocks_and_the_first_fault_is_named(bad, monkeypatch):
    monkeypatch.setattr(validate_module, "_MIN_CHUNK", SMALL_CHUNK)  # blocks of 256 rows: several in 2000
    monkeypatch.setattr(validate_module, "_PARALLEL_CHECK", SMALL_CHUNK)  # the times checked in parallel blocks
    n = 2000
    assert validate_module.n_chunks(n) == min(numba.get_num_threads(), n // SMALL_CHUNK)
    assert validate_module.n_blocks(n) == n // SMALL_CHUNK
    t = np.arange(n, dtype=np.int64) * 10
    t[bad] = t[bad - 1]
    t[n - 1] = 0  # a second fault later on: the first one is named
    if bad == n - 1:
        t[bad] = 0
    msg = f"t_ns: times must be strictly increasing; index {bad} ({t[bad]}) is not after index {bad - 1} ({t[bad - 1]})"
    with pytest.raises(ValueError, match=esc(msg)):
        integrate_power(t, np.ones(n), max_gap_ns=100)
    with pytest.raises(ValueError, match=esc(msg)):
        register_deltas(t, np.arange(n, dtype=np.float64))
    # hourly_sums compares the times before its kernel runs: the separate check, in parallel blocks
    with pytest.raises(ValueError, match=esc(msg)):
        hourly_sums(t, np.ones(n), register=False, max_interval_ns=100)
    t[bad] = t[bad - 1] + 5
    t[n - 1] = t[n - 2] + 10
    assert register_deltas(t, np.arange(n, dtype=np.float64)).delta.shape == (n - 1,)
