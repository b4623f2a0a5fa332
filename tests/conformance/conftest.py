"""Fixtures for the conformance tests: they live in conformance_support.py (imported by that unique name)."""

from conformance_support import snmpsim_shared  # noqa: F401
