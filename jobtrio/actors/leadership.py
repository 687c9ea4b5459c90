"""Who leads, as this node sees it, and the fencing epoch of its own leadership.

The elector (standalone or one of the cluster algorithms) writes it; the
leader duties and the API read it. ``epoch`` is set only while *this* node
leads, and always comes from the shared Broker's counter, so a deposed leader
holding an old epoch is refused by the Broker itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class LeaderView:
    leader_id: str | None
    term: int
    epoch: int | None  # only when this node is the leader
    algorithm: str
    since: float


class Leadership:
    def __init__(self, node_id: str, algorithm: str) -> None:
        self.node_id = node_id
        self._view = LeaderView(None, 0, None, algorithm, 0.0)
        self._changed = trio.Event()
        self.changes = 0

    @property
    def view(self) -> LeaderView:
        return self._view

    @property
    def is_leader(self) -> bool:
        return self._view.epoch is not None

    def set(self, leader_id: str | None, term: int, epoch: int | None, now: float) -> None:
        if epoch is not None and leader_id != self.node_id:
            raise ValueError("only this node's own leadership carries an epoch")
        old = self._view
        self._view = LeaderView(leader_id, term, epoch, old.algorithm, now)
        if (old.leader_id, old.term, old.epoch) != (leader_id, term, epoch):
            self.changes += 1
            self._changed.set()
            self._changed = trio.Event()

    async def wait_change(self) -> None:
        await self._changed.wait()

    async def wait_leader(self) -> int:
        """Block until this node leads; return its epoch."""
        while self._view.epoch is None:
            await self.wait_change()
        return self._view.epoch
