"""Energy from a cumulative register: per-interval deltas with wrap, reset and jump handling.

Registers seen in the field: the NVML total-energy counter (mJ since driver
load, restarts on reload), PDU energy registers (Wh, 0.1 kWh; Unsigned32 that
wrap at 2^32, INTEGER that users can reset), RAPL ``energy_uj`` (wraps at
``max_energy_range_uj``). None is an SMI Counter: a drop can be a wrap or a
reset, and telling them apart needs the modulus and, ideally, a power bound.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from puewatch.kernels import _validate as v
from puewatch.kernels.flags import FLAG_BAD_TIME, FLAG_JUMP, FLAG_MISSING, FLAG_RESET, FLAG_WRAP

_U = v.uindex  # an index known to be >= 0 (see _validate.uindex)


class RegisterDeltas(NamedTuple):
    """Per-interval register increase (register units) and quality flags.

    ``delta[i]`` and ``flags[i]`` describe interval ``(t[i], t[i+1]]``.
    """

    delta: np.ndarray  # float64, length n - 1, NaN where unknown
    flags: np.ndarray  # uint8 bit mask (see puewatch.kernels.flags), length n - 1


@njit(cache=True, nogil=True)
def _register_range(t, reading, modulus, max_rate_per_ns, resolution, reset_from_zero, delta, flags, i0, i1):
    # modulus <= 0: the register does not wrap. max_rate_per_ns = inf: no power bound.
    # Returns the first i + 1 whose interval is not positive (times not increasing), or -1: the
    # times are checked as they are read (one pass over t, not two).
    half_modulus = 0.5 * modulus
    bounded = max_rate_per_ns < math.inf
    bad = -1
    for i in range(i0, i1):
        u = _U(i)
        a = reading[u]
        b = reading[u + _U(1)]
        dt = t[u + _U(1)] - t[u]
        if dt <= 0:
            delta[u] = np.nan
            flags[u] = FLAG_BAD_TIME
            if bad < 0:
                bad = i + 1
            continue
        if not (abs(a) < math.inf and abs(b) < math.inf):
            delta[u] = np.nan
            flags[u] = FLAG_MISSING
            continue
        # One register step is always possible, however short the interval:
        # a 0.1 kWh register polled every second still moves by 0.1 kWh at once.
        limit = max_rate_per_ns * dt + resolution
        f = 0
        if b >= a:
            d = b - a
        else:
            d = np.nan
            if modulus > 0:
                # The modulus less the last reading first: exact for a reading in the range's upper half, where
                # b + modulus rounded b away for a 2^64 modulus (2048 Wh for 2548; found by the reference audit).
                wrapped = (modulus - a) + b
                # With a power bound the wrapped increase must be possible;
                # without one, a wrap must cover less than half the range
                # (a reset from near the top would look like a wrap otherwise).
                # A previous reading at or above the modulus is no wrapping
                # register's: its "wrap" would be negative energy.
                if wrapped >= 0.0 and ((bounded and wrapped <= limit) or (not bounded and wrapped < half_modulus)):
                    d = wrapped
                    f = FLAG_WRAP
            if f == 0:
                f = FLAG_RESET
                # A negative reading cannot be energy since a restart from zero.
                d = b if (reset_from_zero and b >= 0.0) else np.nan
        if d > limit:
            d = np.nan
            f |= FLAG_JUMP
        delta[u] = d
        flags[u] = f
    return bad


@njit(cache=True, nogil=True, parallel=True)
def _register_deltas(t, reading, modulus, max_rate_per_ns, resolution, reset_from_zero, n_chunks, delta, flags):
    # Every interval stands alone: parallel over chunks of intervals. Returns the first index
    # whose time is not after the one before, or -1.
    n = t.shape[0] - 1
    bad = np.empty(n_chunks, dtype=np.int64)
    for ch in prange(n_chunks):
        bad[ch] = _register_range(t, reading, modulus, max_rate_per_ns, resolution, reset_from_zero, delta, flags,
                                  ch * n // n_chunks, (ch + 1) * n // n_chunks)
    for ch in range(n_chunks):
        if bad[ch] >= 0:
            return bad[ch]
    return -1


def register_deltas(
    t_ns,
    reading,
    *,
    modulus: float | None = None,
    max_power_w: float | None = None,
    joules_per_unit: float | None = None,
    resolution: float = 0.0,
    reset_from_zero: bool = True,
) -> RegisterDeltas:
    """Per-interval increase of a cumulative energy register.

    Parameters
    ----------
    t_ns:
        Sample times, int64 ns, strictly increasing (``n`` samples).
    reading:
        Register readings in the register's unit; NaN (or inf) where a poll failed:
        both intervals touching it get ``FLAG_MISSING`` and a NaN delta.
    modulus:
        The value at which the register wraps to zero (``2**32`` for an
        Unsigned32, ``max_energy_range_uj`` for RAPL); ``None`` if it does not
        wrap. At most one wrap per interval is assumed: poll faster than
        ``modulus / max power``.
    max_power_w, joules_per_unit:
        Together, the largest possible increase: ``max_power_w`` × Δt /
        ``joules_per_unit`` (+ ``resolution``). ``joules_per_unit`` is the
        energy of one register unit (mJ: 1e-3, µJ: 1e-6, Wh: 3600,
        0.1 kWh: 360000). An increase above the bound is an impossible jump:
        flagged ``FLAG_JUMP``, delta NaN.
    resolution:
        One register step in register units (e.g. 1 for an integer register),
        always allowed on top of the power bound.
    reset_from_zero:
        How a reset (a drop that no wrap explains) is handled. ``True``
        (default): the register restarted from zero, so the new reading is the
        energy counted since the restart: a lower bound for the interval,
        flagged ``FLAG_RESET`` (and ``FLAG_JUMP``/NaN if even that is
        impossible). ``False``: the interval's delta is NaN, flagged
        ``FLAG_RESET``.

    A drop is a wrap when the register has a modulus and the wrapped increase
    ``next + modulus - previous`` is possible: within the power bound when one
    is given, else less than half the modulus, and not negative (a previous
    reading at or above the modulus is no wrapping register's). Otherwise it
    is a reset. A drop is never turned into negative energy.

    Returns
    -------
    RegisterDeltas
        ``delta`` (float64, n - 1) and ``flags`` (uint8, n - 1).
    """
    t = v.as_time_ns(t_ns)
    r = v.as_values(reading, "reading")
    v.same_length(t.shape[0], reading=r)
    mod = 0.0 if modulus is None else v.positive(modulus, "modulus", allow_inf=False)
    if (max_power_w is None) != (joules_per_unit is None):
        raise ValueError("max_power_w and joules_per_unit must be given together")
    if max_power_w is None:
        rate = math.inf
    else:
        rate = v.positive(max_power_w, "max_power_w") / v.positive(joules_per_unit, "joules_per_unit") / 1e9
    res = float(resolution)
    if not (res >= 0 and math.isfinite(res)):
        raise ValueError(f"resolution: must be finite and >= 0, got {resolution!r}")
    n = max(t.shape[0] - 1, 0)
    delta = np.empty(n, dtype=np.float64)
    flags = np.empty(n, dtype=np.uint8)
    bad = _register_deltas(t, r, mod, rate, res, bool(reset_from_zero), v.n_chunks(n), delta, flags)
    if bad >= 0:  # checked as the kernel read the times
        v.not_increasing_error(t, int(bad))
    return RegisterDeltas(delta, flags)
