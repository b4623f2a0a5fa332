"""The physical floors of ratios: the lowest value each can take (a PUE is never below 1).

Part of the register-energy policy (`core.energy`, which re-exports these), in a module of its
own so that the tools that only read reports (`check`, `city`) use the same rule without
loading the kernels.
"""

from __future__ import annotations

import math

# The lowest value each ratio can physically take.
RATIO_FLOORS: dict[str, float] = {
    "pue": 1.0,
    "ppue": 1.0,
    "clf": 0.0,
    "plf": 0.0,
    "cop": 0.0,
    "erf": 0.0,
    "ref": 0.0,
    "wue": 0.0,
    "gpu_it_share": 0.0,
}


def floor_of(ratio: str) -> float:
    """The physical floor of a ratio by its name (`pue`, `zone:hall-a:ppue`, `clf`, ...); a ratio
    over the jointly observed time (`pue_joint`, `ppue_joint`) has its ratio's."""
    return RATIO_FLOORS[ratio.rsplit(":", 1)[-1].removesuffix("_joint")]


def below_floor(ratio: str, value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value < floor_of(ratio)
