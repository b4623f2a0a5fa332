"""`puewatch collector` runs the embedded store's upkeep (retention, compaction) from its start on."""

from __future__ import annotations

import sqlite3
import time

from collector_support import CollectorProcess, free_port, write_config
from puewatch.collector.stores.embedded import EmbeddedStore

S = 10**9
DAY = 86_400 * S


def test_collector_prunes_and_compacts_the_embedded_store_at_start(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port,
                        extra="[store.embedded]\nraw_retention_days = 3\ncompact_after_days = 1\n")
    path = tmp_path / "state" / "puewatch.sqlite"
    now = time.time_ns()
    expired = [now - 5 * DAY + i * S for i in range(50)]  # older than the retention: deleted
    # Older than compact_after_days = 1 (but not the default 2): into chunks.
    old = [now - 36 * 3600 * S + i * S for i in range(300)]
    recent = [now - 3600 * S + i * S for i in range(20)]  # stays lines
    store = EmbeddedStore(path)
    store.write("".join(f"modbus,meter=x power_kw={i}.5 {t}\n" for i, t in enumerate(expired + old + recent)).encode())
    store.close()

    with CollectorProcess(conf, ingest_port) as proc:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            db = sqlite3.connect(path, timeout=30)
            chunked = db.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0]
            db.close()
            if chunked == len(old):
                break
            time.sleep(0.2)
        assert chunked == len(old), proc.output()[-2000:]

    db = sqlite3.connect(path)
    rows = [r[0] for r in db.execute(
        "SELECT time_ns FROM lines WHERE series_id = (SELECT id FROM series WHERE measurement = 'modbus') ORDER BY time_ns")]
    db.close()
    assert rows == recent
    store = EmbeddedStore(path)
    t, v = store.series("modbus", "power_kw", {"meter": "x"}, 0, now + DAY)
    assert t.tolist() == old + recent
    assert v.tolist() == [i + 50.5 for i in range(len(old) + len(recent))]
    store.close()
