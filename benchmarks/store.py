"""`puewatch bench store`: embedded store writes, typed batches vs line protocol text, in one run.

Three workloads, the shapes the collector writes:

- derived: the pipeline's cells, whole arrays per series (SERIES series x CELLS cells, one
  float field), as a step after an outage writes them;
- snmp: SNMP polls, one row per reading (value and raw), thousands of small series blocks
  (DEVICES devices x 20 readings x 10 polls);
- agent: agents' line protocol bodies (gpu_power, four fields), which arrive as text
  (NODES nodes x 8 GPUs x 10 samples x 4 bodies);
- ledger: the job ledger's lines (schema.JOB_LEDGER: four string fields beside numbers and
  booleans, 13 fields a line), which arrive as text (NODES/2 nodes x 8 GPUs x 10 minutes x 4 bodies).

Each is written to a fresh embedded store (synchronous=FULL, as the collector runs it), best of
REPEAT runs, three ways: `typed` (`write_batch`, the collector's path now), `text` (encoded to line protocol and
written with `write()`, which parses it once into columns: the path of agents' bodies), and
`text_per_line` (the same text parsed line by line with `parse_line`, the store's path before
typed batches). Points are stored values (a line with four fields is four points).
Beside them, `rows_floor`: the store's layout before `lines`, a row per point, at its floor (the
rows built beforehand, only their INSERTs timed, the same transactions): what no Python work could
have beaten with that layout.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from puewatch.core import schema
from puewatch.core.batch import Batch
from puewatch.core.site import Meter

T0 = 1_700_000_000 * 10**9
SECOND = 10**9
REPEAT = 3  # runs of each way, each into a fresh store: the best counts


def _derived(series: int, cells: int, steps: int) -> list[Batch]:
    rng = np.random.default_rng(1)
    out = []
    for s in range(steps):
        b = Batch()
        ends = T0 + (s * cells + np.arange(1, cells + 1, dtype=np.int64)) * SECOND
        for i in range(series):
            m = Meter(role="it", device=f"pdu{i}", zone="hall-a")
            b.add(*schema.meter_energy("bench", f"m{i}", m, False), ends, {schema.ENERGY_WH: rng.random(cells)})
        out.append(b)
    return out


def _snmp(devices: int, readings: int, polls: int) -> list[Batch]:
    out = []
    for p in range(polls):
        b = Batch()
        for d in range(devices):
            for r in range(readings):
                b.add(*schema.snmp_reading("bench", f"pdu{d}", f"outlet{r}_active_power", "W"), T0 + p * SECOND + d,
                      {schema.SNMP_VALUE: 100.0 + r, schema.SNMP_RAW: float(1000 + r)})
        out.append(b)
    return out


def _agent(nodes: int, samples: int, bodies: int) -> list[bytes]:
    out = []
    for k in range(bodies):
        lines = []
        for s in range(samples):
            t = T0 + (k * samples + s) * SECOND // 10
            for n in range(nodes):
                for g in range(8):
                    lines.append(f"gpu_power,node=gpu-{n},gpu={g},uuid=GPU-{n}-{g} power_w={300.0 + g + s * 0.5},"
                                 f"power_average_w={299.5 + g},energy_mj={1000 * s + g}i,estimated=false {t}")
        out.append(("\n".join(lines) + "\n").encode())
    return out


def _ledger(nodes: int, minutes: int, bodies: int) -> list[bytes]:
    """Job ledger records (one per GPU and minute) as agents send them, `bodies` writes."""
    from puewatch.lineprotocol import encode_point

    out = []
    for k in range(bodies):
        lines = []
        for m in range(minutes):
            t = T0 + ((k * minutes + m) * 60) * SECOND
            for n in range(nodes):
                for g in range(8):
                    j = (n * 8 + g) // 4 + k
                    lines.append(encode_point(schema.JOB_LEDGER, {"node": f"gpu-{n}", "gpu": str(g), "slot": "0"}, {
                        "job": f"job-{j}", "tenant": f"tenant-{j % 7}", "source": "slurm",
                        "gpu_model": "NVIDIA H100 80GB HBM3", "interval_s": 60.0, "gpu_wh": 5.0 + g + m * 0.01,
                        "gpu_wh_estimated": False, "share": 1.0, "shared": False, "reserved_idle": m % 9 == 0,
                        "host_wh": 0.9 + n * 0.001, "host_estimated": True, "host_unknown": False}, t))
        out.append(("\n".join(lines) + "\n").encode())
    return out


def _values(batches: list[Batch]) -> int:
    return sum(sum(int(np.count_nonzero(np.isfinite(c)) if c.dtype.kind == "f" else c.shape[0])
                   for c in p.fields.values()) for b in batches for p in b.parts)


def _per_line(store, body: bytes) -> None:
    """The store's path before typed batches: every line through parse_line (one-row blocks)."""
    from puewatch.collector.lineparse import parse_line

    b = Batch()
    for line in body.decode().split("\n"):
        if line:
            p = parse_line(line)
            b.add(p.measurement, p.tags, p.time_ns, {k: float(v) if not isinstance(v, str) else v
                                                      for k, v in p.fields.items()})
    store.write_batch(b)


def _time(tmp: Path, name: str, write, payloads, repeat: int = REPEAT) -> float:
    """The best of `repeat` runs, each into a fresh store (a shared host's noise only ever adds time)."""
    from puewatch.collector.stores.embedded import EmbeddedStore

    best = math.inf
    for k in range(repeat):
        store = EmbeddedStore(tmp / f"{name}-{k}.sqlite")
        try:
            t0 = time.perf_counter()
            for p in payloads:
                write(store, p)
            best = min(best, time.perf_counter() - t0)
        finally:
            store.close()
    return best


def _point_rows(batches: list[list]) -> list[tuple[list, list]]:
    """Each batch's blocks as rows of one point each: `points` and `text_points` rows, series numbered."""
    ids: dict = {}
    out = []
    for blocks in batches:
        numbers, texts = [], []
        for b in blocks:
            sid = ids.setdefault((b.measurement, tuple(sorted(b.tags.items()))), len(ids) + 1)
            t = b.time_ns.tolist()
            for name, col in b.fields.items():
                if col.dtype == object:
                    texts += [(sid, name, ti, x) for ti, x in zip(t, col.tolist()) if x is not None]
                else:
                    numbers += [(sid, name, ti, x) for ti, x in zip(t, col.astype(float).tolist()) if math.isfinite(x)]
        out.append((numbers, texts))
    return out


def _rows_floor(tmp: Path, name: str, batches: list[list]) -> float:
    """The row-per-point layout's floor (the store before `lines`): its rows, built beforehand, inserted
    with plain `executemany`, a transaction per batch, synchronous=FULL; no Python work per point is
    timed. Best of REPEAT runs."""
    import sqlite3

    from puewatch.collector.stores.embedded import EmbeddedStore

    rows = _point_rows(batches)
    best = math.inf
    for k in range(REPEAT):
        path = tmp / f"{name}-rows-{k}.sqlite"
        EmbeddedStore(path).close()  # the schema, `points` included
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            t0 = time.perf_counter()
            for numbers, texts in rows:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO points (series_id, field, time_ns, value) VALUES (?, ?, ?, ?)",
                               numbers)
                if texts:
                    db.executemany("INSERT OR REPLACE INTO text_points (series_id, field, time_ns, value) "
                                   "VALUES (?, ?, ?, ?)", texts)
                db.execute("COMMIT")
            best = min(best, time.perf_counter() - t0)
        finally:
            db.close()
    return best


def run(series: int = 200, cells: int = 100, steps: int = 5, devices: int = 100, nodes: int = 64) -> dict:
    from puewatch.collector.lineparse import parse_columns
    from puewatch.errors import UserError

    if min(series, cells, steps, devices, nodes) < 1:
        raise UserError("--series, --cells, --steps, --devices and --nodes must be at least 1")
    workloads = {
        "derived": _derived(series, cells, steps),
        "snmp": _snmp(devices, 20, 10),
    }
    agent = _agent(nodes, 10, 4)
    ledger = _ledger(max(1, nodes // 2), 10, 4)
    out: dict = {"workloads": {}}
    with tempfile.TemporaryDirectory(prefix="puewatch-bench-store-") as tmp_name:
        tmp = Path(tmp_name)
        for name, batches in workloads.items():
            values = _values(batches)
            lines = sum(len(b) for b in batches)
            texts = [b.to_line_protocol() for b in batches]
            t_typed = _time(tmp, f"{name}-typed", lambda s, b: s.write_batch(b), batches)
            t_text = _time(tmp, f"{name}-text", lambda s, b: s.write(b.to_line_protocol()), batches)
            t_line = _time(tmp, f"{name}-line", _per_line, texts)
            t_rows = _rows_floor(tmp, name, [b.parts for b in batches])
            out["workloads"][name] = {
                "lines": lines, "points": values,
                "typed_points_per_s": round(values / t_typed),
                "text_points_per_s": round(values / t_text),
                "text_per_line_points_per_s": round(values / t_line),
                "rows_floor_points_per_s": round(values / t_rows),
            }
        values = sum(body.count(b"\n") for body in agent) * 4
        t_text = _time(tmp, "agent-text", lambda s, b: s.write(b), agent)
        t_line = _time(tmp, "agent-line", _per_line, agent)
        t_rows = _rows_floor(tmp, "agent", [[b for b, _, _ in parse_columns(body)[0]] for body in agent])
        out["workloads"]["agent"] = {
            "lines": values // 4, "points": values,
            "text_points_per_s": round(values / t_text),
            "text_per_line_points_per_s": round(values / t_line),
            "rows_floor_points_per_s": round(values / t_rows),
        }
        lines = sum(body.count(b"\n") for body in ledger)
        values = lines * len(schema.JOB_LEDGER_FIELDS)
        t_text = _time(tmp, "ledger-text", lambda s, b: s.write(b), ledger)
        t_line = _time(tmp, "ledger-line", _per_line, ledger)
        t_rows = _rows_floor(tmp, "ledger", [[b for b, _, _ in parse_columns(body)[0]] for body in ledger])
        out["workloads"]["ledger"] = {
            "lines": lines, "points": values,
            "text_points_per_s": round(values / t_text),
            "text_per_line_points_per_s": round(values / t_line),
            "rows_floor_points_per_s": round(values / t_rows),
            "text_lines_per_s": round(lines / t_text),
            "text_per_line_lines_per_s": round(lines / t_line),
        }
    out["target_points_per_s"] = 200_000
    return out


def _table(r: dict) -> None:
    print("embedded store writes (synchronous=FULL), points (stored values) per second:")
    print(f"  {'workload':10} {'points':>9} {'typed':>12} {'text':>12} {'text per line (before)':>24} "
          f"{'row per point, floor (before)':>31}")
    for name, w in r["workloads"].items():
        typed = f"{w['typed_points_per_s']:,}" if "typed_points_per_s" in w else "-"
        print(f"  {name:10} {w['points']:>9,} {typed:>12} {w['text_points_per_s']:>12,} "
              f"{w['text_per_line_points_per_s']:>24,} {w['rows_floor_points_per_s']:>31,}")
    if "ledger" in r["workloads"]:
        w = r["workloads"]["ledger"]
        print(f"  ledger lines/s: {w['text_lines_per_s']:,} text, {w['text_per_line_lines_per_s']:,} per line (before)")
    print("  (row per point, floor: the layout before `lines`, its rows built beforehand and only inserted)")
    print(f"  target: {r['target_points_per_s']:,} points/s (the collector's ingest rate)")


def main(args) -> int:
    from puewatch.benchmarks import emit

    return emit(run(args.series, args.cells, args.steps, args.devices, args.nodes), args.json, _table)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
