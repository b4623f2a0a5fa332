"""`puewatch report`, `puewatch export`, `puewatch recompute`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from puewatch.errors import UserError
from puewatch.core.timefmt import NS, Calendar
from puewatch.report.engine import ReportOptions, build_report, compute_report
from puewatch.report.render import render

YEAR_S = 366 * 86_400  # the longest --max-gap: a year (core.timefmt keeps a year free at either end)


def _period(args: argparse.Namespace, calendar: Calendar, required: bool = True) -> tuple[int, int] | None:
    """--from and --to, a date being the site's midnight (`calendar`: its time zone)."""
    if args.start is None and args.end is None and not required:
        return None
    if args.start is None or args.end is None:
        raise UserError("give both --from and --to (e.g. --from 2025-01-01 --to 2026-01-01)")
    start, end = _time("--from", args.start, calendar), _time("--to", args.end, calendar)
    if end <= start:
        raise UserError(f"--to ({args.end}) must be after --from ({args.start})")
    return start, end


def _time(option: str, text: str, calendar: Calendar) -> int:
    try:
        return calendar.parse_time(text)
    except ValueError as exc:
        # Name the option and the forms it takes: `03/12/2026` is 3 December in one country, 12 March in another.
        raise UserError(f"{option} {text!r}: expected a date (2026-12-03, from midnight in the site's time zone, "
                        f"{calendar.zone}) or an RFC 3339 time (2026-12-03T10:00:00Z) ({exc})") from None


def _max_gap_ns(args: argparse.Namespace) -> int:
    if not 0 < args.max_gap_s <= YEAR_S:
        raise UserError(f"--max-gap must be positive and at most a year ({YEAR_S} s), got {args.max_gap_s}")
    return int(args.max_gap_s * NS)


def _emit(text: str, output: str | None) -> None:
    if output and output != "-":  # `-o -` is standard output, as for `sign` (it wrote a file named "-")
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{output}: cannot write: {exc.strerror}") from None
    else:
        sys.stdout.write(text)


@contextmanager
def _store_readings(args: argparse.Namespace, what: str = "report") -> Iterator[tuple[Any, Any, dict, Any, int, int]]:
    """(site, readings, source, the store's data range, start, end): the period of --from and --to in the
    site's calendar; the readings are read from the store meter by meter as they are used, with a margin
    of one --max-gap on each side.

    `NoData` (exit status 1, naming the store's data range) when no meter has a reading in the period.
    """
    from puewatch.collector import config as collector_config
    from puewatch.report.sources import check_period_has_data, data_range, open_store, resolve_snmp_wraps, stream_store

    conf = collector_config.load(args.config)
    site = conf.site_model()
    start, end = _period(args, site.calendar)
    margin = _max_gap_ns(args)
    resolve_snmp_wraps(site, conf.snmp.devices, conf.snmp.profile_dirs, str(args.config))
    reader, source = open_store(conf, args.store, database=args.database, user=args.user,
                                password_file=args.password_file, token_file=args.token_file)
    try:
        span = data_range(reader, site)
        check_period_has_data(span, site, start, end, what)
        # A margin of one max gap on each side: the intervals that cross the period's edges.
        with stream_store(reader, site, start - margin, end + margin, period=(start, end)) as readings:
            yield site, readings, source, span, start, end
    finally:
        reader.close()


def _output(site: Any, readings: Mapping, start: int, end: int, args: argparse.Namespace, source: dict,
            span: tuple[int, int] | None, holder: str = "the store") -> int:
    fmt = "json" if getattr(args, "json", False) else args.format
    key = getattr(args, "sign", None)
    if key and fmt != "json":
        raise UserError("--sign signs the JSON report: add --json (or --format json)")
    carbon_data = None
    if getattr(args, "carbon", None):
        from puewatch.jobs.carbon import carbon_row, load_carbon, report_years

        carbon_data = load_carbon(args.carbon, site.calendar)  # a bad file fails before the report is computed
    report = build_report(site, readings, start, end, ReportOptions(_max_gap_ns(args), source), figures=fmt == "html")
    if all(m.energy_wh is None for m in report.meters):
        from puewatch.report.sources import no_energy

        raise no_energy(span, start, end, "report", holder)
    document = report.to_dict()
    if carbon_data is not None:
        renewable = [m.meter for m in report.meters if m.role == "renewable"]
        years = report_years(document, report.renewable_monthly_wh if renewable else None)
        carbon = carbon_row(report.facility_energy_wh, report.it_energy_wh, report.ref, renewable, years, carbon_data,
                            start, end)
        # Added fields (docs/report-schema.md), before signing so the signature covers them.
        document.update(carbon.to_dict())
    if key:
        from puewatch.signing import sign_report

        document = sign_report(document, key)
    _emit(render(document, fmt, target=getattr(args, "target", None), figures=report.figures), args.output)
    return 0


def report_main(args: argparse.Namespace) -> int:
    with _store_readings(args) as (site, readings, source, span, start, end):
        return _output(site, readings, start, end, args, source, span)


def store_report(args: argparse.Namespace) -> dict[str, Any]:
    """The report `puewatch report` with these (parsed) arguments computes, as a dict: for a
    program that runs the command in-process and needs its figures (the demo's summary)."""
    with _store_readings(args) as (site, readings, source, _span, start, end):
        return compute_report(site, readings, start, end, ReportOptions(_max_gap_ns(args), source))


def export_main(args: argparse.Namespace) -> int:
    from puewatch.report.sources import write_csv

    from puewatch.report.sources import no_energy

    with _store_readings(args, "export") as (_site, readings, _source, span, start, end):
        if args.output and args.output != "-":  # `-o -`: standard output (it wrote a file named "-": store audit)
            out = Path(args.output)
            if out.exists() and not out.is_file():
                # A pipe or a device (/dev/stdout): written through, never replaced by a file (found by the export
                # audit: a FIFO's reader got nothing, and /dev/null would have been replaced).
                try:
                    with open(out, "w", encoding="utf-8", newline="") as f:
                        rows = write_csv(readings, f)
                except OSError as exc:
                    raise UserError(f"{args.output}: cannot write: {exc.strerror}") from None
            else:
                # Written beside and renamed into place: a failed export leaves no file that looks like one. A
                # symbolic link's target is written, not the link replaced.
                out = out.resolve() if out.is_symlink() else out
                part = out.with_name(f".{out.name}.part")
                try:
                    try:
                        with open(part, "w", encoding="utf-8", newline="") as f:
                            rows = write_csv(readings, f)
                        if rows == 0:
                            raise no_energy(span, start, end, "export")
                        os.replace(part, out)
                    finally:
                        part.unlink(missing_ok=True)
                except OSError as exc:
                    raise UserError(f"{args.output}: cannot write {part.name} beside it to rename into place: "
                                    f"{exc.strerror}") from None
            if rows == 0:
                raise no_energy(span, start, end, "export")
            print(f"{rows} readings of {len(readings)} meters written to {args.output}", file=sys.stderr)
        else:
            if write_csv(readings, sys.stdout) == 0:
                raise no_energy(span, start, end, "export")
    return 0


def recompute_main(args: argparse.Namespace) -> int:
    from puewatch.report.sources import check_period_has_data, load_site, read_csv, readings_range, span_days, window

    site = load_site(args.site)
    readings, source = read_csv(args.readings, site)
    period = _period(args, site.calendar, required=False)
    start, end = period if period else span_days(readings, _max_gap_ns(args), site.calendar)
    check_period_has_data(readings_range(readings), site, start, end, "report", f"{args.readings}")
    # Only what `report` reads for the period (its margin of one max gap on each side, and a
    # register's readings just beyond where the period needs them): every row is read and checked.
    margin = _max_gap_ns(args)
    return _output(site, window(readings, start - margin, end + margin, (start, end)), start, end, args, source,
                   readings_range(readings), f"{args.readings}")
