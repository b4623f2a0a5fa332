"""Check one report against targets: pass or fail per rule, with the evidence.

Each rule's result carries the value it looked at, the limit, the comparison
and one sentence that a person can read out ("annual PUE 1.27 ≤ 1.3: pass").
A report that lacks what a rule needs (a null PUE, an interim report where an
annual one is required, no uncertainty bound) fails that rule and says why:
a city cannot count as met what it cannot see.

`puewatch check REPORT --targets FILE | --preset NAME [--json]` exits 0 when
every rule passes, 1 when any fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from puewatch.city.reportfile import is_number, report_annual, report_period
from puewatch.city.targets import Targets, resolve_targets
from puewatch.core import floors
from puewatch.terminal import shown

_SYMBOL = {"<": "<", "<=": "≤", ">=": "≥"}


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict. `value` is what the report holds (None when it lacks it)."""

    rule: str
    passed: bool
    value: Any
    limit: Any
    comparison: str | None
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "passed": self.passed,
            "value": self.value,
            "limit": self.limit,
            "comparison": self.comparison,
            "evidence": self.evidence,
        }


def fmt(x: float, beside: float | None = None) -> str:
    """A number as short as it can be without hiding a difference at the 6th significant digit;
    with `beside` (the limit it is compared with), in full where six digits would show the two the
    same although they differ ("1.3000000000000003 is not ≤ 1.3", never "1.3 is not ≤ 1.3")."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if beside is not None and x != beside and f"{x:.6g}" == f"{beside:.6g}":
        return repr(float(x))
    return f"{x:.6g}"


def compare(value: float, comparison: str, limit: float) -> bool:
    if comparison == "<":
        return value < limit
    if comparison == "<=":
        return value <= limit
    if comparison == ">=":
        return value >= limit
    raise ValueError(comparison)


def numeric_rule(rule: str, what: str, value: Any, comparison: str, limit: Any, missing: str) -> RuleResult:
    """Compare `value` with `limit`; a missing value (None) fails, with `missing` as the reason."""
    sym = _SYMBOL[comparison]
    if value is None:
        return RuleResult(rule, False, None, limit, comparison, f"{missing}; needs {what} {sym} {fmt(limit)}: fail")
    ok = compare(value, comparison, limit)
    shown = fmt(value, limit)
    if ok:
        return RuleResult(rule, True, value, limit, comparison, f"{what} {shown} {sym} {fmt(limit)}: pass")
    return RuleResult(rule, False, value, limit, comparison, f"{what} {shown} is not {sym} {fmt(limit)}: fail")


# A PUE and the energies it divides, as a report (and each of its months) states them.
# The energies each PUE of a report is the ratio of (facility, IT): the one map of `check` and `city`.
PUE_ENERGIES = {"pue": ("facility_energy_wh", "it_energy_wh"),
                "pue_joint": ("facility_energy_joint_wh", "it_energy_joint_wh")}


def impossible(row: dict[str, Any], ratio: str) -> str | None:
    """Why the value of `ratio` (`pue`, `pue_joint`, `ref`) in `row` (a report or one of its months)
    cannot be counted, or None: below its physical floor (a report writes null there, never such a
    value: core.floors), or a PUE that is not the row's own facility energy over its IT energy, or a
    PUE beside another PUE of the row that is either. Such a file was not made by puewatch as it
    stands, or was edited: a rule that reads it fails and says so."""
    if ratio in PUE_ENERGIES:
        # The row's other PUE too: a report whose `pue` is not its energies' ratio contradicts itself, and none
        # of its PUEs can be counted (its `pue` off by 0.05 passed a rule judged on `pue_joint`: city audit).
        for other in PUE_ENERGIES:
            why = _impossible_one(row, other)
            if why is not None:
                return why if other == ratio else f"{why}: the report contradicts itself, its {ratio} is not counted"
        return None
    return _impossible_one(row, ratio)


def _impossible_one(row: dict[str, Any], ratio: str) -> str | None:
    """`impossible` for `ratio` alone."""
    value = row.get(ratio)
    if not is_number(value):
        return None
    if floors.below_floor(ratio, value):
        return (f"{ratio} {value!r} is below its physical floor {floors.floor_of(ratio):g}, not a possible value (a "
                "report writes null there)")
    if ratio in PUE_ENERGIES:
        fac_key, it_key = PUE_ENERGIES[ratio]
        f, i = row.get(fac_key), row.get(it_key)
        if fac_key not in row and it_key not in row:
            return None
        if not (is_number(f) and is_number(i) and i > 0):
            # A PUE is a ratio of the row's energies: where they are unknown it is unknown too, and a report
            # writes null (it passed `check` at 1.2 with both energies null: found by the city audit). A
            # report made before an energy was added to the schema has neither key, and is read as it was.
            return (f"{ratio} {value!r} stands beside {fac_key} {f!r} and {it_key} {i!r}: a PUE is the one over "
                    "the other, so it is not known either (a report writes null there)")
        if not math.isclose(value, f / i, rel_tol=1e-12):
            return f"{ratio} {value!r} is not {fac_key} / {it_key} ({f!r} / {i!r} = {f / i!r})"
    if ratio == "green_share":
        from puewatch.city.green import green_share_problems

        g, f = row.get("green_energy_wh"), row.get("facility_energy_wh")
        if not (is_number(g) and is_number(f) and f > 0):
            return (f"green_share {value!r} stands beside green_energy_wh {g!r} and facility_energy_wh {f!r}: a "
                    "share is the one over the other, so it is not known either")
        problems = green_share_problems(value, g, f)
        if problems:
            return "; ".join(problems)
    return None


def _counted_rule(rule: str, what: str, row: dict[str, Any], ratio: str, comparison: str, limit: Any,
                  missing: str) -> RuleResult:
    """`numeric_rule` on a ratio of the report, which fails, saying why, where the value is impossible."""
    why = impossible(row, ratio)
    if why is not None:
        return RuleResult(rule, False, row.get(ratio), limit, comparison,
                          f"{why}; needs {what} {_SYMBOL[comparison]} {fmt(limit)}: fail")
    return numeric_rule(rule, what, row.get(ratio), comparison, limit, missing)


def check_rule(rule: str, report: dict[str, Any], targets: Targets, signature: Any = None) -> RuleResult:
    """Evaluate one per-report rule.

    `signature` is the report's `puewatch.signing.Verification` when the caller
    verified it (None: no public keys were given, so a signature cannot count).
    """
    limit = getattr(targets, rule)
    cmp_pue = targets.pue_comparison
    basis = targets.pue_basis
    joint = basis == "pue_joint"
    pue = report.get(basis)
    what_basis = " (jointly observed time)" if joint else ""
    no_pue = (f"the report has no PUE ({basis} is null)" if basis in report
              else f"the report has no {basis} (made by a puewatch before it was added)")
    if rule == "require_signature":
        if "signature" not in report:
            return RuleResult(rule, False, "unsigned", True, None, "the report is not signed: fail")
        if signature is None:
            kid = report["signature"].get("key_id")
            return RuleResult(rule, False, "unverified", True, None,
                              f"signed with key id {kid}, but no public keys were given to verify it (--pubkeys DIR): fail")
        if signature.ok:
            return RuleResult(rule, True, "valid", True, None, f"signature valid, key id {signature.key_id}: pass")
        return RuleResult(rule, False, signature.status, True, None, f"{signature.reason}: fail")
    if rule == "require_annual":
        annual, why = report_annual(report)
        if annual:
            return RuleResult(rule, True, True, True, None, f"annual report ({report_period(report)}): pass")
        return RuleResult(rule, False, False, True, None,
                          f"interim report (iPUE over {report_period(report)}){': ' + why if why else ''}, "
                          "an annual one is required: fail")
    if rule == "min_category":
        return numeric_rule(rule, "category", report["category"], ">=", limit, "no category")
    if rule == "min_completeness":
        return numeric_rule(rule, "completeness", report["completeness"], ">=", limit, "no completeness")
    if rule == "max_annual_pue":
        annual, why = report_annual(report)
        if not annual:
            return RuleResult(rule, False, pue, limit, cmp_pue,
                              f"the report is interim (iPUE over {report_period(report)}{'; ' + why if why else ''}), not an "
                              f"annual PUE; needs annual PUE {_SYMBOL[cmp_pue]} {fmt(limit)}: fail")
        return _counted_rule(rule, "annual PUE" + what_basis, report, basis, cmp_pue, limit, no_pue)
    if rule == "max_pue":
        what = "annual PUE" if report_annual(report)[0] else f"iPUE ({report_period(report)})"
        return _counted_rule(rule, what + what_basis, report, basis, cmp_pue, limit, no_pue)
    if rule == "max_monthly_pue":
        return _monthly(report, cmp_pue, limit, basis)
    if rule == "max_uncertainty":
        key = "pue_joint_uncertainty" if joint else "pue_uncertainty"
        return numeric_rule(rule, "PUE uncertainty ±" if not joint else "joint PUE uncertainty ±", report.get(key), "<=",
                            limit, "no PUE uncertainty (a PUE meter has no declared accuracy class)" if key in report
                            else f"the report has no {key} (made by a puewatch before it was added)")
    if rule == "min_ref":
        return _counted_rule(rule, "REF", report, "ref", ">=", limit, "no REF (no renewable energy meter)")
    if rule == "min_green_share":
        return _counted_rule(rule, "green share", report, "green_share", ">=", limit,
                             "no green share (null: no facility energy)" if "green_share" in report else
                             "no green share (the report was made without --carbon, which names its green energy)")
    raise ValueError(f"not a per-report rule: {rule}")


def _monthly(report: dict[str, Any], comparison: str, limit: float, basis: str = "pue") -> RuleResult:
    from puewatch.core.timefmt import calendar_of

    rule, sym = "max_monthly_pue", _SYMBOL[comparison]
    # Each month's PUE on the chosen basis (`pue` or `pue_joint`), under the key the code below reads.
    name = calendar_of(report).name
    # Each month named in the report's calendar (a UTC+8 site's January begins on 31 December at 16:00Z).
    months = [{**m, "pue": m.get(basis), "period_start": name(m["period_start"], "month")} for m in report["monthly"]]
    if not months:
        return RuleResult(rule, False, None, limit, comparison, f"the report has no monthly PUE; needs every month {sym} {fmt(limit)}: fail")
    bad = [(m["period_start"], why) for m, raw in zip(months, report["monthly"])
           if (why := impossible(raw, basis)) is not None]
    badly = {m for m, _ in bad}
    missing = [m["period_start"] for m in months if m["pue"] is None]
    over = [(m["period_start"], m["pue"]) for m in months
            if m["pue"] is not None and m["period_start"] not in badly and not compare(m["pue"], comparison, limit)]
    known = [m["pue"] for m in months if m["pue"] is not None and m["period_start"] not in badly]
    highest = max(known) if known else None
    if not missing and not over and not bad:
        top = max(months, key=lambda m: m["pue"])
        return RuleResult(rule, True, highest, limit, comparison,
                          f"{len(months)} months, highest PUE {fmt(highest, limit)} ({top['period_start']}) {sym} "
                          f"{fmt(limit)}: pass")
    parts = []
    if over:
        listed = ", ".join(f"{m} {fmt(v, limit)}" for m, v in over)
        parts.append(f"{len(over)} of {len(months)} months not {sym} {fmt(limit)}: {listed}")
    if missing:
        parts.append(f"{len(missing)} of {len(months)} months have no PUE: {', '.join(missing)}")
    if bad:
        parts.append(f"{len(bad)} of {len(months)} months have an impossible PUE: "
                     + ", ".join(f"{m} ({why})" for m, why in bad))
    return RuleResult(rule, False, highest, limit, comparison, "; ".join(parts) + ": fail")


def check_report(report: dict[str, Any], targets: Targets, signature: Any = None) -> list[RuleResult]:
    """Every per-report rule in force, in order."""
    return [check_rule(r, report, targets, signature) for r in targets.report_rules()]


def main(args: argparse.Namespace) -> int:
    from puewatch.city.reportfile import load_report

    targets = resolve_targets(args.targets, args.preset)
    if not targets.report_rules():
        from puewatch.errors import UserError

        # Zero rules would "pass": a city must not read that as a site meeting its targets.
        city = targets.city_rules()
        raise UserError(f"{targets.name}: no rule here applies to one report" + (
            f" (only city-level rules: {', '.join(city)}); check them over all reports with `puewatch city`" if city
            else ": give a rule (max_annual_pue, max_monthly_pue, min_completeness, ...)"))
    report = load_report(args.report)
    signature = None
    if args.pubkeys:
        from puewatch.signing import KeyRing, verify_report

        keys = KeyRing.load(args.pubkeys)
        signature = verify_report(report, keys)
    results = check_report(report, targets, signature)
    # As in `city`: a report whose signature is invalid (changed, or signed with another site's key) never
    # passes, whatever the rules.
    invalid = signature is not None and signature.status == "invalid"
    passed = all(r.passed for r in results) and not invalid
    if args.json:
        out = {
            "report": args.report,
            "site": report["site"],
            "period_start": report["period_start"],
            "period_end": report["period_end"],
            "label": report["label"],
            "targets": targets.to_json(),
            "passed": passed,
            **({"signature": {"status": signature.status, "key_id": signature.key_id, "reason": signature.reason}}
               if signature is not None else {}),
            "rules": [r.to_json() for r in results],
            "not_checked": [
                {"rule": r, "reason": "a city-level rule, checked by `puewatch city` over all reports"}
                for r in targets.city_rules()
            ],
        }
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        # Each line through `shown`: the report's strings cannot write or hide a line of the verdict.
        print(shown(f"{report['site']}: {report['label']} against {targets.name}"))
        for source in targets.sources:
            print(shown(f"  source: {source}"))
        if invalid:
            print(shown(f"  FAIL  {'signature':<18} {signature.reason}: a report whose signature is invalid never passes"))
        for r in results:
            print(shown(f"  {'PASS' if r.passed else 'FAIL'}  {r.rule:<18} {r.evidence}"))
        for r in targets.city_rules():
            print(shown(f"  ----  {r:<18} not checked here: a city-level rule (puewatch city)"))
        # The invalid signature's line counts as a rule, in the total as in the failures (it said "2 of 2
        # rules failed, 0 passed" over three lines, one of them PASS: found by the city audit).
        total = len(results) + invalid
        failed = sum(not r.passed for r in results) + invalid
        # Spelled out: "fail (3 of 5 rules)" read as 3 passing as well as 3 failing.
        verdict = (f"pass: all {total} rules passed" if passed
                   else f"fail: {failed} of {total} rules failed, {total - failed} passed")
        print(shown(f"{report['site']}: {verdict}"))
    return 0 if passed else 1
