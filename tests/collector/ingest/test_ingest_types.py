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


def test_whole_body_and_line_by_line_paths_decide_types_alike():
    # The whole-body check reads one line per shape and each line whose field keys hold a number
    # byte; the line-by-line pass reads every line. Seeded random bodies of names that differ only in
    # digits and values of every fast-path type: both paths accept, refuse and learn the same.
    import random

    rng = random.Random(13)
    values = {"float": ("1.5", "2", "-3e4"), "integer": ("1i", "-7i"), "unsigned": ("4u",), "boolean": ("true", "F")}
    whole_path = 0
    for _ in range(200):
        lines = []
        for j in range(rng.randrange(1, 8)):
            names = rng.sample(["a", "a1", "a2", "a17", "b", "load5", "x.y", "c-d"], rng.randrange(1, 4))
            fields = ",".join(f"{n}={rng.choice(values[rng.choice(list(values))])}" for n in names)
            lines.append(f"{rng.choice(['m', 'n'])},t={rng.choice(['x', 'x1', 'y'])} {fields} {T + j}")
        body = ("\n".join(lines) + "\n").encode()
        whole, by_line = FieldTypes(), FieldTypes()
        r1 = LineParser(types=whole).parse(body)
        r2 = LineParser(types=by_line).parse(b"# by line\n" + body)  # a comment sends the body line by line
        accepted = r1.lines, r1.store_refused + r1.error_count
        assert accepted == (r2.lines, r2.store_refused + r2.error_count), body
        if r1.body is body:  # the whole-body path took it (the body passed on unchanged): it learnt alike
            whole_path += 1
            assert dict(whole._known) == dict(by_line._known), body
    assert whole_path >= 50


def test_lines_with_strings_on_the_whole_body_path_learn_each_field_and_nothing_inside_a_string():
    # A string may hold `,` `=` and spaces shaped like fields: only the real fields get a type.
    types = FieldTypes()
    p = LineParser(types=types)
    r = p.parse(f'led,n=a job="j, x=1i y=2",n=1i,ok=true {T}\nled,n=a job="k",n=2i,ok=false {T + 1}\n'.encode())
    assert (r.lines, r.store_refused) == (2, 0)
    assert (types.known("led", "job"), types.known("led", "n"), types.known("led", "ok")) == ("string", "integer", "boolean")
    assert types.known("led", "x") is None and types.known("led", "y") is None
    assert p.parse(f"led x=1.5,y=true {T + 2}\n".encode()).lines == 1
    # A conflict inside one body among lines with strings is refused, the line named.
    r = p.parse(f'led,n=b job="a b",n=3i {T + 3}\nled,n=b job="c",n=3.5 {T + 4}\nled,n=b job=1i {T + 5}\n'.encode())
    assert (r.lines, r.store_refused) == (1, 2) and "line 2" in r.errors[0] and "line 3" in r.errors[1]
