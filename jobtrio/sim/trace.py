"""The event trace of a run, and the digest that proves two runs were the same.

Every significant event (a message sent, delivered or dropped, a leader
change, a job's move in the Broker, a fault) becomes one text line stamped
with the simulated time. Lines feed a running SHA-256 instead of a list, so
a long run costs no memory; the last ``keep`` lines are kept for the failure
report, and ``full`` keeps them all (``jobtrio sim --trace FILE``) to diff
two runs line by line when their digests differ.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque

import trio


class Trace:
    def __init__(self, keep: int = 200, full: bool = False) -> None:
        self._hash = hashlib.sha256()
        self.events = 0
        self.counts: Counter[str] = Counter()
        self.tail: deque[str] = deque(maxlen=keep)
        self.lines: list[str] | None = [] if full else None

    def record(self, kind: str, *fields: object) -> None:
        try:
            now = trio.current_time()
        except RuntimeError:  # outside the run (setup, final checks)
            now = -1.0
        line = f"{now:.6f} {kind} " + " ".join(str(f) for f in fields)
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.events += 1
        self.counts[kind] += 1
        self.tail.append(line)
        if self.lines is not None:
            self.lines.append(line)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()
