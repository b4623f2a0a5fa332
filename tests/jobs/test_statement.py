"""`puewatch statement`, `verify` and `city --statements`: a real embedded store holding the
collector's per-cell energies, the meters' raw register readings they came from and the job
ledger (tests/jobs/test_jobs.py's site); the site's report and the statements made and signed
by the CLI in subprocesses; the city's checks passing and failing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from js_signature import js, node_ready
from test_jobs import CARBON, EF, N_SUB, SITE, SUB, T0, _cells, _lines

from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.lineprotocol import encode_point
from puewatch.signing import digest, load_private_key, sign_report

PERIOD = ("--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z")


def _registers(c: dict[str, np.ndarray]) -> bytes:
    """The meters' cumulative registers at every collector cell edge: the raw readings `report` reads."""
    per_meter = {"incomer": c["e_dc"], "ups-a": c["it_a"], "crac-a": c["b_a"] - c["it_a"], "ups-x": c["it_x"],
                 "pv": c["pv"]}
    out = []
    for meter, wh in per_meter.items():
        reg = np.concatenate([[1000.0], 1000.0 + np.cumsum(wh)])
        for k in range(N_SUB + 1):
            out.append(encode_point("modbus", {"meter": meter}, {"energy_wh": float(reg[k])}, T0 + k * SUB))
    return "\n".join(out).encode() + b"\n"


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "puewatch.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("statement")
    conf = root / "collector.toml"
    conf.write_text(SITE.format(state=root / "state"))
    cells = _cells(np.random.default_rng(16))
    store = EmbeddedStore(root / "store.sqlite")
    store.write(_lines(cells))
    store.write(_registers(cells))
    store.close()
    (root / "carbon.toml").write_text(CARBON)
    keys = root / "keys"
    assert cli("keys", "new", "--out", keys, "--name", "site").returncode == 0
    common = ("--config", conf, "--store", root / "store.sqlite", *PERIOD)
    # With the carbon file: the green energy, certificates and factors the city checks the statements' against.
    r = cli("report", *common, "--json", "--sign", keys / "site.key", "--carbon", root / "carbon.toml",
            "-o", root / "report.json")
    assert r.returncode == 0, r.stderr
    for tenant in ("t1", "t2"):
        r = cli("statement", *common, "--tenant", tenant, "--sign", keys / "site.key", "--report",
                root / "report.json", "--carbon", root / "carbon.toml", "--out", root / f"{tenant}.json",
                "--html", root / f"{tenant}.html")
        assert r.returncode == 0, r.stderr
    return {"root": root, "conf": conf, "cells": cells, "keys": keys, "common": common}


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    return path


def test_statement_holds_the_tenants_figures_and_the_reports_digest(site: dict) -> None:
    root = site["root"]
    s = json.loads((root / "t1.json").read_text())
    report = json.loads((root / "report.json").read_text())
    jobs = cli("jobs", *site["common"], "--tenant", "t1", "--json", "--carbon", root / "carbon.toml")
    assert jobs.returncode == 0, jobs.stderr
    t = json.loads(jobs.stdout)["tenants"][0]
    # The figures are `puewatch jobs`'s: one rule.
    assert s["schema"] == "puewatch.statement/1" and s["tenant"] == "t1" and s["job_count"] == 2
    assert sorted(j["job"] for j in s["jobs"]) == ["11", "13"]
    for key in ("gpu_hours", "gpu_hours_by_model", "it_energy_wh", "facility_energy_wh", "completeness",
                "green_share", "carbon_kg", "host_unknown_share"):
        assert s[key] == t[key], key
    assert s["tenant_pue"] == t["pue"] and s["completeness"] == pytest.approx(59 / 60)
    # The days add up to the totals; the PUE is the report's over the tenant's days (one day here).
    assert sum(d["it_energy_wh"] for d in s["days"]) == pytest.approx(s["it_energy_known_wh"], rel=1e-12)
    assert sum(d["facility_energy_wh"] for d in s["days"]) == pytest.approx(s["facility_energy_wh"], rel=1e-12)
    m = {k: v.sum() for k, v in site["cells"].items()}
    assert s["pue"] == pytest.approx(m["e_dc"] / m["it"], rel=1e-9) and s["pue"] == report["pue"]
    # Beside it, how complete the report's days were (the one day here: the report's own completeness).
    assert s["pue_completeness"] == report["daily"][0]["completeness"] == report["completeness"]
    assert s["category"] == report["category"] == 1  # IT metered at UPS outputs
    # The digest: SHA-256 of the report's RFC 8785 bytes (its signature left out).
    assert s["site_report"]["sha256"] == digest(report) and s["site_report"]["key_id"] == report["signature"]["key_id"]
    assert s["signature"]["canonicalization"] == "RFC8785" and s["signature"]["alg"] == "ed25519"
    page = (root / "t1.html").read_text()
    assert "Voucher evidence statement: t1 at lab" in page and digest(report) in page
    assert s["host_unknown_share"] == 0 and "<th>Host (CPU and memory) share unknown</th><td>0.0% of the GPU time held" in page
    # A minute of the tenant's IT energy ran without facility data: the facility-inclusive energy, green share and
    # carbon leave it out, and the statement says so, in its warnings and beside the headline (city audit).
    known = [w for w in s["warnings"] if w.startswith("the facility-inclusive energy, the green share and the carbon")]
    assert len(known) == 1 and f"{s['it_energy_known_wh']:,.1f} Wh of {s['it_energy_wh']:,.1f} Wh (completeness 98.3%)" \
        in known[0], s["warnings"]
    assert "<th>Facility-inclusive energy (of the IT energy in cells with facility data: 98.3%)</th>" in page


def test_statement_names_the_green_energy_it_shares(site: dict) -> None:
    """The site's green energy the tenant's share comes from, with its sources: the renewable meters over the known
    cells and each certificate by id, period, MWh and the part in those cells; the same in `jobs`' site totals."""
    root = site["root"]
    s = json.loads((root / "t1.json").read_text())
    jobs = cli("jobs", *site["common"], "--json", "--carbon", root / "carbon.toml")
    assert jobs.returncode == 0, jobs.stderr
    totals = json.loads(jobs.stdout)["site_totals"]
    pv = site["cells"]["pv"].reshape(-1, 6).sum(axis=1)
    known = np.ones(pv.size, bool)
    known[16] = False  # hall-a's minute that was never stored (test_jobs)
    assert s["renewable_meters_wh"] == pytest.approx(pv[known].sum(), rel=1e-12)
    assert s["green_entries"] == [{"kind": "certificate", "id": "GEC-TEST-1", "start": "2026-01-01T00:00:00Z",
                                   "end": "2026-01-02T00:00:00Z", "mwh": 0.024, "source": "",
                                   "energy_in_cells_wh": pytest.approx(24_000 * 59 * 60 / 86_400, rel=1e-12)}]
    assert totals["green_entries"] == s["green_entries"] and totals["renewable_meters_wh"] == s["renewable_meters_wh"]
    assert s["emission_factors"][0]["source"] == "test value, not a published factor"
    page = (root / "t1.html").read_text()
    assert "Site&#x27;s green certificate GEC-TEST-1" in page and "test value, not a published factor" in page


def test_verify_accepts_a_statement_and_refuses_a_changed_kwh(site: dict, tmp_path: Path) -> None:
    root, pub = site["root"], site["keys"] / "site.pub"
    ok = cli("verify", root / "t1.json", "--pubkey", pub)
    assert ok.returncode == 0 and ok.stdout.startswith(f"OK: {root / 't1.json'}: voucher statement for tenant t1"), ok
    doc = json.loads((root / "t1.json").read_text())
    doc["facility_energy_wh"] += 1000.0  # one kWh more
    bad = cli("verify", _write(tmp_path / "tampered.json", doc), "--pubkey", pub)
    assert bad.returncode == 1 and "bad signature: the statement is not what key" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    # `city --statements` names it a statement too (it said "the report is not what key ... signed": city audit).
    rc, doc = _city(site, tmp_path / "tampered.json")
    (row,) = doc["vouchers"]["statements"]
    assert rc == 1 and "bad signature: the statement is not what key" in row["rules"][0]["evidence"], row


def test_a_statement_with_a_negative_energy_is_refused_naming_it(site: dict, tmp_path: Path) -> None:
    """As a report's (city audit): an energy, carbon or emission factor below 0 is no possible value, so the
    statement is refused (exit 2, one line naming the field), not verified or checked."""
    root, pub = site["root"], site["keys"] / "site.pub"
    for where, key in (((), "carbon_kg"), (("days", 0), "it_energy_wh"), (("emission_factors", 0), "kg_co2e_per_kwh")):
        doc = json.loads((root / "t1.json").read_text())
        obj = doc
        for step in where:
            obj = obj[step]
        obj[key] = -abs(obj[key] or 1.0)
        out = cli("verify", _write(tmp_path / "negative.json", doc), "--pubkey", pub)
        field = "".join(f"{s}." if isinstance(s, str) else f"[{s}]." for s in where).replace(".[", "[") + key
        assert out.returncode == 2 and f"{field}: -" in out.stderr and "is negative" in out.stderr, (field, out.stderr)


def test_a_statement_made_before_host_unknown_share_still_verifies_and_renders(site: dict, tmp_path: Path) -> None:
    from puewatch.jobs.statement import render_html

    root, keys = site["root"], site["keys"]
    doc = json.loads((root / "t2.json").read_text())
    doc.pop("signature")
    del doc["host_unknown_share"]  # as statements were signed before the field
    old = sign_report(doc, load_private_key(keys / "site.key"))
    ok = cli("verify", _write(tmp_path / "old.json", old), "--pubkey", keys / "site.pub")
    assert ok.returncode == 0, ok.stderr
    assert "<th>Host (CPU and memory) share unknown</th><td>—</td>" in render_html(old)


def test_the_javascript_verifier_verifies_a_statement(site: dict, tmp_path: Path) -> None:
    node = node_ready()
    root, pub = site["root"], site["keys"] / "site.pub"
    out = js(node, "verify", root / "t2.json", pub)
    assert out.returncode == 0 and out.stdout.startswith("OK "), out.stdout
    doc = json.loads((root / "t2.json").read_text())
    doc["it_energy_wh"] *= 2
    out = js(node, "verify", _write(tmp_path / "t2-changed.json", doc), pub)
    assert out.returncode == 1 and "does not match" in out.stdout


def test_statement_refuses_a_report_of_another_period_or_key(site: dict, tmp_path: Path) -> None:
    root, keys = site["root"], site["keys"]
    other = cli("report", "--config", site["conf"], "--store", root / "store.sqlite", "--from",
                "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:30:00Z", "--json", "--sign", keys / "site.key",
                "-o", tmp_path / "half.json")
    assert other.returncode == 0, other.stderr
    r = cli("statement", *site["common"], "--tenant", "t1", "--sign", keys / "site.key", "--report",
            tmp_path / "half.json")
    assert r.returncode == 2 and "is not the statement's 2026-01-01T00:00:00Z..2026-01-01T01:00:00Z" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert cli("keys", "new", "--out", tmp_path, "--name", "other").returncode == 0
    r = cli("statement", *site["common"], "--tenant", "t1", "--sign", tmp_path / "other.key", "--report",
            root / "report.json")
    assert r.returncode == 1 and "not among the public keys given" in r.stderr and "Traceback" not in r.stderr
    r = cli("statement", *site["common"], "--tenant", "nobody", "--sign", keys / "site.key")
    assert r.returncode == 2 and "tenant 'nobody' has no job in" in r.stderr


RULES = ["signature", "report_digest", "report_signature", "period", "pue", "green_share", "carbon", "totals", "site"]


def _city(site: dict, *statements: Path, report: Path | None = None) -> tuple[int, dict]:
    r = cli("city", report or site["root"] / "report.json", "--pubkeys", site["keys"], "--json", "--statements",
            *statements)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_city_passes_the_sites_statements(site: dict, tmp_path: Path) -> None:
    root = site["root"]
    rc, doc = _city(site, root / "t1.json", root / "t2.json")
    v = doc["vouchers"]
    assert rc == 0 and doc["passed"] and v["passed"], v
    for row in v["statements"]:
        assert [r["rule"] for r in row["rules"]] == RULES
        assert all(r["passed"] for r in row["rules"]), row
    (rep,) = v["reports"]
    t1, t2 = (json.loads((root / f"{t}.json").read_text()) for t in ("t1", "t2"))
    assert rep["statements"] == 2 and rep["rule"]["value"] == t1["facility_energy_wh"] + t2["facility_energy_wh"]
    assert rep["rule"]["limit"] == json.loads((root / "report.json").read_text())["facility_energy_wh"]
    table = cli("city", root / "report.json", "--pubkeys", site["keys"], "--statements", root / "t1.json",
                root / "t2.json", "--html", tmp_path / "city.html")
    assert table.returncode == 0 and "2 of 2 statements pass; vouchers: pass" in table.stdout
    page = (tmp_path / "city.html").read_text()
    assert "energy_within_e_dc" in page and "green_within_site" in page and "certificate GEC-TEST-1" in page


def test_city_fails_statements_beyond_e_dc_and_a_wrong_digest(site: dict, tmp_path: Path) -> None:
    root, key = site["root"], load_private_key(site["keys"] / "site.key")
    report = json.loads((root / "report.json").read_text())
    # A site claiming more for a tenant than it used, signed with its own key: every signature is
    # valid, and only the sum over the statements catches it.
    inflated = json.loads((root / "t2.json").read_text())
    scale = report["facility_energy_wh"] / inflated["facility_energy_wh"]
    # Its green energy, carbon, days and tenant PUE scaled with it, so that it agrees with itself (totals) and its
    # green share and carbon stay consistent.
    for name in ("facility_energy_wh", "green_energy_wh", "carbon_kg", "tenant_pue"):
        inflated[name] *= scale
    for day in inflated["days"]:
        for name in ("facility_energy_wh", "green_energy_wh"):
            day[name] *= scale
    inflated = _write(tmp_path / "t2-inflated.json", sign_report(inflated, key))
    rc, doc = _city(site, root / "t1.json", inflated)
    v = doc["vouchers"]
    assert rc == 1 and not v["passed"] and all(row["passed"] for row in v["statements"])
    rule = v["reports"][0]["rule"]
    assert rule["rule"] == "energy_within_e_dc" and not rule["passed"] and "more than the site used: fail" in rule["evidence"]
    assert v["reports"][0]["rules"][0] == rule
    # A statement naming another report (here: the report changed after the statement was made).
    changed = dict(report, warnings=[*report["warnings"], "re-issued"])
    changed = _write(tmp_path / "report-reissued.json", sign_report(changed, key))
    rc, doc = _city(site, root / "t1.json", report=changed)
    row = doc["vouchers"]["statements"][0]
    assert rc == 1 and [r["rule"] for r in row["rules"]] == ["signature", "report_digest", "totals"]
    assert not row["rules"][1]["passed"] and "matches none of the 1 report(s) given" in row["rules"][1]["evidence"]
    # A statement whose PUE is not the site's over its days.
    flattering = json.loads((root / "t1.json").read_text())
    flattering["pue"] = 1.1
    flattering = _write(tmp_path / "t1-flattering.json", sign_report(flattering, key))
    rc, doc = _city(site, flattering)
    pue = doc["vouchers"]["statements"][0]["rules"][RULES.index("pue")]
    assert rc == 1 and pue["rule"] == "pue" and not pue["passed"] and pue["limit"] == report["pue"]
    # A tampered statement: its signature fails in the city too.
    tampered = json.loads((root / "t1.json").read_text())
    tampered["it_energy_wh"] += 1.0
    rc, doc = _city(site, _write(tmp_path / "t1-tampered.json", tampered))
    sig = doc["vouchers"]["statements"][0]["rules"][0]
    assert rc == 1 and sig["rule"] == "signature" and sig["value"] == "invalid"


def test_city_fails_a_statement_whose_days_and_totals_disagree(site: dict, tmp_path: Path) -> None:
    """Found by the city audit: statements re-signed by the site with their totals changed and their days not
    passed every rule, for each rule reads the totals or the days alone: green energy raised from 1.7 to 4 kWh
    with its share made to match (the carbon rule read the days), and the facility-inclusive energy halved to
    below the tenant's IT energy (tenant_pue unchanged)."""
    root = site["root"]
    honest = json.loads((root / "t1.json").read_text())
    greener = dict(honest, green_energy_wh=honest["facility_energy_wh"] * 0.8, green_share=0.8)
    halved = dict(honest, facility_energy_wh=honest["it_energy_known_wh"] * 0.5)
    pue_off = dict(honest, tenant_pue=honest["tenant_pue"] * 0.9)
    # Its days changed alike (they add up again), a day below its IT energy: still refused.
    day_below = json.loads(json.dumps(honest))
    moved = day_below["days"][0]["facility_energy_wh"] - 0.5 * day_below["days"][0]["it_energy_wh"]
    day_below["days"][0]["facility_energy_wh"] -= moved
    day_below["days"].append(dict(day_below["days"][0], period_start="2026-01-01T00:30:00Z",
                                  it_energy_wh=0.0, facility_energy_wh=moved, green_energy_wh=0.0))
    cases = {"greener": (greener, "green"), "halved": (halved, "less than its IT energy in known cells"),
             "pue": (pue_off, "tenant PUE"), "day": (day_below, "day(s) with less facility-inclusive than IT energy")}
    for name, (doc, says) in cases.items():
        rc, out = _city(site, _signed(tmp_path / f"t1-{name}.json", doc, site["keys"] / "site.key"))
        rules = _rules(out["vouchers"]["statements"][0])
        assert rc == 1 and rules["signature"]["passed"], name
        assert not rules["totals"]["passed"] and says in rules["totals"]["evidence"], (name, rules["totals"])
    rc, out = _city(site, root / "t1.json")
    totals = _rules(out["vouchers"]["statements"][0])["totals"]
    assert rc == 0 and totals["passed"] and totals["value"] == pytest.approx(totals["limit"], rel=1e-12)
    # A statement made before it_energy_known_wh: its days' IT energy stands in for it.
    old = {k: v for k, v in honest.items() if k not in ("it_energy_known_wh", "signature")}
    rc, out = _city(site, _signed(tmp_path / "t1-old.json", old, site["keys"] / "site.key"))
    assert rc == 0 and _rules(out["vouchers"]["statements"][0])["totals"]["passed"]


def _signed(path: Path, doc: dict, key_path: Path) -> Path:
    return _write(path, sign_report(doc, load_private_key(key_path)))


def _rules(row: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in row["rules"]}


def test_city_checks_the_statements_green_share_and_carbon(site: dict) -> None:
    root = site["root"]
    report = json.loads((root / "report.json").read_text())
    # The report's green energy: the renewable meter's readings over the hour plus the certificate's
    # 24 kWh a day spread evenly (1 kWh in the hour); its factor as the carbon file gives it.
    assert report["green_energy_wh"] == pytest.approx(site["cells"]["pv"].sum() + 24_000 / 24, rel=1e-9)
    assert [(f["year"], f["kg_co2e_per_kwh"]) for f in report["emission_factors"]] == [(2026, EF)]
    rc, doc = _city(site, root / "t1.json", root / "t2.json")
    v = doc["vouchers"]
    assert rc == 0 and v["passed"], v
    claimed = 0.0
    for row in v["statements"]:
        s = json.loads(Path(row["statement"]).read_text())
        r = _rules(row)
        assert r["green_share"]["passed"] and r["green_share"]["value"] == s["green_share"] > 0
        assert r["green_share"]["limit"] == s["green_energy_wh"] / s["facility_energy_wh"]
        assert r["carbon"]["passed"] and r["carbon"]["value"] == s["carbon_kg"]
        assert r["carbon"]["limit"] == pytest.approx(EF * (s["facility_energy_wh"] - s["green_energy_wh"]) / 1000,
                                                     rel=1e-12)
        assert sum(d["green_energy_wh"] for d in s["days"]) == pytest.approx(s["green_energy_wh"], rel=1e-12)
        claimed += s["green_energy_wh"]
    green = _rules(v["reports"][0])["green_within_site"]
    assert green["passed"] and green["value"] == pytest.approx(claimed, rel=1e-15)
    assert green["limit"] == report["green_energy_wh"]
    (cert,) = v["certificates"]
    assert cert["id"] == "GEC-TEST-1" and cert["sites"] == ["lab"] and cert["rule"]["passed"]
    assert cert["rule"]["value"] == report["green_entries"][0]["energy_in_period_wh"]
    assert cert["rule"]["limit"] == 24_000
    text = cli("city", root / "report.json", "--pubkeys", site["keys"], "--statements", root / "t1.json")
    assert text.returncode == 0
    for line in ("PASS  green_share t1", "PASS  carbon t1", "PASS  green_within_site lab",
                 "PASS  certificate GEC-TEST-1", "PASS  report_signature t1"):
        assert line in text.stdout, text.stdout


def test_city_fails_inflated_green_shares_and_lowered_carbon(site: dict, tmp_path: Path) -> None:
    """Statements changed by the site and signed again with its key: every signature is valid."""
    root, key = site["root"], site["keys"] / "site.key"
    report = json.loads((root / "report.json").read_text())
    honest = json.loads((root / "t1.json").read_text())

    def city_row(name: str, **changes: object) -> tuple[int, dict, dict]:
        rc, doc = _city(site, _signed(tmp_path / f"{name}.json", {**honest, **changes}, key))
        return rc, _rules(doc["vouchers"]["statements"][0]), doc["vouchers"]

    # A green share above its green energy over its facility-inclusive energy.
    rc, r, _ = city_row("share", green_share=0.9)
    assert rc == 1 and not r["green_share"]["passed"] and r["green_share"]["value"] == 0.9
    assert "is not green / facility-inclusive" in r["green_share"]["evidence"]
    # Carbon lowered: no longer the report's factor times its grid energy.
    rc, r, _ = city_row("carbon", carbon_kg=honest["carbon_kg"] / 2)
    assert rc == 1 and not r["carbon"]["passed"] and r["green_share"]["passed"]
    assert r["carbon"]["limit"] == pytest.approx(EF * (honest["facility_energy_wh"] - honest["green_energy_wh"]) / 1000)
    assert "is not the report's factors x its grid energy" in r["carbon"]["evidence"]
    # All green, consistently: share 1, no carbon, over twice the site's green energy (and within its E_DC):
    # each statement rule holds, the site's green energy does not cover it.
    fac = 2 * report["green_energy_wh"]
    scale = fac / honest["facility_energy_wh"]
    days = [dict(d, facility_energy_wh=d["facility_energy_wh"] * scale, green_energy_wh=d["facility_energy_wh"] * scale)
            for d in honest["days"]]
    rc, r, v = city_row("all-green", facility_energy_wh=fac, green_energy_wh=fac, green_share=1.0, carbon_kg=0.0,
                        days=days, tenant_pue=honest["tenant_pue"] * scale)
    assert rc == 1 and all(x["passed"] for x in r.values()), r
    energy, green = v["reports"][0]["rules"]
    assert energy["passed"] and not green["passed"] and green["value"] == fac
    assert green["limit"] == report["green_energy_wh"]
    assert "more than the site had: fail" in green["evidence"]
    # Green energy more than the facility-inclusive energy it is a share of.
    rc, r, _ = city_row("over", green_energy_wh=2 * honest["facility_energy_wh"], green_share=2.0)
    assert rc == 1 and not r["green_share"]["passed"]
    assert "(a cell's green share is at most 1)" in r["green_share"]["evidence"]
    # A certificate the site's signed report does not list.
    entries = [{**honest["green_entries"][0], "id": "GEC-NOT-RETIRED"}]
    rc, r, _ = city_row("entry", green_entries=entries)
    assert rc == 1 and not r["green_share"]["passed"]
    assert "certificate GEC-NOT-RETIRED is not among the report's green entries" in r["green_share"]["evidence"]


def test_city_fails_a_certificate_claimed_by_two_sites(site: dict, tmp_path: Path) -> None:
    root = site["root"]
    # A second site retiring the same certificate id: all of its 24 kWh within the hour.
    conf = tmp_path / "lab-2.toml"
    conf.write_text(SITE.replace('site = "lab"', 'site = "lab-2"').format(state=tmp_path / "state"))
    carbon = tmp_path / "carbon-2.toml"
    carbon.write_text(CARBON.replace("start = 2026-01-01\n", 'start = "2026-01-01T00:00:00Z"\n')
                      .replace("end = 2026-01-02\n", 'end = "2026-01-01T01:00:00Z"\n'))
    keys = tmp_path / "keys"
    assert cli("keys", "new", "--out", keys, "--name", "lab-2").returncode == 0
    (keys / "site.pub").write_bytes((site["keys"] / "site.pub").read_bytes())
    r = cli("report", "--config", conf, "--store", root / "store.sqlite", *PERIOD, "--json", "--sign",
            keys / "lab-2.key", "--carbon", carbon, "-o", tmp_path / "lab-2.json")
    assert r.returncode == 0, r.stderr
    args = ("city", root / "report.json", tmp_path / "lab-2.json", "--pubkeys", keys, "--statements", root / "t1.json")
    out = cli(*args, "--json")
    assert out.returncode == 1, out.stderr
    v = json.loads(out.stdout)["vouchers"]
    assert all(row["passed"] for row in v["statements"])  # t1's own claims hold
    (cert,) = v["certificates"]
    parts = {c["site"]: c["energy_in_period_wh"] for c in cert["claims"]}
    assert cert["id"] == "GEC-TEST-1" and cert["sites"] == ["lab", "lab-2"] and not cert["rule"]["passed"]
    assert parts == {"lab": pytest.approx(1000.0), "lab-2": pytest.approx(24_000.0)}
    assert cert["rule"]["value"] == pytest.approx(25_000.0) and cert["rule"]["limit"] == 24_000.0
    text = cli(*args)
    assert text.returncode == 1
    (line,) = [x for x in text.stdout.splitlines() if x.startswith("FAIL  certificate GEC-TEST-1")]
    for part in ("claimed by 2 sites (lab, lab-2)", "0.025 MWh claimed in all, more than its 0.024 MWh",
                 "lab-2 (" + str(tmp_path / "lab-2.json"), ": 0.024 MWh)"):
        assert part in line, line


def test_city_fails_a_statement_of_one_site_naming_another_site_s_report(site: dict, tmp_path: Path) -> None:
    """Found by the signature audit: a statement saying site B that names site A's report (its digest) passed
    every rule on A's figures while the city listed it under B. Its site must be the report's, as sites are told
    apart (core.site.site_key: "LAB " is lab)."""
    root, key = site["root"], site["keys"] / "site.key"
    t1 = json.loads((root / "t1.json").read_text())
    for name, passes in (("LAB ", True), ("lab-east", False)):
        moved = _signed(tmp_path / "moved.json", {**t1, "site": name}, key)
        rc, doc = _city(site, moved)
        r = _rules(doc["vouchers"]["statements"][0])
        assert r["site"]["passed"] is passes and (rc == 0) is passes, r["site"]
        assert r["site"]["value"] == name and r["site"]["limit"] == "lab"
        assert all(x["passed"] for k, x in r.items() if k != "site")  # every other rule read lab's report
    assert "is not the report's, 'lab': fail" in r["site"]["evidence"]


def test_a_certificate_claimed_by_one_site_under_two_spellings_is_one_site_s() -> None:
    """The certificate rule counted sites by their exact names: one site's two reports of one certificate
    ("lab", "LAB") failed as claimed by two sites."""
    from puewatch.city.green import certificate_rows

    entry = {"id": "GEC-1", "kind": "certificate", "mwh": 1.0, "energy_in_period_wh": 100.0}
    one = certificate_rows([("a.json", {"site": "lab", "green_entries": [entry]}),
                            ("b.json", {"site": "LAB", "green_entries": [entry]})])
    two = certificate_rows([("a.json", {"site": "lab", "green_entries": [entry]}),
                            ("b.json", {"site": "lab-2", "green_entries": [entry]})])
    assert one[0]["rule"].passed and not two[0]["rule"].passed
    assert "claimed by 2 sites (lab, lab-2)" in two[0]["rule"].evidence
    # Found by the HTML audit: a certificate id spelt with a zero-width joiner, a tag character or in other case
    # was another certificate, which a second site claimed, passing: one certificate, as people read it.
    for spelt in ("gec-1", "GEC-1\u200d", "GEC\u200d-1", "GEC-1\U000e0020", " GEC-1"):
        rows = certificate_rows([("a.json", {"site": "lab", "green_entries": [entry]}),
                                 ("b.json", {"site": "lab-2", "green_entries": [{**entry, "id": spelt}]})])
        (row,) = rows
        assert not row["rule"].passed and "claimed by 2 sites" in row["rule"].evidence, spelt
        assert "its id written 2 ways" in row["rule"].evidence


def test_city_fails_a_statement_whose_report_is_unsigned_or_signed_by_another_key(site: dict, tmp_path: Path) -> None:
    """The digest leaves the report's signature out, so it matches an unsigned copy: the report's own
    signature is a rule of its own."""
    root = site["root"]
    report = json.loads((root / "report.json").read_text())
    unsigned = _write(tmp_path / "unsigned.json", {k: v for k, v in report.items() if k != "signature"})
    rc, doc = _city(site, root / "t1.json", report=unsigned)
    r = _rules(doc["vouchers"]["statements"][0])
    assert rc == 1 and r["report_digest"]["passed"] and not r["report_signature"]["passed"]
    assert r["report_signature"]["value"] == "unsigned"
    assert "the report has no signature" in r["report_signature"]["evidence"]
    # Signed again by another key the city holds: valid, but not the key the statement names.
    keys = tmp_path / "keys"
    assert cli("keys", "new", "--out", keys, "--name", "other").returncode == 0
    (keys / "site.pub").write_bytes((site["keys"] / "site.pub").read_bytes())
    other = _signed(tmp_path / "other.json", report, keys / "other.key")
    out = cli("city", other, "--pubkeys", keys, "--json", "--statements", root / "t1.json")
    r = _rules(json.loads(out.stdout)["vouchers"]["statements"][0])
    assert out.returncode == 1 and r["report_digest"]["passed"] and not r["report_signature"]["passed"]
    named = json.loads((root / "t1.json").read_text())["site_report"]["key_id"]
    assert f"not {named} as the statement names" in r["report_signature"]["evidence"]


def test_city_refuses_mistyped_green_fields_in_one_line(site: dict, tmp_path: Path) -> None:
    root = site["root"]
    report = json.loads((root / "report.json").read_text())
    report["green_entries"][0]["mwh"] = "24 kWh"
    r = cli("city", _write(tmp_path / "bad-report.json", report), "--statements", root / "t1.json")
    assert r.returncode == 2 and r.stderr.strip().endswith('green_entries[0].mwh: must be a number, got "24 kWh"')
    s = json.loads((root / "t1.json").read_text())
    del s["carbon_kg"]
    r = cli("city", root / "report.json", "--statements", _write(tmp_path / "bad-statement.json", s))
    assert r.returncode == 2 and "carbon_kg: missing (schema puewatch.statement/1)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_carbon_over_a_new_year_takes_each_years_factor(site: dict) -> None:
    """A statement whose days span two UTC years: each year's grid energy times that year's factor of
    the report (the fixture's hour is in one year, so t1's one day is split in two here)."""
    from puewatch.city.green import carbon_rule

    s = json.loads((site["root"] / "t1.json").read_text())
    report = json.loads((site["root"] / "report.json").read_text())
    (day,) = s["days"]
    fac, green = s["facility_energy_wh"], s["green_energy_wh"]
    s["days"] = [{**day, "period_start": "2025-12-31T00:00:00Z", "period_end": "2026-01-01T00:00:00Z",
                  "facility_energy_wh": fac / 4, "green_energy_wh": 0.0},
                 {**day, "facility_energy_wh": fac * 3 / 4, "green_energy_wh": green}]
    f2026 = report["emission_factors"][0]
    report["emission_factors"] = [{**f2026, "year": 2025, "kg_co2e_per_kwh": 0.8, "source": "test 2025"}, f2026]
    s["carbon_kg"] = 0.8 * fac / 4 / 1000 + EF * (fac * 3 / 4 - green) / 1000
    r = carbon_rule(s, report)
    assert r.passed and r.limit == pytest.approx(s["carbon_kg"], rel=1e-15), r.evidence
    assert "2025: (" in r.evidence and "x 0.8 kg/kWh (test 2025, the statement names no factor)" in r.evidence
    s["carbon_kg"] = EF * (fac - green) / 1000  # the 2026 factor over both years
    assert not carbon_rule(s, report).passed
    del s["days"][0]["green_energy_wh"]
    r = carbon_rule(s, report)
    assert not r.passed and "its days span 2025..2026 and carry no green energy per day" in r.evidence


def test_a_tenant_whose_records_hold_no_energy_has_zero_figures_and_a_statement_that_passes(tmp_path: Path) -> None:
    # Tenant t0's records, in known cells, hold 0 Wh: its facility energy, green energy and carbon
    # (the factor exists) are 0, not null ("unknown", or "no emission factor"), and its honest
    # statement, with no day of IT energy, passes the city's checks (it failed the pue rule: "the
    # site's PUE over the statement's 0 day(s) is unknown"). Job 17 (tenant t9) has energy only in
    # minute 16, whose cell was never stored: its figures are unknown (null).
    cells = _cells(np.random.default_rng(16))
    extra = []
    for m in range(1, 61):
        extra.append(encode_point("job_ledger", {"node": "gpu-a-2", "gpu": "0", "slot": "0"},
                                  {"job": "16", "tenant": "t0", "source": "static", "gpu_model": "NVIDIA H100 80GB HBM3",
                                   "interval_s": 60.0, "gpu_wh": 0.0, "host_wh": 0.0}, T0 + m * 60 * 10**9))
    extra.append(encode_point("job_ledger", {"node": "gpu-x-2", "gpu": "0", "slot": "0"},
                              {"job": "17", "tenant": "t9", "source": "static", "gpu_model": "NVIDIA H100 80GB HBM3",
                               "interval_s": 60.0, "gpu_wh": 3.0, "host_wh": 0.0}, T0 + 17 * 60 * 10**9))
    conf = tmp_path / "collector.toml"
    conf.write_text(SITE.format(state=tmp_path / "state"))
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(_lines(cells))
    store.write(_registers(cells))
    store.write("\n".join(extra).encode() + b"\n")
    store.close()
    (tmp_path / "carbon.toml").write_text(CARBON)
    keys = tmp_path / "keys"
    assert cli("keys", "new", "--out", keys, "--name", "site").returncode == 0
    common = ("--config", conf, "--store", tmp_path / "store.sqlite", *PERIOD)
    r = cli("jobs", *common, "--carbon", tmp_path / "carbon.toml", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    tenants = {t["tenant"]: t for t in doc["tenants"]}
    t0 = tenants["t0"]
    assert t0["it_energy_wh"] == 0.0 and t0["records"] == 60
    assert (t0["facility_energy_wh"], t0["green_energy_wh"], t0["carbon_kg"]) == (0.0, 0.0, 0.0)
    assert t0["pue"] is None and t0["completeness"] is None  # ratios over no energy: unknown
    t9 = tenants["t9"]
    assert t9["it_energy_wh"] == 3.0 and t9["completeness"] == 0.0
    assert (t9["facility_energy_wh"], t9["green_energy_wh"], t9["carbon_kg"]) == (None, None, None)
    r = cli("report", *common, "--json", "--sign", keys / "site.key", "--carbon", tmp_path / "carbon.toml",
            "-o", tmp_path / "report.json")
    assert r.returncode == 0, r.stderr
    r = cli("statement", *common, "--tenant", "t0", "--sign", keys / "site.key", "--report", tmp_path / "report.json",
            "--carbon", tmp_path / "carbon.toml", "--out", tmp_path / "t0.json")
    assert r.returncode == 0, r.stderr
    statement = json.loads((tmp_path / "t0.json").read_text())
    assert statement["days"] == [] and statement["pue"] is None and statement["carbon_kg"] == 0.0
    r = cli("city", tmp_path / "report.json", "--pubkeys", keys, "--json", "--statements", tmp_path / "t0.json")
    assert r.returncode == 0, r.stdout + r.stderr
    (row,) = json.loads(r.stdout)["vouchers"]["statements"]
    rules = {x["rule"]: x for x in row["rules"]}
    assert all(x["passed"] for x in row["rules"]), row
    assert rules["pue"]["evidence"] == ("the statement has no day with IT energy in a known cell and states no site "
                                        "PUE: nothing to check: pass")
    assert "no emission factor" not in rules["carbon"]["evidence"]


def test_a_site_west_of_utc_counts_the_hour_in_its_own_year_and_day(site: dict, tmp_path: Path) -> None:
    """[collector] timezone America/New_York (UTC-5): the fixture's hour, 2026-01-01T00:00Z..01:00Z, is 19:00-20:00
    on 31 December 2025 there, so the report, `jobs` and the statement take 2025's emission factor, the
    certificate dated 2026-01-01 (the site's midnight, 05:00Z) covers none of it, and the statement's day is
    the site's 31 December. The city checks the statement's carbon with the same year. A statement refuses
    a site report made in another calendar (its daily rows are other days)."""
    root, keys = site["root"], site["keys"]
    conf = tmp_path / "collector.toml"
    text = site["conf"].read_text()
    assert text.count('\nsite = "lab"\n') == 1
    conf.write_text(text.replace('\nsite = "lab"\n', '\nsite = "lab"\ntimezone = "America/New_York"\n'))
    carbon = tmp_path / "carbon.toml"
    carbon.write_text(CARBON + '\n[[emission_factor]]\nregion = "test-grid"\nyear = 2025\nkg_co2e_per_kwh = 0.8\n'
                      'source = "test value for 2025"\n')
    common = ("--config", conf, "--store", root / "store.sqlite", *PERIOD)
    r = cli("report", *common, "--json", "--sign", keys / "site.key", "--carbon", carbon, "-o", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["timezone"] == "America/New_York" and report["label"] == (
        "iPUE_L1 2025-12-31T19:00:00-05:00..2025-12-31T20:00:00-05:00")
    assert [(f["year"], f["kg_co2e_per_kwh"]) for f in report["emission_factors"]] == [(2025, 0.8)]
    assert [d["period_start"] for d in report["daily"]] == ["2026-01-01T00:00:00Z"]
    assert report["green_entries"] == []  # its 2026-01-01 begins at 05:00Z, after the hour
    jobs = cli("jobs", *common, "--json", "--carbon", carbon)
    assert jobs.returncode == 0, jobs.stderr
    doc = json.loads(jobs.stdout)
    assert doc["timezone"] == "America/New_York"
    assert [f["year"] for f in doc["site_totals"]["emission_factors"]] == [2025]
    s_path = tmp_path / "t1.json"
    r = cli("statement", *common, "--tenant", "t1", "--sign", keys / "site.key", "--report", tmp_path / "r.json",
            "--carbon", carbon, "--out", s_path)
    assert r.returncode == 0, r.stderr
    s = json.loads(s_path.read_text())
    assert s["timezone"] == "America/New_York" and [f["year"] for f in s["emission_factors"]] == [2025]
    assert [(d["period_start"], d["period_end"]) for d in s["days"]] == [("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")]
    rc, out = _city(site, s_path, report=tmp_path / "r.json")
    (row,) = out["vouchers"]["statements"]
    assert rc == 0 and all(rule["passed"] for rule in row["rules"]), row
    carbon_rule = next(rule for rule in row["rules"] if rule["rule"] == "carbon")
    assert "2025: (" in carbon_rule["evidence"] and "x 0.8 kg/kWh" in carbon_rule["evidence"], carbon_rule
    # A statement whose days are another calendar's than its report's fails the period rule, naming both.
    other = _write(tmp_path / "utc.json", {**s, "timezone": "UTC"})
    rc, out = _city(site, other, report=tmp_path / "r.json")
    (row,) = out["vouchers"]["statements"]
    period = next(rule for rule in row["rules"] if rule["rule"] == "period")
    assert rc == 1 and not period["passed"] and period["evidence"].endswith(
        "(UTC) is not the report's 2026-01-01T00:00:00Z..2026-01-01T01:00:00Z (America/New_York): fail"), period
    # The UTC site's report is the same hour in another calendar: refused, saying so.
    r = cli("statement", *common, "--tenant", "t1", "--sign", keys / "site.key", "--report", root / "report.json")
    assert r.returncode == 2 and "its days are in time zone 'UTC'" in r.stderr and "'America/New_York'" in r.stderr, \
        r.stderr


def test_a_statement_s_days_are_the_site_s_days() -> None:
    """Cells over two UTC+8 days: the tenant's energy is split at 16:00 UTC, and a cell across the site's
    midnight is refused, naming the zone."""
    from types import SimpleNamespace

    from puewatch.core.timefmt import HOUR, Calendar, parse_time
    from puewatch.errors import UserError
    from puewatch.jobs.statement import _days

    cal = Calendar("Asia/Shanghai")
    start, end = parse_time("2026-01-01T12:00:00Z"), parse_time("2026-01-02T04:00:00Z")
    edges = np.arange(start, end + 1, HOUR, dtype=np.int64)
    cells = SimpleNamespace(edges_ns=edges, cell_ns=HOUR)
    it = np.arange(1.0, edges.size)
    days = _days(cells, it, 2 * it, 0.5 * it, start, end, cal)
    assert [(d["period_start"], d["period_end"]) for d in days] == [
        ("2026-01-01T12:00:00Z", "2026-01-01T16:00:00Z"), ("2026-01-01T16:00:00Z", "2026-01-02T04:00:00Z")]
    assert [d["it_energy_wh"] for d in days] == [1 + 2 + 3 + 4, float(sum(range(5, 17)))]
    assert [d["facility_energy_wh"] for d in days] == [20.0, 2 * float(sum(range(5, 17)))]
    odd = SimpleNamespace(edges_ns=np.arange(start, end + 1, 3 * HOUR, dtype=np.int64), cell_ns=3 * HOUR)
    with pytest.raises(UserError, match=r"a cell crosses midnight \(Asia/Shanghai\)"):
        _days(odd, np.ones(5), np.ones(5), np.ones(5), start, start + 15 * HOUR, cal)


def test_a_statement_s_day_given_as_a_date_alone_is_refused(site: dict) -> None:
    """Review: a day's start as a bare date was read as UTC's midnight, then put in a year of the statement's own
    calendar (New York's 2026-01-01 at 00:00 UTC is 2025): refused, as a report's period is."""
    from puewatch.city.reportfile import ReportError
    from puewatch.city.statementfile import validate_statement

    s = json.loads((site["root"] / "t1.json").read_text())
    validate_statement(s, "t1.json")
    s["days"][0]["period_start"] = "2026-01-01"
    with pytest.raises(ReportError, match=r"days\[0\]\.period_start: must be an RFC 3339 time, got \"2026-01-01\""):
        validate_statement(s, "t1.json")
