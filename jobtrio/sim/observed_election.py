"""The simulator's view of a node's election: every verdict the real machine gives,
written to the history the checker judges (votes, leaders, quorums).

A module of its own because it is the one place the simulator watches the
election protocol from outside; the runner only builds it around the machine
``ClusterActor`` made."""

from __future__ import annotations

from collections.abc import Callable

from ..cluster.election import Election
from ..cluster.messages import LeaderChanged, Message, Output, RaftVote, RaftVoteResponse, Send
from .history import History


class ObservedElection:
    """The node's real election machine, with its verdicts written to the history.

    A wrapper, not a copy: every call goes to the machine ``ClusterActor``
    built; only the ``LeaderChanged`` outputs are looked at on the way out.
    """

    def __init__(
        self,
        inner: Election,
        node_id: str,
        history: History,
        on_vote: Callable[[str], None] = lambda role: None,
    ) -> None:
        self._inner = inner
        self._node_id = node_id
        self._history = history
        self._raft = inner.algorithm == "raft"
        #: Called after the machine cast a real vote ("voter") or asked for votes
        #: ("candidate").
        self._on_vote = on_vote

    @property
    def algorithm(self) -> str:
        return self._inner.algorithm

    @property
    def leader(self) -> str | None:
        return self._inner.leader

    @property
    def term(self) -> int:
        return self._inner.term

    @property
    def is_leader(self) -> bool:
        return self._inner.is_leader

    def tick(self, now: float) -> list[Output]:
        return self._observe(self._inner.tick(now), now)

    def step(self, sender: str, message: Message, now: float) -> list[Output]:
        return self._observe(self._inner.step(sender, message, now), now)

    def membership_changed(
        self, alive_ids: frozenset[str], now: float, left: frozenset[str] = frozenset()
    ) -> list[Output]:
        return self._observe(self._inner.membership_changed(alive_ids, now, left), now)

    def next_deadline(self) -> float | None:
        return self._inner.next_deadline()

    def _observe(self, outputs: list[Output], now: float) -> list[Output]:
        voted: str | None = None
        history, me = self._history, self._node_id
        if self._raft:
            vote = getattr(self._inner, "voted_for", None)
            if vote is not None:
                history.raft_vote(me, vote, self._inner.term, now)
        for out in outputs:
            if isinstance(out, Send) and isinstance(out.message, RaftVote | RaftVoteResponse):
                message = out.message
                if message.pre_vote:
                    continue
                if isinstance(message, RaftVote):
                    voted = voted or "candidate"
                elif message.granted:
                    voted = "voter"
                    history.raft_vote(me, out.to, message.term, now)
            if isinstance(out, LeaderChanged):
                self._history.trace.record("leader", self._node_id, out.leader, out.term)
                if self._raft and out.leader == self._node_id:
                    self._history.raft_leader(self._node_id, out.term, now)
                    self._history.raft_quorum(self._node_id, out.term, now)
        if voted is not None:
            self._on_vote(voted)
        return outputs
