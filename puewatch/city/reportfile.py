"""Read a report JSON file and check the fields the city tools rely on.

The schema (docs/report-schema.md) is a contract: later versions add fields,
never rename or remove them. So unknown fields are kept (and signed), while a
missing or mistyped field that a check needs is bad input: a one-line error
naming the file and the field, exit status 2. Duplicate keys and NaN/Infinity
are refused because a signed document must have exactly one reading.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from puewatch.errors import UserError
from puewatch.signing import MAX_SAFE_INTEGER, BeyondDouble, short_digits

SCHEMA = "puewatch.report/1"


class ReportError(UserError):
    """A report file cannot be read or does not follow the schema (exit status 2)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (the schema writes an unknown value as null)")


def _json_integer(digits: str) -> int | float:
    # A JSON number is an IEEE double to every other reader (RFC 8785, I-JSON). An integer beyond
    # 2^53 - 1 whose digits are a double's is read as that double, so it canonicalises as it was
    # signed: its exact value (10000000000000000 for 1e16), or its shortest digits as ECMAScript
    # and RFC 8785 write it (18446744073709552000 for 2^64, whose exact value ...1616 they do not
    # write). Digits that are no double's (9007199254740993) stay an int: readers in other
    # languages would differ on it, and signing or verifying refuses it, naming it.
    # ECMAScript writes a double of 1e21 or more with an exponent (1.2345678901234566e+25), so from there on only
    # the exact value is a double's integer digits: 12345678901234566000000000 (Python's repr padded) passed here
    # while the JavaScript verifier refused it (found by the signature audit).
    value = int(digits)
    if abs(value) <= MAX_SAFE_INTEGER:
        return value
    try:
        double = float(value)
    except OverflowError:  # beyond every double: kept, for the checks to refuse naming the field
        return value
    if double == value or (abs(double) < 1e21 and int(Decimal(repr(double))) == value):
        return double
    return value


def _json_float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else BeyondDouble(text)


# How deep a document's objects and arrays may nest: a report is five levels deep, a statement four; a verifier
# in another language need hold no deeper one (JavaScript's recursive canonicalisers overflow their stack a few
# thousand levels down, Python's json a thousand).
MAX_DEPTH = 32


def _depth_problem(value: Any) -> str:
    """Where `value` nests deeper than MAX_DEPTH ("" where it does not): containers alone are walked, and a path is
    made only for the one found (a path for every value took 2.3 s of a 9 MB file: found by the review)."""
    stack: list[tuple[Any, int, tuple]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            where = "".join(f".{k}" if isinstance(k, str) else f"[{k}]" for k in path).lstrip(".")
            return f"{where or 'the document'} is nested deeper than {MAX_DEPTH} levels"
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((v, depth + 1, (*path, k)) for k, v in items if isinstance(v, (dict, list)))
    return ""


def parse_json(text: str, source: str) -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity, no number beyond every double, big integers as JavaScript
    reads them, no byte order mark, at most MAX_DEPTH levels deep."""
    if text.startswith("\ufeff"):
        # As JSON.parse: RFC 8259 lets a parser refuse it. Said in words, not as Python's decoder hint.
        raise ReportError(f"{source}: starts with a UTF-8 byte order mark (BOM): a report or statement is UTF-8 JSON "
                          "without one (save it as UTF-8, not 'UTF-8 with BOM')")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                          parse_int=_json_integer, parse_float=_json_float)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise ReportError(f"{source}: not a valid report: {exc}") from None
    except RecursionError:
        raise ReportError(f"{source}: not a valid report: nested deeper than {MAX_DEPTH} levels") from None
    why = _depth_problem(data)
    if why:
        raise ReportError(f"{source}: not a valid report: {why}")
    return data


def parse_report(text: str, source: str) -> dict[str, Any]:
    """Parse and validate report JSON text; errors name `source`."""
    return validate_report(parse_json(text, source), source)


def read_text(path: str | Path, what: str = "report") -> str:
    """A document's text (`-` reads standard input); a missing or unreadable file is a one-line error."""
    path = str(path)
    try:
        if path == "-":
            import sys

            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: {what} file not found") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read {what}: {exc.strerror}") from None


def load_report(path: str | Path) -> dict[str, Any]:
    """Read and validate a report file (`-` reads standard input)."""
    return parse_report(read_text(path), str(path))


def load_document(path: str | Path) -> dict[str, Any]:
    """A signed document of either kind, told apart by its `schema`: a site report
    (`puewatch.report/1`) or a voucher evidence statement (`puewatch.statement/1`)."""
    from puewatch.city.statementfile import SCHEMA as STATEMENT, validate_statement

    data = parse_json(read_text(path, "document"), str(path))
    if isinstance(data, dict) and data.get("schema") == STATEMENT:
        return validate_statement(data, str(path))
    return validate_report(data, str(path))


def refuse_negative(obj: dict[str, Any], keys: tuple[str, ...], where: str, source: str) -> None:
    """A one-line error naming the first of `keys` in `obj` whose value is negative (`core.floors.negative_quantity`):
    a report with -1.3e9 Wh of facility energy loaded, passed `check` and was left out of the city's PUE as "IT
    energy is zero" (found by the city audit)."""
    from puewatch.core.floors import negative_quantity

    for key in keys:
        if negative_quantity(obj.get(key)):
            raise ReportError(f"{source}: {where}{key}: {obj[key]!r} is negative, not a possible value (energies and "
                              "carbon are sums of measured intervals, each >= 0)")


# A report's energies and carbon (and its months'), none of which can be negative.
_QUANTITIES = ("facility_energy_wh", "it_energy_wh", "facility_energy_joint_wh", "it_energy_joint_wh",
               "green_energy_wh", "carbon_kg", "renewable_meters_wh")


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean), finite: an integer too large for a float (1 and 400 zeros) is none."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _need(obj: dict[str, Any], key: str, kind: str, where: str, source: str) -> Any:
    if key not in obj:
        raise ReportError(f"{source}: {where}{key}: missing (schema {SCHEMA})")
    value = obj[key]
    ok = {
        "string": isinstance(value, str),
        "bool": isinstance(value, bool),
        "number": is_number(value),
        "number or null": value is None or is_number(value),
        "list": isinstance(value, list),
    }[kind]
    if not ok:
        shown = (value.text if isinstance(value, BeyondDouble) else short_digits(str(value))
                 if isinstance(value, int) and not isinstance(value, bool) else json.dumps(value)[:40])
        raise ReportError(f"{source}: {where}{key}: must be a {kind}, got {shown}")
    return value


def validate_report(data: Any, source: str) -> dict[str, Any]:
    """Check `data` (parsed JSON) against the fields the city tools use; returns it unchanged."""
    if not isinstance(data, dict):
        raise ReportError(f"{source}: a report must be a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise ReportError(f"{source}: schema: must be {SCHEMA!r}, got {json.dumps(schema)[:40]}")
    for key in ("site", "period_start", "period_end", "label"):
        _need(data, key, "string", "", source)
    _need(data, "annual", "bool", "", source)
    # The period as times (RFC 3339), start before end: the rules judge it, not the `annual` flag alone.
    from puewatch.core.timefmt import parse_time

    times = {}
    for key in ("period_start", "period_end", *(["generated_at"] if data.get("generated_at") is not None else [])):
        try:
            times[key] = parse_time(str(data[key]), date_ok=False)  # a date alone: midnight in which zone?
        except ValueError:
            raise ReportError(f"{source}: {key}: must be an RFC 3339 time, got {json.dumps(data[key])[:40]}") from None
    if times["period_end"] <= times["period_start"]:
        raise ReportError(f"{source}: period_end {data['period_end']} is not after period_start {data['period_start']}")
    check_timezone(data, source)
    category = data.get("category")
    if category not in (1, 2, 3) or isinstance(category, bool):
        raise ReportError(f"{source}: category: must be 1, 2 or 3, got {json.dumps(category)[:40]}")
    for key in ("pue", "pue_uncertainty", "facility_energy_wh", "it_energy_wh", "ref"):
        _need(data, key, "number or null", "", source)
    for key in ("pue_joint", "pue_joint_uncertainty", "facility_energy_joint_wh", "it_energy_joint_wh"):  # added later: optional
        if key in data:
            _need(data, key, "number or null", "", source)
    refuse_negative(data, _QUANTITIES, "", source)
    for key in ("pue_uncertainty", "pue_joint_uncertainty"):
        if is_number(data.get(key)) and data[key] < 0:
            # A half-width: -0.5 passed max_uncertainty 0.1 (found by the input audit).
            raise ReportError(f"{source}: {key}: {data[key]!r} is negative, not a possible value (an uncertainty is "
                              "the half-width of an interval, >= 0)")
    completeness = _need(data, "completeness", "number", "", source)
    if not 0 <= completeness <= 1:
        raise ReportError(f"{source}: completeness: must be in [0, 1], got {completeness}")
    _need(data, "monthly", "list", "", source)
    if "daily" in data:  # made by every puewatch that `statement` and `city` read it from; checked where present
        _need(data, "daily", "list", "", source)
    for rows in ("monthly", "daily"):
        if rows in data:
            _validate_rows(data, rows, times["period_start"], times["period_end"], source)
    _validate_carbon(data, source)
    check_signature_member(data, source)
    return data


# The most a period's energy may differ from the sum of its rows' (float sums in another order; a row is a
# sum of the same days).
_ROWS_REL_TOL = 1e-9


def _validate_rows(data: dict[str, Any], rows: str, start_ns: int, end_ns: int, source: str) -> None:
    """A report's `monthly` or `daily` rows, as the report engine writes them: objects whose periods (RFC 3339)
    follow each other without gap or overlap from the report's start to its end (a February month inside a
    report of 1-3 January passed `max_monthly_pue`), their energies numbers or null and not negative, their
    completeness in [0, 1]; and, where every row has an energy and the report does, the rows add up to it
    (the period's totals are sums of its days: daily rows saying PUE 1.1 under totals saying 1.5 gave a
    voucher statement the 1.1 it claimed; found by the input audit)."""
    from puewatch.core.timefmt import parse_time

    at = start_ns
    sums = {"facility_energy_wh": 0.0, "it_energy_wh": 0.0}
    for i, row in enumerate(data[rows]):
        where = f"{rows}[{i}]."
        if not isinstance(row, dict):
            raise ReportError(f"{source}: {rows}[{i}]: must be an object")
        bounds = []
        for key in ("period_start", "period_end"):
            text = _need(row, key, "string", where, source)
            try:
                bounds.append(parse_time(text, date_ok=False))
            except ValueError:
                raise ReportError(f"{source}: {where}{key}: must be an RFC 3339 time, got {json.dumps(text)[:40]}") from None
        if bounds[0] != at or bounds[1] <= bounds[0] or bounds[1] > end_ns:
            raise ReportError(f"{source}: {where}period_start..period_end {row['period_start']}..{row['period_end']}: the "
                              f"rows must follow each other from the report's period_start to its period_end, without "
                              f"gap or overlap ({'the report begins' if i == 0 else 'the row before ends'} at "
                              f"{data['period_start'] if i == 0 else data[rows][i - 1]['period_end']})")
        at = bounds[1]
        # Every puewatch wrote a row's PUE and its two energies: one without them could claim any PUE, which no
        # sum and no ratio of its energies would then check (found by the closing review).
        for key in ("pue", "facility_energy_wh", "it_energy_wh"):
            _need(row, key, "number or null", where, source)
        for key in ("pue_joint", "completeness", "facility_energy_joint_wh", "it_energy_joint_wh"):
            if key in row:
                _need(row, key, "number or null", where, source)
        c = row.get("completeness")
        if c is not None and not 0 <= c <= 1:
            raise ReportError(f"{source}: {where}completeness: must be in [0, 1], got {c}")
        refuse_negative(row, _QUANTITIES, where, source)
        for key in sums:
            value = row.get(key)
            sums[key] = sums[key] + value if is_number(value) and sums[key] is not None else None
    if data[rows] and at != end_ns:
        raise ReportError(f"{source}: {rows}: the last row ends at {data[rows][-1]['period_end']}, not at the report's "
                          f"period_end {data['period_end']}")
    for key, total in sums.items():
        stated = data.get(key)
        if data[rows] and total is not None and is_number(stated) and (
                abs(total - stated) > _ROWS_REL_TOL * max(abs(stated), abs(total)) + 1e-6):
            raise ReportError(f"{source}: {rows}: the rows' {key} add up to {total!r}, the report's is {stated!r}: "
                              "the report contradicts itself (its totals are sums of its days)")



def check_signature_member(data: dict[str, Any], source: str) -> None:
    """A document (a report, a statement) is unsigned (no `signature`) or signed (an object): `"signature":
    null` is neither, and no puewatch writes it (it crashed `check` and `city` without --pubkeys: found by
    the city audit)."""
    if "signature" in data and not isinstance(data["signature"], dict):
        raise ReportError(f"{source}: signature: must be an object, got {json.dumps(data['signature'])[:40]}")


# `report --carbon` fields `city --statements` reads (optional: a report made without --carbon has none).
_CARBON_LISTS = {
    "green_entries": {"kind": "string", "id": "string", "start": "string", "end": "string", "mwh": "number",
                      "energy_in_period_wh": "number"},
    "emission_factors": {"region": "string", "year": "number", "kg_co2e_per_kwh": "number", "source": "string"},
}


def _validate_carbon(data: dict[str, Any], source: str) -> None:
    for key in ("green_energy_wh", "carbon_kg", "renewable_meters_wh"):
        if key in data:
            _need(data, key, "number or null", "", source)
    for name, fields in _CARBON_LISTS.items():
        if name not in data:
            continue
        for i, item in enumerate(_need(data, name, "list", "", source)):
            if not isinstance(item, dict):
                raise ReportError(f"{source}: {name}[{i}]: must be an object")
            for key, kind in fields.items():
                _need(item, key, kind, f"{name}[{i}].", source)
            refuse_negative(item, ("mwh", "energy_in_period_wh", "kg_co2e_per_kwh"), f"{name}[{i}].", source)


def report_annual(report: dict[str, Any]) -> tuple[bool, str]:
    """Whether a (validated) report is an annual one by `timefmt.annual_period` (its period, and when it was
    made), whatever its `annual` field says; and why not, where that field says it is."""
    from puewatch.core.timefmt import calendar_of, parse_time

    cal = calendar_of(report)
    start, end = parse_time(report["period_start"]), parse_time(report["period_end"])
    made = parse_time(report["generated_at"]) if report.get("generated_at") is not None else None
    format_period, is_annual = cal.format_period, cal.is_annual
    if made is None and is_annual(start, end):
        # Whether the year had ended when it was measured is not known: not an annual PUE to the city (a report
        # without generated_at passed require_annual: found by the city audit; puewatch always writes it).
        return False, (f"the report says annual, but it does not say when it was made (generated_at), so whether "
                       f"its period {format_period(start, end)} had ended is not known" if report["annual"] else "")
    if cal.annual_period(start, end, made):
        return bool(report["annual"]), ""
    if not is_annual(start, end):
        why = f"its period {format_period(start, end)} is not 12 whole calendar months"
    else:
        why = f"its period {format_period(start, end)} had not ended when it was made ({report['generated_at']})"
    return False, (f"the report says annual, but {why}" if report["annual"] else "")


def report_period(report: dict[str, Any]) -> str:
    """A report's period as `timefmt.Calendar.format_period` writes it in the report's calendar (dates where
    they are its midnights); as written where its times are not RFC 3339 or its time zone is not known."""
    from puewatch.core.timefmt import calendar_of, parse_time

    try:
        return calendar_of(report).format_period(parse_time(report["period_start"]), parse_time(report["period_end"]))
    except (ValueError, TypeError):
        return f"{report['period_start']}..{report['period_end']}"


def check_timezone(data: dict[str, Any], source: str) -> None:
    """A report's or statement's `timezone`, the calendar its days, months and years are in, names a time zone
    (absent: made before there was one, UTC), else ReportError."""
    from puewatch.core.timefmt import check_zone

    if "timezone" in data:
        zone = data["timezone"]
        try:
            check_zone(zone if isinstance(zone, str) else "")
        except ValueError:
            raise ReportError(f"{source}: timezone: must be an IANA time zone name (e.g. Asia/Shanghai, UTC), got "
                              f"{json.dumps(zone)[:40]}") from None
