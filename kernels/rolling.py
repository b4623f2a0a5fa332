"""Rolling windows over timestamps: ratios of energy sums with coverage (rolling PUE, pPUE, CLF, PLF).

The inputs are ``n`` contiguous intervals given by ``n + 1`` boundaries
``t_ns``; interval ``i`` is ``(t[i], t[i+1]]`` with energies ``numerator[i]``
and ``denominator[i]``, counted only where both are valid. For every interval
end ``t[i+1]`` and every window length ``W`` the window is
``(t[i+1] - W, t[i+1]]``. An interval that straddles the window's start counts
in proportion to its overlap. Windows are in time, not sample counts, so
irregular sampling and gaps are handled exactly.

Coverage is the share of the window's length backed by valid data: an
interval contributes its overlap × its own coverage (1 for finite energies
unless given, 0 for NaN). Time before the first boundary is uncovered.

A window's sums are the difference of two running double-double sums (TwoSum
pairs) over the same sequence of intervals: the lead, through the window's
last interval, and the window's trail, through the last interval before it.
Both add the same values in the same order, so a window of zeros is exactly
zero however large the values that passed before (a ratio's denominator never
keeps a rounding residue), and precision does not decay along arbitrarily
long series. The lead runs once for all windows, block by block, and leaves
its running sums (the prefixes) in a ring whose columns are contiguous; a
window's trail is the prefix at its start (the same additions in the same
order), read from the ring while the start is still in it, and for windows
longer than the ring from a ring of the window's own, which a trail lead (the
same vector lead, from the window's start) fills. Output i + j's window starts at boundary
c + j or c + j + 1 (c: output i's start) for hundreds of outputs in a row on
jittered polls: the outputs of such a span, straddling interval included, are
one loop of contiguous loads of both candidates and selects, which the
compiler runs four at a time, after a loop of integer compares that checks
that each output's start is one of its pair (see _ring_spans). On jittered 1 s polls (AMD Zen 2, 2026-12), on 10
million intervals and 2 cores: registers for one window and a scalar pass per
window pair for several took 0.080 s for one window and 0.33 s for five; runs
of outputs whose starts follow one for one (found with integers first, median
3 outputs long) 0.063 and 0.263 s; the spans 0.060 and 0.261 s (three runs of
each, alternated); with a span's integers converted in two instructions where
they are below 2**52 ns (see _f52) 0.049 and 0.214 s, from 0.052 and 0.228 s the
same day. Measured and not kept (2026-12-05): each interval's numerator and
denominator per ns kept in the ring, so that an output's straddling interval
needs no divide (the span loop 83 instructions for four outputs, from 99, but
the lead's extra stores and divides made one window 9 % slower, five 5 %
faster); blocks of 256, 512 and 2048 intervals. The lead reads each interval in
a vector pass, then sums the terms it left in the ring, the double-double sums
side by side in one vector register (see _lead_rows, _dd_scan_codegen); either
alone was no faster (a scalar scan after the pass: eight stores an interval,
not five; the sums paired in the one loop: bound by its instruction count).
That scan is bound by the latency of its adds: where a run's terms allow it (energies,
>= 0, once the sums are larger than any of them) it adds by Fast2Sum, three adds deep
where TwoSum is five, which gives TwoSum's bits there (see _fast), four rows at a
time: one window 7 % faster, two 5 %, five 2 % (0.0457, 0.0790 and 0.2095 s to 0.0425,
0.0750 and 0.2060, 2026-12-05; no faster: four rows at a time by TwoSum, the sums'
columns padded apart against 4K aliasing, the next block's inputs prefetched during the
spans; 3 % slower: one vector loop that reads the inputs and sums them four rows at a
time, with no pass between). The checks of the spans' starts in a loop of their own,
before the outputs, and the span loop compiled once a block, not a call a span: 0.0426 s
and 0.209 s (one window, five) to 0.0393 and 0.187 (2026-12-05; not kept: the straddling
intervals' fractions divided out in that first loop, 5-10 % slower); long windows'
trails from rings of their own, not walked in registers: five windows 0.187 to 0.179 s, a
30-day window alone 0.068 to 0.055 s (a 1-day window in the lead's ring, 2**17 rows:
0.052 s; in its own: 0.056); the straddling interval's terms loaded whatever its overlap
(see _pair_out): five windows 0.176 to 0.167 s. Measured and not kept the same day: the
ratio's sums scaled by the straddling interval's length, so that an output divides twice,
not three times (2-3 % slower); no divide at all (every one made a multiply, to measure):
2-5 % faster, so the span loop is not bound by its divides (llvm-mca's Zen 2 model says it
is, at 46 cycles for four outputs, which is about what it takes); spans of 256 or 512
outputs, blocks of 2048 intervals, the first chunk's extra share a quarter or a sixth of
the longest window (not a third): within 2 %. Where five windows' time goes (the bench's 10 M
intervals, 2 threads, fresh outputs, 2026-12-05; each part the time a variant saves): 0.167 s in
all, of which 0.080 s is what the windows' outputs written as zeros take (their 800 MB of fresh
pages and stores, the io floor's own 0.066 s, and the lead and chunk start-up), 0.007 s the
checks of the spans' starts, 0.007 s the 30-day window's trail lead, about 0.010 s the spans'
control, and 0.066 s the outputs' arithmetic: the straddling interval's share 0.02-0.035 s (its
validity checks and the select of its start 0.003 s of that), the selects of the trail's prefix
between the pair 0.009 s, _ratio's two divides 0.005 s. Twice the floor (0.133 s) would need that
arithmetic halved. The same split on an AMD EPYC (Zen 3, 2 vCPUs, 2026-12-06; outputs written
before, best of 15-25 calls alternated with each variant): five windows 0.129-0.144 s, of which
the lead 0.019 s (0.013 for one window: its terms 0.007, its scan 0.008), each window's span
control 0.004 s (the 30-day window's trail lead 0.011 s more) and each window's outputs 0.015-0.017
s, about 10 cycles an output where llvm-mca's Zen 3 model gives 6.5 (the divider's pipe bound).
Measured and not kept that day, each within the noise (+-5 %): the outputs with no divide at all
(made multiplies, to measure); the straddling interval's numerator and denominator per ns kept in
the ring's free columns (its divide, its loads of both energies and the interval's first time
gone: maxrel 4e-16 to this path); the first start outside its pair found by 8, 16 or 32 outputs
at a time (not a scan of all, then one by one); spans of 512. Writing the outputs to 32 KiB (not
their arrays) saved 5 % at most; not loading the trail's prefixes 8 %, the straddling interval's
energies 10 % (with the selects that depend on them). In `bench kernels` there: 0.181 s against
an io floor of 0.077 s (2.35x), its fresh pages 0.0445 s.
Earlier measurements: without its three
divides an output is 10 % faster at most, and finding all the windows' starts
first, then the outputs through gathers of the ring is 20-30 % slower. The times are
checked (strictly increasing) in the same pass. Indices known to be >= 0 are
unsigned, so no code for negative ones runs in the loops.
On a regular grid (every interval the same length, every window a whole number of them:
the collector's call) the windows start on boundaries, and their outputs are computed four
at a time (see _grid_lead), with the same bits, in half the time.
Long series are cut into chunks that run in parallel, each starting
from exact sums (the first chunk a little longer: the others first run their
lead over the longest window); the cut depends on the series and the windows,
never on the number of threads, so neither do the results' last bits.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numba import njit, prange
from numba.core import compiler as _compiler
from numba.core import config as _config
from numba.core import types as _nt
from numba.core.errors import NumbaPerformanceWarning
from numba.extending import intrinsic
from llvmlite import ir as _ir

from puewatch.kernels import _validate as v


class RollingRatio(NamedTuple):
    ratio: np.ndarray  # float64 (n_windows, n): sum(num) / sum(den) over the window; NaN when unknown
    coverage: np.ndarray  # float64 (n_windows, n): share of the window where both were valid


_u = v.uindex  # an index known to be >= 0 (see _validate.uindex)


# Integers below 2**52 (ns: 52 days) become floats in two instructions (see _f52).
_F52_LIMIT = 1 << 52
# The shortest interval of none (see _terms).
_NO_SHORTEST = 1 << 62


@intrinsic
def _f52_ir(typingctx, x):  # pragma: no cover (compiled code only)
    # float(x) for 0 <= x < 2**52, exact: the bits of 2**52 + x are those of 2**52 with x in the
    # mantissa (an OR), less 2**52. Two instructions, four lanes at a time in AVX2, where a
    # uint64's conversion takes six and an int64's is a scalar instruction per lane. Outside
    # that range the result is wrong (finite): callers check the range first.
    sig = _nt.float64(_nt.int64)

    def codegen(context, builder, signature, args):
        bits = builder.or_(args[0], _ir.Constant(_ir.IntType(64), 0x4330000000000000))
        return builder.fsub(builder.bitcast(bits, _ir.DoubleType()), _ir.Constant(_ir.DoubleType(), float(_F52_LIMIT)))

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _f52_py(x):
    return float(x)


# Without the JIT (the no-JIT test run), the same value in Python.
_f52 = _f52_py if _config.DISABLE_JIT else _f52_ir


@intrinsic
def _bits_ir(typingctx, x):  # pragma: no cover (compiled code only)
    # A float64's bits as an int64 (a bitcast): for floats >= +0.0 (sign bit clear) the integers
    # are in the floats' order, and their max and or reduce four at a time (see _terms), where
    # max of floats, which must mind NaN, is a scalar loop.
    sig = _nt.int64(_nt.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.IntType(64))

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _bits_py(x):
    return np.float64(x).view(np.int64)


# Without the JIT (the no-JIT test run), the same value through NumPy.
_bits = _bits_py if _config.DISABLE_JIT else _bits_ir


@njit(cache=True, nogil=True, inline="always")
def _tofloat(x, small):
    # An integer >= 0 as a float: through _f52 where the caller knows it is below 2**52 (small),
    # else through uint64.
    return _f52(x) if small else float(_u(x))


def _dd_scan_codegen(sums: int, fast: bool):  # pragma: no cover (compiled code only)
    """LLVM IR for _dd_scan2 (two sums and ring_ns), _dd_scan2f (the same by Fast2Sum) and
    _dd_scan3 (three sums): the loop of _scan_py with the sums' hi parts in the lanes of one
    vector register and their lo parts in another, kept there from row to row. Each lane does
    the operations of _dd_add (of _fast_add where `fast`) in the same order (IEEE adds, one
    rounding each), so the bits are _scan_py's; seven vector adds a row (four by Fast2Sum) where
    7 x `sums` scalar ones ran. Numba does not pair the scalar adds itself (its SLP vectoriser is
    off), and the scalar lead was bound by its adds and its instruction count; the vector one,
    by its stores and the latency of its adds. Two sums go four rows at a time: each column's
    terms of four rows in one vector load, the rows summed one after another as one row is,
    and each column's four prefixes in one vector store (transposed in registers), not a
    scalar store a sum and a row."""

    def codegen(context, builder, signature, args):
        from numba.core import cgutils

        with_ns = sums == 2  # without input coverage the covered time is ns, in ring_ns
        width = 4 if sums > 2 else 2
        vt = _ir.VectorType(_ir.DoubleType(), width)
        lane = [_ir.Constant(_ir.IntType(32), k) for k in range(width)]
        ring_ty = signature.args[0]
        ring = context.make_array(ring_ty)(context, builder, args[0])
        at = 2 if with_ns else 1
        start = context.cast(builder, args[at], signature.args[at], _nt.intp)
        count = context.cast(builder, args[at + 1], signature.args[at + 1], _nt.intp)
        first = args[at + 2:at + 2 + 2 * sums]

        def const(k):
            return context.get_constant(_nt.intp, k)

        def pack(values):
            v = _ir.Constant(vt, [0.0] * width)
            for k, e in enumerate(values):
                v = builder.insert_element(v, e, lane[k])
            return v

        def add(hi, lo, x):
            # (hi, lo) += x, lane by lane: _dd_add (TwoSum) or _fast_add (Fast2Sum).
            s = builder.fadd(hi, x)
            bp = builder.fsub(s, hi)
            if fast:
                return s, builder.fadd(lo, builder.fsub(x, bp))
            return s, builder.fadd(lo, builder.fadd(builder.fsub(hi, builder.fsub(s, bp)), builder.fsub(x, bp)))

        def item(c, r):
            return cgutils.get_item_pointer(context, builder, ring_ty, ring, [const(c), r])

        def add_ns(r):
            p = cgutils.get_item_pointer(context, builder, ns_ty, ring_ns, [r])
            acc = builder.add(builder.load(ns_p), builder.load(p))
            builder.store(acc, p)
            builder.store(acc, ns_p)

        hi_p = cgutils.alloca_once_value(builder, pack(first[0::2]))
        lo_p = cgutils.alloca_once_value(builder, pack(first[1::2]))
        if with_ns:
            ns_ty = signature.args[1]
            ring_ns = context.make_array(ns_ty)(context, builder, args[1])
            ns_p = cgutils.alloca_once_value(builder, args[-1])
        if sums == 2:
            v4 = _ir.VectorType(_ir.DoubleType(), 4)

            def mask(*lanes):
                return _ir.Constant(_ir.VectorType(_ir.IntType(32), len(lanes)), list(lanes))

            quads = builder.sdiv(count, const(4))
            with cgutils.for_range(builder, quads) as loop:
                r = builder.add(start, builder.mul(loop.index, const(4)))
                ptr = [builder.bitcast(item(c, r), v4.as_pointer()) for c in range(4)]
                xs = builder.load(ptr[0], align=8)
                ys = builder.load(ptr[2], align=8)
                hi = builder.load(hi_p)
                lo = builder.load(lo_p)
                his = []
                los = []
                for q in range(4):
                    hi, lo = add(hi, lo, builder.shuffle_vector(xs, ys, mask(q, 4 + q)))
                    his.append(hi)
                    los.append(lo)
                builder.store(hi, hi_p)
                builder.store(lo, lo_p)
                for parts, c in ((his, 0), (los, 1)):
                    # rows 0, 1 and 2, 3 side by side, then the first sum's lanes and the second's
                    r01 = builder.shuffle_vector(parts[0], parts[1], mask(0, 1, 2, 3))
                    r23 = builder.shuffle_vector(parts[2], parts[3], mask(0, 1, 2, 3))
                    builder.store(builder.shuffle_vector(r01, r23, mask(0, 2, 4, 6)), ptr[c], align=8)
                    builder.store(builder.shuffle_vector(r01, r23, mask(1, 3, 5, 7)), ptr[c + 2], align=8)
                for q in range(4):
                    add_ns(builder.add(r, const(q)))
            done = builder.mul(quads, const(4))
            start = builder.add(start, done)
            count = builder.sub(count, done)
        with cgutils.for_range(builder, count) as loop:
            r = builder.add(start, loop.index)
            ptr = [item(c, r) for c in range(2 * sums)]
            s, lo = add(builder.load(hi_p), builder.load(lo_p), pack([builder.load(ptr[2 * k]) for k in range(sums)]))
            for k in range(sums):
                builder.store(builder.extract_element(s, lane[k]), ptr[2 * k])
                builder.store(builder.extract_element(lo, lane[k]), ptr[2 * k + 1])
            builder.store(s, hi_p)
            builder.store(lo, lo_p)
            if with_ns:
                add_ns(r)
        hi = builder.load(hi_p)
        lo = builder.load(lo_p)
        out = []
        for k in range(sums):
            out += [builder.extract_element(hi, lane[k]), builder.extract_element(lo, lane[k])]
        if with_ns:
            out.append(builder.load(ns_p))
        return context.make_tuple(builder, signature.return_type, out)

    return codegen


@intrinsic
def _dd_scan3(typingctx, ring, r0, count, a_h, a_l, b_h, b_l, c_h, c_l):  # pragma: no cover (compiled code only)
    f = _nt.float64
    return _nt.UniTuple(f, 6)(ring, r0, count, f, f, f, f, f, f), _dd_scan_codegen(3, False)


@intrinsic
def _dd_scan2(typingctx, ring, ring_ns, r0, count, a_h, a_l, b_h, b_l, ns):  # pragma: no cover (compiled code only)
    f = _nt.float64
    i = _nt.int64
    return _nt.Tuple((f, f, f, f, i))(ring, ring_ns, r0, count, f, f, f, f, i), _dd_scan_codegen(2, False)


@intrinsic
def _dd_scan2f(typingctx, ring, ring_ns, r0, count, a_h, a_l, b_h, b_l, ns):  # pragma: no cover (compiled code only)
    f = _nt.float64
    i = _nt.int64
    return _nt.Tuple((f, f, f, f, i))(ring, ring_ns, r0, count, f, f, f, f, i), _dd_scan_codegen(2, True)


@njit(cache=True, nogil=True, inline="always")
def _dd_add(hi, lo, x):
    # Double-double accumulate: (hi, lo) += x with Knuth's TwoSum; hi + lo keeps
    # every bit of the running sum that a double pair can.
    s = hi + x
    bp = s - hi
    return s, lo + ((hi - (s - bp)) + (x - bp))


@njit(cache=True, nogil=True, inline="always")
def _fast_add(hi, lo, x):
    # _dd_add by Dekker's Fast2Sum, which is exact where |hi| >= |x|: then s - hi is exact and so
    # is x - (s - hi), the rounding error of s, as TwoSum's is; both are that one real number, so
    # the same bits (+0.0 where it is zero, as TwoSum's: x is never -0.0 here, see _fast).
    # Three adds deep, not five: the lead's scan, latency-bound, runs faster (see _lead_rows).
    s = hi + x
    return s, lo + (x - (s - hi))


# Running sums below this take Fast2Sum (see _fast): a run (at most 2**19 terms, each no larger
# than the sum it starts from) then never overflows, where Fast2Sum's rounding error and TwoSum's
# would differ (-inf against NaN).
_FAST_LIMIT = 2.0**1000


@njit(cache=True, nogil=True, inline="always")
def _fast(s, signs, top_a, top_b):
    # Whether every step of a run of terms may add by _fast_add with the bits of _dd_add: no
    # term is negative or -0.0 (signs, the or of their bits, has no sign bit), and the running
    # sums s start in [0, _FAST_LIMIT) and >= each sum's largest term (top_a, top_b: the largest
    # bits, in the floats' order for floats >= +0.0). Then each hi only grows (adding x >= 0
    # never lowers a rounded sum), so |hi| >= x at every step. Energies (>= 0) pass after a run
    # or two of a series; a negative or oversized term sends its run to TwoSum.
    return (signs >= 0 and 0.0 <= s[0] < _FAST_LIMIT and 0.0 <= s[2] < _FAST_LIMIT and top_a <= _bits(s[0])
            and top_b <= _bits(s[2]))


@njit(cache=True, nogil=True)
def _window_start(t, i, window):
    ws = t[i + 1] - window
    lo = 0
    hi = i + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if t[mid] < ws:
            lo = mid + 1
        else:
            hi = mid
    return lo


# Columns of the ring (contiguous, so that a span of outputs reads each with vector loads): row
# k holds the prefix P_k, the running sum through interval k - 1 (numerator, denominator and,
# with input coverage, covered time, each hi and lo; without, the covered ns go to ring_ns).
_RING_COLS = 6


@njit(cache=True, nogil=True, inline="always")
def _put(t, a, b, ca, cb, has_cov, ring, ring_ns, k, s):
    # Running sum s (see _values), the prefix P_k, into ring row k.
    r = k & (ring.shape[1] - 1)
    ring[0, r] = s[0]
    ring[1, r] = s[1]
    ring[2, r] = s[2]
    ring[3, r] = s[3]
    if has_cov:
        ring[4, r] = s[4]
        ring[5, r] = s[5]
    else:
        ring_ns[r] = s[6]


@njit(cache=True, nogil=True, inline="always")
def _get(ring, ring_ns, k):
    r = _u(k & (ring.shape[1] - 1))
    return ring[0, r], ring[1, r], ring[2, r], ring[3, r], ring[4, r], ring[5, r], ring_ns[r]


@njit(cache=True, nogil=True, inline="always")
def _start(t, a, b, ca, cb, has_cov, windows, longest_first, i0, ring, ring_ns, trails, trails_ns, los):
    # Exact start-up sums for a chunk beginning at interval i0: the lead runs from the longest
    # window's start to i0, leaving its last prefixes in the ring, and each window's trail is
    # the lead as it passed that window's start (longest first, so starts ascend). A start
    # never passes i0: interval i0 and later are added by the blocks.
    for w in range(windows.shape[0]):
        los[w] = min(_window_start(t, i0, windows[w]), i0)
    lead = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    k = los[longest_first[0]]
    for w in longest_first:
        lead = _lead_to(t, a, b, ca, cb, has_cov, ring, ring_ns, k, los[w], lead)
        k = los[w]
        _keep_trail(trails, trails_ns, w, lead)
    lead = _lead_to(t, a, b, ca, cb, has_cov, ring, ring_ns, k, i0, lead)
    _put(t, a, b, ca, cb, has_cov, ring, ring_ns, i0, lead)
    return lead


@njit(cache=True, nogil=True, inline="always")
def _lead_to(t, a, b, ca, cb, has_cov, ring, ring_ns, k0, k1, lead):
    # The start-up lead plus intervals [k0, k1), as the blocks' lead adds them (see _lead_rows),
    # its prefixes left in the ring (those of the last ring's length of rows stay). As fast as a
    # scalar walk that kept none (2026-12-05), which the ring's rows then needed besides.
    if k0 < k1:
        _put(t, a, b, ca, cb, has_cov, ring, ring_ns, k0, lead)
        a_h, a_l, b_h, b_l, c_h, c_l, ns, _ = _lead_block(t, a, b, ca, cb, has_cov, ring, ring_ns, k0, k1, lead, -1)
        lead = (a_h, a_l, b_h, b_l, c_h, c_l, ns)
    return lead


@njit(cache=True, nogil=True, inline="always")
def _keep_trail(trails, trails_ns, w, s):
    trails[w, 0] = s[0]
    trails[w, 1] = s[1]
    trails[w, 2] = s[2]
    trails[w, 3] = s[3]
    trails[w, 4] = s[4]
    trails[w, 5] = s[5]
    trails_ns[w] = s[6]


@njit(cache=True, nogil=True, inline="always")
def _values(a, b, ca, cb, has_cov, k):
    # Interval k (k >= 0) as the sums count it: numerator, denominator and coverage weight, all
    # 0 where it is not valid. A running sum s is a tuple (numerator hi, lo, denominator hi, lo,
    # covered time hi, lo, covered ns): the double-double sums of the numerators, denominators
    # and (with input coverage) coverage weight x interval length, or (without) the covered ns,
    # an integer: the lengths of the valid intervals. An interval that is not valid adds zeros,
    # which leave a double-double sum as it was (its parts are never -0.0).
    # Selects, not branches: the compiler keeps the loops that call it free of jumps.
    x = a[_u(k)]
    y = b[_u(k)]
    ok = (abs(x) < np.inf) & (abs(y) < np.inf)
    w = min(ca[_u(k)], cb[_u(k)]) if has_cov else 1.0
    return (x if ok else 0.0), (y if ok else 0.0), (w if ok else 0.0)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _terms(t, a, b, ca, cb, has_cov, ring, ring_ns, r0, k0, count):
    # Ring rows r0 .. r0 + count - 1 (no wrap) get the terms of intervals k0 .. k0 + count - 1
    # as the lead adds them (see _values): numerator in column 0, denominator in 2, covered time in
    # 4 (with input coverage) or ring_ns, for _scan to sum in place. Returns the shortest and the
    # longest interval's length (the checks of times) and, without input coverage, the terms'
    # signs and largest numerator and denominator (see _fast; with it, signs -1: no fast sums,
    # which measured no faster there). No branch: four intervals at a time.
    shortest = _NO_SHORTEST
    longest = -_NO_SHORTEST
    signs = -1 if has_cov else 0
    top_a = 0
    top_b = 0
    for j in range(count):
        k = _u(k0 + j)
        dt = t[_u(k0 + j + 1)] - t[k]
        shortest = min(shortest, dt)
        longest = max(longest, dt)
        x, y, w = _values(a, b, ca, cb, has_cov, k)
        r = _u(r0 + j)
        ring[0, r] = x
        ring[2, r] = y
        if has_cov:
            # As uint64, which converts four at a time: dt > 0 where the result is kept (a call
            # whose times do not increase fails).
            ring[4, r] = w * float(_u(dt))
        else:
            ring_ns[r] = dt if w > 0.0 else 0
            bx = _bits(x)
            by = _bits(y)
            signs |= bx | by
            top_a = max(top_a, bx)
            top_b = max(top_b, by)
    return shortest, longest, signs, top_a, top_b


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _scan_py(has_cov, ring, ring_ns, r0, count, s, fast):
    # The running sums s (see _values) through ring rows r0 .. r0 + count - 1 (no wrap), over the
    # terms _terms left there, in place: each row then holds its prefix. By Fast2Sum where `fast`
    # (see _fast: the same bits). The loop that compiled code runs with the sums side by side in
    # vector registers (see _dd_scan_codegen).
    a_h, a_l, b_h, b_l, c_h, c_l, ns = s
    for j in range(count):
        r = _u(r0 + j)
        if fast:
            a_h, a_l = _fast_add(a_h, a_l, ring[0, r])
            b_h, b_l = _fast_add(b_h, b_l, ring[2, r])
        else:
            a_h, a_l = _dd_add(a_h, a_l, ring[0, r])
            b_h, b_l = _dd_add(b_h, b_l, ring[2, r])
        ring[0, r] = a_h
        ring[1, r] = a_l
        ring[2, r] = b_h
        ring[3, r] = b_l
        if has_cov:
            c_h, c_l = _dd_add(c_h, c_l, ring[4, r])
            ring[4, r] = c_h
            ring[5, r] = c_l
        else:
            ns += ring_ns[r]
            ring_ns[r] = ns
    return a_h, a_l, b_h, b_l, c_h, c_l, ns


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _scan_vector(has_cov, ring, ring_ns, r0, count, s, fast):  # pragma: no cover (compiled code only)
    a_h, a_l, b_h, b_l, c_h, c_l, ns = s
    if has_cov:
        a_h, a_l, b_h, b_l, c_h, c_l = _dd_scan3(ring, r0, count, a_h, a_l, b_h, b_l, c_h, c_l)
    elif fast:
        a_h, a_l, b_h, b_l, ns = _dd_scan2f(ring, ring_ns, r0, count, a_h, a_l, b_h, b_l, ns)
    else:
        a_h, a_l, b_h, b_l, ns = _dd_scan2(ring, ring_ns, r0, count, a_h, a_l, b_h, b_l, ns)
    return a_h, a_l, b_h, b_l, c_h, c_l, ns


# Compiled, the vector loops; without the JIT (the no-JIT test run), the Python one, with the
# same bits.
_scan = _scan_py if _config.DISABLE_JIT else _scan_vector


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _lead_rows(t, a, b, ca, cb, has_cov, ring, ring_ns, k0, k1, s):
    # The running sum s (see _values) through intervals [k0, k1), each interval read once, into
    # ring rows k0 + 1 .. k1 (columns: numerator hi, lo, denominator hi, lo, covered hi, lo with
    # input coverage; ring_ns: covered ns without), in runs of rows that do not wrap the ring:
    # the terms four at a time, then the sums over them (by Fast2Sum where a run's terms allow it:
    # see _fast). Returns the sums, and the shortest and longest interval. Against one loop that
    # read, checked and summed each interval: one window 3-4 % faster, the grid's call 5-8 %
    # (2026-12-05).
    m = ring_ns.shape[0] - 1
    shortest = _NO_SHORTEST
    longest = -_NO_SHORTEST
    k = k0
    while k < k1:
        r0 = (k + 1) & m
        count = min(k1 - k, m + 1 - r0)
        lo, hi, signs, top_a, top_b = _terms(t, a, b, ca, cb, has_cov, ring, ring_ns, r0, k, count)
        shortest = min(shortest, lo)
        longest = max(longest, hi)
        s = _scan(has_cov, ring, ring_ns, r0, count, s, _fast(s, signs, top_a, top_b))
        k += count
    a_h, a_l, b_h, b_l, c_h, c_l, ns = s
    return a_h, a_l, b_h, b_l, c_h, c_l, ns, shortest, longest


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _lead_block(t, a, b, ca, cb, has_cov, ring, ring_ns, b0, b1, lead, bad):
    # The lead through the block's intervals [b0, b1) (see _lead_rows), and the first i whose
    # interval is not positive into bad. One flat tuple back: Numba's array analysis rejects a
    # tuple nested in an inlined result.
    a_h, a_l, b_h, b_l, c_h, c_l, ns, shortest, _ = _lead_rows(t, a, b, ca, cb, has_cov, ring, ring_ns, b0, b1, lead)
    if shortest <= 0 and bad < 0:  # the first interval that is not positive: found again, once
        for i in range(b0, b1):
            if t[_u(i + 1)] <= t[_u(i)]:
                bad = i + 1
                break
    return a_h, a_l, b_h, b_l, c_h, c_l, ns, bad


@njit(cache=True, nogil=True, inline="always")
def _advance(t, lo, ws):
    # A window's start: the first boundary at or after ws, from lo on; and its time.
    tl = t[_u(lo)]
    while tl < ws:
        lo += 1
        tl = t[_u(lo)]
    return lo, tl


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _ratio(sa, sb, covered, window_f, min_coverage):
    # A window's coverage and ratio from its sums, the one rule of every path: the ratio is NaN
    # where the coverage is below min_coverage, the denominator not positive or the result not
    # finite. A divide, not a multiply by 1 / window: a share that is exact (e.g. 0.25 of a
    # window, the threshold itself) must come out exact. Selects, no branch: vectorised loops
    # call it.
    cov = covered / window_f
    r = sa / sb if sb > 0.0 else np.nan
    ok = (abs(r) < np.inf) & (cov >= min_coverage)
    return cov, (r if ok else np.nan)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _early_out(has_cov, ring, ring_ns, tring, tring_ns, lr, window_f, min_coverage):
    # A window that starts before the series (at boundary 0, the first chunk's first outputs):
    # lead row lr, P_{i+1}, less P_0 (trail row 0), which no interval straddles. Returns its
    # coverage and ratio.
    sa = (ring[0, lr] - tring[0, 0]) + (ring[1, lr] - tring[1, 0])
    sb = (ring[2, lr] - tring[2, 0]) + (ring[3, lr] - tring[3, 0])
    if has_cov:
        covered = (ring[4, lr] - tring[4, 0]) + (ring[5, lr] - tring[5, 0])
    else:
        covered = float(ring_ns[lr] - tring_ns[0])
    return _ratio(sa, sb, covered, window_f, min_coverage)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _pair_out(t, a, b, ca, cb, has_cov, ring, ring_ns, tring, tring_ns, lr, tr, c, i, count, window, window_f,
              min_coverage, small, edge, o0, o1):
    # Outputs i .. i + count - 1 of one window, output i + j's start known to be c + j or c + j + 1
    # (c > 0; see _pair_misses): lead rows lr + j against trail rows tr + j or tr + j + 1 (of the
    # trail's ring: the lead's, or the window's own, see _ring_spans), no row wrapping its ring;
    # or (edge, a compile-time constant) one output whose start is c, where the pair's upper row
    # would wrap the trail's ring or pass the series' end: that candidate's indices wrap the ring
    # and stop at the series' last boundary and interval, and it is never the one taken (t[c] is at
    # or after the start).
    # Each output picks its start by one compare of times, and the trail's prefix and the
    # straddling interval's terms by selects. No branch: the compiler runs it four outputs at a
    # time.
    # Integers become floats through _f52 where every one of the span is below 2**52 (small: the
    # window and the span's boundaries are), else through uint64 (each is >= 0 where it is kept:
    # covered time, an overlap, the length of an interval of increasing times; the same value
    # either way). AVX2 converts four at a time in two instructions (_f52) or six (uint64), where
    # int64 costs a scalar instruction each (two windows took 15 % longer with them); _f52 made
    # the loop 99 instructions for four outputs, from 113, and the kernel 4-7 % faster. The test of
    # small stays in the loop, a branch taken the same way for a whole span (two copies inlined, one
    # for each, measured 3-8 % slower on Zen 3, 2026-12-06).
    for j in range(count):
        lj = _u(lr + j)
        t0 = _u(tr + j)
        t1 = _u((tr + j + 1) & (tring_ns.shape[0] - 1)) if edge else _u(tr + j + 1)
        km = _u(c + j - 1)  # indices computed as int64, then cast: uint64 - 1 is a float64
        k = _u(c + j)
        kn = _u(min(c + j + 1, t.shape[0] - 1)) if edge else _u(c + j + 1)
        kx = _u(min(c + j, a.shape[0] - 1)) if edge else k  # the upper start's interval
        ws = t[_u(i + 1 + j)] - window
        tm = t[km]
        tk = t[k]
        tn = t[kn]
        up = tk < ws  # the start is c + j + 1
        tl = tn if up else tk
        tp = tk if up else tm
        # Both candidates are loaded, then one is selected: loads under a condition would keep
        # their branches.
        r0, q0 = tring[0, t0], tring[0, t1]
        r1, q1 = tring[1, t0], tring[1, t1]
        r2, q2 = tring[2, t0], tring[2, t1]
        r3, q3 = tring[3, t0], tring[3, t1]
        sa = (ring[0, lj] - (q0 if up else r0)) + (ring[1, lj] - (q1 if up else r1))
        sb = (ring[2, lj] - (q2 if up else r2)) + (ring[3, lj] - (q3 if up else r3))
        if has_cov:
            r4, q4 = tring[4, t0], tring[4, t1]
            r5, q5 = tring[5, t0], tring[5, t1]
            covered = (ring[4, lj] - (q4 if up else r4)) + (ring[5, lj] - (q5 if up else r5))
        else:
            # The differences are selected, not the loads: a select of two loads becomes a load
            # through a selected index, four scalar loads for four outputs.
            d0 = ring_ns[lj] - tring_ns[t0]
            d1 = ring_ns[lj] - tring_ns[t1]
            covered = _tofloat(d1 if up else d0, small)
        overlap = tl - ws
        overlap_f = _tofloat(overlap, small)
        # Where the times are not increasing (the call then fails), the candidate not taken may
        # be an empty interval: a float64 divide, which gives inf or NaN there, not a Python
        # float's, which would raise without the JIT (compiled, the two are the same).
        frac = np.float64(overlap_f) / _tofloat(tl - tp, small)
        xm, xk = a[km], a[kx]
        ym, yk = b[km], b[kx]
        x = xk if up else xm
        y = yk if up else ym
        ok = (abs(x) < np.inf) & (abs(y) < np.inf)
        if has_cov:
            wm = min(ca[km], cb[km])
            wk = min(ca[kx], cb[kx])
            pw = wk if up else wm
        else:
            pw = 1.0
        px = x if ok else 0.0
        py = y if ok else 0.0
        pw = pw if ok else 0.0
        # Added whether or not the interval overlaps the window (it counts only where it does),
        # with the same bits: where it does not, overlap and frac are +0.0, so the terms are
        # +-0.0 (px, py finite; pw >= 0), and adding one leaves a sum that is not -0.0 as it was
        # (a prefix's parts are never -0.0, nor are their differences). Selected by the overlap,
        # the terms' loads were sunk under it, then made masked loads, four an output (five
        # windows 5 % slower, 2026-12-05).
        sa = sa + px * frac
        sb = sb + py * frac
        covered = covered + pw * overlap_f
        o1[_u(i + j)], o0[_u(i + j)] = _ratio(sa, sb, covered, window_f, min_coverage)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _in_pair(t, c, i, j, window):
    # Whether output i + j's window starts at boundary c + j or c + j + 1 (see _pair_out): its
    # start time lies in (t[c + j - 1], t[c + j + 1]].
    ws = t[_u(i + 1 + j)] - window
    return (t[_u(c + j - 1)] < ws) & (ws <= t[_u(c + j + 1)])


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _pair_misses(t, c, i, count, window):
    # How many of outputs i .. i + count - 1 have a start that is not c + j or c + j + 1 (see
    # _pair_out): a loop of integer compares alone, four outputs at a time, before the outputs
    # are computed. In _pair_out's loop, the count took registers that its other values then
    # kept on the stack (one window 6 % and five 6-9 % slower, 2026-12-05).
    misses = 0
    for j in range(count):
        misses += not _in_pair(t, c, i, j, window)
    return misses


# Outputs a span computes at most: where a start leaves its pair, the rest of the span is
# computed again (32 and 256 measured no faster).
_SPAN = 128


class _NoAlias(_compiler.Compiler):
    """Numba's compiler, with every pointer argument of the function marked `noalias` (Numba's own
    `noalias` flag, which its parallel loops set where they find no aliases): the function then tells
    LLVM that memory one argument writes is reached through no other argument while it runs. Without it,
    every span's loop began with run-time checks that its outputs overlap none of its inputs (half the
    function's branches). Sound only for a function whose arrays written during a call
    are none of its other arguments in that call (see _ring_spans)."""

    def define_pipelines(self):  # pragma: no cover (the JIT's compile only)
        self.state.flags.noalias = True
        return super().define_pipelines()


@njit(cache=True, nogil=True, error_model="numpy", _nrt=False, pipeline_class=_NoAlias)
def _ring_spans(t, a, b, ca, cb, has_cov, ring, ring_ns, tring, tring_ns, own, trails, trails_ns, tks, w, window,
                window_f, min_coverage, lo, b0, b1, o0, o1):
    # One window over the block's outputs [b0, b1). Its lead rows are the lead's ring's; its trail
    # (the prefix P_lo at its start lo) is read from the lead's ring while the start is in it (own
    # false: tring is ring), else from the window's own ring (own true), which a lead of its own,
    # the trail lead, fills ahead of the start: the same additions in the same order from P_lo,
    # so the same prefixes, where the lead's ring would have to hold the whole window (a 30-day
    # window's trail was walked in registers, one output at a time: 0.068 s alone, 0.055 with its
    # own ring; 2026-12-05). Output i's start is lo_i; each next output's is
    # most often one boundary further, sometimes two or none. A span of outputs is computed taking
    # each output's start to be one of a pair, c + j or c + j + 1 (c: the first output's start),
    # which covers hundreds of outputs on jittered polls (see _pair_out); the span ends before
    # the first output whose start is not in its pair (found with integers first, see
    # _pair_misses), and the next span begins there. Windows starting before the series (lo 0)
    # take _early_out. Leaves the trail's running sum in trails[w], trails_ns[w] and its position
    # in tks[w] (P_lo at lo, for the window's own ring to start from). Returns the window's start
    # lo for the last output. Compiled on its own, not inlined, with _pair_out inlined in it: a
    # call a block, not a span, passes its dozens of arguments (6 % of five windows' time as a
    # call a span), and with fewer values live around it than in _chunk the span loop keeps more
    # in registers (one window 3 % and five 4 % faster, 2026-12-05). Compiled with its arguments
    # noalias (see _NoAlias): the arrays it writes (o0, o1, trails, trails_ns, tks, and with `own`
    # tring, tring_ns) are each an allocation of their own; without `own`, tring is ring and tring_ns
    # ring_ns, which it then only reads; ca and cb may be one array, read only. Five windows 8-10 %
    # faster, the same bits (AMD EPYC Zen 3, 2026-12-06: 0.129-0.160 s to 0.115-0.147, outputs
    # written before, best of 20 calls alternated).
    m = ring_ns.shape[0] - 1
    mt = tring_ns.shape[0] - 1
    n = t.shape[0] - 1
    tk = tks[w]
    if own:
        s = (trails[w, 0], trails[w, 1], trails[w, 2], trails[w, 3], trails[w, 4], trails[w, 5], trails_ns[w])
        if tk == lo:  # from the lead's ring: the window's own starts at P_lo
            _put(t, a, b, ca, cb, has_cov, tring, tring_ns, lo, s)
    i = b0
    while i < b1:
        ws = t[_u(i + 1)] - window
        lo, tl = _advance(t, lo, ws)
        if lo == 0:
            # Outputs i .. i + count - 1 start before the series: lead rows against row 0, P_0.
            lr = (i + 1) & m
            count = 1
            while count < min(b1 - i, m + 1 - lr) and t[_u(i + 1 + count)] - window <= t[0]:
                count += 1
            for j in range(count):
                o1[_u(i + j)], o0[_u(i + j)] = _early_out(has_cov, ring, ring_ns, tring, tring_ns, _u(lr + j), window_f,
                                                          min_coverage)
            i += count
            continue
        if own and tk - lo <= _SPAN and tk < n:
            # The trail lead on to lo + mt (or the series' end): its ring then holds rows lo .. k1.
            k1 = min(n, lo + mt)
            a_h, a_l, b_h, b_l, c_h, c_l, ns, _, _ = _lead_rows(t, a, b, ca, cb, has_cov, tring, tring_ns, tk, k1, s)
            s = (a_h, a_l, b_h, b_l, c_h, c_l, ns)
            tk = k1
        lr = (i + 1) & m
        tr = lo & mt
        # Rows lr .. lr + count - 1 and tr .. tr + count, boundaries up to lo + count. In the
        # window's own ring those rows are filled: up to tk, more than a span ahead of lo, or up to
        # the ring's end or the series' (lo + mt and n), which bound count too.
        count = min(b1 - i, _SPAN, m + 1 - lr, mt - tr, n - lo)
        if count < 1:
            _pair_out(t, a, b, ca, cb, has_cov, ring, ring_ns, tring, tring_ns, lr, tr, lo, i, 1, window, window_f,
                      min_coverage, False, True, o0, o1)
            i += 1
            continue
        # Every interval, overlap and covered time of the span is below 2**52 ns where the window
        # and the span's boundaries are: then the span's integers convert through _f52.
        # (The difference as uint64: times that decrease, or a difference past int64, give a
        # large one, and the uint64 path.)
        small = window < _F52_LIMIT and _u(t[_u(lo + count)] - t[_u(lo - 1)]) < _F52_LIMIT
        j = count
        if _pair_misses(t, lo, i, count, window):
            j = 1  # the first output's start is lo itself
            while j < count and _in_pair(t, lo, i, j, window):
                j += 1
        _pair_out(t, a, b, ca, cb, has_cov, ring, ring_ns, tring, tring_ns, lr, tr, lo, i, j, window, window_f,
                  min_coverage, small, False, o0, o1)
        # Output i + j - 1's start is lo + j - 1 or one more: the next output's is no earlier.
        lo += j - 1
        i += j
    lo, tl = _advance(t, lo, t[_u(b1)] - window)
    if own:
        tks[w] = tk
    else:
        tks[w] = lo
        s = _get(ring, ring_ns, lo)
    _keep_trail(trails, trails_ns, w, s)
    return lo


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _chunk(t, a, b, ca, cb, has_cov, windows, longest_first, min_coverage, i0, i1, block, out0, out1, ring, ring_ns,
           trails, trails_ns, los, trings, trings_ns, tks):
    # One chunk of the series, a block at a time. The lead runs once for every window and
    # leaves its running sums (the prefixes P_k) in a ring. A window's trail is the prefix at
    # its start, P_lo (the same additions in the same order, so a window of zeros is exactly
    # zero): read from the lead's ring while the window's start is still in it, otherwise (long
    # windows) from the window's own ring, which a trail lead of its own fills (see _ring_spans).
    # Returns the first i whose interval is not positive, or -1.
    nw = windows.shape[0]
    lead = _start(t, a, b, ca, cb, has_cov, windows, longest_first, i0, ring, ring_ns, trails, trails_ns, los)
    for w in range(nw):
        tks[w] = los[w]
    bad = -1
    for b0 in range(i0, i1, block):
        b1 = min(b0 + block, i1)
        a_h, a_l, b_h, b_l, c_h, c_l, ns, bad = _lead_block(t, a, b, ca, cb, has_cov, ring, ring_ns, b0, b1, lead, bad)
        lead = (a_h, a_l, b_h, b_l, c_h, c_l, ns)
        for w in range(nw):
            # The lead's ring holds rows (b1 - its rows, b1]: the trail's, where the start's row is one.
            own = los[w] <= b1 - ring.shape[1]
            los[w] = _ring_spans(t, a, b, ca, cb, has_cov, ring, ring_ns, trings[w] if own else ring,
                                 trings_ns[w] if own else ring_ns, own, trails, trails_ns, tks, w, windows[w],
                                 float(windows[w]), min_coverage, los[w], b0, b1, out0[w], out1[w])
    return bad


def _several(has_cov: bool):
    """Several windows' chunk, with or without input coverage (`has_cov`, a compile-time
    constant: closure variables are frozen by Numba, and they are part of its cache key).

    A function of its own, not inlined into the parallel loop: Numba compiles it once
    (inlined, the loop's whole body went through the parallel passes again; a cold compile of
    the collector's kernels on one core: 40 s, 25 s this way). It runs without reference
    counting (`_nrt=False`; the loop allocates its scratch), which otherwise counted every
    array handed to an inlined helper, inside the inner loops (3x slower), and through
    Numba's parallel pipeline although it has no prange (`parallel=True`): its IR passes
    give the code about the speed it had inlined (5 % slower without). One window takes it
    too: the spans (see _ring_spans) beat its lead and trail in registers.
    """

    @njit(cache=True, nogil=True, error_model="numpy", _nrt=False, parallel=True)
    def several(t, a, b, ca, cb, windows, longest_first, min_coverage, i0, i1, block, out0, out1, ring, ring_ns, trails,
                trails_ns, los, trings, trings_ns, tks):
        return _chunk(t, a, b, ca, cb, has_cov, windows, longest_first, min_coverage, i0, i1, block, out0, out1, ring,
                      ring_ns, trails, trails_ns, los, trings, trings_ns, tks)

    return several


# Module globals, not closure variables of `run`: Numba keys a closure's cache entries on
# its variables pickled, and a dispatcher pickles with an identifier new in every process,
# so a `run` closing over `several` missed its cache at every start (the collector compiled
# it again each time: 5 s on one core, with the GIL held).
_SEVERAL_COV = _several(True)
_SEVERAL_PLAIN = _several(False)


# ---------------------------------------------------------------------------
# Regular grids: every interval `step` long and every window a whole number of them, k
# intervals (the collector's call, on its 1 s grid after rebin_energy). A window then starts
# exactly on a boundary: its trail is the prefix k rows back, with no straddling interval, so
# its outputs need no search and no partial interval. The lead writes its prefixes into a
# ring whose columns are contiguous, and each window's outputs are one loop over two runs of
# rows, which the compiler vectorises: the same operations on the same prefixes as the
# general path (which reads the same additions in the same order from the same start), so
# the same bits (tested), in about half the time.


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _grid_lead(t, a, b, ca, cb, has_cov, step, ring, ring_ns, k0, k1, s):
    # The running sum s (see _values) through intervals [k0, k1), as _lead_block adds them (see
    # _lead_rows). Returns the sums and whether every interval was `step` long.
    a_h, a_l, b_h, b_l, c_h, c_l, ns, shortest, longest = _lead_rows(t, a, b, ca, cb, has_cov, ring, ring_ns, k0, k1, s)
    return (a_h, a_l, b_h, b_l, c_h, c_l, ns), k0 >= k1 or (shortest == step and longest == step)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _grid_out(has_cov, ring, ring_ns, lr, tr, trail_step, count, window_f, min_coverage, o0, o1, i):
    # Outputs i .. i + count - 1: lead rows lr, lr + 1, ... against trail rows tr, tr + trail_step, ...
    # (trail_step 1, or 0 while the window starts before the series: row 0); no run wraps the
    # ring. The operations of _ring_out with no straddling interval, which the compiler turns into
    # selects: no branch is left, and the loop runs four outputs at a time.
    for j in range(count):
        lj = _u(lr + j)
        tj = _u(tr + j * trail_step)
        sa = (ring[0, lj] - ring[0, tj]) + (ring[1, lj] - ring[1, tj])
        sb = (ring[2, lj] - ring[2, tj]) + (ring[3, lj] - ring[3, tj])
        if has_cov:
            covered = (ring[4, lj] - ring[4, tj]) + (ring[5, lj] - ring[5, tj])
        else:
            covered = float(ring_ns[lj] - ring_ns[tj])
        o1[_u(i + j)], o0[_u(i + j)] = _ratio(sa, sb, covered, window_f, min_coverage)


def _grid(has_cov: bool):
    """One chunk on a regular grid (see _grid_lead), with or without input coverage (a
    compile-time constant, as in _several). Returns False, and stops, at an interval that is not
    `step` long: the caller then takes the general path for the whole call."""

    @njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
    def grid(t, a, b, ca, cb, step, ks, windows_f, min_coverage, i0, i1, block, out0, out1, ring, ring_ns):
        m = ring_ns.shape[0] - 1
        # The lead starts where the general path's does: at the longest window's start, its
        # rows from there on kept (every window's trail is one of them).
        kmax = 0
        for k in ks:
            kmax = max(kmax, k)
        base = max(i0 + 1 - kmax, 0)
        s = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        r = _u(base & m)
        for c in range(6):
            ring[c, r] = 0.0
        ring_ns[r] = 0
        s, regular = _grid_lead(t, a, b, ca, cb, has_cov, step, ring, ring_ns, base, i0, s)
        if not regular:
            return False
        for b0 in range(i0, i1, block):
            b1 = min(b0 + block, i1)
            s, regular = _grid_lead(t, a, b, ca, cb, has_cov, step, ring, ring_ns, b0, b1, s)
            if not regular:
                return False
            for w in range(ks.shape[0]):
                k = ks[w]
                i = b0
                # Windows that start before the series: trail row 0, the series' start (first chunk).
                early = min(max(k - 1, b0), b1) - b0
                if early > 0:
                    _grid_out(has_cov, ring, ring_ns, (i + 1) & m, 0, 0, early, windows_f[w], min_coverage, out0[w],
                              out1[w], i)
                    i += early
                while i < b1:
                    lr = (i + 1) & m
                    tr = (i + 1 - k) & m
                    count = min(b1 - i, m + 1 - lr, m + 1 - tr)
                    _grid_out(has_cov, ring, ring_ns, lr, tr, 1, count, windows_f[w], min_coverage, out0[w], out1[w], i)
                    i += count
        return True

    return grid


_GRID_COV = _grid(True)
_GRID_PLAIN = _grid(False)


def _parallel(has_cov: bool):
    """The parallel loop over chunks, with or without input coverage.

    One compiled function per kind, each compiled on its first use only; `has_cov` is a
    compile-time constant inside each (closure variables are frozen by Numba, and they are
    part of its cache key: only plain values may be closed over, see _SEVERAL_COV). The
    other kind's branch is pruned at compile time.
    """

    @njit(cache=True, nogil=True, parallel=True, error_model="numpy")
    def run(t, a, b, ca, cb, windows, longest_first, min_coverage, cuts, block, ring_size, trail_rows, step, out0, out1,
            bad):
        nw = windows.shape[0]
        windows_f = windows.astype(np.float64)
        for ch in prange(cuts.shape[0] - 1):
            i0 = cuts[ch]
            i1 = cuts[ch + 1]
            bad[ch] = -1
            if i0 < i1:
                if step > 0:
                    ks = windows // step
                    if has_cov:
                        regular = _GRID_COV(t, a, b, ca, cb, step, ks, windows_f, min_coverage, i0, i1, block, out0,
                                            out1, np.empty((6, ring_size)), np.empty(ring_size, dtype=np.int64))
                    else:
                        regular = _GRID_PLAIN(t, a, b, ca, cb, step, ks, windows_f, min_coverage, i0, i1, block, out0,
                                              out1, np.empty((6, ring_size)), np.empty(ring_size, dtype=np.int64))
                    bad[ch] = -1 if regular else -2
                elif has_cov:
                    bad[ch] = _SEVERAL_COV(t, a, b, ca, cb, windows, longest_first, min_coverage, i0, i1, block, out0,
                                           out1, np.empty((_RING_COLS, ring_size)), np.empty(ring_size, dtype=np.int64),
                                           np.empty((nw, 6)), np.empty(nw, dtype=np.int64),
                                           np.empty(nw, dtype=np.int64), np.empty((nw, _RING_COLS, trail_rows)),
                                           np.empty((nw, trail_rows), dtype=np.int64), np.empty(nw, dtype=np.int64))
                else:
                    bad[ch] = _SEVERAL_PLAIN(t, a, b, ca, cb, windows, longest_first, min_coverage, i0, i1, block, out0,
                                             out1, np.empty((_RING_COLS, ring_size)), np.empty(ring_size, dtype=np.int64),
                                             np.empty((nw, 6)), np.empty(nw, dtype=np.int64),
                                             np.empty(nw, dtype=np.int64), np.empty((nw, _RING_COLS, trail_rows)),
                                             np.empty((nw, trail_rows), dtype=np.int64), np.empty(nw, dtype=np.int64))

    return run


# `several` takes the parallel pipeline for its passes alone (see _several): Numba's
# warning that it found nothing to run in parallel there is expected, and only there. The
# message may begin with terminal highlighting (ANSI codes, where Numba colours its messages).
warnings.filterwarnings("ignore", r"(?s).*The keyword argument 'parallel=True' was specified but no transformation",
                        NumbaPerformanceWarning, r".*kernels[/\\]rolling\Z")
_RUN = {has_cov: _parallel(has_cov) for has_cov in (False, True)}


# Intervals per block (the lead's ring rows of a block stay in L1/L2 while every window
# reads them).
_BLOCK = 1024
# Ring rows a chunk keeps at most (56 bytes each): windows up to this many intervals long
# read their trail from it; longer ones from a ring of their own (see _ring_spans; a larger ring
# leaves the caches).
_RING = 1 << 17
# Rows of a long window's own ring: a few spans' (see _ring_spans).
_TRAIL_ROWS = 1 << 12
# Intervals per chunk at least: starting threads costs more than a shorter series takes.
_MIN_CHUNK = 1 << 16
_MAX_CHUNKS = 64


def _n_chunks(t: np.ndarray, windows: np.ndarray) -> int:
    """Parallel chunks, set by the series and the windows alone (not the thread count), so
    the results' last bits do not depend on the number of threads: at most 64, a power of two
    (shared evenly among 2, 4, 8 ... threads), each no shorter than the longest window at the
    series' end (a chunk's start-up sums run over that many intervals)."""
    n = t.shape[0] - 1
    if n <= 0:
        return 1
    longest = n - _window_start(t, n - 1, int(windows.max()))
    c = min(_MAX_CHUNKS, n // max(_MIN_CHUNK, longest))
    return 1 << (max(c, 1).bit_length() - 1)


def _cuts(t: np.ndarray, windows: np.ndarray, n_chunks: int) -> np.ndarray:
    """The chunks' first intervals, and n: every chunk but the first starts by running its lead
    over the longest window, and runs that window's trail lead all along where the first
    chunk's stands still for one window length; the first chunk takes on a third of that span more
    (about what it costs the others, capped at one chunk), so that chunks take about as long as
    each other. Set by the series and the windows alone, as the count (see _n_chunks)."""
    n = t.shape[0] - 1
    longest = n - _window_start(t, n - 1, int(windows.max())) if n > 0 else 0
    head = min(longest // 3, n // n_chunks)
    cuts = head + np.arange(n_chunks + 1, dtype=np.int64) * (n - head) // n_chunks
    cuts[0] = 0
    return cuts


def _ring_size(t: np.ndarray, windows: np.ndarray) -> int:
    """Lead prefixes a chunk keeps: a power of two, more than a block (the windows read the
    block's lead from it), and room for the starts of the windows up to _RING intervals long
    (as long as they are at the series' end, and a quarter more for denser sampling earlier);
    no more, since every chunk writes all of its ring."""
    n = t.shape[0] - 1
    need = 0
    for window in windows:
        span = n - _window_start(t, n - 1, int(window)) if n > 0 else 0
        if span <= _RING:
            need = max(need, span + span // 4)
    return 1 << (need + int(_BLOCK)).bit_length()


def _grid_step(t: np.ndarray, windows: np.ndarray) -> int:
    """The interval length if the series may be a regular grid for these windows (see _grid_lead):
    the first interval's length, which the whole span is a whole number of, as every window is,
    with every window's trail inside the ring; else 0. The grid path checks every interval."""
    n = t.shape[0] - 1
    if n < 1:
        return 0
    step = int(t[1] - t[0])
    if step <= 0 or int(t[-1]) - int(t[0]) != n * step:
        return 0
    if np.any(windows % step) or int(windows.max()) // step > _RING:
        return 0
    return step


def _call(t, a, b, ca, cb, has_cov: bool, w, min_coverage: float, out0, out1) -> None:
    n_chunks = _n_chunks(t, w)
    bad = np.empty(n_chunks, dtype=np.int64)
    longest_first = np.ascontiguousarray(np.argsort(-w, kind="stable"))
    cuts = _cuts(t, w, n_chunks)
    step = _grid_step(t, w)
    if step:
        # Rows a chunk's grid ring keeps: the longest window's and a block's (a power of two).
        ring_size = 1 << (int(w.max()) // step + _BLOCK).bit_length()
        _RUN[has_cov](t, a, b, ca, cb, w, longest_first, min_coverage, cuts, _BLOCK, ring_size, _TRAIL_ROWS, step, out0,
                      out1, bad)
        if not np.any(bad == -2):
            return
    _RUN[has_cov](t, a, b, ca, cb, w, longest_first, min_coverage, cuts, _BLOCK, _ring_size(t, w), _TRAIL_ROWS, 0, out0,
                  out1, bad)
    # The kernel checks the times as it reads them (one pass over t, not two).
    hit = bad[bad >= 0]
    if hit.size:
        v.not_increasing_error(t, int(hit.min()))


def _prepare(t_ns, windows_ns, n: int):
    t = v.as_time_ns(t_ns)
    if t.shape[0] != n + 1:
        raise ValueError(f"t_ns: {n} intervals need {n + 1} boundaries, got {t.shape[0]}")
    w = np.atleast_1d(np.asarray(windows_ns))
    if w.ndim != 1 or w.shape[0] == 0:
        raise ValueError("windows_ns: expected one or more window lengths")
    if w.dtype.kind not in "iu" and not (w.dtype.kind == "f" and np.all(w == np.round(w))):
        raise TypeError(f"windows_ns: expected whole nanoseconds, got {w.dtype}")
    w = np.ascontiguousarray(w, dtype=np.int64)
    if np.any(w <= 0):
        raise ValueError("windows_ns: every window must be > 0 ns")
    return t, w


@njit(cache=True, nogil=True, parallel=True)
def _count_outside_unit(c, n_blocks):
    # Values not in [0, 1] (NaN included), counted in one parallel pass with no early exit
    # (a count the compiler vectorises): NumPy's comparisons took four passes and as many
    # temporaries, about a third of the pipeline's call.
    counts = np.zeros(n_blocks, dtype=np.int64)
    n = c.shape[0]
    for blk in prange(n_blocks):
        bad = 0
        for i in range(blk * n // n_blocks, (blk + 1) * n // n_blocks):
            x = c[i]
            bad += not (x >= 0.0 and x <= 1.0)
        counts[blk] = bad
    return counts.sum()


def _coverage_arg(cov, n: int, name: str) -> np.ndarray:
    c = v.as_values(cov, name)
    v.same_length(n, **{name: c})
    if _count_outside_unit(c, max(1, min(_MAX_CHUNKS, n // _MIN_CHUNK))):
        raise ValueError(f"{name}: coverage must lie in [0, 1]")
    return c


def rolling_ratio(
    t_ns,
    numerator,
    denominator,
    windows_ns,
    *,
    min_coverage: float = 0.0,
    numerator_coverage=None,
    denominator_coverage=None,
) -> RollingRatio:
    """Ratio of energy sums over rolling time windows: rolling PUE, pPUE, CLF, PLF.

    Only intervals where both energies are valid count, so numerator and
    denominator always cover the same time. The ratio is
    ``sum(numerator) / sum(denominator)`` over the window (a ratio of energy
    sums, never a mean of ratios). It is NaN where the window's joint
    coverage is below ``min_coverage``, where the denominator's sum is not
    positive (zero IT energy), or where the result is not finite.

    ``numerator_coverage`` and ``denominator_coverage`` (given together) are
    per-interval coverages: shares in [0, 1] of each interval that had data
    (e.g. from :func:`rebin_energy`); an interval's joint coverage is the
    smaller of the two.
    """
    a = v.as_values(numerator, "numerator")
    b = v.as_values(denominator, "denominator")
    v.same_length(a.shape[0], denominator=b)
    t, w = _prepare(t_ns, windows_ns, a.shape[0])
    mc = float(min_coverage)
    if not 0.0 <= mc <= 1.0:
        raise ValueError(f"min_coverage: must lie in [0, 1], got {min_coverage!r}")
    if (numerator_coverage is None) != (denominator_coverage is None):
        raise ValueError("numerator_coverage and denominator_coverage must be given together")
    has_cov = numerator_coverage is not None
    if has_cov:
        ca = _coverage_arg(numerator_coverage, a.shape[0], "numerator_coverage")
        # The pipeline passes one joint coverage as both: checked once.
        cb = ca if denominator_coverage is numerator_coverage else _coverage_arg(
            denominator_coverage, a.shape[0], "denominator_coverage")
    else:
        ca = cb = np.empty(0)
    out_ratio = np.empty((w.shape[0], a.shape[0]), dtype=np.float64)
    out_cov = np.empty((w.shape[0], a.shape[0]), dtype=np.float64)
    _call(t, a, b, ca, cb, has_cov, w, mc, out_ratio, out_cov)
    return RollingRatio(out_ratio, out_cov)
