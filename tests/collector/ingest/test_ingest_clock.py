"""Lines whose time is far from the collector's clock, over real HTTP: refused by name and reason,
the rest of the body kept (InfluxDB's partial write), counted."""

from __future__ import annotations

import datetime
import http.client
import json
import time

from ingest_support import TOKENS

from puewatch.collector.lineparse import LineParser, TimeWindow

AUTH = {"Authorization": f"Token {TOKENS['node-a']}"}
SECOND = 10**9
DAY = 86400 * SECOND


def post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=AUTH)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else {})
    finally:
        conn.close()


def iso(t_ns: int) -> str:
    return datetime.datetime.fromtimestamp(t_ns // SECOND, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_year_ahead_is_refused_and_the_good_lines_kept(server):
    now = time.time_ns()
    ahead = now + 365 * DAY
    good = (f"gpu_power,gpu=0,node=n1 power_average_w=300.5,energy_mj=1000i {now}\n"
            f"host,node=n1 load1=1.5 {now - 60 * SECOND}\n"
            "host,node=n1 load1=2.5 1700000000000000000\n").encode()  # an old backlog line: no limit behind by default
    bad = f"gpu_power,gpu=0,node=n1 power_average_w=301.5,energy_mj=2000i {ahead}\n".encode()
    status, doc = post(server.port, "/api/v2/write?bucket=b&org=o", good[:60] + good[60:] + bad)
    assert status == 400 and doc["code"] == "invalid"
    assert doc["message"] == (
        f"partial write: refused 'gpu_power,gpu=0,node=n1 power_average_w=301.5,energy_mj=2000i {ahead}': "
        f"time {iso(ahead)} is 365 days ahead of the collector's clock (tolerance 300 s) (line 4) dropped=1 (3 line(s) accepted)"
    )
    assert server.sink.body() == good
    assert [p.fields["energy_mj"] for p in server.sink.calls[0][3]] == [1000]  # the refused line made no point
    assert server.stats.clock_skew_refused == 1 and server.stats.parse_errors == 0 and server.stats.lines_accepted == 3


def test_skew_beside_malformed_lines_and_in_seconds_precision(server):
    now_s = time.time_ns() // SECOND
    body = f"m f=1 {now_s}\nm f=\nm f=2 {now_s + 3600}\nm f=3 {now_s + 200}\n".encode()
    status, doc = post(server.port, "/write?db=x&precision=s", body)
    assert status == 400
    assert doc["error"] == (
        "partial write: unable to parse 'm f=': missing field value (line 2); "
        f"refused 'm f=2 {(now_s + 3600) * SECOND}': time {iso((now_s + 3600) * SECOND)} is 60 minutes ahead of the "
        "collector's clock (tolerance 300 s) (line 3) dropped=2 (2 line(s) accepted)"
    )
    assert server.sink.body() == f"m f=1 {now_s * SECOND}\nm f=3 {(now_s + 200) * SECOND}\n".encode()
    assert server.stats.clock_skew_refused == 1 and server.stats.parse_errors == 1


def test_max_age_refuses_a_clock_that_fell_back_and_zero_turns_the_check_off(make_server):
    now = time.time_ns()
    strict = make_server(max_age_s=86400.0)
    status, doc = post(strict.port, "/api/v2/write", f"m f=1 {now}\nm f=2 1000000000\n".encode())
    assert status == 400 and "time 1970-01-01T00:00:01Z is " in doc["message"]
    assert "days behind the collector's clock (tolerance 86400 s) (line 2) dropped=1" in doc["message"]
    assert strict.sink.body() == f"m f=1 {now}\n".encode()
    off = make_server(max_clock_skew_s=0.0)
    far = now + 3650 * DAY
    assert post(off.port, "/api/v2/write", f"m f=1 {far}\n".encode())[0] == 204
    assert off.sink.body() == f"m f=1 {far}\n".encode() and off.stats.clock_skew_refused == 0


def test_the_fast_path_and_the_line_by_line_path_agree():
    """A body of agent lines: the window check on the whole body gives what the exact per-line check gives."""
    now = 1_764_795_600 * SECOND
    lines = [f"gpu_power,gpu={i % 8},node=n{i // 8} power_average_w={300 + i}.5,energy_mj={i}i {now - i * SECOND}"
             for i in range(400)]
    window = TimeWindow(ahead_ns=300 * SECOND, behind_ns=3600 * SECOND)
    parser = LineParser({"gpu_power": ("energy_mj",)}, window)
    inside = ("\n".join(lines) + "\n").encode()
    result = parser.parse(inside, "ns", now)
    assert result.body == inside and result.lines == 400 and result.time_refused == 0 and len(result.points) == 400
    for t_bad, n_ok in ((now + 301 * SECOND, 400), (now - 3601 * SECOND, 400), (now + 299 * SECOND, 401)):
        body = inside + f"gpu_power,gpu=0,node=x power_average_w=1.5,energy_mj=7i {t_bad}\n".encode()
        result = parser.parse(body, "ns", now)
        assert (result.lines, result.time_refused) == (n_ok, 401 - n_ok)
        assert result.body == (body if n_ok == 401 else inside)


def test_an_agent_whose_clock_runs_ahead_logs_the_refusals_once_and_sums_them_up(server, tmp_path, caplog):
    """The agent's shipper against the real ingest server: while the node's clock runs an hour ahead every batch
    has lines refused (400 partial write). The first is logged in full, the next counted, and once a batch is
    stored whole one line sums them up; before, one ERROR per batch for as long as it lasted (found by the
    agent audit)."""
    import logging

    from puewatch.agent.main import Stats
    from puewatch.agent.shipper import Endpoint, Shipper
    from puewatch.agent.spool import Spool

    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 16, 1 << 20)
    spool.open()
    now = time.time_ns()
    for k in range(4):  # four batches of a good line and one an hour ahead
        spool.append([f"host,node=n1 load1={k}.5 {now + k}", f"host,node=n1 load1=9 {now + 3600 * SECOND + k}"])
        spool.seal()
    spool.append([f"host,node=n1 load1=1 {now + 10}"])  # the clock is right again
    spool.seal()
    stats = Stats()
    url = f"http://127.0.0.1:{server.port}/api/v2/write"
    shipper = Shipper(spool, Endpoint(url, TOKENS["node-a"], "Token", None, 5.0, 6), stats, 0.1, 0.1, 0.5)
    with caplog.at_level(logging.INFO, logger="puewatch.agent.ship"):
        shipper.start()
        deadline = time.monotonic() + 20
        while spool.records and time.monotonic() < deadline:
            time.sleep(0.05)
        shipper.stop(2.0)
    assert spool.records == 0 and stats.points_sent == 5 and spool.rejected_points == 4
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "collector refused 1 of the 2 line(s)" in errors[0] and "ahead of the collector" in errors[0]
    summary = [r.getMessage() for r in caplog.records if "stored a batch whole again" in r.getMessage()]
    assert summary and "3 more batch(es) had 3 line(s) refused meanwhile" in summary[0], caplog.text


def test_a_line_beyond_the_retention_is_counted_apart_from_a_clock_s_skew_and_310_s_reads_as_310_s():
    """Found by the operator audit: a line older than the store's raw retention was counted in
    puewatch_ingest_clock_skew_refused (max_age_s off); and 310 s ahead read "5 minutes ahead ... (tolerance 300 s)"."""
    now = 1_764_795_600 * SECOND
    parser = LineParser(frozenset(), TimeWindow(ahead_ns=300 * SECOND, retention_ns=400 * DAY))
    body = f"m f=1 {now}\nm f=2 1000000000\nm f=3 {now + 310 * SECOND}\nm f=4 {now + 3 * 3600 * SECOND}\n".encode()
    result = parser.parse(body, "ns", now)
    assert (result.lines, result.time_refused, result.retention_refused) == (1, 3, 1)
    assert "point beyond retention policy (the store keeps 400 days) (line 2)" in result.errors[0]
    assert f"is 310 s ahead of the collector's clock (tolerance 300 s) (line 3)" in result.errors[1]
    assert f"is 3 hours ahead of the collector's clock (tolerance 300 s) (line 4)" in result.errors[2]
