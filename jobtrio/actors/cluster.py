"""The cluster actor: drives SWIM membership and the election over the transport.

The protocol cores (``cluster/swim.py``, ``cluster/raft.py``...) are pure
state machines; this actor owns their I/O. It feeds them ticks when their
next deadline passes and the messages the transport delivers, carries out
what they return (sends, membership changes), and turns ``LeaderChanged``
into the node's ``Leadership``: when *this* node becomes leader it first
takes a fresh fencing epoch from the shared Broker, and only then do the
leader duties start. Leadership records go to the Store (``elections``) and
every change is published as an event.

It also carries one message of its own, ``job.cancel``: a cancel made on one
node is pushed to all peers, so the node running the job interrupts it at
once instead of at its next lease renewal.

The same actor runs under real websockets and under the simulator, which
passes its own transport and clock.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..backends.base import BackendUnavailable, NodeRecord
from ..backoff import Backoff
from ..cluster.election import Election, ElectionTiming, RaftVoting, make_election
from ..cluster.messages import (
    BULLY_MESSAGES,
    RAFT_MESSAGES,
    SWIM_MESSAGES,
    CancelJob,
    LeaderChanged,
    MemberDown,
    MemberUp,
    MemberUpdated,
    Output,
    ProtocolError,
    Send,
    SendToAddress,
    decode,
    encode,
)
from ..cluster.raft_state import MemoryRaftState, RaftStateStore
from ..cluster.swim import MemberView, Swim, SwimTiming
from ..cluster.transport import PeerTransport

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("jobtrio.cluster")

_SWIM_KINDS = frozenset(cls.kind for cls in SWIM_MESSAGES)
_ELECTION_KINDS = frozenset(cls.kind for cls in (*RAFT_MESSAGES, *BULLY_MESSAGES))


def probe_interval(election_timeout: float, election_interval: float) -> float:
    """SWIM's probe period: memberlist's 1 s LAN default scaled to the election settings.

    Never slower than ``ELECTION_INTERVAL`` and at least five probes per
    ``ELECTION_TIMEOUT``, so a dead member is confirmed within a few election
    timeouts (suspicion lasts four probe periods).
    """
    return min(election_interval, election_timeout / 5)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    node_id: str
    advertise: str
    seeds: tuple[str, ...]
    algorithm: str
    election_timeout: float
    election_interval: float
    api_url: str
    worker_count: int


class ClusterActor:
    def __init__(
        self,
        config: ClusterConfig,
        transport: PeerTransport,
        *,
        monotonic: Callable[[], float] = trio.current_time,
        rng: random.Random | None = None,
        raft_state: RaftStateStore | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self._monotonic = monotonic
        rng = rng or random.Random()
        self.swim = Swim(
            config.node_id,
            config.advertise,
            {"api_url": config.api_url, "workers": config.worker_count},
            SwimTiming.scaled(probe_interval(config.election_timeout, config.election_interval)),
            random.Random(rng.getrandbits(64)),
        )
        self.election: Election = make_election(
            config.algorithm,
            config.node_id,
            (),
            ElectionTiming.from_settings(config.election_timeout, config.election_interval),
            random.Random(rng.getrandbits(64)),
            # Raft's voters: the configured addresses, never the SWIM view.
            voting=RaftVoting(
                frozenset({config.advertise, *config.seeds}),
                config.advertise,
                self.swim.address_of,
                raft_state if raft_state is not None else MemoryRaftState(),
            ),
        )
        self._leader_changes_send, self._leader_changes = trio.open_memory_channel[LeaderChanged](
            math.inf
        )
        self.started_at = 0.0
        self.dropped_messages = 0
        self._node: Node | None = None

    # -- views --------------------------------------------------------------------------------
    def members(self) -> list[MemberView]:
        return self.swim.members()

    def alive(self) -> frozenset[str]:
        return self.swim.alive_ids()

    # -- commands -----------------------------------------------------------------------------
    def broadcast_cancel(self, job_id: str) -> None:
        for member in sorted(self.swim.alive_ids()):  # sorted: a set's order varies by process
            if member != self.config.node_id:
                self.transport.send(member, encode(CancelJob(job_id)))

    def leave(self) -> None:
        """Announce a graceful leave (the transport flushes it while the node stops)."""
        self._carry_out(self.swim.leave(self._monotonic()))

    # -- the actor ----------------------------------------------------------------------------
    async def run(self, node: Node) -> None:
        self._node = node
        now = self._monotonic()
        self.started_at = now
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._apply_leadership, node)
            nursery.start_soon(self.record_members, node)
            nursery.start_soon(self._retake_when_fenced, node)
            self._carry_out(self.swim.join(self.config.seeds, now))
            self._carry_out(self.election.tick(now))
            while True:
                deadline = min(
                    d
                    for d in (
                        self.swim.next_deadline(),
                        self.election.next_deadline(),
                        now + 1.0,
                    )
                    if d is not None
                )
                incoming = None
                with trio.move_on_at(deadline):
                    incoming = await self.transport.receive()
                now = self._monotonic()
                if incoming is not None:
                    self._on_message(incoming.sender, incoming.message, now)
                if now >= deadline or incoming is None:
                    self._carry_out(self.swim.tick(now))
                    self._carry_out(self.election.tick(now))

    def _on_message(self, sender: str, data: dict[str, Any], now: float) -> None:
        try:
            message = decode(data)
        except ProtocolError as exc:
            self.dropped_messages += 1
            log.warning("dropped a message from %s: %s", sender, exc.reason)
            return
        if isinstance(message, CancelJob):
            if self._node is not None:
                self._node.dispatcher.interrupt(message.job_id, "cancelled")
        elif message.kind in _SWIM_KINDS:
            self._carry_out(self.swim.step(sender, message, now))
        elif message.kind in _ELECTION_KINDS:
            self._carry_out(self.election.step(sender, message, now))

    def _carry_out(self, outputs: list[Output]) -> None:
        membership_changed = False
        for out in outputs:
            if isinstance(out, Send):
                self.transport.send(out.to, encode(out.message))
            elif isinstance(out, SendToAddress):
                self.transport.send_to_address(out.address, encode(out.message))
            elif isinstance(out, MemberUp | MemberUpdated):
                self.transport.set_address(out.node_id, out.address)
                membership_changed = True
                if isinstance(out, MemberUp) and self._node is not None:
                    self._node.events.publish("member.up", member=out.node_id, address=out.address)
            elif isinstance(out, MemberDown):
                if out.left:
                    self.transport.forget(out.node_id)
                membership_changed = True
                if self._node is not None:
                    self._node.events.publish("member.down", member=out.node_id, left=out.left)
            elif isinstance(out, LeaderChanged):
                self._leader_changes_send.send_nowait(out)
        if membership_changed:
            now = self._monotonic()
            self._carry_out(
                self.election.membership_changed(self.swim.alive_ids(), now, self.swim.left_ids())
            )

    async def _apply_leadership(self, node: Node) -> None:
        """Turn the election's verdicts into the node's Leadership, with a fencing epoch."""
        async for change in self._leader_changes:
            me = self.config.node_id
            if change.leader != me:
                node.leadership.set(change.leader, change.term, None, node.clock())
                node.metrics.is_leader.set(0)
                node.metrics.leader_changes.inc()
                node.events.publish("leader.changed", leader=change.leader, term=change.term)
                continue
            epoch = await self._take_epoch(node)
            if epoch is None or self.election.leader != me or self.election.term != change.term:
                continue  # lost it again while waiting for the Broker
            node.leadership.set(me, change.term, epoch, node.clock())
            node.metrics.is_leader.set(1)
            node.metrics.leader_changes.inc()
            log.info(
                "leading (%s term %d, fencing epoch %d)", self.config.algorithm, change.term, epoch
            )
            node.events.publish("leader.changed", leader=me, term=change.term, epoch=epoch)
            try:
                await node.store.add_election(
                    {
                        "leader": me,
                        "term": change.term,
                        "epoch": epoch,
                        "algorithm": self.config.algorithm,
                        "at": node.clock(),
                        "members": sorted(self.swim.alive_ids()),
                    }
                )
            except BackendUnavailable as exc:
                log.warning("could not record the election: %s", exc)

    async def record_members(
        self, node: Node, every: float = 5.0, forget_after: float = 3600.0
    ) -> None:
        """While leading, keep the Store's ``nodes`` in step with the view; prune the long dead."""
        while True:
            await trio.sleep(every)
            if not node.leadership.is_leader:
                continue
            now = self._monotonic()
            wall = node.clock()
            try:
                for member in self.swim.members():
                    last = member.last_contact if member.last_contact is not None else now
                    if member.state in ("dead", "left") and now - last > forget_after:
                        await node.store.delete_node(member.node_id)
                        continue
                    await node.store.put_node(
                        NodeRecord(
                            node_id=member.node_id,
                            address=member.address,
                            state=member.state,
                            worker_count=int(member.meta.get("workers") or 0),
                            started_at=0.0,
                            last_seen=wall - (now - last),
                            api_url=str(member.meta.get("api_url") or ""),
                        )
                    )
            except BackendUnavailable as exc:
                log.warning("could not record members: %s", exc)

    async def _retake_when_fenced(self, node: Node) -> None:
        """Take a fresh epoch if our duties were fenced off yet our election still names us.

        Another node took a newer epoch while it believed it led (the other side
        of a partition, a view still converging). If an election timeout later
        our own election still says we lead, nobody else will act: gossip's
        leader changes only with the view, so no new ``LeaderChanged`` would
        ever come and the cluster would keep a leader that does no duties.
        (Found by the simulator: ``jobtrio sim --seed 2 --algorithm gossip --duration 20``.)
        """
        me = self.config.node_id
        while True:
            await trio.sleep(self.config.election_timeout)
            epoch = node.leadership.view.epoch
            if epoch is not None and node.duties.last_fenced == epoch:
                if self.election.leader == me:
                    log.info("epoch %d was fenced off but we still lead: retaking", epoch)
                    self._leader_changes_send.send_nowait(LeaderChanged(me, self.election.term))

    async def _take_epoch(self, node: Node) -> int | None:
        backoff = Backoff(0.05, 2.0)
        while self.election.leader == self.config.node_id:
            try:
                return await node.broker.acquire_epoch(self.config.node_id, node.clock())
            except BackendUnavailable as exc:
                log.warning("cannot take a fencing epoch yet: %s", exc)
                await trio.sleep(backoff.next())
        return None
