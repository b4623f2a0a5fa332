"""The job ledger (`schema.JOB_LEDGER`) as typed columns, read from a store.

One record per GPU (or host share) and interval, as the agents write it. Jobs are keyed by
(tenant, job): the same id under two tenants is two jobs, never merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from puewatch.core import schema
from puewatch.core.timefmt import NS
from puewatch.errors import UserError

HOST = "host"  # the gpu tag of a job's share of a node's host (CPU and memory) energy (schema.JOB_LEDGER)
_NUMBERS = ("interval_s", "gpu_wh", "host_wh", "share")
_FLAGS = ("gpu_wh_estimated", "host_estimated", "shared", "reserved_idle", "host_unknown")
_REQUIRED = ("interval_s", "gpu_wh", "host_wh")


@dataclass
class Ledger:
    """Ledger records as columns (one row per record) and the names the codes index."""

    end_ns: np.ndarray  # int64: the interval's end (the record's time)
    interval_ns: np.ndarray  # int64
    node: np.ndarray  # int32 into `nodes`
    job: np.ndarray  # int32 into `jobs` ((tenant, job id) pairs)
    gpu_model: np.ndarray  # int32 into `gpu_models` (-1: a host record)
    gpu_wh: np.ndarray  # float64
    host_wh: np.ndarray  # float64
    share: np.ndarray  # float64: the job's share of the GPU
    gpu_wh_estimated: np.ndarray  # bool
    host_estimated: np.ndarray  # bool
    shared: np.ndarray  # bool
    reserved_idle: np.ndarray  # bool
    host_unknown: np.ndarray  # bool: no host energy known (host_wh 0); absent in older records: False
    nodes: list[str]
    jobs: list[tuple[str, str]]  # (tenant, job id)
    gpu_models: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # why -> records left out
    # Records whose GPU is held, with theirs, by shares summing above 1 at some time (two jobs each
    # claiming all of one GPU, or a series' records overlapping): counted twice over. Kept (which
    # claim is wrong cannot be known) and said: {"records", "gpus", "first": (node, gpu, ns)}.
    overbooked: dict = field(default_factory=dict)
    # Per node with any (schema.JOB_LEDGER_STATS): GPU processes that belonged to no job.
    unattributed_processes: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.end_ns.shape[0])

    @property
    def it_wh(self) -> np.ndarray:
        return self.gpu_wh + self.host_wh


class _Codes:
    def __init__(self) -> None:
        self.names: list = []
        self.index: dict = {}

    def code(self, name) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i


_TEXTS = ("job", "tenant", "gpu_model")
_KINDS = {**{f: "string" for f in _TEXTS}, **{f: "number" for f in _NUMBERS + _FLAGS}}
# The ledger is read in windows of about a day (a day and the hour after it is one window): a day of a
# 1,000-node site (8 GPUs each, minute records) is 11.5 M records, so a month's read never holds more
# than a day's answer at once. Fewer, longer windows cost no more queries than needed; shorter ones
# would decode the embedded store's chunks (weeks of points each) once per window.
WINDOW_NS = 86400 * NS


def _store_call(fn, *args):
    from puewatch.collector.stores.base import StoreError

    try:
        return fn(*args)
    except StoreError as exc:
        raise UserError(str(exc)) from None


def read_ledger(reader, start_ns: int, end_ns: int, max_interval_ns: int, *, per_series: bool = False) -> Ledger:
    """The records whose interval overlaps [start_ns, end_ns): those ending up to
    `max_interval_ns` after the period are read too (their share inside it counts).

    Read a window of time (WINDOW_NS) at a time, every series of the measurement in one answer
    (`fields_by_series`, which both built-in readers have); a reader without it, or
    `per_series` (the benchmark's baseline), is read series by series (node x gpu x slot).
    A record is one time in one series, its fields matched by time. A record without job
    (but with a number), interval_s, gpu_wh or host_wh, or with a value that is no energy
    (negative, not finite), is left out and counted by reason (`Ledger.dropped`). Records that
    hold one GPU by shares summing above 1 are kept and counted (`Ledger.overbooked`). A record
    longer than `max_interval_ns` that ends more than that after the period is not read.
    """
    lo, hi = start_ns + 1, end_ns + max_interval_ns + 1
    build = _Builder()
    if per_series or not hasattr(reader, "fields_by_series"):
        for tags, t, cols in _per_series(reader, lo, hi):
            build.add(tags, t, cols)
    else:
        n = max(1, (hi - lo) // WINDOW_NS)
        edges = [lo + (hi - lo) * k // n for k in range(n + 1)]
        for w0, w1 in zip(edges, edges[1:]):
            for tags, t, cols in _store_call(reader.fields_by_series, schema.JOB_LEDGER, _KINDS, w0, w1):
                build.add(tags, t, cols)
    led = build.ledger(end_ns)
    led.unattributed_processes = read_unattributed_processes(reader, start_ns, end_ns, per_series=per_series)
    return led


def read_unattributed_processes(reader, start_ns: int, end_ns: int, *, per_series: bool = False) -> list[dict]:
    """Per node, from the agents' `job_ledger_stats` records ending in (start_ns, end_ns]: the ledger
    intervals with GPU processes that belonged to no job, the most in one interval, and their sum
    over the intervals (process-intervals). Nodes without any are left out (the agent writes no record)."""
    lo, hi = start_ns + 1, end_ns + 1
    if per_series or not hasattr(reader, "fields_by_series"):
        found = []
        for node in _store_call(reader.tag_values, schema.JOB_LEDGER_STATS, "node"):
            _t, v = _store_call(reader.series, schema.JOB_LEDGER_STATS, "unattributed_processes", {"node": node}, lo, hi)
            found.append(({"node": node}, np.asarray(v, np.float64)))
    else:
        found = [(tags, cols["unattributed_processes"]) for tags, _t, cols in _store_call(
            reader.fields_by_series, schema.JOB_LEDGER_STATS, {"unattributed_processes": "number"}, lo, hi)]
    per_node: dict[str, np.ndarray] = {}
    for tags, v in found:
        v = v[np.isfinite(v) & (v > 0)]
        node = tags.get("node", "")
        per_node[node] = np.concatenate([per_node[node], v]) if node in per_node else v
    return [{"node": node, "intervals": int(v.size), "max_processes": int(v.max()), "process_intervals": int(v.sum())}
            for node, v in sorted(per_node.items()) if v.size]


def _per_series(reader, lo: int, hi: int):
    """(tags, times, columns) per series, as `fields_by_series` gives them, one query per series and field."""
    nodes, gpus, slots = (_store_call(reader.tag_values, schema.JOB_LEDGER, t) for t in ("node", "gpu", "slot"))
    for node in nodes:
        for gpu in gpus:
            for slot in slots:
                tags = {"node": node, "gpu": gpu, "slot": slot}
                texts = {f: _store_call(reader.text_series, schema.JOB_LEDGER, f, tags, lo, hi) for f in _TEXTS}
                numbers = {f: _store_call(reader.series, schema.JOB_LEDGER, f, tags, lo, hi) for f in _NUMBERS + _FLAGS}
                # Every time with a job or a number is a record (one without a job is counted, then left out).
                t_all = np.unique(np.concatenate([np.asarray(texts["job"][0], np.int64)]
                                                 + [np.asarray(numbers[f][0], np.int64) for f in _NUMBERS]))
                if not t_all.size:
                    continue
                cols: dict[str, np.ndarray] = {}
                for fld, (t, v) in texts.items():
                    at = dict(zip(np.asarray(t, np.int64).tolist(), v))
                    cols[fld] = np.array([at.get(x) for x in t_all.tolist()], object)
                for fld, (t, v) in numbers.items():
                    t, v = np.asarray(t, np.int64), np.asarray(v, np.float64)
                    i = np.searchsorted(t, t_all).clip(0, max(t.size - 1, 0))
                    found = (t[i] == t_all) if t.size else np.zeros(t_all.size, bool)
                    cols[fld] = np.where(found, v[i] if t.size else np.nan, np.nan)
                yield tags, t_all, cols


def _run_codes(codes: _Codes, name_at, *columns: np.ndarray) -> np.ndarray:
    """The code of each row's name, looked up once per run of equal rows (a GPU's job holds it for
    hours: a series is a few runs, not one look-up per minute)."""
    n = columns[0].size
    if n == 0:
        return np.empty(0, np.int32)
    change = np.zeros(n, bool)
    change[0] = True
    for c in columns:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    run_codes = np.array([codes.code(name_at(i)) for i in starts.tolist()], np.int32)
    return np.repeat(run_codes, np.diff(np.append(starts, n)))


class _Builder:
    """Ledger columns from series' aligned columns (NaN or None: the record lacks the field)."""

    def __init__(self) -> None:
        self.node_codes, self.job_codes, self.model_codes = _Codes(), _Codes(), _Codes()
        self.gpu_codes = _Codes()  # (node, gpu): which records hold one GPU (or one node's host)
        self.parts: list[dict[str, np.ndarray]] = []
        self.dropped: dict[str, int] = {}

    def drop(self, why: str, n: int) -> None:
        if n:
            self.dropped[why] = self.dropped.get(why, 0) + int(n)

    def add(self, tags: dict[str, str], t: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        has_job = np.array([j is not None for j in cols["job"]], bool)
        if not has_job.all():
            # A time with numbers but no job is a record that cannot be attributed: counted, left out.
            numbers = np.zeros(t.size, bool)
            for fld in _NUMBERS:
                numbers |= ~np.isnan(cols[fld])
            self.drop("no job", np.count_nonzero(numbers & ~has_job))
            if not has_job.any():
                return
            t = t[has_job]
            cols = {k: c[has_job] for k, c in cols.items()}
        ok = np.ones(t.size, bool)
        num: dict[str, np.ndarray] = {}
        for fld in _NUMBERS + _FLAGS:
            found = ~np.isnan(cols[fld])
            num[fld] = np.where(found, cols[fld], 1.0 if fld == "share" else 0.0)
            if fld in _REQUIRED:
                self.drop(f"no {fld}", np.count_nonzero(ok & ~found))
                ok &= found
        for fld in ("gpu_wh", "host_wh"):
            bad = ok & ~(np.isfinite(num[fld]) & (num[fld] >= 0))
            self.drop(f"{fld} negative or not finite", np.count_nonzero(bad))
            ok &= ~bad
        bad = ok & ~(num["interval_s"] > 0)
        self.drop("interval_s not positive", np.count_nonzero(bad))
        ok &= ~bad
        # The share of the interval the job held the GPU (the host): more than all of it, none or less
        # cannot be (it multiplies the GPU time: 5 made five times the GPU-hours, -1 negative ones).
        bad = ok & ~((num["share"] > 0) & (num["share"] <= 1))
        self.drop("share not in (0, 1]", np.count_nonzero(bad))
        ok &= ~bad
        keep = np.flatnonzero(ok)
        n = keep.size
        tenant, job = cols["tenant"][keep], cols["job"][keep]
        self.parts.append({
            "end_ns": t[keep],
            "interval_ns": np.rint(num["interval_s"][keep] * NS).astype(np.int64),
            "node": np.full(n, self.node_codes.code(tags.get("node", "")), np.int32),
            "gpu": np.full(n, self.gpu_codes.code((tags.get("node", ""), tags.get("gpu", ""))), np.int32),
            "job": _run_codes(self.job_codes, lambda i: (tenant[i] or "", job[i]), tenant, job),
            "gpu_model": np.full(n, -1, np.int32) if tags.get("gpu") == HOST else
            _run_codes(self.model_codes, lambda i, m=cols["gpu_model"][keep]: m[i] or "", cols["gpu_model"][keep]),
            **{f: num[f][keep] for f in ("gpu_wh", "host_wh", "share")},
            **{f: num[f][keep] != 0 for f in _FLAGS},
        })

    def ledger(self, end_ns: int) -> Ledger:
        # Records wholly after the period were read for their overlap only.
        names = ("end_ns", "interval_ns", "node", "job", "gpu_model", "gpu_wh", "host_wh", "share") + _FLAGS
        dtypes = (np.int64, np.int64, np.int32, np.int32, np.int32, float, float, float) + (bool,) * len(_FLAGS)
        parts = self.parts
        columns = {k: (np.concatenate([p[k] for p in parts]) if parts else np.empty(0, d)) for k, d in zip(names, dtypes)}
        gpu = np.concatenate([p["gpu"] for p in parts]) if parts else np.empty(0, np.int32)
        inside = columns["end_ns"] - columns["interval_ns"] < end_ns
        columns = {k: c[inside] for k, c in columns.items()}
        overbooked = _overbooked(gpu[inside], columns["end_ns"], columns["interval_ns"], columns["share"],
                                 self.gpu_codes.names)
        return Ledger(**columns, nodes=self.node_codes.names, jobs=self.job_codes.names,
                      gpu_models=self.model_codes.names, dropped=self.dropped, overbooked=overbooked)


# Shares of one GPU summing above 1 by more than this are overbooked (records written with rounded shares
# sum to 1 within it).
_SHARE_SLACK = 1e-6

# Records of one GPU that overlap by less than this follow each other: the agent stamps a record's end by the
# wall clock and measures its length by the monotonic clock, read microseconds apart, so consecutive records of
# one holder overlap by a few hundred ns, and every real node's GPUs were called counted twice (found by the
# Kubernetes audit). A real double claim overlaps by whole sampling intervals.
_CLOCK_SLACK_NS = 1_000_000


def _overbooked(gpu: np.ndarray, end_ns: np.ndarray, interval_ns: np.ndarray, share: np.ndarray,
                names: list) -> dict:
    """The records holding a GPU (or a node's host) with others at a time when their shares sum above 1 (see
    `Ledger.overbooked`): a sweep over each GPU's interval starts and ends, ends before starts at one time
    (records that follow each other do not overlap). {} when none.

    The records come series by series, each in time order: grouped by GPU with a stable sort, a GPU of one
    series whose records each start at or after the one before ends overlaps nothing, which one vectorised
    compare finds for all of them; only the other GPUs are swept (a lexsort of every record took 2.3 s for a
    day of 1000 nodes x 8 GPUs; this takes 1.1 s)."""
    if not gpu.size:
        return {}
    order = np.argsort(gpu, kind="stable")
    g, b, w = gpu[order], end_ns[order], share[order]
    a = b - interval_ns[order]
    b = np.maximum(b - _CLOCK_SLACK_NS, a)  # (each ends the slack sooner: see _CLOCK_SLACK_NS)
    suspect = np.flatnonzero((g[1:] == g[:-1]) & (a[1:] < b[:-1]))
    if not suspect.size:
        return {}
    cut = np.flatnonzero(np.diff(g)) + 1
    lows, highs = np.r_[0, cut], np.r_[cut, g.size]
    flagged = np.zeros(g.size, bool)
    first = None
    for k in np.unique(np.searchsorted(lows, suspect + 1, side="right") - 1):
        lo, hi = int(lows[k]), int(highs[k])
        times = np.r_[a[lo:hi], b[lo:hi]]
        delta = np.r_[w[lo:hi], -w[lo:hi]]
        ev = np.lexsort((delta > 0, times))  # at one time, ends (negative) before starts
        over = np.cumsum(delta[ev]) > 1.0 + _SHARE_SLACK
        if not over.any():
            continue
        # The records open at an over-booked moment: one of those moments lies in [start, end).
        at = np.unique(times[ev][over])
        i = np.searchsorted(at, a[lo:hi], side="left")
        flagged[lo:hi] |= (i < at.size) & (at[np.minimum(i, at.size - 1)] < b[lo:hi])
        if first is None or int(at[0]) < first[2]:
            node, gpu_name = names[int(g[lo])]
            first = (node, gpu_name, int(at[0]))
    if not flagged.any():
        return {}
    return {"records": int(flagged.sum()), "gpus": int(np.unique(g[flagged]).size), "first": first}
