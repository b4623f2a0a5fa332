"""InfluxDB line protocol encoder (shared by the agent and the collector).

    measurement,tag1=v1,tag2=v2 field1=1i,field2=2.5,field3="text",field4=true 1700000000000000000

Escaping follows the InfluxDB line protocol reference:

- measurement: comma and space are escaped with a backslash;
- tag keys, tag values and field keys: comma, equals sign and space;
- string field values are double-quoted, with `"` and `\\` escaped.

Newlines cannot be represented in any of these (a line is a point), so a name,
tag value or string field containing `\\n` or `\\r` is rejected with
`LineProtocolError`, as is a name with any other ASCII control character (the
collector refuses them: invisible in reports, refused by InfluxDB 2.x). A backslash is written as is, except right before a
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
from typing import Any

__all__ = [
    "LineProtocolError",
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
    # InfluxDB 1.x also unescapes \= and \" in measurements (seen with influxd 1.6.7).
    "measurement": re.compile(r'\\(?:[,= "]|$)'),
    "key": re.compile(r"\\(?:[,= ]|$)"),
    # InfluxDB 1.x also unescapes \" in field keys.
    "field": re.compile(r'\\(?:[,= "]|$)'),
}


# InfluxDB refuses a tag key or field key named `time` (its name for the timestamp column), so the
# collector's parser refuses it too; the encoder refuses to write it. One name, for both.
RESERVED_KEY = "time"


# ASCII control characters: invisible in reports, refused in names by the collector's parser.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """Whether `text` holds an ASCII control character (a newline, a tab, ESC ...), which no name may."""
    return _CONTROL.search(text) is not None


def _check_name(text: str, what: str, special: str = "key") -> None:
    if not isinstance(text, str):
        raise LineProtocolError(f"{what} must be a string, got {type(text).__name__}: {text!r}")
    if not text:
        raise LineProtocolError(f"{what} must not be empty")
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a newline, which line protocol cannot represent")
    if _CONTROL.search(text):
        raise LineProtocolError(f"{what} {text!r} contains a control character, which the collector refuses in names")
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


def _escape_key_name(key: str, what: str) -> str:
    """A tag key or field key: escaped, never the reserved `time`."""
    if key == RESERVED_KEY:
        raise LineProtocolError(f"{what} {key!r} is reserved: InfluxDB refuses it (the name of the time column)")
    return escape_key(key, what)


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
            parts.append(f"{_escape_key_name(key, 'tag key')}={escape_key(value, 'tag value')}")
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
            out.append(f"{_escape_key_name(key, 'field key')}={text}")
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
