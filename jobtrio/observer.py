"""Events the actors do not publish themselves: backends going down and up, suspect members.

The dispatcher and the recorder each know whether their backend answered
their last call, and SWIM knows which members are suspected; none of them
announces a change, because to them it is state, not news. The observer
looks at that state a few times a second and publishes the changes
(``backend.down``/``backend.up``, ``member.suspect``) and keeps
``backend_up`` current for the store (the dispatcher sets it for the
broker). It reads only in-memory views: it makes no backend call of its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .text import error_text

if TYPE_CHECKING:
    from .actors.node import Node

log = logging.getLogger("jobtrio.observer")

#: Seconds between two looks.
INTERVAL = 0.25


class NodeObserver:
    def __init__(self, node: Node, interval: float = INTERVAL) -> None:
        self._node = node
        self._interval = interval
        self._healthy: dict[str, bool] = {"broker": True, "store": True}
        self._suspects: set[str] = set()

    def _backends(self) -> dict[str, tuple[bool, str | None, str]]:
        node = self._node
        return {
            "broker": (
                node.dispatcher.broker_healthy,
                node.dispatcher.last_error,
                node.broker.name,
            ),
            "store": (node.recorder.healthy, node.recorder.last_error, node.store.name),
        }

    def look(self) -> None:
        """Publish what changed since the last look."""
        node = self._node
        for role, (healthy, error, name) in self._backends().items():
            if role == "store":
                node.metrics.backend_up.labels("store").set(1 if healthy else 0)
            if healthy != self._healthy[role]:
                self._healthy[role] = healthy
                kind = "backend.up" if healthy else "backend.down"
                if error is not None:
                    error = error_text(error)
                node.events.publish(kind, backend=role, name=name, error=error)
        if node.cluster is None:
            return
        suspects = {m.node_id for m in node.cluster.members() if m.state == "suspect"}
        for member in sorted(suspects - self._suspects):
            node.events.publish("member.suspect", member=member)
        self._suspects = suspects

    async def run(self) -> None:
        while True:
            self.look()
            await trio.sleep(self._interval)
