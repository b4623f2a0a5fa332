"""The report's faces: a terminal table (rich), JSON (the schema), CSV (monthly and daily tables), HTML.

The HTML page is self-contained (figures are inline SVG made with matplotlib), so it can be
mailed or archived with the report and opened offline.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from puewatch.core.numbers import percent_down
from puewatch.core.timefmt import calendar_of
from puewatch.terminal import in_page

if TYPE_CHECKING:
    from puewatch.report.model import ReportFigures

__all__ = ["carbon_rows", "carbon_unknown", "render", "to_csv", "to_html", "to_json", "to_table"]


def _f(x: float | None, fmt: str = "{:.3f}", unit: str = "") -> str:
    return "n/a" if x is None else fmt.format(x) + unit


def _mwh(x: float | None) -> str:
    if x is not None and abs(x) < 1e6:
        return _f(x / 1e3, "{:,.3f}", " kWh")
    return _f(None if x is None else x / 1e6, "{:,.3f}", " MWh")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else percent_down(x) + " %"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


# The CSV's columns after `table`: a period's; then the green share and carbon of the whole period
# (`report --carbon`), filled on the `period` row only (green energy is not split by month or day).
_CSV_COLS = ("period_start", "period_end", "pue", "facility_energy_wh", "it_energy_wh", "completeness", "pue_joint",
             "facility_energy_joint_wh", "it_energy_joint_wh")
_CSV_CARBON = ("green_energy_wh", "green_share", "carbon_kg", "cue_kg_per_kwh", "carbon_unknown")


def _cell(value: Any) -> str:
    return "" if value is None else (repr(value) if isinstance(value, float) else str(value))


def to_csv(report: dict[str, Any]) -> str:
    """The whole period (`period`), then the monthly and daily tables, one row per period, with a
    `table` column saying which. Without `--carbon`, `carbon_unknown` says so."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("table", *_CSV_COLS, *_CSV_CARBON))
    carbon = {**report, "carbon_unknown": carbon_unknown(report)}
    w.writerow(("period", *(_cell(report.get(c)) for c in _CSV_COLS), *(_cell(carbon.get(c)) for c in _CSV_CARBON)))
    for table in ("monthly", "daily"):
        for row in report[table]:
            w.writerow((table, *(_cell(row[c]) for c in _CSV_COLS), *([""] * len(_CSV_CARBON))))
    return out.getvalue()


def _calendar(report: dict[str, Any]) -> str:
    """The time zone whose midnights cut the report's days, months and year (its `timezone`)."""
    return f"{report.get('timezone', 'UTC')} (its midnights begin the days, months and year; times are UTC)"


def carbon_unknown(report: dict[str, Any]) -> str | None:
    """Why the report's carbon is not known (None when it is): the report's own reason, or that it
    was made without a carbon data file."""
    if "carbon_kg" not in report:
        from puewatch.jobs.carbon import NO_CARBON_FILE

        return NO_CARBON_FILE
    return report.get("carbon_unknown")


def carbon_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The green share, carbon and CUE as (what, value) rows, with the source of every figure: one
    rendering for the terminal and the HTML page, from the report's fields (`CarbonRow`)."""
    why = carbon_unknown(report)
    if "carbon_kg" not in report:
        return [("green share, carbon, CUE", f"not known: {why}")]
    rows = []
    share = report["green_share"]
    rows.append(("green energy", f"not known: {why}" if share is None
                 else f"{_mwh(report['green_energy_wh'])} ({_pct(share)} of E_DC)"))
    meters = report.get("renewable_meters") or []
    rows.append(("  from renewable meters", (", ".join(meters) + ": " + (
        _mwh(report["renewable_meters_wh"]) + " (REF x E_DC)" if report["renewable_meters_wh"] is not None
        else "not known (counted as no green energy)")) if meters else "none (the site has no renewable meter)"))
    for g in report.get("green_entries") or []:
        rows.append((f"  {g['kind']} {g['id']}",
                     f"{_mwh(g['energy_in_period_wh'])} in the period, of {g['mwh']:,.3f} MWh over "
                     f"{g['start']} .. {g['end']}" + (f"; source: {g['source']}" if g["source"] else "")))
    if not report.get("green_entries"):
        rows.append(("  certificates and PPAs", "none in the period"))
    if report.get("green_capped_wh"):
        rows.append(("  above E_DC, not counted", _mwh(report["green_capped_wh"])))
    region = report.get("carbon_region") or "(none)"
    for f in report.get("emission_factors") or []:
        rows.append((f"grid emission factor {f['region']} {f['year']}",
                     f"{f['kg_co2e_per_kwh']:.4g} kg CO2e/kWh on {_mwh(f['facility_energy_wh'] - f['green_energy_wh'])}"
                     f" from the grid (E_DC {_mwh(f['facility_energy_wh'])} less green "
                     f"{_mwh(f['green_energy_wh'])}) in {f['year']}; source: {f['source']}"))
    if not report.get("emission_factors"):
        rows.append(("grid emission factor", f"none used (region {region})"))
    rows.append(("carbon", f"not known: {why}" if report["carbon_kg"] is None
                 else f"{report['carbon_kg']:,.1f} kg CO2e (each year's grid energy x its factor)"))
    cue = report["cue_kg_per_kwh"]
    rows.append(("CUE (ISO/IEC 30134-8)", f"not known: {report.get('cue_unknown') or why}" if cue is None
                 else f"{cue:.4f} kg CO2e/kWh of IT energy"))
    return rows


def to_table(report: dict[str, Any], width: int | None = None) -> str:
    """A terminal summary (rich tables rendered to text)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), width=width or 110, force_terminal=False, color_system=None)
    pue = report["pue"]
    unc = report["pue_uncertainty"]
    head = Table(title=f"{report['site']}: {report['label']}", show_header=False)
    head.add_column("what")
    head.add_column("value")
    head.add_row("PUE", (_f(pue) + (f" ± {unc:.3f}" if unc is not None else "")) + f"  ({report['label']}, category {report['category']})")
    ju = report.get("pue_joint_uncertainty")
    head.add_row("PUE, jointly observed time", _f(report.get("pue_joint")) + (f" ± {ju:.3f}" if ju is not None else "")
                 + f"  (E_DC {_mwh(report.get('facility_energy_joint_wh'))}, E_IT {_mwh(report.get('it_energy_joint_wh'))})")
    head.add_row("period", f"{report['period_start']} .. {report['period_end']}" + (" (annual)" if report["annual"] else " (interim)"))
    head.add_row("calendar", _calendar(report))
    head.add_row("facility energy (E_DC)", _mwh(report["facility_energy_wh"]))
    head.add_row("IT energy (E_IT)", _mwh(report["it_energy_wh"]))
    head.add_row("completeness", _pct(report["completeness"]))
    head.add_row("estimated share", _pct(report["estimated_share"]))
    for key, name in (("clf", "CLF"), ("plf", "PLF"), ("erf", "ERF"), ("ref", "REF"), ("cop", "cooling COP")):
        head.add_row(name, _f(report.get(key)))
    head.add_row("WUE", _f(report["wue"], "{:.3f}", " L/kWh"))
    console.print(head)
    c = Table(title="green share and carbon", show_header=False)
    c.add_column("what")
    c.add_column("value")
    for what, value in carbon_rows(report):
        c.add_row(what, value)
    console.print(c)
    if report["zones"]:
        z = Table(title="partial PUE per zone")
        for c in ("zone", "pPUE", "pPUE joint", "boundary", "IT", "completeness"):
            z.add_column(c)
        for row in report["zones"]:
            z.add_row(row["zone"], _f(row["ppue"]), _f(row.get("ppue_joint")), _mwh(row["boundary_energy_wh"]),
                      _mwh(row["it_energy_wh"]), _pct(row["completeness"]))
        console.print(z)
    m = Table(title="meters")
    for c in ("meter", "role", "method", "energy", "estimated", "completeness", "gaps", "resets"):
        m.add_column(c)
    for row in report["meters"]:
        m.add_row(row["meter"], row["role"] + (f" ({row['point']})" if row["point"] else ""), row["method"] or "no data",
                  _mwh(row["energy_wh"]), _mwh(row["estimated_wh"]), _pct(row["completeness"]), str(len(row["gaps"])),
                  str(row["resets"]))
    console.print(m)
    mo = Table(title="monthly")
    for c in ("month", "PUE", "PUE joint", "facility", "IT", "completeness"):
        mo.add_column(c)
    for row in report["monthly"]:
        mo.add_row(calendar_of(report).name(row["period_start"], "month"), _f(row["pue"]), _f(row.get("pue_joint")), _mwh(row["facility_energy_wh"]), _mwh(row["it_energy_wh"]),
                   _pct(row["completeness"]))
    console.print(mo)
    for w in report.get("warnings") or []:
        console.print(f"warning: {w}", highlight=False, markup=False)
    return console.file.getvalue()


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figures(report: dict[str, Any], figures: ReportFigures | None, target: float | None) -> list[tuple[str, str]]:
    """(caption, inline SVG) of each figure, in bins that suit the period (`figures.step`): PUE and
    PUE over the jointly observed time, energy by role, and each meter's completeness."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    # Names are text, never formulas: a meter named "crac-a$x$$\\foo$" stopped the page with a traceback, and
    # "ups-a$\\mathrm{PASS}$" was drawn as "ups-aPASS" beside the table's raw name (found by the HTML audit).
    matplotlib.rcParams["text.parse_math"] = False
    if figures is None:  # what the JSON holds: the daily rows
        edges = [r["period_start"] for r in report["daily"]] + [report["period_end"]]
        edge_t = np.array([np.datetime64(t[:19], "s") for t in edges])
        step = "1 day"
        pue = [r["pue"] for r in report["daily"]]
        pue_joint = [r.get("pue_joint") for r in report["daily"]]
        roles: dict[str, list[float | None]] = {}
        completeness: dict[str, list[float]] = {}
    else:
        edge_t = np.array(figures.edges_ns, dtype="datetime64[ns]")
        step, pue, pue_joint = figures.step, figures.pue, figures.pue_joint
        roles, completeness = figures.roles, figures.completeness
    mid = edge_t[:-1] + (edge_t[1:] - edge_t[:-1]) / 2  # a bin's value is drawn at its middle
    few = mid.size <= 60  # markers where the points can be told apart

    def values(xs: list[float | None], scale: float = 1.0) -> np.ndarray:
        return np.array([np.nan if x is None else x / scale for x in xs], dtype=float)

    def time_axis(ax: Any) -> None:
        locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlim(edge_t[0], edge_t[-1])
        ax.set_xlabel("time (UTC)")
        ax.grid(True, alpha=0.3)

    def no_data(ax: Any, what: str) -> None:
        ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="0.4")

    out = []
    marker = {"marker": "o", "markersize": 3.5} if few else {}
    fig, ax = plt.subplots(figsize=(10, 3.4))
    p, pj = values(pue), values(pue_joint)
    # Where every meter was observed all the time the two are equal: the joint one is drawn thinner,
    # with smaller markers, on top, so both stay visible.
    ax.plot(mid, p, lw=2.6, label="PUE (E_DC / E_IT of the bin)", **(dict(marker, markersize=7) if few else {}))
    ax.plot(mid, pj, lw=1.0, ls="--", label="PUE, jointly observed time", **(dict(marker, markersize=3) if few else {}))
    if target is not None:
        ax.axhline(target, color="tab:red", ls=":", lw=1.2, label=f"target {target:g}")
    if np.isnan(p).all() and np.isnan(pj).all():
        no_data(ax, "no PUE in any bin (no facility or IT energy)")
    ax.set_ylabel("PUE")
    ax.legend(loc="best", fontsize="small")
    time_axis(ax)
    out.append((f"PUE per {step}", _svg(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.4))
    # Each bin's energy over its own length: the mean power, so that a bin cut short by the period's end
    # (8 s of a 10 s bin) draws no dip that an auditor would read as a drop in load.
    hours = (edge_t[1:] - edge_t[:-1]) / np.timedelta64(3600, "s")
    power = {role: values(vs) / hours for role, vs in roles.items()}
    biggest = max((float(np.nanmax(np.abs(p))) for p in power.values() if not np.isnan(p).all()), default=0.0)
    unit, scale = ("MW", 1e6) if biggest >= 1e6 else ("kW", 1e3) if biggest >= 1e3 else ("W", 1.0)
    for role, p in power.items():
        ax.plot(mid, p / scale, lw=1.2, label=role, **marker)
    ax.set_ylabel(f"mean power, {unit}")
    if roles:
        ax.legend(loc="best", fontsize="small")
    else:
        no_data(ax, "no energy by role given")
    time_axis(ax)
    out.append((f"Mean power per {step} by role (each bin's energy over its length)", _svg(fig)))
    plt.close(fig)

    if completeness:
        names = list(completeness)
        cov = np.array([completeness[n] for n in names], dtype=float)
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(names) + 1.6))
        x0, x1 = mdates.date2num(edge_t[0]), mdates.date2num(edge_t[-1])
        image = ax.imshow(cov, aspect="auto", interpolation="nearest", cmap="RdYlGn", vmin=0, vmax=1,
                          extent=(x0, x1, len(names) - 0.5, -0.5))
        ax.set_yticks(range(len(names)), names, fontsize="small")
        ax.xaxis_date()
        time_axis(ax)
        ax.grid(False)
        bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
        bar.set_label("share of the bin observed")
        bar.set_ticks([0, 0.25, 0.5, 0.75, 1], labels=["0 %", "25 %", "50 %", "75 %", "100 %"])
        out.append((f"Completeness per meter and {step} (green: observed all the bin; red: not at all)", _svg(fig)))
        plt.close(fig)
    return out


def _html_table(head: list[str], rows: list[list[str]], num_from: int = 1, caption: str = "",
                table_id: str = "") -> str:
    """An HTML table, every cell escaped; columns from `num_from` on right-aligned (numbers)."""
    e = in_page
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    ths = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{e(c)}</td>' if j >= num_from else f"<td>{e(c)}</td>"
                         for j, c in enumerate(row)) + "</tr>"
        for row in rows)
    tid = f' id="{e(table_id)}"' if table_id else ""
    return f"<table{tid}>{cap}<thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>"


def _summary_html(report: dict[str, Any]) -> str:
    """The terminal summary's tables as HTML tables."""
    unc, ju = report["pue_uncertainty"], report.get("pue_joint_uncertainty")
    rows = [
        ["PUE", _f(report["pue"]) + (f" ± {unc:.3f}" if unc is not None else "")
         + f" ({report['label']}, category {report['category']})"],
        ["PUE, jointly observed time", _f(report.get("pue_joint")) + (f" ± {ju:.3f}" if ju is not None else "")
         + f" (E_DC {_mwh(report.get('facility_energy_joint_wh'))}, E_IT {_mwh(report.get('it_energy_joint_wh'))})"],
        ["period", f"{report['period_start']} .. {report['period_end']}" + (" (annual)" if report["annual"] else " (interim)")],
        ["calendar", _calendar(report)],
        ["facility energy (E_DC)", _mwh(report["facility_energy_wh"])],
        ["IT energy (E_IT)", _mwh(report["it_energy_wh"])],
        ["completeness", _pct(report["completeness"])],
        ["estimated share", _pct(report["estimated_share"])],
        *[[name, _f(report.get(key))] for key, name in (("clf", "CLF"), ("plf", "PLF"), ("erf", "ERF"), ("ref", "REF"),
                                                         ("cop", "cooling COP"))],
        ["WUE", _f(report["wue"], "{:.3f}", " L/kWh")],
    ]
    parts = [_html_table(["figure", "value"], rows, num_from=2, caption="summary"),
             _html_table(["figure", "value"], [list(r) for r in carbon_rows(report)], num_from=2,
                         caption="green share and carbon", table_id="carbon")]
    if report["zones"]:
        parts.append(_html_table(
            ["zone", "pPUE", "pPUE joint", "boundary", "IT", "completeness"],
            [[z["zone"], _f(z["ppue"]), _f(z.get("ppue_joint")), _mwh(z["boundary_energy_wh"]), _mwh(z["it_energy_wh"]),
              _pct(z["completeness"])] for z in report["zones"]], caption="partial PUE per zone"))
    parts.append(_html_table(
        ["meter", "role", "method", "energy", "estimated", "completeness", "gaps", "resets"],
        [[m["meter"], m["role"] + (f" ({m['point']})" if m["point"] else ""), m["method"] or "no data", _mwh(m["energy_wh"]),
          _mwh(m["estimated_wh"]), _pct(m["completeness"]), str(len(m["gaps"])), str(m["resets"])]
         for m in report["meters"]], num_from=3, caption="meters"))
    parts.append(_html_table(
        ["month", "PUE", "PUE joint", "facility", "IT", "completeness"],
        [[calendar_of(report).name(r["period_start"], "month"), _f(r["pue"]), _f(r.get("pue_joint")), _mwh(r["facility_energy_wh"]),
          _mwh(r["it_energy_wh"]), _pct(r["completeness"])] for r in report["monthly"]], caption="monthly"))
    return "\n".join(parts)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:0 1em;color:#222}"
    "figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{font-weight:600}"
    "table{border-collapse:collapse;margin:1em 0}caption{text-align:left;font-weight:600;padding:.3em 0}"
    "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left}th{background:#eee}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}.headline{font-size:1.15em}"
)


def _carbon_headline(report: dict[str, Any]) -> str:
    """Green share and CUE under the PUE headline; where unknown, why (the table has the sources)."""
    e = in_page
    why = carbon_unknown(report)
    if "carbon_kg" not in report:
        return f'<p class="headline">Green share and CUE <b id="cue">not known</b>: {e(why or "")}</p>'
    share = report["green_share"]
    cue = report["cue_kg_per_kwh"]
    return (f'<p class="headline">Green share <b id="green_share">{e(_pct(share)) if share is not None else "not known"}'
            f'</b>; CUE <b id="cue">{"not known" if cue is None else f"{cue:.4f}"}</b>'
            + (" kg CO2e/kWh" if cue is not None else f": {e(report.get('cue_unknown') or why or '')}") + "</p>")


def to_html(report: dict[str, Any], *, target: float | None = None, figures: ReportFigures | None = None) -> str:
    """A self-contained page (inline CSS and SVG, no scripts, nothing fetched): the headline with both
    PUE measures, the figures, the summary as tables.

    `figures` carries what the JSON does not (`build_report(..., figures=True)`): the figures' bins
    (finer than a day for a short period), energy by role and each meter's completeness; without it
    the PUE figure shows the daily rows and the others say so or are left out.
    """
    svgs = _figures(report, figures, target)
    e = in_page
    unc, ju = report["pue_uncertainty"], report.get("pue_joint_uncertainty")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(report['site'])} {e(report['label'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(report['site'])}: {e(report['label'])}</h1>",
        f'<p class="headline">PUE <b id="pue">{e(_f(report["pue"]))}</b>'
        + (f" &plusmn; {unc:.3f}" if unc is not None else "")
        + f'; PUE over the jointly observed time <b id="pue_joint">{e(_f(report.get("pue_joint")))}</b>'
        + (f" &plusmn; {ju:.3f}" if ju is not None else "")
        + f"; category {report['category']}, completeness {e(_pct(report['completeness']))}, "
        f"estimated share {e(_pct(report['estimated_share']))}"
        + (f"; target {target:g}" if target is not None else "") + "</p>",
        _carbon_headline(report),
    ]
    if report.get("warnings"):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in report["warnings"]) + "</ul>")
    for title, svg in svgs:
        parts.append(f"<figure><figcaption>{e(title)}</figcaption>{svg}</figure>")
    parts.append(f"<h2>Summary</h2>{_summary_html(report)}")
    parts.append(f"<p>Generated {e(report['generated_at'])} by {e(report['generator'])}; "
                 f"source {e(json.dumps(report['source'], ensure_ascii=False))}.</p></body></html>\n")
    return "\n".join(parts)


def render(report: dict[str, Any], fmt: str, *, target: float | None = None,
           figures: ReportFigures | None = None) -> str:
    """`report` is the report's JSON document (`Report.to_dict()`, signed or not)."""
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report, target=target, figures=figures)
    return to_table(report)
