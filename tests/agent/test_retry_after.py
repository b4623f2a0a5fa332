"""The shipper honours a 503's or 429's Retry-After (at least that long, at most its own backoff cap),
keeps the batch meanwhile and counts nothing as dropped (a real HTTP server, real spool files)."""

from __future__ import annotations

import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from puewatch.agent.main import Stats
from puewatch.agent.shipper import Endpoint, Shipper, _retry_after_s
from puewatch.agent.spool import Spool


class _Server:
    """Answers the first `refusals` writes with `status` and the given Retry-After, then 204; records when."""

    def __init__(self, status: int, retry_after: str | None, refusals: int) -> None:
        self.times: list[float] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.times.append(time.monotonic())
                status = status_ if len(outer.times) <= refusals else 204
                outer.statuses.append(status)
                self.send_response(status)
                if status != 204 and retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

        status_ = status
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v2/write?bucket=b&org=o&precision=ns"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _ship(tmp_path, server: _Server, retry_max_s: float) -> tuple[Shipper, Stats, Spool]:
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 16, 1 << 16)
    spool.open()
    spool.append(["gpu_power,node=n power_average_w=1.5 1000", "gpu_power,node=n power_average_w=2.5 2000"])
    spool.seal()
    stats = Stats()
    shipper = Shipper(spool, Endpoint(server.url, None, "Token", None, 5.0, 1), stats,
                      flush_interval_s=0.05, retry_initial_s=0.05, retry_max_s=retry_max_s)
    shipper.start()
    return shipper, stats, spool


def _wait(what, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_503_retry_after_is_waited_out_and_the_batch_delivered_once(tmp_path):
    server = _Server(503, "1", refusals=2)
    shipper, stats, spool = _ship(tmp_path, server, retry_max_s=5.0)
    _wait(lambda: stats.points_sent == 2)
    shipper.stop(5)
    server.close()
    assert server.statuses == [503, 503, 204]
    gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    # Without the header the backoff would retry after 0.05-0.1 s; the collector asked for 1 s.
    assert all(g >= 0.95 for g in gaps), gaps
    assert stats.send_failures == 2 and spool.lost_points == 0 and spool.points == 0


def test_a_429_retry_after_beyond_the_backoff_cap_waits_only_the_cap(tmp_path):
    server = _Server(429, "3600", refusals=1)
    shipper, stats, spool = _ship(tmp_path, server, retry_max_s=0.5)
    _wait(lambda: stats.points_sent == 2)  # long before an hour: the cap bounds the wait
    shipper.stop(5)
    server.close()
    assert server.statuses == [429, 204]
    assert server.times[1] - server.times[0] >= 0.45
    assert spool.lost_points == 0


def test_retry_after_is_read_as_seconds_or_an_http_date_and_ignored_when_unreadable():
    assert _retry_after_s("7") == 7.0
    later = _retry_after_s(formatdate(time.time() + 120, usegmt=True))
    assert later is not None and 100 < later <= 121
    assert _retry_after_s(formatdate(time.time() - 120, usegmt=True)) == 0.0
    assert _retry_after_s("soon") is None and _retry_after_s(None) is None and _retry_after_s("-3") is None
