"""The on-disk spool: crash recovery, byte bound, full disk; the shipper against a real HTTP server."""

import gzip
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from agent_support import wait_for

from puewatch.agent.main import Stats
from puewatch.agent.shipper import Endpoint, Shipper
from puewatch.agent.spool import Spool
from puewatch.diskqueue import encode_record


def lines(prefix, n, size=40):
    return [f"m,src={prefix} v={i}i,pad=\"{'x' * size}\" {1_700_000_000_000_000_000 + i}" for i in range(n)]


def make(tmp_path, max_bytes=1 << 20, seg=1 << 20, sub="spool"):
    s = Spool(tmp_path / sub, max_bytes=max_bytes, segment_max_bytes=seg, rejected_max_bytes=max_bytes)
    s.open()
    return s


def test_append_seal_send_order_and_byte_identity(tmp_path):
    s = make(tmp_path)
    a, b = lines("a", 3), lines("b", 2)
    s.append(a)
    seg1 = s.seal()
    s.append(b)
    seg2 = s.seal()
    assert (seg1.points, seg2.points) == (3, 2) and seg1.seq < seg2.seq
    assert s.seal() is None  # nothing open: no empty segment
    first = s.oldest()
    assert first is seg1 and s.read(first) == ("\n".join(a) + "\n").encode()
    s.done(first)
    assert s.oldest() is seg2
    assert s.points == 2


def test_open_segment_survives_a_crash_and_partial_line_is_cut(tmp_path):
    s = make(tmp_path)
    s.append(lines("a", 4))
    # Simulate kill -9: no seal, no close; then a torn write at the end.
    open_files = list((tmp_path / "spool").glob("*.open"))
    assert len(open_files) == 1
    with open(open_files[0], "ab") as f:
        f.write(b"m,src=torn v=1")
    s2 = make(tmp_path)
    seg = s2.oldest()
    assert seg.points == 4
    assert s2.read(seg) == ("\n".join(lines("a", 4)) + "\n").encode()
    assert not list((tmp_path / "spool").glob("*.open"))
    s2.append(lines("b", 1))  # new segments continue after the recovered one
    assert s2.seal().seq > seg.seq


def record_bytes(batch):
    return len(encode_record(("\n".join(batch) + "\n").encode(), len(batch)))


def test_byte_bound_drops_oldest_first_and_counts(tmp_path):
    one = record_bytes(lines("a", 10))
    s = make(tmp_path, max_bytes=one * 3 + 10, seg=one)
    for name in "abcde":
        s.append(lines(name, 10))
        s.seal()
    assert s.dropped_points == 20  # a and b went, oldest first
    remaining = []
    while (seg := s.oldest()) is not None:
        remaining.append(s.read(seg).decode().split(" ", 1)[0].split(",")[1])
        s.done(seg)
    assert remaining == ["src=c", "src=d", "src=e"]
    assert s.bytes == 0


def test_segment_being_sent_is_never_evicted(tmp_path):
    one = record_bytes(lines("a", 10))
    s = make(tmp_path, max_bytes=one * 2 + 10, seg=one)
    s.append(lines("a", 10))
    s.seal()
    in_flight = s.oldest()
    for name in "bcd":
        s.append(lines(name, 10))
        s.seal()
    assert in_flight.path.exists()
    assert s.oldest() is in_flight


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    # A real full disk: the tests run as root (make test); see the Makefile.
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"mounting a tmpfs needs root: {r.stderr}"
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_drops_oldest_then_new_and_counts_every_point(small_tmpfs, caplog):
    # A byte limit far above the disk: the disk fills first (ENOSPC).
    caplog.set_level(logging.WARNING)
    s = Spool(small_tmpfs / "spool", max_bytes=10 << 20, segment_max_bytes=8 << 10, rejected_max_bytes=1 << 20)
    s.open()
    stored = 0
    attempted = 0
    for i in range(400):
        batch = lines(f"t{i}", 5, size=60)
        attempted += 5
        stored += s.append(batch)
        if i % 10 == 9:
            s.seal()
    s.seal()
    kept = 0
    while (seg := s.oldest()) is not None:
        data = s.read(seg)
        assert data.endswith(b"\n") and b"\n\n" not in data  # no torn lines on a full disk
        kept += data.count(b"\n")
        s.done(seg)
    assert s.dropped_points > 0
    assert kept + s.dropped_points == attempted  # every point is either kept or counted
    # and the newest data survived: the oldest was dropped first
    assert stored > 0
    # The log says the disk is full, not the spool's bound (it read "spool ... full": operator audit).
    drops = [r.getMessage() for r in caplog.records if "dropped the oldest batch" in r.getMessage()]
    assert drops and all("is on a full disk (no space left)" in m for m in drops), drops


def test_shipper_sends_gzip_in_order_and_removes_on_2xx(tmp_path, receiver):
    s = make(tmp_path)
    stats = Stats()
    batches = [lines(f"b{i}", 7) for i in range(5)]
    for b in batches:
        s.append(b)
        s.seal()
    sh = Shipper(s, Endpoint(receiver.url + "?bucket=x&precision=ns", None, "Token", None, 5.0, 6), stats, 0.1, 0.1, 0.5)
    sh.start()
    wait_for(lambda: stats.points_sent == 35, 10, "all points sent")
    sh.stop(2.0)
    assert receiver.lines() == [l for b in batches for l in b]
    assert s.bytes == 0 and not list(s.dir.glob("*.rec"))


def test_4xx_is_logged_with_the_servers_message_moved_aside_and_counted(tmp_path, procs, caplog):
    from agent_support import Receiver

    rx = Receiver(procs, tmp_path, status=400).start()
    s = make(tmp_path)
    stats = Stats()
    s.append(lines("bad", 6))
    s.seal()
    s.append(lines("next", 4))
    s.seal()
    sh = Shipper(s, Endpoint(rx.url, None, "Token", None, 5.0, 6), stats, 0.1, 0.1, 0.5)
    with caplog.at_level("ERROR", logger="puewatch.agent.ship"):
        sh.start()
        wait_for(lambda: stats.rejected_batches == 2, 10, "both batches rejected")
        sh.stop(1.0)
    assert "scripted failure 400" in caplog.text and "counted as dropped" in caplog.text
    assert s.rejected_points == 10 and s.lost_points == 10
    kept = sorted(s.rejected_dir.glob("*.lp"))  # as sent: plain line protocol for the operator
    assert [p.read_bytes() for p in kept] == [("\n".join(b) + "\n").encode() for b in (lines("bad", 6), lines("next", 4))]
    assert stats.points_sent == 0


def test_429_and_5xx_are_retried_with_backoff_not_dropped(tmp_path, procs):
    from agent_support import Receiver

    rx = Receiver(procs, tmp_path, status=503).start()
    s = make(tmp_path)
    stats = Stats()
    s.append(lines("keep", 3))
    s.seal()
    sh = Shipper(s, Endpoint(rx.url, None, "Token", None, 5.0, 6), stats, 0.1, 0.05, 0.2)
    sh.start()
    wait_for(lambda: stats.send_failures >= 3, 10, "retries")
    assert s.points == 3 and s.lost_points == 0
    # The collector comes back (same port) and accepts: the batch goes out.
    rx.stop()
    rx.opts = {}
    rx.start()
    wait_for(lambda: stats.points_sent == 3, 10, "delivery after recovery")
    sh.stop(1.0)
    assert rx.lines() == lines("keep", 3)


def test_token_is_sent(tmp_path, procs):
    from agent_support import Receiver

    rx = Receiver(procs, tmp_path, token="t0k").start()
    s = make(tmp_path)
    stats = Stats()
    s.append(lines("auth", 2))
    s.seal()
    sh = Shipper(s, Endpoint(rx.url, "t0k", "Token", None, 5.0, 6), stats, 0.1, 0.1, 0.5)
    sh.start()
    wait_for(lambda: stats.points_sent == 2, 10, "authorised delivery")
    sh.stop(1.0)
    assert rx.lines() == lines("auth", 2)


def test_a_stray_file_does_not_stop_the_spool_and_is_logged_once(tmp_path, caplog):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "seg-backup.lp").write_text("an operator's copy\n")  # the old spool refused to start here
    with caplog.at_level("WARNING", logger="puewatch.diskqueue"):
        s = make(tmp_path)
    assert caplog.text.count("unexpected file seg-backup.lp") == 1
    s.append(lines("a", 2))
    assert s.seal().points == 2 and (tmp_path / "spool" / "seg-backup.lp").exists()


def test_batches_refused_after_a_restart_do_not_overwrite_older_refused_ones(tmp_path):
    for run in ("first", "second"):  # each run starts with an empty spool
        s = make(tmp_path)
        s.append(lines(run, 1))
        seg = s.seal()
        s.reject(s.oldest(), s.read(seg))
        s.close()
    kept = sorted(p.read_text() for p in (tmp_path / "spool" / "rejected").iterdir())
    assert kept == ["\n".join(lines(run, 1)) + "\n" for run in ("first", "second")]


def test_the_agent_starts_beside_stray_files_and_keeps_its_data_through_401s_until_the_token_is_fixed(tmp_path, procs):
    from agent_support import Receiver, parse_line, start_agent, wait_log, write_config

    spool = tmp_path / "spool"
    (spool / "rejected").mkdir(parents=True)
    (spool / "seg-backup.lp").write_text("an operator's copy\n")  # the older agent refused to start here
    (spool / "rejected" / "0000000000000007-3.lp").write_text("refused before the upgrade\n")
    rx = Receiver(procs, tmp_path, token="right-token-0123456789").start()
    sources = "[sources.sim]\ngpus = 1\n"
    cfg = write_config(tmp_path / "agent.toml", rx.url, spool, sources, output_extra='token = "wrong-token-0123456789"')
    agent = start_agent(procs, cfg, tmp_path / "agent.log")
    wait_log(agent, "ignoring unexpected file seg-backup.lp")
    wait_log(agent, "unauthorized, retrying with backoff")
    wait_for(lambda: len(list(spool.glob("*.rec"))) >= 3, 20, "batches kept while unauthorized")
    assert agent.stop() == 0, agent.output()
    assert agent.output().count("unauthorized, retrying") == 1 and rx.lines() == []
    # The operator fixes the token and restarts the agent: what waited is delivered, nothing was dropped.
    cfg = write_config(tmp_path / "agent.toml", rx.url, spool, sources, output_extra='token = "right-token-0123456789"')
    agent = start_agent(procs, cfg, tmp_path / "agent2.log")
    wait_for(lambda: not list(spool.glob("*.rec")) and rx.lines(), 20, "the spool drained")
    assert agent.stop() == 0, agent.output()
    points = [parse_line(l) for l in rx.lines()]
    first_run = [p for p in points if p[0] == "puewatch_agent" and p[2]["unauthorized_replies"] > 0]
    assert first_run and all(p[2]["dropped_points"] == 0 for p in points if p[0] == "puewatch_agent")
    assert (spool / "seg-backup.lp").read_text() == "an operator's copy\n"
    assert sorted(p.name for p in (spool / "rejected").iterdir()) == ["0000000000000007-3.lp"]


def test_a_token_fixed_in_the_token_file_is_taken_without_a_restart(tmp_path, procs):
    """agent/README says 401s are retried "since the operator may fix the token", but the token file was read
    only at start: the agent kept getting 401 until restarted (operator audit). It reads the file again after
    each 401/403 and sends the new token from the next try; nothing is dropped meanwhile."""
    from agent_support import Receiver, parse_line, start_agent, wait_log, write_config

    spool = tmp_path / "spool"
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token-0123456789\n")
    rx = Receiver(procs, tmp_path, token="right-token-0123456789").start()
    cfg = write_config(tmp_path / "agent.toml", rx.url, spool, "[sources.sim]\ngpus = 1\n",
                       output_extra=f'token_file = "{token_file}"')
    agent = start_agent(procs, cfg, tmp_path / "agent.log")
    wait_log(agent, "unauthorized, retrying with backoff")
    wait_for(lambda: len(list(spool.glob("*.rec"))) >= 2, 20, "batches kept while unauthorized")
    assert rx.lines() == []
    token_file.write_text("right-token-0123456789\n")
    wait_log(agent, f"output.token_file {token_file} holds a new token: using it from the next try")
    wait_for(lambda: not list(spool.glob("*.rec")) and rx.lines(), 20, "the spool drained with the new token")
    assert agent.stop() == 0, agent.output()
    points = [parse_line(line) for line in rx.lines()]
    assert all(p[2]["dropped_points"] == 0 for p in points if p[0] == "puewatch_agent")
    assert "right-token-0123456789" not in agent.output()  # a secret, never logged
