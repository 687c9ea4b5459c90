"""Which worker gets a job: the seed's four load-balancing strategies.

Pure functions over a snapshot of the workers, so each strategy's choice is
tested directly. A worker runs one job at a time, and the dispatcher only
claims as many jobs as there are idle workers, so the strategies choose among
*idle* workers; "load" is then what a worker has done so far (its busy
seconds), which is what spreading work fairly means over time.

- round_robin: the next idle worker after the last one chosen.
- least_loaded: the idle worker with the fewest busy seconds so far.
- random: any idle worker, uniformly.
- priority: high-priority jobs (>= ``HIGH_PRIORITY``) go to the least-loaded
  idle worker; the rest are dealt round robin.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

HIGH_PRIORITY = 8


class Load(Protocol):
    """What a strategy may know about a worker."""

    @property
    def index(self) -> int: ...
    @property
    def idle(self) -> bool: ...
    @property
    def busy_seconds(self) -> float: ...
    @property
    def jobs_done(self) -> int: ...


@dataclass(slots=True)
class WorkerLoad:
    index: int
    idle: bool
    busy_seconds: float
    jobs_done: int


class Balancer:
    """Holds the one piece of state a strategy needs: the round-robin cursor."""

    def __init__(self, strategy: str, rng: random.Random | None = None) -> None:
        if strategy not in ("round_robin", "least_loaded", "random", "priority"):
            raise ValueError(f"unknown load-balancing strategy {strategy!r}")
        self.strategy = strategy
        self._rng = rng or random.Random()
        self._last = -1

    def choose(self, workers: Sequence[Load], priority: int) -> int:
        """Index of the worker for a job of ``priority``; ``workers`` has an idle one."""
        idle = [w for w in workers if w.idle]
        if not idle:
            raise ValueError("no idle worker to choose from")
        if self.strategy == "least_loaded" or (
            self.strategy == "priority" and priority >= HIGH_PRIORITY
        ):
            chosen = min(idle, key=lambda w: (w.busy_seconds, w.jobs_done, w.index))
        elif self.strategy == "random":
            chosen = idle[self._rng.randrange(len(idle))]
        else:
            after = [w for w in idle if w.index > self._last]
            chosen = after[0] if after else idle[0]
        self._last = chosen.index
        return chosen.index
