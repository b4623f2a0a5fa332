"""Sample sources, one module each, registered by name.

Adding a source is one module here (a `Config` dataclass and a `Source`
class), one entry in `REGISTRY`, one fixture and one test.
"""

from __future__ import annotations

import importlib

# name -> module; the module defines `Config` (its [sources.<name>] table) and `Source`.
REGISTRY: dict[str, str] = {
    "nvml": "puewatch.agent.sources.nvml",
    "host": "puewatch.agent.sources.host",
    "sim": "puewatch.agent.sources.sim",
    "jobs": "puewatch.agent.sources.jobs",
}


def load(name: str):
    return importlib.import_module(REGISTRY[name])
