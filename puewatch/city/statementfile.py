"""Read a voucher evidence statement (`puewatch.statement/1`, docs/report-schema.md) and check
the fields `verify` and `city` rely on, as reportfile does for reports: a missing or mistyped
field is a one-line error naming the file and the field (exit status 2); unknown fields are
kept (and signed)."""

from __future__ import annotations

import json
from typing import Any

from puewatch.city.reportfile import ReportError, check_signature_member, check_timezone, is_number, refuse_negative
from puewatch.core.timefmt import parse_time

SCHEMA = "puewatch.statement/1"

_FIELDS: dict[str, str] = {
    "site": "string", "tenant": "string", "period_start": "string", "period_end": "string",
    "it_energy_wh": "number", "facility_energy_wh": "number or null", "pue": "number or null",
    "tenant_pue": "number or null", "completeness": "number or null", "days": "list", "jobs": "list",
    "green_energy_wh": "number or null", "green_share": "number or null", "carbon_kg": "number or null",
    "emission_factors": "list", "green_entries": "list",
}
# What `city` reads of each certificate or PPA entry and each emission factor a statement names.
_ENTRY = {"kind": "string", "id": "string", "start": "string", "end": "string", "mwh": "number",
          "energy_in_cells_wh": "number"}
_FACTOR = {"region": "string", "year": "number", "kg_co2e_per_kwh": "number", "source": "string"}


def _ok(value: Any, kind: str) -> bool:
    return {
        "string": isinstance(value, str),
        "number": is_number(value),
        "number or null": value is None or is_number(value),
        "list": isinstance(value, list),
        "object or null": value is None or isinstance(value, dict),
    }[kind]


def _need(obj: dict[str, Any], key: str, kind: str, where: str, source: str) -> Any:
    if key not in obj:
        raise ReportError(f"{source}: {where}{key}: missing (schema {SCHEMA})")
    if not _ok(obj[key], kind):
        raise ReportError(f"{source}: {where}{key}: must be a {kind}, got {json.dumps(obj[key])[:40]}")
    return obj[key]


def validate_statement(data: Any, source: str) -> dict[str, Any]:
    """Check `data` (parsed JSON) against the statement fields the city tools use; returns it unchanged."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ReportError(f"{source}: schema: must be {SCHEMA!r}")
    for key, kind in _FIELDS.items():
        _need(data, key, kind, "", source)
    check_timezone(data, source)
    if "it_energy_known_wh" in data:  # statements made before it was added have none
        _need(data, "it_energy_known_wh", "number", "", source)
    refuse_negative(data, ("it_energy_wh", "it_energy_known_wh", "facility_energy_wh", "green_energy_wh", "carbon_kg"),
                    "", source)
    for i, day in enumerate(data["days"]):
        if not isinstance(day, dict):
            raise ReportError(f"{source}: days[{i}]: must be an object")
        for key in ("period_start", "period_end"):
            _need(day, key, "string", f"days[{i}].", source)
            try:
                parse_time(day[key], date_ok=False)  # a day's year is taken in the statement's calendar (city.green)
            except ValueError:
                raise ReportError(f"{source}: days[{i}].{key}: must be an RFC 3339 time, got "
                                  f"{json.dumps(day[key])[:40]}") from None
        for key in ("it_energy_wh", "facility_energy_wh"):
            _need(day, key, "number", f"days[{i}].", source)
        if "green_energy_wh" in day:  # statements made before it was added have none
            _need(day, "green_energy_wh", "number", f"days[{i}].", source)
        refuse_negative(day, ("it_energy_wh", "facility_energy_wh", "green_energy_wh"), f"days[{i}].", source)
    for name, fields in (("green_entries", _ENTRY), ("emission_factors", _FACTOR)):
        for i, item in enumerate(data[name]):
            if not isinstance(item, dict):
                raise ReportError(f"{source}: {name}[{i}]: must be an object")
            for key, kind in fields.items():
                _need(item, key, kind, f"{name}[{i}].", source)
            refuse_negative(item, ("mwh", "energy_in_cells_wh", "kg_co2e_per_kwh"), f"{name}[{i}].", source)
    ref = _need(data, "site_report", "object or null", "", source)
    if ref is not None:
        for key in ("sha256", "key_id", "period_start", "period_end"):
            _need(ref, key, "string", "site_report.", source)
    check_signature_member(data, source)
    return data
