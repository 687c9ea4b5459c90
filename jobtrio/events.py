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

The recorder is not woken by each ``publish_jobs`` while it holds events for an
append (``want_wake``): the job events wait in its channel until it takes them
at the end of its wait, or until enough of them came. In a drain a deal is
often one job, and the wake-up a deal cost the node a task step (about 18k
instructions) for the few hundred of encoding it carried.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from .jobs import Job

Event = dict[str, Any]


class JobEvents:
    """Events of one ``kind`` about several jobs, for a subscriber that takes batches.

    ``jobs`` holds each job's ``Job.event_fields()``, read when published, and
    ``ats`` each event's time. ``events()`` gives the events ``publish(kind,
    job=fields)`` would have sent for each, in order. While the subscriber has
    not taken it (``open``), the bus appends the jobs of a later ``publish_jobs``
    of the same kind to it when nothing else was published in between: the
    dispatcher starts one job at a time when a worker frees up, and a batch
    each would cost as much as the events one by one."""

    __slots__ = ("kind", "node_id", "jobs", "ats", "open")

    def __init__(
        self, kind: str, node_id: str, jobs: list[dict[str, Any]], ats: list[float | None]
    ) -> None:
        self.kind = kind
        self.node_id = node_id
        self.jobs = jobs
        self.ats = ats
        self.open = True

    def events(self) -> Iterator[Event]:
        for fields, at in zip(self.jobs, self.ats, strict=True):
            event: Event = {"type": self.kind, "node_id": self.node_id, "job": fields}
            if at is not None:
                event["at"] = at
            yield event


#: Most events one ``JobEvents`` gathers from several ``publish_jobs``.
COALESCE_MAX = 1000

#: What a subscriber's channel carries: events, and ``JobEvents`` if it asked for batches.
Item = Event | JobEvents


class _Subscriber:
    __slots__ = ("channel", "batches", "last")

    def __init__(self, channel: trio.MemorySendChannel[Any], batches: bool) -> None:
        self.channel = channel
        #: Whether it takes ``JobEvents``.
        self.batches = batches
        #: The last item handed over (a ``JobEvents`` may still take more jobs).
        self.last: Item | None = None


class EventBus:
    def __init__(self, node_id: str, clock: Any = None) -> None:
        self.node_id = node_id
        self._subscribers: dict[int, _Subscriber] = {}
        #: ``_subscribers``' items, renewed as they change: a publish loops over them
        #: without a copy of its own (two a job in a drain), and one gone meanwhile
        #: is still handed what the loop began with, as with a copy.
        self._subscribed: tuple[tuple[int, _Subscriber], ...] = ()
        self._next = 0
        self.dropped = 0
        self.published = 0
        self._clock = clock
        #: Set by ``company``: the event recorder's wait for the node's next Broker call.
        self._company: trio.Event | None = None
        #: Set by ``want_wake``: the event recorder's wait, and the job events before it ends.
        self._wake: trio.Event | None = None
        self._wake_left = 0

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    @property
    def company_wanted(self) -> bool:
        """The event recorder waits to append with the node's next Broker call
        (``EventStream``: its appends then share that call's round trip)."""
        return self._company is not None

    def want_company(self, ready: trio.Event | None) -> None:
        """Set ``ready`` at the next ``company`` (the recorder's wait; None: it ended)."""
        self._company = ready

    def company(self) -> None:
        """A Broker call goes out in the next scheduling round: a recorder waiting for
        company makes its append then, in the same round (one send to Redis for both)."""
        ready, self._company = self._company, None
        if ready is not None:
            ready.set()

    def want_wake(self, ready: trio.Event | None, jobs: int = 0) -> None:
        """Set ``ready`` at the next ``publish``, or once ``publish_jobs`` published
        ``jobs`` more events (the event recorder's wait while it holds events for an
        append: see the module doc; None: it ended)."""
        self._wake = ready
        self._wake_left = jobs

    def publish(self, kind: str, **data: Any) -> None:
        self.published += 1
        if not self._subscribers:
            return
        event: Event = {"type": kind, "node_id": self.node_id, **data}
        if self._clock is not None and "at" not in event:
            event["at"] = self._clock()
        for key, sub in self._subscribed:
            self._send_to(key, sub, event, 1)
        ready = self._wake
        if ready is not None:  # a rarer event (node.stopping among them): taken at once
            self._wake = None
            ready.set()

    def publish_jobs(self, kind: str, jobs: Sequence[Job]) -> None:
        """``publish(kind, job=job.event_fields())`` for each job, in order, at one time.

        A deal of one job (most of a drain's: one a job) joins the open batch with an
        ``append`` each of its field snapshot and time, no list of its own."""
        n = len(jobs)
        self.published += n
        if not n or not self._subscribers:
            return
        at = self._clock() if self._clock is not None else None
        if n == 1:
            one = jobs[0].event_fields()
            fields = None
        else:
            one, fields = None, [job.event_fields() for job in jobs]
        for key, sub in self._subscribed:
            last = sub.last
            if (
                sub.batches
                and type(last) is JobEvents
                and last.open
                and last.kind == kind
                and len(last.jobs) + n <= COALESCE_MAX
            ):
                if fields is None:
                    last.jobs.append(one)
                    last.ats.append(at)
                else:
                    last.jobs += fields
                    last.ats += [at] * n
                continue
            batch = JobEvents(kind, self.node_id, [one] if fields is None else fields[:], [at] * n)
            if sub.batches:
                self._send_to(key, sub, batch, n)
                continue
            for event in batch.events():
                if not self._send_to(key, sub, event, 1):
                    break
        ready = self._wake
        if ready is not None:
            self._wake_left -= n
            if self._wake_left <= 0:
                self._wake = None
                ready.set()

    def _send_to(self, key: int, sub: _Subscriber, item: Item, n: int) -> bool:
        """Hand ``item`` (``n`` events) over; False if the subscriber is gone."""
        try:
            sub.channel.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += n
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._unsubscribe(key)
            return False
        else:
            sub.last = item
        return True

    @contextmanager
    def subscribe(
        self, buffer: float = 1000, *, batches: bool = False
    ) -> Iterator[trio.MemoryReceiveChannel[Any]]:
        """Receive events until the block exits (``buffer=math.inf`` never drops).

        With ``batches`` the channel also carries ``JobEvents`` (each counts as one
        item of ``buffer``; the receiver must clear ``open`` as it takes one), else
        only event dicts."""
        send, receive = trio.open_memory_channel[Any](buffer if buffer != math.inf else math.inf)
        key = self._next
        self._next += 1
        self._subscribers[key] = _Subscriber(send, batches)
        self._subscribed = tuple(self._subscribers.items())
        try:
            yield receive
        finally:
            self._unsubscribe(key)
            send.close()

    def _unsubscribe(self, key: int) -> None:
        if self._subscribers.pop(key, None) is not None:
            self._subscribed = tuple(self._subscribers.items())
