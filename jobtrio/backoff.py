"""Growing delays between retries: the one backoff every loop of jobtrio uses.

A loop that meets an unavailable backend, an unreachable peer or a crashed
actor waits before trying again, a little longer each time up to a ceiling,
and starts from the shortest wait again once a try succeeds. The dispatcher's
claims and finishes, the recorder, the elector, the peer transport's dialing,
the supervisor and the HTTP client's polling all do exactly this, so they
share this class instead of each keeping its own ``backoff = min(backoff * 2,
...)`` arithmetic.

It is plain arithmetic (no clock, no I/O, no trio: the HTTP client uses it
under any event loop); the caller sleeps ``next()`` seconds its own way. A
retry library (tenacity, backoff) wraps a *call* in a decorator, which fits
none of these loops: they keep state across iterations (the claim loop's
poll, the finisher's batch) and reset on success in the middle of the loop
body.
"""

from __future__ import annotations


class Backoff:
    """Delays ``first, first*factor, ...`` capped at ``maximum``; :meth:`reset` starts over."""

    __slots__ = ("first", "maximum", "factor", "current")

    def __init__(self, first: float, maximum: float, factor: float = 2.0) -> None:
        self.first = first
        self.maximum = maximum
        self.factor = factor
        self.current = first

    def next(self) -> float:
        """The delay to wait now; the one after it grows."""
        delay = self.current
        self.current = min(delay * self.factor, self.maximum)
        return delay

    def next_within(self, deadline: float | None, now: float) -> float | None:
        """:meth:`next` cut to end at ``deadline``; None once ``now`` reached it."""
        if deadline is not None and now >= deadline:
            return None
        delay = self.next()
        return delay if deadline is None else min(delay, deadline - now)

    def reset(self) -> None:
        """A try succeeded: the next failure waits ``first`` again."""
        self.current = self.first
