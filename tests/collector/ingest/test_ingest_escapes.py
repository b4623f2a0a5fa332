"""InfluxDB 1.x's escaping rules and the lines influxd 1.6.7 misreads or crashes on (docs/lineprotocol.md)."""

from __future__ import annotations

import sqlite3

import pytest

from puewatch.collector.fieldtypes import NUMBER
from puewatch.collector.lineparse import LineError, LineParser, parse, parse_line
from puewatch.collector.main import ingest_field_types
from puewatch.collector.stores.embedded import EmbeddedStore


@pytest.mark.parametrize("line, tags", [
    ("cpu,reg\\\\=ion=east v=1", {"reg\\=ion": "east"}),  # a byte after a backslash is escaped
    ("cpu,regions=east\\\\  v=1", {"regions": "east\\ "}),
    ("cpu,host=two\\\\ words v=1", {"host": "two\\ words"}),
    ("cpu,t==1 v=1", {"t": "=1"}),  # a tag value may start with `=`
])
def test_tags_escape_as_influxdb_1x(line, tags):
    assert parse_line(line).tags == tags


@pytest.mark.parametrize("line, fault", [
    ('m \\\\="="', "field key ends in a backslash"),  # the shape that panics influxd 1.6.7
    ("m,k=x\x01y v=1", "invalid character"),
    ("m x\x01y=1", "invalid character"),
    ('dup v=1,v="s"', "field type conflict"),
    ("escm\\\\ v=1 1600000000000008000", "invalid field format"),
])
def test_lines_influxd_misreads_are_refused(line, fault):
    with pytest.raises(LineError, match=fault):
        parse_line(line)
    result = parse(line.encode())  # the same answer on the ingest path, counted
    assert result.lines == 0 and result.error_count == 1 and fault in result.errors[0]


def test_a_field_given_twice_with_one_type_keeps_the_last_value():
    assert parse_line("dup v=1,v=2 5").fields == {"v": 2.0}


def test_ingest_learns_the_embedded_stores_field_types(tmp_path):
    store = EmbeddedStore(tmp_path / "s.sqlite")
    store.write(b'm n=1 1700000000000000000\nm s="x" 1700000000000000000\n')
    assert store.field_kinds() == {("m", "n"): "number", ("m", "s"): "string"}
    types = ingest_field_types(store)
    # The store keeps InfluxDB's type, not only number or string: `n=1i` is refused as influxd refuses it.
    assert types.known("m", "n") == "float" and types.known("m", "s") == "string" and types.unsigned
    for line in (b'm n="text" 1700000000000000001\n', b"m n=1i 1700000000000000001\n"):
        result = LineParser(types=types).parse(line)
        assert result.lines == 0 and result.store_refused == 1 and "field type conflict" in result.errors[0]
    store.close()


def test_a_field_from_a_store_older_than_its_types_takes_any_number(tmp_path):
    store = EmbeddedStore(tmp_path / "s.sqlite")
    store.write(b"m n=1 1700000000000000000\n")
    store.close()
    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute("DELETE FROM field_types")  # as a file written before the store kept field types
    db.commit()
    db.close()
    store = EmbeddedStore(tmp_path / "s.sqlite")
    assert store.field_types() == {("m", "n"): "number"}
    types = ingest_field_types(store)
    assert types.known("m", "n") == NUMBER
    assert LineParser(types=types).parse(b"m n=1i 1700000000000000001\n").lines == 1
    store.close()
