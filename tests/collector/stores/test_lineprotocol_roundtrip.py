"""The encoder (puewatch.lineprotocol) against the parser and against a real influxd 1.6.7:
arbitrary names, tag values and string fields with `,` `=` space `"` `\\` and unicode read
back exactly."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from puewatch.collector.stores.influx1 import Influx1Store, quote_ident, quote_string
from puewatch.collector.lineparse import LineError, parse_line
from puewatch.lineprotocol import LineProtocolError, encode_point
from servers import Influxd

SPECIAL = ',= "\\'
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1, max_size=12)
tricky = st.text(alphabet=st.sampled_from(list(SPECIAL) + list("ab_1éü中😀#")), min_size=1, max_size=10)
names = st.one_of(text, tricky)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    names,
)


def _encode_or_none(measurement, tags, fields, t):
    try:
        return encode_point(measurement, tags, fields, t)
    except LineProtocolError:
        return None


@given(measurement=names, tags=st.dictionaries(names, names, max_size=4), fields=st.dictionaries(names, values, min_size=1, max_size=4),
       t=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)))
def test_encode_then_parse_gives_the_same_point(measurement, tags, fields, t):
    line = _encode_or_none(measurement, tags, fields, t)
    assume(line is not None)
    p = parse_line(line)
    assert p.measurement == measurement
    assert p.tags == tags
    assert p.time_ns == t
    assert p.fields.keys() == fields.keys()
    for k, v in fields.items():
        got = p.fields[k]
        assert type(got) is type(v) or (isinstance(v, float) and isinstance(got, float))
        assert got == v
    assert parse_line(line.encode()) == p


@given(name=names)
def test_encoder_rejects_only_what_line_protocol_cannot_represent(name):
    """A name is refused only for the documented reasons; everything else round-trips."""
    try:
        encode_point("m", {name: "v"}, {"f": 1})
    except LineProtocolError as exc:
        # A backslash right before , = space, or at the end (influxd 1.x cannot read it back);
        # an ASCII control character (the collector refuses them in names).
        if "control character" in str(exc):
            assert re.search(r"[\x00-\x1f\x7f]", name), name
            return
        if "reserved" in str(exc):
            assert name == "time", name
            return
        assert "backslash" in str(exc)
        bad = name.endswith("\\") or any(f"\\{c}" in name for c in ",= ")
        assert bad, name
        return
    assert parse_line(encode_point("m", {name: "v"}, {"f": 1})).tags == {name: "v"}


def test_the_reserved_key_is_refused_by_the_encoder_as_by_the_parser():
    """`time` as a tag key or field key: influxd refuses it, the parser refuses it, so the encoder never writes it."""
    for tags, fields in (({"time": "x"}, {"f": 1}), ({}, {"time": 1})):
        with pytest.raises(LineProtocolError, match="reserved"):
            encode_point("m", tags, fields)
    for line in ("m,time=x f=1", "m time=1"):
        with pytest.raises(LineError):
            parse_line(line)
    assert parse_line(encode_point("m", {"t": "time"}, {"f": "time"})).tags == {"t": "time"}  # values may be `time`


@given(name=names)
def test_field_keys_reject_a_backslash_before_a_quote_too(name):
    try:
        encode_point("m", {}, {name: 1})
    except LineProtocolError as exc:
        if "control character" in str(exc):
            assert re.search(r"[\x00-\x1f\x7f]", name), name
            return
        if "reserved" in str(exc):
            assert name == "time", name
            return
        assert "backslash" in str(exc)
        bad = name.endswith("\\") or any(f"\\{c}" in name for c in ',= "')
        assert bad, name
        return
    assert parse_line(encode_point("m", {}, {name: 1})).fields == {name: 1}


@pytest.mark.parametrize(
    "line,measurement,tags,fields,t",
    [
        # Examples from the InfluxDB line protocol reference (escaping section).
        (r'"measurement\ with\ quo⚡️es\ and\ emoji",tag\ key\ with\ sp🚀ces=tag\,value\,with"commas" field_k\ey="string field value, only \" need be esc🍭ped"',
         '"measurement with quo⚡️es and emoji"', {"tag key with sp🚀ces": 'tag,value,with"commas"'},
         {"field_k\\ey": 'string field value, only " need be esc🍭ped'}, None),
        (r"wea\,ther,location=us-midwest temperature=82 1465839830100400200", "wea,ther", {"location": "us-midwest"}, {"temperature": 82.0}, 1465839830100400200),
        (r"wea\ ther,location=us-midwest temperature=82", "wea ther", {"location": "us-midwest"}, {"temperature": 82.0}, None),
        (r"weather,location\ place=us-midwest temperature=82", "weather", {"location place": "us-midwest"}, {"temperature": 82.0}, None),
        (r"weather,location=us\,midwest temperature=82", "weather", {"location": "us,midwest"}, {"temperature": 82.0}, None),
        (r"weather,location=us-midwest temp\=rature=82", "weather", {"location": "us-midwest"}, {"temp=rature": 82.0}, None),
        (r'weather,location=us-midwest temperature="too\"hot\""', "weather", {"location": "us-midwest"}, {"temperature": 'too"hot"'}, None),
        (r'weather,location=us-midwest temperature_str="too hot\\cold"', "weather", {"location": "us-midwest"}, {"temperature_str": "too hot\\cold"}, None),
        ("m a=1i,b=2u,c=-3.5e2,d=t,e=F,f=true,g=False,h=TRUE,i=f 5", "m", {}, {"a": 1, "b": 2, "c": -350.0, "d": True, "e": False, "f": True, "g": False, "h": True, "i": False}, 5),
        ("m,t=x f=18446744073709551615u -5", "m", {"t": "x"}, {"f": 2**64 - 1}, -5),
    ],
)
def test_parser_on_reference_examples(line, measurement, tags, fields, t):
    p = parse_line(line)
    assert (p.measurement, p.tags, p.fields, p.time_ns) == (measurement, tags, fields, t)


@pytest.mark.parametrize(
    "line,fault",
    [
        ("m", "missing fields"),
        ("m f", "invalid field format"),
        ("m f=", "missing field value"),
        ("m f=1 12x", "bad timestamp"),
        ("m f=1 1_000", "bad timestamp"),
        ('m f="open', "unbalanced quotes"),
        ("m,t f=1", "missing tag value"),
        ("m,t= f=1", "missing tag value"),
        ("m f=1i2", "invalid number"),
        ("m f=1_0i", "invalid number"),
        ("m f=9223372036854775808i", "value out of range"),
        ("m f=-1u", "invalid number"),
        ("m f=nan", "invalid number"),
        ("m f=1e999", "invalid float"),
        ("m f=yes", "invalid boolean"),
        ("m f=1,", "invalid field format"),
        (" f=1", "missing fields"),
        ("m =1", "missing field key"),
        ("m f=1 2 3", "point is invalid"),
        (b"m f=\xff", "unable to parse"),
    ],
)
def test_parser_names_the_fault(line, fault):
    with pytest.raises(LineError, match=fault):
        parse_line(line)


@pytest.mark.parametrize(
    "measurement,tags,match",
    [
        ("#comment", {}, "comment"),
        ("\tm", {}, "control character"),
        ("m", {"t": "a\\,b"}, "backslash"),
        ("m", {"t": "a\\ b"}, "backslash"),
        ("m", {"t\\=": "a"}, "backslash"),
        ("a\\ b", {}, "backslash"),
        ("m", {"t": "a\\\\ b"}, "backslash"),  # even runs too: influxd 1.x refuses them
        ("m", {"t": "a\\\\"}, "backslash"),
    ],
)
def test_unrepresentable_names_are_rejected(measurement, tags, match):
    with pytest.raises(LineProtocolError, match=match):
        encode_point(measurement, tags, {"f": 1})


def test_backslashes_elsewhere_round_trip():
    tags = {"t": "a\\\\b", "u": "\\c", "w": "C:\\dir"}
    line = encode_point("m\\\\x", tags, {"f\\x": 1.5, "s": 'q\\"\\'}, 7)
    assert parse_line(line) == ("m\\\\x", tags, {"f\\x": 1.5, "s": 'q\\"\\'}, 7)


# -- a real influxd ---------------------------------------------------------------------------------

# What the server is asked to store: printable characters, the escaped ones, unicode.
server_text = st.text(alphabet=st.sampled_from(list(SPECIAL) + list("aZ09_-.:/éü中😀'")), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def influxd_module(tmp_path_factory):
    server = Influxd(tmp_path_factory.mktemp("influxd-lp"))
    server.start()
    server.query('CREATE DATABASE "lp"')
    yield server
    server.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(measurement=server_text, tag_key=server_text, tag_value=server_text, field_key=server_text, string_value=server_text,
       number=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_round_trip_through_influxd(influxd_module, measurement, tag_key, tag_value, field_key, string_value, number):
    m = "m" + measurement  # never '_' or '#' first (reserved / comment)
    tags = {"t" + tag_key: tag_value}
    fields = {"n" + field_key: number, "s" + field_key: string_value}
    line = _encode_or_none(m, tags, fields, 1_600_000_000_123_456_789)
    assume(line is not None)
    influxd_module.write((line + "\n").encode(), "lp")
    store = Influx1Store(influxd_module.url, "lp")
    try:
        results = store.query(
            f"SELECT * FROM {quote_ident(m)} WHERE {quote_ident('t' + tag_key)} = {quote_string(tag_value)}"
        )
        series = results[0]["series"][0]
        assert series["name"] == m
        row = dict(zip(series["columns"], series["values"][0]))
        assert row["time"] == 1_600_000_000_123_456_789
        assert row["t" + tag_key] == tag_value
        assert row["s" + field_key] == string_value
        got = row["n" + field_key]
        assert got == number or (number == int(number) and math.isclose(got, number))
        assert store.tag_values(m, "t" + tag_key) == [tag_value]
        t, v = store.series(m, "n" + field_key, tags, 0, 2**62)
        assert t.tolist() == [1_600_000_000_123_456_789] and v.tolist() == [number]
    finally:
        store.query(f"DROP MEASUREMENT {quote_ident(m)}", write=True)
        store.close()
