"""The Grafana dashboard (config/grafana/puewatch.json) against the data a real site writes.

A real influxd 1.6.7 is filled by the real `puewatch demo --store http://.../puewatch`
(agents, SNMP meters, collector); then every query of the dashboard, the variables'
and every panel target's, is expanded the way Grafana expands InfluxQL templates and
run against influxd's /query: each must return at least one series with a value.
A query that names a measurement, field or tag the collector does not write returns
nothing and fails here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from servers import influxd

DASHBOARD = Path(__file__).resolve().parents[1] / "config" / "grafana" / "puewatch.json"
PUEWATCH = [sys.executable, "-m", "puewatch.cli"]
DB = "puewatch"
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows hold their panels
    return out


def _targets(dash: dict) -> list[tuple[str, dict]]:
    return [(p["title"], t) for p in _panels(dash) for t in p.get("targets", [])]


def _variables(dash: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def _regex_escape(value: str) -> str:
    """Grafana's escaping of a multi-value variable's values inside /regex/ (kbn.regexEscape)."""
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


def _multi(values: list[str]) -> str:
    """A multi-value (or All) variable in InfluxQL: `(a|b)` of escaped values, one value as itself."""
    esc = [_regex_escape(v) for v in values]
    return esc[0] if len(esc) == 1 else "(" + "|".join(esc) + ")"


def expand(query: str, values: dict[str, str]) -> str:
    """Replace `$name`, `${name}` and `[[name]]` as Grafana does; an unknown variable is an error."""
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise AssertionError(f"{query!r}: ${name} is not a dashboard variable or a Grafana macro")
        return values[name]

    return _VAR.sub(sub, query)


def _has_value(result: dict) -> bool:
    for series in result.get("series", []):
        for row in series.get("values", []):
            if any(v is not None for v in row[1:]):
                return True
    return False


def _tag_values(result: dict) -> list[str]:
    return sorted({row[1] for s in result.get("series", []) for row in s["values"]})


# ---- the file itself ------------------------------------------------------------------------

def test_dashboard_is_importable_and_self_consistent():
    dash = _dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = _variables(dash)
    for name in ("datasource", "site", "window", "node", "target", "cell_s", "fresh"):
        assert name in variables, name
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "influxdb"
    assert variables["target"]["query"] == "1.3" and variables["target"]["current"]["value"] == "1.3"
    assert variables["window"]["current"]["value"] == "1m"
    assert variables["site"]["query"].startswith("SHOW TAG VALUES")

    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    defined = set(variables) | {"timeFilter", "__interval", "__interval_ms"}
    aliases = {"tag_node", "tag_zone", "tag_category", "tag_meter", "tag_role", "tag_device", "tag_result", "col"}
    targets = _targets(dash)
    assert len(targets) >= 15
    for title, t in targets:
        assert t["datasource"] == {"type": "influxdb", "uid": "${datasource}"}, title
        assert t.get("rawQuery") is True and t["resultFormat"] == "time_series", title
        q = t["query"]
        assert "$timeFilter" in q, f"{title}: no $timeFilter"
        if "GROUP BY" in q:
            assert "GROUP BY time($__interval)" in q, f"{title}: group by time($__interval)"
        for m in _VAR.finditer(q):
            assert (m.group(1) or m.group(2) or m.group(3)) in defined, f"{title}: {m.group(0)}"
        for m in _VAR.finditer(t.get("alias", "")):
            assert (m.group(1) or m.group(2) or m.group(3)) in aliases | defined, f"{title}: alias {m.group(0)}"
    for p in _panels(dash):
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
    # The target line is drawn from the `target` variable, not a hard-coded threshold.
    assert any("$target" in t["query"] for _, t in targets)
    # A stat shows the newest point only where it is fresh (found by the pages audit: a stopped collector's
    # last PUE stayed on as the current one), and no PUE panel averages ratios (its legend included).
    for p in _panels(dash):
        queries = [t["query"] for t in p.get("targets", [])]
        if p["type"] == "stat":
            assert all(q.endswith("AND $timeFilter AND time > now() - $fresh") for q in queries), p["title"]
        if any('("pue")' in q or '("ppue")' in q for q in queries) and p["type"] == "timeseries":
            assert not any('mean("pue")' in q or 'mean("ppue")' in q for q in queries), p["title"]
            assert "mean" not in p["options"]["legend"]["calcs"], p["title"]


# ---- against a site's data ------------------------------------------------------------------

@pytest.fixture(scope="module")
def site_in_influx(tmp_path_factory):
    root = tmp_path_factory.mktemp("grafana")
    with influxd(root / "influxd") as db:
        d = root / "demo"
        t0 = time.monotonic()
        r = subprocess.run([*PUEWATCH, "demo", "--duration", "25", "--nodes", "2", "--json", "--dir", str(d),
                            "--store", f"{db.url}/{DB}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        assert time.monotonic() - t0 < 90
        summary = json.loads(r.stdout)
        assert summary["store"]["kind"] == "influx1" and summary["store"]["database"] == DB
        collector = tomllib.loads((d / "collector.toml").read_text())
        yield db, summary, collector


@pytest.mark.slow
def test_every_dashboard_query_returns_data_from_a_demo_site(site_in_influx):
    t0 = time.monotonic()
    db, summary, collector = site_in_influx
    dash = _dashboard()
    variables = _variables(dash)
    values = {
        "__interval": "10s",
        "__interval_ms": "10000",
        "target": variables["target"]["current"]["value"],
        "cell_s": str(collector["collector"]["interval_s"]),
        "datasource": "influxdb",
        "fresh": variables["fresh"]["query"],
    }

    # The variables' own queries, in dashboard order (each may use the ones before it).
    site = summary["site"]
    values["site"] = site
    got = _tag_values(db.query(expand(variables["site"]["query"], values), DB)[0])
    assert site in got, got
    got = _tag_values(db.query(expand(variables["window"]["query"], values), DB)[0])
    assert variables["window"]["current"]["value"] in got, got
    values["window"] = variables["window"]["current"]["value"]
    nodes = _tag_values(db.query(expand(variables["node"]["query"], values), DB)[0])
    assert nodes == sorted(summary["nodes"]), nodes
    values["node"] = _multi(nodes)  # "All", as Grafana expands it without an allValue

    start_ms = summary["start_ns"] // 1_000_000 - 60_000
    end_ms = summary["end_ns"] // 1_000_000 + 60_000
    filters = {
        "relative": "time >= now() - 1h",
        "absolute": f"time >= {start_ms}ms and time <= {end_ms}ms",
    }
    empty = []
    ran = 0
    for title, t in _targets(dash):
        for kind, tf in filters.items():
            q = expand(t["query"], {**values, "timeFilter": tf})
            result = db.query(q, DB)[0]
            ran += 1
            if not _has_value(result):
                empty.append(f"{title} [{t['refId']}, {kind}]: {q}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert ran == 2 * len(_targets(dash))
    # Points older than `fresh` are no current value: with a limit of a millisecond every stat is empty.
    stats = [t for p in _panels(dash) if p["type"] == "stat" for t in p["targets"]]
    assert len(stats) == 4
    for t in stats:
        q = expand(t["query"], {**values, "fresh": "1ms", "timeFilter": filters["relative"]})
        assert not _has_value(db.query(q, DB)[0]), q

    # The target series is the variable's value.
    q = next(t["query"] for _, t in _targets(dash) if "$target" in t["query"])
    rows = db.points(expand(q, {**values, "timeFilter": filters["relative"]}), DB)
    assert rows and all(r[1] == pytest.approx(1.3) for r in rows)
    # The power panel agrees with the summary's energies: mean power x cells = energy.
    q = next(t["query"] for _, t in _targets(dash) if 'FROM "site_energy"' in t["query"])
    whole = expand(q, {**values, "timeFilter": f"time > {summary['start_ns']} and time <= {summary['end_ns']}",
                       "__interval": "1h"}).replace(" GROUP BY time(1h) fill(none)", "")
    res = db.query(whole, DB)[0]["series"][0]
    row = dict(zip(res["columns"], res["values"][0]))
    assert row["IT"] > 0 and row["facility"] > row["IT"]
    assert time.monotonic() - t0 < 30
