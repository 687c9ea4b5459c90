"""Gossip election: the leader is the highest-ranked member alive in the SWIM view.

No election messages at all: every node applies the same rule
(:func:`.election.highest` over the ids SWIM reports alive, suspects
included) to its own view, and the views converge by SWIM dissemination, so
the leaders converge too. That makes it eventually consistent by design:
while views differ (a join still spreading, a failure not yet confirmed
everywhere) two nodes may name different leaders, and the fencing epoch taken
from the Broker is what keeps only one of them acting.

Stability rule: a new top-ranked member is adopted only after it has stayed
the top of this node's view for ``ElectionTiming.settle``; changes lower in
the view do not restart that wait. A leader that disappears from the view
(confirmed dead, or left) is dropped at once (``leader`` becomes ``None``):
acting on a node known to be gone helps nobody, and the successor still has
to settle.

About ``term``: it counts the leader changes *this node* has observed
(including to and from ``None``). It only grows and it changes whenever the
leader does, which is what the local elector needs to tell leaderships apart,
but it is **not** comparable between nodes: a node that joined late, or missed
a flap, counts differently, and no message exists to agree on it. Fencing
never uses it; the global, monotonic fencing epoch is taken atomically from the
shared Broker when leadership begins.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from .election import ElectionTiming, highest
from .messages import LeaderChanged, Message, Output


class GossipElection:
    """One node's gossip election: a pure function of its SWIM view over time."""

    algorithm = "gossip"

    def __init__(
        self, me: str, peers: Iterable[str], timing: ElectionTiming, rng: random.Random
    ) -> None:
        self._me = me
        self._timing = timing
        self._rng = rng  # unused: the rule is deterministic, kept for a uniform factory
        # Until the first membership_changed, ``peers`` stand in for the view.
        self._view: frozenset[str] = frozenset({me, *peers})
        self._leader: str | None = None
        self._term = 0
        self._candidate: str | None = None
        self._candidate_since = 0.0

    # ------------------------------------------------------------ properties

    @property
    def leader(self) -> str | None:
        return self._leader

    @property
    def term(self) -> int:
        """Local count of leader changes seen here; see the module docstring."""
        return self._term

    @property
    def is_leader(self) -> bool:
        return self._leader == self._me

    @property
    def view(self) -> frozenset[str]:
        return self._view

    @property
    def pending(self) -> str | None:
        """The would-be leader still settling, if any."""
        return self._candidate

    # ------------------------------------------------------------ inputs

    def tick(self, now: float) -> list[Output]:
        return self._consider(now)

    def step(self, sender: str, message: Message, now: float) -> list[Output]:
        """Gossip election exchanges no messages of its own."""
        return self._consider(now)

    def membership_changed(
        self, alive_ids: frozenset[str], now: float, left: frozenset[str] = frozenset()
    ) -> list[Output]:
        """Replace the view with SWIM's alive set (this node is always in it)."""
        self._view = (frozenset(alive_ids) - frozenset(left)) | {self._me}
        return self._consider(now)

    def next_deadline(self) -> float | None:
        if self._candidate is None:
            return None
        return self._candidate_since + self._timing.settle

    # ------------------------------------------------------------ internals

    def _consider(self, now: float) -> list[Output]:
        out: list[Output] = []
        if self._leader is not None and self._leader not in self._view:
            self._leader = None
            self._term += 1
            out.append(LeaderChanged(None, self._term))
        top = highest(self._view)
        if top == self._leader:
            self._candidate = None
            return out
        if top != self._candidate:
            self._candidate = top
            self._candidate_since = now
        if now >= self._candidate_since + self._timing.settle:
            self._leader = top
            self._candidate = None
            self._term += 1
            out.append(LeaderChanged(top, self._term))
        return out
