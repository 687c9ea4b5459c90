"""Retry delays: the seed's fixed and exponential policies, with jitter.

``delay = min(base * multiplier**(n-1), max)`` for the n-th retry
(exponential) or ``base`` (fixed), then spread by ``delay * (1 + f*U(-1,1))``
so that jobs failing together do not retry together (the thundering herd).
The random source is passed in, so the simulator and tests can fix it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import Settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    kind: str = "exponential"  # fixed | exponential
    base_delay: float = 1.0
    max_delay: float = 60.0
    multiplier: float = 2.0
    jitter_factor: float = 0.1

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            kind=settings.retry_policy,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
            multiplier=settings.retry_multiplier,
            jitter_factor=settings.retry_jitter_factor,
        )

    def base(self, retry_number: int) -> float:
        """The delay before the ``retry_number``-th retry (1-based), before jitter."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        if self.kind == "fixed":
            return min(self.base_delay, self.max_delay)
        # cap the exponent so huge retry counts cannot overflow a float
        exponent = min(retry_number - 1, 1000)
        try:
            raw = self.base_delay * self.multiplier**exponent
        except OverflowError:
            raw = self.max_delay
        return min(raw, self.max_delay)

    def delay(self, retry_number: int, rng: random.Random) -> float:
        d = self.base(retry_number)
        if self.jitter_factor:
            d *= 1 + self.jitter_factor * rng.uniform(-1.0, 1.0)
        return max(0.0, d)
