"""Field types survive a restart of `puewatch collector` on its embedded store: every InfluxDB type
(float, integer, unsigned, string, boolean) comes back with its type and value, and the ingest check
after the restart refuses and accepts exactly what influxd would (a boolean stays a boolean)."""

from __future__ import annotations

import time

from collector_support import CollectorProcess, free_port, post, scrape, write_config
from puewatch.collector import metrics
from puewatch.collector.stores.embedded import EmbeddedStore

# A string with what must survive intact: newlines (one shaped like a forged line), a backslash, quotes.
TEXT = 'line one\nmeter power_kw=99999\nback\\slash "quoted"'
WIRE_TEXT = TEXT.replace("\\", "\\\\").replace('"', '\\"')
WRITTEN = {"f": 1.5, "i": -7, "big": 2**53, "u": 18, "ok": True, "off": False, "s": TEXT}


def test_every_field_type_survives_a_restart_and_is_checked_after_it_as_before(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    t0 = time.time_ns()
    first = f'typed,t=a f=1.5,i=-7i,big={2**53}i,u=18u,ok=true,off=F,s="{WIRE_TEXT}" {t0}\n'
    # What influxd answers for each later write to the same fields: refused for another type, taken for the same.
    later = {
        "ok=1i": 400, "ok=1": 400, 'ok="true"': 400, "ok=false": 204,
        "f=1i": 400, "f=2": 204,
        "i=1.5": 400, "i=1u": 400, "i=8i": 204,
        "u=1i": 400, "u=19u": 204,
        "s=1": 400, 's="x"': 204,
    }
    with CollectorProcess(conf, ingest_port):
        assert post(ingest_port, first) == 204
        before = {line: post(ingest_port, f"typed,t=a {line} {t0 + n}\n") for n, line in enumerate(later, 1)}
        scraped = scrape(metrics_port)
    assert before == later  # the same process: what it learnt from the first write
    # Each refusal counted where an operator alerts on it (puewatch_ingest_store_refused was never exported:
    # found by the config audit), and every ingest and store metric the collector defines is on /metrics.
    assert scraped["puewatch_ingest_store_refused_total"] == sum(code == 400 for code in later.values())
    for name, _, counter in [*metrics._INGEST.values(), *metrics._STORE.values()]:
        assert any(k.split("{")[0] == name + ("_total" if counter else "") for k in scraped), name
    store_path = tmp_path / "state" / "puewatch.sqlite"
    store = EmbeddedStore(store_path)
    types_stored = {f: store.field_type("typed", f) for f in WRITTEN}
    store.close()
    assert types_stored == {"f": "float", "i": "integer", "big": "integer", "u": "unsigned", "ok": "boolean",
                            "off": "boolean", "s": "string"}

    with CollectorProcess(conf, ingest_port):  # restarted: the types come from the store
        after = {line: post(ingest_port, f"typed,t=a {line} {t0 + 100 + n}\n") for n, line in enumerate(later, 1)}
    assert after == later

    store = EmbeddedStore(store_path)
    try:
        got = {}
        for name in WRITTEN:
            t, values = store.values("typed", name, {"t": "a"}, t0, t0 + 1)
            assert list(t) == [t0], name
            got[name] = values[0]
        assert got == WRITTEN
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in WRITTEN.items()}
        # The later writes that were taken, with their types too.
        t, ok = store.values("typed", "ok", {"t": "a"}, t0, t0 + 1000)
        assert ok == [True, False, False] and all(type(x) is bool for x in ok)
        t, i = store.values("typed", "i", {"t": "a"}, t0, t0 + 1000)
        assert i == [-7, 8, 8] and all(type(x) is int for x in i)
    finally:
        store.close()
