"""Names that come from outside (sites, certificates) as people tell them apart: the one rule.

Two names are one where a reader cannot tell them apart: Unicode compatibility forms (NFKC: full-width
letters, the ideographic and no-break spaces), letter case, spaces around and within them, and the
characters that show nothing at all (Unicode's default-ignorable code points: zero-width spaces and
joiners, variation selectors, tag characters, the combining grapheme joiner, the Hangul fillers ...)
make no other name. "fra1", "FRA1", "fra1 ", "ｆｒａ１" and "fra1" + U+200D are one site: as two, a report
named with a zero-width joiner escaped the key of fra1.pub and its site was summed twice in the city's PUE
(found by the HTML audit, after case and spaces were found by the signature and input audits).
"""

from __future__ import annotations

import re
import unicodedata

# Default-ignorable code points (Unicode's DerivedCoreProperties, Default_Ignorable_Code_Point) outside the
# format characters (category Cf, all of which show nothing): the combining grapheme joiner, the Hangul
# fillers, the Khmer inherent vowels, the Mongolian variation selectors, the variation selectors, the
# halfwidth Hangul filler, and the reserved U+FFF0..FFF8 and U+E0000..E0FFF (tags and variation selectors
# supplement).
_IGNORABLE = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\ufff0-\ufff8"
                        "\U000e0000-\U000e0fff]")


def invisible(c: str) -> bool:
    """Whether the character `c` shows nothing (a default-ignorable code point)."""
    return unicodedata.category(c) == "Cf" or _IGNORABLE.match(c) is not None


def visible(text: str) -> str:
    """`text` without the characters that show nothing."""
    return "".join(c for c in text if not invisible(c))


def name_key(name: str) -> str:
    """`name` as people tell names apart (module docstring): equal keys, one name."""
    return " ".join(visible(unicodedata.normalize("NFKC", name)).split()).casefold()
