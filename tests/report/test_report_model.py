"""The typed report (puewatch.report.model) against its contract, docs/report-schema.md: every
field the document lists is a field of the rows, and no row has a field the document does not list."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from puewatch.report.model import MeterRow, PeriodRow, Report, ZoneRow

SCHEMA_DOC = Path(__file__).resolve().parents[2] / "docs" / "report-schema.md"


def _serialised(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.metadata.get("serialised", True)}


def _field_table() -> dict[str, str]:
    """The top-level table: each field name -> its row's description (names sharing a row share it)."""
    out = {}
    for line in SCHEMA_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            for name in re.findall(r"`([a-z_]+)`", cells[0]):
                out[name] = cells[-1]
    return out


def _listed(description: str) -> set[str]:
    """The names of a list's items' fields: backticked names after 'per ...:', less parenthesised notes."""
    text = re.sub(r"\([^()]*\)", "", description.split(":", 1)[1])
    return set(re.findall(r"`([a-z_]+)`", text))


def test_the_report_s_fields_are_the_schema_s() -> None:
    table = _field_table()
    documented = set(table) - {"signature"}  # added by `puewatch sign`, not by the report
    # The signature table further down lists its own fields: only the report's are wanted here.
    documented -= {"alg", "key_id", "value", "canonicalization"}
    assert _serialised(Report) == documented
    assert "figures" not in _serialised(Report)


def test_each_row_s_fields_are_the_schema_s() -> None:
    table = _field_table()
    assert _serialised(ZoneRow) == _listed(table["zones"])
    assert _serialised(MeterRow) == _listed(table["meters"])
    assert _serialised(PeriodRow) == _listed(table["monthly"]) == _listed(table["daily"])
