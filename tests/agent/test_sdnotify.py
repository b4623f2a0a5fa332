"""sd_notify against a real AF_UNIX datagram socket (path and abstract namespace)."""

import os
import socket

import pytest

from puewatch.sdnotify import SystemdNotifier, watchdog_interval_s


@pytest.fixture
def path_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield path, s
    s.close()


@pytest.fixture
def abstract_socket():
    name = f"puewatch-test-{os.getpid()}-{id(object())}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    yield "@" + name, s
    s.close()


def test_messages_arrive_on_a_path_socket(path_socket):
    path, sock = path_socket
    n = SystemdNotifier(path)
    assert n.enabled
    assert n.ready("started")
    assert sock.recv(4096) == b"READY=1\nSTATUS=started"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("last sample 12:00\nsecond line")
    assert sock.recv(4096) == b"STATUS=last sample 12:00 second line"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_namespace(abstract_socket):
    address, sock = abstract_socket
    n = SystemdNotifier(address)
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"


def test_environment_variable_is_used(monkeypatch, path_socket):
    path, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert SystemdNotifier().watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_systemd_everything_is_a_noop(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False


def test_a_vanished_socket_does_not_raise(tmp_path):
    n = SystemdNotifier(str(tmp_path / "gone.sock"))
    assert n.enabled
    assert n.ready() is False


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert watchdog_interval_s() == 3.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 3.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval_s() is None
