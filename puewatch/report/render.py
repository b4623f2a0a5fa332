"""The report's faces: a terminal table (rich), JSON (the schema), CSV (monthly and daily tables), HTML.

The HTML page is self-contained (figures are inline SVG made with matplotlib), so it can be
mailed or archived with the report and opened offline.
"""

from __future__ import annotations

import csv
import html
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from puewatch.report.model import ReportFigures

__all__ = ["render", "to_csv", "to_html", "to_json", "to_table"]


def _f(x: float | None, fmt: str = "{:.3f}", unit: str = "") -> str:
    return "n/a" if x is None else fmt.format(x) + unit


def _mwh(x: float | None) -> str:
    if x is not None and abs(x) < 1e6:
        return _f(x / 1e3, "{:,.3f}", " kWh")
    return _f(None if x is None else x / 1e6, "{:,.3f}", " MWh")


def _pct(x: float | None) -> str:
    return _f(None if x is None else 100 * x, "{:.1f}", " %")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """The monthly and daily tables, one row per period, with a `table` column saying which."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    cols = ("period_start", "period_end", "pue", "facility_energy_wh", "it_energy_wh", "completeness", "pue_joint",
            "facility_energy_joint_wh", "it_energy_joint_wh")
    w.writerow(("table", *cols))
    for table in ("monthly", "daily"):
        for row in report[table]:
            w.writerow((table, *("" if row[c] is None else (repr(row[c]) if isinstance(row[c], float) else row[c])
                                 for c in cols)))
    return out.getvalue()


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
    head.add_row("facility energy (E_DC)", _mwh(report["facility_energy_wh"]))
    head.add_row("IT energy (E_IT)", _mwh(report["it_energy_wh"]))
    head.add_row("completeness", _pct(report["completeness"]))
    head.add_row("estimated share", _pct(report["estimated_share"]))
    for key, name in (("clf", "CLF"), ("plf", "PLF"), ("erf", "ERF"), ("ref", "REF"), ("cop", "cooling COP")):
        head.add_row(name, _f(report.get(key)))
    head.add_row("WUE", _f(report["wue"], "{:.3f}", " L/kWh"))
    console.print(head)
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
        mo.add_row(row["period_start"][:7], _f(row["pue"]), _f(row.get("pue_joint")), _mwh(row["facility_energy_wh"]), _mwh(row["it_energy_wh"]),
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


def _figures(report: dict[str, Any], daily_roles: dict[str, list[float | None]], target: float | None) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    days = np.array([np.datetime64(r["period_start"][:19]) for r in report["daily"]])
    out = []

    fig, ax = plt.subplots(figsize=(10, 3.2))
    pue = np.array([np.nan if r["pue"] is None else r["pue"] for r in report["daily"]])
    ax.plot(days, pue, lw=1.2, label="daily PUE")
    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", lw=1, label=f"target {target:g}")
    ax.set_ylabel("PUE")
    ax.legend(loc="upper right")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    out.append(("PUE per day", _svg(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.2))
    for role, values in daily_roles.items():
        ax.plot(days, [np.nan if v is None else v / 1e3 for v in values], lw=1, label=role)
    ax.set_ylabel("kWh per day")
    if daily_roles:
        ax.legend(loc="upper right", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no daily energy by role given", transform=ax.transAxes, ha="center", va="center")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    out.append(("Energy per day by role", _svg(fig)))
    plt.close(fig)

    meters = report["meters"]
    cov = np.array([row["_daily_completeness"] for row in meters]) if meters and "_daily_completeness" in meters[0] else None
    if cov is not None:
        fig, ax = plt.subplots(figsize=(10, 0.35 * len(meters) + 1.2))
        ax.imshow(cov, aspect="auto", interpolation="nearest", cmap="RdYlGn", vmin=0, vmax=1)
        ax.set_yticks(range(len(meters)), [row["meter"] for row in meters], fontsize="small")
        ax.set_xlabel("day of the period")
        out.append(("Completeness (meters x days; green = complete)", _svg(fig)))
        plt.close(fig)
    return out


def to_html(report: dict[str, Any], *, target: float | None = None, figures: ReportFigures | None = None) -> str:
    """A self-contained page: the summary table, and figures as inline SVG.

    `figures` carries what the JSON does not (`build_report(..., figures=True)`): daily energy
    by role and each meter's daily completeness; without it those figures say so or are left out.
    """
    completeness = figures.daily_completeness if figures else {}
    meters = [dict(row, _daily_completeness=completeness.get(row["meter"])) for row in report["meters"]]
    if any(row["_daily_completeness"] is None for row in meters):
        meters = [{k: v for k, v in row.items() if k != "_daily_completeness"} for row in meters]
    svgs = _figures(dict(report, meters=meters), figures.daily_roles if figures else {}, target)
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(report['site'])} {e(report['label'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{font-size:12px}"
        "figure{margin:1em 0}</style></head><body>",
        f"<h1>{e(report['site'])}: {e(report['label'])}</h1>",
        f"<p>PUE <b>{e(_f(report['pue']))}</b>"
        + (f" &plusmn; {report['pue_uncertainty']:.3f}" if report["pue_uncertainty"] is not None else "")
        + f", category {report['category']}, completeness {e(_pct(report['completeness']))}, "
        f"estimated share {e(_pct(report['estimated_share']))}"
        + (f"; target {target:g}" if target is not None else "") + "</p>",
    ]
    if report.get("warnings"):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in report["warnings"]) + "</ul>")
    for title, svg in svgs:
        parts.append(f"<figure><figcaption>{e(title)}</figcaption>{svg}</figure>")
    parts.append(f"<h2>Summary</h2><pre>{e(to_table(report))}</pre>")
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
