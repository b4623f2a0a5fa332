"""`puewatch statement`: a tenant's signed voucher evidence statement (issue 16, item 6).

The figures are `puewatch jobs --tenant T`'s (one rule: the cell rule of attribute.py), plus a
per-day split (the site's days: its calendar, [collector] timezone) of the tenant's energy and the site's PUE over the days the tenant used, taken
from the site's signed report for the same period (`--report`), whose digest the statement
names. It is signed exactly as reports are (puewatch.signing: RFC 8785, Ed25519), so `puewatch
verify` and any RFC 8785 + Ed25519 verifier check it. Schema: docs/report-schema.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

import numpy as np

from puewatch.core.numbers import percent_down
from puewatch.core.timefmt import NS, Calendar, calendar_of, format_time, parse_time
from puewatch.errors import UserError
from puewatch.terminal import in_page, shown

SCHEMA = "puewatch.statement/1"
# ISO/IEC 30134-2 categories by where IT energy is measured (puewatch/core/site.py).
CATEGORY_TEXT = {1: "category 1 (IT energy at UPS outputs)", 2: "category 2 (IT energy at PDU outputs)",
                 3: "category 3 (IT energy at the IT equipment's inputs)"}


def _site_report(path: str, key_path: str, start_ns: int, end_ns: int, timezone: str) -> dict[str, Any]:
    """The site's signed report for the period: its signature must verify with the signing key's
    public half, and its period and calendar (`timezone`: its daily rows' days) must equal the
    statement's, else a one-line error."""
    from puewatch.city.reportfile import load_report
    from puewatch.signing import SignatureInvalid, key_id, load_private_key, verify_report

    report = load_report(path)
    public = load_private_key(key_path).public_key()
    result = verify_report(report, {key_id(public): public})
    if not result.ok:
        raise SignatureInvalid(f"--report {path}: {result.reason} (the statement's key {key_path} is key id "
                               f"{key_id(public)})")
    if (parse_time(report["period_start"]), parse_time(report["period_end"])) != (start_ns, end_ns):
        raise UserError(f"--report {path}: its period {report['period_start']}..{report['period_end']} is not the "
                        f"statement's {format_time(start_ns)}..{format_time(end_ns)}")
    if calendar_of(report).zone != timezone:
        raise UserError(f"--report {path}: its days are in time zone {report.get('timezone', 'UTC')!r} (made "
                        f"{'before there was one' if 'timezone' not in report else 'with another'} [collector] "
                        f"timezone), the site's in {timezone!r}: make the report again with this config")
    return report


def _tenant_cells(ledger, cells, site, carbon, tenant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per attribution cell: the tenant's IT energy in known cells, its facility-inclusive energy
    and the green part of that (the cell's green share, attribute.py's rule), Wh."""
    from puewatch.jobs.attribute import _green_and_carbon, records_it_wh
    from puewatch.jobs.cells import cell_factors

    f = cell_factors(cells)
    green_frac = _green_and_carbon(cells, f.known, carbon, [], site.calendar)[0]  # its warnings are attribute()'s too
    mine = np.array([t == tenant for t, _ in ledger.jobs] or [False])[ledger.job] if len(ledger) else np.zeros(0, bool)
    job_it = records_it_wh(ledger, cells, site, f.factor, mine)
    has = np.isfinite(f.factor)
    it = np.where(has, job_it, 0.0).sum(axis=0)
    fac = np.where(has, job_it * np.where(has, f.factor, 0.0), 0.0).sum(axis=0)
    return it, fac, fac * green_frac


def _days(cells, it_c: np.ndarray, fac_c: np.ndarray, green_c: np.ndarray, start_ns: int, end_ns: int,
          calendar: Calendar) -> list[dict[str, Any]]:
    """The site's days (its `calendar`; clipped to the period) in which the tenant has IT energy in known
    cells: the report's daily rows."""
    grid = calendar.day_grid(start_ns, end_ns)
    day = np.searchsorted(grid, cells.edges_ns[:-1], side="right") - 1
    if np.any(np.searchsorted(grid, cells.edges_ns[1:] - 1, side="right") - 1 != day):
        raise UserError(f"--cell ({cells.cell_ns / NS:g} s): a cell crosses midnight ({calendar.zone}); use a shorter "
                        "cell, one that divides an hour (or 30 minutes, where the clocks change by 30), with the period "
                        "starting on a cell boundary")
    out = []
    for d in np.unique(day).tolist():
        sel = day == d
        it = float(it_c[sel].sum())
        if it > 0:
            out.append({"period_start": format_time(int(grid[d])), "period_end": format_time(int(grid[d + 1])),
                        "it_energy_wh": it, "facility_energy_wh": float(fac_c[sel].sum()),
                        # Lets a city split green energy by year, as carbon is (one factor per year).
                        "green_energy_wh": float(green_c[sel].sum())})
    return out


def _daily_rows(report: dict[str, Any]) -> dict[tuple[Any, Any], dict[str, Any]]:
    """The report's `daily` rows by (period_start, period_end)."""
    return {(r.get("period_start"), r.get("period_end")): r for r in report.get("daily") or [] if isinstance(r, dict)}


def site_pue_over_days(report: dict[str, Any], days: list[dict[str, Any]]) -> tuple[float | None, float | None,
                                                                                     float | None, str | None]:
    """The site's PUE over the statement's days from the report's `daily` rows, summed in the
    statement's order: (pue, facility Wh, IT Wh, why null). One function for `statement` and `city`."""
    daily = _daily_rows(report)
    fac = it = 0.0
    for d in days:
        row = daily.get((d["period_start"], d["period_end"]))
        if row is None:
            return None, None, None, f"the report has no daily row {d['period_start']}..{d['period_end']}"
        f, i = row.get("facility_energy_wh"), row.get("it_energy_wh")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (f, i)):
            day = calendar_of(report).name(d["period_start"], "day")
            return None, None, None, f"the report's day {day} has no facility or IT energy"
        fac += f
        it += i
    if not days:
        return None, None, None, "the tenant has no energy in a known cell of the period"
    if it <= 0:
        return None, fac, it, "the report's IT energy over the tenant's days is zero"
    return fac / it, fac, it, None


def days_completeness(report: dict[str, Any], days: list[dict[str, Any]]) -> float | None:
    """The site report's completeness over the statement's days: its `daily` rows' completeness, each
    weighted by its day's length (a first or last day may be partial), as the report's own is over its
    period; None where a day has no row or no completeness. Beside the site's PUE over those days, which
    is a figure only as complete as its days' meters were (found by the city audit: it stood alone)."""
    from puewatch.core.timefmt import parse_time

    daily = _daily_rows(report)
    total = weighted = 0.0
    for d in days:
        row = daily.get((d["period_start"], d["period_end"]))
        c = row.get("completeness") if row is not None else None
        if not isinstance(c, (int, float)) or isinstance(c, bool):
            return None
        length = parse_time(d["period_end"]) - parse_time(d["period_start"])
        total += length
        weighted += c * length
    return weighted / total if total > 0 else None


def build_statement(args: argparse.Namespace) -> dict[str, Any]:
    from puewatch import __version__
    from puewatch.jobs.attribute import attribute
    from puewatch.jobs.cli import load
    from puewatch.signing import digest

    if not args.tenant.strip():
        # The jobs with no tenant (no Slurm account) are listed under "" by `puewatch jobs`: several
        # holders' energy, of nobody a voucher could name.
        raise UserError("--tenant: a statement is for a named tenant, not the jobs that have none (tenant \"\")")
    site, cells, ledger, carbon, source, start, end = load(args)
    report = _site_report(args.report, args.sign, start, end, site.timezone) if args.report else None
    a = attribute(ledger, cells, site, carbon, args.tenant)
    if not a.tenants:
        raise UserError(f"tenant {args.tenant!r} has no job in {format_time(start)}..{format_time(end)} "
                        "(no job ledger record of it overlaps the period)")
    t = a.tenants[0]
    it_c, fac_c, green_c = _tenant_cells(ledger, cells, site, carbon, args.tenant)
    days = _days(cells, it_c, fac_c, green_c, start, end, site.calendar)
    warnings = list(a.warnings)
    if t["completeness"] is not None and t["completeness"] < 1:
        # The headline's facility-inclusive energy read below the IT energy, with no word (city audit).
        warnings.append(
            f"the facility-inclusive energy, the green share and the carbon count the tenant's IT energy where the "
            f"site's facility energy is known: {float(it_c.sum()):,.1f} Wh of {t['it_energy_wh']:,.1f} Wh (completeness "
            f"{percent_down(t['completeness'])}%); the rest ran in cells without facility data and is in none of them")
    pue = pue_fac = pue_it = None
    ref = None
    if report is None:
        warnings.append("no --report: the statement names no signed site report and states no site PUE")
    else:
        pue, pue_fac, pue_it, why = site_pue_over_days(report, days)
        if why:
            warnings.append(f"site PUE over the tenant's days unknown: {why}")
        ref = {"sha256": digest(report), "key_id": report["signature"]["key_id"], "schema": report["schema"],
               "period_start": report["period_start"], "period_end": report["period_end"],
               "pue": report["pue"], "facility_energy_wh": report["facility_energy_wh"],
               "it_energy_wh": report["it_energy_wh"], "category": report["category"]}
    jobs = [{k: j[k] for k in ("job", "gpu_hours", "gpu_hours_by_model", "gpu_energy_wh", "it_energy_wh",
                               "facility_energy_wh", "pue", "completeness")} for j in a.jobs]
    return {
        "schema": SCHEMA,
        "site": site.name,
        "tenant": args.tenant,
        "period_start": format_time(start),
        "period_end": format_time(end),
        "timezone": site.timezone,
        "cell_s": args.cell_s,
        "job_count": t["jobs"],
        "jobs": jobs,
        "gpu_hours": t["gpu_hours"],
        "gpu_hours_by_model": t["gpu_hours_by_model"],
        "gpu_energy_wh": t["gpu_energy_wh"],
        "host_energy_wh": t["host_energy_wh"],
        "it_energy_wh": t["it_energy_wh"],
        "it_energy_known_wh": float(it_c.sum()),
        "facility_energy_wh": t["facility_energy_wh"],
        "tenant_pue": t["pue"],
        "completeness": t["completeness"],
        "estimated_share": t["estimated_share"],
        # The share of the tenant's held GPU time whose host (CPU and memory) energy is unknown (as `puewatch jobs`).
        "host_unknown_share": t["host_unknown_share"],
        "category": site.category,
        "pue": pue,
        "pue_facility_energy_wh": pue_fac,
        "pue_it_energy_wh": pue_it,
        "pue_completeness": days_completeness(report, days) if pue is not None else None,
        "days": days,
        "green_energy_wh": t["green_energy_wh"],
        "green_share": t["green_share"],
        "carbon_kg": t["carbon_kg"],
        "emission_factors": a.site["emission_factors"],
        # The site's green energy the tenant's share comes from: the renewable meters and each entry, by id.
        "renewable_meters_wh": a.site["renewable_meters_wh"],
        "green_entries": a.site["green_entries"],
        "site_report": ref,
        "warnings": warnings,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": f"puewatch {__version__}",
        "source": source,
    }


def _kwh(wh: float | None) -> str:
    return "—" if wh is None else f"{wh / 1000:,.3f} kWh"


def _n(x: float | None, fmt: str = ".4f") -> str:
    return "—" if x is None else format(x, fmt)


def render_html(s: dict[str, Any]) -> str:
    """A self-contained page (inline CSS, no scripts); every value escaped. The signed JSON is the evidence."""
    e = in_page
    rows = [
        ("Site", s["site"]), ("Tenant", s["tenant"]), ("Period", f"{s['period_start']} .. {s['period_end']}"),
        ("Jobs", str(s["job_count"])), ("GPU-hours", _n(s["gpu_hours"], ",.2f")),
        *((f"GPU-hours, {m}", _n(h, ",.2f")) for m, h in sorted(s["gpu_hours_by_model"].items())),
        ("IT energy", _kwh(s["it_energy_wh"])),
        ("Facility-inclusive energy" + ("" if s["completeness"] is None or s["completeness"] >= 1 else
                                        f" (of the IT energy in cells with facility data: {percent_down(s['completeness'])}%)"),
         _kwh(s["facility_energy_wh"])),
        ("Site PUE over the tenant's days", _n(s["pue"]) + ("" if s.get("pue_completeness") is None else
                                                            f" (completeness {percent_down(s['pue_completeness'])}%)")),
        ("PUE category (ISO/IEC 30134-2)", CATEGORY_TEXT.get(s["category"], str(s["category"]))),
        ("Completeness", "—" if s["completeness"] is None else f"{percent_down(s['completeness'])}%"),
        ("Tenant's PUE (its cells, its zones)", _n(s["tenant_pue"])),
        # Statements made before the field have none: shown as not stated.
        ("Host (CPU and memory) share unknown", "—" if s.get("host_unknown_share") is None else
         f"{percent_down(s['host_unknown_share'])}% of the GPU time held (that energy is not in the IT energy)"),
        ("Green share", "—" if s["green_share"] is None else f"{percent_down(s['green_share'])}%"),
        ("Carbon", "—" if s["carbon_kg"] is None else f"{s['carbon_kg']:,.2f} kg CO2e"),
        *((f"Emission factor {f['region']} {f['year']}", f"{f['kg_co2e_per_kwh']:g} kg CO2e/kWh; source: {f['source']}")
          for f in s["emission_factors"]),
        ("Site's renewable meters (its cells)", _kwh(s["renewable_meters_wh"])),
        *((f"Site's green {g['kind']} {g['id']}", f"{_kwh(g['energy_in_cells_wh'])} in its cells, of {g['mwh']:,.3f} MWh "
           f"over {g['start']} .. {g['end']}" + (f"; source: {g['source']}" if g["source"] else ""))
          for g in s["green_entries"]),
        ("Site report SHA-256", s["site_report"]["sha256"] if s["site_report"] else "none (no --report)"),
        ("Signature key id", (s.get("signature") or {}).get("key_id", "unsigned")),
    ]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Voucher evidence statement: {e(s['tenant'])} at {e(s['site'])}</title>",
           "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
           "th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left}th{background:#eee}</style></head><body>",
           f"<h1>Voucher evidence statement: {e(s['tenant'])} at {e(s['site'])}</h1>",
           "<p>The signed JSON file is the evidence (check it with <code>puewatch verify</code>); this page shows "
           "it.</p><table>"]
    out += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows]
    out.append("</table><h2>Jobs</h2><table><tr><th>job</th><th>GPU-hours</th><th>IT</th>"
               "<th>facility-inclusive</th><th>PUE</th></tr>")
    out += [f"<tr><td>{e(j['job'])}</td><td>{_n(j['gpu_hours'], ',.2f')}</td><td>{_kwh(j['it_energy_wh'])}</td>"
            f"<td>{_kwh(j['facility_energy_wh'])}</td><td>{_n(j['pue'])}</td></tr>" for j in s["jobs"]]
    out.append("</table>")
    if s["warnings"]:
        out.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in s["warnings"]) + "</ul>")
    out.append("</body></html>\n")
    return "\n".join(out)


def statement_main(args: argparse.Namespace) -> int:
    from puewatch.signing import load_private_key, sign_report
    from puewatch.spoolfiles import write_file

    key = load_private_key(args.sign)  # a bad key is an error before the store is read
    signed = sign_report(build_statement(args), key)
    text = json.dumps(signed, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if args.out and args.out != "-":
        write_file(args.out, text)
    else:
        sys.stdout.write(text)
    if args.html:
        write_file(args.html, render_html(signed))
    for w in signed["warnings"]:
        print(shown(f"warning: {w}"), file=sys.stderr)
    return 0
