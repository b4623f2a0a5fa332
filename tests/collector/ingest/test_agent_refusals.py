"""The agent's shipper against a real collector IngestServer and a real influxd 1.6.7: a partial
write sets aside only the refused lines; 401/403 are retried, never dropped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ingest_support import TOKENS

from puewatch.agent.main import Stats
from puewatch.agent.shipper import Endpoint, Shipper
from puewatch.agent.spool import Spool
from servers import Influxd, free_port

T0_NS = 1_700_000_000_000_000_000


def good(i: int) -> str:
    return f"gpu_power,node=node-a,gpu={i % 8} power_w={100 + i}.5 {T0_NS + i * 10**9}"


def batch(n: int, bad: dict[int, str]) -> list[str]:
    """n lines, those at the indexes in `bad` replaced by the given bad lines."""
    return [bad.get(i, good(i)) for i in range(n)]


def spool_with(tmp_path: Path, lines: list[str]) -> Spool:
    s = Spool(tmp_path / "spool", 10**7, 10**6, 10**6)
    s.open()
    s.append(lines)
    s.seal()
    return s


def ship(spool: Spool, url: str, token: str | None, until, what: str) -> Stats:
    stats = Stats()
    sh = Shipper(spool, Endpoint(url, token, "Token", None, 5.0, 6), stats, 0.1, 0.05, 0.3)
    sh.start()
    deadline = time.monotonic() + 20
    while not until(stats):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {stats}"
        time.sleep(0.02)
    sh.stop(2.0)
    return stats


def rejected_files(spool: Spool) -> list[bytes]:
    return [p.read_bytes() for p in sorted(spool.rejected_dir.iterdir())]


def test_a_partial_write_sets_aside_only_the_refused_lines(make_server, tmp_path):
    srv = make_server()
    bad = {17: "gpu_power,node=node-a power_w=", 63: "gpu_power,node=node-a,gpu=1 power_w=1 bogus"}
    lines = batch(100, bad)
    spool = spool_with(tmp_path, lines)
    url = f"http://127.0.0.1:{srv.port}/api/v2/write?bucket=b&org=o&precision=ns"
    stats = ship(spool, url, TOKENS["node-a"], lambda st: st.batches_sent == 1, "the batch")
    good_lines = [l for i, l in enumerate(lines) if i not in bad]
    # The collector stored the 98 good lines once; they are neither resent nor counted dropped.
    assert srv.sink.body() == ("\n".join(good_lines) + "\n").encode() and len(srv.sink.calls) == 1
    assert stats.points_sent == 98 and spool.rejected_points == 2 and spool.lost_points == 2
    assert rejected_files(spool) == [(bad[17] + "\n" + bad[63] + "\n").encode()]
    assert spool.points == 0 and spool.records == 0


def test_more_refused_lines_than_the_message_names_are_set_aside_exactly_from_refused_lines(make_server, tmp_path):
    srv = make_server()
    bad = {i: f"gpu_power,node=node-a power_w={i}x" for i in range(0, 60, 5)}  # 12: the message names 10
    lines = batch(60, bad)
    spool = spool_with(tmp_path, lines)
    url = f"http://127.0.0.1:{srv.port}/api/v2/write?bucket=b&org=o&precision=ns"
    stats = ship(spool, url, TOKENS["node-a"], lambda st: st.batches_sent == 1, "the batch")
    assert srv.stats.lines_accepted == 48 and len(srv.sink.calls) == 1
    assert stats.points_sent == 48 and spool.rejected_points == 12 and spool.lost_points == 12
    assert rejected_files(spool) == [("\n".join(bad[i] for i in sorted(bad)) + "\n").encode()]
    assert spool.points == 0 and spool.records == 0


def test_the_400_lists_every_refused_line_machine_readably(server):
    import json

    body = "".join(f"m v={i}x\n" if i % 4 == 0 else f"m v={i} {T0_NS + i}\n" for i in range(48))
    body += 'm s="two\nlines"x\n'
    status, reply = _post(server.port, body.encode())
    doc = json.loads(reply)
    assert status == 400 and doc["code"] == "invalid" and "dropped=13" in doc["message"]
    assert doc["refused_lines"] == [*range(1, 48, 4), [49, 50]]


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/api/v2/write?bucket=b&org=o&precision=ns", body, {"Authorization": f"Token {TOKENS['node-a']}"})
    r = c.getresponse()
    out = r.status, r.read()
    c.close()
    return out


def test_influxd_partial_write_sets_aside_the_lines_it_quotes(tmp_path):
    with Influxd(tmp_path / "influxd") as influx:
        influx.query("CREATE DATABASE d")
        bad = {3: "gpu_power,node=node-a power_w=", 40: "gpu_power,node=node-a,gpu=2 power_w=1 zz"}
        lines = batch(50, bad)
        spool = spool_with(tmp_path, lines)
        stats = ship(spool, f"{influx.url}/write?db=d&precision=ns", None, lambda st: st.batches_sent == 1, "the batch")
        assert stats.points_sent == 48 and spool.rejected_points == 2
        assert rejected_files(spool) == [(bad[3] + "\n" + bad[40] + "\n").encode()]
        assert influx.points("SELECT count(power_w) FROM gpu_power", "d")[0][1] == 48


def test_401_is_retried_and_counted_never_dropped_then_delivered_once_the_token_is_fixed(make_server, tmp_path, caplog):
    srv = make_server()
    lines = batch(20, {})
    spool = spool_with(tmp_path, lines)
    url = f"http://127.0.0.1:{srv.port}/api/v2/write?bucket=b&org=o&precision=ns"
    with caplog.at_level("ERROR", logger="puewatch.agent.ship"):
        stats = ship(spool, url, "tok-wrong-wrong-wrong", lambda st: st.unauthorized >= 3, "three 401s")
    assert caplog.text.count("unauthorized, retrying") == 1  # once per episode, not per try
    assert spool.points == 20 and spool.lost_points == 0 and stats.points_sent == 0
    assert not list(spool.rejected_dir.iterdir()) and srv.sink.calls == []
    # The operator fixes the agent's token; the spool is delivered whole.
    stats = ship(spool, url, TOKENS["node-a"], lambda st: st.points_sent == 20, "delivery")
    assert srv.sink.body() == ("\n".join(lines) + "\n").encode() and spool.lost_points == 0


def test_403_is_retried_not_dropped(tmp_path):
    receiver = Path(__file__).parents[2] / "agent" / "receiver.py"
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(receiver), "--port", str(port), "--out", str(tmp_path / "lines"),
                             "--status", "403"])
    try:
        deadline = time.monotonic() + 20
        spool = spool_with(tmp_path, batch(5, {}))
        url = f"http://127.0.0.1:{port}/api/v2/write?bucket=b&precision=ns"
        while True:  # the receiver takes a moment to listen; refused connections are retried too
            stats = ship(spool, url, "t", lambda st: st.send_failures >= 3, "three failed sends")
            if stats.unauthorized >= 3 or time.monotonic() > deadline:
                break
        assert stats.unauthorized >= 3 and spool.points == 5 and spool.lost_points == 0
    finally:
        proc.kill()
        proc.wait()


def test_refusals_that_never_clear_are_summed_up_as_they_go_on(make_server, tmp_path, caplog, monkeypatch):
    """Found by the shipping audit: with an agent's clock an hour ahead every batch has lines refused, and the log
    said so once, then nothing (the sum came only "once a batch is stored whole", which never came). The sum is
    logged again every REFUSED_SUMMARY_S while refusals go on (0 here: at every refused batch after the first)."""
    import puewatch.agent.shipper as shipper

    monkeypatch.setattr(shipper, "REFUSED_SUMMARY_S", 0.0)
    srv = make_server()
    spool = Spool(tmp_path / "spool", 10**7, 10**6, 10**6)
    spool.open()
    for k in range(4):
        spool.append([good(10 * k + i) for i in range(9)] + ["gpu_power,node=node-a power_w="])
        spool.seal()
    url = f"http://127.0.0.1:{srv.port}/api/v2/write?bucket=b&org=o&precision=ns"
    with caplog.at_level("ERROR", logger="puewatch.agent.ship"):
        stats = ship(spool, url, TOKENS["node-a"], lambda st: st.batches_sent == 4, "four batches")
    assert stats.points_sent == 36 and spool.rejected_points == 4
    sums = [r.getMessage() for r in caplog.records if "collector still refuses lines" in r.getMessage()]
    assert len(sums) == 3 and "3 more batch(es) had 3 line(s) refused since the first" in sums[-1], sums
