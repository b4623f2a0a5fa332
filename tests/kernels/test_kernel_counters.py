"""register_deltas: wraps, resets, impossible jumps, gaps; compared with tests/naive.py."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from kernel_support import RAPL_MODULUS, SECOND_NS, T0_NS, U32_MODULUS, assert_close, times_ns, with_nans

from puewatch.kernels import (
    FLAG_BAD_TIME,
    FLAG_JUMP,
    FLAG_MISSING,
    FLAG_OK,
    FLAG_RESET,
    FLAG_WRAP,
    RegisterDeltas,
    register_deltas,
)

NAN = math.nan


def check_both(t, r, expected_delta, expected_flags, **kw):
    """Kernel and reference against hand-computed numbers."""
    res = register_deltas(t, r, **kw)
    assert isinstance(res, RegisterDeltas)
    assert res.delta.dtype == np.float64 and res.flags.dtype == np.uint8
    np.testing.assert_array_equal(res.flags, np.array(expected_flags, dtype=np.uint8))
    assert_close(res.delta, expected_delta, rtol=1e-12)
    ref_delta, ref_flags = naive.register_deltas(t, r, **kw)
    np.testing.assert_array_equal(ref_flags, np.array(expected_flags, dtype=np.uint8))
    assert_close(ref_delta, expected_delta, rtol=1e-12)


def secs(*s):
    return T0_NS + np.array([int(x * SECOND_NS) for x in s], dtype=np.int64)


# ---------------------------------------------------------------------------
# hand-computed cases


def test_flag_values_are_the_documented_bits():
    assert (FLAG_OK, FLAG_WRAP, FLAG_RESET, FLAG_JUMP, FLAG_MISSING, FLAG_BAD_TIME) == (0, 1, 2, 4, 8, 16)


def test_plain_increases():
    # 12 - 10 = 2, 12 - 12 = 0, 15.5 - 12 = 3.5
    check_both(secs(0, 1, 2, 3), [10.0, 12.0, 12.0, 15.5], [2.0, 0.0, 3.5], [FLAG_OK] * 3)


def test_empty_and_single_sample_give_no_intervals():
    for t, r in (([], []), ([T0_NS], [5.0])):
        res = register_deltas(np.array(t, dtype=np.int64), r)
        assert res.delta.shape == (0,) and res.flags.shape == (0,)
        assert res.delta.dtype == np.float64 and res.flags.dtype == np.uint8


def test_wrap_at_2_pow_32():
    # 50 + 4294967296 - 4294967196 = 150 (wrap); 150 - 50 = 100
    check_both(
        secs(0, 1, 2),
        [U32_MODULUS - 100, 50.0, 150.0],
        [150.0, 100.0],
        [FLAG_WRAP, FLAG_OK],
        modulus=2**32,
    )


def test_wrap_at_rapl_modulus():
    # 500 + 262143328850 - (262143328850 - 1000) = 1500 uJ
    check_both(secs(0, 1), [RAPL_MODULUS - 1000, 500.0], [1500.0], [FLAG_WRAP], modulus=RAPL_MODULUS)


def test_wrap_at_2_pow_64_keeps_every_watt_hour():
    # Found by the reference audit: 2^64 - 2048 then 500 counted 2048 Wh, not 2548 (b + 2^64 rounded b away in
    # float64); the modulus less the last reading first is exact there. Two shipped profiles declare 2^64.
    m = 2.0**64
    check_both(secs(0, 600), [m - 2048.0, 500.0], [2548.0], [FLAG_WRAP], modulus=m, max_power_w=1e6,
               joules_per_unit=3600.0)


def test_drop_beyond_half_the_modulus_is_a_reset():
    # wrapped = 1000 + 4294967296 - 1e9 = 3294968296 >= 2**31: a reset, not a wrap.
    t, r = secs(0, 1, 2), [1e9, 1000.0, 1500.0]
    check_both(t, r, [1000.0, 500.0], [FLAG_RESET, FLAG_OK], modulus=2**32)  # counted since restart
    check_both(t, r, [NAN, 500.0], [FLAG_RESET, FLAG_OK], modulus=2**32, reset_from_zero=False)


def test_drop_without_modulus_is_a_reset():
    t, r = secs(0, 1, 2), [500.0, 20.0, 25.0]
    check_both(t, r, [20.0, 5.0], [FLAG_RESET, FLAG_OK])
    check_both(t, r, [NAN, 5.0], [FLAG_RESET, FLAG_OK], reset_from_zero=False)


def test_drop_is_never_negative_energy():
    res = register_deltas(secs(0, 1, 2, 3), [100.0, 40.0, 10.0, 5.0], modulus=1000.0)
    assert np.all(res.delta[np.isfinite(res.delta)] >= 0)


def test_a_drop_from_above_the_modulus_is_a_reset_not_a_negative_wrap():
    # Found by the host audit: 2**32 + 5e6 then 100 "wrapped" to -4999900, flagged a wrap (a reading no
    # Unsigned32 can hold; core.energy refuses such readings first, but the kernel must not count them).
    for kw in ({}, {"max_power_w": 1e6, "joules_per_unit": 3600.0}):
        check_both(secs(0, 1), [U32_MODULUS + 5e6, 100.0], [100.0], [FLAG_RESET], modulus=U32_MODULUS, **kw)


def test_missing_reading_spoils_both_neighbouring_intervals():
    check_both(secs(0, 1, 2, 3), [1.0, NAN, 3.0, 4.0], [NAN, NAN, 1.0], [FLAG_MISSING, FLAG_MISSING, FLAG_OK])


def test_jump_above_power_bound():
    # Wh register, 1000 W max, 36 s: 1000 * 36 / 3600 = 10 Wh, + resolution 1 = 11 Wh.
    # 111 - 100 = 11 (allowed, at the bound); 123 - 111 = 12 > 11 (impossible).
    kw = dict(max_power_w=1000.0, joules_per_unit=3600.0, resolution=1.0)
    check_both(secs(0, 36, 72), [100.0, 111.0, 123.0], [11.0, NAN], [FLAG_OK, FLAG_JUMP], **kw)


def test_resolution_allows_one_step_on_short_intervals():
    # 100 W for 1 s in Wh: 100 / 3600 = 0.0278 Wh < one 1 Wh step -> a jump without resolution.
    t, r = secs(0, 1), [7.0, 8.0]
    check_both(t, r, [NAN], [FLAG_JUMP], max_power_w=100.0, joules_per_unit=3600.0)
    # with resolution 1: bound 1.0278 Wh >= 1
    check_both(t, r, [1.0], [FLAG_OK], max_power_w=100.0, joules_per_unit=3600.0, resolution=1.0)


def test_power_bound_decides_wrap_or_reset():
    # modulus 1000, 1 W for 10 s in J = 10, + resolution 1 = 11.
    kw = dict(modulus=1000.0, max_power_w=1.0, joules_per_unit=1.0, resolution=1.0)
    # 5 + 1000 - 995 = 10 <= 11 -> wrap
    check_both(secs(0, 10), [995.0, 5.0], [10.0], [FLAG_WRAP], **kw)
    # 5 + 1000 - 990 = 15 > 11 -> not a wrap; reset, new reading 5 <= 11 is possible
    check_both(secs(0, 10), [990.0, 5.0], [5.0], [FLAG_RESET], **kw)


def test_power_bound_accepts_a_wrap_larger_than_half_the_modulus():
    # modulus 100, 1 W for 80 s in J = 80: 10 + 100 - 30 = 80 <= 80 -> wrap, though 80 > 100 / 2.
    kw = dict(modulus=100.0, max_power_w=1.0, joules_per_unit=1.0)
    check_both(secs(0, 80), [30.0, 10.0], [80.0], [FLAG_WRAP], **kw)


def test_reset_whose_new_reading_is_impossible_is_also_a_jump():
    # bound = 1000 * 36 / 3600 + 0 = 10 Wh; reset to 20 Wh: 20 > 10 -> reset + jump, NaN.
    kw = dict(max_power_w=1000.0, joules_per_unit=3600.0)
    t, r = secs(0, 36), [500.0, 20.0]
    check_both(t, r, [NAN], [FLAG_RESET | FLAG_JUMP], **kw)
    # reset_from_zero=False: NaN anyway, only the reset is flagged
    check_both(t, r, [NAN], [FLAG_RESET], reset_from_zero=False, **kw)


def test_nvml_millijoule_register_with_driver_reload():
    # mJ register, GPU at most 700 W, polled every 0.1 s: bound 700 * 0.1 / 1e-3 = 70000 mJ.
    kw = dict(max_power_w=700.0, joules_per_unit=1e-3)
    t = secs(0, 0.1, 0.2, 0.3)
    # +30000, reload (restart from 0, 12000 counted since), +40000
    check_both(t, [5e9, 5e9 + 30000, 12000.0, 52000.0], [30000.0, 12000.0, 40000.0], [FLAG_OK, FLAG_RESET, FLAG_OK], **kw)


def test_wrap_exactly_half_the_modulus_is_not_a_wrap():
    """The docstring: without a power bound, a wrap must be *less than* half the modulus."""
    # wrapped = b + 2**32 - a = (2**31 - 10) + 2**32 - (2**32 - 10) = 2**31, exactly half:
    # not less than half, so a reset (delta = the new reading, 2**31 - 10).
    a, b = U32_MODULUS - 10, 2.0**31 - 10
    assert b + U32_MODULUS - a == U32_MODULUS / 2
    check_both(secs(0, 1), [a, b], [b], [FLAG_RESET], modulus=2**32)


def test_raw_kernel_flags_bad_time():
    """FLAG_BAD_TIME is for callers of the raw kernel (the public function rejects such times)."""
    from puewatch.kernels.counters import _register_deltas

    t = np.array([0, 10, 10, 5, 20], dtype=np.int64)
    r = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    delta = np.empty(4)
    flags = np.empty(4, dtype=np.uint8)
    assert _register_deltas(t, r, 0.0, math.inf, 0.0, True, 1, delta, flags) == 2  # the first time not after the last
    # (0,10]: 2 - 1 = 1 | (10,10]: not after -> bad | (10,5]: before -> bad | (5,20]: 6 - 4 = 2
    expected_flags = [FLAG_OK, FLAG_BAD_TIME, FLAG_BAD_TIME, FLAG_OK]
    np.testing.assert_array_equal(flags, expected_flags)
    assert_close(delta, [1.0, NAN, NAN, 2.0], rtol=1e-12)
    ref_delta, ref_flags = naive.register_deltas(t, r)
    np.testing.assert_array_equal(ref_flags, expected_flags)
    assert_close(ref_delta, delta)


# ---------------------------------------------------------------------------
# random cases against the reference


def _near_a_boundary(t, r, modulus, max_power_w, joules_per_unit, resolution) -> bool:
    """True when some increase lies within rounding of a decision boundary (bound or half modulus)."""
    for i in range(len(t) - 1):
        a, b = float(r[i]), float(r[i + 1])
        if math.isnan(a) or math.isnan(b):
            continue
        bound = naive.register_bound(int(t[i + 1] - t[i]), max_power_w, joules_per_unit, resolution)
        cands = [b - a, b]
        if modulus is not None:
            cands.append(b + modulus - a)
            if max_power_w is None and math.isclose(b + modulus - a, modulus / 2, rel_tol=1e-9):
                return True
        if math.isfinite(bound) and any(math.isclose(c, bound, rel_tol=1e-9, abs_tol=1e-9) for c in cands):
            return True
    return False


@st.composite
def register_case(draw):
    t = draw(times_ns(max_size=80, max_step=100 * SECOND_NS))
    modulus = draw(st.sampled_from([None, U32_MODULUS, RAPL_MODULUS, 1000.0, 2**16]))
    top = modulus if modulus is not None else 1e12
    steps = draw(st.lists(st.sampled_from(["up", "up", "up", "small", "drop", "wrap", "beyond"]), min_size=len(t),
                          max_size=len(t)))
    r, x = [], draw(st.floats(0, top * 0.999, allow_nan=False))
    for s in steps:
        if s == "up":
            x = x + draw(st.floats(0, top / 4, allow_nan=False))
        elif s == "small":
            x = x + draw(st.integers(0, 5))
        elif s == "drop":
            x = draw(st.floats(0, top, allow_nan=False))
        if modulus is not None:
            x = math.fmod(x, modulus)
        # A reading no register holds: past its modulus (a broken agent, a stored value from another source).
        r.append(top * (1.0 + draw(st.floats(0, 1, allow_nan=False))) if s == "beyond" else x)
    reading = draw(with_nans(r, 0.2))
    if draw(st.booleans()):
        max_power_w = draw(st.floats(1e-3, 1e6, allow_nan=False))
        joules_per_unit = draw(st.sampled_from([1e-6, 1e-3, 1.0, 3600.0, 360000.0]))
    else:
        max_power_w = joules_per_unit = None
    resolution = draw(st.sampled_from([0.0, 1.0, 0.1]))
    reset_from_zero = draw(st.booleans())
    assume(not _near_a_boundary(t, reading, modulus, max_power_w, joules_per_unit, resolution))
    kw = dict(
        modulus=modulus,
        max_power_w=max_power_w,
        joules_per_unit=joules_per_unit,
        resolution=resolution,
        reset_from_zero=reset_from_zero,
    )
    return t, reading, kw


@given(register_case())
def test_register_deltas_matches_naive(case):
    t, reading, kw = case
    res = register_deltas(t, reading, **kw)
    ref_delta, ref_flags = naive.register_deltas(t, reading, **kw)
    assert_close(res.delta, ref_delta)
    np.testing.assert_array_equal(res.flags, ref_flags)
    # never negative energy, NaN exactly where something is flagged other than a wrap
    finite = np.isfinite(res.delta)
    assert np.all(res.delta[finite] >= 0)
    bad = (res.flags & (FLAG_JUMP | FLAG_MISSING | FLAG_BAD_TIME)) != 0
    assert not np.any(finite & bad)


@given(register_case(), st.data())
def test_deltas_of_a_split_series_concatenate(case, data):
    """Energy over a series equals the sum over any split of it at a sample."""
    t, reading, kw = case
    assume(len(t) >= 2)
    k = data.draw(st.integers(0, len(t) - 1))
    whole = register_deltas(t, reading, **kw)
    left = register_deltas(t[: k + 1], reading[: k + 1], **kw)
    right = register_deltas(t[k:], reading[k:], **kw)
    assert_close(np.concatenate([left.delta, right.delta]), whole.delta, rtol=0, atol=0)
    np.testing.assert_array_equal(np.concatenate([left.flags, right.flags]), whole.flags)
    assert math.isclose(
        math.fsum(np.nan_to_num(left.delta)) + math.fsum(np.nan_to_num(right.delta)),
        math.fsum(np.nan_to_num(whole.delta)),
        rel_tol=1e-12,
        abs_tol=1e-9,
    )


@st.composite
def unwrapped_register(draw, modulus: float):
    """A monotone integer-valued register R (never wrapped) with every increase < modulus / 2."""
    t = draw(times_ns(min_size=1, max_size=80))
    start = draw(st.integers(0, int(modulus) * 3))
    incs = draw(
        st.lists(
            st.one_of(st.integers(0, 10), st.integers(0, int(modulus // 2) - 1)),
            min_size=len(t) - 1,
            max_size=len(t) - 1,
        )
    )
    r = np.array([start] + (start + np.cumsum(incs, dtype=np.int64)).tolist(), dtype=np.float64)
    return t, r


@pytest.mark.parametrize("modulus", [U32_MODULUS, RAPL_MODULUS, 1000.0])
@given(data=st.data())
def test_wrapped_register_gives_the_deltas_of_the_unwrapped_one(modulus, data):
    """Feeding R mod M with modulus=M gives R's deltas: a wrap (shift by k*M) changes no energy."""
    t, r = data.draw(unwrapped_register(modulus))
    plain = register_deltas(t, r)
    wrapped = register_deltas(t, np.fmod(r, modulus), modulus=modulus)
    assert np.all(plain.flags == FLAG_OK)
    assert_close(wrapped.delta, plain.delta, rtol=0, atol=0)
    # WRAP exactly where the reduced register went down, nothing else flagged
    went_down = np.diff(np.fmod(r, modulus)) < 0
    np.testing.assert_array_equal(wrapped.flags, np.where(went_down, FLAG_WRAP, FLAG_OK).astype(np.uint8))
    # the total energy is the unwrapped register's rise
    assert math.fsum(wrapped.delta) == (r[-1] - r[0] if len(r) > 1 else 0.0)
    assert_close(wrapped.delta, naive.register_deltas(t, np.fmod(r, modulus), modulus=modulus)[0])


@given(data=st.data())
def test_wrapped_register_within_power_bound_gives_the_unwrapped_deltas(data):
    """With a power bound, wraps larger than half the modulus are still recovered."""
    modulus = data.draw(st.sampled_from([U32_MODULUS, RAPL_MODULUS, 1000.0]))
    t = data.draw(times_ns(min_size=2, max_size=60, max_step=100 * SECOND_NS))
    max_power_w = data.draw(st.floats(1.0, 1e4))
    joules_per_unit = data.draw(st.sampled_from([1e-6, 1e-3, 1.0]))
    r = [float(data.draw(st.integers(0, int(modulus) - 1)))]
    for i in range(len(t) - 1):
        bound = max_power_w * ((int(t[i + 1]) - int(t[i])) / 1e9) / joules_per_unit
        top = min(0.9 * bound, 0.9 * modulus)
        r.append(r[-1] + math.floor(data.draw(st.floats(0, top))))
    r = np.array(r)
    kw = dict(max_power_w=max_power_w, joules_per_unit=joules_per_unit)
    plain = register_deltas(t, r, **kw)
    wrapped = register_deltas(t, np.fmod(r, modulus), modulus=modulus, **kw)
    assert np.all(plain.flags == FLAG_OK)
    assert_close(wrapped.delta, plain.delta, rtol=0, atol=0)
    assert np.all((wrapped.flags == FLAG_OK) | (wrapped.flags == FLAG_WRAP))


def test_parallel_chunks_give_the_same_bits():
    from puewatch.kernels.counters import _register_deltas

    rng = np.random.default_rng(5)
    t = np.cumsum(rng.integers(1, 10, 1000)).astype(np.int64)
    r = np.cumsum(rng.random(1000))
    r[rng.random(1000) < 0.05] = 0.0  # resets
    outs = []
    for chunks in (1, 2, 7):
        delta, flags = np.empty(999), np.empty(999, dtype=np.uint8)
        _register_deltas(t, r, 0.0, math.inf, 0.0, True, chunks, delta, flags)
        outs.append((delta, flags))
    for delta, flags in outs[1:]:
        np.testing.assert_array_equal(delta, outs[0][0])
        np.testing.assert_array_equal(flags, outs[0][1])
    ref_delta, ref_flags = naive.register_deltas(t, r)
    assert_close(outs[0][0], ref_delta)
