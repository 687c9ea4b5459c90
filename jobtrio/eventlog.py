"""The event log: the recent events the websocket stream serves, addressable by id.

A log holds encoded events (JSON text without their id) in the order they
were appended, each under an id that only grows, and keeps the newest
``maxlen`` of them. It answers three questions: what came after an id (to
resume a stream, or to follow it), what the newest id is, and whether
anything after a given id was thrown away (trimmed, or never kept), so a
client that resumes from an old id hears that it missed something instead
of silently missing it.

Ids have the shape of Redis Stream ids, ``<milliseconds>-<sequence>``, and
compare as pairs of integers. Two implementations:

- ``MemoryEventLog``: one node's events, in this process (the embedded
  SQLite store and the memory backends). A restart empties it; ids keep
  growing with the wall clock, and an id from before the restart is reported
  as missed, never mistaken for a recent one.
- ``RedisEventLog`` (``backends/redis/events.py``): a capped Redis Stream
  that every node of a cluster appends to, so a client connected to any node
  sees the whole cluster's events.
"""

from __future__ import annotations

import abc
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import trio

if TYPE_CHECKING:
    from .backends.base import Broker
    from .config import Settings

#: (milliseconds, sequence): compares the way Redis orders stream ids.
EventId = tuple[int, int]

ZERO_ID: EventId = (0, 0)
_ID_RE = re.compile(r"^(\d{1,20})-(\d{1,20})$")


class EventIdError(ValueError):
    """Text that is not an event id."""


def parse_id(text: str) -> EventId:
    """``"1712345678901-0"`` -> ``(1712345678901, 0)``; ``EventIdError`` names the problem."""
    match = _ID_RE.match(text.strip())
    if match is None:
        raise EventIdError(
            f"{text[:60]!r} is not an event id; ids look like 1712345678901-0 "
            "(the id of the last event you received)"
        )
    return int(match.group(1)), int(match.group(2))


def format_id(event_id: EventId) -> str:
    return f"{event_id[0]}-{event_id[1]}"


class LogEntry(NamedTuple):
    id: EventId
    #: The event as a JSON object without its id (see ``eventstream.with_id``).
    body: str


class EventLog(abc.ABC):
    """Where the node's events go, and where every stream consumer reads them."""

    #: ``"cluster"`` when every node appends to this log, ``"node"`` when only this one does.
    scope: str = "node"

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen

    @abc.abstractmethod
    async def append(self, bodies: Sequence[str]) -> None:
        """Append encoded events in order (``BackendUnavailable`` if the log cannot be reached)."""

    @abc.abstractmethod
    async def read_after(self, after: EventId, count: int) -> list[LogEntry]:
        """Up to ``count`` entries with an id greater than ``after``, oldest first."""

    @abc.abstractmethod
    async def wait_after(self, after: EventId, count: int, timeout: float) -> list[LogEntry]:
        """Like ``read_after``, but wait up to ``timeout`` seconds for one to arrive."""

    @abc.abstractmethod
    async def last_id(self) -> EventId:
        """The newest id appended so far (``ZERO_ID`` for an empty log)."""

    @abc.abstractmethod
    async def lost_after(self, since: EventId) -> EventId | None:
        """The newest id greater than ``since`` that is gone, or None if nothing after it is.

        "Gone" covers trimmed entries and, for a log that does not outlive its
        node, everything from before it was created.
        """

    async def close(self) -> None:
        """Release what the log holds (nothing, unless an implementation says otherwise)."""


class MemoryEventLog(EventLog):
    """One node's events in memory: a list with a moving head, ids from the wall clock."""

    scope = "node"

    def __init__(self, maxlen: int, clock: Callable[[], float]) -> None:
        super().__init__(maxlen)
        self._clock = clock
        self._ids: list[EventId] = []
        self._bodies: list[str] = []
        self._head = 0
        self._last: EventId = ZERO_ID
        # anything up to this log's creation is unknown to it: report it as missed
        self._lost_upto: EventId = (int(clock() * 1000) - 1, 0)
        self._appended = trio.Event()

    def __len__(self) -> int:
        return len(self._ids) - self._head

    async def append(self, bodies: Sequence[str]) -> None:
        if not bodies:
            return
        ms, seq = self._last
        now = int(self._clock() * 1000)
        for body in bodies:
            if now > ms:
                ms, seq = now, 0
            else:
                seq += 1
            self._ids.append((ms, seq))
            self._bodies.append(body)
        self._last = (ms, seq)
        self._trim()
        self._appended.set()
        self._appended = trio.Event()

    def _trim(self) -> None:
        excess = len(self._ids) - self._head - self.maxlen
        if excess <= 0:
            return
        self._head += excess
        self._lost_upto = max(self._lost_upto, self._ids[self._head - 1])
        if self._head >= self.maxlen:  # compact now and then, not on every append
            del self._ids[: self._head]
            del self._bodies[: self._head]
            self._head = 0

    async def read_after(self, after: EventId, count: int) -> list[LogEntry]:
        await trio.lowlevel.checkpoint()
        start = bisect_right(self._ids, after, lo=self._head)
        end = min(len(self._ids), start + count)
        return [LogEntry(self._ids[i], self._bodies[i]) for i in range(start, end)]

    async def wait_after(self, after: EventId, count: int, timeout: float) -> list[LogEntry]:
        if self._last <= after:
            with trio.move_on_after(timeout):
                await self._appended.wait()
        return await self.read_after(after, count)

    async def last_id(self) -> EventId:
        await trio.lowlevel.checkpoint()
        return self._last

    async def lost_after(self, since: EventId) -> EventId | None:
        await trio.lowlevel.checkpoint()
        return self._lost_upto if since < self._lost_upto else None


#: Events a log keeps unless ``EVENT_STREAM_MAXLEN`` says otherwise.
DEFAULT_MAXLEN = 100_000


def open_event_log(
    broker: Broker, settings: Settings, clock: Callable[[], float]
) -> EventLog | None:
    """The log for this node: the cluster's Redis Stream when Redis is the Broker.

    None when ``EVENT_STREAM_MAXLEN`` is 0 (no log: the stream route says so).
    """
    maxlen = settings.event_stream_maxlen
    if maxlen <= 0:
        return None
    connection = getattr(broker, "connection", None)
    prefix = getattr(broker, "prefix", None)
    if broker.name == "redis" and connection is not None and isinstance(prefix, str):
        from .backends.redis.events import RedisEventLog

        return RedisEventLog(connection, prefix, maxlen)
    return MemoryEventLog(maxlen, clock)
