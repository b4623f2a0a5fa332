"""puewatch.benchmarks: `puewatch bench ...`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def emit(report: dict[str, Any], as_json: bool, print_table: Callable[[dict[str, Any]], None]) -> int:
    """Print a benchmark's report as JSON (`--json`) or as its table; the command's exit status."""
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 0
