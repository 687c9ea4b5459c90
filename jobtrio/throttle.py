"""Slowing down password guessing: failures per user name and per client address.

Sans-IO (the caller passes ``now``), so the policy is tested without waiting.
Each key (``user:alice``, ``addr:10.0.0.7``) may fail ``free`` times within
``window`` seconds; after that each further failure locks the key for a delay
that doubles from ``base_delay`` up to ``max_delay``, and a login attempted
while locked is refused with the seconds left (HTTP 429 and ``Retry-After``)
without even checking the password. A success clears the user's key (not
the address's: one right password must not unlock guessing at others).

Memory is bounded: at most ``max_keys`` keys are kept, the stalest dropped
first, so a flood of made-up names cannot grow the node.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int
    first: float
    locked_until: float


class Throttle:
    def __init__(
        self,
        free: int,
        window: float = 900.0,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        self.free = free
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_keys = max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may try again, or None if it may try now."""
        record = self._records.get(key)
        if record is None or now >= record.locked_until:
            return None
        return record.locked_until - now

    def failed(self, key: str, now: float) -> None:
        record = self._records.get(key)
        if record is None or now - record.first > self.window:
            record = _Record(0, now, 0.0)
        record.failures += 1
        beyond = record.failures - self.free
        if beyond > 0:
            delay = min(self.base_delay * 2 ** min(beyond - 1, 30), self.max_delay)
            record.locked_until = now + delay
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)
