"""`puewatch bench report`: a long report (issue 6: a year of 1-minute data for 500 meters in < 10 s).

The site (`synthesise`): `--meters` meters read every `--step-s` for `--days` days, as the
collector stores them: SNMP meters (`snmp_reading`, `value`) with their energy register in
Wh (most of them) or only their power in W (one in ten); the poll times carry the jitter of
real polls (up to 0.2 s, in ns). Two incomers (`facility_input`), IT meters in four halls,
cooling meters. Faults as in the field: a few meters have gaps (an hour; one a two-day
outage), one register is reset to zero, and one ingest meter (kWh, `modulus`) wraps.

Measured in the same run:

1. `engine_seconds`: `compute_report` on in-memory readings of every meter (the numbers);
2. `report_seconds`: the end-to-end figure held against the 10 s target: `compute_report` over
   `stream_store` (each meter read from the store as the engine gets to it, the next one read
   meanwhile on a worker thread: what `puewatch report` does) from an embedded store (SQLite) holding ALL the data, loaded with
   `EmbeddedStore.write_columns` (columnar chunks, as `compact()` leaves data older than its
   horizon); the report must equal the in-memory one (`embedded_same_report`).
   `embedded_read_seconds`: `read_store` of every meter, all held in memory at once (4 GB of
   fresh arrays for 500 meter-years: on a VM whose first touch of memory is slow, this costs
   more than the reading);
3. `rows_points_per_s`: the same read path over the row layout (`lines` table: what a store
   holds before compaction) for `--rows-meters` meters, a subset, extrapolated to all;
4. `influx_points_per_s`: `read_store` from a real influxd 1.6.7 holding `--influx-meters`
   meters (a subset: loading a year of 500 meters into influxd would take longer than the rest);
5. baselines: a plain NumPy pass computing each register meter's per-day energy from the same
   arrays (differences of consecutive readings summed per day: no faults handled); a bare
   SQLite fetch of the subset's rows (`SELECT time_ns, value ... fetchall`); for influxd, the
   same queries with the answer's bytes fetched and dropped (the server's floor) and decoded
   with `json.loads` and a loop per point (how `Influx1Store.series` read before), points/s.

The page cache is warm (the store was just written): the figures are those of a report run on
a collector host whose store file fits in memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puewatch.benchmarks import emit

from puewatch.core import schema
from puewatch.core.site import UNITS, Meter, SiteModel
from puewatch.core.timefmt import NS
from puewatch.errors import UserError

DAY_NS = 86_400 * NS
START_NS = 1_735_689_600 * NS  # 2025-01-01T00:00:00Z
TARGET_S = 10.0
SITE = "bench"


@dataclass
class Stored:
    """One meter's series as the collector stores it, and what the report reads from it."""

    measurement: str
    tags: dict[str, str]
    field: str
    t_ns: np.ndarray
    values: np.ndarray  # in the stored unit
    kind: str  # "energy" or "power"


def _meter_specs(n: int) -> list[tuple[str, str, str, str]]:
    """(name, role, zone, point) for n meters: 2 incomers, ~80 % IT in 4 halls, the rest cooling."""
    if n < 4:
        raise UserError(f"--meters must be at least 4, got {n}")
    specs = [("incomer-1", "facility_input", "", ""), ("incomer-2", "facility_input", "", "")]
    n_it = max(1, round((n - 2) * 0.8))
    for i in range(n_it):
        specs.append((f"pdu-{i:04d}", "it", f"hall-{'abcd'[i % 4]}", "pdu_output"))
    for i in range(n - 2 - n_it):
        specs.append((f"crac-{i:04d}", "cooling", f"hall-{'abcd'[i % 4]}", ""))
    return specs


def synthesise(meters: int, days: int, step_s: float, seed: int = 6) -> tuple[SiteModel, int, int, dict[str, Stored]]:
    """The site model, the period [start, end) and every meter's stored series (vectorised)."""
    rng = np.random.default_rng(seed)
    step_ns = round(step_s * NS)
    if step_ns < NS:
        raise UserError(f"--step-s must be at least 1, got {step_s}")
    if days < 1:
        raise UserError(f"--days must be at least 1, got {days}")
    end_ns = START_NS + days * DAY_NS
    n = int((end_ns - START_NS) // step_ns)
    specs = _meter_specs(meters)
    site_meters: dict[str, Meter] = {}
    stored: dict[str, Stored] = {}
    base = START_NS + np.arange(n, dtype=np.int64) * step_ns
    day_phase = 2 * math.pi * ((base - START_NS) % DAY_NS) / DAY_NS
    gap_len = max(1, int(3600 * NS // step_ns))
    for k, (name, role, zone, point) in enumerate(specs):
        jitter = rng.integers(0, min(200_000_000, step_ns // 4), n, dtype=np.int64)
        t = base + jitter
        scale = {"facility_input": 400_000.0, "it": 1_000.0, "cooling": 5_000.0}[role]
        level = scale * (0.8 + 0.4 * rng.random())
        power = level * (1.0 + 0.1 * np.sin(day_phase + k) + 0.02 * rng.standard_normal(n))
        keep = np.ones(n, dtype=bool)
        if k % 50 == 7:  # an hour with no answer
            g = int(rng.integers(0, n - gap_len))
            keep[g : g + gap_len] = False
        if k == 11 and n > 4 * 48 * gap_len:  # a two-day outage
            g = n // 3
            keep[g : g + 48 * gap_len] = False
        power_only = k % 10 == 9 and role != "facility_input"
        wrap = k == 13
        if power_only:
            values, kind, unit = power, "power", "W"
        else:
            energy = np.cumsum(power * (step_ns / NS / 3600.0))
            energy += 1e6 * rng.random()
            if k == 17:  # the register is reset to zero at mid-period
                h = n // 2
                energy[h:] -= energy[h - 1]
                energy[h:] += power[h:h + 1] * (step_ns / NS / 3600.0)
            values, kind, unit = energy, "energy", "Wh"
        t, values = t[keep], values[keep]
        if wrap:
            # An ingest meter with a kWh register that wraps at 100,000 kWh a third of the way in.
            kwh = values / 1000.0
            kwh += 100_000.0 - kwh[len(kwh) // 3]
            kwh = np.mod(kwh, 100_000.0)
            site_meters[name] = Meter(role=role, point=point, zone=zone, measurement="modbus",
                                      tags={"meter": name}, field="energy_kwh", unit="kWh", register=True,
                                      modulus=100_000.0, accuracy_pct=1.0)
            stored[name] = Stored("modbus", {"meter": name}, "energy_kwh", t, kwh, "energy")
            continue
        site_meters[name] = Meter(role=role, point=point, zone=zone, device=f"dev-{name}", accuracy_pct=0.5 if role != "cooling" else None)
        reading = schema.SNMP_ENERGY_READING if kind == "energy" else schema.SNMP_POWER_READING
        stored[name] = Stored(*schema.snmp_reading(SITE, f"dev-{name}", reading, unit), schema.SNMP_VALUE, t, values, kind)
    return SiteModel(SITE, site_meters), START_NS, end_ns, stored


def in_memory_readings(site: SiteModel, stored: dict[str, Stored]) -> dict[str, Any]:
    """What `read_store` returns for the stored series, built directly (units converted as it does)."""
    from puewatch.report.engine import MeterReadings
    from puewatch.report.sources import meter_modulus

    out = {}
    for name, s in stored.items():
        m = site.meters[name]
        v = s.values * UNITS[m.unit][1] if m.measurement else s.values
        out[name] = MeterReadings(s.t_ns, v if s.kind == "power" else None, v if s.kind == "energy" else None,
                                  meter_modulus(m))
    return out


def numpy_day_energy(readings: dict[str, Any], start_ns: int, end_ns: int) -> int:
    """The baseline: every register meter's per-day energy in plain NumPy, touching every reading as the
    engine does (differences of consecutive readings summed per day), but with no faults handled:
    no gaps, wraps, resets or missing readings, no spreading of an interval across midnight."""
    edges = np.arange(start_ns, end_ns + 1, DAY_NS, dtype=np.int64)
    days = 0
    for r in readings.values():
        if r.energy_wh is None or r.t_ns.size < 2:
            continue
        d = np.diff(r.energy_wh)
        i = np.minimum(np.searchsorted(r.t_ns[1:], edges[:-1]), d.size - 1)
        per_day = np.add.reduceat(d, i)
        days += per_day.size
    return days


def _strip(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("generated_at", "source")}


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _subsite(site: SiteModel, names: list[str]) -> SiteModel:
    return SiteModel(site.name, {n: site.meters[n] for n in names})


def _subset(site: SiteModel, stored: dict[str, Stored], k: int) -> list[str]:
    """k meters for the subset measurements: an incomer, an IT meter, and the rest in order (at least one each)."""
    names = [n for n in site.meters if site.meters[n].role == "facility_input"][:1]
    names += [n for n in site.meters if site.meters[n].role == "it"][:1]
    names += [n for n in site.meters if n not in names]
    return names[:max(k, 2)]


def _store_embedded(path: Path, stored: dict[str, Stored]) -> int:
    from puewatch.collector.stores.embedded import EmbeddedStore

    store = EmbeddedStore(path, synchronous="NORMAL")
    points = 0
    try:
        for s in stored.values():
            points += store.write_columns(s.measurement, s.tags, s.field, s.t_ns, s.values)
    finally:
        store.close()
    return points


def _store_rows(path: Path, stored: dict[str, Stored], names: list[str]) -> int:
    """The row layout (what a store holds before compaction), filled with plain SQL for speed."""
    from puewatch.collector.stores.embedded import EmbeddedStore, canonical_tagset

    store = EmbeddedStore(path, synchronous="NORMAL")
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    points = 0
    try:
        db.execute("BEGIN")
        for sid, name in enumerate(names, 1):
            s = stored[name]
            db.execute("INSERT INTO series (id, measurement, tagset, tags) VALUES (?, ?, ?, ?)",
                       (sid, s.measurement, canonical_tagset(s.tags), json.dumps(s.tags, sort_keys=True)))
            names_json = json.dumps([s.field])
            db.execute("INSERT OR IGNORE INTO field_sets (names) VALUES (?)", (names_json,))
            set_id = db.execute("SELECT id FROM field_sets WHERE names = ?", (names_json,)).fetchone()[0]
            # A line of one field: its value is a REAL (NaN, no value, stays out: a line has a value).
            ok = ~np.isnan(s.values)
            db.executemany("INSERT INTO lines (series_id, time_ns, field_set, vals) VALUES (?, ?, ?, ?)",
                           zip([sid] * int(ok.sum()), s.t_ns[ok].tolist(), [set_id] * int(ok.sum()),
                               s.values[ok].tolist()))
            points += int(ok.sum())
        db.execute("COMMIT")
    finally:
        db.close()
    return points


def _bare_fetch(path: Path) -> tuple[int, float]:
    """Every row of every series with a plain `SELECT ... fetchall` (the floor of any row-at-a-time read)."""
    db = sqlite3.connect(path)
    try:
        ids = [r[0] for r in db.execute("SELECT id FROM series")]
        t0 = time.perf_counter()
        n = 0
        for sid in ids:
            n += len(db.execute("SELECT time_ns, vals FROM lines WHERE series_id = ? ORDER BY time_ns",
                                (sid,)).fetchall())
        return n, time.perf_counter() - t0
    finally:
        db.close()


def _load_influx(server: Any, db: str, stored: dict[str, Stored], names: list[str]) -> int:
    from puewatch.lineprotocol import series_key

    server.query(f'CREATE DATABASE "{db}"')
    points = 0
    batch = 100_000
    for name in names:
        s = stored[name]
        key = series_key(s.measurement, s.tags)
        prefix = f"{key} {s.field}="
        ts, vs = s.t_ns.tolist(), s.values.tolist()
        for i in range(0, len(ts), batch):
            body = "".join(f"{prefix}{v!r} {t}\n" for t, v in zip(ts[i:i + batch], vs[i:i + batch]))
            server.write(body.encode(), db)
        points += len(ts)
    return points


def _influx_baselines(url: str, db: str, stored: dict[str, Stored], names: list[str], start: int, end: int
                      ) -> tuple[float, float]:
    """(seconds to fetch the bytes only, seconds with `json.loads` and a Python loop per point, as reads were before)
    for the same queries `Influx1Store.series` makes, chunked, epoch=ns."""
    import urllib.parse

    import urllib3

    from puewatch.collector.stores.influx1 import quote_ident, quote_string

    http = urllib3.PoolManager()
    raw_s = json_s = 0.0
    for name in names:
        s = stored[name]
        where = " AND ".join([f"time >= {start}", f"time < {end}"]
                             + [f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted(s.tags.items())])
        q = f"SELECT {quote_ident(s.field)} FROM {quote_ident(s.measurement)} WHERE {where}"
        url_q = url + "/query?" + urllib.parse.urlencode(
            {"q": q, "db": db, "epoch": "ns", "chunked": "true", "chunk_size": "10000"})
        t0 = time.perf_counter()
        resp = http.request("GET", url_q, preload_content=False)
        for _ in resp.stream(1 << 20):
            pass
        resp.release_conn()
        raw_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        resp = http.request("GET", url_q, preload_content=False)
        times: list[int] = []
        values: list[float] = []
        for line in resp.data.split(b"\n"):
            if line.strip():
                for result in json.loads(line).get("results", []):
                    for series in result.get("series", []):
                        for t, v in series.get("values", []):
                            if v is not None:
                                times.append(t)
                                values.append(float(v))
        np.asarray(times, np.int64), np.asarray(values, np.float64)
        resp.release_conn()
        json_s += time.perf_counter() - t0
    http.clear()
    return raw_s, json_s


def run(meters: int, days: int, step_s: float, influx_meters: int, rows_meters: int, workdir: Path | None = None
        ) -> dict[str, Any]:
    from puewatch.benchmarks.servers import Influxd
    from puewatch.collector.stores.embedded import EmbeddedStore
    from puewatch.collector.stores.influx1 import Influx1Store
    from puewatch.report.engine import ReportOptions, compute_report
    from puewatch.report.sources import read_store, stream_store

    (site, start, end, stored), synth_s = _timed(synthesise, meters, days, step_s)
    points = sum(s.t_ns.size for s in stored.values())
    readings = in_memory_readings(site, stored)
    opts = ReportOptions(generated_at="bench", source={"kind": "bench"})
    few = _subset(site, stored, 6)
    compute_report(_subsite(site, few), readings, start, end, opts)  # compile (or load) the kernels first
    mem_report, engine_s = _timed(compute_report, site, readings, start, end, opts)
    day_values, numpy_s = _timed(numpy_day_energy, readings, start, end)
    del readings
    gc.collect()

    out: dict[str, Any] = {
        "meters": meters, "days": days, "step_s": step_s, "points": points,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
        "synthesise_seconds": round(synth_s, 6),
        "engine_seconds": round(engine_s, 6),
        "engine_points_per_s": round(points / engine_s),
        "numpy_day_energy_seconds": round(numpy_s, 6),
        "numpy_day_energy_days": day_values,
        "target_seconds": TARGET_S,
    }
    tmp = Path(tempfile.mkdtemp(prefix="puewatch-bench-report-", dir=workdir))
    try:
        # -- embedded, all the data, columnar ------------------------------------------------------
        path = tmp / "embedded.sqlite"
        loaded, load_s = _timed(_store_embedded, path, stored)
        out["embedded_load_seconds"] = round(load_s, 6)
        out["embedded_file_bytes"] = path.stat().st_size
        # What `puewatch report` does: each meter read from the store as the engine gets to it.
        store = EmbeddedStore(path)
        t0 = time.perf_counter()
        with stream_store(store, site, start, end, progress=False) as streamed:
            store_report = compute_report(site, streamed, start, end, opts)
        report_s = time.perf_counter() - t0
        out["report_seconds"] = round(report_s, 6)
        out["meets_target"] = report_s < TARGET_S
        out["embedded_same_report"] = _strip(store_report) == _strip(mem_report)
        # Every meter's readings read and held at once (`read_store`, what an export of all meters
        # to memory needs): 16 bytes per reading of fresh memory.
        got, read_s = _timed(read_store, store, site, start, end, progress=False)
        store.close()
        del got
        gc.collect()
        out["embedded_read_seconds"] = round(read_s, 6)
        out["embedded_read_points_per_s"] = round(points / read_s)

        # -- embedded, row layout, a subset --------------------------------------------------------
        names = _subset(site, stored, rows_meters)
        sub = _subsite(site, names)
        sub_points = sum(stored[n].t_ns.size for n in names)
        rows_path = tmp / "rows.sqlite"
        _store_rows(rows_path, stored, names)
        fetched, fetch_s = _bare_fetch(rows_path)
        store = EmbeddedStore(rows_path)
        rows_got, rows_s = _timed(read_store, store, sub, start, end, progress=False)
        moved, compact_s = _timed(store.compact, end + 3 * DAY_NS)
        chunk_got, chunk_s = _timed(read_store, store, sub, start, end, progress=False)
        store.close()
        same_rows = all(np.array_equal(rows_got[n].t_ns, chunk_got[n].t_ns) for n in names)
        out["rows_subset"] = {
            "meters": len(names), "points": sub_points,
            "bare_fetch_points_per_s": round(fetched / fetch_s),
            "read_seconds": round(rows_s, 6), "read_points_per_s": round(sub_points / rows_s),
            "read_all_meters_estimate_seconds": round(points / (sub_points / rows_s), 1),
            "compact_points_per_s": round(moved / compact_s),
            "after_compact_read_points_per_s": round(sub_points / chunk_s),
            "same_readings": same_rows,
        }

        # -- influxd 1.6.7, a subset ---------------------------------------------------------------
        if influx_meters > 0:
            names = _subset(site, stored, influx_meters)
            sub = _subsite(site, names)
            sub_points = sum(stored[n].t_ns.size for n in names)
            server = Influxd(tmp / "influxd")
            server.start()
            try:
                _, write_s = _timed(_load_influx, server, "bench", stored, names)
                reader = Influx1Store(server.url, "bench", timeout_s=300.0)
                influx_got, influx_s = _timed(read_store, reader, sub, start, end, progress=False)
                reader.close()
                raw_s, json_s = _influx_baselines(server.url, "bench", stored, names, start, end)
            finally:
                server.stop()
            sub_mem = in_memory_readings(sub, {n: stored[n] for n in names})
            same = all(np.array_equal(influx_got[n].t_ns, sub_mem[n].t_ns) for n in names)
            out["influx_subset"] = {
                "meters": len(names), "points": sub_points,
                "write_points_per_s": round(sub_points / write_s),
                "read_seconds": round(influx_s, 6),
                "read_points_per_s": round(sub_points / influx_s),
                "read_all_meters_estimate_seconds": round(points / (sub_points / influx_s), 1),
                "http_bytes_only_points_per_s": round(sub_points / raw_s),
                "json_decode_points_per_s": round(sub_points / json_s),
                "same_readings": same,
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _print_table(r: dict[str, Any]) -> None:
    print(f"puewatch report benchmark: {r['meters']} meters x {r['days']} days every {r['step_s']:g} s = "
          f"{r['points']:,} readings; {r['machine']['cpus']} CPUs, SQLite {r['machine']['sqlite']}")
    rows = [
        ("engine (compute_report, in memory)", r["engine_seconds"], r["engine_points_per_s"], ""),
        ("baseline: numpy per-day register energy", r["numpy_day_energy_seconds"], None, "no faults handled"),
        ("embedded: write_columns (load)", r["embedded_load_seconds"], None,
         f"{r['embedded_file_bytes'] / 2**30:.2f} GiB file"),
        ("embedded: report, meters read as used", r["report_seconds"], r["points"] / r["report_seconds"],
         "end to end; " + ("same report" if r["embedded_same_report"] else "REPORT DIFFERS")),
        ("embedded: read_store, all held at once", r["embedded_read_seconds"], r["embedded_read_points_per_s"],
         "read only"),
    ]
    rs = r.get("rows_subset")
    if rs:
        rows += [
            (f"rows layout: bare SQLite fetch ({rs['meters']} meters)", rs["points"] / rs["bare_fetch_points_per_s"],
             rs["bare_fetch_points_per_s"], "subset"),
            (f"rows layout: read_store ({rs['meters']} meters)", rs["read_seconds"], rs["read_points_per_s"],
             f"subset; all meters ~{rs['read_all_meters_estimate_seconds']:g} s"),
            (f"rows -> chunks: compact() ({rs['meters']} meters)", rs["points"] / rs["compact_points_per_s"],
             rs["compact_points_per_s"], "subset" + ("" if rs["same_readings"] else ", READINGS DIFFER")),
        ]
    ix = r.get("influx_subset")
    if ix:
        rows += [
            (f"influxd 1.6.7: /write ({ix['meters']} meters)", ix["points"] / ix["write_points_per_s"],
             ix["write_points_per_s"], "subset"),
            (f"influxd 1.6.7: HTTP bytes only ({ix['meters']} meters)", ix["points"] / ix["http_bytes_only_points_per_s"],
             ix["http_bytes_only_points_per_s"], "subset; the server's floor"),
            (f"influxd 1.6.7: json.loads + loop ({ix['meters']} m.)", ix["points"] / ix["json_decode_points_per_s"],
             ix["json_decode_points_per_s"], "subset; the former client"),
            (f"influxd 1.6.7: read_store ({ix['meters']} meters)", ix["read_seconds"], ix["read_points_per_s"],
             f"subset; all meters ~{ix['read_all_meters_estimate_seconds']:g} s"
             + ("" if ix["same_readings"] else ", READINGS DIFFER")),
        ]
    hdr = f"{'step':<48}{'seconds':>10}{'Mpoints/s':>11}  note"
    print(hdr)
    print("-" * len(hdr))
    for what, sec, pps, note in rows:
        rate = f"{pps / 1e6:.2f}" if pps else "-"
        print(f"{what:<48}{sec:>10.3f}{rate:>11}  {note}")
    verdict = "met" if r["meets_target"] else "NOT MET"
    print(f"report from the embedded store, end to end: {r['report_seconds']:.2f} s "
          f"(target < {r['target_seconds']:g} s: {verdict})")


def main(args: argparse.Namespace) -> int:
    for name in ("meters", "days", "influx_meters", "rows_meters"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must not be negative")
    report = run(args.meters, args.days, args.step_s, args.influx_meters, args.rows_meters,
                 Path(args.workdir) if args.workdir else None)
    return emit(report, args.json, _print_table)
