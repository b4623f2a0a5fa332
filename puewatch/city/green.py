"""`puewatch city --statements`: the statements' green share and carbon, and the sites' certificates.

Rules (docs/city-guide.md, "Green share, carbon and certificates"), each a RuleResult with the numbers:

- `green_share` (per statement): its `green_share` is its `green_energy_wh` / `facility_energy_wh`
  (the allocation rule gives each cell's green share to the facility-inclusive energy in it, so
  a tenant's share is its green energy over its facility-inclusive energy), the green energy is
  no more than the facility-inclusive energy (a cell's green share is at most 1), and every
  certificate or PPA entry it names is one its site's signed report lists, with the same kind,
  period and MWh, and no more of it than the report counts in its period.
- `carbon` (per statement): its `carbon_kg` is what the report's emission factors give for its
  grid energy: sum over the calendar years (the statement's `timezone`) of its days of (facility-inclusive - green) Wh / 1000 x the
  report's factor for that year, within CARBON_REL_TOL of the carbon its facility-inclusive energy
  would carry with no green energy (the statement sums per record and cell, the city per year).
- `green_within_site` (per report): the statements naming it claim, together, no more green energy
  than its `green_energy_wh` (renewable meters + certificates and PPAs in its period) x (1 + SUM_REL_TOL).
- `certificate` (per certificate or PPA id over all the reports given): claimed by one site only,
  with the same MWh everywhere, and its parts in the reports' periods add up to no more than its MWh.

Whether each cell's share is right needs the cells, which a city does not have: a share taken from
the site's other tenants shows in `green_within_site`, one not matching the carbon in `carbon`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from puewatch.city.check import RuleResult, fmt
from puewatch.core.names import name_key
from puewatch.core.site import site_key
from puewatch.core.timefmt import parse_time

SHARE_REL_TOL = 1e-12  # green / facility-inclusive: the same two doubles divided, so equal exactly
SUM_REL_TOL = 1e-9  # sums of the same energies in other orders: E_DC, green energy, a certificate's parts
# Carbon: the statement adds fac x (1 - g) x EF per record and cell (at most ~1e7 terms for a
# year of minute cells), the city (fac - green) x EF per year: rounding below 1e7 x 2^-53 = 1.1e-9
# of the sum of the terms' magnitudes, at most fac x EF.
CARBON_REL_TOL = 1e-9
WH_PER_MWH = 1e6


def kwh(wh: float) -> str:
    return f"{wh / 1000:,.3f} kWh"


def _mwh(wh: float) -> str:
    return f"{wh / WH_PER_MWH:.6g} MWh"


def _entry_problems(s: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """What is wrong with the certificates and PPAs the statement names, against its report's."""
    if not s["green_entries"]:
        return []
    if "green_entries" not in report:
        return [f"it names {len(s['green_entries'])} certificate/PPA entries; the report lists none (made without "
                "--carbon)"]
    listed = {e["id"]: e for e in report["green_entries"]}
    out = []
    for e in s["green_entries"]:
        r = listed.get(e["id"])
        if r is None:
            out.append(f"{e['kind']} {e['id']} is not among the report's green entries")
        elif (e["kind"], e["start"], e["end"], e["mwh"]) != (r["kind"], r["start"], r["end"], r["mwh"]):
            out.append(f"{e['kind']} {e['id']} is {e['mwh']:g} MWh over {e['start']}..{e['end']} here, "
                       f"{r['mwh']:g} MWh over {r['start']}..{r['end']} in the report")
        elif e["energy_in_cells_wh"] > r["energy_in_period_wh"] * (1 + SUM_REL_TOL):
            out.append(f"{e['kind']} {e['id']}: {_mwh(e['energy_in_cells_wh'])} counted here, "
                       f"{_mwh(r['energy_in_period_wh'])} in the report's period")
    return out


def green_share_problems(share: float | None, green: float, fac: float) -> list[str]:
    """What is wrong with a green share beside its green and facility(-inclusive) energies (fac > 0): it is
    green / fac (the same two doubles divided: equal to SHARE_REL_TOL), and the green energy lies in 0 .. fac (a
    cell's green share is at most 1). The one rule of a statement's green share and a report's (check)."""
    expected = green / fac
    problems = []
    if share is None or abs(share - expected) > SHARE_REL_TOL * expected:
        problems.append(f"green share {share if share is None else fmt(share)} is not green / facility-inclusive "
                        f"{fmt(expected)}")
    if not 0 <= green <= fac * (1 + SHARE_REL_TOL):
        problems.append(f"green {kwh(green)} is outside 0..its facility-inclusive {kwh(fac)} (a cell's green share "
                        "is at most 1)")
    return problems


def green_share_rule(s: dict[str, Any], report: dict[str, Any]) -> RuleResult:
    green, share, fac = s["green_energy_wh"], s["green_share"], s["facility_energy_wh"]
    if green is None and share is None:
        return RuleResult("green_share", True, None, None, None,
                          "the statement claims no green energy (null): nothing to check: pass")
    if green == 0 and fac == 0 and share is None:
        # No facility-inclusive energy (a tenant whose records hold 0 Wh): no green energy, no share to weigh;
        # the entries it names must still be the report's.
        problems = _entry_problems(s, report)
        head = "the statement has no facility-inclusive energy and claims no green energy"
        if problems:
            return RuleResult("green_share", False, None, None, None, f"{head}; " + "; ".join(problems) + ": fail")
        return RuleResult("green_share", True, None, None, None, f"{head}: nothing to check: pass")
    if green is None or fac is None or fac <= 0:
        return RuleResult("green_share", False, share, None, "==", f"green share {share} with green energy {green} "
                          f"and facility-inclusive energy {fac}: a share needs both: fail")
    expected = green / fac
    problems = green_share_problems(share, green, fac) + _entry_problems(s, report)
    head = (f"green share {fmt(share) if share is not None else 'null'}, green {kwh(green)} of facility-inclusive "
            f"{kwh(fac)} (= {fmt(expected)})")
    if problems:
        return RuleResult("green_share", False, share, expected, "==", f"{head}: " + "; ".join(problems) + ": fail")
    n = len(s["green_entries"])
    return RuleResult("green_share", True, share, expected, "==",
                      f"{head}; its {n} certificate/PPA entr{'y is' if n == 1 else 'ies are'} the report's: pass")


def _years(s: dict[str, Any]) -> dict[int, tuple[float, float]] | str:
    """(facility-inclusive Wh, green Wh) per calendar year (the statement's: its `timezone`) of the
    statement's days, or why not known."""
    from puewatch.core.timefmt import calendar_of

    try:
        cal = calendar_of(s)
    except ValueError as exc:
        return f"its timezone: {exc}"

    def year(text: str) -> int | None:
        try:
            return cal.year(parse_time(text))
        except (TypeError, ValueError):
            return None

    years = sorted({year(d["period_start"]) for d in s["days"]} or {year(s["period_start"])}, key=str)
    if None in years:
        return "a day's period_start is not an RFC 3339 time"
    if len(years) == 1:
        return {years[0]: (s["facility_energy_wh"], s["green_energy_wh"])}
    if any("green_energy_wh" not in d for d in s["days"]):
        return f"its days span {years[0]}..{years[-1]} and carry no green energy per day: not split by year"
    out: dict[int, tuple[float, float]] = {}
    for d in s["days"]:
        f, g = out.get(year(d["period_start"]), (0.0, 0.0))
        out[year(d["period_start"])] = (f + d["facility_energy_wh"], g + d["green_energy_wh"])
    return out


def carbon_rule(s: dict[str, Any], report: dict[str, Any]) -> RuleResult:
    stated = s["carbon_kg"]
    if stated is None:
        return RuleResult("carbon", True, None, None, None,
                          "the statement states no carbon (null: no emission factor): nothing to check: pass")
    if s["facility_energy_wh"] is None or s["green_energy_wh"] is None:
        return RuleResult("carbon", False, stated, None, "==", f"carbon {fmt(stated)} kg stated without "
                          "facility-inclusive or green energy: fail")
    factors = {f["year"]: f for f in report.get("emission_factors") or []}
    if not factors:
        return RuleResult("carbon", False, stated, None, "==", f"carbon {fmt(stated)} kg: the report states no "
                          "emission factors (made without --carbon, or a year without a factor): fail")
    parts = _years(s)
    if isinstance(parts, str):
        return RuleResult("carbon", False, stated, None, "==", f"carbon {fmt(stated)} kg: {parts}: fail")
    own = {f["year"]: f["kg_co2e_per_kwh"] for f in s["emission_factors"]}
    expected = scale = 0.0
    terms = []
    for year, (fac, green) in sorted(parts.items()):
        f = factors.get(year)
        if f is None:
            return RuleResult("carbon", False, stated, None, "==", f"carbon {fmt(stated)} kg: the report has no "
                              f"emission factor for {year}: fail")
        ef = f["kg_co2e_per_kwh"]
        expected += (fac - green) / 1000 * ef
        scale += fac / 1000 * ef
        note = ("" if own.get(year) == ef else ", the statement names no factor" if year not in own
                else f", the statement's own factor {own[year]:g}")
        terms.append(f"{year}: ({kwh(fac)} - {kwh(green)} green) x {ef:g} kg/kWh ({f['source']}{note})")
    tol = CARBON_REL_TOL * scale
    ok = abs(stated - expected) <= tol
    return RuleResult("carbon", ok, stated, expected, "==",
                      f"carbon {fmt(stated)} kg {'equals' if ok else 'is not'} the report's factors x its grid energy "
                      f"{fmt(expected)} kg ({'; '.join(terms)}; tolerance {tol:.2g} kg): {'pass' if ok else 'fail'}")


def green_within_site_rule(claims_wh: list[float], report: dict[str, Any]) -> RuleResult:
    total, n = sum(claims_wh), len(claims_wh)
    site = report.get("green_energy_wh")
    if total <= 0:
        return RuleResult("green_within_site", True, total, site, "<=",
                          f"{n} statement(s) claim no green energy: pass")
    if site is None:
        why = "made without --carbon" if "green_energy_wh" not in report else "its E_DC is not known"
        return RuleResult("green_within_site", False, total, None, "<=", f"{n} statement(s) claim {kwh(total)} green; "
                          f"the report states no green energy ({why}): fail")
    ok = total <= site * (1 + SUM_REL_TOL)
    return RuleResult("green_within_site", ok, total, site, "<=",
                      f"{n} statement(s) claim {kwh(total)} green, the site's green energy (renewable meters + "
                      f"certificates/PPAs in its period) {kwh(site)}: "
                      + ("pass" if ok else "more than the site had: fail"))


def certificate_rows(reports: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per certificate or PPA id over all the reports given: who claims how much of it, and the rule."""
    # By the id as people tell ids apart (core.names.name_key): "GEC-1" and "gec-1" + U+200D are one certificate,
    # which two sites claimed, each passing, under two spellings (found by the HTML audit).
    claims: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for path, r in reports:
        for e in r.get("green_entries") or []:
            claims[name_key(e["id"])].append((path, r, e))
    out = []
    for _, got in sorted(claims.items()):
        spellings = sorted({e["id"] for _, _, e in got})
        cid = spellings[0]
        sites = sorted({r["site"] for _, r, _ in got})
        # Told apart as puewatch tells sites apart (core.site.site_key): "fra1" and "FRA1" are one site.
        n_sites = len({site_key(r["site"]) for _, r, _ in got})
        mwh = sorted({e["mwh"] for _, _, e in got})
        total = sum(e["energy_in_period_wh"] for _, _, e in got)
        limit = mwh[0] * WH_PER_MWH
        who = ", ".join(f"{r['site']} ({p}: {_mwh(e['energy_in_period_wh'])})" for p, r, e in got)
        problems = []
        if n_sites > 1:
            problems.append(f"claimed by {n_sites} sites ({', '.join(sites)}): a certificate is retired for one "
                            "site")
        if len(mwh) > 1:
            problems.append(f"entered as {' and '.join(f'{m:g}' for m in mwh)} MWh")
        if total > limit * (1 + SUM_REL_TOL):
            problems.append(f"{_mwh(total)} claimed in all, more than its {mwh[0]:g} MWh")
        kind = got[0][2]["kind"]
        spelt = f" (its id written {len(spellings)} ways: {', '.join(map(repr, spellings))})" if len(spellings) > 1 else ""
        evidence = (f"{kind} {cid} ({mwh[0]:g} MWh){spelt}: {_mwh(total)} claimed by {who}: "
                    + ("; ".join(problems) + ": fail" if problems else "pass"))
        out.append({"id": cid, "kind": kind, "mwh": mwh[0], "sites": sites,
                    "claims": [{"site": r["site"], "report": p, "energy_in_period_wh": e["energy_in_period_wh"]}
                               for p, r, e in got],
                    "rule": RuleResult("certificate", not problems, total, limit, "<=", evidence)})
    return out
