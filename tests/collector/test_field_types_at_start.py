"""The field types ingest starts with (`collector.main.ingest_field_types`) on an embedded store: the
store's own, and those of acknowledged lines an earlier run left in the spool (real spool files, real
SQLite), read before the writer starts, so nothing moves from the spool to the store meanwhile."""

from __future__ import annotations

from puewatch.collector.main import ingest_field_types
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.collector.stores.spool import StoreWriter
from puewatch.core.batch import Batch
from servers import free_port


def test_types_at_start_include_the_spooled_lines_of_an_earlier_run(tmp_path):
    # An earlier run acknowledged lines its store never took (it was away), then died.
    away = Influx1Store(f"http://127.0.0.1:{free_port()}", "site", timeout_s=1)
    w = StoreWriter(away, tmp_path / "spool", 1 << 20, durable=True, backoff_min_s=60, backoff_max_s=60)
    w.commit(b'led,n=a job="j, x=1i",n=1i 10\n', 1).result(10)
    w.commit(b"m f=1 11\nm,h=a\\ b g=true 12\n", 2).result(10)
    snmp = Batch()
    snmp.add("snmp_reading", {"device": "pdu"}, 5, {"value": 1.5})
    w.submit(snmp)  # a typed batch: the schema fixes its types
    w.close(timeout_s=0.2)

    store = EmbeddedStore(tmp_path / "pue.db")
    store.write(b"m s=\"x\" 1\n")  # what the store itself holds
    writer = StoreWriter(store, tmp_path / "spool", 1 << 20, durable=True, start=False)
    types = ingest_field_types(store, writer)
    assert {(m, f): types.known(m, f) for m, f in (("m", "s"), ("m", "f"), ("m", "g"), ("led", "job"), ("led", "n"))} \
        == {("m", "s"): "string", ("m", "f"): "float", ("m", "g"): "boolean", ("led", "job"): "string",
            ("led", "n"): "integer"}
    assert types.known("led", "x") is None  # text inside a string is no field
    assert store.field_type("m", "f") is None  # nothing left the spool while the types were read
    assert types.fault("m", {"f": "string"}, {}) is not None and types.fault("m", {"f": "float"}, {}) is None

    writer.start()  # then the writer stores them, as acknowledged
    assert writer.flush(10)
    assert store.field_types() == {("m", "s"): "string", ("m", "f"): "float", ("m", "g"): "boolean",
                                   ("led", "job"): "string", ("led", "n"): "integer", ("snmp_reading", "value"): "float"}
    writer.close()
    store.close()
