"""The engine's one-pass per-meter scans give what the plain NumPy formulation gives, exactly.

`scan_meter` (the report's per-meter scan) used a dozen whole-array NumPy passes and two sorts per meter; it now makes one
compiled pass (`puewatch.kernels.register_spans`, `power_fill`). The NumPy formulation is kept here as the
reference and both are run on readings with every fault the scans branch on: missing
readings, gaps longer than max_gap, wraps, resets, jumps, register and power together.
"""

from __future__ import annotations

import numpy as np
import pytest

from puewatch.core import energy as policy
from puewatch.kernels import FLAG_RESET, integrate_power, rebin_energy
from puewatch.core.timefmt import NS, day_grid
from puewatch.report.intervals import merge
from puewatch.report.meters import MeterReadings, scan_meter

MAX_GAP = 15 * 60 * NS


def _reference(r: MeterReadings, grid: np.ndarray, start: int, end: int, max_gap: int, max_power_w):
    """The per-meter computation as plain NumPy passes (the formulation before the scans)."""
    t = r.t_ns
    n_bins = grid.size - 1
    energy, estimated, cov = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
    obs_s, obs_e = [], []
    resets, used_r, used_p = 0, False, False
    reg_s = reg_e = np.empty(0, np.int64)
    limit = policy.power_limit(max_power_w, t, r.energy_wh, r.power_w)
    if r.energy_wh is not None:
        keep = np.isfinite(r.energy_wh)
        te, xe = t[keep], r.energy_wh[keep]
        if te.size >= 2:
            d = policy.register_energy(te, xe, modulus_wh=r.modulus_wh, limit=limit)
            a, b = te[:-1], te[1:]
            inp = (b > start) & (a < end)
            resets = int(np.count_nonzero((d.flags & FLAG_RESET).astype(bool) & inp))
            ok = np.isfinite(d.delta)
            used_r = bool(np.any(ok & inp))
            reb = rebin_energy(te, d.delta, grid, max_span_ns=max_gap)
            got = reb.coverage > 0
            energy[got] += reb.energy[got]
            estimated[got] += reb.spread[got]
            cov += reb.coverage
            reg_s, reg_e = a[:1], b[-1:]  # the register's whole span: power fills only outside it
            short = ok & ((b - a) <= max_gap)
            obs_s.append(a[short])
            obs_e.append(b[short])
    if r.power_w is not None:
        checked, _ = policy.checked_power(r.power_w, limit)
        keep = np.isfinite(checked)
        tp, xp = t[keep], checked[keep]
        if tp.size >= 2:
            e_wh = integrate_power(tp, xp, max_gap_ns=max_gap).energy_j / 3600.0
            a, b = tp[:-1], tp[1:]
            ok = np.isfinite(e_wh)
            if reg_s.size:
                j = np.searchsorted(reg_s, b, side="left") - 1
                jj = np.maximum(j, 0)
                ok &= ~((j >= 0) & (reg_e[jj] > a))
            used_p = bool(np.any(ok & (b > start) & (a < end)))
            reb = rebin_energy(tp, np.where(ok, e_wh, np.nan), grid)
            got = reb.coverage > 0
            energy[got] += reb.energy[got]
            estimated[got] += reb.energy[got]
            cov += reb.coverage
            obs_s.append(a[ok])
            obs_e.append(b[ok])
    energy[cov <= 0] = np.nan
    estimated[cov <= 0] = np.nan
    observed = merge(np.concatenate(obs_s) if obs_s else np.empty(0, np.int64),
                      np.concatenate(obs_e) if obs_e else np.empty(0, np.int64))
    return energy, estimated, observed, used_r, used_p, resets


def _faulty_readings(rng: np.random.Generator, kind: str) -> MeterReadings:
    n = 3000
    steps = rng.choice([60, 60, 60, 59, 61, 1200, 3 * 3600], size=n, p=[0.5, 0.2, 0.2, 0.04, 0.04, 0.015, 0.005])
    t = (1_740_787_200 + np.cumsum(steps) - 4 * 3600) * NS + rng.integers(0, 10**8, n)
    t = np.unique(t)
    n = t.size
    power = 1000.0 * (1 + 0.2 * rng.random(n))
    energy = 5e5 + np.cumsum(power * 60 / 3600)
    resets = rng.choice(n, 3, replace=False)
    for i in sorted(resets):
        energy[i:] -= energy[i] - 5.0
    energy[rng.random(n) < 0.03] = np.nan
    power[rng.random(n) < 0.03] = np.nan
    if kind == "register":
        return MeterReadings(t, None, energy, 5e6 if rng.random() < 0.5 else None)
    if kind == "power":
        return MeterReadings(t, power, None)
    # Mixed: the register is absent for long stretches, where power fills in.
    energy[(t > t[n // 4]) & (t < t[n // 2])] = np.nan
    return MeterReadings(t, power, energy)


@pytest.mark.parametrize("kind", ["register", "power", "mixed"])
@pytest.mark.parametrize("seed", range(6))
def test_scans_agree_with_the_numpy_formulation(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = _faulty_readings(rng, kind)
    start = int(r.t_ns[r.t_ns.size // 10]) // NS * NS  # not on a day edge: partial first and last days
    end = int(r.t_ns[-r.t_ns.size // 10])
    grid = day_grid(start, end)
    max_p = 5000.0 if seed % 2 else None
    got = scan_meter(r, grid, start, end, MAX_GAP, max_p)
    energy, estimated, observed, used_r, used_p, resets = _reference(r, grid, start, end, MAX_GAP, max_p)
    np.testing.assert_array_equal(got.day_energy, energy)
    np.testing.assert_array_equal(got.day_estimated, estimated)
    np.testing.assert_array_equal(got.observed[0], observed[0])
    np.testing.assert_array_equal(got.observed[1], observed[1])
    assert got.resets == resets
    assert observed[0].size > 1  # the faults made gaps
    want = "mixed" if used_r and used_p else "register" if used_r else "integrated" if used_p else None
    assert got.method == want
    if kind == "register":
        assert resets > 0
