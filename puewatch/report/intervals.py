"""Interval sets: time as sorted, disjoint, half-open [start, end) pairs of int64 ns.

A set is two int64 arrays `(starts, ends)`, sorted by start, each interval non-empty and
none overlapping another (the report's observed spans, joint spans and gaps). Every function
here takes and gives sets in that form, except `merge`, which takes any intervals.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clip", "complement", "cover_upto", "covered_in_bins", "intersect", "merge"]


def merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of any intervals (unsorted, overlapping, empty ones ignored) as a set;
    intervals that only touch are joined."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts.astype(np.int64), ends.astype(np.int64)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    run_end = np.maximum.accumulate(e)
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > run_end[:-1]
    idx = np.flatnonzero(new)
    out_s = s[idx]
    out_e = np.append(run_end[idx[1:] - 1], run_end[-1])
    return out_s.astype(np.int64), out_e.astype(np.int64)


def intersect(sets: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Where every one of `sets` covers; empty for no sets."""
    if not sets:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    n = len(sets)
    times = np.concatenate([np.concatenate((s, e)) for s, e in sets])
    steps = np.concatenate([np.concatenate((np.ones(s.size, np.int64), -np.ones(e.size, np.int64))) for s, e in sets])
    if times.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # Ends before starts at the same instant: half-open intervals that only touch do not overlap.
    order = np.lexsort((steps, times))
    times, steps = times[order], steps[order]
    level = np.cumsum(steps)
    full = level == n
    # An all-covered span starts where the level reaches n and ends at the next event.
    idx = np.flatnonzero(full)
    return merge(times[idx], times[idx + 1])


def cover_upto(starts: np.ndarray, ends: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ns of the set before each of `x` (int64 ns, any shape): a non-decreasing function of x."""
    x = np.asarray(x, np.int64)
    if starts.size == 0:
        return np.zeros(x.shape, np.int64)
    lengths = ends - starts
    cum = np.concatenate(([0], np.cumsum(lengths)))
    j = np.searchsorted(starts, x, side="right") - 1  # the last interval starting at or before x
    jj = np.maximum(j, 0)
    inside = np.minimum(np.maximum(x - starts[jj], 0), lengths[jj])
    return np.where(j >= 0, cum[jj] + inside, 0)


def covered_in_bins(starts: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """ns of each bin [edges[k], edges[k+1]) the set covers (`edges` ascending)."""
    return np.diff(cover_upto(starts, ends, edges))


def complement(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
    """What the set leaves uncovered of [lo, hi), as (start, end) pairs in order (the gaps)."""
    out = []
    cur = lo
    for s, e in zip(starts.tolist(), ends.tolist()):
        s, e = max(s, lo), min(e, hi)
        if e <= s:
            continue
        if s > cur:
            out.append((cur, s))
        cur = max(cur, e)
    if cur < hi:
        out.append((cur, hi))
    return out


def clip(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The set cut to [lo, hi)."""
    s, e = np.maximum(starts, lo), np.minimum(ends, hi)
    keep = e > s
    return s[keep].astype(np.int64), e[keep].astype(np.int64)
