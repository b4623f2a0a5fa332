"""`puewatch jobs`: energy per job and per tenant over a period, from the job ledger."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

from puewatch.core.timefmt import NS, format_time
from puewatch.errors import UserError
from puewatch.terminal import columns, shown

SCHEMA = "puewatch.jobs/1"
# The longest ledger interval read across the period's end (a record counts by its share inside): twice
# the agent's longest interval_s (3600 s), which a record reaches where a GPU's next energy reading came
# late (agent/sources/jobs.py: the interval goes on), and a minute for the ticks' jitter. A longer record
# (a GPU lost for hours) that ends more than this after the period is not read: its part inside stays
# unattributed (docs/auditor-guide.md).
MAX_INTERVAL_NS = (2 * 3600 + 60) * NS
# The CSV's columns, the JSON's fields of a job or tenant row (docs/report-schema.md); those after
# host_unknown_share were added later, at the end. gpu_hours_by_model is the JSON object as text.
CSV_COLUMNS = ("kind", "tenant", "job", "gpu_models", "gpu_hours", "gpu_energy_wh", "it_energy_wh",
               "facility_energy_wh", "pue", "completeness", "estimated_share", "green_energy_wh", "green_share",
               "carbon_kg", "host_unknown_share", "gpu_hours_by_model", "host_energy_wh", "reserved_idle_energy_wh",
               "shared_records", "records", "jobs", "site", "period_start", "period_end", "it_energy_known_wh")
_CSV_NUMBERS = CSV_COLUMNS[4:15] + CSV_COLUMNS[16:21]
# A cell a spreadsheet would run as a formula starts with one of these (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def load(args: argparse.Namespace):
    """(site, cells, ledger, carbon data or None, source, start_ns, end_ns) for the arguments' period."""
    from puewatch.collector import config as collector_config
    from puewatch.jobs.carbon import load_carbon
    from puewatch.jobs.cells import read_cells
    from puewatch.jobs.ledger import read_ledger
    from puewatch.report.cli import YEAR_S, _period
    from puewatch.report.sources import open_store

    if not 0 < args.cell_s <= YEAR_S:
        raise UserError(f"--cell must be positive and at most a year ({YEAR_S} s), got {args.cell_s}")
    conf = collector_config.load(args.config)
    site = conf.site_model()
    start, end = _period(args, site.calendar)
    carbon = load_carbon(args.carbon, site.calendar) if args.carbon else None
    reader, source = open_store(conf, args.store, database=args.database, user=args.user,
                                password_file=args.password_file, token_file=args.token_file)
    try:
        cells = read_cells(reader, site, start, end, round(args.cell_s * NS), round(conf.collector.interval_s * NS))
        ledger = read_ledger(reader, start, end, MAX_INTERVAL_NS)
    finally:
        reader.close()
    return site, cells, ledger, carbon, source, start, end


def compute(args: argparse.Namespace) -> dict[str, Any]:
    from puewatch.jobs.attribute import attribute

    site, cells, ledger, carbon, source, start, end = load(args)
    a = attribute(ledger, cells, site, carbon, args.tenant)
    if args.tenant and not a.tenants:
        a.warnings.append(f"tenant {args.tenant!r} has no ledger record in the period")
    return {"schema": SCHEMA, "site": site.name, "period_start": format_time(start), "period_end": format_time(end),
            "timezone": site.timezone,
            "cell_s": args.cell_s, "tenant": args.tenant, "jobs": a.jobs, "tenants": a.tenants,
            "unattributed": a.unattributed, "identities": a.identities, "site_totals": a.site,
            # Counted, never dropped silently: ledger records left out by reason, GPU processes of no job per node.
            "ledger_records_left_out": dict(sorted(ledger.dropped.items())),
            "unattributed_processes": ledger.unattributed_processes,
            "warnings": a.warnings, "source": source}


def _csv_text(text: str) -> str:
    """A name (tenant, job, GPU model: from schedulers and jobs' environments) as a CSV cell: one that a
    spreadsheet would run as a formula gets a leading ', which spreadsheets show as text and do not run.
    The JSON keeps every name as it is."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(doc: dict[str, Any]) -> str:
    """One row per job, then per tenant (their JSON rows), then the energy no job holds (`unattributed`) and
    the site's totals (`site`: E_DC, measured IT, PUE, completeness over the cells, green energy, carbon), so
    that the rows add up to the totals as the identities say: the facility energies, and of the IT energy the
    part in known cells (`it_energy_known_wh`; a job's `it_energy_wh` also counts its energy in cells with no
    facility data, which neither the unattributed nor the site row holds). Every row names the site and the period. RFC
    4180: CRLF line ends, and a field holding a comma, a quote, a CR or a LF is quoted. An unknown value is
    an empty cell, never 0."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    where = [_csv_text(doc["site"]), doc["period_start"], doc["period_end"]]

    def numbers(r: dict[str, Any]) -> list[Any]:
        return ["" if r.get(c) is None else r[c] for c in _CSV_NUMBERS]

    def known(r: dict[str, Any]) -> Any:
        return r["it_energy_known_wh"]

    for kind, rows in (("job", doc["jobs"]), ("tenant", doc["tenants"])):
        for r in rows:
            models = "+".join(sorted(r["gpu_hours_by_model"]))
            cells = numbers(r)
            w.writerow([kind, _csv_text(r["tenant"]), _csv_text(r.get("job", "")), _csv_text(models), *cells[:11],
                        json.dumps(r["gpu_hours_by_model"], sort_keys=True, ensure_ascii=False), *cells[11:], *where,
                        known(r)])
    for kind, r in (("unattributed", doc["unattributed"]), ("site", doc["site_totals"])):
        cells = numbers(r)
        w.writerow([kind, "", "", "", *cells[:11], "", *cells[11:], *where, known(r)])
    return buf.getvalue()


def _kwh(x: float | None) -> str:
    return "-" if x is None else f"{x / 1000:.3f}"


# The job and tenant table: heads, their least widths, and the columns aligned right (numbers).
_HEADS = ("tenant", "job", "GPU-h", "GPU kWh", "IT kWh", "fac kWh", "PUE", "compl", "est", "green", "kg CO2e", "host")
_LEAST = [16, 20, 9, 10, 10, 10, 6, 6, 6, 6, 9, 0]
_RIGHT = set(range(2, 11))


def _text(doc: dict[str, Any]) -> str:
    def row(r: dict[str, Any], job: str) -> list[str]:
        pue = "-" if r["pue"] is None else f"{r['pue']:.3f}"
        comp = "-" if r["completeness"] is None else f"{r['completeness']:.1%}"
        green = "-" if r["green_share"] is None else f"{r['green_share']:.1%}"
        co2 = "-" if r["carbon_kg"] is None else f"{r['carbon_kg']:.2f}"
        est = "-" if r["estimated_share"] is None else f"{r['estimated_share']:.1%}"
        # The host share: measured (RAPL) or estimated, else unknown for part of the job's time.
        host = f"unknown {r['host_unknown_share']:.0%} of the time" if r["host_unknown_share"] else "ok"
        # Job and tenant names come from the ledger (schedulers, users): escaped before they are measured,
        # so that the columns align as the line is shown (a name's width in terminal columns, not characters).
        return [shown(r["tenant"]), shown(job), f"{r['gpu_hours']:.2f}", _kwh(r["gpu_energy_wh"]),
                _kwh(r["it_energy_wh"]), _kwh(r["facility_energy_wh"]), pue, comp, est, green, co2, host]

    jobs, tenants = [row(r, r["job"]) for r in doc["jobs"]], [row(r, f"({r['jobs']} jobs)") for r in doc["tenants"]]
    table = columns([list(_HEADS), *jobs, *tenants], _RIGHT, _LEAST)
    lines = [f"{doc['site']}: jobs {doc['period_start']} .. {doc['period_end']}", *table[:1 + len(jobs)],
             "per tenant:", *table[1 + len(jobs):]]
    u, i = doc["unattributed"], doc["identities"]
    lines.append(f"unattributed: IT {_kwh(u['it_energy_wh'])} kWh, facility-inclusive {_kwh(u['facility_energy_wh'])} kWh")
    lines.append(f"identities over {i['cells_known']} of {i['cells']} cells: jobs {_kwh(i['jobs_it_energy_wh'])} + "
                 f"unattributed {_kwh(i['unattributed_it_energy_wh'])} = measured IT {_kwh(i['measured_it_energy_wh'])} "
                 f"kWh; jobs {_kwh(i['jobs_facility_energy_wh'])} + unattributed "
                 f"{_kwh(i['unattributed_facility_energy_wh'])} = E_DC {_kwh(i['e_dc_wh'])} kWh")
    left_out = doc["ledger_records_left_out"]
    if left_out:
        lines.append("ledger records left out: " + ", ".join(f"{n} {why}" for why, n in left_out.items()))
    for s in doc["unattributed_processes"]:
        lines.append(f"GPU processes of no job on {s['node']}: up to {s['max_processes']} at once, in {s['intervals']} "
                     f"ledger intervals ({s['process_intervals']} process-intervals)")
    lines += [f"warning: {w}" for w in doc["warnings"]]
    # Job and tenant names come from the ledger (schedulers, users): each line stays one line.
    return "\n".join(shown(line) for line in lines) + "\n"


def jobs_main(args: argparse.Namespace) -> int:
    doc = compute(args)
    text = (json.dumps(doc, indent=2) + "\n" if args.json else _csv(doc) if args.csv else _text(doc))
    if args.csv:
        # The CSV has rows, not remarks: what the table and the JSON say beside the figures (records left
        # out, a tenant with no record, no emission factor) goes to standard error.
        for warning in doc["warnings"]:
            print(f"warning: {shown(warning)}", file=sys.stderr)
    if args.output:
        from puewatch.report.cli import _emit

        _emit(text, args.output)
    else:
        sys.stdout.write(text)
    return 0
