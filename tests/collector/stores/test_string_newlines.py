"""No text can become a point: a string field holding a newline and a line-shaped text reaches the
embedded store intact, and the forged line is never stored as a reading."""

from puewatch.collector.lineparse import parse, split_lines
from puewatch.collector.stores.embedded import EmbeddedStore

T = 1_700_000_000_000_000_000
FORGED = f'note,node=a text="hello\nmeter power_kw=99999 {T}\nbye" {T}\nmeter power_kw=5 {T + 1}\n'.encode()


def test_split_lines_keeps_a_string_with_newlines_whole():
    assert split_lines(FORGED) == [FORGED.split(b"\n", 3)[0] + b"\n" + FORGED.split(b"\n")[1] + b"\n" + FORGED.split(b"\n")[2],
                                   f"meter power_kw=5 {T + 1}".encode()]


def test_the_forged_line_never_reaches_the_embedded_store(tmp_path):
    result = parse(FORGED)
    assert result.lines == 2 and not result.errors
    store = EmbeddedStore(tmp_path / "db.sqlite")
    store.write(result.body)
    t, v = store.series("meter", "power_kw", {}, 0, 2**62)
    assert t.tolist() == [T + 1] and v.tolist() == [5.0]
    texts = store.text_series("note", "text", {"node": "a"}, 0, 2**62)
    assert list(texts[1]) == [f"hello\nmeter power_kw=99999 {T}\nbye"]
    store.close()
