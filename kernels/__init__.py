"""Numba-compiled energy and PUE kernels: the numeric heart of puewatch.

Conventions (everywhere in this package):

* **Time** is ``int64`` nanoseconds since the Unix epoch (UTC). ``datetime64``
  arrays are accepted and viewed as nanoseconds. Durations are ``int64`` ns.
* **Values** are ``float64``. ``NaN`` means *missing*; an infinite input is
  treated as missing too. A missing input never becomes zero, and a result
  that cannot be known is ``NaN`` (never ``inf``).
* **Power** is in watts (``*_w``); energy from power integration is in joules
  (``*_j``, W·s). Register kernels work in the register's own unit (mJ, Wh,
  0.1 kWh ...); the caller converts.
* **Intervals**: ``n`` sample times bound ``n - 1`` intervals; interval ``i``
  is ``(t[i], t[i + 1]]``. Kernels that produce per-interval values return
  arrays of length ``n - 1``; the rolling-window kernel takes the ``n + 1``
  boundaries of ``n`` intervals.
* Sample times must be strictly increasing; the public functions check this and
  raise :class:`ValueError` naming the first offending index.

Each public function validates and coerces its arguments and then calls a
private ``@njit`` kernel that takes plain contiguous arrays, does no I/O and
reads no globals.
"""

from __future__ import annotations

if __name__ != "puewatch.kernels":
    # The folder is importable as `kernels` from the checkout's root. Numba's cache beside the
    # sources is keyed by file, not by module name: entries compiled as `kernels.rolling` name that
    # module, and every later `puewatch.kernels` start (the collector's) failed loading them with
    # "No module named 'kernels'" (found by two audits, after a script imported it so).
    raise ImportError(f"import puewatch.kernels, not {__name__}: the same files under two module names "
                      "leave Numba cache entries that fail the other one")

from puewatch.kernels.flags import (
    FLAG_BAD_TIME,
    FLAG_JUMP,
    FLAG_MISSING,
    FLAG_OK,
    FLAG_RESET,
    FLAG_WRAP,
    describe_flags,
)
from puewatch.kernels.counters import register_deltas, RegisterDeltas
from puewatch.kernels.integrate import integrate_power, PowerIntegral
from puewatch.kernels.rebin import rebin_energy, RebinnedEnergy
from puewatch.kernels.aggregate import group_sums, GroupSums
from puewatch.kernels.hourly import hourly_sums, HourlySums
from puewatch.kernels.rolling import rolling_ratio, RollingRatio
from puewatch.kernels.attribute import cell_shares, CellShares
from puewatch.kernels.scans import energy_before, power_fill, register_spans, PowerFill, RegisterSpans

__all__ = [
    "FLAG_OK",
    "FLAG_WRAP",
    "FLAG_RESET",
    "FLAG_JUMP",
    "FLAG_MISSING",
    "FLAG_BAD_TIME",
    "describe_flags",
    "register_deltas",
    "RegisterDeltas",
    "integrate_power",
    "PowerIntegral",
    "rebin_energy",
    "RebinnedEnergy",
    "group_sums",
    "GroupSums",
    "rolling_ratio",
    "RollingRatio",
    "energy_before",
    "register_spans",
    "RegisterSpans",
    "power_fill",
    "PowerFill",
    "hourly_sums",
    "HourlySums",
    "cell_shares",
    "CellShares",
]
