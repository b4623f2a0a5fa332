"""The physical floors of ratios: the lowest value each can take (a PUE is never below 1); and of
the quantities a report or a statement sums (an energy, a mass of CO2e: never below 0).

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
    "green_share": 0.0,
}


def floor_of(ratio: str) -> float:
    """The physical floor of a ratio by its name (`pue`, `zone:hall-a:ppue`, `clf`, ...); a ratio
    over the jointly observed time (`pue_joint`, `ppue_joint`) has its ratio's."""
    return RATIO_FLOORS[ratio.rsplit(":", 1)[-1].removesuffix("_joint")]


def below_floor(ratio: str, value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value < floor_of(ratio)


def negative_quantity(value: object) -> bool:
    """An energy (Wh, kWh, MWh) or a mass of CO2e (kg) below 0, or an emission factor below 0: none can be, as
    every one is a sum of measured intervals, each >= 0 (the register policy never counts a negative one), or a
    published factor. A document that holds one was not made by puewatch as it stands, or was edited."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value < 0
