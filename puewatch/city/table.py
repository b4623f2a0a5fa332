"""`puewatch city`: one table over many sites' reports, and the city's energy-weighted PUE.

For each report: whose it is, whether its signature is valid, its period and
category, its PUE and completeness, the verdict of every rule and overall.
A site passes when every rule passes and its signature is not invalid (a report
changed after signing is never counted as met, whatever the targets say).

The city's PUE is Σ facility energy / Σ IT energy, a ratio of energies like
every PUE, never a mean of the sites' PUEs (a small site would weigh as much as
a large one). It is given twice:

- over all reports that state both energies;
- over the reports whose signature is valid (only with --pubkeys: without keys
  nothing is verified, and this figure is null).

Every report left out of either sum is listed with the reason. `max_city_pue`
is checked on the validly signed figure when --pubkeys is given, else on the
figure over all reports (the evidence says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from puewatch.city.check import PUE_ENERGIES, RuleResult, check_report, numeric_rule
from puewatch.city.reportfile import ReportError, is_number, parse_report, read_text, report_annual, report_period
from puewatch.city.targets import Targets, resolve_targets
from puewatch.core import floors
from puewatch.core.numbers import percent_down
from puewatch.core.site import site_key
from puewatch.signing import Verification, signature_status
from puewatch.spoolfiles import write_file
from puewatch.terminal import in_page, shown


@dataclass
class SiteRow:
    """One report's line in the city table."""

    path: str
    report: dict[str, Any]
    signature: Verification
    results: list[RuleResult]
    passed: bool
    reasons: list[str]

    @property
    def site(self) -> str:
        return self.report["site"]

    def to_json(self) -> dict[str, Any]:
        r = self.report
        return {
            "report": self.path,
            "site": r["site"],
            "signature": {"status": self.signature.status, "key_id": self.signature.key_id, "reason": self.signature.reason},
            "period_start": r["period_start"],
            "period_end": r["period_end"],
            "annual": r["annual"],
            "label": r["label"],
            "category": r["category"],
            "pue": r["pue"],
            "completeness": r["completeness"],
            "facility_energy_wh": r["facility_energy_wh"],
            "it_energy_wh": r["it_energy_wh"],
            "rules": [x.to_json() for x in self.results],
            "passed": self.passed,
            "reasons": self.reasons,
        }


@dataclass
class WeightedPue:
    """Σ facility energy / Σ IT energy over the included reports; every excluded one with its reason."""

    basis: str
    pue: float | None
    facility_energy_wh: float
    it_energy_wh: float
    included: list[str] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "pue": self.pue,
            "facility_energy_wh": self.facility_energy_wh,
            "it_energy_wh": self.it_energy_wh,
            "included": self.included,
            "excluded": self.excluded,
        }


@dataclass
class CityResult:
    targets: Targets
    rows: list[SiteRow]
    weighted_all: WeightedPue
    weighted_valid: WeightedPue | None
    city_results: list[RuleResult]
    passed: bool
    warnings: list[str]
    verified: bool
    unread: list[dict[str, str]] = field(default_factory=list)  # files that are no valid report: each fails the city

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": self.targets.to_json(),
            "signatures_verified": self.verified,
            "sites": [{**r.to_json(), "kind": _kind(r.report), "pue_basis": self.targets.pue_basis,
                       "pue_judged": r.report.get(self.targets.pue_basis)} for r in self.rows],
            "city": {
                "weighted_pue_all": self.weighted_all.to_json(),
                "weighted_pue_valid": self.weighted_valid.to_json() if self.weighted_valid else None,
                "rules": [r.to_json() for r in self.city_results],
            },
            "passed": self.passed,
            "warnings": self.warnings,
        }


def weighted_pue(rows: list[SiteRow], basis: str, only_valid: bool, pue_basis: str = "pue",
                 left_out: dict[str, str] | None = None, unread: list[dict[str, str]] = ()) -> WeightedPue:
    """The energy-weighted PUE over `rows`, of the energies `pue_basis` names (the joint ones for `pue_joint`:
    the city's PUE on the basis its sites are judged on, where it summed the whole-period ones whatever the
    basis: found by the city audit); a report without both energies is excluded, with the reason, as is every
    report `left_out` names (its path: why) and every file in `unread` (not a valid report)."""
    out = WeightedPue(basis, None, 0.0, 0.0)
    fac_key, it_key = PUE_ENERGIES[pue_basis]
    left_out = left_out or {}
    for row in rows:
        r = row.report
        label = f"{row.site} ({row.path})"
        fac, it = r.get(fac_key), r.get(it_key)
        if row.path in left_out:
            out.excluded.append({"site": row.site, "report": row.path, "reason": left_out[row.path]})
        elif only_valid and not row.signature.ok:
            out.excluded.append({"site": row.site, "report": row.path, "reason": f"signature {row.signature.status}"})
        elif fac_key not in r or it_key not in r:
            out.excluded.append({"site": row.site, "report": row.path,
                                 "reason": f"the report has no {fac_key} (made by a puewatch before it was added)"})
        elif not is_number(fac) or not is_number(it):
            out.excluded.append({"site": row.site, "report": row.path, "reason": "facility or IT energy unknown (null)"})
        elif it <= 0:
            out.excluded.append({"site": row.site, "report": row.path, "reason": "IT energy is zero"})
        elif floors.below_floor("pue", fac / it):
            # Facility energy below IT energy: impossible, so the report publishes no PUE, and its
            # energies cannot count towards the city's either (they would pull it down).
            out.excluded.append({"site": row.site, "report": row.path,
                                 "reason": f"facility energy / IT energy is {fac / it:.6g}, below the physical floor "
                                           f"{floors.floor_of('pue'):g} of a PUE (the report publishes no PUE)"})
        else:
            out.facility_energy_wh += fac
            out.it_energy_wh += it
            out.included.append(label)
    for u in unread:
        out.excluded.append({"site": UNREAD_SITE, "report": u["report"], "reason": u["reason"]})
    if out.it_energy_wh > 0:
        out.pue = out.facility_energy_wh / out.it_energy_wh
    return out


# The site of a file that is no valid report, in the lists of what the city's PUE left out.
UNREAD_SITE = "(not read)"


def _sites(rows: list[SiteRow]) -> list[str]:
    """Each row's site as the city tells sites apart (`site_key`)."""
    return [site_key(row.site) for row in rows]


def _shared_keys(rows: list[SiteRow]) -> list[str]:
    """Warnings where one key validly signed reports of sites named apart: one site under two names would count
    twice; two sites one operator signs with one key (which the key ring allows) are two. Said, not decided."""
    names: dict[str, set[str]] = {}
    for row in rows:
        if row.signature.status == "valid" and row.signature.key_id:
            names.setdefault(row.signature.key_id, set()).add(row.site)
    return [f"key {kid} signed the reports of {len({site_key(s) for s in sites})} sites ({', '.join(map(repr, sorted(sites)))}): if they are "
            "one site, the city's PUE counts its energy more than once" for kid, sites in sorted(names.items())
            if len({site_key(s) for s in sites}) > 1]


def _overlaps(rows: list[SiteRow]) -> dict[str, str]:
    """Reports of one site whose periods overlap (the same file given twice, two versions of one report, a
    year and one of its months): path -> why. Summed, their energies would count the overlap twice (the
    same report given four times counted four times, and its site's PUE passed the city's cap: found by the
    city audit), and which of them is right is not the city's to guess: each is left out of the city's PUE."""
    from puewatch.core.timefmt import parse_time

    why: dict[str, str] = {}
    by_site: dict[str, list[tuple[int, int, SiteRow]]] = {}
    for row, site in zip(rows, _sites(rows)):
        r = row.report
        by_site.setdefault(site, []).append((parse_time(r["period_start"]), parse_time(r["period_end"]), row))
    for spans in by_site.values():
        for i, (s0, e0, a) in enumerate(spans):
            for s1, e1, b in spans[:i] + spans[i + 1:]:
                if s0 < e1 and s1 < e0:
                    same = "" if b.site == a.site else f" (named {b.site!r}: the same site)"
                    why.setdefault(a.path, f"its period {report_period(a.report)} overlaps that of {b.path}, another report of "
                                           f"site {a.site!r}{same}: summed, the overlap's energy would count twice")
                    break
    return why


def evaluate_city(
    reports: list[tuple[str, dict[str, Any]]],
    targets: Targets,
    public_keys: dict[str, Any] | None,
    unread: list[dict[str, str]] = (),
) -> CityResult:
    """Check every report and the city as a whole. `public_keys`: key id -> key, or None (not verified).
    `unread`: the files given that are no valid report (`report`, `reason`), which the city's PUE cannot count:
    each is named among what it left out, and the city fails."""
    rows: list[SiteRow] = []
    for path, report in reports:
        sig = signature_status(report, public_keys)
        results = check_report(report, targets, sig if public_keys is not None else None)
        reasons = [f"{x.rule}: {x.evidence}" for x in results if not x.passed]
        if sig.status == "invalid":
            reasons.insert(0, f"signature invalid: {sig.reason}")
        rows.append(SiteRow(path, report, sig, results, not reasons, reasons))

    over = "" if targets.pue_basis == "pue" else " (energies over each site's jointly observed time)"
    unread = list(unread)
    overlapping = _overlaps(rows)
    all_ = weighted_pue(rows, "all reports that state both energies" + over, only_valid=False, pue_basis=targets.pue_basis,
                        left_out=overlapping, unread=unread)
    valid = (weighted_pue(rows, "reports with a valid signature" + over, only_valid=True, pue_basis=targets.pue_basis,
                          left_out=overlapping, unread=unread)
             if public_keys is not None else None)
    city_results: list[RuleResult] = []
    for rule in targets.city_rules():
        basis = valid if valid is not None else all_
        what = "city energy-weighted PUE over " + ("validly signed reports" if valid is not None else "all reports")
        result = numeric_rule(rule, what, basis.pue, targets.pue_comparison, getattr(targets, rule),
                              "no report states both energies")
        if basis.excluded:
            # A city cap judged over part of the city is no verdict on the city: a site left out (unsigned,
            # unknown or impossible energies) never lets it pass. It passed at 1.26 over 9 % of the IT
            # energy, the other site unsigned (found by the city audit).
            left = "; ".join(f"{x['site']} ({x['reason']})" for x in basis.excluded)
            verdict = result.evidence.rsplit(": ", 1)[0]
            result = RuleResult(rule, False, result.value, result.limit, result.comparison,
                                f"{verdict}, over {len(basis.included)} of {len(rows) + len(unread)} report(s); left "
                                f"out: {left}: "
                                "the city's PUE over every report is not known: fail")
        city_results.append(result)

    warnings: list[str] = []
    sites = _sites(rows)
    for site, n in Counter(sites).items():
        if n > 1:
            names = sorted({r.site for r, s in zip(rows, sites) if s == site})
            overlap = sum(r.path in overlapping for r, s in zip(rows, sites) if s == site)
            warnings.append(f"site {' / '.join(map(repr, names))} appears in {n} reports" + (
                f"; {overlap} of them overlap another's period and are left out of the city's PUE" if overlap
                else "; their periods do not overlap, and the city's PUE counts each"))
    warnings += _shared_keys(rows)
    periods = {(r.report["period_start"], r.report["period_end"]) for r in rows}
    if len(periods) > 1:
        warnings.append(f"the reports cover {len(periods)} different periods; the weighted PUE sums them as given")
    passed = all(r.passed for r in rows) and all(x.passed for x in city_results) and not unread
    return CityResult(targets, rows, all_, valid, city_results, passed, warnings, public_keys is not None, unread)


# ---- output -------------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 3, limits: tuple[float | None, ...] = ()) -> str:
    """`x` to `digits` decimals, or to as many more as tell it from a limit it differs from: 1.30004 and 1.29996
    both showed 1.300 beside a FAIL and a pass of `< 1.3` (found by the HTML audit)."""
    if x is None:
        return "—"
    for limit in limits:
        if limit is not None and x != limit:
            while digits < 17 and f"{x:.{digits}f}" == f"{limit:.{digits}f}":
                digits += 1
    return f"{x:.{digits}f}"


def _pue_limits(t: Targets) -> tuple[float | None, ...]:
    """The limits a report's PUE is judged by (its column shows it apart from each)."""
    return (t.max_annual_pue, t.max_pue)


def _mwh(wh: float) -> str:
    return f"{wh / 1e6:,.3f} MWh"


def _kind(r: dict[str, Any]) -> str:
    """Annual or interim as the rules judge it (`report_annual`: the period and when the report was made), not as
    its `annual` field says (the column said annual for a month whose field said so: found by the city audit)."""
    return "annual" if report_annual(r)[0] else "interim"


def _pue_column(result: CityResult) -> str:
    return "PUE" if result.targets.pue_basis == "pue" else f"PUE ({result.targets.pue_basis})"


def _complete(c: float) -> str:
    """A completeness in % to 0.1, rounded down (core.numbers.percent_down)."""
    return percent_down(c)


def _tally(result: CityResult) -> str:
    total = len(result.rows) + len(result.unread)
    failed = sum(not r.passed for r in result.rows) + len(result.unread)
    return f"{total - failed} of {total} sites pass"


def _weighted_line(w: WeightedPue, limit: float | None = None) -> str:
    return (f"{_num(w.pue, 4, (limit,))} over {len(w.included)} report(s) ({w.basis}): "
            f"{_mwh(w.facility_energy_wh)} facility / {_mwh(w.it_energy_wh)} IT")


def print_table(result: CityResult) -> None:
    from rich.console import Console
    from rich.table import Table
    from puewatch.terminal import shown_text as Text

    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped to a file or a mail: no terminal width to fit, and a clipped key id or period helps nobody.
        console = Console(highlight=False, width=200)
    t = result.targets
    console.print(Text(f"Targets: {t.name}", style="bold"))
    for s in t.sources:
        console.print(Text(f"  source: {s}"))
    for n in t.notes:
        console.print(Text(f"  note: {n}"))
    rules = t.report_rules()
    table = Table(show_header=True, header_style="bold")
    pue_col = _pue_column(result)
    for col in ("site", "report file", "signature", "period", "kind", "cat.", pue_col, "complete"):
        table.add_column(col, justify="right" if col in ("cat.", pue_col, "complete") else "left", overflow="fold")
    for rule in rules:
        table.add_column(rule, overflow="fold")
    table.add_column("overall", overflow="fold")
    for row in result.rows:
        r = row.report
        sig = row.signature.status + (f" {row.signature.key_id}" if row.signature.key_id else "")
        sig_style = {"valid": "green", "invalid": "bold red", "unknown key": "yellow"}.get(row.signature.status, "")
        cells = [
            Text(r["site"]),
            Text(row.path),  # two reports of one site (two periods, two versions) are told apart by their file
            Text(sig, style=sig_style),
            Text(report_period(r)),
            Text(_kind(r)),
            Text(str(r["category"])),
            Text(_num(r.get(t.pue_basis), limits=_pue_limits(t))),  # the PUE the rules judge
            Text(f"{_complete(r['completeness'])} %"),
        ]
        cells += [Text("pass", style="green") if x.passed else Text("FAIL", style="bold red") for x in row.results]
        cells.append(Text("pass", style="bold green") if row.passed else Text("FAIL", style="bold red"))
        table.add_row(*cells)
    console.print(table)
    for row in result.rows:
        for reason in row.reasons:
            console.print(Text(f"{row.site} ({row.path}): {reason}"))
    for u in result.unread:
        console.print(Text(f"FAIL  {u['reason']}: not a valid report, not counted", style="bold red"))
    cap = result.targets.max_city_pue
    console.print(Text(f"City PUE, all reports:          {_weighted_line(result.weighted_all, cap)}"))
    if result.weighted_valid is not None:
        console.print(Text(f"City PUE, valid signatures only: {_weighted_line(result.weighted_valid, cap)}"))
    else:
        console.print(Text("City PUE, valid signatures only: not computed (no --pubkeys: signatures not verified)"))
    for w in (result.weighted_all, result.weighted_valid):
        for e in (w.excluded if w else []):
            console.print(Text(f"  left out of '{w.basis}': {e['site']} ({e['report']}): {e['reason']}"))
    for x in result.city_results:
        console.print(Text(f"{'PASS' if x.passed else 'FAIL'}  {x.rule}: {x.evidence}"))
    for w in result.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
    console.print(Text(f"{_tally(result)}; overall: " + ("pass" if result.passed else "FAIL"), style="bold"))


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;max-width:100%}
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left;overflow-wrap:anywhere}
td.file{font-size:.85em;max-width:16em}
td.name{max-width:16em}
td.num,td.pass,td.fail{white-space:nowrap;overflow-wrap:normal}
.wide{max-width:100%;overflow-x:auto}
th{background:#eee}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:700}
.valid{color:#1a7f37}.invalid{color:#c62828;font-weight:700}.unknown{color:#a66b00}
.small{font-size:.9em;color:#555}
"""


def render_html(result: CityResult, generated_at: str | None = None) -> str:
    """A self-contained page (inline CSS, no scripts, no external assets); every value is escaped."""
    e = in_page
    t = result.targets
    generated_at = generated_at or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rules = t.report_rules()
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>City PUE: {e(t.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>City PUE: {e(t.name)}</h1>",
        f'<p class="small">Generated {e(generated_at)} by puewatch city. '
        + ("Signatures verified against the given public keys." if result.verified
           else "Signatures not verified (no public keys given).") + "</p>",
        "<h2>Targets</h2><ul>",
    ]
    out += [f"<li>source: {e(s)}</li>" for s in t.sources]
    out += [f"<li>note: {e(n)}</li>" for n in t.notes]
    out += [f"<li><code>{e(k)}</code> = {e(json.dumps(v))}</li>" for k, v in t.to_json()["rules"].items()]
    out.append(f"<li>PUE comparison: {e(t.pue_comparison)}</li></ul>")
    out.append('<h2>Sites</h2><div class="wide"><table><thead><tr>')
    heads = ["site", "report file", "signature", "period", "kind", "category", _pue_column(result), "completeness", *rules,
             "overall"]
    out.append("".join(f"<th>{e(h)}</th>" for h in heads) + "</tr></thead><tbody>")
    for row in result.rows:
        r = row.report
        status = row.signature.status
        css = {"valid": "valid", "invalid": "invalid", "unknown key": "unknown"}.get(status, "")
        sig = status + (f" {row.signature.key_id}" if row.signature.key_id else "")
        cells = [
            # Names wrap within a width of their own; numbers and verdicts never wrap (a 125-character name broke
            # them into "1.2" / "70" and "FAI" / "L": found by the HTML audit).
            f'<td class="name">{e(r["site"])}</td>',
            f'<td class="file">{e(row.path)}</td>',
            f'<td class="{css}" title="{e(row.signature.reason)}">{e(sig)}</td>',
            f"<td>{e(report_period(r))}</td>",
            f"<td>{_kind(r)}</td>",
            f'<td class="num">{e(str(r["category"]))}</td>',
            f'<td class="num">{e(_num(r.get(t.pue_basis), limits=_pue_limits(t)))}</td>',
            f'<td class="num">{_complete(r["completeness"])}&nbsp;%</td>',
        ]
        cells += [
            f'<td class="{"pass" if x.passed else "fail"}" title="{e(x.evidence)}">{"pass" if x.passed else "FAIL"}</td>'
            for x in row.results
        ]
        cells.append(f'<td class="{"pass" if row.passed else "fail"}">{"pass" if row.passed else "FAIL"}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    if result.unread:
        items = "".join(f"<li>{e(u['report'])}: {e(u['reason'])}</li>" for u in result.unread)
        out.append(f"<h2>Files that are not valid reports (fail)</h2><ul>{items}</ul>")
    reasons = [(row.site, row.path, reason) for row in result.rows for reason in row.reasons]
    if reasons:
        out.append("<h2>Failures</h2><ul>")
        out += [f"<li><b>{e(site)}</b> ({e(path)}): {e(reason)}</li>" for site, path, reason in reasons]
        out.append("</ul>")
    out.append("<h2>City energy-weighted PUE</h2>")
    out.append('<p class="small">Σ facility energy / Σ IT energy over the included reports.</p><ul>')
    cap = result.targets.max_city_pue
    out.append(f"<li>All reports: {e(_weighted_line(result.weighted_all, cap))}</li>")
    if result.weighted_valid is not None:
        out.append(f"<li>Valid signatures only: {e(_weighted_line(result.weighted_valid, cap))}</li>")
    else:
        out.append("<li>Valid signatures only: not computed (signatures not verified)</li>")
    out.append("</ul>")
    excluded = [(w.basis, x) for w in (result.weighted_all, result.weighted_valid) if w for x in w.excluded]
    if excluded:
        out.append("<p>Left out:</p><ul>")
        out += [f"<li>{e(basis)}: {e(x['site'])} ({e(x['report'])}): {e(x['reason'])}</li>" for basis, x in excluded]
        out.append("</ul>")
    if result.city_results:
        out.append("<ul>")
        out += [f'<li class="{"pass" if x.passed else "fail"}">{e(x.rule)}: {e(x.evidence)}</li>'
                for x in result.city_results]
        out.append("</ul>")
    if result.warnings:
        out.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in result.warnings) + "</ul>")
    verdict = "pass" if result.passed else "FAIL"
    out.append(f'<p><b>{e(_tally(result))}; overall: '
               f'<span class="{"pass" if result.passed else "fail"}">{verdict}</span></b></p>')
    out.append("</body></html>\n")
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    targets_given = args.targets is not None or args.preset is not None
    statements = getattr(args, "statements", None)
    # With --statements only, the reports are the statements' references: no targets needed.
    targets = resolve_targets(args.targets, args.preset) if targets_given or not statements else None
    public_keys = None
    if args.pubkeys:
        from puewatch.signing import KeyRing

        public_keys = KeyRing.load(args.pubkeys)
    # A file that cannot be read (a wrong path) stops the run: bad input. One that is read but is no valid
    # report (broken JSON, a field missing or out of range: what tampering with a signed report often
    # does) is listed as not read and fails the city, and the other sites are still checked.
    reports, unread = [], []
    for p in args.reports:
        text = read_text(p)
        try:
            reports.append((p, parse_report(text, str(p))))
        except ReportError as exc:
            unread.append({"report": str(p), "reason": str(exc)})
    if not reports and unread:
        raise ReportError(unread[0]["reason"])
    result = evaluate_city(reports, targets, public_keys, unread) if targets is not None else None
    vouchers = None
    if statements:
        from puewatch.city.reportfile import load_document
        from puewatch.city.statementfile import SCHEMA as STATEMENT, validate_statement
        from puewatch.city.vouchers import evaluate_vouchers

        docs = [(p, load_document(p)) for p in statements]
        for p, d in docs:
            validate_statement(d if d.get("schema") == STATEMENT else {}, p)  # a report given as a statement
        vouchers = evaluate_vouchers(docs, reports, public_keys)
    if args.html:
        page = render_html(result) if result is not None else _CITY_PAGE
        if vouchers is not None:
            from puewatch.city.vouchers import render_html as vouchers_html

            page = page.replace("</body></html>", vouchers_html(vouchers) + "\n</body></html>")
        if unread and result is None:  # else the city's page lists them
            items = "".join(f"<li>{in_page(u['report'])}: {in_page(u['reason'])}</li>" for u in unread)
            page = page.replace("</body></html>", f"<h2>Files that are not valid reports (fail)</h2><ul>{items}</ul>\n"
                                                  "</body></html>")
        write_file(args.html, page)
    passed = (result is None or result.passed) and (vouchers is None or vouchers.passed) and not unread
    if args.json:
        out = result.to_json() if result is not None else {"signatures_verified": public_keys is not None}
        if vouchers is not None:
            out["vouchers"] = vouchers.to_json()
        out["not_valid_reports"] = unread
        out["passed"] = passed
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        if result is not None:
            print_table(result)
        if vouchers is not None:
            from puewatch.city.vouchers import print_vouchers

            print_vouchers(vouchers)
        for u in unread if result is None else ():  # else the city's table lists them
            print(shown(f"FAIL  {u['reason']}: not a valid report, not counted"))
    return 0 if passed else 1


_CITY_PAGE = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Voucher statements</title>'
              f"<style>{_CSS}</style></head><body>\n<h1>Voucher statements</h1>\n</body></html>\n")
