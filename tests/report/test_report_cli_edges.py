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


def test_recompute_over_a_period_without_data_says_where_the_file_s_data_is(site, tmp_path: Path) -> None:
    """As `report` does: exit 1 and one line, not an all-null report with exit 0 (a mistyped year, a header-only
    file handed over; found by the damaged-CSV audit)."""
    conf, _ = site
    csv = tmp_path / "readings.csv"
    assert _run("export", "--config", str(conf), "--from", "2025-03-01", "--to", "2025-03-03", "-o", str(csv)).returncode == 0
    ok = _run("recompute", "--readings", str(csv), "--site", str(conf), "--from", "2025-03-01", "--to", "2025-03-02")
    assert ok.returncode == 0, ok.stderr
    out = _run("recompute", "--readings", str(csv), "--site", str(conf), "--from", "2024-03-01", "--to", "2024-03-02")
    assert out.returncode == 1 and out.stdout == "", (out.returncode, out.stdout)
    assert out.stderr.startswith("puewatch recompute: error: no report: no meter readings in 2024-03-01T00:00:00Z .. "
                                 f"2024-03-02T00:00:00Z; {csv} holds readings from 2025-02-28T23:45:00Z to "), out.stderr
    assert out.stderr.count("\n") == 1
    header_only = tmp_path / "header.csv"
    header_only.write_text(csv.read_text().splitlines()[0] + "\n")
    out = _run("recompute", "--readings", str(header_only), "--site", str(conf), "--from", "2025-03-01", "--to", "2025-03-02")
    assert out.returncode == 1 and f"no report: {header_only} holds no readings of the site's" in out.stderr, out.stderr


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


def test_report_reads_every_store_address_demo_accepts(site, two_days, tmp_path: Path) -> None:
    conf, path = site
    period = ["--from", "2025-03-01", "--to", "2025-03-02", "--json"]
    reports = []
    for address in (str(path), f"sqlite:{path}", f"sqlite://{path}"):
        out = _run("report", "--config", str(conf), "--store", address, *period)
        assert out.returncode == 0, (address, out.stderr)
        reports.append(out.stdout.split('"generated_at"')[0])
    assert reports[0] == reports[1] == reports[2]
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+site")[0] == 200
        store = Influx1Store(server.url, "site")
        store.write(two_days.lines)
        store.close()
        # The database in the URL, as `demo --store` takes it, or beside it.
        for extra in ([f"{server.url}/site"], [server.url, "--database", "site"]):
            out = _run("report", "--config", str(conf), "--store", *extra, *period)
            assert out.returncode == 0, (extra, out.stderr)
            assert '"kind": "influx1"' in out.stdout
        out = _run("report", "--config", str(conf), "--store", f"{server.url}/site", "--database", "other", *period)
        assert out.returncode == 2 and "--store names database 'site' and --database 'other'" in out.stderr
    finally:
        server.stop()
    for bad, says in (("ftp://h/db", "use a file path, sqlite:PATH or http"), ("sqlite:", "sqlite:PATH needs a file path"),
                      ("http://h:8086/a/b", "expected http[s]://[user:password@]host:port/DATABASE")):
        out = _run("report", "--config", str(conf), "--store", bad, *period)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and says in out.stderr, (bad, out.stderr)



def test_export_into_head_ends_quietly(site) -> None:
    conf, _ = site
    export = f"{' '.join(RUN)} export --config {conf} --from 2025-03-01 --to 2025-03-03"
    # `head -n 0` has gone before the export writes (it starts in well under its import time): the pipe is closed.
    for head, expected in (("head -n 3", ["time,meter,power_w,energy_wh"]), ("head -n 0", [])):
        proc = subprocess.run(f"{export} | {head}; echo \"status ${{PIPESTATUS[0]}}\"", shell=True,
                              executable="/bin/bash", capture_output=True, text=True, timeout=120)
        lines = proc.stdout.splitlines()
        assert lines[:len(expected)] == expected and len(lines) == int(head.split()[-1]) + 1, proc.stdout
        assert proc.stderr == "", proc.stderr  # no BrokenPipeError traceback
        assert lines[-1] in ("status 0", "status 141"), lines[-1]
    assert lines[-1] == "status 141"


@pytest.mark.parametrize("option", ["--from", "--to"])
def test_a_time_in_another_form_names_the_option_and_the_form(site, option: str) -> None:
    conf, _ = site
    times = {"--from": "2025-03-01", "--to": "2025-03-02", option: "03/12/2026"}
    out = _run("report", "--config", str(conf), "--from", times["--from"], "--to", times["--to"])
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"puewatch report: error: {option} '03/12/2026': expected a date (2026-12-03, from "
                                 "midnight in the site's time zone, UTC) or an RFC 3339 time (2026-12-03T10:00:00Z)"), out.stderr


@pytest.mark.parametrize("target", ["nan", "-1", "0.9", "inf", "abc"])
def test_a_pue_target_that_no_pue_can_meet_is_refused(site, target: str) -> None:
    """Found by the input audit: --target nan and -1 were taken (and drawn)."""
    conf, _ = site
    out = _run("report", "--config", str(conf), "--from", "2025-03-01", "--to", "2025-03-02", "--target", target)
    assert out.returncode == 2 and (f"argument --target: a PUE target is a number of at least 1 (e.g. 1.3), got "
                                    f"{target!r}") in out.stderr, out.stderr


def test_a_report_shorter_than_a_day_shows_its_period_with_times(site) -> None:
    conf, _ = site
    out = _run("report", "--config", str(conf), "--from", "2025-03-01T10:00:00Z", "--to", "2025-03-01T16:00:00Z")
    assert out.returncode == 0, out.stderr
    assert "iPUE_L1 2025-03-01T10:00:00Z..2025-03-01T16:00:00Z" in out.stdout, out.stdout


def test_times_and_gaps_beyond_what_the_store_holds_are_bad_input_and_leave_no_file(site, tmp_path: Path) -> None:
    """A time past 2262 and --max-gap inf overflowed int64 ns: a traceback, exit 1, and an empty export file left
    behind that looked like an export (found by the damaged-CSV audit)."""
    conf, _ = site
    out = tmp_path / "x.csv"
    for args, says in [(("--from", "2025-03-01", "--to", "2300-01-01"), "is outside the times puewatch reads"),
                       (("--from", "2025-03-01", "--to", "2025-03-02", "--max-gap", "inf"),
                        "--max-gap must be positive and at most a year")]:
        for command in ("export", "report"):
            r = _run(command, "--config", str(conf), *args, "-o", str(out))
            assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (command, r.stderr)
            assert not out.exists()
    assert _run("export", "--config", str(conf), "--from", "2025-03-01", "--to", "2025-03-02", "-o", str(out)).returncode == 0
    assert out.read_text().startswith("time,meter,") and not list(tmp_path.glob(".*.part"))


def test_database_is_read_from_the_config_s_influxdb_and_refused_for_an_embedded_store(site, two_days,
                                                                                       tmp_path: Path) -> None:
    """Found by the pages audit: `--database nosuchdb` without `--store` was ignored, and the report made from
    the config's store with exit 0."""
    conf, path = site
    period = ["--from", "2025-03-01", "--to", "2025-03-02", "--json"]
    out = _run("report", "--config", str(conf), "--database", "nosuchdb", *period)
    assert out.returncode == 2 and out.stdout == ""
    assert "--database 'nosuchdb' names an InfluxDB database, but the store is the embedded file" in out.stderr
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        for db in ("site", "other"):
            assert http("POST", server.url + f"/query?q=CREATE+DATABASE+{db}")[0] == 200
        store = Influx1Store(server.url, "other")
        store.write(two_days.lines)
        store.close()
        influx_conf = tmp_path / "influx.toml"
        influx_conf.write_text(conf.read_text().replace(
            f'[store.embedded]\npath = "{path}"', f'[store.influx1]\nurl = "{server.url}"\ndatabase = "site"'))
        assert "[store.influx1]" in influx_conf.read_text()
        empty = _run("report", "--config", str(influx_conf), *period)
        assert empty.returncode == 1 and "the store holds no readings" in empty.stderr  # the config's: empty
        other = _run("report", "--config", str(influx_conf), "--database", "other", *period)
        assert other.returncode == 0, other.stderr
        assert '"database": "other"' in other.stdout
    finally:
        server.stop()


GAP_SITE = """
[collector]
site = "gap"
state_dir = "{state}"

[meters.inc]
role = "facility_input"
measurement = "m"
tags = {{ meter = "inc" }}
field = "w"
unit = "W"

[meters.it]
role = "it"
point = "ups_output"
measurement = "m"
tags = {{ meter = "it" }}
field = "w"
unit = "W"

[store.embedded]
path = "{store}"
"""


def test_a_period_inside_a_gap_in_the_data_is_no_report_and_export_writes_through_links_and_devices(
        tmp_path: Path) -> None:
    """Found by the export audit: a period inside a gap in the store (readings on the days around it, none in it
    or near it) gave an all-n/a report and a header-only export, each with exit status 0, where the docs say
    exit 1 naming the data's range (the check saw only that the period lay between the first and last reading);
    and `-o` replaced a symbolic link, a FIFO or a device by a file of its own."""
    from puewatch.core.timefmt import NS, parse_time
    from puewatch.lineprotocol import encode_point

    conf = tmp_path / "gap.toml"
    conf.write_text(GAP_SITE.format(state=tmp_path / "state", store=tmp_path / "gap.sqlite"))
    lines = []
    for day in ("2025-03-01", "2025-03-03"):
        t0 = parse_time(day)
        for k in range(0, 24 * 60):
            t = t0 + k * 60 * NS
            lines += [encode_point("m", {"meter": "inc"}, {"w": 1500.0}, t), encode_point("m", {"meter": "it"}, {"w": 1000.0}, t)]
    store = EmbeddedStore(tmp_path / "gap.sqlite")
    store.write(("\n".join(lines) + "\n").encode())
    store.close()
    period = ("--from", "2025-03-02T06:00:00Z", "--to", "2025-03-02T12:00:00Z")
    out = _run("report", "--config", str(conf), *period, "--json")
    assert out.returncode == 1 and out.stdout == "", (out.returncode, out.stdout[:200])
    assert out.stderr.startswith("puewatch report: error: no report: no meter has energy in 2025-03-02T06:00:00Z .. "
                                 "2025-03-02T12:00:00Z (no two of any meter's readings in or around it within "
                                 "--max-gap); the store holds readings from 2025-03-01T00:00:00Z to "
                                 "2025-03-03T23:59:00Z"), out.stderr
    csv = tmp_path / "gap.csv"
    out = _run("export", "--config", str(conf), *period, "-o", str(csv))
    assert out.returncode == 1 and "no export: no meter has energy in" in out.stderr, out.stderr
    assert not csv.exists() and not list(tmp_path.glob(".*.part"))
    # A period with readings around it, none in it, but within --max-gap: a report (the interval spans it).
    ok = _run("report", "--config", str(conf), "--from", "2025-03-01T10:00:10Z", "--to", "2025-03-01T10:00:50Z")
    assert ok.returncode == 0, ok.stderr
    # Through a symbolic link: its target is written, the link stays; a device is written through.
    target = tmp_path / "target.csv"
    target.write_text("keep\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    day = ("--from", "2025-03-01", "--to", "2025-03-02")
    assert _run("export", "--config", str(conf), *day, "-o", str(link)).returncode == 0
    assert link.is_symlink() and target.read_text().startswith("time,meter,power_w,energy_wh")
    out = _run("export", "--config", str(conf), *day, "-o", "/dev/stdout")
    assert out.returncode == 0 and out.stdout == target.read_text(), out.stderr
    assert Path("/dev/stdout").exists() and not Path("/dev/stdout").resolve().is_file()


def test_a_site_in_another_time_zone_reports_its_own_days(site, tmp_path: Path) -> None:
    """[collector] timezone: --from/--to dates, the rows, the label and a recompute's default period are the
    site's days (UTC+8: from 16:00 UTC); its times are written in UTC all the same. A zone that is no
    place's is refused by --check-config, report and recompute alike, naming the key."""
    import json

    conf, _ = site
    text = conf.read_text()
    assert text.count("\nstate_dir = ") == 1
    local = tmp_path / "local.toml"
    local.write_text(text.replace("\nstate_dir = ", '\ntimezone = "Asia/Shanghai"\nstate_dir = ', 1))
    out = _run("report", "--config", str(local), "--from", "2025-03-01", "--to", "2025-03-03", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["period_start"], r["period_end"], r["timezone"]) == ("2025-02-28T16:00:00Z", "2025-03-02T16:00:00Z",
                                                                   "Asia/Shanghai")
    assert r["label"] == "iPUE_L1 2025-03-01..2025-03-03"
    assert [d["period_start"] for d in r["daily"]] == ["2025-02-28T16:00:00Z", "2025-03-01T16:00:00Z"]
    text_out = _run("report", "--config", str(local), "--from", "2025-03-01T08:00:00+08:00", "--to", "2025-03-02")
    assert text_out.returncode == 0 and "iPUE_L1 2025-03-01T08:00:00+08:00..2025-03-02" in text_out.stdout, text_out
    # The month row that begins at 2025-02-28T16:00Z is the site's March.
    table = _run("report", "--config", str(local), "--from", "2025-03-01", "--to", "2025-03-03")
    assert table.returncode == 0 and "Asia/Shanghai (its midnights begin the days" in table.stdout, table.stdout
    monthly = table.stdout.split(" monthly ", 1)[1]
    assert "│ 2025-03 " in monthly and "2025-02" not in monthly, table.stdout
    # An export's recompute takes the whole days of the site's calendar that its readings span.
    csv = tmp_path / "readings.csv"
    assert _run("export", "--config", str(conf), "--from", "2025-03-01", "--to", "2025-03-03", "-o", str(csv)).returncode == 0
    again = _run("recompute", "--readings", str(csv), "--site", str(local), "--json")
    assert again.returncode == 0, again.stderr
    a = json.loads(again.stdout)
    assert (a["period_start"], a["period_end"], a["label"]) == ("2025-03-01T16:00:00Z", "2025-03-02T16:00:00Z",
                                                                "iPUE_L1 2025-03-02..2025-03-03")
    ok = _run("collector", "--config", str(local), "--check-config")
    assert ok.returncode == 0 and "site synth (Asia/Shanghai calendar), PUE category 1" in ok.stdout, ok
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("\nstate_dir = ", '\ntimezone = "China/Beijing"\nstate_dir = ', 1))
    for args in (("collector", "--config", str(bad), "--check-config"),
                 ("report", "--config", str(bad), "--from", "2025-03-01", "--to", "2025-03-02"),
                 ("recompute", "--readings", str(csv), "--site", str(bad))):
        refused = _run(*args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "collector.timezone: time zone 'China/Beijing' is not in the IANA time zone database" in refused.stderr, \
            refused.stderr
