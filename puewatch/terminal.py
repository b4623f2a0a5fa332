"""Text that came from outside (a report's or a statement's strings, a ledger's job and tenant names,
a file's path) as it may be written to a terminal or into an HTML page.

A signed report can carry any string, and an unsigned one anything at all: a site name holding
ESC sequences, CR or a newline could write or hide lines of puewatch's own verdict (a forged
"PASS require_signature" line, the real FAIL lines concealed). So every control character (C0, DEL,
C1), the Unicode line and paragraph separators, and the bidirectional controls that reorder what a
line shows are written as Python-style escapes (``\\x1b``, ``\\n``, ``\\u2028``): each line stays one
line and says what the document holds. JSON output is unaffected (JSON escapes them itself).
A page (`in_page`) gets the same, HTML-escaped: a right-to-left override in a site's or a tenant's
name reversed the rest of its line there (a report's period label, a city's "fail"; a tenant
"\u202eTNEMYAP" read "PAYMENT").
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    return m.group().encode("unicode_escape").decode("ascii")


def shown(text: object) -> str:
    """`text` with every character that could move, hide or reorder terminal output escaped."""
    s = str(text)
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s


def shown_text(text: object, **kw):
    """A rich `Text` of `shown(text)` (rich writes control characters through as they are)."""
    from rich.text import Text

    return Text(shown(text), **kw)


def in_page(text: object) -> str:
    """`text` for an HTML page: `shown(text)`, HTML-escaped (quotes included, for attribute values)."""
    import html

    return html.escape(shown(text))
