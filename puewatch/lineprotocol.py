"""InfluxDB line protocol encoder (shared by the agent and the collector).

    measurement,tag1=v1,tag2=v2 field1=1i,field2=2.5,field3="text",field4=true 1700000000000000000

Escaping follows the InfluxDB line protocol reference:

- measurement: comma and space are escaped with a backslash;
- tag keys, tag values and field keys: comma, equals sign and space;
- string field values are double-quoted, with `"` and `\\` escaped.

Newlines cannot be represented in any of these (a line is a point), so a name,
tag value or string field containing `\\n` or `\\r` is rejected with
`LineProtocolError`. A backslash is written as is, except right before a
character that gets escaped (`a\\,b`) or at the end of a name or tag value:
InfluxDB 1.x reads any backslash there as escaping the separator, whatever
backslashes precede it (`a\\\\ ` is refused, a field key ending in `\\\\`
even crashed influxd 1.6.7 in our tests), so such names have no line protocol
form that reads back as themselves and are rejected. A measurement cannot start with
`#` (the line would be a comment) or a tab or NUL (skipped as leading space). Integers get the `i` suffix and must fit
in int64; floats are written with `repr()` so they read back exactly; NaN and
infinities cannot be stored by InfluxDB and are omitted; a point with no fields
left is not emitted (the encoder returns None). Tags with an empty value are
omitted (InfluxDB rejects them) and tags are sorted by key, which InfluxDB
recommends for write performance and which makes re-encoding deterministic.

For hot paths, encode the series key once with `series_key()` and then call
`encode_line()` per sample.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "LineProtocolError",
    "ParsedLine",
    "parse_line",
    "encode_fields",
    "encode_line",
    "encode_point",
    "escape_key",
    "escape_measurement",
    "series_key",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


class LineProtocolError(ValueError):
    """A value that line protocol cannot represent."""


# A backslash at the end or right before a character the escaper will escape.
_BAD_BACKSLASH = {
    # InfluxDB 1.x unescapes \" in measurements (seen with influxd 1.6.7).
    "measurement": re.compile(r'\\(?:[, "]|$)'),
    "key": re.compile(r"\\(?:[,= ]|$)"),
    # InfluxDB 1.x also unescapes \" in field keys.
    "field": re.compile(r'\\(?:[,= "]|$)'),
}


def _check_name(text: str, what: str, special: str = "key") -> None:
    if not isinstance(text, str):
        raise LineProtocolError(f"{what} must be a string, got {type(text).__name__}: {text!r}")
    if not text:
        raise LineProtocolError(f"{what} must not be empty")
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a newline, which line protocol cannot represent")
    if "\\" in text and _BAD_BACKSLASH[special].search(text):
        raise LineProtocolError(
            f"{what} {text!r} has a backslash before a separator or at its end, which line protocol cannot represent"
        )


@lru_cache(maxsize=4096)
def escape_measurement(name: str) -> str:
    _check_name(name, "measurement", "measurement")
    if name[0] in "#\t\0":
        raise LineProtocolError(f"measurement {name!r} starts with {name[0]!r}, which InfluxDB skips or reads as a comment")
    if name.startswith("_"):
        raise LineProtocolError(f"measurement {name!r} starts with '_', which InfluxDB reserves")
    return name.translate(_MEASUREMENT)


@lru_cache(maxsize=4096)
def escape_key(text: str, what: str = "tag key, tag value or field key") -> str:
    """Escape a tag key, tag value or field key."""
    _check_name(text, what, "field" if what == "field key" else "key")
    return text.translate(_KEY)


def series_key(measurement: str, tags: Mapping[str, Any] | None = None) -> str:
    """`measurement,tag=value,...` with tags sorted by key; empty tag values are left out."""
    parts = [escape_measurement(measurement)]
    if tags:
        for key in sorted(tags):
            value = tags[key]
            if value is None:
                continue
            value = str(value)
            if value == "":
                continue
            parts.append(f"{escape_key(key, 'tag key')}={escape_key(value, 'tag value')}")
    return ",".join(parts)


def _field_value(value: Any, key: str) -> str | None:
    # bool first: it is a subclass of int.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineProtocolError(f"field {key!r}: integer {value} does not fit in int64")
        return f"{value}i"
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return None  # NaN/inf: InfluxDB cannot store them; the field is omitted
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise LineProtocolError(f"field {key!r}: string value contains a newline")
        return '"' + value.translate(_STRING) + '"'
    raise LineProtocolError(f"field {key!r}: unsupported value type {type(value).__name__}")


def encode_fields(fields: Mapping[str, Any]) -> str:
    """`k=v,k2=v2` in the mapping's order; None, NaN and inf values are omitted ('' if none remain)."""
    out = []
    for key, value in fields.items():
        if value is None:
            continue
        text = _field_value(value, key)
        if text is not None:
            out.append(f"{escape_key(key, 'field key')}={text}")
    return ",".join(out)


def encode_line(key: str, fields: Mapping[str, Any], time_ns: int | None = None) -> str | None:
    """One line (without the trailing newline) for an already-encoded series key, or None when no field remains."""
    body = encode_fields(fields)
    if not body:
        return None
    if time_ns is None:
        return f"{key} {body}"
    if isinstance(time_ns, bool) or not isinstance(time_ns, int):
        raise LineProtocolError(f"timestamp must be integer nanoseconds, got {time_ns!r}")
    return f"{key} {body} {time_ns}"


def encode_point(
    measurement: str,
    tags: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    time_ns: int | None = None,
) -> str | None:
    """Encode one point; None when it has no storable field."""
    return encode_line(series_key(measurement, tags), fields, time_ns)


# -- parsing -----------------------------------------------------------------------------------
#
# A small parser with InfluxDB's rules, for the stores that must read line protocol back
# (the embedded store). The collector's ingest has its own strict, faster parser.


class ParsedLine(NamedTuple):
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | str | bool]
    time_ns: int | None


_TRUE = frozenset(("t", "T", "true", "True", "TRUE"))
_FALSE = frozenset(("f", "F", "false", "False", "FALSE"))
_UINT64_MAX = 2**64 - 1


def _scan(text: str, i: int, stops: str) -> int:
    """Index of the first unescaped character of `stops` at or after i (len(text) if none).
    A backslash skips the next character, as InfluxDB's scanner does."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c in stops:
            return i
        else:
            i += 1
    return n


def _split(text: str, seps: str) -> list[str]:
    out = []
    start = 0
    while True:
        j = _scan(text, start, seps)
        out.append(text[start:j])
        if j >= len(text):
            return out
        start = j + 1


def _unescape(raw: str, codes: str) -> str:
    """`\\c` becomes `c` for c in codes; every other backslash is literal (InfluxDB's unescaper)."""
    if "\\" not in raw:
        return raw
    out = []
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == "\\" and i + 1 < n and raw[i + 1] in codes:
            out.append(raw[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _is_int(text: str) -> bool:
    """Plain ASCII decimal with an optional minus sign (Python's int() also takes '_', '+' and spaces)."""
    digits = text[1:] if text[:1] == "-" else text
    return digits.isascii() and digits.isdigit()


def _parse_value(raw: str, key: str) -> float | int | str | bool:
    if not raw:
        raise LineProtocolError(f"field {key!r} has no value")
    c = raw[0]
    if c == '"':
        if len(raw) < 2 or raw[-1] != '"':
            raise LineProtocolError(f"field {key!r}: unterminated string {raw!r}")
        return _unescape(raw[1:-1], '"\\')
    last = raw[-1]
    if last == "i" or last == "u":
        try:
            if not _is_int(raw[:-1]):
                raise ValueError
            value = int(raw[:-1], 10)
        except ValueError:
            raise LineProtocolError(f"field {key!r}: invalid integer {raw!r}") from None
        if last == "i" and not INT64_MIN <= value <= INT64_MAX:
            raise LineProtocolError(f"field {key!r}: integer {raw!r} out of int64 range")
        if last == "u" and not 0 <= value <= _UINT64_MAX:
            raise LineProtocolError(f"field {key!r}: unsigned integer {raw!r} out of uint64 range")
        return value
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if c not in "+-.0123456789" or "_" in raw:
        raise LineProtocolError(f"field {key!r}: invalid value {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise LineProtocolError(f"field {key!r}: invalid number {raw!r}") from None
    if not math.isfinite(value):
        raise LineProtocolError(f"field {key!r}: {raw!r} is not a finite number")
    return value


def parse_line(line: str | bytes) -> ParsedLine:
    """Parse one line of line protocol (no trailing newline); raises LineProtocolError saying what is wrong.

    Escapes per the InfluxDB reference: measurement `\\,` `\\ `; tag keys, tag values and field
    keys `\\,` `\\=` `\\ `; string fields `\\"` `\\\\`. Integers `i`, unsigned `u`, floats, booleans
    t/T/true/True/TRUE/f/F/false/False/FALSE; the timestamp is optional (None when absent).
    """
    if isinstance(line, bytes):
        try:
            line = line.decode()
        except UnicodeDecodeError:
            raise LineProtocolError("line is not valid UTF-8") from None
    where = f"in line {line[:80]!r}"
    # Series key: measurement and tags up to the first unescaped space (quotes are literal there).
    n = len(line)
    escaped = "\\" in line
    k_end = _scan(line, 0, " ") if escaped else line.find(" ")
    if k_end < 0 or k_end >= n:
        raise LineProtocolError(f"no fields {where}")
    key_raw = line[:k_end]
    parts = _split(key_raw, ",") if escaped else key_raw.split(",")
    measurement = _unescape(parts[0], ", ")
    if not measurement:
        raise LineProtocolError(f"missing measurement {where}")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        kv = _split(part, "=") if escaped else part.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise LineProtocolError(f"invalid tag {part!r} {where} (want key=value)")
        tags[_unescape(kv[0], ",= ")] = _unescape(kv[1], ",= ")
    # Fields: key=value pairs separated by commas; a string value is quoted and may hold anything.
    fields: dict[str, float | int | str | bool] = {}
    i = k_end + 1
    while True:
        eq = _scan(line, i, "=, ")
        if eq >= n or line[eq] != "=":
            raise LineProtocolError(f"invalid field {line[i:eq + 1]!r} {where} (want key=value)")
        if eq == i:
            raise LineProtocolError(f"field with no key {where}")
        key = _unescape(line[i:eq], ',= "')
        v = eq + 1
        if v < n and line[v] == '"':
            close = _scan(line, v + 1, '"')
            if close >= n:
                raise LineProtocolError(f"field {key!r}: unterminated string {where}")
            end = close + 1
        else:
            end = _scan(line, v, ", ")
        fields[key] = _parse_value(line[v:end], key)
        if end >= n:
            time_ns = None
            break
        if line[end] == ",":
            i = end + 1
            continue
        if line[end] != " ":
            raise LineProtocolError(f"field {key!r}: unexpected {line[end]!r} after the value {where}")
        time_raw = line[end + 1 :]
        try:
            if not _is_int(time_raw):
                raise ValueError
            time_ns = int(time_raw, 10)
        except ValueError:
            raise LineProtocolError(f"invalid timestamp {time_raw!r} {where}") from None
        if not INT64_MIN <= time_ns <= INT64_MAX:
            raise LineProtocolError(f"timestamp {time_raw!r} out of int64 range")
        break
    return ParsedLine(measurement, tags, fields, time_ns)
