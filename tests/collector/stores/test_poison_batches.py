"""Poison batches (issue 13): a line that makes influxd 1.6.7 panic is isolated and set aside,
the rest of its batch and every later raw and derived write go through, against a real influxd
that the test restarts each time the line kills it."""

from __future__ import annotations

import logging
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.collector.stores.isolate import split_lines
from puewatch.collector.stores.spool import StoreWriter
from puewatch.core.batch import Batch
from servers import free_port
from store_fixtures import influx  # noqa: F401 (fixture)

# m, space, backslash, backslash, =, ", =, "  (../shared/conformance: influxd 1.6.7 panics on it)
POISON = b'm \\\\="=" 5\n'
T0_NS = 1_700_000_000_000_000_000


def raw(first: int, n: int) -> bytes:
    return b"".join(b"raw,node=n1 power_w=%d.5 %d\n" % (first + i, T0_NS + (first + i) * 10**9) for i in range(n))


class Supervisor(threading.Thread):
    """Restarts influxd whenever it died, as systemd would; counts the restarts."""

    def __init__(self, server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.restarts = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            if not self.server.alive():
                self.restarts += 1
                try:
                    self.server.start()
                except RuntimeError:  # killed again before start() saw it ready: the next turn restarts it
                    pass


def test_a_line_that_kills_influxd_is_set_aside_and_writes_go_on(influx, tmp_path, caplog):  # noqa: F811
    assert POISON == bytes([0x6D, 0x20, 0x5C, 0x5C, 0x3D, 0x22, 0x3D, 0x22]) + b" 5\n"
    influx.query('CREATE DATABASE "site"')
    supervisor = Supervisor(influx)
    supervisor.start()
    w = StoreWriter(Influx1Store(influx.url, "site", timeout_s=10), tmp_path / "spool", 1 << 20,
                    backoff_min_s=0.05, backoff_max_s=0.5)
    try:
        body = raw(0, 6) + POISON + raw(6, 5)  # the raw path: 12 lines as an agent sent them
        w.submit(body, 12)
        derived = Batch()  # the pipeline's path: a typed batch after it
        derived.add("pue", {"site": "s1"}, T0_NS + np.arange(4, dtype=np.int64) * 10**9, {"pue": np.full(4, 1.25)})
        w.submit(derived, 4)
        w.submit(raw(11, 3), 3)
        with caplog.at_level(logging.WARNING, logger="puewatch.collector.stores.spool"):
            assert w.flush(120), w.stats()
    finally:
        supervisor.stopping.set()
        supervisor.join()
    st = w.stats()
    assert supervisor.restarts >= 1  # the line did kill influxd
    assert st["rejected_points"] == 1 and st["rejected_batches"] == 1 and st["dropped_points"] == 0
    assert st["points_written"] == 11 + 4 + 3 and st["spool_batches"] == 0
    kept = list((tmp_path / "spool" / "rejected").iterdir())
    assert [p.read_bytes() for p in kept] == [POISON]
    assert caplog.text.count("refused a line of batch") == 1 and 'm \\\\="=" 5' in caplog.text
    w.close()
    if not influx.alive():
        influx.start()
    assert influx.points("SELECT count(power_w) FROM raw", "site")[0][1] == 14
    assert influx.points("SELECT count(pue) FROM pue", "site")[0][1] == 4
    # And the poison is not replayed at the next start: the spool is empty.
    again = StoreWriter(Influx1Store(influx.url, "site"), tmp_path / "spool", 1 << 20)
    assert again.flush(10) and again.stats()["points_written"] == 0 and influx.alive()
    again.close()


class PingsButFailsWrites(BaseHTTPRequestHandler):
    """An InfluxDB under too much load: /ping answers, every write times out with a 500."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"error":"timeout"}'
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("kind", ["dead", "up but failing writes"])
def test_a_failing_store_is_not_mistaken_for_a_poison_line(tmp_path, kind):
    # Down for good (pings fail) or up and failing every write (pings answer before and after):
    # no write takes the store down, so no line gets a strike and nothing is set aside.
    server = None
    if kind == "dead":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 0), PingsButFailsWrites)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
    w = StoreWriter(Influx1Store(url, "site", timeout_s=1), tmp_path / "spool", 1 << 20,
                    backoff_min_s=0.01, backoff_max_s=0.02)
    w.submit(raw(0, 4), 4)
    deadline = time.monotonic() + 20
    while w.stats()["store_errors"] < 20:
        assert time.monotonic() < deadline, w.stats()
        time.sleep(0.02)
    st = w.stats()
    assert st["rejected_points"] == 0 and st["spool_points"] == 4 and st["dropped_points"] == 0
    assert not w.close(timeout_s=0.1)
    if server is not None:
        server.shutdown()


def test_type_conflicts_in_a_derived_batch_cost_only_their_lines(tmp_path):
    store = EmbeddedStore(tmp_path / "pue.db")
    w = StoreWriter(store, tmp_path / "spool", 1 << 20)
    w.submit(b'gpu_power,node=a power_w="x" 1\n', 1)  # a string first: the field is a string now
    b = Batch()
    b.add("gpu_power", {"node": "a"}, np.arange(2, 42, dtype=np.int64), {"power_w": np.arange(40, dtype=float)})
    b.add("gpu_power", {"node": "a"}, np.arange(50, 54, dtype=np.int64), {"power_s": np.array(["ok"] * 4, dtype=object)})
    w.submit(b, 44)
    assert w.flush(20)
    st = w.stats()
    assert st["rejected_points"] == 40 and st["points_written"] == 1 + 4
    assert len(split_lines(next((tmp_path / "spool" / "rejected").iterdir()).read_bytes())) == 40
    w.close()


def test_split_lines_keeps_newlines_inside_string_fields():
    body = b'a f=1 1\nb,t=x\\ y s="two\nlines",g=2 2\nc s="q\\"\n" 3\n' + POISON + b"d f=1"
    assert split_lines(body) == [b"a f=1 1\n", b'b,t=x\\ y s="two\nlines",g=2 2\n', b'c s="q\\"\n" 3\n', POISON, b"d f=1\n"]
