"""`puewatch report --carbon`: green share, carbon and CUE (ISO/IEC 30134-8) in every output of the report
(JSON, terminal table, CSV, HTML drawn by headless Chromium), each figure with its source; a report that
cannot know its carbon says so and why, never 0.

The site is report_support's synthetic one (a real embedded store), over a period that crosses a year
boundary, so two of the carbon file's factors apply, each for half of the period."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chromium import inner_texts, page_width
from report_support import SOLAR_W, synthetic_year, write_site
from puewatch.collector.stores.embedded import EmbeddedStore

RUN = [sys.executable, "-m", "puewatch.cli"]
PERIOD = ("--from", "2025-12-31T12:00:00Z", "--to", "2026-01-01T12:00:00Z")  # 12 h in 2025, 12 h in 2026
EF_2025, EF_2026 = 0.6, 0.4  # kg CO2e per kWh: test values, not real factors
CERT_MWH = 1.0  # over 2026-01-01, so half of it (12 h) falls in the period
CARBON = f"""
region = "test-grid"

[[emission_factor]]
region = "test-grid"
year = 2025
kg_co2e_per_kwh = {EF_2025}
source = "test value 2025, not a published factor"

[[emission_factor]]
region = "test-grid"
year = 2026
kg_co2e_per_kwh = {EF_2026}
source = "test value 2026, not a published factor"

[[green_energy]]
kind = "certificate"
id = "GEC-TEST-1"
start = 2026-01-01
end = 2026-01-02
mwh = {CERT_MWH}
source = "test registry"

[[green_energy]]
kind = "ppa"
id = "PPA-OUTSIDE"
start = 2025-06-01
end = 2025-07-01
mwh = 5.0
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("carbon")
    store = EmbeddedStore(tmp / "store.sqlite", synchronous="NORMAL")
    store.write(synthetic_year(start="2025-12-31", end="2026-01-02").lines)
    store.close()
    (tmp / "carbon.toml").write_text(CARBON)
    # Only 2026's factor: the period's 2025 half has none.
    only_2026 = CARBON.split("[[emission_factor]]")
    (tmp / "carbon-2026.toml").write_text(only_2026[0] + "[[emission_factor]]" + only_2026[2])
    return {"conf": write_site(tmp, store_path=str(tmp / "store.sqlite")), "dir": tmp}


def _report(site: dict[str, Path], *args: str) -> str:
    out = subprocess.run([*RUN, "report", "--config", str(site["conf"]), *PERIOD, *args], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _csv_period_row(text: str) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(text)))
    period = [r for r in rows if r["table"] == "period"]
    assert len(period) == 1 and sum(r["table"] == "monthly" for r in rows) == 2
    return period[0]


def test_report_carbon_in_json_table_and_csv(site: dict[str, Path]) -> None:
    carbon = str(site["dir"] / "carbon.toml")
    doc = json.loads(_report(site, "--json", "--carbon", carbon))
    e_dc, e_it = doc["facility_energy_wh"], doc["it_energy_wh"]
    # Green energy: the solar meter over the 24 h (REF x E_DC) and half the certificate; the PPA is outside.
    assert doc["renewable_meters"] == ["solar"]
    assert doc["renewable_meters_wh"] == pytest.approx(doc["ref"] * e_dc, rel=1e-12)
    assert doc["renewable_meters_wh"] == pytest.approx(SOLAR_W * 24, rel=1e-6)
    assert doc["green_entries"] == [{"kind": "certificate", "id": "GEC-TEST-1", "start": "2026-01-01T00:00:00Z",
                                     "end": "2026-01-02T00:00:00Z", "mwh": CERT_MWH, "source": "test registry",
                                     "energy_in_period_wh": pytest.approx(CERT_MWH * 1e6 / 2)}]
    green = doc["ref"] * e_dc + CERT_MWH * 1e6 / 2
    assert doc["green_energy_wh"] == pytest.approx(green, rel=1e-12) and doc["green_capped_wh"] == 0
    assert doc["green_share"] == pytest.approx(green / e_dc, rel=1e-12)
    # Carbon: each year's grid part (its E_DC, from the monthly rows, less its green energy: the solar
    # meter's constant power over its 12 h, and the certificate in 2026) times that year's factor.
    e_2025, e_2026 = (m["facility_energy_wh"] for m in doc["monthly"])
    solar_12h = SOLAR_W * 12
    assert [(f["year"], f["kg_co2e_per_kwh"], f["period_share"]) for f in doc["emission_factors"]] == [
        (2025, EF_2025, 0.5), (2026, EF_2026, 0.5)]
    f25, f26 = doc["emission_factors"]
    assert f25["source"] == "test value 2025, not a published factor"
    assert f25["facility_energy_wh"] == e_2025 and f26["facility_energy_wh"] == e_2026
    assert f25["green_energy_wh"] == pytest.approx(solar_12h, rel=1e-6)
    assert f26["green_energy_wh"] == pytest.approx(solar_12h + CERT_MWH * 1e6 / 2, rel=1e-6)
    carbon_kg = ((e_2025 - f25["green_energy_wh"]) * EF_2025 + (e_2026 - f26["green_energy_wh"]) * EF_2026) / 1000
    assert doc["carbon_kg"] == pytest.approx(carbon_kg, rel=1e-12)
    # The load is not the same in both halves (the synthetic site's daily cycle): weighing the factors by
    # time would give another figure.
    assert abs(carbon_kg - (e_dc - green) / 1000 * (EF_2025 + EF_2026) / 2) > 1.0
    assert doc["cue_kg_per_kwh"] == pytest.approx(carbon_kg / (e_it / 1000), rel=1e-12)
    assert doc["carbon_unknown"] is None and doc["cue_unknown"] is None and doc["carbon_region"] == "test-grid"

    # The terminal table: the same figures, each with its source (rich may wrap a long cell: join the lines).
    text = _report(site, "--carbon", carbon)
    flat = re.sub(r"\s*│\s*", " ", text)
    assert "green share and carbon" in text
    assert f"CUE (ISO/IEC 30134-8) {doc['cue_kg_per_kwh']:.4f} kg CO2e/kWh" in flat
    assert f"carbon {doc['carbon_kg']:,.1f} kg CO2e" in flat
    assert f"({100 * doc['green_share']:.1f} % of E_DC)" in flat
    assert "certificate GEC-TEST-1" in flat and "source: test registry" in flat and "PPA-OUTSIDE" not in flat
    assert "grid emission factor test-grid 2025" in flat and "source: test value 2025" in flat
    assert "solar: 480.000 kWh (REF x E_DC)" in flat

    # The CSV: the whole period's row carries them, exactly (repr of the same floats).
    row = _csv_period_row(_report(site, "--format", "csv", "--carbon", carbon))
    for key in ("green_energy_wh", "green_share", "carbon_kg", "cue_kg_per_kwh", "facility_energy_wh", "pue"):
        assert float(row[key]) == doc[key], key
    assert row["carbon_unknown"] == ""


def test_report_carbon_html_drawn_by_chromium(site: dict[str, Path], tmp_path: Path) -> None:
    carbon = str(site["dir"] / "carbon.toml")
    doc = json.loads(_report(site, "--json", "--carbon", carbon))
    page = tmp_path / "report.html"
    _report(site, "--format", "html", "--carbon", carbon, "-o", str(page))
    cue, share, table = inner_texts(page, tmp_path / "chromium", ["#cue", "#green_share", "#carbon"])
    assert cue == f"{doc['cue_kg_per_kwh']:.4f}" and share == f"{100 * doc['green_share']:.1f} %"
    assert table.startswith("green share and carbon")
    for shown in ("CUE (ISO/IEC 30134-8)", f"{doc['carbon_kg']:,.1f} kg CO2e", "certificate GEC-TEST-1",
                  "source: test registry", "source: test value 2026, not a published factor", "solar: 480.000 kWh"):
        assert shown in table, shown
    assert page_width(page, tmp_path / "width") <= 1400  # the long source strings wrap, the page fits


def test_unknown_carbon_is_said_with_its_reason_never_zero(site: dict[str, Path], tmp_path: Path) -> None:
    # No carbon file: every output says carbon is not known and why; the JSON has no carbon fields.
    doc = json.loads(_report(site, "--json"))
    assert "carbon_kg" not in doc and "green_share" not in doc
    text = _report(site)
    assert "green share, carbon, CUE │ not known: no carbon data file given" in text
    row = _csv_period_row(_report(site, "--format", "csv"))
    assert row["carbon_kg"] == "" and row["carbon_unknown"].startswith("no carbon data file given")
    page = tmp_path / "plain.html"
    _report(site, "--format", "html", "-o", str(page))
    cue, table = inner_texts(page, tmp_path / "chromium", ["#cue", "#carbon"])
    assert cue == "not known" and "not known: no carbon data file given" in table

    # A factor for 2026 only, over a period half in 2025: green share known, carbon and CUE not, with why.
    carbon = str(site["dir"] / "carbon-2026.toml")
    doc = json.loads(_report(site, "--json", "--carbon", carbon))
    assert doc["green_share"] is not None and doc["carbon_kg"] is None and doc["cue_kg_per_kwh"] is None
    assert doc["carbon_unknown"] == f"no emission factor for region 'test-grid' and year 2025 in {carbon}"
    flat = re.sub(r"\s*│\s*", " ", _report(site, "--carbon", carbon))
    assert "carbon not known: no emission factor for region 'test-grid' and year 2025" in flat
    assert "CUE (ISO/IEC 30134-8) not known: no emission factor" in flat
    assert not re.search(r"\b0\.0 kg CO2e", flat) and "0.0000 kg CO2e/kWh" not in flat


def test_an_auditor_recomputes_the_carbon_from_the_export(site: dict[str, Path], tmp_path: Path) -> None:
    """`recompute --carbon` from `export`'s CSV and the site file gives the report's carbon fields."""
    carbon = str(site["dir"] / "carbon.toml")
    doc = json.loads(_report(site, "--json", "--carbon", carbon))
    readings = tmp_path / "readings.csv"
    out = subprocess.run([*RUN, "export", "--config", str(site["conf"]), *PERIOD, "-o", str(readings)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*RUN, "recompute", "--readings", str(readings), "--site", str(site["conf"]), *PERIOD, "--json",
                          "--carbon", carbon], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout)
    for key in ("green_energy_wh", "green_share", "carbon_kg", "cue_kg_per_kwh", "emission_factors", "green_entries",
                "renewable_meters_wh", "carbon_unknown"):
        assert again[key] == doc[key], key
