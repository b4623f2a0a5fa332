"""The derived series' spool on a full disk (a real tmpfs filled to the brim) while the store is away:
the batches are held in memory instead of the oldest spooled ones being dropped for room; past the
memory bound the oldest held go, counted and logged once; room again, what memory held goes to disk,
and every batch not counted as dropped reaches the store in order."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from test_collector_durable import TmpfsNamespace

SCRIPT = textwrap.dedent('''
    import errno, json, logging, sys, time
    from pathlib import Path
    from puewatch.collector.health import Health
    from puewatch.collector.stores.embedded import EmbeddedStore
    from puewatch.collector.stores.influx1 import Influx1Store
    from puewatch.collector.stores.spool import StoreWriter

    mount, out_dir, dead_port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(filename=out_dir / "writer.log", level=logging.INFO)
    LINES = 10

    def body(i):
        return "".join(f"derived,src=d f={i * LINES + k:08d} {10**6 + i * LINES + k}\\n" for k in range(LINES)).encode()

    def wait(what):
        deadline = time.monotonic() + 30
        while not what():
            assert time.monotonic() < deadline, w.stats()
            time.sleep(0.02)

    health = Health()
    size = len(body(0))
    w = StoreWriter(Influx1Store(f"http://127.0.0.1:{dead_port}", "site", timeout_s=1), mount / "spool-derived",
                    16 << 20, health=health, memory_on_full_disk_bytes=15 * size,
                    disk_full_reason="derived_spool_disk_full", backoff_min_s=0.05, backoff_max_s=0.1)
    for i in range(5):
        w.submit(body(i), LINES)
    wait(lambda: w.stats()["spool_batches"] == 5)
    with open(mount / "filler", "wb") as f:  # to the brim, as a runaway log would
        try:
            while True:
                f.write(b"\\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    result = {}
    for i in range(5, 15):
        w.submit(body(i), LINES)
    wait(lambda: w.stats()["held_batches"] == 10)
    result["held"] = {k: w.stats()[k] for k in ("held_batches", "held_points", "spool_batches", "dropped_points")}
    result["degraded"] = sorted(health.active())
    for i in range(15, 25):  # past the memory bound (15 batches): the oldest held go, counted
        w.submit(body(i), LINES)
    wait(lambda: w.stats()["held_batches"] == 15 and w.stats()["queue_batches"] == 0)
    result["bounded"] = {k: w.stats()[k] for k in ("held_batches", "spool_batches", "dropped_points")}
    (mount / "filler").unlink()
    w.submit(body(25), LINES)  # the disk takes it: what memory held follows it there
    wait(lambda: w.stats()["held_batches"] == 0 and w.stats()["spool_batches"] == 21)
    result["room"] = {k: w.stats()[k] for k in ("held_batches", "spool_batches", "dropped_points")}
    result["after"] = sorted(health.active())
    w.close(timeout_s=0.2)
    store = EmbeddedStore(out_dir / "pue.sqlite")
    w2 = StoreWriter(store, mount / "spool-derived", 16 << 20)
    assert w2.flush(30)
    result["stored"] = store.series("derived", "f", {"src": "d"}, 0, 2**62)[1].astype(int).tolist()
    w2.close()
    print(json.dumps(result))
''')


def test_a_full_disk_under_the_derived_spool_holds_batches_in_memory_and_loses_none_within_the_bound(tmp_path):
    from servers import free_port

    mount = tmp_path / "state"
    ns = TmpfsNamespace(mount, "1m")
    try:
        script = tmp_path / "drive.py"
        script.write_text(SCRIPT)
        run = subprocess.run([*ns.prefix, sys.executable, str(script), str(mount), str(tmp_path), str(free_port())],
                             capture_output=True, text=True, timeout=120)
    finally:
        ns.close()
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    # Full disk: the 5 spooled batches stay, the 10 new ones wait in memory, nothing dropped.
    assert r["held"] == {"held_batches": 10, "held_points": 100, "spool_batches": 5, "dropped_points": 0}
    # (The store is away all along: store_unavailable too.)
    assert r["degraded"] == ["derived_spool_disk_full", "store_unavailable"]
    # 20 held against a bound of 15: the 5 oldest held (batches 5-9) dropped and counted.
    assert r["bounded"] == {"held_batches": 15, "spool_batches": 5, "dropped_points": 50}
    assert r["room"] == {"held_batches": 0, "spool_batches": 21, "dropped_points": 50}
    assert r["after"] == ["store_unavailable"]
    expected = [n for i in [*range(5), *range(10, 26)] for n in range(i * 10, i * 10 + 10)]
    assert r["stored"] == expected  # every batch not counted as dropped, once, in order
    log = (tmp_path / "writer.log").read_text()
    assert log.count("degraded (derived_spool_disk_full)") == 1 and log.count("dropping the oldest held") == 1
    assert "recovered (derived_spool_disk_full)" in log and "dropped the oldest batch" not in log
