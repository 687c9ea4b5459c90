"""The cluster actor: drives SWIM membership and the election over the transport.

The protocol cores (``cluster/swim.py``, ``cluster/raft.py``...) are pure
state machines; this actor owns their I/O. It feeds them ticks when their
next deadline passes and the messages the transport delivers, carries out
what they return (sends, membership changes), and hands each
``LeaderChanged`` to the node's elector (``actors/elector.py``) as a
``Verdict``: the elector takes the fencing epoch and sets the Leadership.
While this node leads, it keeps the Store's ``nodes`` in step with the view.

It also carries one message of its own, ``CancelJob`` (``job.cancel``): a
cancel made on one node is pushed to all peers, so the node running the job
interrupts it at once instead of at its next lease renewal.

It reaches nothing of the node's but what :class:`ClusterSeams` gives it.

The same actor runs under real websockets and under the simulator, which
passes its own transport and clock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..backends.base import BackendUnavailable, NodeRecord, Store
from ..cluster.election import Election, ElectionTiming, RaftVoting, make_election
from ..cluster.members import MemberView
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
from ..cluster.swim import Swim, SwimTiming
from ..cluster.transport import PeerTransport
from ..events import EventBus
from .elector import Verdict
from .leadership import Leadership

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
class ClusterSeams:
    """What the cluster actor needs from its node, and nothing more."""

    #: Takes the election's verdicts (the node's ``Elector.verdict``).
    on_verdict: Callable[[Verdict], None]
    #: Stops a local attempt of a job cancelled on another node.
    on_cancel: Callable[[str], None]
    events: EventBus
    store: Store
    leadership: Leadership
    #: The wall clock the Store's records use.
    clock: Callable[[], float]


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
    #: What peers learn of this node's work (member meta): the types it can run, one a
    #: line ('' when they do not fit a meta value: then it counts as running any), and
    #: its QUEUES ('' for every queue).
    types: str = ""
    queues: str = ""


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
            {
                "api_url": config.api_url,
                "workers": config.worker_count,
                "types": config.types,
                "queues": config.queues,
            },
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
        self.started_at = 0.0
        self.dropped_messages = 0
        self._seams: ClusterSeams | None = None

    # -- views --------------------------------------------------------------------------------
    def members(self) -> list[MemberView]:
        return self.swim.members()

    def alive(self) -> frozenset[str]:
        return self.swim.alive_ids()

    def current_verdict(self) -> Verdict | None:
        """Who the election names now (None while it names nobody)."""
        leader = self.election.leader
        return None if leader is None else Verdict(leader, self.election.term)

    def alive_sorted(self) -> list[str]:
        return sorted(self.swim.alive_ids())

    # -- commands -----------------------------------------------------------------------------
    def broadcast_cancel(self, job_id: str) -> None:
        for member in sorted(self.swim.alive_ids()):  # sorted: a set's order varies by process
            if member != self.config.node_id:
                self.transport.send(member, encode(CancelJob(job_id)))

    def leave(self) -> None:
        """Announce a graceful leave (the transport flushes it while the node stops)."""
        self._carry_out(self.swim.leave(self._monotonic()))

    # -- the actor ----------------------------------------------------------------------------
    async def run(self, seams: ClusterSeams) -> None:
        self._seams = seams
        now = self._monotonic()
        self.started_at = now
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.record_members, seams)
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
            if self._seams is not None:
                self._seams.on_cancel(message.job_id)
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
                if isinstance(out, MemberUp) and self._seams is not None:
                    self._seams.events.publish("member.up", member=out.node_id, address=out.address)
            elif isinstance(out, MemberDown):
                if out.left:
                    self.transport.forget(out.node_id)
                membership_changed = True
                if self._seams is not None:
                    self._seams.events.publish("member.down", member=out.node_id, left=out.left)
            elif isinstance(out, LeaderChanged) and self._seams is not None:
                self._seams.on_verdict(Verdict(out.leader, out.term))
        if membership_changed:
            now = self._monotonic()
            self._carry_out(
                self.election.membership_changed(self.swim.alive_ids(), now, self.swim.left_ids())
            )

    async def record_members(
        self, seams: ClusterSeams, every: float = 5.0, forget_after: float = 3600.0
    ) -> None:
        """While leading, keep the Store's ``nodes`` in step with the view; prune the long dead."""
        while True:
            await trio.sleep(every)
            if not seams.leadership.is_leader:
                continue
            now = self._monotonic()
            wall = seams.clock()
            try:
                for member in self.swim.members():
                    last = member.last_contact if member.last_contact is not None else now
                    if member.state in ("dead", "left") and now - last > forget_after:
                        await seams.store.delete_node(member.node_id)
                        continue
                    await seams.store.put_node(
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
