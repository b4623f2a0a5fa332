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

# Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt, Unicode 15.1), all of it: the
# characters a renderer shows nothing for (the soft hyphen, the combining grapheme joiner, the Arabic letter mark,
# the Hangul fillers, the Khmer inherent vowels, the Mongolian variation selectors and vowel separator, the
# zero-width spaces, joiners and marks, the bidirectional controls, the word joiner and invisible operators,
# the variation selectors, the byte order mark, the halfwidth Hangul filler, the reserved U+FFF0..FFF8, the
# shorthand format controls, the musical symbol format controls, the tags and the supplementary variation
# selectors). Not every format character (category Cf) is one: U+0600..0605 and U+110BD show a mark.
INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                       "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
                       "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def invisible(c: str) -> bool:
    """Whether the character `c` shows nothing (a default-ignorable code point)."""
    return INVISIBLE.match(c) is not None


def visible(text: str) -> str:
    """`text` without the characters that show nothing."""
    return INVISIBLE.sub("", text)


def name_key(name: str) -> str:
    """`name` as people tell names apart (module docstring): equal keys, one name."""
    return " ".join(visible(unicodedata.normalize("NFKC", name)).split()).casefold()
