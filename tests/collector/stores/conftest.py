"""Fixtures for the store tests: real influxd 1.6.7 and VictoriaMetrics processes (see tests/servers.py)."""

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
