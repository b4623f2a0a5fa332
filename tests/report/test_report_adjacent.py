"""Reports of adjacent periods add up to one report over both, when a register is silent across the edge
for longer than --max-gap (docs/auditor-guide.md): from the embedded store, from a real influxd 1.6.7, and
recomputed from each period's export.

The site: an incomer register at a constant 150 kW and an IT register at 100 kW, read every minute over
three days. The incomer is silent from 21:00 to 02:00 across the first midnight (5 h, the default
--max-gap is 15 min); the IT meter from 23:30 before the last day to 00:30 after it (silent through the
whole day). At a constant power an interval's energy spread evenly over its time is exact, so every day
holds exactly 24 h of each load, and the three days hold what the whole span does.

Each silence holds values that are no readings (a meter's negative "not available" filler): one beyond
a day's window, one inside its margin. The readings beyond a window are the nearest readings, never such
a value (found by the independent-reference audit: the edge interval was lost, and the days did not add up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from servers import Influxd, http
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.core.timefmt import NS, parse_time
from puewatch.lineprotocol import encode_line, series_key

RUN = [sys.executable, "-m", "puewatch.cli"]
H = 3600 * NS
D0 = parse_time("2025-05-01")
DAY = 24 * H
DAYS = [("2025-05-01", "2025-05-02"), ("2025-05-02", "2025-05-03"), ("2025-05-03", "2025-05-04")]
LOADS = {"incomer": 150e3, "it": 100e3}
M = 60 * NS
# Refused values in the silences: beyond the second day's window (23:00), in its start margin (23:50); in the
# last day's end margin (00:10) and beyond it (00:20).
FILLERS = [("incomer", D0 + DAY - H), ("incomer", D0 + DAY - 10 * M), ("it", D0 + 3 * DAY + 10 * M),
           ("it", D0 + 3 * DAY + 20 * M)]

SITE = """
[collector]
site = "edges"
state_dir = "{tmp}/state"

[meters.incomer]
role = "facility_input"
measurement = "meter"
tags = {{ name = "incomer" }}
field = "wh"
unit = "Wh"
register = true

[meters.it]
role = "it"
point = "ups_output"
measurement = "meter"
tags = {{ name = "it" }}
field = "wh"
unit = "Wh"
register = true

[store.embedded]
path = "{tmp}/store.sqlite"
"""


def _lines() -> bytes:
    t = np.arange(D0 - 2 * H, D0 + 3 * DAY + 2 * H, 60 * NS, dtype=np.int64)
    silent = {"incomer": (D0 + DAY - 3 * H, D0 + DAY + 2 * H),
              "it": (D0 + 2 * DAY - H // 2, D0 + 3 * DAY + H // 2)}
    out = []
    for name, watts in LOADS.items():
        key = series_key("meter", {"name": name})
        lo, hi = silent[name]
        for ti in t.tolist():
            if lo < ti < hi:
                continue
            out.append(encode_line(key, {"wh": 1e6 + watts * (ti - int(t[0])) / H}, ti))
    for name, at in FILLERS:
        out.append(encode_line(series_key("meter", {"name": name}), {"wh": -1.0}, at))
    return "\n".join(out).encode() + b"\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("adjacent")
    conf = tmp / "collector.toml"
    conf.write_text(SITE.format(tmp=tmp))
    store = EmbeddedStore(tmp / "store.sqlite", synchronous="NORMAL")
    store.write(_lines())
    # Most of it in chunks, the rest as rows: a neighbour is looked for in both.
    store.compact(horizon_ns=D0 + DAY + 12 * H)
    store.close()
    return conf, tmp / "store.sqlite"


def _run(*args: str) -> dict:
    out = subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (args, out.stderr)
    return json.loads(out.stdout)


def _energies(r: dict) -> dict[str, float]:
    by = {m["meter"]: m["energy_wh"] for m in r["meters"]}
    return {"facility": r["facility_energy_wh"], "it": r["it_energy_wh"], **by}


def _check_days(reports: list[dict], whole: dict) -> None:
    for r in reports:
        e = _energies(r)
        assert e["incomer"] == pytest.approx(LOADS["incomer"] * 24, rel=1e-9), (r["period_start"], r["period_end"])
        assert e["it"] == pytest.approx(LOADS["it"] * 24, rel=1e-9), (r["period_start"], r["period_end"])
        assert r["pue"] == pytest.approx(1.5, rel=1e-9)
    total = _energies(whole)
    for key in ("facility", "it", "incomer"):
        assert sum(_energies(r)[key] for r in reports) == pytest.approx(total[key], rel=1e-12), key
    # The silent spans stay gaps: the energy is counted (estimated), its time is not observed.
    first = {m["meter"]: m for m in reports[0]["meters"]}
    assert first["incomer"]["gaps"] == [{"start": "2025-05-01T21:00:00Z", "end": "2025-05-02T00:00:00Z"}]
    last = {m["meter"]: m for m in reports[2]["meters"]}
    assert last["it"]["gaps"] == [{"start": "2025-05-03T00:00:00Z", "end": "2025-05-04T00:00:00Z"}]
    assert last["it"]["estimated_wh"] == pytest.approx(LOADS["it"] * 24, rel=1e-9)


def test_adjacent_days_add_up_to_the_whole_span_from_the_embedded_store(site, tmp_path: Path) -> None:
    conf, _ = site
    days = [_run("report", "--config", str(conf), "--from", a, "--to", b, "--json") for a, b in DAYS]
    whole = _run("report", "--config", str(conf), "--from", DAYS[0][0], "--to", DAYS[-1][1], "--json")
    _check_days(days, whole)
    # Each day's export holds the readings beyond its window that the day needs, and recomputes to the
    # same report, with --from/--to and without (the export's own days).
    for (a, b), day in zip(DAYS, days):
        csv = tmp_path / f"{a}.csv"
        subprocess.run([*RUN, "export", "--config", str(conf), "--from", a, "--to", b, "-o", str(csv)], check=True,
                       capture_output=True, timeout=300)
        for period in (["--from", a, "--to", b], []):
            mine = _run("recompute", "--readings", str(csv), "--site", str(conf), *period, "--json")
            assert (mine["period_start"], mine["period_end"]) == (day["period_start"], day["period_end"])
            assert _energies(mine) == _energies(day)
            assert mine["completeness"] == day["completeness"]
    # A longer export recomputed for one day gives that day's report.
    csv = tmp_path / "all.csv"
    subprocess.run([*RUN, "export", "--config", str(conf), "--from", DAYS[0][0], "--to", DAYS[-1][1], "-o", str(csv)],
                   check=True, capture_output=True, timeout=300)
    mine = _run("recompute", "--readings", str(csv), "--site", str(conf), "--from", DAYS[1][0], "--to", DAYS[1][1],
                "--json")
    assert _energies(mine) == _energies(days[1])


def test_adjacent_days_add_up_from_a_real_influxd_as_from_the_embedded_store(site, tmp_path: Path) -> None:
    conf, _ = site
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+edges")[0] == 200
        store = Influx1Store(server.url, "edges")
        store.write(_lines())
        store.close()
        address = f"{server.url}/edges"
        days = [_run("report", "--config", str(conf), "--store", address, "--from", a, "--to", b, "--json")
                for a, b in DAYS]
        whole = _run("report", "--config", str(conf), "--store", address, "--from", DAYS[0][0], "--to", DAYS[-1][1],
                     "--json")
    finally:
        server.stop()
    _check_days(days, whole)
    embedded = [_run("report", "--config", str(conf), "--from", a, "--to", b, "--json") for a, b in DAYS]
    assert [_energies(r) for r in days] == [_energies(r) for r in embedded]


@pytest.mark.parametrize("compacted", [False, True])
def test_the_embedded_store_finds_the_nearest_point_beyond_a_window(tmp_path: Path, compacted: bool) -> None:
    store = EmbeddedStore(tmp_path / "s.sqlite", synchronous="NORMAL")
    try:
        a, b = series_key("m", {"name": "x", "part": "a"}), series_key("m", {"name": "x", "part": "b"})
        other = series_key("m", {"name": "y"})
        store.write(b"".join([
            encode_line(a, {"wh": 1.0}, 100).encode() + b"\n",
            encode_line(b, {"wh": 2.0}, 250).encode() + b"\n",  # the two series with name=x taken together
            encode_line(a, {"other": 5.0}, 300).encode() + b"\n",  # a line without the field
            encode_line(other, {"wh": 9.0}, 350).encode() + b"\n",
            encode_line(a, {"wh": 3.0}, 1000).encode() + b"\n",
            encode_line(b, {"wh": 4.0}, 5000).encode() + b"\n",
        ]))
        if compacted:
            store.compact(horizon_ns=400)
        assert store.neighbours("m", "wh", {"name": "x"}, 400, 900) == ((250, 2.0), (1000, 3.0))
        assert store.neighbours("m", "wh", {"name": "x"}, 250, 1001) == ((100, 1.0), (5000, 4.0))
        assert store.neighbours("m", "wh", {"name": "x", "part": "a"}, 100, 1001) == (None, None)
        assert store.neighbours("m", "wh", {"name": "z"}, 0, 0) == (None, None)
        # Only values in [at_least, below) count: the others are looked past, however far.
        assert store.neighbours("m", "wh", {"name": "x"}, 400, 900, values=(1.5, 3.5)) == ((250, 2.0), (1000, 3.0))
        assert store.neighbours("m", "wh", {"name": "x"}, 400, 900, values=(0.0, 2.0)) == ((100, 1.0), None)
        assert store.neighbours("m", "wh", {"name": "x"}, 400, 900, values=(3.5, None)) == (None, (5000, 4.0))
    finally:
        store.close()


def test_a_register_beyond_the_window_never_displaces_a_power_gauge_read_in_it(tmp_path: Path) -> None:
    """An SNMP meter's reading is its Wh register where the device has one, else its W gauge. A register the
    device stopped reporting (a profile that changed) is not read for its one point long ago: the gauge read
    in the window is; where nothing is read in the window, the register's readings beyond it are."""
    from puewatch.core import schema
    from puewatch.core.batch import Batch
    from puewatch.core.site import Meter, SiteModel
    from puewatch.report.sources import read_meter

    site = SiteModel("s", {"pdu": Meter(role="facility_input", device="pdu0", reading="total")})
    b = Batch()
    old = np.array([0, 60 * NS], dtype=np.int64)
    b.add(*schema.snmp_reading("s", "pdu0", "total", "Wh"), old, {"value": np.array([10.0, 11.0])})
    now = D0 + np.arange(10, dtype=np.int64) * 60 * NS
    b.add(*schema.snmp_reading("s", "pdu0", "total", "W"), now, {"value": np.full(10, 5000.0)})
    store = EmbeddedStore(tmp_path / "s.db")
    try:
        store.write_batch(b)
        period = (D0, D0 + 600 * NS)
        r = read_meter(store, site, "pdu", D0 - 900 * NS, D0 + 1500 * NS, period)
        assert r.energy_wh is None and r.t_ns.tolist() == now.tolist()
        # A period with nothing in its window: the register's last reading before it (a long silence).
        later = (D0 + DAY, D0 + DAY + 600 * NS)
        r = read_meter(store, site, "pdu", later[0] - 900 * NS, later[1] + 900 * NS, later)
        assert r.power_w is None and r.t_ns.tolist() == [60 * NS] and r.energy_wh.tolist() == [11.0]
    finally:
        store.close()


def test_a_meter_whose_tags_select_two_series_is_warned_about_from_either_store(tmp_path: Path) -> None:
    """Found by the operator audit: a second Telegraf (its own `host` tag) wrote the incomer's register too; its
    readings were merged into the meter's, and the report blamed a reset and an impossible jump. The report now
    names the series it read together; one series alone (however many other meters the measurement holds) is
    not named."""
    from puewatch.core.site import Meter, SiteModel
    from puewatch.report.engine import compute_report
    from puewatch.report.sources import read_meter

    t0 = D0 + H
    lines = []
    for host, base in (("a", 1e6), ("b", 5e5)):
        key = series_key("meter", {"name": "inc", "host": host})
        lines += [encode_line(key, {"wh": base + 1000.0 * k}, t0 + k * 60 * NS) for k in range(30)]
    lines += [encode_line(series_key("meter", {"name": "it"}), {"wh": 500.0 * k}, t0 + k * 60 * NS) for k in range(30)]
    body = ("\n".join(lines) + "\n").encode()
    meters = {"inc": Meter(role="facility_input", measurement="meter", tags={"name": "inc"}, field="wh", unit="Wh",
                           register=True),
              "it": Meter(role="it", point="ups_output", measurement="meter", tags={"name": "it"}, field="wh", unit="Wh",
                          register=True)}
    site = SiteModel("s", meters)
    embedded = EmbeddedStore(tmp_path / "s.sqlite", synchronous="NORMAL")
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+s")[0] == 200
        influx = Influx1Store(server.url, "s")
        for store in (embedded, influx):
            store.write(body)
            lo, hi = D0, D0 + DAY
            readings = {name: read_meter(store, site, name, lo, hi) for name in meters}
            assert readings["inc"].series_read == ({"host": "a", "name": "inc"}, {"host": "b", "name": "inc"})
            assert readings["it"].series_read == ()
            warned = [w for w in compute_report(site, readings, lo, hi)["warnings"] if "select" in w]
            assert warned == ["meter 'inc': its tags select 2 series with readings in the window (host=a, name=inc; "
                              "host=b, name=inc): their readings were read together as one meter's, so its energy "
                              "cannot be trusted (two writers of one meter, e.g. a second Telegraf with its own host "
                              "tag); list a tag that selects one series"]
            # Outside the window neither series is read: nothing to name.
            assert read_meter(store, site, "inc", D0 + 2 * DAY, D0 + 3 * DAY).series_read == ()
        influx.close()
    finally:
        embedded.close()
        server.stop()
