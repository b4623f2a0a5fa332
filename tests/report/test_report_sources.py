"""A synthetic year through the embedded store and a real influxd 1.6.7 -> report; export -> recompute; bad CSV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from report_support import COOLING_W, SOLAR_W, WATER_L_PER_H, rel_close, synthetic_year, write_site
from js_signature import js, node_ready
from servers import Influxd, http
from puewatch.collector import config as collector_config
from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.collector.stores.influx1 import Influx1Store
from puewatch.errors import ConfigError, UserError
from puewatch.core.timefmt import NS, format_time
from puewatch.report.engine import ReportOptions, compute_report
from puewatch.report.sources import load_site, read_csv, read_store, resolve_snmp_wraps, write_csv

MARGIN = 900 * NS
T0 = 1735689600 * NS  # 2025-01-01T00:00:00Z


@pytest.fixture(scope="module")
def year() -> object:
    return synthetic_year()


@pytest.fixture(scope="module")
def embedded_site(tmp_path_factory: pytest.TempPathFactory, year: object) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("embedded-year")
    store = EmbeddedStore(tmp / "store.sqlite", synchronous="NORMAL")
    store.write(year.lines)
    store.close()
    return write_site(tmp, store_path=str(tmp / "store.sqlite")), tmp / "store.sqlite"


def _report(conf_path: Path, reader: object, year: object, kind: str) -> dict:
    conf = collector_config.load(conf_path)
    site = conf.site_model()
    resolve_snmp_wraps(site, conf.snmp.devices, conf.snmp.profile_dirs, str(conf_path))  # as `puewatch report` does
    readings = read_store(reader, site, year.start_ns - MARGIN, year.end_ns + MARGIN, progress=False)
    return compute_report(site, readings, year.start_ns, year.end_ns,
                          ReportOptions(source={"kind": kind}, generated_at="2026-01-02T00:00:00Z")), readings


def _check_year(r: dict) -> None:
    assert r["annual"] is True and r["label"] == "PUE_L1,YC" and r["category"] == 1
    by = {m["meter"]: m for m in r["meters"]}
    # The reset interval is not counted (only a lower bound is known) and stays missing: the
    # incomer's power fills in only outside its register's span, as live.
    assert by["incomer"]["method"] == "register" and by["incomer"]["resets"] == 1
    assert by["ups-a"]["method"] == "integrated"
    assert by["ups-a"]["gaps"] == [{"start": "2025-03-02T23:45:00Z", "end": "2025-03-03T06:00:00Z"}]
    hours = 365 * 24
    # Cooling: a kWh register that wraps at 100 kWh every 3 h 20 min, constant 30 kW: exact.
    assert by["crac-a"]["energy_wh"] == pytest.approx(COOLING_W * hours, rel=1e-9)
    assert by["crac-a"]["resets"] == 0
    assert by["solar"]["energy_wh"] == pytest.approx(SOLAR_W * hours, rel=1e-9)
    assert r["ref"] == pytest.approx(SOLAR_W * hours / r["facility_energy_wh"], rel=1e-9)
    assert r["wue"] == pytest.approx(WATER_L_PER_H * hours / (r["it_energy_wh"] / 1000), rel=1e-9)
    # The UPS outage (6.25 h with its edges) and the incomer's reset interval (one 15-minute reading
    # interval, not counted) are the gaps.
    assert by["incomer"]["gaps"] == [{"start": "2025-06-10T11:45:00Z", "end": "2025-06-10T12:00:00Z"}]
    assert r["completeness"] == pytest.approx(1 - (6.25 + 0.25) / hours, rel=1e-9)
    assert r["pue"] is not None and 1.45 < r["pue"] < 1.55
    assert len(r["monthly"]) == 12 and len(r["daily"]) == 365
    assert r["estimated_share"] == pytest.approx(r["it_energy_wh"] / (r["it_energy_wh"] + r["facility_energy_wh"]), rel=1e-9)
    assert r["zones"][0]["zone"] == "hall-a"


def test_year_from_embedded_store_then_export_recompute_agree(embedded_site: tuple[Path, Path], year: object,
                                                              tmp_path: Path) -> None:
    conf, path = embedded_site
    store = EmbeddedStore(path)
    r, readings = _report(conf, store, year, "embedded")
    store.close()
    _check_year(r)
    csv_path = tmp_path / "export.csv"
    with csv_path.open("w") as f:
        rows = write_csv(readings, f)
    assert rows == year.points - readings["incomer"].t_ns.size  # the incomer's power and energy share a row
    site = load_site(conf)
    back, source = read_csv(csv_path, site)
    assert source["rows"] == rows and len(source["sha256"]) == 64
    r2 = compute_report(site, back, year.start_ns, year.end_ns,
                        ReportOptions(source={"kind": "embedded"}, generated_at="2026-01-02T00:00:00Z"))
    rel_close(r, r2)


def test_year_from_influxd_agrees_with_embedded(embedded_site: tuple[Path, Path], year: object, tmp_path: Path) -> None:
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+site")[0] == 200
        store = Influx1Store(server.url, "site")
        body = year.lines
        # In pieces, as the collector writes them.
        lines = body.split(b"\n")
        for i in range(0, len(lines), 50_000):
            store.write(b"\n".join(lines[i:i + 50_000]) + b"\n")
        r_influx, _ = _report(embedded_site[0], store, year, "influx1")
        store.close()
    finally:
        server.stop()
    emb = EmbeddedStore(embedded_site[1])
    r_emb, _ = _report(embedded_site[0], emb, year, "influx1")
    emb.close()
    _check_year(r_influx)
    rel_close(r_influx, r_emb)


def test_report_from_a_collector_writing_to_the_v2_api_reads_its_bucket_with_the_token(tmp_path: Path) -> None:
    """[store.influx2] (InfluxDB 2.x/3.x): the report queries the v1 compatibility API, bucket as database, with
    `Authorization: Token`. influxd 1.6.7 without auth ignores the token; with auth it refuses it, and says so."""
    month = synthetic_year(start="2025-02-01", end="2025-03-01")
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    run = [sys.executable, "-m", "puewatch.cli"]
    period = ["--from", "2025-02-01", "--to", "2025-03-01", "--json"]
    for auth in (False, True):
        server = Influxd(tmp_path / f"influxd-{auth}", auth=auth)
        server.start()
        try:
            server.query('CREATE DATABASE "site-bucket"')
            if not auth:
                server.write(month.lines, "site-bucket")
            (tmp_path / f"s{auth}").mkdir()
            conf = write_site(tmp_path / f"s{auth}")
            conf.write_text(conf.read_text().split("[store.embedded]")[0] + f"""[store.influx2]
url = "{server.url}"
bucket = "site-bucket"
org = "dc"
token_file = "{token}"
""")
            out = subprocess.run(run + ["report", "--config", str(conf), *period], capture_output=True, text=True,
                                 timeout=120)
            if auth:
                assert out.returncode == 2
                assert "HTTP 401" in out.stderr and "the server refused the token" in out.stderr, out.stderr
                continue
            assert out.returncode == 0, out.stderr
            got = json.loads(out.stdout)
            assert got["source"] == {"kind": "influx2", "url": server.url, "database": "site-bucket"}
            # The same numbers as the v1 way (--store URL --database), and a clear refusal of both kinds of credentials.
            v1 = subprocess.run(run + ["report", "--config", str(conf), "--store", server.url, "--database",
                                       "site-bucket", *period], capture_output=True, text=True, timeout=120)
            assert v1.returncode == 0, v1.stderr
            want = json.loads(v1.stdout)
            for key in ("pue", "facility_energy_wh", "it_energy_wh", "completeness", "monthly"):
                assert got[key] == want[key], key
            assert 1.4 < got["pue"] < 1.6
            both = subprocess.run(run + ["report", "--config", str(conf), "--user", "u", "--token-file", str(token),
                                         *period], capture_output=True, text=True, timeout=120)
            assert both.returncode == 2 and "not both" in both.stderr
        finally:
            server.stop()


def test_a_token_is_sent_as_the_v1_compatibility_api_wants_it() -> None:
    store = Influx1Store("http://127.0.0.1:1", "b", token="abc")
    assert store._headers["Authorization"] == "Token abc"
    with pytest.raises(UserError, match="not both"):
        Influx1Store("http://127.0.0.1:1", "b", user="u", password="p", token="abc")


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return p


HEADER = "time,meter,power_w,energy_wh\n"


@pytest.mark.parametrize("body,line,fault", [
    ("2025-01-01T00:00:00Z,nope,1.0,\n", 2, "unknown meter 'nope'"),
    ("2025-01-01 00:00:00,ups-a,1.0,\n", 2, "is not RFC 3339"),
    ("2025-01-01T00:00:00,ups-a,1.0,\n", 2, "is not RFC 3339"),  # no offset: local time of somewhere
    ("2025-01-01T00:00:00+2:00,ups-a,1.0,\n", 2, "is not RFC 3339"),
    ("2025-01-01T00:00:00+24:00,ups-a,1.0,\n", 2, "offset out of range"),
    ("2025-02-30T00:00:00Z,ups-a,1.0,\n", 2, "day is out of range"),
    ("2025-01-01T00:00:00Z,ups-a,abc,\n", 2, "power_w 'abc' is not a number"),
    # Python's float() reads these; no CSV tool does, and a second auditor's reader would differ
    ("2025-01-01T00:00:00Z,ups-a,1_000,\n", 2, "power_w '1_000' is not a number"),
    ("2025-01-01T00:00:00Z,ups-a, 12 ,\n", 2, "power_w ' 12 ' is not a number"),
    ("2025-01-01T00:00:00Z,ups-a,\uff11\uff12,\n", 2, "power_w '\uff11\uff12' is not a number"),
    ("2025-01-01T00:00:00Z,incomer,,\u00a05.0\n", 2, "energy_wh '\\xa05.0' is not a number"),
    ("2025-01-01T00:00:00Z,ups-a,0x10,\n", 2, "power_w '0x10' is not a number"),
    ("2025-01-01T00:00:00Z,ups-a,\"1,5\",\n", 2, "power_w '1,5' is not a number"),
    ("2025-01-01T00:00:00Z,ups-a,nan,\n", 2, "not a finite number"),
    ("2025-01-01T00:00:00Z,ups-a,,\n", 2, "neither power_w nor energy_wh"),
    ("2025-01-01T00:01:00Z,ups-a,1,\n2025-01-01T00:00:00Z,ups-a,1,\n", 3, "is before the previous row's"),
    ("2025-01-01T00:00:00Z,ups-a,1,\n2025-01-01T00:00:00.000000000Z,ups-a,2,\n", 3, "duplicate reading for meter 'ups-a'"),
    ("2025-01-01T00:00:00Z,ups-a,1\n", 2, "expected 4 columns"),
    # Found by the foreign-CSV audit: other scripts' digits were read as times (RFC 3339's are 0-9), a leap
    # second and a tenth fractional digit were "out of range" and "not RFC 3339", a 5,000-digit value was
    # quoted whole in the error.
    ("\uff12\uff10\uff12\uff15-01-01T00:00:00Z,ups-a,1,\n", 2, "holds characters that are not ASCII"),
    ("2025-01-01T00:00:0\u0661Z,ups-a,1,\n", 2, "holds characters that are not ASCII"),
    ("2025-06-30T23:59:60Z,ups-a,1,\n", 2, "a leap second, which puewatch's times"),
    ("2025-07-01T07:59:60+08:00,ups-a,1,\n", 2, "a leap second, which puewatch's times"),
    ("2025-06-30T12:00:60Z,ups-a,1,\n", 2, "hour, minute or second out of range"),  # no leap second falls there
    ("2025-01-01T00:00:00.1234567891Z,ups-a,1,\n", 2, "has more than 9 fractional digits"),
    ("2025-01-01T00:00:00Z,ups-a," + "9" * 5000 + "x,\n", 2, "'9999999999999999999999999999999999999999'... (5,001 "
     "characters) is not a number"),
])
def test_bad_csv_names_file_line_and_fault(tmp_path: Path, body: str, line: int, fault: str) -> None:
    site = load_site(write_site(tmp_path))
    _refused(_csv(tmp_path, HEADER + "2024-12-31T23:00:00Z,incomer,,5.0\n" + body), site, line + 1, fault)


def test_readings_that_cannot_be_are_read_for_the_policy_to_refuse(tmp_path: Path) -> None:
    """A negative power and register readings past the modulus or negative are what a store can hold (an
    ingest meter's): the CSV gives them as they are, and the report refuses them as readings, as it does
    reading the store (core.energy), so recompute and report agree. Before, recompute refused a negative
    power as bad input, and took a register reading past its modulus as a reading: the drop after it was
    counted as a wrap of negative energy (found by the auditor's damaged-CSV audit)."""
    site = load_site(write_site(tmp_path))
    readings, _ = read_csv(_csv(tmp_path, HEADER + "2025-01-01T00:00:00Z,ups-a,-5,\n"
                                "2025-01-01T00:00:00Z,incomer,,-1.0\n2025-01-01T00:01:00Z,incomer,,5e12\n"), site)
    np.testing.assert_array_equal(readings["ups-a"].power_w, [-5.0])
    np.testing.assert_array_equal(readings["incomer"].energy_wh, [-1.0, 5e12])


def _refused(path: Path, site, line: int, fault: str) -> None:
    """read_csv refuses the file with one line naming file, line and the fault."""
    with pytest.raises(UserError) as err:
        read_csv(path, site)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: ") and fault in msg and "\n" not in msg


def test_bad_csv_header_and_interleaved_meters(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path))
    with pytest.raises(UserError, match=r"bad.csv:1: header must be time,meter,power_w,energy_wh"):
        read_csv(_csv(tmp_path, "time,meter,power\n"), site)
    # Meters interleaved but each in time order: accepted, nothing dropped.
    ok = _csv(tmp_path, HEADER + "2025-01-01T00:00:00Z,ups-a,1.5,\n2025-01-01T00:00:00Z,incomer,,2.5\n"
              "2025-01-01T00:00:01.5Z,ups-a,2.5,\n")
    readings, source = read_csv(ok, site)
    assert source["rows"] == 3
    np.testing.assert_array_equal(readings["ups-a"].t_ns, [1735689600 * NS, 1735689601 * NS + 500_000_000])
    assert readings["ups-a"].energy_wh is None and readings["incomer"].power_w is None


def test_csv_from_other_tools_reads_the_same(tmp_path: Path) -> None:
    """A byte order mark and CRLF (a spreadsheet's save), and any RFC 3339 offset, give the same readings."""
    site = load_site(write_site(tmp_path))
    plain = HEADER + "2025-01-01T00:00:00Z,ups-a,1.5,\n2025-01-01T00:00:01.25Z,ups-a,2.5,\n2025-01-01T02:00:00Z,ups-a,3,\n"
    want, _ = read_csv(_csv(tmp_path, plain), site)
    p = tmp_path / "excel.csv"
    p.write_bytes(b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode())
    other = HEADER + ("2025-01-01t01:00:00+01:00,ups-a,1.5,\n2024-12-31T19:00:01.25-05:00,ups-a,2.5,\n"
                      "2025-01-01T02:00:00-00:00,ups-a,3,\n")
    for path in (p, _csv(tmp_path, other)):
        got, source = read_csv(path, site)
        assert source["rows"] == 3
        np.testing.assert_array_equal(got["ups-a"].t_ns, want["ups-a"].t_ns)
        np.testing.assert_array_equal(got["ups-a"].power_w, [1.5, 2.5, 3.0])
    np.testing.assert_array_equal(want["ups-a"].t_ns, [1735689600 * NS, 1735689601 * NS + 250_000_000,
                                                       1735696800 * NS])


def test_export_formats_times_as_format_time_and_quotes_names_as_csv_does() -> None:
    import csv
    import io

    from puewatch.report.engine import MeterReadings
    from puewatch.core.timefmt import format_times
    from puewatch.report.sources import write_csv

    rng = np.random.default_rng(5)
    t = np.sort(np.concatenate([rng.integers(0, 4_102_444_800, 500) * NS,  # whole seconds, 1970..2100
                                rng.integers(0, 4_102_444_800 * NS, 500), [0, 1, NS - 1, NS]]))
    assert format_times(t) == [format_time(int(x)) for x in t]
    odd = 'hall "a", row 3'
    readings = {odd: MeterReadings(t[:4], np.array([1.5, np.nan, 0.1, 2e-300]), np.array([np.nan, 7.0, 8.25, np.nan])),
                "ups": MeterReadings(t[:1], None, np.array([1e20]))}
    buf = io.StringIO()
    assert write_csv(readings, buf) == 5
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[0] == ["time", "meter", "power_w", "energy_wh"]
    assert rows[1:] == [[format_time(int(t[0])), odd, "1.5", ""], [format_time(int(t[1])), odd, "", "7.0"],
                        [format_time(int(t[2])), odd, "0.1", "8.25"], [format_time(int(t[3])), odd, "2e-300", ""],
                        [format_time(int(t[0])), "ups", "", "1e+20"]]


@pytest.mark.parametrize("block", [7, 1000])
def test_csv_read_in_blocks_keeps_line_numbers_rows_and_hash(tmp_path: Path, monkeypatch, block: int) -> None:
    """Files span many read blocks (here small ones, shorter than a line too): every row is read, the SHA-256
    is the file's, and a fault's line number is right far past the first block (non-UTF-8 bytes, a bad row,
    a last line without a newline)."""
    import hashlib

    from puewatch.report import sources

    monkeypatch.setattr(sources, "BLOCK_BYTES", block)
    site = load_site(write_site(tmp_path))
    n = 3000
    body = "".join(f"{format_time(T0 + k * NS)},ups-a,{k % 97}.5,\n" for k in range(n))
    p = tmp_path / "big.csv"
    # No newline after the last row: it may be cut short ("...,12369" of "...,1236966.0" still has its four
    # fields), so the file is refused, naming the line (found by the damaged-CSV audit)
    p.write_bytes(b"\xef\xbb\xbf" + (HEADER + body.rstrip("\n")).encode())
    with pytest.raises(UserError, match=rf"big.csv:{n + 1}: the last line does not end with a line break: the file "
                                        "may be cut short"):
        read_csv(p, site)
    p.write_bytes(b"\xef\xbb\xbf" + (HEADER + body).encode())
    readings, source = read_csv(p, site)
    assert source["rows"] == n and source["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert readings["ups-a"].t_ns.tolist() == [T0 + k * NS for k in range(n)]
    assert readings["ups-a"].power_w.tolist() == [k % 97 + 0.5 for k in range(n)]
    raw = (HEADER + body).encode()
    line = n - 5  # a data row well past the first block; its file line is line + 1
    at = raw.index(f"{format_time(T0 + (line - 1) * NS)},ups-a".encode())
    p.write_bytes(raw[:at] + b"\xff" + raw[at:])
    with pytest.raises(UserError, match=rf"big.csv:{line + 1}: not UTF-8 text"):
        read_csv(p, site)
    p.write_bytes(raw + "2099-01-01T00:00:00Z,hallé-ups,1,\n".encode())  # a two-byte character across blocks
    with pytest.raises(UserError, match=rf"big.csv:{n + 2}: unknown meter 'hallé-ups'"):
        read_csv(p, site)


def test_cli_report_export_recompute_html(embedded_site: tuple[Path, Path], tmp_path: Path) -> None:
    conf, path = embedded_site
    run = [sys.executable, "-m", "puewatch.cli"]
    period = ["--from", "2025-03-01", "--to", "2025-05-01"]
    out = subprocess.run(run + ["report", "--config", str(conf), *period, "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["label"] == "iPUE_L1 2025-03-01..2025-05-01" and report["source"]["kind"] == "embedded"
    exported = tmp_path / "readings.csv"
    out = subprocess.run(run + ["export", "--config", str(conf), "--store", str(path), *period, "-o", str(exported)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert exported.read_text().startswith("time,meter,power_w,energy_wh\n")
    # `-o -` is standard output, for export and report alike (it wrote a file named "-": found by the store audit).
    for cmd in (["export", "--config", str(conf), "--store", str(path)], ["report", "--config", str(conf), "--json"]):
        out = subprocess.run(run + cmd + [*period, "-o", "-"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0 and not (tmp_path / "-").exists(), out.stderr
        assert out.stdout.startswith("time,meter,power_w,energy_wh\n" if cmd[0] == "export" else "{")
    out = subprocess.run(run + ["recompute", "--readings", str(exported), "--site", str(conf), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout)
    assert again["source"]["kind"] == "csv" and again["period_start"] == "2025-03-01T00:00:00Z"
    for key in ("generated_at", "source"):
        report.pop(key), again.pop(key)
    rel_close(report, again)
    html_path = tmp_path / "report.html"
    out = subprocess.run(run + ["report", "--config", str(conf), *period, "--format", "html", "--target", "1.3",
                                "-o", str(html_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    page = html_path.read_text()
    assert page.count("<svg") == 3 and "target 1.3" in page and "iPUE_L1 2025-03-01..2025-05-01" in page
    out = subprocess.run(run + ["report", "--config", str(conf), *period], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "PUE" in out.stdout and "completeness" in out.stdout and "2025-04" in out.stdout
    out = subprocess.run(run + ["report", "--config", str(conf), *period, "--format", "csv"], capture_output=True,
                         text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0] == ("table,period_start,period_end,pue,facility_energy_wh,it_energy_wh,completeness,pue_joint,"
                        "facility_energy_joint_wh,it_energy_joint_wh,green_energy_wh,green_share,carbon_kg,"
                        "cue_kg_per_kwh,carbon_unknown")
    assert sum(line.startswith("period,2025-03-01T00:00:00Z,2025-05-01T00:00:00Z,") for line in lines) == 1
    assert sum(line.startswith("monthly,") for line in lines) == 2 and sum(line.startswith("daily,") for line in lines) == 61
    bad = _csv(tmp_path, HEADER + "2025-01-01T00:00:00Z,ghost,1,\n")
    out = subprocess.run(run + ["recompute", "--readings", str(bad), "--site", str(conf)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == f"puewatch recompute: error: {bad}:2: unknown meter 'ghost' (not in the site's [meters])"


def test_signed_report_verifies_checks_and_fails_when_tampered(embedded_site: tuple[Path, Path], tmp_path: Path) -> None:
    """report --sign -> verify -> check -> city: the report and the city tools speak the same schema."""
    conf, _ = embedded_site
    run = [sys.executable, "-m", "puewatch.cli"]
    keys = tmp_path / "keys"
    out = subprocess.run(run + ["keys", "new", "--out", str(keys), "--name", "site"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    signed = tmp_path / "report.json"
    out = subprocess.run(run + ["report", "--config", str(conf), "--from", "2025-03-01", "--to", "2025-05-01", "--json",
                                "--sign", str(keys / "site.key"), "-o", str(signed)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(signed.read_text())
    assert report["signature"]["alg"] == "ed25519" and report["signature"]["canonicalization"] == "RFC8785"
    ok = subprocess.run(run + ["verify", str(signed), "--pubkey", str(keys / "site.pub")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    by_js = js(node_ready(), "verify", signed, keys / "site.pub")  # the engine's own numbers, checked in another language
    assert by_js.returncode == 0, by_js.stdout + by_js.stderr
    targets = tmp_path / "targets.toml"
    targets.write_text(f"max_pue = {report['pue'] + 0.01!r}\nmin_completeness = 0.5\n")
    check = subprocess.run(run + ["check", str(signed), "--targets", str(targets)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # Tampered: its PUE, which the signature alone catches (exit 1); its IT energy without its days', which the
    # report's own sums catch first (exit 2: its totals are sums of its days).
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**report, "pue": report["pue"] * 0.99}))
    bad = subprocess.run(run + ["verify", str(tampered), "--pubkey", str(keys / "site.pub")], capture_output=True, text=True)
    assert bad.returncode == 1 and "bad signature" in bad.stderr, bad.stderr
    tampered.write_text(json.dumps({**report, "it_energy_wh": report["it_energy_wh"] * 1.01}))
    bad = subprocess.run(run + ["verify", str(tampered), "--pubkey", str(keys / "site.pub")], capture_output=True, text=True)
    assert bad.returncode == 2 and "the report contradicts itself" in bad.stderr, bad.stderr
    no = subprocess.run(run + ["report", "--config", str(conf), "--from", "2025-03-01", "--to", "2025-05-01",
                               "--sign", str(keys / "site.key")], capture_output=True, text=True, timeout=120)
    assert no.returncode == 2 and "--sign signs the JSON report" in no.stderr


def test_a_report_reads_an_snmp_meter_s_device_ratings_from_the_store(tmp_path):
    # The collector stores a device's ratings as snmp_reading series (reading rated_power / rated_apparent_power);
    # the report reads the largest of each over its period, a 0 (unpopulated) being no rating.
    from puewatch.core import schema
    from puewatch.core.batch import Batch
    from puewatch.core.site import Meter, SiteModel
    from puewatch.report.sources import read_meter

    site = SiteModel("s", {"ups": Meter(role="it", point="ups_output", device="ups0"),
                           "other": Meter(role="facility_input", device="pdu0")})
    t = np.arange(10, dtype=np.int64) * 60 * NS
    b = Batch()
    b.add(*schema.snmp_reading("s", "ups0", "total_active_power", "W"), t, {"value": np.full(10, 4000.0)})
    b.add(*schema.snmp_reading("s", "ups0", "rated_power", "W"), t, {"value": np.array([0.0] * 3 + [9000.0] * 7)})
    b.add(*schema.snmp_reading("s", "ups0", "rated_apparent_power", "VA"), t, {"value": np.full(10, 0.0)})
    b.add(*schema.snmp_reading("s", "pdu0", "total_active_power", "W"), t, {"value": np.full(10, 5000.0)})
    store = EmbeddedStore(tmp_path / "s.db")
    store.write_batch(b)
    assert read_meter(store, site, "ups", 0, 600 * NS).ratings == {"rated_power": 9000.0}
    assert read_meter(store, site, "other", 0, 600 * NS).ratings is None


RATED_SITE_TOML = """
[collector]
site = "s"
state_dir = "{tmp}/state"

[store.embedded]
path = "{tmp}/s.db"

[[snmp.devices]]
name = "ups0"
host = "127.0.0.1"
profile = "ups-mib"

[meters.inc]
role = "facility_input"
measurement = "inc"
field = "wh"
unit = "Wh"
register = true
max_power_w = 50000.0

[meters.ups]
role = "it"
point = "ups_output"
device = "ups0"
"""


def test_recompute_takes_a_rated_meter_s_limit_from_the_export_as_report_does(tmp_path: Path) -> None:
    # A UPS rated 9000 W (limit 18 kW, `rated`) reads 4 kW, once 15 kW: a reading the rating
    # allows but a derived limit (4 x 4 kW = 16 kW) would too, and once 17 kW, above the derived
    # limit only. The export carries the rating, so recompute refuses and counts what report does.
    from puewatch.core import schema
    from puewatch.core.batch import Batch

    conf = tmp_path / "collector.toml"
    conf.write_text(RATED_SITE_TOML.format(tmp=tmp_path))
    t = T0 - MARGIN + np.arange(6 * 60 + 31, dtype=np.int64) * 60 * NS  # a minute apart, 6 h and the margins
    power = np.full(t.size, 4000.0)
    power[100], power[200] = 15_000.0, 17_000.0
    b = Batch()
    b.add(*schema.snmp_reading("s", "ups0", "total_active_power", "W"), t, {"value": power})
    b.add(*schema.snmp_reading("s", "ups0", "rated_power", "W"), t, {"value": np.where(t < T0, 0.0, 9000.0)})
    b.add("inc", {}, t, {"wh": 1e6 + np.arange(t.size) * 6000.0 / 60})
    store = EmbeddedStore(tmp_path / "s.db")
    store.write_batch(b)
    store.close()
    run = [sys.executable, "-m", "puewatch.cli"]
    period = ["--from", format_time(T0), "--to", format_time(T0 + 6 * 3600 * NS)]
    out = subprocess.run(run + ["report", "--config", str(conf), *period, "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    exported = tmp_path / "readings.csv"
    out = subprocess.run(run + ["export", "--config", str(conf), *period, "-o", str(exported)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(run + ["recompute", "--readings", str(exported), "--site", str(conf), *period, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    mine = json.loads(out.stdout)
    ups = {m["meter"]: m for m in report["meters"]}["ups"]
    assert (ups["power_limit_w"], ups["power_limit_source"], ups["power_readings_refused"]) == (18_000.0, "rated", 0)
    for k in ("meters", "pue", "it_energy_wh", "facility_energy_wh", "completeness", "estimated_share", "warnings"):
        assert mine[k] == report[k], k


def _export_report_recompute(tmp_path: Path, conf: Path, b) -> tuple[list[str], list[tuple[str, dict, dict]]]:
    """The batch `b` stored; exported over 6 h from T0; then over the first 2 h and the 6 h, each the report from the
    store and the recompute from that one export: (the export's rows, [(which, report, recompute)])."""
    store = EmbeddedStore(tmp_path / "s.db")
    store.write_batch(b)
    store.close()
    run = [sys.executable, "-m", "puewatch.cli"]

    def cli(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run(run + list(args), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out

    periods = {"part": ["--from", format_time(T0), "--to", format_time(T0 + 2 * 3600 * NS)],
               "whole": ["--from", format_time(T0), "--to", format_time(T0 + 6 * 3600 * NS)]}
    exported = tmp_path / "readings.csv"
    cli("export", "--config", str(conf), *periods["whole"], "-o", str(exported))
    out = []
    for which, period in periods.items():
        report = json.loads(cli("report", "--config", str(conf), *period, "--json").stdout)
        mine = json.loads(cli("recompute", "--readings", str(exported), "--site", str(conf), *period, "--json").stdout)
        for k in ("meters", "pue", "it_energy_wh", "facility_energy_wh", "completeness", "warnings"):
            assert mine[k] == report[k], (k, which)
        out.append((which, report, mine))
    return exported.read_text().splitlines(), out


def test_a_part_recomputed_from_a_longer_export_takes_that_part_s_rating(tmp_path: Path) -> None:
    """Found by the export audit: the export wrote each meter's largest rating over its whole span on its first row,
    so a part recomputed from it took the whole span's rating where the part's report takes the part's: a UPS rated
    9 kW for 3 h, then re-rated 90 kW, read a 20 kW spike in hour 1; the first 2 h's report refuses it (limit 18
    kW), a recompute of those 2 h from the 6 h export counted it (limit 180 kW). Ratings are exported at their
    times, here polled 30 s after the readings (rows of their own), and a part takes the largest in it."""
    from puewatch.core import schema
    from puewatch.core.batch import Batch

    conf = tmp_path / "collector.toml"
    conf.write_text(RATED_SITE_TOML.format(tmp=tmp_path))
    t = T0 - MARGIN + np.arange(6 * 60 + 31, dtype=np.int64) * 60 * NS
    power = np.full(t.size, 4000.0)
    power[75] = 20_000.0  # an hour in
    rated_t = t + 30 * NS
    b = Batch()
    b.add(*schema.snmp_reading("s", "ups0", "total_active_power", "W"), t, {"value": power})
    b.add(*schema.snmp_reading("s", "ups0", "rated_power", "W"), rated_t,
          {"value": np.where(rated_t < T0 + 3 * 3600 * NS, 9000.0, 90_000.0)})
    b.add("inc", {}, t, {"wh": 1e6 + np.arange(t.size) * 6000.0 / 60})
    rows, runs = _export_report_recompute(tmp_path, conf, b)
    assert any(",ups,,,9000.0," in r for r in rows) and any(",ups,,,90000.0," in r for r in rows), rows[:5]
    for which, _report, mine in runs:
        ups = {m["meter"]: m for m in mine["meters"]}["ups"]
        limit = 18_000.0 if which == "part" else 180_000.0
        assert (ups["power_limit_w"], ups["power_readings_refused"]) == (limit, int(which == "part")), ups
        assert mine["source"]["rows"] == len(rows) - 1


def test_a_meter_written_by_two_writers_is_named_by_the_recompute_of_any_part(tmp_path: Path) -> None:
    """Found by the export audit: an ingest meter whose tags select two series (a second writer from hour 3 on, with
    its own host tag) has its readings read together, and the report says its energy cannot be trusted; the
    export wrote the merged readings with nothing of the series, and the recompute said nothing. Each row now
    names the series that had a reading at its time, and a recompute of any part names the series with readings
    in it, as the report of that part does: both over 6 h, neither over the first 2 h."""
    from puewatch.core import schema
    from puewatch.core.batch import Batch

    conf = tmp_path / "collector.toml"
    conf.write_text(RATED_SITE_TOML.format(tmp=tmp_path))
    t = T0 - MARGIN + np.arange(6 * 60 + 31, dtype=np.int64) * 60 * NS
    b = Batch()
    b.add(*schema.snmp_reading("s", "ups0", "total_active_power", "W"), t, {"value": np.full(t.size, 4000.0)})
    b.add("inc", {"host": "a"}, t, {"wh": 1e6 + np.arange(t.size) * 6000.0 / 60})
    late = t[t >= T0 + 3 * 3600 * NS][::2]
    b.add("inc", {"host": "b"}, late, {"wh": 1e6 + (late - t[0]) / (60 * NS) * 6000.0 / 60})
    rows, runs = _export_report_recompute(tmp_path, conf, b)
    assert rows[0].endswith(",series") and any(r.endswith(',"[{""host"":""a""},{""host"":""b""}]"') for r in rows)
    for which, _report, mine in runs:
        named = [w for w in mine["warnings"] if "its tags select 2 series" in w]
        assert len(named) == int(which == "whole") and (not named or "host=a; host=b" in named[0]), mine["warnings"]


@pytest.mark.parametrize("cell,fault", [
    ('"[{""host"":1}]"', "is not a JSON list of series' tags"),
    ("x", "is not a JSON list of series' tags"),
    ('"[]"', "is not a JSON list of series' tags"),
])
def test_a_bad_series_cell_names_file_line_and_fault(tmp_path: Path, cell: str, fault: str) -> None:
    site = load_site(write_site(tmp_path))
    path = _csv(tmp_path, HEADER[:-1] + ",series\n2024-12-31T23:00:00Z,incomer,,5.0,\n"
                f"2025-01-01T00:00:00Z,incomer,,6.0,{cell}\n")
    _refused(path, site, 3, fault)


@pytest.mark.parametrize("body,line,fault", [
    ("2025-01-01T00:00:00Z,ups-a,1.0,,-9000,\n", 2, "negative rated_power_w -9000"),
    ("2025-01-01T00:00:00Z,ups-a,1.0,,x,\n", 2, "rated_power_w 'x' is not a number"),
    ("2025-01-01T00:00:00Z,crac-a,,1.0,9000,\n", 2, "rated_power_w for meter 'crac-a', which is not read from an SNMP"),
    ("2025-01-01T00:00:00Z,ups-a,1.0,\n", 2, "expected 6 columns"),
])
def test_bad_rating_columns_name_file_line_and_fault(tmp_path: Path, body: str, line: int, fault: str) -> None:
    site = load_site(write_site(tmp_path))
    path = _csv(tmp_path, HEADER[:-1] + ",rated_power_w,rated_apparent_power_va\n2024-12-31T23:00:00Z,incomer,,5.0,,\n"
                + body)
    _refused(path, site, line + 1, fault)


def test_ratings_read_on_any_row_the_largest_positive_wins(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path))
    path = _csv(tmp_path, HEADER[:-1] + ",rated_power_w,rated_apparent_power_va\n"
                "2025-01-01T00:00:00Z,ups-a,1.0,,0.0,\n2025-01-01T00:01:00Z,ups-a,1.0,,9000.0,12000.0\n"
                "2025-01-01T00:02:00Z,ups-a,1.0,,8000.0,\n2025-01-01T00:00:00Z,incomer,,5.0,,\n")
    readings, source = read_csv(path, site)
    assert source["rows"] == 4 and readings["ups-a"].t_ns.size == 3
    assert readings["ups-a"].ratings == {"rated_power": 9000.0, "rated_apparent_power": 12000.0}
    assert readings["incomer"].ratings is None


LONG_SITE_TOML = """
[collector]
site = "s"
state_dir = "{tmp}/state"

[store.embedded]
path = "{tmp}/s.db"

[meters.inc]
role = "facility_input"
measurement = "inc"
field = "wh"
unit = "Wh"
register = true
max_power_w = 1e7

[meters.it]
role = "it"
point = "it_input"
measurement = "it"
field = "wh"
unit = "Wh"
register = true
"""


def test_recompute_of_a_longer_export_gives_the_report_of_its_period(tmp_path: Path) -> None:
    # The IT register has no configured limit: derived from the readings read. Day 2 draws ten
    # times day 1, and day 1 has one 5-minute interval at 1 MW. The report of day 1 reads day 1
    # and a max gap each side: limit 400 kW, that interval an impossible jump. Recomputing day 1
    # from an export of both days must say the same, not derive 4 MW from day 2.
    from puewatch.core.batch import Batch

    conf = tmp_path / "collector.toml"
    conf.write_text(LONG_SITE_TOML.format(tmp=tmp_path))
    step = 300 * NS
    t = T0 - MARGIN + np.arange(2 * 288 + 7, dtype=np.int64) * step
    power_w = np.where(t[:-1] < T0 + 86_400 * NS, 100e3, 1e6)
    power_w[(t[:-1] >= T0 + 10 * 3600 * NS).argmax()] = 1.1e6  # one interval on day 1
    it_wh = np.concatenate(([0.0], np.cumsum(power_w * 300 / 3600)))
    b = Batch()
    b.add("it", {}, t, {"wh": it_wh})
    b.add("inc", {}, t, {"wh": np.arange(t.size) * 3e6 * 300 / 3600})
    store = EmbeddedStore(tmp_path / "s.db")
    store.write_batch(b)
    store.close()
    run = [sys.executable, "-m", "puewatch.cli"]
    day1 = ["--from", "2025-01-01", "--to", "2025-01-02"]
    out = subprocess.run(run + ["report", "--config", str(conf), *day1, "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    it = {m["meter"]: m for m in report["meters"]}["it"]
    assert it["power_limit_source"] == "derived" and it["register_intervals"]["jump"] == 1
    exported = tmp_path / "both-days.csv"
    out = subprocess.run(run + ["export", "--config", str(conf), "--from", "2025-01-01", "--to", "2025-01-03", "-o",
                                str(exported)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(run + ["recompute", "--readings", str(exported), "--site", str(conf), *day1, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    mine = json.loads(out.stdout)
    assert mine["source"]["rows"] == 2 * (2 * 288 + 6)  # every row of the export read (and checked)
    for k in ("meters", "pue", "it_energy_wh", "facility_energy_wh", "completeness", "estimated_share", "warnings",
              "daily"):
        assert mine[k] == report[k], k


def test_csv_faults_the_damaged_csv_audit_found_are_named_with_their_line(tmp_path: Path) -> None:
    """CR-only line ends and a bare CR in a field were a traceback; an unterminated quote was named at the file's
    last line as 'got 2 columns'; a time past 2262 overflowed int64 on the way to the store."""
    site = load_site(write_site(tmp_path))
    rows = ["2025-01-01T00:00:00Z,ups-a,1.5,", "2025-01-01T00:01:00Z,ups-a,2.5,", "2025-01-01T00:02:00Z,ups-a,3.5,"]
    p = tmp_path / "cr.csv"
    p.write_bytes((HEADER.rstrip("\n") + "\r" + "\r".join(rows) + "\r").encode())
    with pytest.raises(UserError, match=r"cr.csv:\d+: .*line ends must be LF or CRLF"):
        read_csv(p, site)
    _refused(_csv(tmp_path, HEADER + rows[0] + "\n" + '2025-01-01T00:01:00Z,"ups-a,2.5,\n' + rows[2] + "\n"),
             site, 3, "a quoted field runs on to line 4 (an unterminated quote?)")
    _refused(_csv(tmp_path, HEADER + "2300-01-01T00:00:00Z,ups-a,1.5,\n"), site, 2,
             "time '2300-01-01T00:00:00Z' is outside the times puewatch reads (1679-01-01 .. 2260-12-31")
    # A bare CR in a field, and a field past the csv module's size limit, in an auditor's words (they were
    # Python's "universal-newline mode" and a line-ends hint).
    p.write_bytes((HEADER + rows[0] + "\n" + '2025-01-01T00:01:00Z,ups-a,2\r5,\n').encode())
    with pytest.raises(UserError, match=r"cr.csv:3: a line break \(a bare CR\) inside a field"):
        read_csv(p, site)
    with pytest.raises(UserError, match=r"cr.csv:\d+: a field longer than 131,072 characters"):
        p.write_bytes((HEADER + '2025-01-01T00:01:00Z,"' + "u" * 200_000 + '",2.5,\n').encode())
        read_csv(p, site)


def test_a_reading_of_a_kind_the_site_never_stores_for_the_meter_is_refused(tmp_path: Path) -> None:
    """An ingest meter is one series, a register or a power: a CSV row with the other kind is not an export of
    this site's readings (the damaged-CSV audit gave a register meter power only: it was integrated, and a
    power meter a register: it was used). SNMP meters may have both."""
    site = load_site(write_site(tmp_path))
    _refused(_csv(tmp_path, HEADER + "2025-01-01T00:00:00Z,crac-a,1500.0,\n"), site, 2,
             "power_w for meter 'crac-a', whose site file reads only its energy_wh (a register)")
    _refused(_csv(tmp_path, HEADER + "2025-01-01T00:00:00Z,solar,,12.5\n"), site, 2,
             "energy_wh for meter 'solar', whose site file reads only its power_w (a power series)")
    ok, _ = read_csv(_csv(tmp_path, HEADER + "2025-01-01T00:00:00Z,incomer,1000.0,5.0\n"
                           "2025-01-01T00:00:00Z,crac-a,,7.0\n"), site)
    assert ok["incomer"].power_w.tolist() == [1000.0] and ok["crac-a"].energy_wh.tolist() == [7.0]


def test_the_site_file_is_read_as_every_toml_file_is(tmp_path: Path) -> None:
    """A byte order mark (Notepad writes one) is read past, where it was 'invalid TOML ... line 1, column 1';
    a device named twice is refused, as the collector and `report` refuse it (recompute took the last entry)."""
    site_path = write_site(tmp_path)
    text = site_path.read_bytes()
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + text)
    assert set(load_site(bom).meters) == set(load_site(site_path).meters)
    twice = tmp_path / "twice.toml"
    twice.write_text(text.decode() + '\n[[snmp.devices]]\nname = "d"\nprofile = "generic"\n'
                     '\n[[snmp.devices]]\nname = "d"\nprofile = "generic"\n')
    with pytest.raises(ConfigError, match=r"twice.toml: snmp.devices: device name 'd' is used twice"):
        load_site(twice)


def test_poll_records_are_read_only_where_the_store_kept_them(tmp_path: Path) -> None:
    """A meter's `polls` come from its device's `snmp_poll` series. Readings in the period with no poll recorded
    are data from before the collector recorded polls (or from another writer): `polls` is null, never "0 polls,
    not polled" (found by an outside audit, on a store upgraded in place)."""
    from puewatch.core import schema
    from puewatch.core.batch import Batch
    from puewatch.core.site import Meter, SiteModel
    from puewatch.report.sources import read_meter

    site = SiteModel("s", {"old": Meter(role="facility_input", device="d-old", reading="total_active_power"),
                           "new": Meter(role="it", point="ups_output", device="d-new", reading="total_active_power"),
                           "gone": Meter(role="cooling", device="d-gone", reading="total_active_power")})
    t0 = 1_764_547_200 * NS  # 2025-12-01
    t = t0 + np.arange(60, dtype=np.int64) * 10 * NS
    b = Batch()
    for device in ("d-old", "d-new"):
        b.add(*schema.snmp_reading("s", device, "total_active_power", "W"), t, {schema.SNMP_VALUE: 1000.0})
    b.add(*schema.snmp_poll("s", "d-new", schema.SNMP_POLL_OK), t, {schema.SNMP_POLL_SECONDS: 0.01})
    b.add(*schema.snmp_poll("s", "d-gone", "timeout"), t, {schema.SNMP_POLL_SECONDS: 1.0,
                                                         schema.SNMP_POLL_ERROR: "no response"})
    store = EmbeddedStore(tmp_path / "s.sqlite")
    try:
        store.write_batch(b)
        lo, hi = int(t[0]), int(t[-1]) + NS
        assert read_meter(store, site, "old", lo, hi).polls is None
        new = read_meter(store, site, "new", lo, hi).polls
        assert new is not None and new.counts() == {"ok": 60}
        gone = read_meter(store, site, "gone", lo, hi).polls
        assert gone is not None and gone.counts() == {"timeout": 60}
        # Before any poll was recorded, nothing read and nothing polled: an empty record, not unknown.
        assert read_meter(store, site, "gone", lo - 3600 * NS, lo).polls.recorded == 0
    finally:
        store.close()


def test_points_of_two_series_at_one_time_read_alike_from_every_store(tmp_path: Path) -> None:
    """Found by the store audit: where two series a meter's tags select hold a point at one time, the last the
    store returned was taken, and the stores return ties in their own orders: the embedded store took one
    writer's 29000 W, influxd the other's 30005 W (cooling 238,980 Wh against 239,983 Wh, one site). Now a time
    whose points differ has no reading (unknown), one whose points agree has that value, from every store."""
    from puewatch.report.sources import read_meter

    conf = tmp_path / "collector.toml"
    conf.write_text(RATED_SITE_TOML.format(tmp=tmp_path).replace('measurement = "inc"', 'measurement = "crac"')
                    .replace('field = "wh"\nunit = "Wh"\nregister = true', 'field = "w"\nunit = "W"'))
    site = load_site(conf)
    t0 = 1_764_547_200 * NS
    body = "\n".join([f"crac w=30000 {t0}", f"crac,host=plc2 w=29000 {t0}",  # two writers differ
                      f"crac w=31000 {t0 + 10 * NS}", f"crac,host=plc2 w=31000 {t0 + 10 * NS}",  # and agree
                      f"crac w=32000 {t0 + 20 * NS}"]).encode() + b"\n"
    emb = EmbeddedStore(tmp_path / "e.db")
    emb.write(body)
    server = Influxd(tmp_path / "influxd")
    server.start()
    try:
        assert http("POST", server.url + "/query?q=CREATE+DATABASE+site")[0] == 200
        influx = Influx1Store(server.url, "site")
        influx.write(body)
        got = [read_meter(store, site, "inc", t0 - NS, t0 + 60 * NS) for store in (emb, influx)]
        influx.close()
    finally:
        server.stop()
        emb.close()
    for r in got:
        assert r.t_ns.tolist() == [t0, t0 + 10 * NS, t0 + 20 * NS]
        assert np.isnan(r.power_w[0]) and r.power_w[1:].tolist() == [31000.0, 32000.0]


def test_a_meter_tag_with_an_empty_value_is_refused_when_the_site_is_read(tmp_path: Path) -> None:
    """Found by the store audit: `tags = { meter = "crac", host = "" }` passed --check-config; InfluxDB read it as
    "no host tag" and gave the meter its energy, the embedded store as a tag no series has and gave it none."""
    conf = tmp_path / "collector.toml"
    conf.write_text(RATED_SITE_TOML.format(tmp=tmp_path).replace('field = "wh"', 'field = "wh"\ntags = { meter = "crac", '
                                                                               'host = "" }'))
    with pytest.raises(ConfigError) as exc:
        load_site(conf)
    assert "meters.inc.tags.host: a tag key and its value must not be empty" in str(exc.value)
    out = subprocess.run([sys.executable, "-m", "puewatch.cli", "collector", "--config", str(conf), "--check-config"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "tags.host: a tag key and its value must not be empty" in out.stdout + out.stderr
