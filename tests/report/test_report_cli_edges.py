"""What a new user meets at the report commands' edges: a period without data, short periods, store addresses,
bad times, a closed pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from report_support import synthetic_year, write_site
from servers import Influxd, http
from puewatch.collector import config as collector_config
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.report.sources import data_range

RUN = [sys.executable, "-m", "puewatch.cli"]


@pytest.fixture(scope="module")
def two_days():
    return synthetic_year(start="2025-03-01", end="2025-03-03")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, two_days) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("two-days")
    store = EmbeddedStore(tmp / "store.sqlite", synchronous="NORMAL")
    store.write(two_days.lines)
    store.close()
    return write_site(tmp, store_path=str(tmp / "store.sqlite")), tmp / "store.sqlite"


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=120, **kw)


def test_report_and_export_over_a_period_without_data_say_where_the_data_is(site) -> None:
    conf, _ = site
    for command in ("report", "export"):
        out = _run(command, "--config", str(conf), "--from", "2024-01-01", "--to", "2024-02-01")
        assert out.returncode == 1, (command, out.returncode, out.stderr)
        assert out.stdout == "", out.stdout
        # The data lies from the margin before 2025-03-01 to just before the margin after 2025-03-03.
        assert out.stderr.startswith(f"puewatch {command}: error: no {command}: no meter readings in "
                                     "2024-01-01T00:00:00Z .. 2024-02-01T00:00:00Z; the store holds readings from "
                                     "2025-02-28T23:45:00Z to 2025-03-03T00:00:00Z"), out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_data_range_is_the_same_from_influxd(site, two_days, tmp_path: Path) -> None:
    conf, path = site
    model = collector_config.load(conf).site_model()
    emb = EmbeddedStore(path)
    try:
        expected = data_range(emb, model)
    finally:
        emb.close()
    assert expected == (two_days.start_ns - 900 * 10**9, two_days.end_ns)
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+site")[0] == 200
        store = Influx1Store(server.url, "site")
        assert data_range(store, model) is None  # an empty database: nothing, not an error
        store.write(two_days.lines)
        assert data_range(store, model) == expected
        store.close()
    finally:
        server.stop()
