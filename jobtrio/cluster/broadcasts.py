"""SWIM's broadcast queue: member updates waiting to ride piggyback on messages.

memberlist's ``TransmitLimitedQueue``, sans-IO: each update is sent with the
next few pings, acks and gossip messages, freshest and least-sent first, until
it has gone out ``retransmit_limit(n)`` times (about ``log n`` rounds reach
every member with high probability). A newer update about a node replaces
the one waiting, so the queue never holds more than one record per member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .messages import MemberUpdate


@dataclass(slots=True)
class _Broadcast:
    update: MemberUpdate
    transmits: int
    order: int


class BroadcastQueue:
    def __init__(self, retransmit_limit: Callable[[int], int], max_per_message: int) -> None:
        #: Sends per update in a cluster of ``n`` live members.
        self._retransmit_limit = retransmit_limit
        self._max_per_message = max_per_message
        self._pending: dict[str, _Broadcast] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def pending(self) -> list[MemberUpdate]:
        """What waits, in the order :meth:`take` would send it."""
        return [b.update for b in self._ranked()]

    def queue(self, update: MemberUpdate) -> None:
        """Gossip ``update``, replacing any older pending one about the same node."""
        self._order += 1
        self._pending[update.node_id] = _Broadcast(update, 0, self._order)

    def discard(self, node_id: str) -> None:
        self._pending.pop(node_id, None)

    def clear(self) -> None:
        self._pending.clear()

    def take(self, live_members: int) -> tuple[MemberUpdate, ...]:
        """The updates for one message: least sent, then newest, at most ``max_per_message``;
        each counts as sent once more and leaves the queue at its limit."""
        if not self._pending:
            return ()
        limit = self._retransmit_limit(live_members)
        chosen = self._ranked()[: self._max_per_message]
        for b in chosen:
            b.transmits += 1
            if b.transmits >= limit:
                del self._pending[b.update.node_id]
        return tuple(b.update for b in chosen)

    def _ranked(self) -> list[_Broadcast]:
        return sorted(self._pending.values(), key=lambda b: (b.transmits, -b.order))
