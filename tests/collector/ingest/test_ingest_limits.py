"""Connection limits and malformed chunked bodies, over real sockets (collector/DESIGN.md, Connection limits).

Clients come from several loopback addresses (127.0.0.2, 127.0.0.3, ...) so that the per-client cap and the
global caps can be told apart.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time

from ingest_support import TOKENS

TOKEN = TOKENS["node-a"]
AUTH = {"Authorization": f"Token {TOKEN}"}
WRITE = f"POST /api/v2/write HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def wait_until(cond, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s: {what}"
        time.sleep(0.02)


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


class Writer:
    """An authenticated keep-alive connection from `source` (one write done)."""

    def __init__(self, port: int, source: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
        self.n = 0
        assert self.write() == 204

    def write(self) -> int:
        self.n += 1
        self.conn.request("POST", "/api/v2/write", body=f"m f={self.n} {self.n}\n".encode(), headers=AUTH)
        resp = self.conn.getresponse()
        resp.read()
        return resp.status


def test_caps_evict_unauthenticated_connections_before_refusing(make_server):
    srv = make_server(max_connections=4, max_unauthenticated_connections=2, max_connections_per_client=3,
                      max_connections_per_agent=3)
    st = srv.stats
    a1, a2 = Writer(srv.port, "127.0.0.1"), Writer(srv.port, "127.0.0.1")
    x1 = connect(srv.port, "127.0.0.2")
    x2 = connect(srv.port, "127.0.0.2")
    wait_until(lambda: st.connections_open == 4, "4 open")
    assert st.connections_unauthenticated == 2
    # The unauthenticated pool is full: a third idle socket evicts the oldest one.
    x3 = connect(srv.port, "127.0.0.2")
    wait_until(lambda: st.connections_evicted == 1, "x1 evicted")
    assert closed_by_server(x1)
    # All 4 slots taken: an agent's new connection evicts the oldest idle socket and writes.
    w = Writer(srv.port, "127.0.0.1")
    assert closed_by_server(x2) and st.connections_evicted == 2
    assert st.connections_open == 4 and st.connections_unauthenticated == 1
    # Total cap again, from a third address: the last unauthenticated socket makes room.
    x4 = connect(srv.port, "127.0.0.3")
    wait_until(lambda: st.connections_evicted == 3, "x3 evicted")
    assert closed_by_server(x3)
    # node-a holds 3 connections (max_connections_per_agent): a 4th is answered 429 and closed.
    fourth = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    fourth.request("POST", "/api/v2/write", body=b"m f=1 1\n", headers=AUTH)
    resp = fourth.getresponse()
    assert resp.status == 429 and b"max_connections_per_agent" in resp.read()
    assert resp.getheader("Retry-After") == "1"  # the agent waits that long, not its next backoff step
    assert closed_by_server(x4) and st.connections_evicted == 4  # its connection had evicted x4
    fourth.close()
    wait_until(lambda: st.connections_open == 3, "the 429 connection closed")
    # Another agent is not held back by node-a's cap.
    b = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    b.request("POST", "/api/v2/write", body=b"m f=2 2\n", headers={"Authorization": f"Token {TOKENS['node-b']}"})
    assert b.getresponse().status == 204
    # Every connection is authenticated now: a new one has nothing to evict and is closed at once.
    extra = connect(srv.port, "127.0.0.2")
    wait_until(lambda: st.connections_refused == 2, "refused")
    assert closed_by_server(extra)
    # The authenticated connections were never touched.
    assert [c.write() for c in (a1, a2, w)] == [204, 204, 204]
    extra.close()
    b.close()
    for c in (a1, a2, w):
        c.conn.close()
    wait_until(lambda: st.connections_open == 0, "all closed")
    assert st.connections_unauthenticated == 0


def test_per_client_cap_evicts_that_clients_own_idle_sockets(make_server):
    srv = make_server(max_connections=100, max_unauthenticated_connections=50, max_connections_per_client=5)
    st = srv.stats
    flood = [connect(srv.port, "127.0.0.2") for _ in range(12)]
    wait_until(lambda: st.connections_evicted == 7, "7 of 12 evicted")
    assert st.connections_open == 5
    assert [closed_by_server(s) for s in flood[:7]] == [True] * 7  # the oldest went first
    # another client is not affected by 127.0.0.2's cap
    assert Writer(srv.port, "127.0.0.3").write() == 204
    # authenticated connections do not count per address (agents behind one NAT): 8 from 127.0.0.4
    writers = [Writer(srv.port, "127.0.0.4") for _ in range(8)]
    assert [w.write() for w in writers] == [204] * 8
    for s in flood:
        s.close()


def test_unauthenticated_connections_get_a_short_first_request_timeout(make_server):
    srv = make_server(unauthenticated_timeout_s=1.0, idle_timeout_s=30.0, header_timeout_s=30.0)
    idle = connect(srv.port, "127.0.0.2")
    slow = connect(srv.port, "127.0.0.2")
    slow.sendall(b"GET /ping HTTP/1.1\r\n")  # a head begun but never finished
    w = Writer(srv.port, "127.0.0.1")
    assert closed_by_server(idle)  # within the 10 s socket timeout, not idle_timeout_s (30 s)
    assert slow.recv(100).startswith(b"HTTP/1.1 408 ")
    time.sleep(1.5)  # past unauthenticated_timeout_s: the authenticated keep-alive connection stays
    assert w.write() == 204 and srv.stats.connections_open == 1
    # /ping without a token does not authenticate a connection
    ping = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    ping.request("GET", "/ping")
    assert ping.getresponse().status == 204
    assert closed_by_server(ping.sock)
    for s in (idle, slow):
        s.close()


def _reply(port: int, data: bytes, half_close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_malformed_chunked_bodies_get_400_and_no_traceback(server, caplog):
    cases = {
        "2 MiB size line, no CRLF": (WRITE.encode() + b"1" * (2 * 1024 * 1024), True),
        "5 KiB size line": (WRITE.encode() + b"5;" + b"x" * 5000 + b"\r\nm f=1\r\n0\r\n\r\n", False),
        "bad hex": (WRITE.encode() + b"zz\r\nm f=1\r\n0\r\n\r\n", False),
        "negative": (WRITE.encode() + b"-5\r\nm f=1\r\n0\r\n\r\n", False),
        "no CRLF after data": (WRITE.encode() + b"5\r\nm f=1XX0\r\n\r\n", False),
        "cut short in data": (WRITE.encode() + b"10\r\nm f=1", True),
        "cut short before the last chunk": (WRITE.encode() + b"5\r\nm f=1\r\n", True),
        "cut short in trailers": (WRITE.encode() + b"5\r\nm f=1\r\n0\r\nX-A: b\r\n", True),
    }
    with caplog.at_level(logging.DEBUG):
        for name, (data, half_close) in cases.items():
            reply = _reply(server.port, data, half_close)
            assert reply.startswith(b"HTTP/1.1 400 "), (name, reply[:200])
            assert b'"code": "invalid"' in reply and b"Connection: close" in reply, name
    assert server.sink.calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.text
