"""Line protocol encoding, with the escaping cases from the InfluxDB line protocol reference."""

import math

import pytest

from puewatch.lineprotocol import LineProtocolError, encode_line, encode_point, series_key


def test_plain_point_with_every_field_type():
    line = encode_point("gpu_power", {"node": "n1", "gpu": "0"}, {"power_w": 250.5, "energy_mj": 12, "ok": True, "s": "x"}, 1700000000000000000)
    assert line == 'gpu_power,gpu=0,node=n1 power_w=250.5,energy_mj=12i,ok=true,s="x" 1700000000000000000'


@pytest.mark.parametrize(
    "measurement,tags,fields,expected",
    [
        # measurement: comma and space escaped; '=' is literal there
        ("cpu load,x=y", {}, {"v": 1}, r"cpu\ load\,x=y v=1i"),
        # tag keys and values: comma, equals sign, space
        ("m", {"tag key": "a,b=c d"}, {"v": 1}, r"m,tag\ key=a\,b\=c\ d v=1i"),
        # field keys: comma, equals sign, space
        ("m", {}, {"field k=e,y": 1.5}, r"m field\ k\=e\,y=1.5"),
        # string field values: double quotes and backslashes escaped, nothing else
        ("m", {}, {"s": 'say "hi", c:\\dir = ok'}, r'm s="say \"hi\", c:\\dir = ok"'),
        # a backslash inside a tag value is literal (only special characters are escaped)
        ("m", {"path": r"C:\x"}, {"v": 1}, r"m,path=C:\x v=1i"),
        # booleans and negative integers
        ("m", {}, {"a": False, "b": -5}, "m a=false,b=-5i"),
        # unicode is written as is
        ("température", {"site": "Zürich"}, {"v": 1}, "température,site=Zürich v=1i"),
    ],
)
def test_escaping(measurement, tags, fields, expected):
    assert encode_point(measurement, tags, fields) == expected


def test_tags_sorted_and_empty_tags_omitted():
    assert series_key("m", {"b": "2", "a": "1", "empty": "", "none": None}) == "m,a=1,b=2"


def test_floats_round_trip():
    for value in (0.1, 1 / 3, 1e-300, 1.7976931348623157e308, -2.5e-7, 123456789.123456789):
        text = encode_point("m", {}, {"v": value})
        assert float(text.split("=", 1)[1]) == value


def test_nan_and_inf_fields_are_omitted_and_empty_point_not_emitted():
    assert encode_point("m", {}, {"a": math.nan, "b": 1.0, "c": math.inf}) == "m b=1.0"
    assert encode_point("m", {}, {"a": math.nan, "b": -math.inf}) is None
    assert encode_point("m", {}, {}) is None
    assert encode_point("m", {}, {"a": None}) is None


@pytest.mark.parametrize(
    "measurement,tags,fields,match",
    [
        ("m\nx", {}, {"v": 1}, "newline"),
        ("m", {"t": "a\nb"}, {"v": 1}, "newline"),
        ("m", {"t\r": "a"}, {"v": 1}, "newline"),
        ("m", {}, {"f\n": 1}, "newline"),
        ("m", {}, {"s": "two\nlines"}, "newline"),
        ("m", {"t": "ends\\"}, {"v": 1}, "backslash"),
        ("", {}, {"v": 1}, "empty"),
        ("m", {}, {"v": 2**63}, "int64"),
        ("m", {}, {"v": object()}, "unsupported value type"),
        ("_internal", {}, {"v": 1}, "reserves"),
    ],
)
def test_invalid_input_is_rejected_clearly(measurement, tags, fields, match):
    with pytest.raises(LineProtocolError, match=match):
        encode_point(measurement, tags, fields)


def test_int64_bounds_accepted():
    assert encode_point("m", {}, {"v": 2**63 - 1}) == f"m v={2**63 - 1}i"
    assert encode_point("m", {}, {"v": -(2**63)}) == f"m v={-(2**63)}i"


def test_timestamp_must_be_integer_nanoseconds():
    assert encode_line("m", {"v": 1}, 0) == "m v=1i 0"
    with pytest.raises(LineProtocolError):
        encode_line("m", {"v": 1}, 1.5)
