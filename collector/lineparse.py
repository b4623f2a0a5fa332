"""Strict InfluxDB line protocol parser: validates request bodies and normalises them to ns.

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

The rules are InfluxDB's (checked against a real influxd where they differ from the
reference's wording), so a body the collector accepts is a body the store accepts:

- measurement: `,` and space escaped with `\\`; not empty;
- tags: keys and values escape `,` `=` and space; neither may be empty; no duplicate
  keys ("duplicate tags"); no tag key `time`;
- fields: at least one; keys escape `,` `=` and space, never `time`; values are floats
  (`1`, `-1.5`, `.5`, `1.`, `1e-3`; finite, no NaN/inf), integers `1i` (int64),
  unsigned `1u` (uint64), strings `"..."` (`\\"` and `\\\\` escaped; may span lines,
  as in InfluxDB) and booleans `t T true True TRUE f F false False FALSE`. A field key
  given twice is accepted, the last value wins (what influxd does);
- timestamp: optional integer in the request's precision (ns, us, ms, s; v1 also n, u,
  m, h), normalised to ns and checked against InfluxDB's range
  [-9223372036854775806, 9223372036854775806]; a line without one gets the server's
  receive time, truncated to the precision, as InfluxDB does;
- blank lines and lines starting with `#` (after spaces) are ignored; text is UTF-8.

Errors read like InfluxDB's and name the line: `unable to parse 'm,t=1 f=': missing field
value (line 3)`. The good lines of a body are kept (InfluxDB's partial write).

Speed: agent bodies are thousands of lines of the same few shapes. The common case
(precision ns, every line with a timestamp, no escapes) is validated by one
`re.split` over the whole body, which runs in C and returns each line's series key (cut
at its first space); each distinct series key is checked once (its syntax, duplicate
tags) and cached, and the body is passed on unchanged. Anything else goes line by line: a compiled regex per line for
plain lines, and a byte-by-byte parser only for lines with escapes, quotes or errors.
`Point`s (dicts of tags and typed fields) are built only for the measurements a
consumer subscribed to, and where it subscribed with required fields
(`{"gpu_power": ("energy_mj",)}`) only for the lines that carry one of them. That
choice is made before any dict is built: on the fast path a line can only carry
the field `energy_mj` if it contains the bytes `energy_mj=` (fast-path names have no
escapes), so a substring search over the body finds the candidate lines; a false
positive (the bytes inside a string value, a tag key or a longer field name) is
caught by the exact check on the parsed fields, and a false negative cannot happen.
Lines on the slow path are parsed anyway and only get the exact check.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

import numpy as np

from puewatch.collector.fieldtypes import FieldTypes, kind_of
from puewatch.core.batch import Block
from puewatch.lineprotocol import RESERVED_KEY
from puewatch.terminal import shown

__all__ = ["LineParser", "ParseResult", "split_lines", "TimeWindow", "Point", "PRECISIONS", "Subscription", "parse", "parse_columns",
           "column_kind",
           "subscription", "MIN_TIME_NS", "MAX_TIME_NS"]

# What a consumer subscribes to: measurement names (every line of them becomes a Point), or
# measurement -> required field keys (only lines carrying at least one of them do; an empty
# tuple means every line).
Subscription: TypeAlias = Mapping[str, Iterable[str]] | Iterable[str]

# InfluxDB's models.MinNanoTime / MaxNanoTime (the extremes are reserved).
MIN_TIME_NS = -(2**63) + 2
MAX_TIME_NS = 2**63 - 2
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

# Request precision -> nanoseconds per unit (v2 names, and the v1 /write names).
PRECISIONS: dict[str, int] = {
    "ns": 1,
    "n": 1,
    "us": 1_000,
    "u": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

# Errors kept (with their text) per body; all are counted.
MAX_ERRORS = 100
# Characters of an offending line quoted in an error.
_QUOTE_MAX = 200


class Point(NamedTuple):
    """One parsed line: names unescaped, fields typed (float, int, str, bool), time in ns."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | str | bool]
    time_ns: int


@dataclass(slots=True)
class ParseResult:
    body: bytes  # the good lines, normalised to ns, each ending in "\n" (b"" if none)
    lines: int  # good lines in `body`
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS error messages
    error_count: int = 0  # all malformed lines
    points: list[Point] = field(default_factory=list)  # good lines of subscribed measurements
    time_refused: int = 0  # well-formed lines refused for their time (see TimeWindow), of which:
    retention_refused: int = 0  # ... older than the store's raw retention (not a clock's skew)
    store_refused: int = 0  # well-formed lines the store would refuse: field type, unsigned, key length
    # (measurement, tags) of the series of every line whose series could be read, each at least
    # once: the good lines, those refused for their time, a field's type or a key's length, and
    # malformed lines whose measurement and tags (up to the first unescaped space) can be read.
    # What a writer's scope is checked against (collector.scopes), without a pass over the lines
    # of its own: a line out of scope refuses the body whole, whatever else is wrong with it.
    series: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # (first, last) physical line numbers (1-based) of every line refused, malformed or unstorable:
    # all of them, where `errors` keeps the first MAX_ERRORS texts.
    refused: list[tuple[int, int]] = field(default_factory=list)


# -- the fast path: regular expressions for plain lines ------------------------------------------

# Character classes are spelled out byte by byte (`[ \t\n\r\v\f]`, `[0-9]`, never `\s` `\d`):
# the same bytes, but sre checks a plain class against a bitmap, where a category costs a call
# per byte (the whole-body scan is the biggest cost of ingest: about 10 % less this way).
_WS = rb" \t\n\r\x0b\x0c"  # what `\s` matches in a bytes pattern
_D = rb"[0-9]"
# A name character on the fast path: no whitespace, separators, escapes or quotes. (Those are
# legal in places; such lines take the slow path.)
_N = rb"[^" + _WS + rb',=\\"\x00-\x1f\x7f]'
# A measurement's first byte is not 0xEF either (a byte order mark's first: see _parse_slow; other
# characters from U+F000 take the slow path).
_MEAS = rb"[^" + _WS + rb',=\\"#\x00-\x1f\x7f\xef]' + _N + rb"*+"
_KEY = rb"(?!" + re.escape(RESERVED_KEY.encode()) + rb"=)" + _N + rb"++"
# Values whose syntax alone guarantees they are in range and finite: at most 18 integer
# digits (int64, and float mantissas), 19 for uint64, 300 fraction digits and two-digit
# exponents (so floats stay below 1e117). Longer numbers take the slow path, which
# checks the range exactly. Quantifiers are possessive (`++`): a number is scanned once,
# never re-tried digit by digit.
_EXP = rb"(?:[eE][+-]?" + _D + rb"{1,2}+)?"
_VALUE = (
    rb"(?:-?(?:" + _D + rb"{1,18}+(?:i|\." + _D + rb"{0,300}+" + _EXP + rb"|[eE][+-]?" + _D + rb"{1,2}+)?|\." + _D + rb"{1,300}+" + _EXP + rb")"
    rb'|"[^"\\\n]*+"'
    rb"|t(?:rue)?|T(?:rue|RUE)?|f(?:alse)?|F(?:alse|ALSE)?"
    rb"|" + _D + rb"{1,19}+u)"
)
_FIELDS = _KEY + rb"=" + _VALUE + rb"(?:," + _KEY + rb"=" + _VALUE + rb")*"
_SERIES = _MEAS + rb"(?:," + _KEY + rb"=" + _N + rb"++)*+"
# 19-digit timestamps up to 8999999999999999999 (year 2255); larger ones are range-checked.
_TIME = rb"-?(?:[1-8]" + _D + rb"{18}|" + _D + rb"{1,18})"

# A field key on the whole-body path, with a group that captures a number byte in it (a digit, `.`,
# `-`, `+`): the type check groups lines by their text with number bytes deleted, which merges
# `load1` and `load5`; the lines whose field keys hold one are read one by one (`_storable`).
_NUM = rb"0-9.+-"
_KEYD = rb"(?!" + re.escape(RESERVED_KEY.encode()) + rb"=)(?:[^" + _WS + rb',=\\"\x00-\x1f\x7f' + _NUM + rb"]++|([" + _NUM + rb"]))++"
# Whole body, line by line, timestamps required: its groups are each line's series key, a number
# byte in the first field key, one in another field key (None if none), and the timestamp. The
# timestamp costs the scan little and spares the time window a second pass over the body. Read
# with `split`, which returns one flat list (the four groups of each line, then the "\n" after
# it): no tuple per line, as findall would build (and the garbage collector then walk).
# The series key is only cut here (everything up to the first space) and checked against
# `_SERIES` once per distinct key (`_distinct_series`, cached): a body holds each key many times,
# and matching `_SERIES` on every line was half the scan. A key is a fast-path key when it
# matches `_SERIES` whole, exactly as when `_SERIES` is in this pattern (it cannot hold a space).
_BODY_RE = re.compile(rb"^([^ \n]++) " + _KEYD + rb"=" + _VALUE + rb"(?:," + _KEYD + rb"=" + _VALUE + rb")*+ ("
                      + _TIME + rb")$", re.MULTILINE)
_SERIES_RE = re.compile(_SERIES)
# One line, timestamp optional: groups series key, timestamp.
_LINE_RE = re.compile(rb"(" + _SERIES + rb") " + _FIELDS + rb"(?: (" + _TIME + rb"))?")

_TRUE = frozenset((b"t", b"T", b"true", b"True", b"TRUE"))
_FALSE = frozenset((b"f", b"F", b"false", b"False", b"FALSE"))
_BOOLS = {**{v: True for v in _TRUE}, **{v: False for v in _FALSE}}
_FLOAT_RE = re.compile(rb"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(rb"-?\d+i")
_UINT_RE = re.compile(rb"\d+u")
_TIME_RE = re.compile(rb"-?\d+")


class Unsigned(int):
    """An unsigned integer field value (`1u`): an int that remembers its InfluxDB type."""

    __slots__ = ()


# A fast-path value's type from its last byte: i, u, a bool's letter, else a float.
_KIND_BY_LAST = {**{c: "float" for c in b"0123456789."}, ord("i"): "integer", ord("u"): "unsigned",
                 **{c: "boolean" for c in b"tTfFeE"}, ord('"'): "string"}

_NUMBER_BYTES = b"0123456789.-+"
_NUMBER_CHARS = str.maketrans("", "", "0123456789.-+")


def _has_number_byte(name: str) -> bool:
    return name.translate(_NUMBER_CHARS) != name


def _plain_kinds(line: bytes, seen: dict) -> bool:
    """Add a plain fast-path line's (measurement, field key) -> kind to `seen` (no strings); False
    when a field has two kinds in this body."""
    sp = line.index(b" ")
    key = line[:sp]
    c = key.find(b",")
    m = (key if c < 0 else key[:c]).decode()
    ok = True
    for item in line[sp + 1 : line.rfind(b" ")].split(b","):
        k, _, v = item.partition(b"=")
        kind = _KIND_BY_LAST[v[-1]]
        if seen.setdefault((m, k), kind) != kind:
            ok = False
    return ok


def _field_kinds(line: bytes, key_len: int, end: int) -> dict[str, str]:
    """name -> kind of the fields of a line that matched _LINE_RE (`end`: where its field set ends).

    Without string values the field set is cut with `split` (fast-path names hold no escapes);
    a string may hold `,` `=` and spaces, so such lines are read by the parser. Raises _LineError
    for a field given twice with two types, as influxd refuses it."""
    part = line[key_len + 1 : end]
    if 34 in part:  # '"'
        return {k: kind_of(v) for k, v in _parse_slow(line)[2].items()}
    kinds: dict[str, str] = {}
    for item in part.split(b","):
        k, _, v = item.partition(b"=")
        name = k.decode()
        kind = _KIND_BY_LAST[v[-1]]
        if kinds.setdefault(name, kind) != kind:
            raise _LineError(f"field type conflict: input field '{name}' given twice, as type "
                             f"{kinds[name]} and as type {kind}")
    return kinds


# InfluxDB's MaxKeyLength: series key, "#!~#" and field key together.
MAX_KEY_BYTES = 65535

_new_point = tuple.__new__  # Point(...) without the NamedTuple constructor's argument handling

_SECOND_NS = 1_000_000_000


class TimeFault(NamedTuple):
    """Why a line's time is refused (TimeWindow.fault): its kind, "ahead" or "behind" (a clock's skew) or
    "retention" (older than the store keeps, in InfluxDB's words; counted apart), and the one-line text."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far a line's time may be from the receiving clock: `ahead_ns` into the future,
    `behind_ns` into the past (0 = no limit that way). A node whose clock jumped a year ahead
    writes data a year ahead; a backlog shipped after an outage is legitimately old, so the
    past is unlimited unless configured."""

    ahead_ns: int = 0
    behind_ns: int = 0
    retention_ns: int = 0  # the store's raw retention: an older point would be deleted at the next upkeep

    def __bool__(self) -> bool:
        return bool(self.ahead_ns or self.behind_ns or self.retention_ns)

    def fault(self, time_ns: int, now_ns: int) -> TimeFault | None:
        """None if `time_ns` is inside the window around `now_ns`, else why not."""
        if self.ahead_ns and time_ns - now_ns > self.ahead_ns:
            return TimeFault("ahead", _skew_text(time_ns, time_ns - now_ns, "ahead of", self.ahead_ns))
        if self.behind_ns and now_ns - time_ns > self.behind_ns:
            return TimeFault("behind", _skew_text(time_ns, now_ns - time_ns, "behind", self.behind_ns))
        if self.retention_ns and now_ns - time_ns > self.retention_ns:
            return TimeFault("retention", f"point beyond retention policy (the store keeps "
                                          f"{self.retention_ns / 86400e9:g} days)")
        return None

    def bounds_text(self, now_ns: int) -> tuple[bytes, bytes] | None:
        """The window as 19-digit decimal bytes (lo, hi), when both are 19-digit positives (2001-2286).

        Same-length digit strings compare as numbers, so a body's timestamps can be checked with
        `min`/`max` over bytes, in C, without converting each to int.
        """
        behind = min(b for b in (self.behind_ns, self.retention_ns, 2**63) if b)
        lo = now_ns - behind if behind < 2**63 else 10**18
        hi = now_ns + self.ahead_ns if self.ahead_ns else 10**19 - 1
        lo, hi = max(lo, 10**18), min(hi, 10**19 - 1)
        if lo > hi:
            return None
        return str(lo).encode(), str(hi).encode()


def _skew_text(time_ns: int, off_ns: int, way: str, tolerance_ns: int) -> str:
    import datetime

    try:
        when = datetime.datetime.fromtimestamp(time_ns // _SECOND_NS, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        when = f"{time_ns} ns"
    s = off_ns / _SECOND_NS
    tolerance = tolerance_ns / _SECOND_NS
    off = f"{s:.0f} s"
    for unit, name in ((86400, "days"), (3600, "hours"), (60, "minutes")):
        # In the largest unit it is two of, unless rounded so it would read as within the tolerance (310 s
        # read "5 minutes ahead ... (tolerance 300 s)": found by the operator audit).
        if s >= 2 * unit and round(s / unit) * unit > tolerance:
            off = f"{s / unit:.0f} {name}"
            break
    return f"time {when} is {off} {way} the collector's clock (tolerance {tolerance:g} s)"


class _LineError(Exception):
    """The fault in one line, in InfluxDB's words."""


class _Unterminated(_LineError):
    """A string field value runs to the end of the line: it may continue on the next one."""


# -- the slow path: a byte-by-byte parser for any line -----------------------------------------

_SP, _COMMA, _EQ, _BSL, _QUOTE, _TAB = 32, 44, 61, 92, 34, 9


def _unescape(raw: bytes, specials: bytes) -> bytes:
    """Drop the backslash before the given special characters; other backslashes stay (as in InfluxDB)."""
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == _BSL and i + 1 < n and raw[i + 1] in specials:
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _LineError("invalid UTF-8") from None


def _scan_to(line: bytes, i: int, stops: tuple[int, ...]) -> int:
    """Index of the first unescaped byte in `stops` at or after i (len(line) if none)."""
    n = len(line)
    while i < n:
        c = line[i]
        if c == _BSL:
            i += 2
            continue
        if c in stops:
            return i
        i += 1
    return n


def _number(raw: bytes) -> float | int:
    if _INT_RE.fullmatch(raw):
        v = int(raw[:-1])
        if not INT64_MIN <= v <= INT64_MAX:
            raise _LineError(f"unable to parse integer {raw[:-1].decode()}: value out of range")
        return v
    if _UINT_RE.fullmatch(raw):
        v = int(raw[:-1])
        if v > UINT64_MAX:
            raise _LineError(f"unable to parse unsigned {raw[:-1].decode()}: value out of range")
        return Unsigned(v)
    if _FLOAT_RE.fullmatch(raw):
        v = float(raw)
        if not math.isfinite(v):
            raise _LineError("invalid float")
        return v
    raise _LineError("invalid number")


def _string(line: bytes, i: int) -> tuple[str, int]:
    """A quoted string starting at line[i] == '"': (value, index after the closing quote)."""
    n = len(line)
    j = i + 1
    while j < n:
        c = line[j]
        if c == _BSL:
            j += 2
            continue
        if c == _QUOTE:
            raw = line[i + 1 : j]
            if b"\\" in raw:
                raw = raw.replace(b'\\"', b'"').replace(b"\\\\", b"\\")
            return _decode(raw), j + 1
        j += 1
    raise _Unterminated("unbalanced quotes")


def _after_key(line: bytes, i: int, stops: tuple[int, ...]) -> int:
    """Index of the first byte in `stops` at or after i+1 that is not preceded by a backslash (len if none).

    InfluxDB 1.x's rule for measurements and tags: a byte is escaped when the byte before it is a
    backslash, whatever escapes that backslash (so `east\\\\ ` holds an escaped space). Field keys
    and values use the other rule (`_scan_to`: a backslash escapes the next byte)."""
    n = len(line)
    i += 1
    while i < n:
        if line[i] in stops and line[i - 1] != _BSL:
            return i
        i += 1
    return n


_BOM = b"\xef\xbb\xbf"
_CONTROL_RE = re.compile(rb"[\x00-\x1f\x7f]")


def _no_control(raw: bytes, what: str) -> bytes:
    """`raw`, unless it holds an ASCII control character: names are shown in reports and Grafana,
    where those are invisible (InfluxDB 2.x refuses them too; influxd 1.6.7 takes them)."""
    m = _CONTROL_RE.search(raw)
    if m is not None:
        raise _LineError(f"invalid character {chr(m.group()[0])!r} in {what}")
    return raw


def _unescape_key(raw: bytes, specials: bytes) -> bytes:
    """InfluxDB 1.x's unescaping of measurements and tags: `\\,` `\\ ` (and `\\=` in tags) replaced in turn."""
    if b"\\" in raw:
        for c in specials:
            raw = raw.replace(b"\\" + bytes((c,)), bytes((c,)))
    return raw


def _parse_series(line: bytes) -> tuple[str, dict[str, str], int]:
    """(measurement, tags, the index after them) of a line's series key: the part of _parse_slow
    that says whose series a line is, also where the rest of the line is wrong (see _readable)."""
    n = len(line)
    # measurement (InfluxDB 1.x's scanMeasurement: its first byte is never a separator)
    if line[0] == _COMMA:
        raise _LineError("missing measurement")
    if line.startswith(_BOM):
        # Stored, it would be part of the measurement's name, invisible, and no query would find it.
        raise _LineError("the line starts with a byte order mark (U+FEFF, which some editors write at the start of "
                         "a UTF-8 file): remove it")
    i = _after_key(line, 0, (_COMMA, _SP))
    measurement = _decode(_unescape_key(_no_control(line[:i], "measurement"), b", "))
    if i >= n:
        raise _LineError("missing fields")
    tags: dict[str, str] = {}
    # tags (scanTagsKey, scanTagsValue: a value may start with `=`)
    while line[i] == _COMMA:
        i += 1
        if i >= n or line[i] in (_SP, _COMMA, _EQ):
            raise _LineError("missing tag key")
        j = _after_key(line, i, (_EQ, _COMMA, _SP))
        if j >= n or line[j] != _EQ:
            raise _LineError("missing tag value")
        k = j + 1
        if k >= n or line[k] in (_COMMA, _SP):
            raise _LineError("missing tag value")
        e = _after_key(line, k, (_EQ, _COMMA, _SP))
        if e >= n:
            raise _LineError("missing fields")
        if line[e] == _EQ:
            raise _LineError("invalid tag format")
        key = _decode(_unescape_key(_no_control(line[i:j], "tag key"), b", ="))
        if key in tags:
            raise _LineError("duplicate tags")
        tags[key] = _decode(_unescape_key(_no_control(line[k:e], "tag value"), b", ="))
        i = e
    return measurement, tags, i


def _readable(line: bytes) -> tuple[str, dict[str, str]] | None:
    """A refused line's series, where its measurement and tags can be read (the rest of it may be
    wrong in any way: its scope counts, see ParseResult.series); None where they cannot."""
    try:
        measurement, tags, _ = _parse_series(line)
    except _LineError:
        return None
    return measurement, tags


def _parse_slow(line: bytes) -> tuple[str, dict[str, str], dict[str, float | int | str | bool], int | None, int]:
    """(measurement, tags, fields, timestamp in the request's unit or None, end of the field set)."""
    n = len(line)
    measurement, tags, i = _parse_series(line)
    if RESERVED_KEY in tags:  # a readable series all the same (see _readable)
        raise _LineError(f'invalid tag key: input tag "{RESERVED_KEY}" on measurement "{measurement}" is invalid')
    # fields
    while i < n and line[i] == _SP:
        i += 1
    if i >= n:
        raise _LineError("invalid field format")
    fields: dict[str, float | int | str | bool] = {}
    while True:
        j = _scan_to(line, i, (_EQ, _COMMA, _SP))
        if j >= n or line[j] != _EQ:
            raise _LineError("invalid field format")
        if j == i:
            raise _LineError("missing field key")
        if line[j - 1] == _BSL:
            # `k\\=v`: InfluxDB 1.x finds this key's end by one escaping rule and reads its value by the
            # other; influxd 1.6.7 panics on some such lines (`m \\="="`), misreads the rest.
            raise _LineError("field key ends in a backslash")
        key = _decode(_unescape(_no_control(line[i:j], "field key"), b',= "'))
        if key == RESERVED_KEY:
            raise _LineError(f'invalid field name: input field "{RESERVED_KEY}" on measurement "{measurement}" is invalid')
        k = j + 1
        if k >= n or line[k] in (_COMMA, _SP):
            raise _LineError("missing field value")
        c = line[k]
        if c == _QUOTE:
            value, e = _string(line, k)
            if e < n and line[e] not in (_COMMA, _SP):
                raise _LineError("invalid field format")
        else:
            e = k
            while e < n and line[e] not in (_COMMA, _SP):
                e += 1
            raw = line[k:e]
            if c == 45 or c == 46 or 48 <= c <= 57 or c in (78, 110):  # - . digits N n
                value = _number(raw)
            else:
                value = _BOOLS.get(raw)
                if value is None:
                    raise _LineError(f"invalid boolean {shown(repr(raw[:40].decode('utf-8', 'replace')))}: a field value is a number (1.5, -2, 15i, 15u; no "
                                     "leading +, no Inf), a string in double quotes or a boolean (t, true, f, false)")
        if key in fields and kind_of(fields[key]) != kind_of(value):
            # The last value wins, as in influxd, but only of the same type: influxd refuses the line.
            raise _LineError(f"field type conflict: input field '{key}' given twice, as type "
                             f"{kind_of(fields[key])} and as type {kind_of(value)}")
        fields[key] = value
        i = e
        if i >= n or line[i] == _SP:
            break
        i += 1  # comma
        if i >= n or line[i] == _SP:
            raise _LineError("invalid field format")
    end_fields = i
    # timestamp
    while i < n and line[i] == _SP:
        i += 1
    if i >= n:
        return measurement, tags, fields, None, end_fields
    e = i
    while e < n and line[e] != _SP:
        e += 1
    raw = line[i:e]
    if not _TIME_RE.fullmatch(raw):
        raise _LineError("bad timestamp")
    while e < n:
        if line[e] != _SP:
            raise _LineError("point is invalid")
        e += 1
    return measurement, tags, fields, int(raw), end_fields


_CONTROL = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _quote(line: bytes) -> str:
    """The line as quoted in an error: one line of text, at most _QUOTE_MAX characters."""
    text = line.decode("utf-8", errors="replace").translate(_CONTROL)
    if len(text) > _QUOTE_MAX:
        text = text[:_QUOTE_MAX] + "..."
    return text


def _blank_or_comment(line: bytes) -> bool:
    s = line.lstrip(b" \t")
    return not s or s[0] == 35  # '#'


def subscription(subscribed: Subscription) -> dict[str, tuple[str, ...]]:
    """A subscription as measurement -> required field keys (`()`: every line of it).

    Raises TypeError for a field list given as one string (`("energy_mj")` is a str, not a
    tuple), which would otherwise subscribe to single letters.
    """
    if isinstance(subscribed, Mapping):
        out = {}
        for measurement, fields in subscribed.items():
            if isinstance(fields, (str, bytes)):
                raise TypeError(f"subscription to {measurement!r}: required fields must be a tuple of names, "
                                f"not the string {fields!r}")
            out[str(measurement)] = tuple(dict.fromkeys(str(f) for f in fields))
        return out
    if isinstance(subscribed, (str, bytes)):
        raise TypeError(f"subscription must be a set of measurement names, not the string {subscribed!r}")
    return {str(m): () for m in subscribed}


def _needle(key: str) -> bytes:
    """How a field key and its `=` appear on the wire (escaped as the encoder writes it)."""
    return key.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ").encode("utf-8") + b"="


def _plain_values(field_set: bytes, names: dict[bytes, str]) -> dict[str, float | int | bool]:
    """The fields of a fast-path line's field set (plain keys, no string values: a line with a
    '"' takes _parse_slow), which the fast path's regex has already checked: a value ending in
    a digit or '.' is a float, in 'i' or 'u' an integer, else a boolean. `names` caches the
    keys' decoded names."""
    fields: dict[str, float | int | bool] = {}
    for item in field_set.split(b","):
        k, _, v = item.partition(b"=")
        name = names.get(k)
        if name is None:
            name = names[k] = k.decode("utf-8")
        last = v[-1]
        if last < 65:  # ends in a digit or '.'
            fields[name] = float(v)
        elif last == 105 or last == 117:  # 1i, 1u
            fields[name] = int(v[:-1])
        else:
            fields[name] = _BOOLS[v]
    return fields


class LineParser:
    """Parses request bodies; keeps a cache of the series keys already checked.

    `subscribed`: the measurements for which `Point`s are built: a set of names, or a
    mapping measurement -> required field keys (a Point only for lines that carry at
    least one of them; an empty tuple means every line). See `subscription()`.
    """

    _CACHE_MAX = 200_000

    def __init__(self, subscribed: Subscription = frozenset(), window: TimeWindow = TimeWindow(),
                 types: FieldTypes | None = None) -> None:
        self.window = window
        # Field types every line is checked against (None: no check, as in tools that only parse).
        self.types = types
        self.required = subscription(subscribed)
        self.subscribed = frozenset(self.required)
        # measurement -> the wire form of its required fields (None: every line)
        self._needles: dict[str, tuple[bytes, ...] | None] = {
            m: tuple(_needle(f) for f in fields) or None for m, fields in self.required.items()
        }
        # Every subscription names its fields: candidate lines are found by substring search.
        self._sparse = bool(self.required) and all(self._needles.values())
        # series key (as on the wire, fast-path syntax) -> (measurement, tags), or an error string
        self._series: dict[bytes, tuple[str, dict[str, str]] | str] = {}
        self._field_names: dict[bytes, str] = {}
        self._plain_measurements: dict[str, bool] = {}  # measurement -> no number byte in its name

    # -- series keys ------------------------------------------------------------------------

    def _series_info(self, key: bytes) -> tuple[str, dict[str, str]] | str:
        """Check a fast-path series key once (duplicate tags); cached."""
        info = self._series.get(key)
        if info is not None:
            return info
        parts = key.decode("utf-8").split(",")
        tags: dict[str, str] = {}
        info = (parts[0], tags)
        for part in parts[1:]:
            k, _, v = part.partition("=")
            if k in tags:
                info = "duplicate tags"
                break
            tags[k] = v
        if len(self._series) >= self._CACHE_MAX:
            self._series.clear()
        self._series[key] = info
        return info

    # -- points -----------------------------------------------------------------------------

    def _fast_point(self, info: tuple[str, dict[str, str]], key: bytes, line: bytes, time_ns: int) -> Point:
        """A Point from a line that matched the fast-path regex (plain names)."""
        rest = line[len(key) + 1 :]
        if b'"' in rest:
            _, _, fields, _, _ = _parse_slow(line)
            return Point(info[0], dict(info[1]), fields, time_ns)
        sp = rest.find(b" ")
        if sp >= 0:
            rest = rest[:sp]
        return _new_point(Point, (info[0], dict(info[1]), _plain_values(rest, self._field_names), time_ns))

    # -- bodies -----------------------------------------------------------------------------

    def parse(self, body: bytes, precision: str = "ns", now_ns: int | None = None) -> ParseResult:
        """Validate and normalise a body. `now_ns`: receive time for lines without a timestamp,
        and the clock that `window` is measured from.

        Raises ValueError for an unknown precision (the request's fault, not a line's).
        """
        try:
            unit = PRECISIONS[precision]
        except KeyError:
            raise ValueError(f"invalid precision {precision!r}; allowed: ns, us, ms, s") from None
        if not body:
            return ParseResult(b"", 0)
        if body[-1] != 10:
            body += b"\n"
        if unit == 1 and (body.isascii() or _utf8(body)):
            found = _BODY_RE.split(body)  # [b"", key, first, other, stamp, b"\n", key, ...]
            # Every line matched when the text before the first match is empty and between matches each
            # one newline (a line that did not match would stand there): no second pass over the body.
            if found[0] == b"" and found[5::5].count(b"\n") == len(found) // 5:
                keys, first, other, stamps = found[1::5], found[2::5], found[3::5], found[4::5]
                # Each distinct series key once, for both the type check and the points.
                distinct = self._distinct_series(keys)
                if (distinct is not None and self._inside_window(stamps, now_ns)
                        and self._storable(body, keys, distinct, first, other)):
                    return self._whole(body, keys, distinct)
        return self._by_line(body, unit, now_ns, precision)

    def _distinct_series(self, keys: list[bytes]) -> dict[bytes, tuple[str, dict[str, str]]] | None:
        """series key -> (measurement, tags) of a fast-path body's distinct keys; None when one is
        not of the fast-path syntax or is bad (duplicate tags): the line-by-line pass reads it."""
        series = self._series
        out: dict[bytes, tuple[str, dict[str, str]]] = {}
        for key in set(keys):
            info = series.get(key)
            if info is None:
                if _SERIES_RE.fullmatch(key) is None:  # escapes, quotes, a comment: line by line
                    return None
                info = self._series_info(key)
            if type(info) is str:
                return None
            out[key] = info
        return out

    def _storable(self, body: bytes, keys: list[bytes], distinct: dict[bytes, tuple[str, dict[str, str]]],
                  first: list[bytes | None], other: list[bytes | None]) -> bool:
        """Whether every line of a fast-path body has the field types the store takes (and learn the
        new ones); False sends the body line by line, where each line is checked and reported.

        `keys`: each line's series key; `distinct`: the same, each once (`_distinct_series`); `first`, `other`: per line, a number
        byte in its first or another field key (None if none)."""
        types = self.types
        if types is None:
            return True
        kind_by_last = _KIND_BY_LAST
        known = types._known
        seen: dict[tuple[str, bytes], str] = {}  # (measurement, field key) -> kind, in this body
        longest = max(map(len, distinct))
        if 34 not in body:
            # No strings. Lines that differ only in their numbers have the same skeleton (the line with
            # every digit, `.`, `-` and `+` deleted, in C): one line per distinct skeleton is read. That
            # also deletes number bytes in names: a measurement holding one sends the body line by line
            # (rare); lines whose field keys hold one (`load1`, `load15`) are each read, and never stand
            # for the others.
            plain = self._plain_measurements
            for info in distinct.values():
                ok = plain.get(info[0])
                if ok is None:
                    if len(plain) >= self._CACHE_MAX:
                        plain.clear()
                    ok = plain[info[0]] = not _has_number_byte(info[0])
                if not ok:
                    return False
            lines = body.split(b"\n")
            skeletons = body.translate(None, _NUMBER_BYTES).split(b"\n")
            if any(first) or any(other):
                # The few lines with a number byte in a field key (found in C): each read, and
                # their skeletons blanked, so they never stand for another line.
                flagged = set(itertools.compress(itertools.count(), first))
                flagged.update(itertools.compress(itertools.count(), other))
                for i in sorted(flagged):
                    if not _plain_kinds(lines[i], seen):
                        return False
                    skeletons[i] = b""
            for sk, line in dict(zip(skeletons, lines)).items():
                if sk and not _plain_kinds(line, seen):
                    return False
        else:
            for key, line in zip(keys, body.split(b"\n")):
                m = distinct[key][0]
                if 34 in line:  # '"': a string may hold `,` `=` and spaces (never a quote or backslash here)
                    pairs = [(k, kind_by_last[v[-1]]) for k, v in
                             _STRING_ITEM_RE.findall(line, len(key) + 1, line.rfind(b" "))]
                else:
                    pairs = [(k, kind_by_last[v[-1]]) for k, _, v in
                             (item.partition(b"=") for item in line[len(key) + 1 : line.rfind(b" ")].split(b","))]
                for k, kind in pairs:
                    prev = seen.setdefault((m, k), kind)
                    if prev != kind:
                        return False
        pending: dict[tuple[str, str], str] = {}
        for (m, k), kind in seen.items():
            name = k.decode()
            if longest + 4 + len(k) > MAX_KEY_BYTES:
                return False
            if known.get((m, name)) == kind:
                continue
            if types.fault(m, {name: kind}, pending) is not None:
                return False
        types.commit(pending)
        return True

    def _inside_window(self, stamps: list[bytes], now_ns: int | None) -> bool:
        """Whether every timestamp of a fast-path body (as written) is inside the window; False sends
        the body line by line, where each line is checked exactly."""
        if not self.window:
            return True
        bounds = self.window.bounds_text(time.time_ns() if now_ns is None else now_ns)
        if bounds is None:
            return False
        lengths = set(map(len, stamps))
        return lengths == {19} and bounds[0] <= min(stamps) and max(stamps) <= bounds[1]

    def _whole(self, body: bytes, keys: list[bytes], distinct: dict[bytes, tuple[str, dict[str, str]]]) -> ParseResult:
        """Every line matched the fast path and passed the checks: the points of subscribed lines."""
        subscribed = self.subscribed
        wanted = {key: info for key, info in distinct.items() if info[0] in subscribed}
        points: list[Point] = []
        if wanted:
            if self._sparse:
                lines: Iterable[tuple[bytes, bytes]] = self._candidates(body, {info[0] for info in wanted.values()})
            else:
                lines = zip(keys, body.split(b"\n"))
            # The hot loop when a consumer subscribes: one call a line (_plain_values), none a field.
            # Lines with string fields take _fast_point's slow branch.
            append = points.append
            names = self._field_names
            plain_values = _plain_values
            new = _new_point
            needles = self._needles
            required = self.required
            for key, line in lines:
                info = wanted.get(key)
                if info is None:
                    continue
                wanted_fields = needles[info[0]]
                if wanted_fields is not None:
                    for needle in wanted_fields:
                        if needle in line:
                            break
                    else:
                        continue
                if 34 in line:  # '"'
                    p = self._fast_point(info, key, line, int(line[line.rfind(b" ") + 1 :]))
                    if wanted_fields is None or self._carries(p):
                        append(p)
                    continue
                _, field_set, ts = line.split(b" ")
                fields = plain_values(field_set, names)
                if wanted_fields is not None:  # the exact check behind the substring search
                    for f in required[info[0]]:
                        if f in fields:
                            break
                    else:
                        continue
                append(new(Point, (info[0], info[1].copy(), fields, int(ts))))
        return ParseResult(body, len(keys), [], 0, points, series=list(distinct.values()))

    def _candidates(self, body: bytes, measurements: set[str]) -> list[tuple[bytes, bytes]]:
        """(series key, line) for the lines of a fast-path body that contain a wanted field's bytes, in body order.

        Only the lines found are cut out of the body: with energy on one agent line in ten,
        most lines are never touched by Python code.
        """
        needles = {n for m in measurements for n in (self._needles[m] or ())}
        starts: set[int] = set()
        find, rfind = body.find, body.rfind
        for needle in needles:
            i = find(needle)
            while i >= 0:
                s = rfind(b"\n", 0, i) + 1
                e = find(b"\n", i)  # the body ends in a newline
                starts.add(s)
                i = find(needle, e)
        out = []
        for s in sorted(starts):
            line = body[s : find(b"\n", s)]
            out.append((line[: line.find(b" ")], line))  # fast-path names hold no spaces
        return out

    def _carries(self, p: Point) -> bool:
        """The exact check: the point has one of its measurement's required fields (or none are required)."""
        required = self.required.get(p.measurement)
        if not required:
            return required is not None
        fields = p.fields
        return any(f in fields for f in required)

    def _by_line(self, body: bytes, unit: int, now_ns: int | None, precision: str = "ns") -> ParseResult:
        if now_ns is None:
            now_ns = time.time_ns()
        clock_ns = now_ns
        now_ns -= now_ns % unit  # InfluxDB truncates the receive time to the precision
        now_text = b" " + str(now_ns).encode()
        utf8_ok = body.isascii() or _utf8(body)
        lines = body.split(b"\n")
        lines.pop()  # the body ends with "\n"
        out: list[bytes] = []
        errors: list[str] = []
        error_count = 0
        time_refused = 0
        retention_refused = 0
        window = self.window if self.window else None
        # InfluxDB's words, and the precision that scaled the timestamp (a ns time sent with precision=s was
        # only "time outside range ...": found by the operator audit).
        range_error = (_RANGE_ERROR if unit == 1 else
                       f"{_RANGE_ERROR} (the timestamp, with precision={precision}, times {unit} ns)")
        points: list[Point] = []
        subscribed = self.subscribed
        needles = self._needles
        series = self._series
        line_re = _LINE_RE.fullmatch
        changed = False  # whether the body must be rebuilt from `out`
        seen: dict[bytes, tuple[str, dict[str, str]]] = {}  # fast-path series keys of lines read (see `series`)
        slow_series: list[tuple[str, dict[str, str]]] = []

        refused: list[tuple[int, int]] = []

        def fail(text: bytes, fault: str, where: str) -> None:
            nonlocal error_count
            error_count += 1
            refused.append(_span(where))
            if len(errors) < MAX_ERRORS:
                errors.append(f"unable to parse '{_quote(text)}': {_with_cause(text, fault)} ({where})")

        def refuse(text: bytes, fault: TimeFault, where: str) -> None:
            nonlocal time_refused, retention_refused
            time_refused += 1
            retention_refused += fault.kind == "retention"
            refused.append(_span(where))
            if len(errors) < MAX_ERRORS:
                errors.append(f"refused '{_quote(text)}': {fault.text} ({where})")

        types = self.types
        pending: dict[tuple[str, str], str] = {}  # field types taken by earlier lines of this body
        store_refused = 0

        def unstorable(text: bytes, measurement: str, key_bytes: int, kinds: dict[str, str], where: str) -> bool:
            """Refuse (and report) a line the store would refuse: field type, unsigned, key length."""
            nonlocal store_refused
            fault = None
            longest = max(len(k.encode()) for k in kinds)
            if key_bytes + 4 + longest > MAX_KEY_BYTES:
                fault = f"max key length exceeded: {key_bytes + 4 + longest} > {MAX_KEY_BYTES}"
            elif types is not None:
                fault = types.fault(measurement, kinds, pending)
            if fault is None:
                return False
            store_refused += 1
            refused.append(_span(where))
            if len(errors) < MAX_ERRORS:
                errors.append(f"refused '{_quote(text)}': {fault} ({where})")
            return True

        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            i += 1
            m = line_re(line)
            if m is not None and (utf8_ok or _utf8(line)):
                key, ts = m.group(1, 2)
                info = series.get(key) or self._series_info(key)
                if type(info) is not str:
                    seen[key] = info  # the series is read: its scope counts, whatever follows
                    end = len(line) if ts is None else m.start(2) - 1  # the field set's end, before any rewrite
                    if ts is None:
                        time_ns = now_ns
                        line += now_text
                        changed = True
                    elif unit != 1:
                        time_ns = int(ts) * unit
                        if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
                            fail(line, range_error, f"line {i}")
                            changed = True
                            continue
                        line = line[: m.start(2)] + str(time_ns).encode()
                        changed = True
                    elif window is not None or info[0] in subscribed:
                        time_ns = int(ts)
                    if window is not None:
                        fault = window.fault(time_ns, clock_ns)
                        if fault is not None:
                            refuse(line, fault, f"line {i}")
                            changed = True
                            continue
                    try:
                        kinds = _field_kinds(line, len(key), end)
                    except _LineError as exc:  # a field given twice with two types
                        fail(line, str(exc), f"line {i}")
                        changed = True
                        continue
                    if unstorable(line, info[0], len(key), kinds, f"line {i}"):
                        changed = True
                        continue
                    out.append(line)
                    if info[0] in subscribed:
                        wanted_fields = needles[info[0]]
                        if wanted_fields is None or any(n in line for n in wanted_fields):
                            p = self._fast_point(info, key, line, time_ns)
                            if wanted_fields is None or self._carries(p):
                                points.append(p)
                    continue
            # The slow path: blank, comment, escapes, quotes, long numbers, or an error.
            changed = True
            if _blank_or_comment(line):
                continue
            text = line.lstrip(b" \t")
            first = i
            fault = None
            while True:
                try:
                    measurement, tags, fields, ts, end_fields = _parse_slow(text)
                except _Unterminated as exc:
                    if i < n:  # a string field value with a newline in it: InfluxDB reads on
                        text += b"\n" + lines[i]
                        i += 1
                        continue
                    fault = str(exc)
                except _LineError as exc:
                    fault = str(exc)
                break
            where = f"line {first}" if i == first else f"lines {first}-{i}"
            if fault is not None:
                readable = _readable(text)
                if readable is not None:
                    slow_series.append(readable)  # its series is read: its scope counts, whatever else is wrong
                fail(text, fault, where)
                continue
            slow_series.append((measurement, tags))  # read: its scope counts, whatever follows
            time_ns = now_ns if ts is None else ts * unit
            if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
                fail(text, range_error, where)
                continue
            if window is not None:
                fault = window.fault(time_ns, clock_ns)
                if fault is not None:
                    refuse(text, fault, where)
                    continue
            if unstorable(text, measurement, _key_bytes(text), {k: kind_of(v) for k, v in fields.items()}, where):
                continue
            out.append(text[:end_fields] + b" " + str(time_ns).encode())
            if measurement in subscribed:
                p = Point(measurement, tags, fields, time_ns)
                if self._carries(p):
                    points.append(p)
        count = len(out)
        if not changed:
            new_body = body
        elif out:
            out.append(b"")
            new_body = b"\n".join(out)
        else:
            new_body = b""
        if types is not None:
            types.commit(pending)
        return ParseResult(new_body, count, errors, error_count, points, time_refused, retention_refused, store_refused,
                           [*seen.values(), *slow_series], refused)


def _span(where: str) -> tuple[int, int]:
    """(first, last) line number from a `where` ("line 3", "lines 4-5")."""
    first, _, last = where.split(" ", 1)[1].partition("-")
    return int(first), int(last or first)


_RANGE_ERROR = f"time outside range {MIN_TIME_NS} - {MAX_TIME_NS}"


def _key_bytes(line: bytes) -> int:
    """Bytes of a valid line's series key as written (up to the first unescaped space)."""
    return _scan_to(line, 0, (_SP,))


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class LineError(ValueError):
    """A line that is not valid line protocol; the message is InfluxDB's."""


def parse_line(line: bytes | str) -> Point:
    """One line (no newline), parsed exactly; `time_ns` is the timestamp as written, None when absent.

    For the stores that read line protocol back (the embedded store) and for tests:
    the same rules and messages as the ingest parser, one line at a time.
    """
    raw = (line.encode() if isinstance(line, str) else bytes(line)).lstrip(b" \t")  # as InfluxDB does
    if not raw or _blank_or_comment(raw):
        raise LineError("unable to parse '': empty line or comment")
    try:
        measurement, tags, fields, t, _ = _parse_slow(raw)
    except _LineError as exc:
        raise LineError(f"unable to parse '{_quote(raw)}': {_with_cause(raw, str(exc))}") from None
    return Point(measurement, tags, fields, t)


def _with_cause(line: bytes, fault: str) -> str:
    """A refused line's fault, and what most likely caused it where the line ends in a byte line protocol
    does not end lines with: a CR (a file or client writing CRLF line ends: every line then fails, as
    "bad timestamp" or "invalid number", which named the wrong thing; found by the ingest audit) or a tab."""
    if line.endswith(b"\r"):
        return f"{fault}; the line ends in a carriage return (\\r): line protocol ends lines with \\n alone, not CRLF"
    if line.endswith(b"\t"):
        return f"{fault}; the line ends in a tab, which line protocol does not allow there"
    return fault


def split_lines(body: bytes) -> list[bytes]:
    """The lines of a body as InfluxDB reads them: a newline inside a string field value belongs to the value.

    The one place a body is cut into lines after ingest (stores that read line protocol back, the
    spool): cutting at every newline would make the text of a string field (`"...\nmeter power_kw=1"`)
    a line of its own, a point nobody wrote. Lines are returned without their newline; a trailing
    newline gives no empty last line.
    """
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if b'"' not in body:
        return lines
    out: list[bytes] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        i += 1
        # '"': a string value may run on; a line of the fast-path syntax is whole (its strings hold no
        # newline, quote or backslash), without the byte-by-byte parse.
        if 34 in line and _LINE_RE.fullmatch(line) is None:
            while i < n and _unterminated(line):
                line += b"\n" + lines[i]
                i += 1
        out.append(line)
    return out


def _unterminated(line: bytes) -> bool:
    text = line.lstrip(b" \t")
    if not text or text[0] == 35:
        return False
    try:
        _parse_slow(text)
    except _Unterminated:
        return True
    except _LineError:
        return False
    return False


def parse(body: bytes, precision: str = "ns", now_ns: int | None = None, subscribed: Subscription = frozenset()) -> ParseResult:
    """Parse one body with a fresh parser (tests, tools); servers keep a `LineParser`."""
    return LineParser(subscribed).parse(body, precision, now_ns)


def parse_columns(body: bytes, now_ns: int | None = None
                  ) -> tuple[list[tuple[Block, list[int], dict[str, str]]], list[tuple[int, str]]]:
    """A body (ns, UTF-8) as typed blocks, for a store that keeps columns (the embedded store).

    Returns ([(block, its line numbers, its fields' InfluxDB types)], [(line number, error)]).
    One block per series and set of field names and types, in the order of their first line,
    so a store that takes the blocks in order sees every field's first type first, as it
    would line by line. Numbers (float, integer, unsigned, boolean) become float64 columns,
    strings object columns: the embedded store keeps numbers as REAL, and records each
    field's type from the types given (`float`, `integer`, `unsigned`, `boolean`, `string`).
    Lines without a timestamp get `now_ns` (default: the clock). Blank lines and `#`
    comments are skipped.

    Plain lines (the ingest parser's fast-path syntax) are cut by one regular expression (a string
    may hold `,` `=` and spaces), typed by `_plain_fields` and grouped by their series key's bytes,
    field names and value types; the rest (and a plain line giving a field twice) go through
    `parse_line`, with its messages.
    (Lines with strings went through `parse_line`, twice with `split_lines`' check: the job ledger's
    lines were stored about 3x slower than through this path.)
    """
    # group key -> (measurement, tags, times, rows of values, line numbers, field types)
    groups: dict[tuple, tuple[str, dict[str, str], list[int], list[tuple], list[int], dict[str, str]]] = {}
    errors: list[tuple[int, str]] = []
    series: dict[bytes, tuple[str, dict[str, str]] | None] = {}
    shapes: dict[tuple, dict[str, str]] = {}  # (field names, types signature) -> field types
    line_re = _LINE_RE.fullmatch
    for lineno, line in enumerate(split_lines(body), 1):
        if not line or line[0] == 35 or line.isspace():  # '#'
            continue
        m = line_re(line)
        info = None
        if m is not None:
            key, ts = m.group(1, 2)
            info = series.get(key, False)
            if info is False:
                info = series[key] = _plain_series(key)
        if info is not None:
            got = _plain_fields(line[len(key) + 1 : m.start(2) - 1 if ts is not None else len(line)])
            if got is not None:
                fields, sig = got
                names = tuple(fields)
                # Lines of one series and field names but other value types part.
                gkey = (key, names, sig)
                g = groups.get(gkey)
                if g is None:
                    types = shapes.get((names, sig))  # most series of a body share their field names and types
                    if types is None:
                        last = len(names) - 1  # the first field's code is the highest three bits
                        types = shapes[(names, sig)] = {k.decode(): _PLAIN_KINDS[(sig >> 3 * (last - j)) & 7]
                                                        for j, k in enumerate(names)}
                    g = groups[gkey] = (info[0], info[1], [], [], [], types)
                if ts is None:
                    now_ns = now_ns or time.time_ns()
                g[2].append(now_ns if ts is None else int(ts))
                g[3].append(tuple(fields.values()))
                g[4].append(lineno)
                continue
        try:
            p = parse_line(line)
        except LineError as exc:
            errors.append((lineno, str(exc)))
            continue
        values = {k: (v if isinstance(v, str) else float(v)) for k, v in p.fields.items()}
        gkey = (None, p.measurement, tuple(sorted(p.tags.items())), tuple((k, kind_of(v)) for k, v in p.fields.items()))
        g = groups.get(gkey)
        if g is None:
            g = groups[gkey] = (p.measurement, p.tags, [], [], [], dict(gkey[3]))
        if p.time_ns is None:
            now_ns = now_ns or time.time_ns()
        g[2].append(now_ns if p.time_ns is None else p.time_ns)
        g[3].append(tuple(values.values()))
        g[4].append(lineno)
    out = []
    for parts in _in_line_order(list(groups.values())):
        for measurement, tags, times, rows, linenos, types in parts:
            names = list(types)
            strings = "string" in types.values()
            table = np.array(rows, dtype=object if strings else np.float64).reshape(len(rows), len(names))
            cols = {}
            for j, name in enumerate(names):
                col = table[:, j]
                if strings and types[name] != "string":
                    col = col.astype(np.float64)
                cols[name] = col
            out.append((Block(measurement, dict(tags), np.array(times, dtype=np.int64), cols), linenos, types))
    return out, errors


def _in_line_order(groups: list[tuple]) -> Iterator[list[tuple]]:
    """The groups of `parse_columns` (measurement, tags, times, rows, line numbers, types), each as the
    groups to make blocks of, in order. A series' lines of one time in two groups (other field names
    or types: `a=1`, then `a=2,b=1`, then `a=3`) would be stored group by group, and the last line
    would not win: those groups are given as one group per line instead, in line order, where the
    first of them stood (a store writes a block after the blocks before it)."""
    by_series: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        by_series.setdefault((g[0], tuple(sorted(g[1].items()))), []).append(i)
    split: dict[int, list[int]] = {}  # first group of a series to split -> all its groups
    for members in by_series.values():
        if len(members) > 1:
            distinct = [set(groups[i][2]) for i in members]
            if len(set().union(*distinct)) < sum(map(len, distinct)):  # a time in two of them
                split[members[0]] = members
    gone = {i for members in split.values() for i in members[1:]}
    for i, g in enumerate(groups):
        if i in gone:
            continue
        if i not in split:
            yield [g]
            continue
        rows = sorted((n, t, row, groups[k]) for k in split[i] for n, t, row in zip(groups[k][4], groups[k][2], groups[k][3]))
        yield [(owner[0], owner[1], [t], [row], [n], owner[5]) for n, t, row, owner in rows]


# A field of a fast-path line (it matched _LINE_RE: its strings hold no quote, backslash or newline,
# its keys no separator; a string may hold `,` `=` and spaces): key, value.
_STRING_ITEM_RE = re.compile(rb'([^,=]++)=("[^"]*+"|[^,]*+)')
# The value type codes of `_plain_fields`' signature, three bits each.
_PLAIN_KINDS = ("float", "integer", "unsigned", "boolean", "string")


def _plain_fields(field_set: bytes) -> tuple[dict[bytes, float | str], int] | None:
    """Values (numbers as floats, strings decoded) and type signature (a leading 1, then three bits a
    field) of a fast-path field set; None when a key is given twice (the slow parse then says which
    value or type counts). The one place the block parser types a value by its last byte."""
    fields: dict[bytes, float | str] = {}
    sig = 1
    n = 0
    for k, v in _STRING_ITEM_RE.findall(field_set):
        n += 1
        last = v[-1]
        if last == 34:  # '"'
            fields[k] = v[1:-1].decode()
            sig = (sig << 3) + 4
        elif last < 65:  # ends in a digit or '.'
            fields[k] = float(v)
            sig <<= 3
        elif last == 105 or last == 117:  # 1i, 1u
            fields[k] = float(int(v[:-1]))
            sig = (sig << 3) + (1 if last == 105 else 2)
        else:
            fields[k] = 1.0 if _BOOLS[v] else 0.0
            sig = (sig << 3) + 3
    return (fields, sig) if len(fields) == n else None


def column_kind(col: np.ndarray) -> str:
    """The InfluxDB type of a typed batch's column (float64, int64, bool or str)."""
    dt = col.dtype
    if dt == object:
        return "string"
    if dt.kind == "b":
        return "boolean"
    if dt.kind == "i":
        return "integer"
    if dt.kind == "u":
        return "unsigned"
    return "float"


def _plain_series(key: bytes) -> tuple[str, dict[str, str]] | None:
    """(measurement, tags) of a fast-path series key; None when it has a tag twice (parse_line says so)."""
    parts = key.decode("utf-8").split(",")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        k, _, v = part.partition("=")
        if k in tags:
            return None
        tags[k] = v
    return parts[0], tags
