"""Interval sets (puewatch.report.intervals): worked examples, and every function against an
obvious reference that keeps a set as the integer instants it covers (on a small grid of
integer times, [s, e) covers s, s + 1, ..., e - 1: the same set)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from puewatch.report.intervals import clip, complement, cover_upto, covered_in_bins, intersect, merge

I64 = np.int64


def _set(*pairs: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a for a, _ in pairs], I64), np.array([b for _, b in pairs], I64)


def _pairs(s: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, int]]:
    return list(zip(s[0].tolist(), s[1].tolist()))


# -- the reference: a set of integer instants ---------------------------------------------------


def _instants(starts: np.ndarray, ends: np.ndarray) -> set[int]:
    return {t for s, e in zip(starts.tolist(), ends.tolist()) for t in range(s, e)}


def _runs(instants: set[int]) -> list[tuple[int, int]]:
    """The instants as the fewest [start, end) intervals, in order."""
    out: list[tuple[int, int]] = []
    for t in sorted(instants):
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + 1)
        else:
            out.append((t, t + 1))
    return out


# -- worked examples -------------------------------------------------------------------------------


def test_merge_joins_overlapping_and_touching_intervals_and_drops_empty_ones() -> None:
    got = merge(np.array([10, 0, 5, 20, 30], I64), np.array([12, 5, 7, 20, 31], I64))
    assert _pairs(got) == [(0, 7), (10, 12), (30, 31)]  # [0,5) and [5,7) touch; [20,20) is empty
    assert got[0].dtype == I64 and got[1].dtype == I64
    assert _pairs(merge(np.empty(0, I64), np.empty(0, I64))) == []


def test_intersect_is_where_every_set_covers_and_touching_is_not_overlapping() -> None:
    a = _set((0, 10), (20, 30))
    b = _set((5, 25))
    c = _set((10, 22))  # touches a's first interval at 10: no overlap there
    assert _pairs(intersect([a, b])) == [(5, 10), (20, 25)]
    assert _pairs(intersect([a, b, c])) == [(20, 22)]
    assert _pairs(intersect([a])) == [(0, 10), (20, 30)]
    assert _pairs(intersect([])) == []
    assert _pairs(intersect([a, _set()])) == []


def test_cover_upto_and_covered_in_bins_count_covered_nanoseconds() -> None:
    s = _set((10, 20), (30, 35))
    assert cover_upto(*s, np.array([0, 10, 15, 20, 25, 30, 33, 100], I64)).tolist() == [0, 0, 5, 10, 10, 10, 13, 15]
    assert covered_in_bins(*s, np.array([0, 15, 32, 40], I64)).tolist() == [5, 7, 3]
    assert covered_in_bins(*_set(), np.array([0, 15, 32], I64)).tolist() == [0, 0]


def test_complement_gives_the_gaps_inside_the_bounds() -> None:
    s = _set((10, 20), (30, 35))
    assert complement(*s, 0, 40) == [(0, 10), (20, 30), (35, 40)]
    assert complement(*s, 12, 33) == [(20, 30)]
    assert complement(*s, 10, 20) == []
    assert complement(*_set(), 5, 9) == [(5, 9)]


def test_clip_cuts_to_the_bounds() -> None:
    s = _set((10, 20), (30, 35))
    assert _pairs(clip(*s, 15, 32)) == [(15, 20), (30, 32)]
    assert _pairs(clip(*s, 20, 30)) == []


# -- against the reference -------------------------------------------------------------------------

T_MAX = 60
_any_intervals = st.lists(st.tuples(st.integers(0, T_MAX), st.integers(0, T_MAX)), max_size=8)


@st.composite
def _interval_sets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A sorted disjoint set, made as the runs of some instants (so it is one by construction)."""
    instants = draw(st.sets(st.integers(0, T_MAX - 1), max_size=T_MAX))
    return _set(*_runs(instants))


def _arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a for a, _ in pairs], I64), np.array([b for _, b in pairs], I64)


@given(_any_intervals)
def test_merge_matches_the_reference(pairs: list[tuple[int, int]]) -> None:
    starts, ends = _arrays(pairs)
    assert _pairs(merge(starts, ends)) == _runs(_instants(starts, ends))


@given(st.lists(_interval_sets(), min_size=1, max_size=4))
def test_intersect_matches_the_reference(sets: list[tuple[np.ndarray, np.ndarray]]) -> None:
    want = set.intersection(*(_instants(*s) for s in sets))
    assert _pairs(intersect(sets)) == _runs(want)


@given(_interval_sets(), st.lists(st.integers(-5, T_MAX + 5), min_size=1, max_size=10))
def test_cover_upto_and_covered_in_bins_match_the_reference(s: tuple[np.ndarray, np.ndarray], xs: list[int]) -> None:
    instants = _instants(*s)
    x = np.array(xs, I64)
    assert cover_upto(*s, x).tolist() == [sum(1 for t in instants if t < v) for v in xs]
    edges = np.array(sorted(xs), I64)
    want = [sum(1 for t in instants if a <= t < b) for a, b in zip(edges[:-1].tolist(), edges[1:].tolist())]
    assert covered_in_bins(*s, edges).tolist() == want


@given(_interval_sets(), st.integers(-5, T_MAX + 5), st.integers(-5, T_MAX + 5))
def test_complement_and_clip_match_the_reference(s: tuple[np.ndarray, np.ndarray], lo: int, hi: int) -> None:
    instants = _instants(*s)
    inside = set(range(lo, hi))
    assert complement(*s, lo, hi) == _runs(inside - instants)
    assert _pairs(clip(*s, lo, hi)) == _runs(inside & instants)
