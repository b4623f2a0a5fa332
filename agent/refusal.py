"""Which lines of a batch a 400 refused: read from the collector's (or InfluxDB's) reply.

A partial write (`partial write: ... dropped=N`) means the other lines of the body were
stored, as InfluxDB does. The refused lines are found in the message:

- the collector names each one: `unable to parse '<line>': <why> (line 3)`, or
  `refused '<line>': <why> (lines 4-5)`; a number counts only when the line it names
  starts as quoted (so text inside a line cannot forge a number);
- InfluxDB 1.x quotes each whole line: `unable to parse '<line>': <why>`, one per line
  (and says `dropped=0` after parse errors: then the lines it quotes are the count).

Refused lines are identified when the reply names exactly `dropped` of them. Otherwise (the
collector names at most ten; InfluxDB's type-conflict and retention replies name none) the
lines stay unknown: the caller counts `dropped` and keeps the whole batch for the operator.
A 400 without `dropped=` refused the whole body: nothing was stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Refusal", "read_refusal"]

_DROPPED = re.compile(r"\bdropped=(\d+)")
_HINT = re.compile(r"\((?:line (\d+)|lines (\d+)-(\d+))\)")
# How much of a named line must be quoted before its number (the collector cuts long quotes).
_QUOTE_CHECK_CHARS = 40


@dataclass
class Refusal:
    partial: bool  # the other lines were stored
    dropped: int  # lines the server refused (all of them when not partial)
    lines: list[int] = field(default_factory=list)  # 0-based indexes of the lines the reply named
    named: int = 0  # refused lines the reply named (a range of physical lines is one line)

    @property
    def identified(self) -> bool:
        """The reply named every refused line of a partial write."""
        return self.partial and self.named == self.dropped > 0


def read_refusal(payload: bytes, message: str, refused_lines: object = None) -> Refusal:
    """The refused lines of `payload` (line protocol, one point a line) from a 400's message.

    `refused_lines`: the collector's machine-readable list from the same reply (its JSON key
    `refused_lines`: each refused line's number, or [first, last] for one spanning lines), which
    names every refused line where the message names at most 10; ignored unless well-formed."""
    lines = payload.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    found = [int(m[1]) for m in _DROPPED.finditer(message)]
    if not found:
        return Refusal(partial=False, dropped=len(lines), lines=list(range(len(lines))), named=len(lines))
    dropped = found[-1]  # InfluxDB puts it last; text quoted earlier cannot override it
    spans = _spans(refused_lines, len(lines))
    if spans is not None:
        named_lines = sorted({i for first, last in spans for i in range(first - 1, last)})
        return Refusal(partial=True, dropped=dropped or len(spans), lines=named_lines, named=len(spans))
    named: dict[int, None] = {}
    count = 0
    for m in _HINT.finditer(message):
        first, last = (int(m[1]), int(m[1])) if m[1] else (int(m[2]), int(m[3]))
        if not 1 <= first <= last <= len(lines):
            continue
        text = b"\n".join(lines[first - 1 : last]).decode("utf-8", "replace")
        quoted = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")[:_QUOTE_CHECK_CHARS]
        if "'" + quoted not in message[: m.start()] or first - 1 in named:
            continue
        named.update(dict.fromkeys(range(first - 1, last)))
        count += 1
    if not named:
        # InfluxDB: each refused line quoted whole.
        for i, line in enumerate(lines):
            if f"unable to parse '{line.decode('utf-8', 'replace')}': " in message:
                named[i] = None
                count += 1
    if dropped == 0:
        dropped = count  # influxd 1.x says dropped=0 after parse errors, though it names the lines
    return Refusal(partial=True, dropped=dropped, lines=sorted(named), named=count)


def _spans(refused_lines: object, n: int) -> list[tuple[int, int]] | None:
    """The reply's `refused_lines` as (first, last) 1-based spans inside the payload's n lines, or None
    when absent or malformed (then the message is read instead)."""
    if not isinstance(refused_lines, list) or not refused_lines:
        return None
    spans: list[tuple[int, int]] = []
    for item in refused_lines:
        if type(item) is int:
            first = last = item
        elif isinstance(item, list) and len(item) == 2 and all(type(x) is int for x in item):
            first, last = item
        else:
            return None
        if not 1 <= first <= last <= n:
            return None
        spans.append((first, last))
    if len({s[0] for s in spans}) != len(spans):
        return None
    return spans
