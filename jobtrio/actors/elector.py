"""The one leadership loop: turns "who should lead" into this node's Leadership.

Who should lead comes from elsewhere: a node without a cluster always names
itself; a cluster node follows its election (Raft, Bully, gossip), whose
``LeaderChanged`` outputs the cluster actor hands over as :class:`Verdict`.
Either way this loop does the same things, in one place:

- a verdict naming another node: record it in the Leadership (no epoch);
- a verdict naming this node: take a fresh fencing epoch from the shared
  Broker (retrying with backoff while it is down, and giving up if the
  verdict is overtaken meanwhile), then set the Leadership with it, count it
  in the metrics, publish ``leader.changed`` and record the election in the
  Store;
- when the leader duties report the epoch fenced off (another node took a
  newer one) and an election timeout later this node is still the one that
  should lead, take a fresh epoch. Standalone nodes sharing a Broker take
  turns this way; a cluster node whose election still names it after a
  partition would otherwise keep a leadership that does no duties (gossip's
  leader changes only with the view, so no new verdict would ever come:
  ``jobtrio sim --seed 2 --algorithm gossip --duration 20``).

Its collaborators are explicit: the Leadership it writes (and whose fenced
signal it waits on), the Broker (epochs), the Store (election records), the
event bus, the metrics, a clock, and two views of the election given as
callables: the current verdict and the members to record.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..backends.base import BackendUnavailable, Broker, Store
from ..backoff import Backoff
from ..events import EventBus
from ..metrics import NodeMetrics
from .leadership import Leadership

log = logging.getLogger("jobtrio.elector")

#: (first, maximum) seconds between tries of taking an epoch while the Broker is down.
EPOCH_RETRY = (0.05, 2.0)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who should lead, in which term; ``term`` None: the epoch is the term (standalone)."""

    leader: str | None
    term: int | None


class Elector:
    def __init__(
        self,
        node_id: str,
        algorithm: str,
        *,
        leadership: Leadership,
        broker: Broker,
        store: Store,
        events: EventBus,
        metrics: NodeMetrics,
        clock: Callable[[], float],
        current: Callable[[], Verdict | None],
        members: Callable[[], list[str]],
        retake_after: float,
    ) -> None:
        self.node_id = node_id
        self.algorithm = algorithm
        self._leadership = leadership
        self._broker = broker
        self._store = store
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._current = current
        self._members = members
        self._retake_after = retake_after
        self._verdicts_send, self._verdicts = trio.open_memory_channel[Verdict](math.inf)

    @classmethod
    def alone(cls, node_id: str, **collaborators: object) -> Elector:
        """A node without a cluster: it should always lead, with an epoch all the same.

        Several such nodes may share one Broker (workers started without
        cluster settings): the newest epoch fences the others off, and a
        fenced one retakes after ``retake_after``, so they take turns and
        exactly one performs the duties at a time.
        """
        mine = Verdict(node_id, None)
        return cls(
            node_id,
            "standalone",
            current=lambda: mine,
            members=lambda: [node_id],
            **collaborators,  # type: ignore[arg-type]
        )

    def verdict(self, verdict: Verdict) -> None:
        """A new verdict from the election (applied in order, by :meth:`run`)."""
        self._verdicts_send.send_nowait(verdict)

    def _still(self, verdict: Verdict) -> bool:
        """Whether ``verdict`` is still the election's, naming this node."""
        return verdict.leader == self.node_id and self._current() == verdict

    async def run(self) -> None:
        """Apply verdicts until cancelled, starting from the current one (also after a crash)."""
        current = self._current()
        if current is not None:
            self.verdict(current)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._retake_when_fenced)
            async for verdict in self._verdicts:
                if verdict.leader == self.node_id:
                    await self._lead(verdict)
                else:
                    self._follow(verdict)

    def _follow(self, verdict: Verdict) -> None:
        term = verdict.term or 0
        self._leadership.set(verdict.leader, term, None, self._clock())
        self._metrics.is_leader.set(0)
        self._metrics.leader_changes.inc()
        self._events.publish("leader.changed", leader=verdict.leader, term=term)

    async def _lead(self, verdict: Verdict) -> None:
        epoch = await self._take_epoch(verdict)
        if epoch is None or not self._still(verdict):
            return  # lost it again while waiting for the Broker
        term = verdict.term if verdict.term is not None else epoch
        me = self.node_id
        self._leadership.set(me, term, epoch, self._clock())
        self._metrics.is_leader.set(1)
        self._metrics.leader_changes.inc()
        log.info("leading (%s term %d, fencing epoch %d)", self.algorithm, term, epoch)
        self._events.publish("leader.changed", leader=me, term=term, epoch=epoch)
        try:
            await self._store.add_election(
                {
                    "leader": me,
                    "term": term,
                    "epoch": epoch,
                    "algorithm": self.algorithm,
                    "at": self._clock(),
                    "members": self._members(),
                }
            )
        except BackendUnavailable as exc:
            log.warning("could not record the election: %s", exc)

    async def _take_epoch(self, verdict: Verdict) -> int | None:
        backoff = Backoff(*EPOCH_RETRY)
        while self._still(verdict):
            try:
                return await self._broker.acquire_epoch(self.node_id, self._clock())
            except BackendUnavailable as exc:
                log.warning("cannot take a fencing epoch yet: %s", exc)
                await trio.sleep(backoff.next())
        return None

    async def _retake_when_fenced(self) -> None:
        leadership = self._leadership
        while True:
            while not leadership.is_fenced:
                await leadership.wait_change()
            epoch = leadership.view.epoch
            await trio.sleep(self._retake_after)  # take turns with whoever fenced us
            verdict = self._current()
            if leadership.view.epoch != epoch or verdict is None or not self._still(verdict):
                continue  # replaced meanwhile, or another node should lead now
            log.info("epoch %d was fenced off but this node should still lead: retaking", epoch)
            self.verdict(verdict)
            while leadership.view.epoch == epoch:
                await leadership.wait_change()
