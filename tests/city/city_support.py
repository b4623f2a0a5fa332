"""Helpers for the city tests: reports that follow docs/report-schema.md, and the CLI as a subprocess.

The reports are built here as plain dicts (the report engine is not needed to
test what reads its output); `make_report` fills every field of the schema so a
test changes only what it is about.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def make_report(
    site: str = "alpha",
    *,
    facility_energy_wh: float | None = 1_270_000.0,
    it_energy_wh: float | None = 1_000_000.0,
    annual: bool = True,
    category: int = 2,
    completeness: float = 0.995,
    pue_uncertainty: float | None = 0.021,
    ref: float | None = None,
    monthly_pue: list[float | None] | None = None,
    pue: float | None | str = "from energies",
) -> dict[str, Any]:
    """A schema-conformant report; `pue` is facility/IT unless given (a number or None)."""
    if pue == "from energies":
        pue = None if facility_energy_wh is None or it_energy_wh is None else facility_energy_wh / it_energy_wh
    if annual:
        start, end, label = "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", f"PUE_L{category},YC"
    else:
        start, end, label = "2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z", f"iPUE_L{category} 2025-03-01..2025-04-01"
    if monthly_pue is None:
        monthly_pue = [pue] * (12 if annual else 1) if isinstance(pue, float) else []
    first_month = 1 if annual else 3
    monthly = []
    # Each month an equal part of the IT energy and its PUE times that: the rows add up to the report's totals
    # (as a report's do) where the months' PUEs are the report's; a test that gives other PUEs gets months whose
    # energies give those PUEs (and do not add up to the totals: for the rules alone, not a report to load).
    n = len(monthly_pue)
    it_month = it_energy_wh / n if n and it_energy_wh is not None else None
    agree = all(m == pue for m in monthly_pue) and it_month is not None and facility_energy_wh is not None
    for i, m_pue in enumerate(monthly_pue):
        m = first_month + i
        monthly.append({
            "period_start": f"2025-{m:02d}-01T00:00:00Z",
            "period_end": f"2025-{m + 1:02d}-01T00:00:00Z" if m < 12 else "2026-01-01T00:00:00Z",
            "pue": m_pue,
            "facility_energy_wh": facility_energy_wh / n if agree else (
                None if m_pue is None or it_month is None else m_pue * it_month),
            "it_energy_wh": it_month,
            "completeness": 1.0,
        })
    return {
        "schema": "puewatch.report/1",
        "site": site,
        "period_start": start,
        "period_end": end,
        "annual": annual,
        "category": category,
        "label": label,
        "pue": pue,
        "pue_uncertainty": pue_uncertainty,
        "facility_energy_wh": facility_energy_wh,
        "it_energy_wh": it_energy_wh,
        "completeness": completeness,
        "estimated_share": 0.01,
        "clf": 0.2,
        "plf": 0.05,
        "erf": None,
        "ref": ref,
        "wue": None,
        "zones": [{"zone": "hall-a", "ppue": 1.2, "boundary_energy_wh": 600_000.0, "it_energy_wh": 500_000.0,
                   "completeness": 1.0}],
        "meters": [{"meter": "utility", "role": "facility", "zone": None, "point": "utility input",
                    "energy_wh": facility_energy_wh, "estimated_wh": 0.0, "method": "register", "completeness": 1.0,
                    "gaps": [], "resets": 0, "accuracy_pct": 0.5}],
        "monthly": monthly,
        "daily": [],
        "generated_at": "2026-01-02T08:00:00Z",
        "generator": "puewatch 0.1.0",
        "source": {"kind": "embedded", "path": "/var/lib/puewatch/store.sqlite"},
    }


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`puewatch ARGS...` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "puewatch.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )


REPORT_SCHEMA_DOC = Path(__file__).resolve().parents[2] / "docs" / "report-schema.md"


def signature_vector() -> dict[str, Any]:
    """The test vector in docs/report-schema.md, as written there (nothing recomputed)."""
    import re

    text = REPORT_SCHEMA_DOC.read_text(encoding="utf-8")
    section = text[text.index("### Test vector"):]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", section, re.S | re.M)
    pems = [body for kind, body in blocks if kind == "pem"]
    (report_json,) = [body for kind, body in blocks if kind == "json"]
    (signed_line,) = [body for kind, body in blocks if kind == "text"]
    return {
        "private_pem": pems[0],
        "public_pem": pems[1],
        "raw_public_hex": re.search(r"raw\s+`([0-9a-f]{64})`", section).group(1),
        "key_id": re.search(r"key id `([0-9a-f]{16})`", section).group(1),
        "report_json": report_json,
        "signed_bytes": signed_line.removesuffix("\n").encode("utf-8"),
        "signed_length": int(re.search(r"(\d+) bytes of UTF-8", section).group(1)),
    }
