"""The test servers themselves: a first start that loses the race for its free port tries new ports."""

from __future__ import annotations

import socket

import pytest

import servers
from puewatch.benchmarks import servers as impl


def test_a_port_taken_before_the_first_start_gets_new_ports(tmp_path, monkeypatch):
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind((servers.LOOPBACK, 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    picks = iter([busy])
    real = impl.free_port
    monkeypatch.setattr(impl, "free_port", lambda: next(picks, None) or real())
    try:
        db = servers.Influxd(tmp_path / "influxd")
        assert db.port == busy  # somebody took it between the pick and the start
        with db:
            assert db.port != busy and db.url.endswith(f":{db.port}")
            assert f"127.0.0.1:{db.port}" in db.config.read_text()
            db.query("CREATE DATABASE x")
            port = db.port
            db.stop()
            db.start()  # a restart keeps its ports: clients keep their URL
            assert db.port == port
            assert "address already in use" in db.log.read_text()
    finally:
        taken.close()


def test_a_port_taken_before_a_restart_is_an_error_not_a_move(tmp_path):
    with servers.Influxd(tmp_path / "influxd") as db:
        db.stop()
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((servers.LOOPBACK, db.port))
        taken.listen(1)
        try:
            with pytest.raises(RuntimeError, match="address already in use"):
                db.start()
        finally:
            taken.close()


@pytest.mark.parametrize("pick", [impl.free_port, impl.free_udp_port])
def test_free_ports_are_never_handed_out_twice_and_split_between_test_processes(pick, monkeypatch):
    # pytest-xdist worker gw1 of 3 (`make test` runs two): only ports p with p % 3 == 1, so a test
    # in another worker never picks one this worker picked and has not bound yet; none given twice.
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    ports = [pick() for _ in range(100)]
    assert all(p % 3 == 1 and 10_000 <= p < 32_768 for p in ports) and len(set(ports)) == 100
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert all(pick() % 3 == 0 for _ in range(50))
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert {pick() % 3 for _ in range(60)} == {0, 1, 2}  # outside a worker: any port
