"""`puewatch city --statements ...`: voucher evidence statements checked against sites' signed reports.

Each statement is matched to the report its `site_report.sha256` names (the SHA-256 of the
report's signed bytes, puewatch.signing.digest) and checked, rule by rule, with the evidence:

- `signature`: the statement's signature is valid (needs --pubkeys; without keys it is not
  verified and the rule fails: a city cannot count what it cannot check);
- `report_digest`: the digest names one of the given reports;
- `period`: the statement's period is the report's;
- `pue`: the statement's `pue` equals the site's PUE over the statement's days, recomputed here
  from the report's `daily` rows (jobs.statement.site_pue_over_days, the one function both use):
  the same doubles summed in the same order, so equal exactly; a relative difference up to
  `PUE_REL_TOL` is allowed for a statement made by another implementation summing in another
  order (at most 366 positive terms: rounding below 366 x 2^-53 = 4e-14).

- `totals`: the statement agrees with itself: its `days` add up to its totals (facility-inclusive,
  IT in known cells, green), no day and no total has less facility-inclusive energy than IT energy
  (each cell's factor is at least 1), and `tenant_pue` is its facility-inclusive energy over its IT
  energy in known cells; within `SUM_REL_TOL` (the same energies summed in other orders). Rules
  below read the totals or the days alone: a signed statement whose days say one thing and totals
  another passed them (found by the city audit);
- `site` (added after `totals`, where a report is matched): the statement's site is the report's, as puewatch
  tells sites apart (letter case, spaces and Unicode forms aside: core.site.site_key);
- `report_signature`: the matched report's own signature is valid with --pubkeys, by the key the
  statement names (`site_report.key_id`): the digest leaves the signature out, so an unsigned copy
  of the report would match it;
- `green_share`, `carbon`: puewatch.city.green.

Per report, `energy_within_e_dc`: the facility-inclusive energy of all statements naming it adds
up to no more than its E_DC (`facility_energy_wh`) times 1 + `SUM_REL_TOL` (the statements'
energies and E_DC are sums of the same stored cells in other orders); `green_within_site`: the
same for green energy (puewatch.city.green). Per certificate or PPA id over all the reports:
`certificate` (puewatch.city.green). Duplicate tenants are warned about (a tenant counted twice
inflates the sums, which is what the rules are for).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from puewatch.city.check import RuleResult, fmt
from puewatch.city.green import SUM_REL_TOL, carbon_rule, certificate_rows, green_share_rule, green_within_site_rule, kwh
from puewatch.core.site import site_key
from puewatch.core.timefmt import calendar_of
from puewatch.signing import Verification, digest, signature_status
from puewatch.terminal import in_page

PUE_REL_TOL = 1e-12


@dataclass
class StatementRow:
    path: str
    statement: dict[str, Any]
    signature: Verification
    report: str | None  # the matched report's path
    results: list[RuleResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_json(self) -> dict[str, Any]:
        s = self.statement
        return {"statement": self.path, "site": s["site"], "tenant": s["tenant"],
                "period_start": s["period_start"], "period_end": s["period_end"],
                "facility_energy_wh": s["facility_energy_wh"], "it_energy_wh": s["it_energy_wh"], "pue": s["pue"],
                "tenant_pue": s["tenant_pue"],
                "signature": {"status": self.signature.status, "key_id": self.signature.key_id,
                              "reason": self.signature.reason},
                "report": self.report, "rules": [r.to_json() for r in self.results], "passed": self.passed}


@dataclass
class VoucherResult:
    rows: list[StatementRow]
    reports: list[dict[str, Any]]  # per report: path, site, digest, rules; rule: the first (kept for JSON readers)
    certificates: list[dict[str, Any]] = field(default_factory=list)  # per id: kind, mwh, sites, claims, rule
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (all(r.passed for r in self.rows) and all(x.passed for r in self.reports for x in r["rules"])
                and all(c["rule"].passed for c in self.certificates))

    def to_json(self) -> dict[str, Any]:
        return {"statements": [r.to_json() for r in self.rows],
                "reports": [{**{k: v for k, v in r.items() if k not in ("rule", "rules")}, "rule": r["rule"].to_json(),
                             "rules": [x.to_json() for x in r["rules"]]} for r in self.reports],
                "certificates": [{**{k: v for k, v in c.items() if k != "rule"}, "rule": c["rule"].to_json()}
                                 for c in self.certificates],
                "passed": self.passed, "warnings": self.warnings}


def _pue_rule(s: dict[str, Any], report: dict[str, Any]) -> RuleResult:
    from puewatch.jobs.statement import site_pue_over_days

    site, _fac, _it, why = site_pue_over_days(report, s["days"])
    stated = s["pue"]
    days = f"{len(s['days'])} day(s)"
    if not s["days"]:
        # No IT energy in a known cell (a tenant whose records hold 0 Wh): no day to weigh a PUE over.
        if stated is None:
            return RuleResult("pue", True, None, None, "==", "the statement has no day with IT energy in a known "
                              "cell and states no site PUE: nothing to check: pass")
        return RuleResult("pue", False, stated, None, "==", f"the statement states a site PUE {fmt(stated)} over no "
                          "day with IT energy: fail")
    if site is None:
        return RuleResult("pue", False, stated, None, "==", f"the site's PUE over the statement's {days} is "
                          f"unknown: {why}: fail")
    if stated is None:
        return RuleResult("pue", False, None, site, "==", f"the statement states no PUE; the site's over its "
                          f"{days} is {fmt(site)}: fail")
    ok = abs(stated - site) <= PUE_REL_TOL * abs(site)
    verdict = "equals" if ok else "is not"
    return RuleResult("pue", ok, stated, site, "==", f"statement PUE {fmt(stated)} {verdict} the site's "
                      f"{fmt(site)} over its {days} (report daily rows): {'pass' if ok else 'fail'}")


def _totals_rule(s: dict[str, Any]) -> RuleResult:
    days = s["days"]
    fac, it_known, green, tenant_pue = (s["facility_energy_wh"], s.get("it_energy_known_wh"), s["green_energy_wh"],
                                        s["tenant_pue"])
    day_fac = sum(d["facility_energy_wh"] for d in days)
    day_it = sum(d["it_energy_wh"] for d in days)
    problems = []

    def differ(a: float, b: float) -> bool:
        return abs(a - b) > SUM_REL_TOL * max(abs(a), abs(b))

    if fac is None:
        if days:
            problems.append(f"it states no facility-inclusive energy, yet {len(days)} day(s) with {kwh(day_fac)}")
    elif differ(fac, day_fac):
        problems.append(f"facility-inclusive {kwh(fac)} is not its days' sum {kwh(day_fac)}")
    if it_known is not None:
        if differ(it_known, day_it):
            problems.append(f"IT energy in known cells {kwh(it_known)} is not its days' sum {kwh(day_it)}")
        if it_known > s["it_energy_wh"] * (1 + SUM_REL_TOL):
            problems.append(f"IT energy in known cells {kwh(it_known)} is more than its IT energy "
                            f"{kwh(s['it_energy_wh'])}")
    if green is not None and days and all("green_energy_wh" in d for d in days):
        day_green = sum(d["green_energy_wh"] for d in days)
        if differ(green, day_green):
            problems.append(f"green {kwh(green)} is not its days' sum {kwh(day_green)}")
    below = [calendar_of(s).name(d["period_start"], "day") for d in days if d["facility_energy_wh"] < d["it_energy_wh"] * (1 - SUM_REL_TOL)]
    if below:
        problems.append(f"{len(below)} day(s) with less facility-inclusive than IT energy (first {below[0]})")
    it = it_known if it_known is not None else day_it
    if fac is not None and fac < it * (1 - SUM_REL_TOL):
        problems.append(f"facility-inclusive {kwh(fac)} is less than its IT energy in known cells {kwh(it)}")
    if tenant_pue is not None and (fac is None or it <= 0 or differ(tenant_pue, fac / it)):
        problems.append(f"tenant PUE {fmt(tenant_pue)} is not facility-inclusive over IT energy in known cells"
                        + (f" ({fmt(fac / it)})" if fac is not None and it > 0 else ""))
    head = (f"{len(days)} day(s): facility-inclusive {kwh(day_fac)}, IT {kwh(day_it)}; totals "
            f"{'null' if fac is None else kwh(fac)}, {'?' if it_known is None else kwh(it_known)}")
    if problems:
        return RuleResult("totals", False, fac, day_fac, "==", f"{head}: " + "; ".join(problems) + ": fail")
    return RuleResult("totals", True, fac, day_fac, "==", f"{head}: its days add up to its totals: pass")


def _site_rule(s: dict[str, Any], report: dict[str, Any]) -> RuleResult:
    """The statement's site is the site of the report it names (core.site.site_key). Without it, a statement of
    site B naming site A's report passed every rule on A's figures while the city listed it under B (found by
    the signature audit)."""
    ok = site_key(s["site"]) == site_key(report["site"])
    return RuleResult("site", ok, s["site"], report["site"], "==",
                      f"statement site {s['site']!r} " + ("is the report's: pass" if ok else
                                                          f"is not the report's, {report['site']!r}: fail"))


def _report_signature_rule(s: dict[str, Any], report: dict[str, Any],
                           public_keys: dict[str, Any] | None) -> RuleResult:
    sig = signature_status(report, public_keys)
    named = s["site_report"]["key_id"]
    ok = sig.ok and sig.key_id == named
    why = sig.reason if not sig.ok else f"valid, by key {sig.key_id}" + ("" if ok else f", not {named} as the "
                                                                          "statement names")
    return RuleResult("report_signature", ok, sig.status, "valid", None,
                      f"the report's signature: {why}: {'pass' if ok else 'fail'}")


def evaluate_vouchers(statements: list[tuple[str, dict[str, Any]]], reports: list[tuple[str, dict[str, Any]]],
                      public_keys: dict[str, Any] | None) -> VoucherResult:
    by_digest = {digest(r): (p, r) for p, r in reports}
    rows: list[StatementRow] = []
    claimed: dict[str, list[float]] = {d: [] for d in by_digest}
    green: dict[str, list[float]] = {d: [] for d in by_digest}
    for path, s in statements:
        sig = signature_status(s, public_keys, "statement")
        results = [RuleResult("signature", sig.ok, sig.status, "valid", None,
                              f"{sig.reason}: {'pass' if sig.ok else 'fail'}")]
        ref = s["site_report"]
        match = by_digest.get(ref["sha256"]) if ref else None
        if ref is None:
            results.append(RuleResult("report_digest", False, None, None, None,
                                      "the statement names no site report (made without --report): fail"))
        elif match is None:
            results.append(RuleResult("report_digest", False, ref["sha256"], None, None,
                                      f"report digest {ref['sha256'][:16]}… matches none of the {len(reports)} "
                                      "report(s) given: fail"))
        else:
            results.append(RuleResult("report_digest", True, ref["sha256"], ref["sha256"], "==",
                                      f"report digest {ref['sha256'][:16]}… is {match[0]}: pass"))
        if match is not None:
            report = match[1]
            # Its days and years are cut in its calendar: the report's, whose daily rows and factors it uses.
            zones = (calendar_of(s).zone, calendar_of(report).zone)
            same = ((s["period_start"], s["period_end"], zones[0]) == (report["period_start"], report["period_end"],
                                                                     zones[1]))
            period = f"{s['period_start']}..{s['period_end']} ({zones[0]})"
            theirs = f"{report['period_start']}..{report['period_end']} ({zones[1]})"
            results.append(_report_signature_rule(s, report, public_keys))
            results.append(RuleResult("period", same, period, theirs, "==",
                                      f"statement period {period} " + ("is the report's: pass" if same else
                                      f"is not the report's {theirs}: fail")))
            results.append(_pue_rule(s, report))
            results.append(green_share_rule(s, report))
            results.append(carbon_rule(s, report))
            if s["facility_energy_wh"] is not None:
                claimed[ref["sha256"]].append(s["facility_energy_wh"])
            if s["green_energy_wh"] is not None:
                green[ref["sha256"]].append(s["green_energy_wh"])
        # Added last: the rules' order is part of the JSON a city's tools read (found by the review).
        results.append(_totals_rule(s))
        if match is not None:
            results.append(_site_rule(s, match[1]))
        rows.append(StatementRow(path, s, sig, match[0] if match else None, results))
    out: list[dict[str, Any]] = []
    for d, (path, report) in by_digest.items():
        total, n, e_dc = sum(claimed[d]), len(claimed[d]), report["facility_energy_wh"]
        if e_dc is None:
            rule = RuleResult("energy_within_e_dc", False, total, None, "<=",
                              f"{n} statement(s) claim {total / 1000:,.3f} kWh; the report states no E_DC: fail")
        else:
            ok = total <= e_dc * (1 + SUM_REL_TOL)
            rule = RuleResult("energy_within_e_dc", ok, total, e_dc, "<=",
                              f"{n} statement(s) claim {total / 1000:,.3f} kWh facility-inclusive, E_DC "
                              f"{e_dc / 1000:,.3f} kWh: " + ("pass" if ok else "more than the site used: fail"))
        out.append({"report": path, "site": report["site"], "sha256": d, "statements": n, "rule": rule,
                    "rules": [rule, green_within_site_rule(green[d], report)]})
    # By the report named (one site), not the statements' site names, which may differ in case or spacing.
    warnings = [f"tenant {t!r} has {n} statements naming one report, {ref}: its energy is counted {n} times"
                for (t, ref), n in Counter((r.statement["tenant"], r.report) for r in rows if r.report).items()
                if n > 1]
    return VoucherResult(rows, out, certificate_rows(reports), warnings)


def print_vouchers(result: VoucherResult) -> None:
    from rich.console import Console
    from rich.table import Table
    from puewatch.terminal import shown_text as Text

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    console.print(Text("Voucher statements", style="bold"))
    table = Table(show_header=True, header_style="bold")
    rules = ("signature", "report_digest", "report_signature", "period", "pue", "green_share", "carbon", "totals")
    # The tenant's facility-inclusive energy beside its own PUE (its cells' factors), then the site's PUE over
    # its days (the `pue` rule's): a lone "PUE" beside the tenant's energy read as the tenant's (city audit).
    numeric = ("facility kWh", "tenant PUE", "site PUE (its days)")
    for col in ("tenant", "site", "statement file", *numeric, *rules, "overall"):
        table.add_column(col, justify="right" if col in numeric else "left", overflow="fold")
    for row in result.rows:
        s = row.statement
        got = {r.rule: r for r in row.results}
        cells = [Text(s["tenant"]), Text(s["site"]), Text(row.path),
                 Text("—" if s["facility_energy_wh"] is None else f"{s['facility_energy_wh'] / 1000:,.3f}"),
                 Text("—" if s["tenant_pue"] is None else f"{s['tenant_pue']:.4f}"),
                 Text("—" if s["pue"] is None else f"{s['pue']:.4f}")]
        cells += [Text("—") if r not in got else Text("pass", style="green") if got[r].passed
                  else Text("FAIL", style="bold red") for r in rules]
        cells.append(Text("pass", style="bold green") if row.passed else Text("FAIL", style="bold red"))
        table.add_row(*cells)
    console.print(table)
    for row in result.rows:
        for r in row.results:
            console.print(Text(f"{'PASS' if r.passed else 'FAIL'}  {r.rule} {row.statement['tenant']} ({row.path}): "
                               f"{r.evidence}"), soft_wrap=True)
    for r in result.reports:
        for x in r["rules"]:
            console.print(Text(f"{'PASS' if x.passed else 'FAIL'}  {x.rule} {r['site']} ({r['report']}): "
                               f"{x.evidence}"), soft_wrap=True)
    for c in result.certificates:
        x = c["rule"]
        console.print(Text(f"{'PASS' if x.passed else 'FAIL'}  {x.rule} {c['id']}: {x.evidence}"), soft_wrap=True)
    for w in result.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
    failed = sum(not r.passed for r in result.rows)
    console.print(Text(f"{len(result.rows) - failed} of {len(result.rows)} statements pass; vouchers: "
                       + ("pass" if result.passed else "FAIL"), style="bold"))


def render_html(result: VoucherResult) -> str:
    """The vouchers section of the city page (escaped values, no scripts)."""
    e = in_page
    out = ["<h2>Voucher statements</h2><table><thead><tr>"
           + "".join(f"<th>{h}</th>" for h in ("tenant", "site", "statement file", "rule", "verdict", "evidence"))
           + "</tr></thead><tbody>"]
    for row in result.rows:
        for r in row.results:
            out.append(f"<tr><td class=\"name\">{e(row.statement['tenant'])}</td>"
                       f"<td class=\"name\">{e(row.statement['site'])}</td>"
                       f'<td class="file">{e(row.path)}</td><td>{e(r.rule)}</td>'
                       f'<td class="{"pass" if r.passed else "fail"}">{"pass" if r.passed else "FAIL"}</td>'
                       f"<td>{e(r.evidence)}</td></tr>")
    out.append("</tbody></table><ul>")
    out += [f'<li class="{"pass" if x.passed else "fail"}">{e(x.rule)} {e(r["site"])} ({e(r["report"])}): '
            f'{e(x.evidence)}</li>' for r in result.reports for x in r["rules"]]
    out += [f'<li class="{"pass" if c["rule"].passed else "fail"}">certificate {e(c["id"])}: '
            f'{e(c["rule"].evidence)}</li>'
            for c in result.certificates]
    out += [f"<li>warning: {e(w)}</li>" for w in result.warnings]
    out.append(f"<li><b>vouchers: {'pass' if result.passed else 'FAIL'}</b> ({json.dumps(len(result.rows))} "
               "statements)</li></ul>")
    return "\n".join(out)
