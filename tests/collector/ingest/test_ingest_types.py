"""A 204 means what InfluxDB's 204 means: field types (the schema's for puewatch's series, else the first
write's), unsigned integers and key length are decided at ingest, and refused lines are counted exactly."""

from puewatch.collector.fieldtypes import FieldTypes
from puewatch.collector.lineparse import LineParser

T = 1_700_000_000_000_000_000


def test_schema_fixes_gpu_power_types_whoever_writes_first():
    p = LineParser(types=FieldTypes())
    r = p.parse(f'gpu_power,node=attacker power_average_w="x" {T}\ngpu_power,node=a power_average_w=250.5 {T}\n'.encode())
    assert r.lines == 1 and r.store_refused == 1
    assert "field type conflict" in r.errors[0] and "line 1" in r.errors[0]


def test_conflicts_within_a_body_and_across_requests_on_both_paths():
    types = FieldTypes()
    p = LineParser(types=types)
    r = p.parse(f"cpu v=1i {T}\ncpu v=1.5 {T + 1}\n".encode())  # fast-path syntax, conflict inside the body
    assert (r.lines, r.store_refused) == (1, 1) and "already exists as type integer" in r.errors[0]
    r = p.parse(f"cpu v=2.5 {T + 2}\n".encode())  # a later request
    assert (r.lines, r.store_refused) == (0, 1)
    r = p.parse(f"cpu v=3i {T + 3}\ncpu,h=a\\ b v=4i\n".encode())  # slow path agrees
    assert (r.lines, r.store_refused) == (2, 0)


def test_unsigned_refused_only_for_a_store_without_them():
    assert LineParser(types=FieldTypes(unsigned=True)).parse(f"m u=1u {T}\n".encode()).lines == 1
    r = LineParser(types=FieldTypes(unsigned=False)).parse(f"m u=1u {T}\n".encode())
    assert r.lines == 0 and r.store_refused == 1 and "unsigned" in r.errors[0]


def test_keys_over_64_kib_refused():
    r = LineParser(types=FieldTypes()).parse(("m" * 65536 + f" v=1 {T}\n").encode())
    assert r.lines == 0 and r.store_refused == 1 and "max key length exceeded" in r.errors[0]


def test_names_differing_only_in_digits_each_get_their_type_on_the_whole_body_path():
    # The whole-body check reads one line per shape (its text with number bytes deleted): `a`, `a2`
    # and `a17` have one shape, as do the measurements `m1` and `m2`. Whichever line stands for the
    # shape, every field is recorded, so a later request with another type is refused, never a 204.
    for order in ((f"h a=1 {T}", f"h a2=1 {T}", f"h a17=1 {T}"), (f"h a2=1 {T}", f"h a=1 {T}")):
        types = FieldTypes()
        p = LineParser(types=types)
        assert p.parse(("\n".join(order) + "\n").encode()).lines == len(order)
        for name in ("a", "a2"):
            r = p.parse(f'h {name}="x" {T + 1}\n'.encode())
            assert (r.lines, r.store_refused) == (0, 1) and "already exists as type float" in r.errors[0], (order, name)
    p = LineParser(types=FieldTypes())
    assert p.parse(f"m1 v=1i {T}\nm2 v=2i {T}\n".encode()).lines == 2
    for m in ("m1", "m2"):
        r = p.parse(f"{m} v=1.5 {T + 1}\n".encode())
        assert (r.lines, r.store_refused) == (0, 1) and "already exists as type integer" in r.errors[0], m


def test_by_line_path_checks_types_without_reading_plain_lines_twice():
    # Lines without a timestamp (and other precisions) go line by line: conflicts are still caught.
    p = LineParser(types=FieldTypes())
    r = p.parse(b'cpu v=1i,w="a, b=c d"\ncpu v=2.5\ncpu w=3i\ncpu x=1i,x=2.5\ncpu v=4i\n', precision="s")
    assert r.lines == 2 and r.store_refused == 2 and r.error_count == 1
    assert "given twice" in r.errors[0] or "given twice" in " ".join(r.errors)
