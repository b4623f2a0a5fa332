"""How puewatch publishes a number (report JSON, jobs, statements, the demo's summary).

- A quantity that is not a finite number (NaN where nothing was measured, ±inf) is published
  as ``null``, never as 0 and never as JSON's non-standard ``NaN``.
- A ratio is published only over a positive denominator: ``a / b`` is ``null`` where either
  side is unknown or ``b`` is 0 or less (its physical floor is checked where the ratio is
  named: `floors`); a share of a whole (`share`) lies in [0, 1], rounding included.

And how a number is read from text (an SNMP agent's string, a CSV cell): `decimal`, one grammar.
"""

from __future__ import annotations

import math


def published(x: float | None) -> float | None:
    """`x` as a plain float, or None where it is unknown or not finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b as published: None where a or b is unknown or b is not positive."""
    if a is None or b is None or not b > 0:
        return None
    return published(a / b)


# Sums of the same energies added in different orders differ in their last bits.
SHARE_TOLERANCE = 1e-9


def share(part: float | None, whole: float | None) -> float | None:
    """The share `part / whole` of a whole that holds the part (a completeness, an estimated share) as
    published: `ratio`, and a result within SHARE_TOLERANCE beyond [0, 1] (the two sums added in other
    orders: 1.0000000000000022 in a signed statement) is the bound itself. One further beyond is
    published as it is: then the part is not within the whole, and that shows."""
    x = ratio(part, whole)
    if x is not None and (1.0 < x <= 1.0 + SHARE_TOLERANCE or -SHARE_TOLERANCE <= x < 0.0):
        return 1.0 if x > 1.0 else 0.0
    return x


def decimal(text: str) -> float | None:
    """A number written as text in the one grammar puewatch reads (an SNMP agent's string value, a
    CSV cell): ASCII digits with an optional sign, decimal point and exponent (`12`, `-0.5`, `1.5e3`),
    and `nan`/`inf` read as themselves for the caller to refuse. Anything else is None: surrounding
    spaces, underscores (`1_000`), other scripts' digits (`１２`), hex, a decimal comma. Python's
    float() with what it accepts beyond that grammar refused first (it is the fast path of a CSV of
    hundreds of millions of cells)."""
    if not text.isascii() or "_" in text or text[:1].isspace() or text[-1:].isspace():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def percent_down(x: float) -> str:
    """A share in [0, 1] as a percentage to 0.1, rounded down, the one way every page and table shows a share: 0.9496
    showed 95.0 % beside a FAIL of `min_completeness 0.95`, and 0.99996 100.0 % beside a note that it was not whole
    (found by the city and HTML audits). On the double's shortest decimal digits (0.57 is 57.0, where 0.57 x 1000
    is 569.99...; 0.95 - 5e-13 is 94.9); "n/a" for what is no number."""
    if not math.isfinite(x):
        return "n/a"
    from decimal import ROUND_FLOOR, Decimal

    return str((Decimal(repr(float(x))) * 100).quantize(Decimal("0.1"), rounding=ROUND_FLOOR))
