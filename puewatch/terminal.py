"""Text that came from outside (a report's or a statement's strings, a ledger's job and tenant names,
a file's path) as it may be written to a terminal or into an HTML page.

A signed report can carry any string, and an unsigned one anything at all: a site name holding
ESC sequences, CR or a newline could write or hide lines of puewatch's own verdict (a forged
"PASS require_signature" line, the real FAIL lines concealed). So every control character (C0, DEL,
C1), the Unicode line and paragraph separators, and the bidirectional controls that reorder what a
line shows are written as Python-style escapes (``\\x1b``, ``\\n``, ``\\u2028``): each line stays one
line and says what the document holds; so are the invisible characters that would make two names
look alike (a zero-width space, a soft hyphen, a word joiner, a byte order mark: tenants "t1" and
"t1\u200b" read the same). JSON output is unaffected (JSON escapes them itself).
A page (`in_page`) gets the same, HTML-escaped: a right-to-left override in a site's or a tenant's
name reversed the rest of its line there (a report's period label, a city's "fail"; a tenant
"\u202eTNEMYAP" read "PAYMENT").
"""

from __future__ import annotations

import re
import unicodedata

from puewatch.core.names import INVISIBLE, invisible

# Controls, separators and the invisible characters that can reorder or hide a line; the others that show nothing
# are found by `_hidden`.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064"
                     "\u2066-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    return m.group().encode("unicode_escape").decode("ascii")


def _latin(c: str) -> bool:
    """An ASCII character or a letter of the Latin script (é): a joiner beside one shows nothing."""
    return c.isascii() or unicodedata.name(c, "").startswith("LATIN")


def _hidden(s: str, i: int) -> bool:
    """Whether s[i] shows nothing (core.names.invisible) and is escaped: every one but the joiners that scripts and
    emoji sequences need (U+200C, U+200D between two characters neither ASCII nor Latin letters: 👩‍💻) and an emoji presentation
    selector after a symbol (U+2764 U+FE0F); a joiner after a Latin letter, a variation selector after a letter,
    a tag character, a combining grapheme joiner made two names look alike (found by the HTML audit)."""
    c = s[i]
    if not invisible(c):
        return False
    if c in "\u200c\u200d":
        return not (0 < i < len(s) - 1 and not _latin(s[i - 1]) and not _latin(s[i + 1]))
    return not (c == "\ufe0f" and i > 0 and unicodedata.category(s[i - 1]) == "So")


def shown(text: object) -> str:
    """`text` with every character that could move, hide or reorder terminal output escaped, and every one that
    shows nothing."""
    s = str(text)
    if s.isascii() or not INVISIBLE.search(s):
        return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s
    return "".join(c.encode("unicode_escape").decode("ascii") if _UNSAFE.match(c) or _hidden(s, i) else c
                   for i, c in enumerate(s))


def shown_text(text: object, **kw):
    """A rich `Text` of `shown(text)` (rich writes control characters through as they are)."""
    from rich.text import Text

    return Text(shown(text), **kw)


def in_page(text: object) -> str:
    """`text` for an HTML page: `shown(text)`, HTML-escaped (quotes included, for attribute values)."""
    import html

    return html.escape(shown(text))


def width(text: str) -> int:
    """The terminal columns `text` takes: 2 for an East Asian wide or fullwidth character (CJK such as
    算力券, most emoji), 0 for a combining mark or a zero-width format character (a combining acute), 1 for
    any other; an emoji sequence as the one glyph a terminal draws: a character joined by the zero-width
    joiner (👩‍💻) or a skin tone adds nothing, and the emoji presentation selector (❤️: U+2764 U+FE0F) makes
    the character before it 2. For text already `shown` (no control characters left)."""
    n = 0
    last = 0  # the columns of the glyph before: 0 where there is none
    joined = False
    for c in text:
        cp = ord(c)
        if c == "\u200d":
            joined = last > 0
            continue
        if cp == 0xFE0F:
            n += 1 if last == 1 else 0
            last = 2 if last else 0
            continue
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf") or (
                last and 0x1F3FB <= cp <= 0x1F3FF):
            continue
        if joined:
            joined = False
            continue
        last = 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        n += last
    return n


def columns(rows: list[list[str]], right: set[int], minimum: list[int] | None = None) -> list[str]:
    """`rows` of cells (text already `shown`) as lines whose columns align on a terminal: each column as wide as
    its widest cell by display `width` (at least `minimum[i]`), left-aligned except the columns in `right`, one
    space between columns, the last column not padded. An f-string's `:<16` counts characters, so a name
    holding a wide character (算力券) pushed its line's later columns out of line."""
    if not rows:
        return []
    least = minimum or []
    widths = [max([width(r[i]) for r in rows if i < len(r)] + least[i:i + 1]) for i in range(max(map(len, rows)))]
    out = []
    for r in rows:
        cells = []
        for i, cell in enumerate(r):
            pad = " " * (widths[i] - width(cell)) if i < len(r) - 1 or i in right else ""
            cells.append(pad + cell if i in right else cell + pad)
        out.append(" ".join(cells))
    return out

