"""The seeded price process of the simulated market (no threads: the counter drives it)."""

from __future__ import annotations

import random
from decimal import Decimal

from adapter import market as rules


class PriceWalk:
    """A symmetric random walk: each step moves a price up or down by ``step`` (relative).

    The move is rounded to the tick and is at least one tick, so cheap instruments still
    move; the result is clamped inside the daily limit band. One seeded generator drives
    every instrument, so a run is reproducible when instruments are stepped in a fixed order.
    """

    def __init__(self, seed: int, step: float) -> None:
        self._rng = random.Random(seed)
        self._step = rules.to_decimal(step)

    def next_price(self, last: Decimal, tick: Decimal, down: Decimal, up: Decimal) -> Decimal:
        direction = self._rng.choice((-1, 1))
        move = max(rules.round_to_tick(last * self._step, tick), tick)
        return min(max(last + direction * move, down), up)
