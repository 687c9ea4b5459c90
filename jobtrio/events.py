"""The node's event bus: job and cluster events to whoever listens.

Publishing never blocks and never fails: a subscriber that cannot keep up
loses events (counted in ``dropped``) rather than slowing the job path. The
websocket event stream, the dashboard and tests subscribe here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

Event = dict[str, Any]


class EventBus:
    def __init__(self, node_id: str, clock: Any = None) -> None:
        self.node_id = node_id
        self._subscribers: dict[int, trio.MemorySendChannel[Event]] = {}
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
        for key, channel in list(self._subscribers.items()):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.pop(key, None)

    @contextmanager
    def subscribe(self, buffer: float = 1000) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        """Receive events until the block exits (``buffer=math.inf`` never drops)."""
        send, receive = trio.open_memory_channel[Event](buffer if buffer != math.inf else math.inf)
        key = self._next
        self._next += 1
        self._subscribers[key] = send
        try:
            yield receive
        finally:
            self._subscribers.pop(key, None)
            send.close()
