"""Per-interval quality flags (a ``uint8`` bit mask) set by the register kernel.

A flag says what happened in an interval and how it was handled; several can
be set at once. ``FLAG_OK`` (0) means a plain, valid increase.
"""

from __future__ import annotations

import numpy as np

FLAG_OK = 0
#: The register passed its modulus and restarted from zero; the delta was
#: recovered (``next + modulus - previous``) and is valid.
FLAG_WRAP = 1
#: The register dropped in a way a wrap does not explain (driver reload, user
#: reset). The delta is the new reading itself (energy counted since the
#: restart from zero, a lower bound for the interval) or NaN, as the caller
#: chose with ``reset_from_zero``.
FLAG_RESET = 2
#: The increase is larger than the configured maximum power allows over the
#: interval: impossible, the delta is NaN.
FLAG_JUMP = 4
#: A reading at either end of the interval is missing (NaN): the delta is NaN.
FLAG_MISSING = 8
#: The interval's end is not after its start (duplicate or out-of-order
#: sample): the delta is NaN. Public functions reject such input; the flag is
#: for callers of the raw kernels.
FLAG_BAD_TIME = 16

_NAMES = (
    (FLAG_WRAP, "wrap"),
    (FLAG_RESET, "reset"),
    (FLAG_JUMP, "jump"),
    (FLAG_MISSING, "missing"),
    (FLAG_BAD_TIME, "bad_time"),
)


def describe_flags(flags: int) -> list[str]:
    """Names of the bits set in ``flags`` (empty for ``FLAG_OK``)."""
    value = int(flags)
    known = 0
    names = []
    for bit, name in _NAMES:
        known |= bit
        if value & bit:
            names.append(name)
    if value & ~known:
        raise ValueError(f"unknown flag bits {value & ~known:#x} in {value:#x}")
    return names


def flag_counts(flags: np.ndarray) -> dict[str, int]:
    """How many intervals carry each flag, for reports and logs."""
    arr = np.asarray(flags, dtype=np.uint8)
    return {name: int(np.count_nonzero(arr & bit)) for bit, name in _NAMES}
