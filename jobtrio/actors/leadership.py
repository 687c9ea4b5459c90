"""Who leads, as this node sees it, and the fencing epoch of its own leadership.

The elector (``actors/elector.py``) writes it; the leader duties and the API
read it. ``epoch`` is set only while *this* node leads, and always comes from
the shared Broker's counter, so a deposed leader holding an old epoch is
refused by the Broker itself. When that happens the duties say so here
(:meth:`Leadership.fenced`), and the elector, waiting on :attr:`is_fenced`,
decides whether to take a fresh epoch.
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
        #: The last epoch whose writes the Broker refused (a newer one exists).
        self.last_fenced: int | None = None

    @property
    def view(self) -> LeaderView:
        return self._view

    @property
    def is_leader(self) -> bool:
        return self._view.epoch is not None

    @property
    def is_fenced(self) -> bool:
        """This node leads with an epoch the Broker has refused."""
        return self._view.epoch is not None and self._view.epoch == self.last_fenced

    def fenced(self, epoch: int) -> None:
        """The duties met ``FencedError`` with ``epoch``: wake whoever waits on a change."""
        if epoch != self.last_fenced:
            self.last_fenced = epoch
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def set(self, leader_id: str | None, term: int, epoch: int | None, now: float) -> None:
        if epoch is not None and leader_id != self.node_id:
            raise ValueError("only this node's own leadership carries an epoch")
        old = self._view
        self._view = LeaderView(leader_id, term, epoch, old.algorithm, now)
        if (old.leader_id, old.term, old.epoch) != (leader_id, term, epoch):
            self.changes += 1
            self._wake()

    async def wait_change(self) -> None:
        """Until the view changes or an epoch is reported fenced."""
        await self._changed.wait()

    async def wait_leader(self) -> int:
        """Block until this node leads; return its epoch."""
        while self._view.epoch is None:
            await self.wait_change()
        return self._view.epoch
