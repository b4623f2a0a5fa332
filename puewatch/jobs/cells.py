"""The collector's stored per-cell energies, summed onto attribution cells, and each cell's
facility factor per zone (docs/auditor-guide.md, "Energy per job")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from puewatch.core import schema
from puewatch.core.site import SiteModel
from puewatch.errors import UserError


@dataclass
class Cells:
    """Energies per attribution cell (NaN: not every collector cell in it is stored)."""

    t0_ns: int
    cell_ns: int
    e_dc_wh: np.ndarray  # (n,) facility input (E_DC)
    it_wh: np.ndarray  # (n,) measured IT energy
    renewable_wh: np.ndarray | None  # (n,) the renewable meters, None: the site has none
    zones: list[str]  # zones with a pPUE (IT meters); their rows come first, then "no zone"
    boundary_wh: np.ndarray  # (Z, n)
    zone_it_wh: np.ndarray  # (Z, n)

    @property
    def n(self) -> int:
        return int(self.e_dc_wh.shape[0])

    @property
    def edges_ns(self) -> np.ndarray:
        return self.t0_ns + self.cell_ns * np.arange(self.n + 1, dtype=np.int64)


def _summed(reader, measurement: str, fld: str, tags: dict[str, str], t0: int, cell_ns: int, n: int,
            sub_ns: int) -> np.ndarray:
    """A stored per-cell series summed into attribution cells; NaN where one of its cells is absent."""
    from puewatch.collector.stores.base import StoreError

    try:
        t, v = reader.series(measurement, fld, tags, t0 + 1, t0 + n * cell_ns + 1)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    t, v = np.asarray(t, np.int64), np.asarray(v, np.float64)
    ok = np.isfinite(v)
    idx = (t[ok] - sub_ns - t0) // cell_ns  # the collector cell (t - sub, t] lies in this one
    total = np.bincount(idx, weights=v[ok], minlength=n)[:n]
    count = np.bincount(idx, minlength=n)[:n]
    return np.where(count == cell_ns // sub_ns, total, np.nan)


def read_cells(reader, site: SiteModel, start_ns: int, end_ns: int, cell_ns: int, collector_cell_ns: int) -> Cells:
    if cell_ns % collector_cell_ns:
        raise UserError(f"--cell ({cell_ns / 1e9:g} s) must be a whole number of the collector's cells "
                        f"({collector_cell_ns / 1e9:g} s, [collector] interval_s)")
    if (end_ns - start_ns) % cell_ns or start_ns % collector_cell_ns:
        raise UserError(f"the period must be a whole number of --cell ({cell_ns / 1e9:g} s) cells, starting on a "
                        "collector cell's boundary")
    n = (end_ns - start_ns) // cell_ns
    site_tags = {"site": site.name}

    def total(measurement: str, fld: str, tags: dict[str, str]) -> np.ndarray:
        return _summed(reader, measurement, fld, tags, start_ns, cell_ns, n, collector_cell_ns)

    e_dc = total(schema.SITE_ENERGY, schema.site_energy_field("facility_input"), site_tags)
    it = total(schema.SITE_ENERGY, schema.site_energy_field("it"), site_tags)
    renewable = (total(schema.SITE_ENERGY, schema.site_energy_field("renewable"), site_tags)
                 if site.members("renewable") else None)
    zones = [z for z in site.zone_names() if site.members("it", z)]
    rows = [(total(schema.ZONE_ENERGY, schema.ZONE_BOUNDARY_WH, {**site_tags, "zone": z}),
             total(schema.ZONE_ENERGY, schema.ZONE_IT_WH, {**site_tags, "zone": z})) for z in zones]
    return Cells(start_ns, cell_ns, e_dc, it, renewable, zones,
                 np.array([r[0] for r in rows]).reshape(len(zones), n),
                 np.array([r[1] for r in rows]).reshape(len(zones), n))


@dataclass
class Factors:
    """Per row (each zone with a pPUE, then "no zone") and cell: its IT energy and the
    facility-inclusive Wh per IT Wh; NaN where the cell is not known, and in a row without
    measured IT energy whose factor would be below 1."""

    known: np.ndarray  # (n,) bool: every energy stored for the whole cell, and no ratio below its floor
    row_it_wh: np.ndarray  # (Z + 1, n)
    factor: np.ndarray  # (Z + 1, n)
    # Stored cells left unknown by a physical floor (core.floors), why: the cell's PUE under 1;
    # a zone's pPUE under 1 (Z, n); a row with measured IT energy whose factor is under 1 (Z + 1, n).
    low_pue: np.ndarray  # (n,) bool
    low_ppue: np.ndarray  # (Z, n) bool
    low_factor: np.ndarray  # (Z + 1, n) bool


def cell_factors(cells: Cells) -> Factors:
    """The cell rule. In a known cell c, with B_z and IT_z a zone's boundary and IT energy,
    IT_out the IT energy in no zone, and R = E_DC - sum(B_z over zones with IT) - IT_out the
    overhead outside every zone boundary:

        factor_z   = B_z / IT_z + R / E_IT      (the zone's pPUE plus its share of R)
        factor_out = 1 + R / E_IT

    so that sum(row IT x factor) = E_DC exactly; without zones, factor_out = E_DC / E_IT (the PUE).
    A zone with no IT energy in the cell (IT_z <= 0: its boundary energy is in R) has no pPUE
    there: its row takes factor_out, as nodes in no zone do, so a job that its meters did not see
    still carries its share of the site's overhead (and the zone's unattributed energy is negative).

    A cell is known when every energy above is stored for the whole of it, E_IT > 0, and no ratio
    of it is below its physical floor (core.floors): its PUE E_DC / E_IT, each zone's pPUE
    B_z / IT_z, and the factor of each row with measured IT energy (a job's PUE there), each at
    least 1. Below, the meters contradict each other (an incomer that reads less than the IT
    behind it, a stuck register counted as 0 Wh, a boundary meter under its zone's IT meters, an
    incomer under the zone boundaries and the IT outside them), and nothing in the cell can say
    which one is wrong: its energy is not attributed, as a cell not stored (`completeness`), and
    `low_*` say why. A row with no measured IT energy whose factor would be below 1 (R < 0 with
    no node in no zone drawing energy) has no factor there either: no job's PUE is ever under 1.
    """
    from puewatch.core.floors import floor_of

    z_it, b = cells.zone_it_wh, cells.boundary_wh
    stored = (np.isfinite(cells.e_dc_wh) & np.isfinite(cells.it_wh) & (cells.it_wh > 0)
              & np.all(np.isfinite(z_it), axis=0) & np.all(np.isfinite(b), axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        has_it = z_it > 0
        it_out = cells.it_wh - z_it.sum(axis=0)
        rest = cells.e_dc_wh - np.where(has_it, b, 0.0).sum(axis=0) - it_out
        per_it = rest / cells.it_wh
        out_f = 1.0 + per_it
        zone_f = np.where(has_it, b / z_it + per_it, out_f)
        factor = np.vstack([zone_f, out_f[None, :]])
        row_it = np.vstack([z_it, it_out[None, :]])
        below = factor < floor_of("pue")
        low_pue = stored & (cells.e_dc_wh / cells.it_wh < floor_of("pue"))
        low_ppue = stored & has_it & (b / z_it < floor_of("ppue"))
    low_factor = stored & (row_it > 0) & below
    known = stored & ~low_pue & ~np.any(low_ppue, axis=0) & ~np.any(low_factor, axis=0)
    return Factors(known, row_it, np.where(known & ~below, factor, np.nan), low_pue, low_ppue, low_factor)


def floor_warning(cells: Cells, f: Factors, site: SiteModel) -> str | None:
    """The warning for the stored cells a physical floor left unknown (see cell_factors): how many,
    the first, and per cause the meters whose readings contradict each other."""
    from puewatch.core.timefmt import format_time

    bad = f.low_pue | np.any(f.low_ppue, axis=0) | np.any(f.low_factor, axis=0)
    if not np.any(bad):
        return None

    def names(*groups: dict[str, float]) -> str:
        return ", ".join(sorted({m for g in groups for m in g})) or "none"

    e_dc, it = site.members("facility_input"), site.members("it")
    causes = []
    if np.any(f.low_pue):
        causes.append(f"PUE under 1 (E_DC below E_IT) in {int(f.low_pue.sum())} (meters {names(e_dc, it)})")
    for i, z in enumerate(cells.zones):
        if np.any(f.low_ppue[i]):
            causes.append(f"zone {z}'s pPUE under 1 (its boundary below its IT) in {int(f.low_ppue[i].sum())} "
                          f"(meters {names(site.boundary(z), site.members('it', z))})")
    rows = [*(f"zone {z}" for z in cells.zones), "nodes in no zone"]
    # Rows under 1 in cells whose PUE or a pPUE is not already under 1: there, R < 0 alone.
    only = f.low_factor & ~(f.low_pue | np.any(f.low_ppue, axis=0))
    low_rows = [f"{rows[i]} in {int(n)}" for i, n in enumerate(only.sum(axis=1)) if n]
    if low_rows:
        causes.append("a job's factor under 1 (E_DC below the zone boundaries plus the IT outside them) for "
                      f"{', '.join(low_rows)} (meters "
                      f"{names(e_dc, *(site.boundary(z) for z in cells.zones), it)})")
    first = int(np.argmax(bad))
    return (f"{int(bad.sum())} of {cells.n} cells (the first {format_time(int(cells.edges_ns[first]))}.."
            f"{format_time(int(cells.edges_ns[first + 1]))}) hold ratios below their physical floor: "
            f"{'; '.join(causes)}. The meters contradict each other there: those cells' energy is not attributed "
            "(see completeness); check those meters")
