"""One retry policy: exponential backoff with full jitter, capped, reset on success.

Used by the agent's shipper (collector away) and the collector's StoreWriter (store away).
The n-th failure in a row waits a random time between `initial_s` and
`min(max_s, initial_s * 2**(n-1))`: full jitter spreads many nodes (or collectors) that
failed together, so they do not retry in step; the floor of `initial_s` keeps a dead peer
from being retried in a tight loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    def __init__(self, initial_s: float, max_s: float, uniform: Callable[[float, float], float] = random.uniform) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, not {initial_s} and {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._uniform = uniform
        self.failures = 0  # in a row, since the last success

    def ceiling_s(self) -> float:
        """The longest the next wait can be."""
        return min(self.max_s, self.initial_s * 2 ** min(max(self.failures - 1, 0), 60))

    def failed(self) -> float:
        """Count one more failure; returns how long to wait before the next try."""
        self.failures += 1
        return self._uniform(self.initial_s, self.ceiling_s())

    def succeeded(self) -> int:
        """Reset; returns how many failures in a row there were (to log a recovery once)."""
        failures, self.failures = self.failures, 0
        return failures
