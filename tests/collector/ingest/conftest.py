"""Fixtures for the tests in this folder: they live in ingest_support.py, which the tests import by that unique name
(several folders have a conftest.py, so `from ingest_support import ...` would be ambiguous)."""

from ingest_support import *  # noqa: F401,F403
