"""`puewatch statement`, `verify` and `city --statements`: a real embedded store holding the
collector's per-cell energies, the meters' raw register readings they came from and the job
ledger (tests/jobs/test_jobs.py's site); the site's report and the statements made and signed
by the CLI in subprocesses; the city's checks passing and failing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from js_signature import js, node_ready
from test_jobs import CARBON, N_SUB, SITE, SUB, T0, _cells, _lines

from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.lineprotocol import encode_point
from puewatch.signing import digest, load_private_key, sign_report

PERIOD = ("--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z")


def _registers(c: dict[str, np.ndarray]) -> bytes:
    """The meters' cumulative registers at every collector cell edge: the raw readings `report` reads."""
    per_meter = {"incomer": c["e_dc"], "ups-a": c["it_a"], "crac-a": c["b_a"] - c["it_a"], "ups-x": c["it_x"],
                 "pv": c["pv"]}
    out = []
    for meter, wh in per_meter.items():
        reg = np.concatenate([[1000.0], 1000.0 + np.cumsum(wh)])
        for k in range(N_SUB + 1):
            out.append(encode_point("modbus", {"meter": meter}, {"energy_wh": float(reg[k])}, T0 + k * SUB))
    return "\n".join(out).encode() + b"\n"


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "puewatch.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("statement")
    conf = root / "collector.toml"
    conf.write_text(SITE.format(state=root / "state"))
    cells = _cells(np.random.default_rng(16))
    store = EmbeddedStore(root / "store.sqlite")
    store.write(_lines(cells))
    store.write(_registers(cells))
    store.close()
    (root / "carbon.toml").write_text(CARBON)
    keys = root / "keys"
    assert cli("keys", "new", "--out", keys, "--name", "site").returncode == 0
    common = ("--config", conf, "--store", root / "store.sqlite", *PERIOD)
    r = cli("report", *common, "--json", "--sign", keys / "site.key", "-o", root / "report.json")
    assert r.returncode == 0, r.stderr
    for tenant in ("t1", "t2"):
        r = cli("statement", *common, "--tenant", tenant, "--sign", keys / "site.key", "--report",
                root / "report.json", "--carbon", root / "carbon.toml", "--out", root / f"{tenant}.json",
                "--html", root / f"{tenant}.html")
        assert r.returncode == 0, r.stderr
    return {"root": root, "conf": conf, "cells": cells, "keys": keys, "common": common}
