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
    facility-inclusive Wh per IT Wh; NaN where the cell is not known."""

    known: np.ndarray  # (n,) bool: E_DC, E_IT and every zone's energies stored for the whole cell
    row_it_wh: np.ndarray  # (Z + 1, n)
    factor: np.ndarray  # (Z + 1, n)


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
    """
    z_it, b = cells.zone_it_wh, cells.boundary_wh
    known = (np.isfinite(cells.e_dc_wh) & np.isfinite(cells.it_wh) & (cells.it_wh > 0)
             & np.all(np.isfinite(z_it), axis=0) & np.all(np.isfinite(b), axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        has_it = z_it > 0
        it_out = cells.it_wh - z_it.sum(axis=0)
        rest = cells.e_dc_wh - np.where(has_it, b, 0.0).sum(axis=0) - it_out
        per_it = rest / cells.it_wh
        out_f = np.where(known, 1.0 + per_it, np.nan)
        zone_f = np.where(has_it & known, b / z_it + per_it, out_f)
    return Factors(known, np.vstack([z_it, it_out[None, :]]), np.vstack([zone_f, out_f[None, :]]))
