"""A store that refuses the collector's credentials (401 wrong password, 403 no write grant) is a store
that cannot be written now, not data to set aside: the acknowledged batches stay spooled, the writer
is degraded (store_unauthorized) and stores every line once the operator fixes the user (real influxd
with authentication on)."""

from __future__ import annotations

import time

from puewatch.collector.health import Health
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.collector.stores.spool import StoreWriter
from store_fixtures import influx, influx_auth  # noqa: F401 (fixture)


def _body(i: int, lines: int = 10) -> bytes:
    return "".join(f"m,src=w f={i * 1000 + k} {i * 1000 + k}\n" for k in range(lines)).encode()


def _wait(what, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


def test_a_wrong_password_then_a_missing_grant_keep_every_batch_until_the_operator_fixes_them(influx_auth, tmp_path):
    influx_auth.query('CREATE DATABASE "site"')
    influx_auth.query("CREATE USER writer WITH PASSWORD 'old-pass'")  # the collector has 'new-pass'
    health = Health()
    store = Influx1Store(influx_auth.url, "site", user="writer", password="new-pass")
    w = StoreWriter(store, tmp_path / "spool", 16 << 20, durable=True, health=health,
                    backoff_min_s=0.05, backoff_max_s=0.3)
    for i in range(1, 11):
        w.commit(_body(i), 10).result(10)  # acknowledged: on disk
    assert _wait(lambda: w.stats()["store_errors"] >= 3)
    st = w.stats()
    assert "store_unauthorized" in health.active() and "401" in health.active()["store_unauthorized"]
    assert "new-pass" not in health.status() and "new-pass" not in str(st["last_error"])
    assert st["rejected_points"] == 0 and st["dropped_points"] == 0 and st["spool_points"] == 100
    assert not list((tmp_path / "spool" / "rejected").glob("*"))

    influx_auth.query("SET PASSWORD FOR writer = 'new-pass'")  # the password now fits; no write grant yet
    errors = w.stats()["store_errors"]
    assert _wait(lambda: w.stats()["store_errors"] >= errors + 3)
    assert "403" in str(w.stats()["last_error"]) and "store_unauthorized" in health.active()
    for i in range(11, 21):
        w.commit(_body(i), 10).result(10)  # still taken while degraded (within the spool's bound)

    influx_auth.query('GRANT WRITE ON "site" TO writer')
    assert w.flush(30), w.stats()
    st = w.stats()
    assert st["points_written"] == 200 and st["rejected_points"] == 0 and st["dropped_points"] == 0
    assert "store_unauthorized" not in health.active() and health.events["store_unauthorized"] >= 6
    w.close()
    admin = Influx1Store(influx_auth.url, "site", user="admin", password="adminpass")
    times = admin.series("m", "f", {"src": "w"}, 0, 2**62)[0].tolist()
    assert times == sorted(i * 1000 + k for i in range(1, 21) for k in range(10))  # each once


def test_a_database_dropped_under_the_collector_keeps_every_batch_until_it_exists_again(influx, tmp_path):
    """Found by the store audit: with its database dropped, influxd answers 404 ("database not found"), which
    set aside every acknowledged line (one request per line, by halves) and wrote none once the database was
    back. A 404 refuses the writer, not the lines: the batches stay spooled, the writer is degraded
    (store_not_found), and every line is written once the database exists again."""
    influx.query('CREATE DATABASE "site"')
    health = Health()
    w = StoreWriter(Influx1Store(influx.url, "site"), tmp_path / "spool", 16 << 20, durable=True, health=health,
                    backoff_min_s=0.05, backoff_max_s=0.3)
    w.commit(_body(1), 10).result(10)
    assert w.flush(30)
    influx.query('DROP DATABASE "site"')
    for i in range(2, 12):
        w.commit(_body(i), 10).result(10)  # acknowledged: on disk
    assert _wait(lambda: w.stats()["store_errors"] >= 3)
    st = w.stats()
    assert "store_not_found" in health.active() and "404" in health.active()["store_not_found"], health.active()
    assert "database not found" in str(st["last_error"])
    assert st["rejected_points"] == 0 and st["dropped_points"] == 0 and st["spool_points"] == 100
    assert not list((tmp_path / "spool" / "rejected").glob("*"))
    influx.query('CREATE DATABASE "site"')
    assert w.flush(30), w.stats()
    st = w.stats()
    assert st["points_written"] == 110 and st["rejected_points"] == 0
    assert "store_not_found" not in health.active()
    w.close()
    times = Influx1Store(influx.url, "site").series("m", "f", {"src": "w"}, 0, 2**62)[0].tolist()
    assert times == sorted(i * 1000 + k for i in range(2, 12) for k in range(10))  # each once


def test_a_store_that_does_not_answer_degrades_the_collector_until_it_does(influx, tmp_path):
    """Found by the metrics audit: with InfluxDB refusing every connection for minutes the collector showed no
    degraded reason (/health "pass"), only its spool growing. It is degraded (store_unavailable) while the store
    does not answer, and recovers with every line written once when it does (a real influxd, stopped and
    started again on its port)."""
    influx.query('CREATE DATABASE "site"')
    influx.stop()
    health = Health()
    w = StoreWriter(Influx1Store(influx.url, "site"), tmp_path / "spool", 16 << 20, durable=True, health=health,
                    backoff_min_s=0.05, backoff_max_s=0.3)
    for i in range(1, 6):
        w.commit(_body(i), 10).result(10)  # acknowledged: on disk
    assert _wait(lambda: "store_unavailable" in health.active()), health.active()
    assert w.stats()["spool_points"] == 50
    influx.start()
    assert w.flush(30), w.stats()
    assert "store_unavailable" not in health.active() and health.events["store_unavailable"] >= 1
    assert w.stats()["points_written"] == 50
    w.close()
