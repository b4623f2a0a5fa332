"""Shared test configuration: hypothesis profiles and the import path of tests/naive.py."""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, settings

# tests/naive.py (the slow references) is imported as ``naive`` by the kernel tests.
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

# default: the JIT-compiled kernels are fast; the brute-force references set the pace.
settings.register_profile("default", max_examples=120, deadline=None, print_blob=True)
# nojit: `make test-kernels-nojit` runs the kernels as plain Python under coverage;
# a few examples per property are enough to reach every branch.
settings.register_profile(
    "nojit",
    max_examples=15,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# thorough: for hunting rare cases by hand (HYPOTHESIS_PROFILE=thorough).
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))



def pytest_sessionstart(session) -> None:
    """Compile the collector's kernels once, into Numba's cache, before any test runs.

    The collectors and demos the tests start load the pipeline's kernels from that cache
    (kernels/__pycache__); on a fresh clone it is cold, and the first of them would compile
    them before opening ingest (tens of seconds on 2 cores), inside some test's start-up
    deadline. Compiled here, each process the tests start loads them in about a second.
    """
    from puewatch.collector.pipeline import compile_kernels

    compile_kernels()
