"""The line protocol parser: InfluxDB's rules and messages, normalisation, fast path = slow path."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from puewatch.collector import lineparse
from puewatch.collector.lineparse import MAX_TIME_NS, LineParser, Point, parse
from puewatch.lineprotocol import LineProtocolError, encode_point

NOW = 1_700_000_000_123_456_789
ALL = frozenset({"m", "m x", "gpu_power", "cpu"})


def one(line: bytes, precision: str = "ns") -> Point:
    r = parse(line, precision, now_ns=NOW, subscribed=ALL)
    assert r.error_count == 0, r.errors
    assert r.lines == 1 and len(r.points) == 1
    return r.points[0]


def fault(line: bytes, precision: str = "ns") -> str:
    r = parse(line, precision, now_ns=NOW, subscribed=ALL)
    assert r.lines == 0 and r.body == b"" and r.points == []
    assert r.error_count == 1 and len(r.errors) == 1
    msg = r.errors[0]
    assert msg.endswith(" (line 1)")
    return msg.split("': ", 1)[1].removesuffix(" (line 1)")


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"m f=1 5", Point("m", {}, {"f": 1.0}, 5)),
        (b"m,t=a,u=b f=1i,g=-2i,h=3u,s=\"x y\",b=t 5", Point("m", {"t": "a", "u": "b"}, {"f": 1, "g": -2, "h": 3, "s": "x y", "b": True}, 5)),
        (b"m f=-1.5e-3,g=.5,h=1.,i=1E+5,j=-.25 5", Point("m", {}, {"f": -1.5e-3, "g": 0.5, "h": 1.0, "i": 1e5, "j": -0.25}, 5)),
        (b"m a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE 5",
         Point("m", {}, {**dict.fromkeys("abcde", True), **dict.fromkeys("fghij", False)}, 5)),
        (b"m\\ x,t\\ 1=a\\,b\\=c f\\=1\\ 2=1 5", Point("m x", {"t 1": "a,b=c"}, {"f=1 2": 1.0}, 5)),
        (b'm s="a\\"b\\\\c\\d" 5', Point("m", {}, {"s": 'a"b\\c\\d'}, 5)),
        (b'm s="" 5', Point("m", {}, {"s": ""}, 5)),
        (b"m f=1,f=2 5", Point("m", {}, {"f": 2.0}, 5)),  # influxd accepts a repeated field: last wins
        (b"m f=1", Point("m", {}, {"f": 1.0}, NOW)),  # no timestamp: receive time
        (b"m f=1 -5", Point("m", {}, {"f": 1.0}, -5)),
        (b"m f=9223372036854775807i,g=-9223372036854775808i,h=18446744073709551615u 5",
         Point("m", {}, {"f": 2**63 - 1, "g": -(2**63), "h": 2**64 - 1}, 5)),
        (b"m f=1 9223372036854775806", Point("m", {}, {"f": 1.0}, MAX_TIME_NS)),
        ("m,t=é f=\"ü\" 5".encode(), Point("m", {"t": "é"}, {"f": "ü"}, 5)),
        (b"m,t=1  f=1   5  ", Point("m", {"t": "1"}, {"f": 1.0}, 5)),
        (b"  m f=1 5", Point("m", {}, {"f": 1.0}, 5)),
        (b"m f=" + b"1" * 300 + b" 5", Point("m", {}, {"f": float("1" * 300)}, 5)),
    ],
)
def test_good_lines(line, expected):
    assert one(line) == expected


NOT_A_VALUE = ": a field value is a number (1.5, -2, 15i, 15u; no leading +, no Inf), a string in double quotes or a boolean (t, true, f, false)"


@pytest.mark.parametrize(
    "line, message",
    [
        (b"m", "missing fields"),
        (b"m ", "invalid field format"),
        (b",t=1 f=1", "missing measurement"),
        (b"m,t=1,t=2 f=1 1", "duplicate tags"),
        (b"m,t= f=1", "missing tag value"),
        (b"m,t f=1", "missing tag value"),
        (b"m,=1 f=1", "missing tag key"),
        (b"m, f=1", "missing tag key"),
        (b"m,t=a=b f=1", "invalid tag format"),
        (b"m,t=1", "missing fields"),
        (b"m f", "invalid field format"),
        (b"m =1", "missing field key"),
        (b"m f=", "missing field value"),
        (b"m f=1,g= 1", "missing field value"),
        (b"m f=1,", "invalid field format"),
        (b"m f=1, 1", "invalid field format"),
        (b"m f=+1", "invalid boolean '+1'" + NOT_A_VALUE),
        (b"m f=+Inf", "invalid boolean '+Inf'" + NOT_A_VALUE),
        (b"m f=tRue", "invalid boolean 'tRue'" + NOT_A_VALUE),
        (b"m f=yes", "invalid boolean 'yes'" + NOT_A_VALUE),
        (b"\xef\xbb\xbfm f=1", "the line starts with a byte order mark (U+FEFF, which some editors write at the start "
                                  "of a UTF-8 file): remove it"),
        (b"m f=NaN", "invalid number"),
        (b"m f=nan", "invalid number"),
        (b"m f=-", "invalid number"),
        (b"m f=1i2", "invalid number"),
        (b"m f=1.5i", "invalid number"),
        (b"m f=-1u", "invalid number"),
        (b"m f=1.1.1", "invalid number"),
        (b"m f=1e999", "invalid float"),
        (b"m f=" + b"9" * 400, "invalid float"),
        (b"m f=9223372036854775808i", "unable to parse integer 9223372036854775808: value out of range"),
        (b"m f=18446744073709551616u", "unable to parse unsigned 18446744073709551616: value out of range"),
        (b'm f="abc', "unbalanced quotes"),
        (b'm f="a"b', "invalid field format"),
        (b"m f=1 1x", "bad timestamp"),
        (b"m f=1 +1", "bad timestamp"),
        (b"m f=1 1\r", "bad timestamp; the line ends in a carriage return (\\r): line protocol ends lines with \\n alone, not CRLF"),
        (b"m f=1 1.5", "bad timestamp"),
        (b"m f=1 1 2", "point is invalid"),
        (b"m f=1 9223372036854775807", f"time outside range {-(2**63) + 2} - {2**63 - 2}"),
        (b"m time=1", 'invalid field name: input field "time" on measurement "m" is invalid'),
        (b"m,time=1 f=1", 'invalid tag key: input tag "time" on measurement "m" is invalid'),
        (b"m,t=\xff f=1", "invalid UTF-8"),
    ],
)
def test_bad_lines(line, message):
    assert fault(line) == message


def test_error_names_line_and_quotes_it_on_one_line():
    r = parse(b"m f=1 1\n\n# note\nm,t=1 f= 3\nm f=2 2\nm f=1 1\r\n")
    assert r.lines == 2 and r.body == b"m f=1 1\nm f=2 2\n"
    assert r.errors == [
        "unable to parse 'm,t=1 f= 3': missing field value (line 4)",
        "unable to parse 'm f=1 1\\r': bad timestamp; the line ends in a carriage return (\\r): line protocol ends "
        "lines with \\n alone, not CRLF (line 6)",
    ]
    # A CRLF body fails every line: each says why (it read "bad timestamp" or "invalid number", which named the
    # wrong thing; found by the ingest audit), and so does a trailing tab.
    r = parse(b"m f=2\r\nm f=1 1\t\n")
    assert r.lines == 0 and [e.split("; ", 1)[1] for e in r.errors] == [
        "the line ends in a carriage return (\\r): line protocol ends lines with \\n alone, not CRLF (line 1)",
        "the line ends in a tab, which line protocol does not allow there (line 2)"]


def test_long_bad_line_is_cut_in_the_message():
    r = parse(b"m,t=" + b"x" * 1000 + b" f=")
    assert len(r.errors[0]) < 300 and "...': missing field value (line 1)" in r.errors[0]


def test_errors_beyond_the_cap_are_counted():
    r = parse(b"bad\n" * 500 + b"m f=1 1\n")
    assert r.error_count == 500 and len(r.errors) == lineparse.MAX_ERRORS and r.lines == 1


def test_comments_blank_lines_and_body_passthrough():
    body = b"m f=1 1\nm f=2 2\n"
    assert parse(body).body is body  # agent bodies go to the store untouched
    r = parse(b"# c\n   \n\t# c2\nm f=1 1")
    assert r.body == b"m f=1 1\n" and r.lines == 1 and r.error_count == 0
    assert parse(b"").lines == 0 and parse(b"\n\n# x\n").body == b""


@pytest.mark.parametrize("precision, unit", [("ns", 1), ("n", 1), ("us", 10**3), ("u", 10**3), ("ms", 10**6), ("s", 10**9), ("m", 60 * 10**9), ("h", 3600 * 10**9)])
def test_precision_normalised_to_ns(precision, unit):
    r = parse(b"m f=1 7\nm\\ x f=\"s\" 8\nm g=1i", precision, now_ns=NOW, subscribed=ALL)
    assert r.error_count == 0
    now = NOW - NOW % unit  # InfluxDB truncates the receive time to the precision
    assert r.body == f'm f=1 {7 * unit}\nm\\ x f="s" {8 * unit}\nm g=1i {now}\n'.encode()
    assert [p.time_ns for p in r.points] == [7 * unit, 8 * unit, now]


def test_precision_overflow_and_unknown_precision():
    assert fault(b"m f=1 9223372036854", "s").startswith("time outside range")
    # A ns timestamp sent with precision=s: the error names the precision that scaled it (operator audit).
    assert "(the timestamp, with precision=s, times 1000000000 ns)" in fault(b"m f=1 1764795600000000000", "s")
    with pytest.raises(ValueError, match="invalid precision 'xs'"):
        parse(b"m f=1", "xs")


def test_string_with_newline_spans_lines_as_in_influxdb():
    r = parse(b'm f="a\nb" 1\nm f=2 2\nm s="x\n', subscribed=ALL)
    assert [p.fields for p in r.points] == [{"f": "a\nb"}, {"f": 2.0}]
    assert r.body == b'm f="a\nb" 1\nm f=2 2\n'
    assert r.errors == ["unable to parse 'm s=\"x': unbalanced quotes (line 4)"]


def test_points_only_for_subscribed_measurements():
    body = b"gpu_power,gpu=0 p=1 1\nhost,node=a load=1 1\ngpu_power,gpu=1 p=2 2\n"
    r = LineParser({"gpu_power"}).parse(body)
    assert r.lines == 3 and [p.tags["gpu"] for p in r.points] == ["0", "1"]
    assert LineParser().parse(body).points == []
    # each point owns its tags: changing one does not change the next
    r.points[0].tags["x"] = "y"
    assert "x" not in LineParser({"gpu_power"}).parse(body).points[0].tags


def test_duplicate_tags_found_on_the_fast_path_too():
    p = LineParser()
    good = b"m,a=1,b=2 f=1 1\n" * 3
    assert p.parse(good).lines == 3
    r = p.parse(good + b"m,a=1,a=2 f=1 1\n")
    assert r.lines == 3 and r.errors == ["unable to parse 'm,a=1,a=2 f=1 1': duplicate tags (line 4)"]


# -- property tests ----------------------------------------------------------------------------

_names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    # A backslash right before a special character (or at the end) is ambiguous in line
    # protocol itself; InfluxDB has the same limit.
    lambda s: not any(s[i] == "\\" and (i + 1 == len(s) or s[i + 1] in ", =\\") for i in range(len(s)))
)
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=20),
)


@given(
    measurement=_names.filter(lambda s: not s.startswith(("_", "#")) and s.lstrip(" \t") == s),
    tags=st.dictionaries(_names.filter(lambda s: s != "time"), _names, max_size=4),
    fields=st.dictionaries(_names.filter(lambda s: s != "time"), _values, min_size=1, max_size=5),
    time_ns=st.one_of(st.none(), st.integers(-(2**63) + 2, 2**63 - 2)),
)
def test_round_trip_with_the_encoder(measurement, tags, fields, time_ns):
    try:
        line = encode_point(measurement, tags, fields, time_ns)
    except LineProtocolError:
        assume(False)
    assume(line is not None)
    r = parse(line.encode(), now_ns=NOW, subscribed=frozenset({measurement}))
    assert r.errors == [] and r.lines == 1
    (p,) = r.points
    assert p.measurement == measurement
    assert p.tags == {k: str(v) for k, v in tags.items()}
    assert p.fields == {k: v for k, v in fields.items() if not (isinstance(v, float) and not math.isfinite(v))}
    assert all(type(p.fields[k]) is type(v) for k, v in fields.items())
    assert p.time_ns == (NOW if time_ns is None else time_ns)
    # the normalised body parses to the same point, on the fast path if it has one
    again = parse(r.body, subscribed=frozenset({measurement}))
    assert again.points == [p] and again.body == r.body


_plain = st.text("abcxyz_019.-", min_size=1, max_size=8)


@given(
    tags=st.dictionaries(_plain, _plain, max_size=3),
    fields=st.dictionaries(_plain.filter(lambda s: s != "time"), _values, min_size=1, max_size=5),
    time_ns=st.integers(-(10**18), 9 * 10**18),
)
def test_fast_path_agrees_with_the_slow_path(tags, fields, time_ns):
    line = encode_point("cpu", tags, fields, time_ns)
    assume(line is not None)
    raw = line.encode()
    r = parse(raw, subscribed=ALL)
    assert r.errors == []
    measurement, stags, sfields, ts, _ = lineparse._parse_slow(raw)
    assert r.points == [Point(measurement, stags, sfields, ts)]
    # whole-body findall, per-line regex and the byte parser give the same answer
    p = LineParser(ALL)
    by_line = p._by_line(raw + b"\n", 1, NOW)
    assert by_line.points == r.points and by_line.body == raw + b"\n"


# Series keys the whole-body path cuts at the first space and must send line by line (escapes, quotes,
# a comment, whitespace, control bytes, an empty or reserved tag, duplicate tags), among plain ones.
_KEYS = st.sampled_from([
    b"m", b"m,a=1", b"m,a=1,b=2", b"gpu_power,gpu=0,node=n1", b"m,a=1,a=2", b"m\\,x", b"m\\ x", b"m,a\\=b=1",
    b'm,a="1"', b"#m", b"m\tx", b"m,a=1\r", b"m,=1", b"m,a=", b"m,a", b"m,time=1", b",a=1", b"m,,a=1",
    b"m\x00", b"m,a=\x7f", "m,a=é".encode(), b"m,a=\xff",
])


@given(st.lists(st.tuples(_KEYS, st.sampled_from([b"f=1", b"f=1i", b"g=2,f=1", b'f="x"'])), min_size=1, max_size=6))
def test_whole_body_path_agrees_with_line_by_line(lines):
    """The whole-body path checks each distinct series key on its own: any key it cannot take sends the
    body line by line, so the answer is the same either way."""
    body = b"".join(b"%s %s %d\n" % (key, fields, 1_700_000_000_000_000_000 + i) for i, (key, fields) in enumerate(lines))
    whole = LineParser(ALL).parse(body, now_ns=NOW)
    by_line = LineParser(ALL)._by_line(body, 1, NOW)
    assert (whole.body, whole.lines, whole.errors, whole.refused, whole.points) == (
        by_line.body, by_line.lines, by_line.errors, by_line.refused, by_line.points)
    assert sorted(map(repr, whole.series)) == sorted(map(repr, by_line.series))


@given(st.binary(max_size=60))
def test_any_bytes_give_a_result_or_a_line_error(data):
    r = parse(data, now_ns=NOW, subscribed=ALL)
    assert r.lines + r.error_count <= data.count(b"\n") + 1
    if r.lines:
        again = parse(r.body, subscribed=ALL)  # what we pass on is valid line protocol
        assert again.error_count == 0 and again.points == r.points


# -- subscriptions with required fields ---------------------------------------------------------

_AGENT = (
    b"gpu_power,gpu=0,node=n1 power_average_w=300.5,energy_mj=123i,energy_estimated=false 1\n"
    b"gpu_power,gpu=1,node=n1 power_average_w=301.5 2\n"
    b"host,node=n1 load1=1.5,energy_mj=7i 3\n"
    b"gpu_power,gpu=0,node=n1 power_average_w=299.5 4\n"
    b"gpu_power,gpu=1,node=n1 energy_mj=456i,power_average_w=302.5 5\n"
)


def test_required_field_builds_points_only_for_lines_that_carry_it():
    r = LineParser({"gpu_power": ("energy_mj",)}).parse(_AGENT)
    assert r.lines == 5 and r.body == _AGENT  # every line is still accepted and passed on
    assert [(p.tags["gpu"], p.fields["energy_mj"], p.time_ns) for p in r.points] == [("0", 123, 1), ("1", 456, 5)]
    assert r.points[0].fields == {"power_average_w": 300.5, "energy_mj": 123, "energy_estimated": False}
    # a plain set of names (the old form) and an empty tuple still mean every line
    assert len(LineParser({"gpu_power"}).parse(_AGENT).points) == 4
    assert len(LineParser({"gpu_power": ()}).parse(_AGENT).points) == 4
    # the line-by-line path (seconds precision) agrees
    by_line = LineParser({"gpu_power": ("energy_mj",)}).parse(_AGENT, "s")
    assert [p.fields["energy_mj"] for p in by_line.points] == [123, 456]


def test_several_required_fields_and_measurements_keep_body_order():
    body = (
        b"modbus,meter=incomer power_w=1000 1\n"
        b"modbus,meter=ups energy_wh=5.5 2\n"
        b"modbus,meter=ups voltage_v=230 3\n"
        b"gpu_power,gpu=0 energy_mj=9i 4\n"
        b"modbus,meter=both energy_wh=1,power_w=2 5\n"
    )
    sub = {"modbus": ("power_w", "energy_wh"), "gpu_power": ("energy_mj",)}
    r = LineParser(sub).parse(body)
    assert [p.time_ns for p in r.points] == [1, 2, 4, 5]  # each line once, in order
    assert [p.time_ns for p in LineParser(sub).parse(body, "ms").points] == [1_000_000, 2_000_000, 4_000_000, 5_000_000]
    # mixed: one measurement with every line, one with a required field
    mixed = LineParser({"modbus": (), "gpu_power": ("energy_mj",)}).parse(body)
    assert [p.time_ns for p in mixed.points] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "line",
    [
        b'gpu_power,gpu=0 note=",energy_mj=1i" 1',  # in a string value (fast path)
        b"gpu_power,energy_mj=5 p=1 1",  # a tag key
        b"gpu_power,gpu=0 xenergy_mj=1i 1",  # a longer field key
        b"gpu_power,gpu=0 a\\,energy_mj=1i 1",  # an escaped comma: the key is "a,energy_mj"
        b'gpu_power,gpu=0 note="x\\"energy_mj=1" 1',  # an escaped quote in a string (slow path)
        b"gpu_power,gpu=0 energy_mj_total=1i 1",
    ],
)
def test_lookalikes_of_a_required_field_build_no_point(line):
    r = LineParser({"gpu_power": ("energy_mj",)}).parse(line + b"\n" + line + b"\n")
    assert r.error_count == 0 and r.lines == 2
    assert r.points == []


@pytest.mark.parametrize(
    "line, field",
    [
        (b"gpu_power,gpu=0 energy_mj=1i 1", "energy_mj"),
        (b'gpu_power,gpu=0 note="a b",energy_mj=1i 1', "energy_mj"),  # after a string with a space
        (b"gpu_power,gpu=0 energy\\ mj=1i 1", "energy mj"),  # escaped key (slow path)
        (b"gpu_power,gpu=0 e\\=j=1i,x=2 1", "e=j"),
        (b"gpu_power\\ x,gpu=0 energy_mj=1i 1", None),  # another measurement: not subscribed
        (b"  gpu_power,gpu=0 energy_mj=1i", "energy_mj"),  # leading spaces, no timestamp
    ],
)
def test_required_fields_are_found_on_every_path(line, field):
    r = LineParser({"gpu_power": (field or "energy_mj",)}).parse(line, now_ns=NOW)
    assert r.error_count == 0 and r.lines == 1
    assert [field in p.fields for p in r.points] == ([True] if field else [])


def test_a_field_list_given_as_one_string_is_refused():
    with pytest.raises(TypeError, match="tuple of names, not the string 'energy_mj'"):
        LineParser({"gpu_power": "energy_mj"})
    with pytest.raises(TypeError, match="set of measurement names"):
        LineParser("gpu_power")
    assert lineparse.subscription(["a", "b"]) == {"a": (), "b": ()}
    assert lineparse.subscription({"a": ["x", "x", "y"]}) == {"a": ("x", "y")}


@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["gpu_power", "host", "m x"]),
            st.dictionaries(_names.filter(lambda s: s != "time"), _names, max_size=2),
            st.dictionaries(st.one_of(st.sampled_from(["energy_mj", "power_w", "e,=j"]), _names.filter(lambda s: s != "time")),
                            _values, min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=8,
    ),
    required=st.sampled_from([("energy_mj",), ("e,=j",), ("energy_mj", "power_w")]),
)
def test_required_fields_never_miss_a_line(lines, required):
    """No false negatives: the same points as subscribing to everything and filtering exactly."""
    body = []
    for i, (measurement, tags, fields) in enumerate(lines):
        try:
            line = encode_point(measurement, tags, fields, i + 1)
        except LineProtocolError:
            continue
        if line is not None:
            body.append(line)
    assume(body)
    raw = ("\n".join(body) + "\n").encode()
    every = LineParser({"gpu_power", "m x"}).parse(raw)
    expected = [p for p in every.points if any(f in p.fields for f in required)]
    for precision in ("ns", "us"):  # the whole-body fast path and the line-by-line path
        r = LineParser({"gpu_power": required, "m x": required}).parse(raw, precision)
        scale = 1 if precision == "ns" else 1000
        assert [(p.measurement, p.tags, p.fields, p.time_ns // scale) for p in r.points] == [
            (p.measurement, p.tags, p.fields, p.time_ns) for p in expected
        ]
