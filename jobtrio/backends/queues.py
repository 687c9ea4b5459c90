"""Named queues in a Broker: the claim's caps (node cap, pause, rate limit), shared logic.

The memory and SQLite Brokers compute a claim's per-queue caps here; the Redis
Broker does the same inside its claim script (``lua/queues.lua``), and the
contract tests hold the three to one behaviour.

A rate limit is BullMQ's: at most ``jobs`` claims from the queue per ``per``
seconds, counted in fixed windows of the Broker's clock (window number =
floor(time / per)) by the claims themselves, so it holds cluster-wide
whatever the number of nodes. The count lives in the Broker beside the limit,
so a failover of any node neither resets nor forgets it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from .base import ClaimScope, RateLimit


def window_of(limit: RateLimit, at: float) -> int:
    """The number of the rate window that holds time ``at``."""
    return math.floor(at / limit.per)


class ClaimCaps:
    """How many jobs each queue may still give one claim.

    ``left(q)`` is ``None`` for no cap; ``took(q)`` spends one. ``windows()``
    gives the rate windows to write back: (queue, window, jobs used in it).
    """

    def __init__(
        self,
        scope: ClaimScope,
        paused: Iterable[str],
        limits: Mapping[str, RateLimit],
        windows: Mapping[str, tuple[int, int]],
        at: float,
    ) -> None:
        self._node: dict[str, int | None] = dict(scope.limits)
        self._paused = set(paused)
        self._limits = limits
        self._windows = windows
        self._at = at
        self._left: dict[str, int | None] = {}
        self._used: dict[str, tuple[int, int]] = {}

    def left(self, queue: str) -> int | None:
        if queue in self._left:
            return self._left[queue]
        cap = self._node.get(queue)
        if queue in self._paused:
            cap = 0
        limit = self._limits.get(queue)
        if limit is not None and cap != 0:
            window = window_of(limit, self._at)
            held = self._windows.get(queue)
            used = held[1] if held is not None and held[0] == window else 0
            self._used[queue] = (window, used)
            budget = max(0, limit.jobs - used)
            cap = budget if cap is None else min(cap, budget)
        self._left[queue] = cap
        return cap

    def took(self, queue: str) -> None:
        left = self.left(queue)
        if left is not None:
            self._left[queue] = left - 1
        if queue in self._used:
            window, used = self._used[queue]
            self._used[queue] = (window, used + 1)

    def windows(self) -> list[tuple[str, int, int]]:
        """The rate windows this claim spent from, as they are now."""
        return [(q, w, u) for q, (w, u) in self._used.items() if u != self._start(q, w)]

    def _start(self, queue: str, window: int) -> int:
        held = self._windows.get(queue)
        return held[1] if held is not None and held[0] == window else 0
