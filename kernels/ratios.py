"""PUE and its relatives as guarded ratios of energies.

Every function takes energies summed over the same period (scalars or arrays
of any shape, e.g. the sums from :func:`rolling_sums` or monthly totals) and
returns ``numerator / denominator``. The result is NaN, never inf or a made-up
number, where:

* either energy is missing (NaN) or not finite;
* the denominator is not positive (zero IT energy, no cooling energy);
* a coverage is given and below ``min_coverage``.

A PUE below 1 is physically impossible and points at a metering fault; it is
returned as computed so that reports can flag it rather than hide it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from puewatch.kernels import _validate as v


@njit(cache=True, nogil=True)
def _ratio(num, den, cov, has_cov, min_coverage, out):
    for i in range(num.shape[0]):
        a = num[i]
        b = den[i]
        r = np.nan
        if b > 0.0 and abs(a) < np.inf and b < np.inf:
            if not has_cov or cov[i] >= min_coverage:
                r = a / b
                if not abs(r) < np.inf:  # overflow: unknown, never inf
                    r = np.nan
        out[i] = r


def ratio(numerator, denominator, *, coverage=None, min_coverage: float = 0.0):
    """``numerator / denominator`` with the guards above; scalars give a float.

    ``coverage`` (same shape, in [0, 1]) is the data coverage of the period
    each pair of energies was summed over; below ``min_coverage`` the result
    is NaN.
    """
    a_in = np.asarray(numerator)
    b_in = np.asarray(denominator)
    shape = np.broadcast_shapes(a_in.shape, b_in.shape)
    a = v.as_values(np.broadcast_to(a_in, shape).ravel(), "numerator")
    b = v.as_values(np.broadcast_to(b_in, shape).ravel(), "denominator")
    mc = float(min_coverage)
    if not 0.0 <= mc <= 1.0:
        raise ValueError(f"min_coverage: must lie in [0, 1], got {min_coverage!r}")
    has_cov = coverage is not None
    if has_cov:
        cov_in = np.asarray(coverage)
        try:
            cov_b = np.broadcast_to(cov_in, shape)
        except ValueError:
            raise ValueError(f"coverage: shape {cov_in.shape} does not fit the energies' shape {shape}") from None
        c = v.as_values(cov_b.ravel(), "coverage")
        if np.any(~((c >= 0.0) & (c <= 1.0))):
            raise ValueError("coverage: must lie in [0, 1] (NaN is not a coverage)")
    else:
        c = np.empty(0)
    out = np.empty(a.shape[0], dtype=np.float64)
    _ratio(a, b, c, has_cov, mc, out)
    if shape == ():
        return float(out[0])
    return out.reshape(shape)


def pue(facility_energy, it_energy, *, coverage=None, min_coverage: float = 0.0):
    """Power usage effectiveness: total facility energy / IT equipment energy (ISO/IEC 30134-2)."""
    return ratio(facility_energy, it_energy, coverage=coverage, min_coverage=min_coverage)


def partial_pue(boundary_energy, it_energy, *, coverage=None, min_coverage: float = 0.0):
    """Partial PUE of a boundary (a hall, a cooling system): all energy inside it, IT included, / IT energy inside it."""
    return ratio(boundary_energy, it_energy, coverage=coverage, min_coverage=min_coverage)


def clf(cooling_energy, it_energy, *, coverage=None, min_coverage: float = 0.0):
    """Cooling load factor: cooling energy / IT energy."""
    return ratio(cooling_energy, it_energy, coverage=coverage, min_coverage=min_coverage)


def plf(loss_energy, it_energy, *, coverage=None, min_coverage: float = 0.0):
    """Power load factor: power-chain losses (transformers, UPS, PDU) / IT energy."""
    return ratio(loss_energy, it_energy, coverage=coverage, min_coverage=min_coverage)


def cop(heat_removed, cooling_electric_energy, *, coverage=None, min_coverage: float = 0.0):
    """Coefficient of performance of a cooling plant: heat removed / its electrical energy (same unit).

    kW/ton follows as ``3.517 / cop``.
    """
    return ratio(heat_removed, cooling_electric_energy, coverage=coverage, min_coverage=min_coverage)
