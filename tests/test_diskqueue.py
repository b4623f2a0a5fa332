"""The on-disk queue itself: order, bounds, counts, restarts, SIGKILL mid-write, older spools."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from puewatch.backoff import Backoff
from puewatch.diskqueue import DiskQueue, decode_record, encode_record
from puewatch.errors import UserError


def opened(path, max_bytes=1 << 20, rejected_max_bytes=1 << 20):
    q = DiskQueue(path, max_bytes, rejected_max_bytes, rejected_suffix=".lp")
    q.open()
    return q


def drain(q):
    """Every record's (payload, points), oldest first, delivered."""
    out = []
    while (rec := q.oldest()) is not None:
        out.append((q.read(rec), rec.points))
        q.done(rec)
    return out


def test_records_come_out_in_seq_order_and_survive_a_restart(tmp_path):
    q = opened(tmp_path / "q")
    first, second = q.next_seq(), q.next_seq()
    q.put(b"second", 2, seq=second)  # stored first, but after `first` in the queue's order
    q.put(b"first", 1, seq=first)
    q.extend(b"third ", 3)
    q.extend(b"and more", 4)
    assert q.seal().points == 7
    assert (q.records, q.points) == (3, 10)
    q.close()
    q2 = opened(tmp_path / "q")
    assert (q2.records, q2.points, q2.bytes) == (3, 10, q.bytes)
    assert q2.next_seq() > 3  # new records go after the old ones
    assert drain(q2) == [(b"first", 1), (b"second", 2), (b"third and more", 7)]
    assert q2.bytes == 0 and not list((tmp_path / "q").glob("*.rec"))


def test_the_bound_drops_oldest_first_never_the_one_in_flight_and_counts(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    size = len(encode_record(b"x" * 100, 10))
    q = opened(tmp_path / "q", max_bytes=3 * size)
    for i in range(3):
        q.put(bytes([65 + i]) * 100, 10)
    in_flight = q.oldest()
    q.put(b"D" * 100, 10)  # full: the oldest not in flight (B) goes
    assert (q.dropped_points, q.dropped_batches, q.records) == (10, 1, 3)
    q.release()
    q.put(b"E" * 100, 10)  # now A goes
    assert q.dropped_points == 20 and in_flight.path.exists() is False
    assert sum(f"reached its bound of {3 * size} bytes: dropped the oldest batch" in r.getMessage()
               for r in caplog.records) == 2
    assert [p[:1] for p, _ in drain(q)] == [b"C", b"D", b"E"]
    # larger than the whole queue: dropped and counted, nothing else goes
    q.put(b"F" * 100, 10)
    assert q.put(b"x" * (3 * size), 5) is None and q.dropped_points == 25 and q.records == 1


def test_a_new_record_older_than_all_on_disk_is_the_one_dropped(tmp_path):
    size = len(encode_record(b"x" * 50, 1))
    q = opened(tmp_path / "q", max_bytes=2 * size)
    old = q.next_seq()
    q.put(b"y" * 50, 1)
    q.put(b"z" * 50, 1)
    assert q.put(b"x" * 50, 1, seq=old) is None
    assert q.dropped_points == 1 and [p[:1] for p, _ in drain(q)] == [b"y", b"z"]


def test_extend_drops_new_points_when_nothing_can_go_and_says_so_once(tmp_path, caplog):
    size = len(encode_record(b"p" * 40, 1))
    q = opened(tmp_path / "q", max_bytes=3 * size)
    with caplog.at_level(logging.ERROR, logger="puewatch.diskqueue"):
        stored = sum(q.extend(b"p" * 40, 1) for _ in range(10))  # the open record cannot be dropped
    assert stored == 3 and q.dropped_points == 7 and q.dropped_batches == 0
    assert caplog.text.count("dropping new points") == 1


# The writer killed with SIGKILL: it prints the index of each piece once extend()/put() returned.
WRITER = textwrap.dedent(
    """
    import sys
    from puewatch.diskqueue import DiskQueue
    from tests_payload import payload
    q = DiskQueue(sys.argv[1], 1 << 34, 1 << 20)
    q.open()
    for i in range(10 ** 6):
        if sys.argv[2] == "extend":
            assert q.extend(payload(i), i % 7 + 1)
            if i % 5 == 4:
                q.seal()
        else:
            assert q.put(payload(i), i % 7 + 1)
        print(i, flush=True)
    """
)
PAYLOAD = textwrap.dedent(
    """
    def payload(i):
        # 16 KiB to 1 MiB: large writes, so that the kill often lands inside one
        return (b"%08d" % i) * (2048 * (1 + (i * 7919) % 64))
    """
)


@pytest.mark.parametrize("mode", ["extend", "put"])
def test_sigkill_mid_write_loses_nothing_acknowledged_and_leaves_no_torn_record(tmp_path, mode):
    (tmp_path / "tests_payload.py").write_text(PAYLOAD)
    (tmp_path / "writer.py").write_text(WRITER)
    sys.path.insert(0, str(tmp_path))
    try:
        from tests_payload import payload
    finally:
        sys.path.remove(str(tmp_path))
    rng = random.Random(11)
    for round_ in range(8):
        qdir = tmp_path / f"q{round_}"
        env = dict(os.environ, PYTHONPATH=str(tmp_path))
        child = subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(qdir), mode], stdout=subprocess.PIPE, env=env)
        want = rng.randint(3, 25)
        acked = -1
        while acked < want:
            line = child.stdout.readline()
            assert line, "the writer stopped by itself"
            acked = int(line)
        time.sleep(rng.uniform(0, 0.004))  # somewhere in the next piece's write (or fsync)
        child.send_signal(signal.SIGKILL)
        child.wait()
        acked = max([acked] + [int(line) for line in child.stdout.read().split()])  # acks still in the pipe
        child.stdout.close()
        q = opened(qdir, max_bytes=1 << 34)
        records = drain(q)
        got = b"".join(p for p, _ in records)
        n = 0
        while got:  # the pieces, in order, each whole
            assert got.startswith(payload(n)), f"round {round_}: piece {n} is torn or out of order"
            got = got[len(payload(n)) :]
            n += 1
        # every acknowledged piece is there; at most the one written at the kill besides
        assert acked + 1 <= n <= acked + 2, (acked, n)
        assert sum(p for _, p in records) == sum(i % 7 + 1 for i in range(n))
        assert q.dropped_points == 0 and not list(qdir.glob("*.part")) and not list(qdir.glob("*.open"))


def test_an_older_agent_or_collector_spool_is_converted_in_order(tmp_path, caplog):
    agent = tmp_path / "agent"
    (agent / "rejected").mkdir(parents=True)
    (agent / "seg-0000000000000004.lp").write_bytes(b"m v=1 1\nm v=2 2\n")
    (agent / "open-0000000000000005.lp").write_bytes(b"m v=3 3\nm v=4 4\nm v=")  # killed mid-line
    (agent / "rejected" / "seg-0000000000000009.lp").write_bytes(b"bad\n")
    (agent / "notes.txt").write_text("an operator's file")
    collector = tmp_path / "collector"
    (collector / "rejected").mkdir(parents=True)
    (collector / "batch-0000000000000002-3.lp").write_bytes(b"a f=1 1\na f=2 2\na f=3 3\n")
    (collector / "batch-0000000000000001-1.lp").write_bytes(b"a f=0 0\n")
    (collector / "batch-0000000000000003-1.lp.part").write_bytes(b"a f=")  # never acknowledged
    with caplog.at_level(logging.INFO, logger="puewatch.diskqueue"):
        qa, qc = opened(agent), opened(collector)
    assert drain(qa) == [(b"m v=1 1\nm v=2 2\n", 2), (b"m v=3 3\nm v=4 4\n", 2)]
    assert drain(qc) == [(b"a f=0 0\n", 1), (b"a f=1 1\na f=2 2\na f=3 3\n", 3)]
    assert qa.next_seq() == 10  # after the rejected batch too: it is never overwritten
    assert (agent / "notes.txt").exists() and caplog.text.count("notes.txt") == 1
    assert "converted from the older spool format" in caplog.text
    assert sorted(p.name for p in collector.iterdir()) == ["rejected"]


def test_stray_files_are_ignored_and_logged_once(tmp_path, caplog):
    q = opened(tmp_path / "q")
    q.put(b"keep", 1)
    q.close()
    for name in ("seg-notanumber.lp", "0000000000000001.rec", "README", ".hidden"):
        (tmp_path / "q" / name).write_text("x")
    (tmp_path / "q" / "subdir").mkdir()
    with caplog.at_level(logging.WARNING, logger="puewatch.diskqueue"):
        q2 = opened(tmp_path / "q")
    for name in ("seg-notanumber.lp", "0000000000000001.rec", "README", ".hidden", "subdir"):
        assert caplog.text.count(f"unexpected file {name} ") == 1
    assert drain(q2) == [(b"keep", 1)]


def test_rejected_payloads_are_kept_as_given_never_overwritten_newest_within_budget(tmp_path, caplog):
    q = opened(tmp_path / "q", rejected_max_bytes=250)
    rec = q.put(b"r" * 100, 4)
    assert q.reject(q.oldest(), q.read(rec)).read_bytes() == b"r" * 100
    q.close()
    q2 = opened(tmp_path / "q", rejected_max_bytes=250)  # empty queue: the seq must not start again at 1
    q2.set_aside(q2.next_seq(), b"s" * 100, 5)
    q2.set_aside(1, b"t" * 100, 4)  # even the same seq and points get a name of their own
    (tmp_path / "q" / "rejected" / "operator-notes.txt").write_text("mine")
    q2.set_aside(q2.next_seq(), b"u" * 100, 6)  # over budget: the oldest goes
    kept = sorted(p.name for p in (tmp_path / "q" / "rejected").iterdir())
    assert kept == ["0000000000000002-5.lp", "0000000000000003-6.lp", "operator-notes.txt"]
    assert (q2.rejected_points, q2.rejected_batches) == (15, 3)
    # The two oldest (seq 1: 4 points each) were deleted to keep the budget: counted and said, never unseen
    # (found by the store audit).
    assert q2.rejected_pruned_points == 8
    said = [r.getMessage() for r in caplog.records if "passed its budget of 250 bytes" in r.getMessage()]
    assert len(said) == 2 and "0000000000000001-4" in said[0] and "(4 point(s)" in said[0], said


def test_a_damaged_record_is_dropped_counted_and_moved_aside(tmp_path, caplog):
    q = opened(tmp_path / "q")
    rec = q.put(b"m v=1 1\n" * 10, 10)
    q.put(b"next\n", 1)
    data = bytearray(rec.path.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit on disk
    rec.path.write_bytes(bytes(data))
    assert q.read(q.oldest()) is None
    assert q.dropped_points == 10 and "damaged" in caplog.text
    assert (tmp_path / "q" / "rejected" / (rec.path.name + ".damaged")).exists()
    assert drain(q) == [(b"next\n", 1)]


def test_encoding_round_trips_and_stops_at_a_torn_piece():
    pieces = [encode_record(b"a\n" * 3, 3), encode_record(b"", 0), encode_record(bytes(range(256)), 1)]
    whole = b"".join(pieces)
    assert decode_record(whole) == (b"a\n" * 3 + bytes(range(256)), 4, len(whole))
    for cut in range(1, len(pieces[2])):
        assert decode_record(whole[:-cut])[2] == len(pieces[0]) + len(pieces[1])


def test_an_unusable_directory_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"spool directory .*file"):
        opened(tmp_path / "file" / "q")
    with pytest.raises(UserError, match="max_bytes must be positive"):
        DiskQueue(tmp_path / "q", 0, 1)


def test_backoff_doubles_with_full_jitter_up_to_the_cap_and_resets_on_success():
    rng = random.Random(3)
    b = Backoff(0.5, 8.0, uniform=rng.uniform)
    ceilings, delays = [], []
    for _ in range(8):
        delays.append(b.failed())
        ceilings.append(b.ceiling_s())
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert all(0.5 <= d <= c for d, c in zip(delays, ceilings))
    assert len(set(delays[2:])) == 6  # jittered, not in step
    assert b.succeeded() == 8 and b.failures == 0 and b.failed() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_an_open_record_cut_anywhere_is_cut_back_to_its_last_whole_piece(tmp_path):
    q = opened(tmp_path / "q")
    q.extend(b"m v=1 1\n", 1)
    q.extend(b"m v=2 2\nm v=3 3\n", 2)
    q.close()  # as after kill -9: the record is still open
    (path,) = (tmp_path / "q").glob("*.open")
    whole = path.read_bytes()
    first = len(encode_record(b"m v=1 1\n", 1))
    for cut in (first + 1, first + 20, len(whole) - 1):  # a power cut inside the second piece
        path.write_bytes(whole[:cut])
        q2 = opened(tmp_path / "q")
        assert drain(q2) == [(b"m v=1 1\n", 1)]
        q2.close()
    assert not [p for p in (tmp_path / "q").iterdir() if p.is_file()]


def test_an_older_batch_that_cannot_be_converted_is_a_clear_error_naming_it(tmp_path):
    q = tmp_path / "q"
    q.mkdir()
    old = q / "seg-0000000000000001.lp"
    old.mkdir()  # unreadable as a file (a directory under a batch's name): read fails with EISDIR
    with pytest.raises(UserError, match=rf"spool {old}: cannot convert .* move the file out of {q}"):
        opened(q)


def test_a_write_error_that_is_not_a_full_disk_drops_no_queued_batch_and_says_what_it_is(tmp_path):
    """The open record cannot grow (here RLIMIT_FSIZE: EFBIG, a real error of write(2), in a child process;
    a read-only or unwritable directory, EIO, alike). Dropping the oldest batch cannot help that: the queued
    batches stay and are delivered, only the new points are dropped, counted and logged once with the real
    reason. Before, every failed tick dropped the oldest good batch "to make room", logged an error per tick
    and called it a full disk (found by the agent audit)."""
    script = textwrap.dedent(f"""
        import json, logging, os, resource, signal, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write(2) fails with EFBIG instead
        from puewatch.diskqueue import DiskQueue
        q = DiskQueue({str(tmp_path / 'q')!r}, 1 << 20, 1 << 20, rejected_suffix=".lp")
        q.open()
        for i in range(3):
            q.extend(b"m v=%d %d\\n" % (i, i), 1)
            q.seal()
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
        stored = sum(q.extend(b"m v=1 %d\\n" % (100 + i) * 20, 20) for i in range(10))
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        delivered = []
        while (rec := q.oldest()) is not None:
            delivered.append(rec.points)
            q.done(rec)
        print(json.dumps({{"stored": stored, "dropped": q.dropped_points, "delivered": delivered}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["delivered"] == [1, 1, 1], out  # the three queued batches, none dropped to "make room"
    assert out["stored"] == 0 and out["dropped"] == 200, out
    errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "cannot write: File too large" in errors[0] and "disk full" not in errors[0], r.stderr


def test_the_whole_pieces_before_damage_in_a_sealed_record_are_delivered(tmp_path, caplog):
    """A sealed record of many pieces (one per sampling tick), damaged in its middle: its whole pieces before
    the damage are delivered, as an open record's are at a start, and only the points after it are dropped
    and counted. Before, all 26 points went, where 12 were whole (found by the agent audit)."""
    q = opened(tmp_path / "q")
    for i in range(5):
        q.extend(b"m v=%d %d\n" % (i, i), 1)
    rec = q.seal()
    q.put(b"next\n", 1)
    data = bytearray(rec.path.read_bytes())
    data[-3] ^= 0xFF  # the last piece's payload: its checksum fails
    rec.path.write_bytes(bytes(data))
    got = q.oldest()
    assert q.read(got) == b"m v=0 0\nm v=1 1\nm v=2 2\nm v=3 3\n"
    assert got.points == 4 and q.dropped_points == 1
    assert "its first 4 point(s) are sent, the 1 after the damage are dropped" in caplog.text
    q.done(got)
    assert (tmp_path / "q" / "rejected" / (rec.path.name + ".damaged")).exists()
    assert drain(q) == [(b"next\n", 1)]
    assert q.points == 0
