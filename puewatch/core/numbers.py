"""How puewatch publishes a number (report JSON, jobs, statements, the demo's summary).

- A quantity that is not a finite number (NaN where nothing was measured, ±inf) is published
  as ``null``, never as 0 and never as JSON's non-standard ``NaN``.
- A ratio is published only over a positive denominator: ``a / b`` is ``null`` where either
  side is unknown or ``b`` is 0 or less (its physical floor is checked where the ratio is
  named: `floors`).
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
