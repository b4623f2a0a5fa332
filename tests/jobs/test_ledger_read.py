"""The job ledger read whole (`fields_by_series`: one answer per field or per window) gives the very
records the series-by-series read gives, from a real embedded store (rows and compacted chunks) and
a real influxd 1.6.7 (the v1 API; InfluxDB 2.x is read through the same API with a token, which
influxd 1.6.7 without auth ignores), across read windows."""

from __future__ import annotations

import numpy as np
import pytest

from servers import Influxd, http
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.core import schema
from puewatch.core.timefmt import NS
from puewatch.jobs import ledger as ledger_mod
from puewatch.jobs.ledger import read_ledger
from puewatch.lineprotocol import encode_point

T0 = 1767225600 * NS  # 2026-01-01T00:00:00Z
MINUTES = 90
START, END = T0, T0 + MINUTES * 60 * NS


def _lines(rng: np.random.Generator) -> list[str]:
    out = []
    for m in range(1, MINUTES + 3):  # two minutes past the period: their overlap only
        t = T0 + m * 60 * NS
        for node in ("gpu-a-1", "gpu-a-2", "gpu-b-1"):
            for gpu in ("0", "1", "host"):
                for slot in ("0", "1") if gpu == "1" else ("0",):
                    if rng.random() < 0.1:
                        continue  # nobody held it
                    fields = {"job": f"{node[-1]}{gpu}{slot}{m // 30}", "tenant": f"t{slot}", "source": "static",
                              "gpu_model": "" if gpu == "host" else "NVIDIA H100 80GB HBM3", "interval_s": 60.0,
                              "gpu_wh": 0.0 if gpu == "host" else float(rng.uniform(0, 10)),
                              "gpu_wh_estimated": bool(rng.random() < 0.2), "share": float(rng.uniform(0.2, 1)),
                              "shared": slot == "1", "reserved_idle": bool(rng.random() < 0.1),
                              "host_wh": float(rng.uniform(0, 2)), "host_estimated": bool(rng.random() < 0.5)}
                    if rng.random() < 0.02:
                        del fields["host_wh"]  # left out, counted
                    if rng.random() < 0.02:
                        fields["gpu_wh"] = -1.0  # left out, counted
                    if rng.random() < 0.05:
                        del fields["share"]  # defaults to 1
                    out.append(encode_point(schema.JOB_LEDGER, {"node": node, "gpu": gpu, "slot": slot}, fields, t))
    # A record with numbers but no job cannot be attributed: left out and counted (either way).
    out.append(encode_point(schema.JOB_LEDGER, {"node": "gpu-a-1", "gpu": "0", "slot": "5"},
                            {"interval_s": 60.0, "gpu_wh": 1.0, "host_wh": 0.0}, T0 + 60 * NS))
    return out


def _rows(led) -> list[tuple]:
    """The records by name, sorted: the codes' order may differ between the two reads."""
    models = led.gpu_models
    cols = zip(led.end_ns.tolist(), led.interval_ns.tolist(), led.node.tolist(), led.job.tolist(), led.gpu_model.tolist(),
               led.gpu_wh.tolist(), led.host_wh.tolist(), led.share.tolist(), led.gpu_wh_estimated.tolist(),
               led.host_estimated.tolist(), led.shared.tolist(), led.reserved_idle.tolist())
    return sorted((led.nodes[n], e, i, led.jobs[j], models[g] if g >= 0 else None, *rest)
                  for e, i, n, j, g, *rest in cols)


def _both(reader) -> tuple[list, list, dict]:
    bulk = read_ledger(reader, START, END, 3600 * NS)
    per = read_ledger(reader, START, END, 3600 * NS, per_series=True)
    assert bulk.dropped == per.dropped
    return _rows(bulk), _rows(per), bulk.dropped


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return _lines(np.random.default_rng(16))


def test_embedded_bulk_read_equals_series_by_series(tmp_path, lines, monkeypatch) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite")
    half = len(lines) // 2
    store.write(("\n".join(lines[:half]) + "\n").encode())
    assert store.compact(horizon_ns=T0 + 2 * MINUTES * 60 * NS) > 0  # the first half in chunks, the rest rows
    store.write(("\n".join(lines[half:]) + "\n").encode())
    try:
        bulk, per, dropped = _both(store)
        assert bulk == per and len(bulk) > 800
        assert set(dropped) == {"no host_wh", "gpu_wh negative or not finite", "no job"} and dropped["no job"] == 1
        # Read in windows of 7 minutes: the same records, none twice.
        monkeypatch.setattr(ledger_mod, "WINDOW_NS", 7 * 60 * NS)
        assert _rows(read_ledger(store, START, END, 3600 * NS)) == per
    finally:
        store.close()


def test_influxd_bulk_read_equals_series_by_series_and_the_embedded_store(tmp_path, lines, monkeypatch) -> None:
    emb = EmbeddedStore(tmp_path / "store.sqlite")
    emb.write(("\n".join(lines) + "\n").encode())
    embedded = _rows(read_ledger(emb, START, END, 3600 * NS))
    emb.close()
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+site")[0] == 200
        Influx1Store(server.url, "site").write(("\n".join(lines) + "\n").encode())
        for reader in (Influx1Store(server.url, "site"), Influx1Store(server.url, "site", token="t")):
            bulk, per, dropped = _both(reader)
            assert bulk == per == embedded and dropped["no job"] == 1
            monkeypatch.setattr(ledger_mod, "WINDOW_NS", 7 * 60 * NS)
            assert _rows(read_ledger(reader, START, END, 3600 * NS)) == embedded
            monkeypatch.undo()
    finally:
        server.stop()


def test_a_field_of_the_wrong_kind_is_one_clear_error(tmp_path) -> None:
    from puewatch.errors import UserError

    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(f'job_ledger,node=n,gpu=0,slot=0 job=11,tenant="t",interval_s=60,gpu_wh=1,host_wh=0 {T0 + 60 * NS}\n'.encode())
    try:
        with pytest.raises(UserError, match=r"job_ledger\.job holds numbers, not strings"):
            read_ledger(store, START, END, 3600 * NS)
    finally:
        store.close()
