"""Fixtures for the tests in this folder: they live in agent_support.py, which the tests import by that unique name
(several folders have a conftest.py, so `from agent_support import ...` would be ambiguous)."""

from agent_support import *  # noqa: F401,F403
