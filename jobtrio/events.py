"""The node's event bus: job and cluster events to whoever listens.

Publishing never blocks and never fails: a subscriber that cannot keep up
loses events (counted in ``dropped``) rather than slowing the job path. The
websocket event stream, the dashboard and tests subscribe here.

Events of one kind about many jobs at once (the dispatcher's started and
finished batches) go out with ``publish_jobs``: one ``JobEvents`` item for a
subscriber that asked for batches (the event stream's recorder), the same
events one by one for any other. Why: the recorder sees every event the node
publishes, two a job in a drain, and the per-event envelope, clock read and
channel hand-over cost more than encoding the event itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

if TYPE_CHECKING:
    from .jobs import Job

Event = dict[str, Any]


class JobEvents(NamedTuple):
    """Events of one ``kind`` about several jobs, published together at ``at``.

    ``jobs`` holds each job's ``Job.event_fields()``, read when published.
    ``events()`` gives the events ``publish(kind, job=fields)`` would have
    sent for each, in order."""

    kind: str
    node_id: str
    at: float | None
    jobs: list[dict[str, Any]]

    def events(self) -> Iterator[Event]:
        for fields in self.jobs:
            event: Event = {"type": self.kind, "node_id": self.node_id, "job": fields}
            if self.at is not None:
                event["at"] = self.at
            yield event


#: What a subscriber's channel carries: events, and ``JobEvents`` if it asked for batches.
Item = Event | JobEvents


class EventBus:
    def __init__(self, node_id: str, clock: Any = None) -> None:
        self.node_id = node_id
        #: key -> (channel, whether it takes ``JobEvents`` batches)
        self._subscribers: dict[int, tuple[trio.MemorySendChannel[Any], bool]] = {}
        self._next = 0
        self.dropped = 0
        self.published = 0
        self._clock = clock

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def publish(self, kind: str, **data: Any) -> None:
        self.published += 1
        if not self._subscribers:
            return
        event: Event = {"type": kind, "node_id": self.node_id, **data}
        if self._clock is not None and "at" not in event:
            event["at"] = self._clock()
        self._send(event, 1)

    def publish_jobs(self, kind: str, jobs: Sequence[Job]) -> None:
        """``publish(kind, job=job.event_fields())`` for each job, in order, at one time."""
        self.published += len(jobs)
        if not self._subscribers or not jobs:
            return
        batch = JobEvents(
            kind,
            self.node_id,
            self._clock() if self._clock is not None else None,
            [job.event_fields() for job in jobs],
        )
        for key, (channel, batches) in list(self._subscribers.items()):
            if batches:
                self._send_to(key, channel, batch, len(jobs))
            else:
                for event in batch.events():
                    if not self._send_to(key, channel, event, 1):
                        break

    def _send(self, item: Item, n: int) -> None:
        for key, (channel, _) in list(self._subscribers.items()):
            self._send_to(key, channel, item, n)

    def _send_to(self, key: int, channel: trio.MemorySendChannel[Any], item: Item, n: int) -> bool:
        """Hand ``item`` (``n`` events) over; False if the subscriber is gone."""
        try:
            channel.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += n
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._subscribers.pop(key, None)
            return False
        return True

    @contextmanager
    def subscribe(
        self, buffer: float = 1000, *, batches: bool = False
    ) -> Iterator[trio.MemoryReceiveChannel[Any]]:
        """Receive events until the block exits (``buffer=math.inf`` never drops).

        With ``batches`` the channel also carries ``JobEvents`` (each counts as one
        item of ``buffer``), else only event dicts."""
        send, receive = trio.open_memory_channel[Any](buffer if buffer != math.inf else math.inf)
        key = self._next
        self._next += 1
        self._subscribers[key] = (send, batches)
        try:
            yield receive
        finally:
            self._subscribers.pop(key, None)
            send.close()
