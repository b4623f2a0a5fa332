"""Poison batches: find the lines a store refuses or dies on, so that the rest goes through.

A batch the store refuses (`StoreRejected`), or that takes the store down again and again
(influxd 1.6.7 panics on `m \\\\="="`: the store answered a ping before the write and no
longer answers after it), is written again in halves, each half that fails in halves again,
down to single lines. A line is set aside when the store refuses it, or when it takes the
store down `strikes` times alone. Every other line is written. A store that stays up but
fails writes (5xx, timeouts under load) is not a poison line: that stops the search, and
the caller keeps the whole batch for later.

Bisection writes about 2 x log2(n) pieces per bad line; it runs only for a batch that failed,
so the common path costs nothing. Lines that were stored already (InfluxDB keeps the good
lines of a partial write) are written again, byte-identical: InfluxDB and the embedded store
keep one point per series and time, so nothing doubles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .base import StoreRejected, StoreUnavailable

__all__ = ["Isolated", "bisect_write", "split_lines"]


@dataclass
class Isolated:
    written: int = 0  # lines stored
    refused: list[tuple[bytes, str]] = field(default_factory=list)  # (line with its "\n", why)


def split_lines(body: bytes) -> list[bytes]:
    """The lines of a line-protocol body, each with its "\\n"; a string field value may hold a
    newline (InfluxDB reads on to the closing quote), so a line ends only outside one."""
    if b'"' not in body:
        return [line + b"\n" for line in body.split(b"\n") if line]
    out: list[bytes] = []
    start = i = 0
    n = len(body)
    in_fields = in_string = False
    while i < n:
        c = body[i]
        if c == 0x5C:  # backslash: the next byte is taken as it is
            i += 2
            continue
        if in_string:
            if c == 0x22:
                in_string = False
        elif c == 0x0A:
            if i > start:
                out.append(body[start : i + 1])
            start, in_fields = i + 1, False
        elif c == 0x20 and not in_fields:
            in_fields = True  # past the series key: a quote after "=" opens a string
        elif c == 0x22 and in_fields and i > start and body[i - 1] == 0x3D:
            in_string = True
        i += 1
    if start < n:
        tail = body[start:]
        out.append(tail if tail.endswith(b"\n") else tail + b"\n")
    return out


def bisect_write(
    lines: list[bytes],
    write: Callable[[bytes], None],
    ping: Callable[[], bool] | None,
    wait_until_up: Callable[[], bool],
    strikes: int = 2,
) -> Isolated:
    """Write `lines` (a batch that has just failed whole) in halves, halving any piece that
    fails again; returns what was stored and what was refused.

    `ping()` says whether the store answers now; `wait_until_up()` waits until it does (False:
    give up, e.g. at shutdown). Without `ping` a failing store cannot be told from a poison
    line, so `StoreUnavailable` is raised on; it is also raised when `wait_until_up()` gives
    up, or when the store fails a piece and still answers: nothing is decided then, and the
    caller keeps the whole batch."""
    result = Isolated()
    pending: list[tuple[int, int]] = []  # a stack: the left half on top, so lines go out in order
    if len(lines) > 1:
        _halve(pending, 0, len(lines))  # the whole batch has just failed: its halves first
    elif lines:
        pending.append((0, 1))
    failures: dict[int, int] = {}
    while pending:
        lo, hi = pending.pop()
        if ping is not None and not wait_until_up():
            raise StoreUnavailable("the store does not answer; the batch is kept whole")
        try:
            write(b"".join(lines[lo:hi]))
        except StoreRejected as exc:
            if exc.refuses_writer:  # the credentials, not this piece: nothing is decided
                raise
            if hi - lo > 1:
                _halve(pending, lo, hi)
            else:
                result.refused.append((lines[lo], str(exc)))
        except StoreUnavailable as exc:
            if ping is None or ping():  # still up: a failing store, not a piece that kills it
                raise
            if hi - lo > 1:
                _halve(pending, lo, hi)
                continue
            failures[lo] = failures.get(lo, 0) + 1
            if failures[lo] >= strikes:
                result.refused.append((lines[lo], f"the store fails on this line alone ({exc})"))
            else:
                pending.append((lo, hi))
        else:
            result.written += hi - lo
    return result


def _halve(pending: list[tuple[int, int]], lo: int, hi: int) -> None:
    mid = (lo + hi) // 2
    pending.append((mid, hi))
    pending.append((lo, mid))
