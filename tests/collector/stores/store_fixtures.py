"""Fixtures for the store tests: real influxd 1.6.7 and VictoriaMetrics processes (see tests/servers.py).

A plain module imported by the test files (not a conftest.py: tests/agent imports its conftest by
name, and a second module called conftest would shadow it when both directories are collected)."""

from __future__ import annotations

import pytest

from servers import Influxd, VictoriaMetrics


@pytest.fixture
def influx(tmp_path):
    server = Influxd(tmp_path / "influxd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx_auth(tmp_path):
    server = Influxd(tmp_path / "influxd-auth", auth=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def vm(tmp_path):
    server = VictoriaMetrics(tmp_path / "vm")
    server.start()
    yield server
    server.stop()
