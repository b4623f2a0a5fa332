"""The ingest server over real sockets: InfluxDB clients, the agent's shipper, bad and hostile clients."""

from __future__ import annotations

import base64
import datetime
import gzip
import http.client
import json
import logging
import socket
import ssl
import subprocess
import time
import types

import pytest
from ingest_support import TOKENS, RecordingSink, write_tokens

from puewatch.collector.ingest import IngestConfig, Tokens
from puewatch.config import build
from puewatch.errors import ConfigError

TOKEN = TOKENS["node-a"]
AUTH = {"Authorization": f"Token {TOKEN}"}
LINES = (
    b"gpu_power,gpu=0,node=n1,uuid=GPU-1 power_average_w=301.5,energy_mj=123456789i,energy_estimated=false 1700000000000000000\n"
    b"gpu_state,gpu=0,node=n1,uuid=GPU-1 util_gpu_pct=97i,temperature_c=67i,power_limit_w=700.0 1700000000000000000\n"
    b"host,node=n1 cpu_util_pct=23.5,load1=3.1,cpus=128i 1700000000000000000\n"
)


def post(port: int, path: str, body: bytes, headers: dict | None = None, method: str = "POST") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else {})
    finally:
        conn.close()


def test_influxdb_client_v2_write(server):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    with InfluxDBClient(url=f"http://127.0.0.1:{server.port}", token=TOKEN, org="site") as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        api.write(bucket="pue", record=LINES.decode())
        t = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        api.write(bucket="pue", record=Point("gpu_power").tag("gpu", "1").tag("node", "n1").field("power_average_w", 250.25).time(t, WritePrecision.S), write_precision=WritePrecision.S)
    (agent1, body1, n1, pts1), (agent2, body2, n2, pts2) = server.sink.calls
    assert agent1 == agent2 == "node-a"
    assert body1 == LINES and n1 == 3
    assert [p.fields["energy_mj"] for p in pts1] == [123456789]  # only the subscribed measurement
    assert body2 == b"gpu_power,gpu=1,node=n1 power_average_w=250.25 1704067200000000000\n" and n2 == 1
    assert pts2[0].time_ns == 1704067200 * 10**9 and pts2[0].tags == {"gpu": "1", "node": "n1"}
    assert server.stats.lines_accepted == 4 and server.stats.requests[204] == 2


def test_ping_and_health(server):
    assert post(server.port, "/ping", b"", method="GET") == (204, {})
    assert post(server.port, "/ping", b"", method="HEAD") == (204, {})
    status, doc = post(server.port, "/health", b"", method="GET")
    assert status == 200 and doc["status"] == "pass"


def test_partial_write_keeps_the_good_lines(server):
    # (The malformed lines' series are in the writer's scope, or unreadable: a readable one out of it
    # would refuse the body whole, test_ingest_scopes.py.)
    body = LINES + b"bad\ngpu_power,gpu=1,node=n1 energy_mj= 1\n" + b"host,node=n2 load1=1 1700000000000000000\n"
    status, doc = post(server.port, "/api/v2/write?bucket=b&org=o", body, AUTH)
    assert status == 400 and doc["code"] == "invalid"
    assert doc["message"].startswith(
        "partial write: unable to parse 'bad': missing fields (line 4); "
        "unable to parse 'gpu_power,gpu=1,node=n1 energy_mj= 1': missing field value (line 5)"
    )
    assert server.sink.body() == LINES + b"host,node=n2 load1=1 1700000000000000000\n"
    assert server.stats.parse_errors == 2 and server.stats.lines_accepted == 4
    assert doc["refused_lines"] == [4, 5]  # every refused line, for agents (InfluxDB clients ignore the key)
    # v1 answers in InfluxDB 1.x's shape
    status, doc = post(server.port, f"/write?db=x&p={TOKEN}", b"m f=\n", {})
    assert status == 400 and doc == {"error": "partial write: unable to parse 'm f=': missing field value (line 1) dropped=1 (0 line(s) accepted)",
                                     "refused_lines": [1]}


def test_gzip_body_and_precision(server):
    status, _ = post(server.port, "/api/v2/write?precision=s", gzip.compress(b"m f=1 1700000000\n"), {**AUTH, "Content-Encoding": "gzip"})
    assert status == 204
    assert server.sink.body() == b"m f=1 1700000000000000000\n"
    # several gzip members, as `cat a.gz b.gz` makes
    two = gzip.compress(b"m f=2 2\n") + gzip.compress(b"m f=3 3\n")
    assert post(server.port, "/api/v2/write", two, {**AUTH, "Content-Encoding": "gzip"})[0] == 204
    assert server.sink.body().endswith(b"m f=2 2\nm f=3 3\n")
    status, doc = post(server.port, "/api/v2/write", b"not gzip", {**AUTH, "Content-Encoding": "gzip"})
    assert status == 400 and "invalid gzip body" in doc["message"]
    status, doc = post(server.port, "/api/v2/write", b"m f=1", {**AUTH, "Content-Encoding": "br"})
    assert status == 415
    status, doc = post(server.port, "/api/v2/write?precision=m", b"m f=1", AUTH)  # v2 allows ns, us, ms, s
    assert status == 400 and "invalid precision 'm'" in doc["message"]
    assert post(server.port, f"/write?precision=m&u=x&p={TOKEN}", b"m f=1 2", {})[0] == 204  # v1 allows m
    assert server.sink.body().endswith(b"m f=1 120000000000\n")
    # A repeated parameter means its first value, as in InfluxDB (Go's url.Values.Get): s, not ns.
    assert post(server.port, "/api/v2/write?precision=s&precision=ns", b"m f=4 3", AUTH)[0] == 204
    assert server.sink.body().endswith(b"m f=4 3000000000\n")
    assert post(server.port, f"/write?u=x&p={TOKEN}&p=tok-wrongwrongwrongwrong", b"m f=5 5", {})[0] == 204


def test_gzip_bomb_is_refused_without_inflating_it(server):
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)  # 200 MiB of zeros in ~200 KiB
    assert len(bomb) < server.config.max_body_bytes
    status, doc = post(server.port, "/api/v2/write", bomb, {**AUTH, "Content-Encoding": "gzip"})
    assert status == 413 and doc["code"] == "request too large" and "decompressed" in doc["message"]
    assert server.sink.calls == [] and server.stats.requests[413] == 1


def test_oversize_body_refused_from_content_length_before_reading(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"POST /api/v2/write HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nContent-Length: {10**9}\r\n\r\n".encode())
        reply = s.recv(65536).decode()  # answered without the body ever being sent
    assert reply.startswith("HTTP/1.1 413 ") and "Connection: close" in reply


def _chunked(body: bytes, size: int) -> bytes:
    out = b"".join(f"{len(body[i:i + size]):x}\r\n".encode() + body[i : i + size] + b"\r\n" for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def raw_request(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out


def test_chunked_bodies_and_expect_continue(server):
    head = f"POST /api/v2/write HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    reply = raw_request(server.port, head.encode() + _chunked(LINES, 37))
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 ")
    assert server.sink.body() == LINES
    # too large while reading chunks
    big = b"m f=1 1\n" * (server.config.max_body_bytes // 8 + 10)
    head = f"POST /api/v2/write HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert raw_request(server.port, head.encode() + _chunked(big, 65536)).startswith(b"HTTP/1.1 413 ")
    # request smuggling guard
    head = f"POST /api/v2/write HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert raw_request(server.port, head.encode() + _chunked(b"m f=1", 5)).startswith(b"HTTP/1.1 400 ")
    assert raw_request(server.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_request(server.port, b"GET /ping HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    # no length at all (an HTTP/1.0 client, say): its body is empty to HTTP, so never a 204 that would
    # say lines were stored
    for version in ("1.0", "1.1"):
        reply = raw_request(server.port, f"POST /api/v2/write HTTP/{version}\r\nHost: x\r\nAuthorization: Token {TOKEN}"
                            f"\r\n\r\nm f=1 1\n".encode())
        assert reply.startswith(b"HTTP/1.1 411 ") and b'"code": "length required"' in reply
        assert b"Content-Length (0 for an empty body) or Transfer-Encoding: chunked" in reply
    assert post(server.port, "/api/v2/write", b"", AUTH)[0] == 204  # Content-Length: 0, an empty body
    # cut short inside a chunk: the bytes that came (5 + 43), not the sizes announced (5 + 256)
    head = f"POST /api/v2/write HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head.encode() + b"5\r\nm f=1\r\n100\r\n" + b"x" * 43)
        s.shutdown(socket.SHUT_WR)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"chunked body cut short after 48 byte(s) of data" in reply
    # cut short before its Content-Length: told so, nothing of it stored
    head = f"POST /api/v2/write HTTP/1.1\r\nHost: x\r\nAuthorization: Token {TOKEN}\r\nContent-Length: 40\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head.encode() + b"cut_short f=1 1\n")
        s.shutdown(socket.SHUT_WR)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"body cut short after 16 of 40 byte(s)" in reply
    assert b"cut_short" not in server.sink.body()


def test_authentication(server):
    url = "/api/v2/write?bucket=b"
    assert post(server.port, url, b"m f=1 1", {}) == (401, {"code": "unauthorized", "message": "unauthorized access"})
    assert post(server.port, url, b"m f=1 1", {"Authorization": "Token tok-wrongwrongwrongwrong"})[0] == 401
    assert post(server.port, url, b"m f=1 1", {"Authorization": f"Token {TOKEN}x"})[0] == 401
    assert post(server.port, url, b"m f=1 1", {"Authorization": f"Bearer {TOKENS['node-b']}"})[0] == 204
    basic = base64.b64encode(f"user:{TOKEN}".encode()).decode()
    assert post(server.port, url, b"m f=1 1", {"Authorization": f"Basic {basic}"})[0] == 401  # v2 has no Basic
    assert post(server.port, "/write?db=x", b"m f=1 2", {"Authorization": f"Basic {basic}"})[0] == 204
    assert post(server.port, f"/write?db=x&u=u&p={TOKEN}", b"m f=1 3", {})[0] == 204
    assert post(server.port, "/write?db=x&u=u&p=wrongwrongwrongwrong", b"m f=1 3", {}) == (401, {"error": "authorization failed"})
    assert [c[0] for c in server.sink.calls] == ["node-b", "node-a", "node-a"]
    assert server.stats.requests[401] == 5


def test_routes_and_methods(server):
    assert post(server.port, "/api/v3/write", b"", AUTH)[0] == 404
    assert post(server.port, "/api/v2/write", b"", AUTH, method="GET")[0] == 405
    assert post(server.port, "/ping", b"", AUTH, method="POST")[0] == 405


def test_keep_alive_serves_many_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.connect()
    sock = conn.sock
    for i in range(5):
        conn.request("POST", "/api/v2/write", body=f"m f={i} {i}\n".encode(), headers=AUTH)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 204 and conn.sock is sock
    conn.request("POST", "/api/v2/write", body=b"m f=\n", headers=AUTH)  # a 400 keeps the connection too
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 400 and conn.sock is sock
    conn.close()
    assert server.stats.connections_total == 1


def test_slowloris_is_cut_off_and_others_are_served(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"POST /api/v2/write HTTP/1.1\r\n")
    t0 = time.monotonic()
    closed_after = None
    try:
        for _ in range(40):  # one header byte every 0.2 s: never finishes within header_timeout_s (2 s)
            s.sendall(b"X")
            assert post(server.port, "/ping", b"", method="GET")[0] == 204  # others are served meanwhile
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        closed_after = time.monotonic() - t0
    if closed_after is None:
        data = s.recv(4096)
        closed_after = time.monotonic() - t0
        assert data.startswith(b"HTTP/1.1 408 ")
    s.close()
    assert closed_after < 5.0
    assert server.stats.timeouts == 1


def test_body_timeout_and_idle_timeout(server):
    t0 = time.monotonic()
    reply = raw_request(server.port, f"POST /api/v2/write HTTP/1.1\r\nAuthorization: Token {TOKEN}\r\nContent-Length: 100\r\n\r\nm f=1".encode(), timeout=10)
    assert reply.startswith(b"HTTP/1.1 408 ") and 1.5 < time.monotonic() - t0 < 5
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        t0 = time.monotonic()
        assert s.recv(10) == b""  # the server closes an idle connection (idle_timeout_s 3 s)
        assert 2.5 < time.monotonic() - t0 < 6
    assert server.sink.calls == []


def test_tls_with_a_self_signed_certificate(make_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    srv = make_server(tls_cert=str(cert), tls_key=str(key))
    ctx = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=5)
    conn.request("POST", "/api/v2/write", body=LINES, headers=AUTH)
    assert conn.getresponse().status == 204
    conn.close()
    assert srv.sink.body() == LINES
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust it refuses it
        bad = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ssl.create_default_context(), timeout=5)
        bad.request("GET", "/ping")
    # plain HTTP to the TLS port gets nowhere
    assert not raw_request(srv.port, b"GET /ping HTTP/1.1\r\n\r\n", timeout=3).startswith(b"HTTP/1.1 204")


def test_the_agent_shipper_delivers_its_batches_intact(server, tmp_path):
    from puewatch.agent.shipper import Endpoint, Shipper
    from puewatch.agent.spool import Spool

    spool = Spool(tmp_path / "spool", 10**7, 10**6, 10**6)
    spool.open()
    lines = [l.decode() for l in LINES.splitlines()] + ['gpu_info,gpu=0,node=n1 name="NVIDIA H100 80GB HBM3",serial="1 2" 1700000000000000000']
    spool.append(lines)
    stats = types.SimpleNamespace(points_sent=0, batches_sent=0, last_ship_ns=0, send_failures=0, rejected_batches=0)
    ep = Endpoint(url=f"http://127.0.0.1:{server.port}/api/v2/write?bucket=pue&org=site&precision=ns", token=TOKENS["node-b"], auth_scheme="Token", ca_file=None, timeout_s=5, gzip_level=6)
    shipper = Shipper(spool, ep, stats, flush_interval_s=0.1, retry_initial_s=0.1, retry_max_s=1)
    shipper.start()
    deadline = time.monotonic() + 10
    while stats.batches_sent < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    shipper.stop(5)
    assert stats.points_sent == 4 and stats.rejected_batches == 0
    (agent, body, n, points), = server.sink.calls
    assert agent == "node-b" and n == 4
    assert body == ("\n".join(lines) + "\n").encode()
    assert [p.measurement for p in points] == ["gpu_power"]


# -- configuration and tokens -----------------------------------------------------------------


def test_token_file_format_and_errors(tmp_path, caplog):
    f = write_tokens(tmp_path / "tokens", "# agents\nnode-1 aaaaaaaaaaaaaaaa\n\n  node-2   bbbbbbbbbbbbbbbb\n")
    tokens = Tokens.load(IngestConfig(token_file=str(f)))
    assert tokens.agent_for("aaaaaaaaaaaaaaaa") == "node-1" and tokens.agent_for("bbbbbbbbbbbbbbbb") == "node-2"
    assert tokens.agent_for("aaaaaaaaaaaaaaa") is None and tokens.agent_for("") is None
    assert "readable by group or others" not in caplog.text
    write_tokens(f, "node-1 aaaaaaaaaaaaaaaa\n", mode=0o644)
    with caplog.at_level(logging.WARNING):
        Tokens.load(IngestConfig(token_file=str(f)))
    assert "readable by group or others (mode 644); chmod 600 it" in caplog.text
    for text, error in [
        ("node-1\n", r"tokens:1: expected `name token`, got 1 word"),
        ("node-1 short\n", r"tokens:1: the token \(second word\) is shorter than 16 characters"),
        ("a aaaaaaaaaaaaaaaa\na bbbbbbbbbbbbbbbb\n", r"tokens:2: the agent name is listed already on line 1"),
        ("a aaaaaaaaaaaaaaaa\nb aaaaaaaaaaaaaaaa\n", r"tokens:2: the token is the same as on line 1"),
        ("n/1 aaaaaaaaaaaaaaaa\n", r"tokens:1: the agent name \(first word\) must be"),
        ("# nothing\n", r"tokens: no tokens"),
    ]:
        write_tokens(f, text)
        with pytest.raises(ConfigError, match=error):
            Tokens.load(IngestConfig(token_file=str(f)))
    with pytest.raises(ConfigError, match="token file not found"):
        Tokens.load(IngestConfig(token_file=str(tmp_path / "missing")))


def test_systemd_credential(tmp_path, monkeypatch):
    write_tokens(tmp_path / "ingest-tokens", "node-9 cccccccccccccccccccc\n")
    cfg = IngestConfig(token_credential="ingest-tokens")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY is not set"):
        Tokens.load(cfg)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert Tokens.load(cfg).agent_for("cccccccccccccccccccc") == "node-9"


def test_config_model():
    cfg = build(IngestConfig, {"port": 9000, "token_file": "/etc/puewatch/tokens", "max_body_bytes": 4096})
    assert cfg.port == 9000 and cfg.idle_timeout_s == 60.0
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        build(IngestConfig, {"token_file": "t", "tls_cert": "c.pem"})
    with pytest.raises(ConfigError, match="token_file: is required"):
        build(IngestConfig, {})
    with pytest.raises(ConfigError, match="port: must be at most 65535"):
        build(IngestConfig, {"token_file": "t", "port": 70000})


def test_sink_failure_answers_503(make_server):
    class Broken(RecordingSink):
        def accept(self, *a):
            raise RuntimeError("store queue full")

    srv = make_server(Broken())
    status, doc = post(srv.port, "/api/v2/write", b"m f=1 1", AUTH)
    assert status == 503 and "store queue full" in doc["message"] and srv.stats.sink_errors == 1
