"""`puewatch influx setup` against influxd 1.6.7: database, retention policies, continuous
queries; idempotent; ALTER on changed durations; auth; the CQs really downsample."""

from __future__ import annotations

import time

import pytest

from puewatch.cli import main
from puewatch.collector.stores.influx1 import DOWNSAMPLING, Influx1Store, RetentionPlan, setup
from store_fixtures import influx, influx_auth, vm  # noqa: F401 (fixtures)
from puewatch.lineprotocol import encode_point


def _rps(server, db="site"):
    res = server.query(f'SHOW RETENTION POLICIES ON "{db}"')[0]["series"][0]
    return {r[0]: (r[1], r[4]) for r in res["values"]}


def _cqs(server, db="site"):
    for s in server.query("SHOW CONTINUOUS QUERIES")[0].get("series", []):
        if s["name"] == db:
            return {name: q for name, q in s.get("values", [])}
    return {}


def test_dry_run_prints_the_influxql(capsys):
    assert main(["influx", "setup", "--database", "site", "--dry-run", "--raw-retention", "7d"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'CREATE DATABASE "site";'
    assert 'CREATE RETENTION POLICY "raw" ON "site" DURATION 7d REPLICATION 1 SHARD DURATION 1d DEFAULT;' in out
    assert any('"minute" ON "site" DURATION 104w' in line for line in out)
    assert any('"hourly" ON "site" DURATION 520w' in line for line in out)
    cq = [line for line in out if line.startswith("CREATE CONTINUOUS QUERY")]
    assert len(cq) == len(DOWNSAMPLING)
    assert any('SELECT sum(*) INTO "site"."hourly"."site_energy" FROM "site"."raw"."site_energy" GROUP BY time(1h, 1ns), *' in line for line in cq)
    assert any('SELECT mean(*) INTO "site"."minute"."pue" FROM "site"."raw"."pue" GROUP BY time(1m), *' in line for line in cq)


@pytest.mark.parametrize("bad", ["30", "10m", "1.5d", "0d", "30x"])
def test_bad_durations_are_one_line_errors(bad, capsys):
    assert main(["influx", "setup", "--database", "site", "--dry-run", f"--raw-retention={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "raw" in err and bad in err


def test_setup_creates_and_is_idempotent_and_alters(influx, capsys):
    assert main(["influx", "setup", "--url", influx.url, "--database", "site"]) == 0
    assert f"{3 + len(DOWNSAMPLING)} change(s)" in capsys.readouterr().out  # 3 retention policies
    rps = _rps(influx)
    assert rps["raw"] == ("720h0m0s", True)
    assert rps["minute"] == (f"{104 * 7 * 24}h0m0s", False)
    assert rps["hourly"] == (f"{520 * 7 * 24}h0m0s", False)
    assert set(_cqs(influx)) == {d.name for d in DOWNSAMPLING}
    # again: nothing to do, no error
    assert main(["influx", "setup", "--url", influx.url, "--database", "site"]) == 0
    assert "up to date" in capsys.readouterr().out
    # changed durations: ALTER, CQs untouched
    cqs = _cqs(influx)
    assert main(["influx", "setup", "--url", influx.url, "--database", "site", "--raw-retention", "14d",
                 "--hourly-retention", "INF"]) == 0
    out = capsys.readouterr().out
    assert "2 change(s)" in out and 'ALTER RETENTION POLICY "raw"' in out and 'ALTER RETENTION POLICY "hourly"' in out
    rps = _rps(influx)
    assert rps["raw"] == ("336h0m0s", True) and rps["hourly"] == ("0s", False)
    assert _cqs(influx) == cqs


def test_setup_with_authentication(influx_auth, capsys, monkeypatch):
    assert main(["influx", "setup", "--url", influx_auth.url, "--database", "site"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "401" in err and "authentication failed" in err
    # It names what `setup` takes: it has no token option (found by the InfluxDB audit: it offered one).
    assert err.endswith("give an admin's --user and --password (or PUEWATCH_INFLUX_USER and PUEWATCH_INFLUX_PASSWORD); "
                        "InfluxDB 2.x and 3.x take an API token as the password"), err
    monkeypatch.setenv("PUEWATCH_INFLUX_USER", "admin")
    monkeypatch.setenv("PUEWATCH_INFLUX_PASSWORD", "adminpass")
    assert main(["influx", "setup", "--url", influx_auth.url, "--database", "site"]) == 0
    assert set(_cqs(influx_auth)) == {d.name for d in DOWNSAMPLING}
    # a user that is not an admin
    influx_auth.query("CREATE USER reader WITH PASSWORD 'r'")
    assert main(["influx", "setup", "--url", influx_auth.url, "--database", "site", "--user", "reader", "--password", "r"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "403" in err and "influx setup needs an InfluxDB admin user" in err, err
    # Found by the InfluxDB audit: "the user needs query access" was said even to a user with ALL on the database.
    influx_auth.query('GRANT ALL ON "site" TO "reader"')
    assert main(["influx", "setup", "--url", influx_auth.url, "--database", "site", "--user", "reader", "--password", "r"]) == 2
    assert "influx setup needs an InfluxDB admin user" in capsys.readouterr().err


def test_a_server_that_keeps_no_policies_is_refused_and_short_retentions_get_short_shards(vm, influx, capsys):
    """Found by the InfluxDB audit: against VictoriaMetrics (which answers InfluxQL with 200 and keeps nothing)
    setup printed its 11 changes as done, exit 0, every time; a 12h retention was refused by influxd (its 1d
    shards outlasted it) after the policies before it had been changed."""
    assert main(["influx", "setup", "--url", vm.url, "--database", "site"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not have retention policy 'raw'" in err and "VictoriaMetrics" in err, err
    assert main(["influx", "setup", "--url", influx.url, "--database", "short", "--raw-retention", "12h"]) == 0
    assert _rps(influx, "short")["raw"] == ("12h0m0s", True)


def test_unreachable_server_is_a_one_line_error(capsys):
    from servers import free_port

    assert main(["influx", "setup", "--url", f"http://127.0.0.1:{free_port()}", "--database", "site", "--timeout", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot reach InfluxDB" in err


def test_continuous_queries_downsample(influx):
    """The real CQ engine (run-interval 1s) with the production SELECTs, resampled every second."""
    store = Influx1Store(influx.url, "site")
    plan = RetentionPlan("site", resample={"1m": ("1s", "3m"), "1h": ("1s", "3h")})
    setup(store, plan)
    minute = 60 * 10**9
    now = time.time_ns()
    if now % minute > 30 * 10**9:
        # A resampling CQ's window starts at the first whole group after now - FOR: once the
        # minute turns, the oldest minute below is out of it. Write early in a minute, so the
        # CQ runs on the data (every second) long before then (CI failed on this once).
        time.sleep((minute - now % minute) / 1e9 + 0.5)
        now = time.time_ns()
    start = (now // minute - 2) * minute  # two complete minutes ago
    lines = []
    expected_mean = {}
    for m in range(2):
        vals = [1000.0 + 10 * m + k for k in range(6)]
        expected_mean[start + m * minute] = sum(vals) / len(vals)
        for k, v in enumerate(vals):
            t = start + m * minute + k * 10**10
            lines.append(encode_point("snmp_reading", {"site": "a", "device": "ups", "reading": "total_active_power",
                                                       "unit": "W"}, {"value": v, "raw": v / 10}, t))
            # A register's Wh readings are not averaged (only the power readings are).
            lines.append(encode_point("snmp_reading", {"site": "a", "device": "ups", "reading": "total_active_energy",
                                                       "unit": "Wh"}, {"value": 5e6 + v, "raw": 5e6 + v}, t))
            lines.append(encode_point("pue", {"site": "a"}, {"pue": 1.2 + 0.01 * k}, start + m * minute + k * 10**10))
    hour = 3600 * 10**9
    hour_start = (now // hour - 1) * hour  # the previous complete hour
    energy = [250.0, 125.5, 0.25, 300.0]
    # Energy cells are stamped at their end: the hour's are those ending in (start, start + 1h], the last
    # on the next hour; the one ending on the hour's start is the hour before's (an hourly sum of its own).
    for k, wh in enumerate(energy):
        lines.append(encode_point("site_energy", {"site": "a"}, {"energy_wh": wh}, hour_start + (k + 1) * 15 * minute))
    lines.append(encode_point("site_energy", {"site": "a"}, {"energy_wh": 7.5}, hour_start))
    store.write(("\n".join(lines) + "\n").encode())

    deadline = time.monotonic() + 20
    while True:
        t, v = store.series("snmp_reading", "value", {"site": "a", "unit": "W"}, start, start + 2 * minute, rp="minute")
        t2, v2 = store.series("site_energy", "sum_energy_wh", {"site": "a"}, hour_start - hour, hour_start + hour, rp="hourly")
        if (len(t) == 2 and dict(zip(t.tolist(), v.tolist())) == expected_mean and t2.size == 2) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert dict(zip(t.tolist(), v.tolist())) == expected_mean
    assert store.series("snmp_reading", "value", {"site": "a", "unit": "Wh"}, start, start + 2 * minute, rp="minute")[0].size == 0
    # each hour's sum is stamped at its start + 1 ns (InfluxDB stamps a group at its start)
    assert t2.tolist() == [hour_start - hour + 1, hour_start + 1] and v2.tolist() == [7.5, sum(energy)]
    tp, vp = store.series("pue", "mean_pue", {"site": "a"}, start, start + 2 * minute, rp="minute")
    assert tp.tolist() == [start, start + minute]
    assert vp == pytest.approx([1.225, 1.225])
    # the same SELECT ... INTO run by hand backfills a range the CQ no longer covers
    old = hour_start - 48 * hour
    store.write((encode_point("meter_energy", {"meter": "m1"}, {"energy_wh": 5.0}, old + minute) + "\n"
                 + encode_point("meter_energy", {"meter": "m1"}, {"energy_wh": 7.0}, old + hour) + "\n").encode())
    rule = next(d for d in plan.downsampling if d.measurement == "meter_energy")
    assert plan.backfill(rule, old, old + hour) == plan.select_into(rule, where=f"time > {old} AND time <= {old + hour}")
    store.query(plan.backfill(rule, old, old + hour), write=True)
    t3, v3 = store.series("meter_energy", "sum_energy_wh", {"meter": "m1"}, old, old + hour, rp="hourly")
    assert t3.tolist() == [old + 1] and v3.tolist() == [12.0]


def test_what_is_downsampled_is_what_is_written():
    """Every downsampled series is one the collector or the agents write (puewatch/core/schema.py), with its fields."""
    from puewatch.core import schema

    written = {schema.SNMP_READING: {schema.SNMP_VALUE}, schema.GPU_POWER: set(schema.GPU_POWER_FIELDS),
               schema.PUE: None, schema.PPUE: None, schema.SITE_ENERGY: None, schema.ZONE_ENERGY: None,
               schema.METER_ENERGY: None, schema.GPU_ENERGY: None}
    for d in DOWNSAMPLING:
        assert d.measurement in written, d.name
        assert d.fields is None or set(d.fields) <= written[d.measurement], d.name
    assert {d.measurement for d in DOWNSAMPLING} == set(written)
