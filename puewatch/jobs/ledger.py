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

HOST = "host"  # the gpu tag of a job's share of a node's non-GPU energy (schema.JOB_LEDGER)
_NUMBERS = ("interval_s", "gpu_wh", "host_wh", "share")
_FLAGS = ("gpu_wh_estimated", "host_estimated", "shared", "reserved_idle")
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
    nodes: list[str]
    jobs: list[tuple[str, str]]  # (tenant, job id)
    gpu_models: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # why -> records left out

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


def _numbers(reader, tags: dict[str, str], fld: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    from puewatch.collector.stores.base import StoreError

    try:
        t, v = reader.series(schema.JOB_LEDGER, fld, tags, lo, hi)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    return np.asarray(t, np.int64), np.asarray(v, np.float64)


def _texts(reader, tags: dict[str, str], fld: str, lo: int, hi: int) -> tuple[np.ndarray, list[str]]:
    from puewatch.collector.stores.base import StoreError

    try:
        t, v = reader.text_series(schema.JOB_LEDGER, fld, tags, lo, hi)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    return np.asarray(t, np.int64), list(v)


def read_ledger(reader, start_ns: int, end_ns: int, max_interval_ns: int) -> Ledger:
    """The records whose interval overlaps [start_ns, end_ns): those ending up to
    `max_interval_ns` after the period are read too (their share inside it counts).

    Read series by series (node x gpu x slot): a record is one time in one series, its
    fields matched by time. A record without job, interval_s, gpu_wh or host_wh, or with a
    value that is no energy (negative, not finite), is left out and counted by reason.
    """
    lo, hi = start_ns + 1, end_ns + max_interval_ns + 1
    nodes, gpus, slots = (reader.tag_values(schema.JOB_LEDGER, t) for t in ("node", "gpu", "slot"))
    node_codes, job_codes, model_codes = _Codes(), _Codes(), _Codes()
    parts: list[dict[str, np.ndarray]] = []
    dropped: dict[str, int] = {}

    def drop(why: str, n: int) -> None:
        if n:
            dropped[why] = dropped.get(why, 0) + int(n)

    for node in nodes:
        for gpu in gpus:
            for slot in slots:
                tags = {"node": node, "gpu": gpu, "slot": slot}
                t_job, job = _texts(reader, tags, "job", lo, hi)
                if not t_job.size:
                    continue
                _t, tenant = _texts(reader, tags, "tenant", lo, hi)
                tenant_at = dict(zip(_t.tolist(), tenant))
                _t, model = _texts(reader, tags, "gpu_model", lo, hi)
                model_at = dict(zip(_t.tolist(), model))
                cols: dict[str, np.ndarray] = {}
                ok = np.ones(t_job.size, bool)
                for fld in _NUMBERS + _FLAGS:
                    t, v = _numbers(reader, tags, fld, lo, hi)
                    i = np.searchsorted(t, t_job).clip(0, max(t.size - 1, 0))
                    found = (t[i] == t_job) if t.size else np.zeros(t_job.size, bool)
                    default = 1.0 if fld == "share" else 0.0
                    cols[fld] = np.where(found, v[i] if t.size else default, default)
                    if fld in _REQUIRED:
                        drop(f"no {fld}", np.count_nonzero(ok & ~found))
                        ok &= found
                for fld in ("gpu_wh", "host_wh"):
                    bad = ok & ~(np.isfinite(cols[fld]) & (cols[fld] >= 0))
                    drop(f"{fld} negative or not finite", np.count_nonzero(bad))
                    ok &= ~bad
                bad = ok & ~(cols["interval_s"] > 0)
                drop("interval_s not positive", np.count_nonzero(bad))
                ok &= ~bad
                keep = np.flatnonzero(ok)
                t_keep = t_job[keep]
                n = keep.size
                parts.append({
                    "end_ns": t_keep,
                    "interval_ns": np.rint(cols["interval_s"][keep] * NS).astype(np.int64),
                    "node": np.full(n, node_codes.code(node), np.int32),
                    "job": np.array([job_codes.code((tenant_at.get(t, ""), job[i])) for t, i in
                                     zip(t_keep.tolist(), keep.tolist())], np.int32),
                    "gpu_model": np.full(n, -1, np.int32) if gpu == HOST else
                    np.array([model_codes.code(model_at.get(t, "")) for t in t_keep.tolist()], np.int32),
                    **{f: cols[f][keep] for f in ("gpu_wh", "host_wh", "share")},
                    **{f: cols[f][keep] != 0 for f in _FLAGS},
                })
    # Records wholly after the period were read for their overlap only.
    names = ("end_ns", "interval_ns", "node", "job", "gpu_model", "gpu_wh", "host_wh", "share") + _FLAGS
    dtypes = (np.int64, np.int64, np.int32, np.int32, np.int32, float, float, float) + (bool,) * 4
    columns = {k: (np.concatenate([p[k] for p in parts]) if parts else np.empty(0, d)) for k, d in zip(names, dtypes)}
    inside = columns["end_ns"] - columns["interval_ns"] < end_ns
    columns = {k: c[inside] for k, c in columns.items()}
    return Ledger(**columns, nodes=node_codes.names, jobs=job_codes.names, gpu_models=model_codes.names,
                  dropped=dropped)
