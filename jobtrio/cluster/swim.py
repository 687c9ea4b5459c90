"""SWIM membership (Das, Gupta, Motivala 2002) as hashicorp/memberlist runs it, sans-IO.

Each node keeps a view of the cluster, one record per member: address, meta,
state (``alive``, ``suspect``, ``dead``, ``left``) and an incarnation number
that only the member itself increments. The view is kept honest by:

* **Probing.** Every ``probe_interval`` one member is pinged, round-robin over
  a list reshuffled each round (every member is probed within one round,
  unlike pure random choice). No ack within ``probe_timeout`` sends a
  ping-req to ``indirect_checks`` random members who probe it for us; no ack
  by the end of the interval makes it ``suspect``. Indirect probes tell a dead
  node from a bad link between two live ones.
* **Suspicion.** A suspect gets ``suspicion_timeout`` (memberlist:
  ``suspicion_mult * max(1, log10(n)) * probe_interval``) to refute before it
  is declared ``dead``. A node that hears it is suspected (or declared dead)
  refutes by bumping its incarnation and gossiping ``alive``, which beats any
  record with a lower incarnation. A slow-but-alive node is therefore not
  evicted.
* **Dissemination.** Updates ride piggyback on pings and acks (and a periodic
  fan-out to ``gossip_nodes`` random members every ``gossip_interval``), each
  retransmitted ``retransmit_mult * ceil(log10(n + 1))`` times, freshest and
  least-sent first: enough to reach everyone with high probability in
  O(log n) rounds without flooding.
* **Anti-entropy.** A full-state exchange (push-pull ``Sync``) with a random
  member every ``push_pull_interval`` repairs anything gossip lost, and one
  with a random *dead* member every ``reconnect_interval`` is how two halves
  of a healed partition find each other again. Remote ``dead`` records merged
  from a sync count only as ``suspect``, giving the node a chance to refute.
* **Join.** A node starts knowing only seed *addresses*: it sends ``Join``
  (its own record) to each, and a seed answers with a full ``Sync``. Joins are
  retried every ``join_retry_interval`` while the node knows no live peer.
* **Leave.** ``leave`` gossips a ``left`` record (with a bumped incarnation)
  to every live member, so peers drop the node at once instead of suspecting
  it for a suspicion timeout.

Outputs (:mod:`.messages`): ``Send`` to a node id (resolve with
:meth:`Swim.address_of`; it remembers addresses of dead members too, so
reconnects work), ``SendToAddress`` for seeds and join replies, ``MemberUp``
(emitted *before* any ``Send`` to that member in the same batch, so an actor
can register the address first), ``MemberUpdated`` and ``MemberDown``.
Suspects still count as alive in :meth:`Swim.alive_ids`: they are only
suspected, and elections should not react before a failure is confirmed.

Three parts, split along memberlist's lines so each is testable alone: the
member table with SWIM's merge rules and the suspects' deadlines
(:mod:`.members`), the broadcast queue (:mod:`.broadcasts`), and this
machine, which owns probing, the periodic timers, anti-entropy, join and
leave, and carries out what a merge changed.

Determinism: all choices come from the injected ``rng`` and the inputs, and
iteration is over insertion-ordered dicts or sorted lists, never over sets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from .broadcasts import BroadcastQueue
from .members import UP_STATES, Applied, MemberTable, MemberView
from .messages import (
    Ack,
    Gossip,
    Join,
    MemberUpdate,
    Message,
    Meta,
    Output,
    Ping,
    PingReq,
    Send,
    SendToAddress,
    Sync,
)


@dataclass(frozen=True, slots=True)
class SwimTiming:
    """SWIM durations in seconds; defaults are memberlist's LAN profile."""

    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: float = 4.0
    retransmit_mult: int = 4
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_dead: float = 30.0
    push_pull_interval: float = 30.0
    reconnect_interval: float = 10.0
    join_retry_interval: float = 5.0
    dead_retention: float = 3600.0
    max_piggyback: int = 8

    def __post_init__(self) -> None:
        if not self.probe_interval > 0:
            raise ValueError("probe_interval must be positive")
        if not 0 < self.probe_timeout < self.probe_interval:
            raise ValueError("probe_timeout must be positive and below probe_interval")
        for name in (
            "gossip_interval",
            "gossip_to_dead",
            "push_pull_interval",
            "reconnect_interval",
            "join_retry_interval",
            "dead_retention",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.indirect_checks < 0 or self.gossip_nodes < 1 or self.max_piggyback < 1:
            raise ValueError("indirect_checks >= 0, gossip_nodes >= 1, max_piggyback >= 1")
        if self.suspicion_mult <= 0 or self.retransmit_mult < 1:
            raise ValueError("suspicion_mult must be positive and retransmit_mult >= 1")

    @classmethod
    def scaled(cls, probe_interval: float) -> SwimTiming:
        """memberlist's LAN profile with every duration scaled to ``probe_interval``
        (1s gives the defaults): a faster probe makes detection faster and
        keeps every ratio that the protocol's guarantees rest on."""
        f = probe_interval
        return cls(
            probe_interval=f,
            probe_timeout=0.5 * f,
            gossip_interval=0.2 * f,
            gossip_to_dead=30.0 * f,
            push_pull_interval=30.0 * f,
            reconnect_interval=10.0 * f,
            join_retry_interval=5.0 * f,
            dead_retention=3600.0 * f,
        )

    def suspicion_timeout(self, n: int) -> float:
        """Time a suspect has to refute, growing slowly with cluster size ``n``
        because dissemination takes O(log n) rounds; never below
        ``suspicion_mult`` probe intervals."""
        scale = max(1.0, math.log10(max(1, n)))
        return self.suspicion_mult * scale * self.probe_interval

    def retransmit_limit(self, n: int) -> int:
        """How many times one update is piggybacked in a cluster of ``n``."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    indirect_at: float  # no ack by then: ask helpers (ping-req)
    deadline: float  # no ack by then (the next probe slot): suspect
    indirect_sent: bool = False


@dataclass(slots=True)
class _Relay:
    requester: str
    seq: int
    expires: float


@dataclass(slots=True)
class _Timers:
    next_probe: float = 0.0
    next_gossip: float = 0.0
    next_push_pull: float = 0.0
    next_reconnect: float = 0.0
    next_join: float = 0.0


class Swim:
    """One node's SWIM membership state machine."""

    def __init__(
        self,
        me: str,
        address: str,
        meta: Meta,
        timing: SwimTiming,
        rng: random.Random,
    ) -> None:
        self._me = me
        self._timing = timing
        self._rng = rng
        self._members = MemberTable(me, address, meta, timing.suspicion_timeout)
        self._broadcasts = BroadcastQueue(timing.retransmit_limit, timing.max_piggyback)
        self._seq = 0
        self._probe: _Probe | None = None
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._relays: dict[int, _Relay] = {}
        self._seeds: tuple[str, ...] = ()
        self._timers = _Timers()
        self._started = False
        self._out: list[Output] = []
        self._broadcasts.queue(self._members.own().record())

    # ------------------------------------------------------------ queries

    @property
    def me(self) -> str:
        return self._me

    @property
    def incarnation(self) -> int:
        return self._members.incarnation

    @property
    def has_left(self) -> bool:
        return self._members.left

    def members(self) -> list[MemberView]:
        """Every member this node knows of (itself included), by id."""
        return self._members.views()

    def alive_ids(self) -> frozenset[str]:
        """Ids of members alive or suspect, this node included unless it left."""
        return self._members.alive_ids()

    def left_ids(self) -> frozenset[str]:
        """Ids of members that announced a graceful leave."""
        return self._members.left_ids()

    def address_of(self, node_id: str) -> str | None:
        """Transport address of a known member (dead ones included)."""
        return self._members.address_of(node_id)

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has work (``None`` before the first call
        or after leaving)."""
        if not self._started or self._members.left:
            return None
        t = self._timers
        times = [t.next_probe, t.next_push_pull, t.next_reconnect]
        if self._broadcasts:
            times.append(t.next_gossip)
        if self._seeds and not self._members.has_live_peer():
            times.append(t.next_join)
        if self._probe is not None:
            if not self._probe.indirect_sent:
                times.append(self._probe.indirect_at)
            times.append(self._probe.deadline)
        times.extend(r.expires for r in self._relays.values())
        times.extend(self._members.deadlines(self._timing.dead_retention))
        return min(times)

    # ------------------------------------------------------------ inputs

    def join(self, seed_addresses: Iterable[str], now: float) -> list[Output]:
        """Introduce this node to the cluster through seed addresses.

        Seeds equal to our own address are skipped, so every node can be given
        the same seed list. Joins are retried while no live peer is known.
        """
        self._ensure_started(now)
        own = self._members.own().address
        self._seeds = tuple(dict.fromkeys(a for a in seed_addresses if a and a != own))
        self._send_joins(now)
        return self._flush()

    def tick(self, now: float) -> list[Output]:
        """Run whatever timers are due. Call at least as often as
        ``next_deadline`` asks (or every ~``probe_timeout / 5``)."""
        self._ensure_started(now)
        if self._members.left:
            return self._flush()
        self._tick_probe(now)
        self._tick_suspects(now)
        self._tick_relays(now)
        self._tick_gossip(now)
        self._tick_anti_entropy(now)
        self._tick_reap(now)
        return self._flush()

    def step(self, sender: str, message: Message, now: float) -> list[Output]:
        """Handle one message from ``sender``; non-SWIM messages are ignored."""
        self._ensure_started(now)
        if self._members.left or sender == self._me:
            return self._flush()
        if isinstance(message, Ping):
            self._merge(message.updates, now)
            if message.target == self._me:
                self._out.append(Send(sender, Ack(message.seq, self._piggyback())))
        elif isinstance(message, Ack):
            self._merge(message.updates, now)
            self._on_ack(message.seq)
        elif isinstance(message, PingReq):
            self._merge(message.updates, now)
            self._on_ping_req(sender, message, now)
        elif isinstance(message, Join):
            self._on_join(message, now)
        elif isinstance(message, Sync):
            self._merge(message.members, now, from_sync=True)
            if message.reply:
                self._out.append(Send(sender, Sync(self._members.full_state(), reply=False)))
        elif isinstance(message, Gossip):
            self._merge(message.updates, now)
        # After merging, so that a sender first heard of in this message counts.
        member = self._members.get(sender)
        if member is not None:
            member.last_contact = now
        return self._flush()

    def leave(self, now: float) -> list[Output]:
        """Announce a graceful leave to every live member; afterwards the
        machine is inert (no probes, no refutations, no replies)."""
        self._ensure_started(now)
        if self._members.left:
            return self._flush()
        update = self._members.leave(now)
        for node in self._members.live_peers():
            self._out.append(Send(node, Gossip((update,))))
        self._probe = None
        self._relays.clear()
        self._broadcasts.clear()
        return self._flush()

    def update_meta(self, meta: Meta, now: float) -> list[Output]:
        """Publish new meta (e.g. a changed worker count) under a new incarnation."""
        self._ensure_started(now)
        if self._members.left:
            return self._flush()
        self._broadcasts.queue(self._members.set_meta(meta))
        return self._flush()

    # ------------------------------------------------------------ timers

    def _ensure_started(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        t, timing = self._timers, self._timing
        self._members.start(now)
        # A random phase keeps nodes started together from probing in lockstep.
        t.next_probe = now + self._rng.random() * timing.probe_interval
        t.next_gossip = now + timing.gossip_interval
        t.next_push_pull = now + timing.push_pull_interval
        t.next_reconnect = now + timing.reconnect_interval
        t.next_join = now + timing.join_retry_interval

    def _tick_probe(self, now: float) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and now >= probe.indirect_at:
                probe.indirect_sent = True
                self._send_ping_reqs(probe)
            if now >= probe.deadline:
                self._probe = None
                self._probe_failed(probe.target, now)
        if now < self._timers.next_probe:
            return
        # A probe lasts until the next slot, so when ticks run late it still
        # gets its full interval and no slot is skipped.
        interval = self._timing.probe_interval
        self._timers.next_probe = _advance(self._timers.next_probe, interval, now)
        target = self._next_probe_target()
        if target is None:
            return
        self._seq += 1
        indirect_at = min(now + self._timing.probe_timeout, self._timers.next_probe)
        self._probe = _Probe(target, self._seq, indirect_at, self._timers.next_probe)
        self._out.append(Send(target, Ping(self._seq, target, self._piggyback())))

    def _send_ping_reqs(self, probe: _Probe) -> None:
        target = self._members.get(probe.target)
        if target is None:
            return
        helpers = [n for n in self._members.live_peers() if n != probe.target]
        k = min(self._timing.indirect_checks, len(helpers))
        for helper in self._rng.sample(helpers, k):
            self._out.append(
                Send(helper, PingReq(probe.seq, probe.target, target.address, self._piggyback()))
            )

    def _probe_failed(self, node_id: str, now: float) -> None:
        member = self._members.get(node_id)
        if member is not None and member.state == "alive":
            self._apply(
                MemberUpdate(node_id, member.address, member.incarnation, "suspect", member.meta),
                now,
            )

    def _tick_suspects(self, now: float) -> None:
        for applied in self._members.suspects_due(now):
            self._carry_out(applied)

    def _tick_relays(self, now: float) -> None:
        for seq in [s for s, r in self._relays.items() if now >= r.expires]:
            del self._relays[seq]

    def _tick_gossip(self, now: float) -> None:
        timers, timing = self._timers, self._timing
        if now < timers.next_gossip:
            return
        timers.next_gossip = _advance(timers.next_gossip, timing.gossip_interval, now)
        if not self._broadcasts:
            return
        # Recently dead members get gossip too, so a falsely accused node
        # hears about it and can refute.
        candidates = self._members.live_peers() + self._members.dead_ids(now, timing.gossip_to_dead)
        k = min(timing.gossip_nodes, len(candidates))
        for node in self._rng.sample(candidates, k):
            updates = self._piggyback()
            if not updates:
                break
            self._out.append(Send(node, Gossip(updates)))

    def _tick_anti_entropy(self, now: float) -> None:
        timers, timing = self._timers, self._timing
        if now >= timers.next_push_pull:
            timers.next_push_pull = _advance(timers.next_push_pull, timing.push_pull_interval, now)
            peers = self._members.live_peers()
            if peers:
                node = self._rng.choice(peers)
                self._out.append(Send(node, Sync(self._members.full_state(), reply=True)))
        if now >= timers.next_reconnect:
            timers.next_reconnect = _advance(timers.next_reconnect, timing.reconnect_interval, now)
            dead = self._members.dead_ids()
            if dead:
                node = self._rng.choice(dead)
                self._out.append(Send(node, Sync(self._members.full_state(), reply=True)))
        if now >= timers.next_join:
            timers.next_join = _advance(timers.next_join, timing.join_retry_interval, now)
            if self._seeds and not self._members.has_live_peer():
                self._send_joins(now)

    def _tick_reap(self, now: float) -> None:
        """Forget long-dead members so the view does not grow without bound."""
        for node_id in self._members.reap(now, self._timing.dead_retention):
            self._broadcasts.discard(node_id)

    def _send_joins(self, now: float) -> None:
        self._timers.next_join = now + self._timing.join_retry_interval
        record = self._members.own().record()
        for address in self._seeds:
            self._out.append(SendToAddress(address, Join(record)))

    # ------------------------------------------------------------ messages

    def _on_ack(self, seq: int) -> None:
        if self._probe is not None and self._probe.seq == seq:
            self._probe = None
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._out.append(Send(relay.requester, Ack(relay.seq, self._piggyback())))

    def _on_ping_req(self, sender: str, msg: PingReq, now: float) -> None:
        if msg.target == self._me:
            self._out.append(Send(sender, Ack(msg.seq, self._piggyback())))
            return
        self._seq += 1
        self._relays[self._seq] = _Relay(sender, msg.seq, now + self._timing.probe_timeout)
        ping = Ping(self._seq, msg.target, self._piggyback())
        if msg.target in self._members:
            self._out.append(Send(msg.target, ping))
        else:
            self._out.append(SendToAddress(msg.target_address, ping))

    def _on_join(self, msg: Join, now: float) -> None:
        joiner = msg.member
        if joiner.node_id == self._me:
            return  # our own address was among the seeds under another name
        # The joiner speaks for itself, so it is alive whatever its record says.
        self._apply(
            MemberUpdate(joiner.node_id, joiner.address, joiner.incarnation, "alive", joiner.meta),
            now,
        )
        # Reply to the address it gave: we may not have accepted its record
        # (an older incarnation of it is on file) and so cannot name it yet.
        self._out.append(
            SendToAddress(joiner.address, Sync(self._members.full_state(), reply=False))
        )

    # ------------------------------------------------------------ state merging

    def _merge(
        self, updates: Iterable[MemberUpdate], now: float, *, from_sync: bool = False
    ) -> None:
        for applied in self._members.merge(updates, now, from_sync=from_sync):
            self._carry_out(applied)

    def _apply(self, update: MemberUpdate, now: float) -> None:
        self._carry_out(self._members.apply(update, now))

    def _carry_out(self, applied: Applied) -> None:
        """Act on what a merge changed: gossip it, probe or stop probing, tell the actor."""
        if applied.gossip is not None:
            self._broadcasts.queue(applied.gossip)
        if applied.up:
            self._add_probe_target(applied.node_id)
        if applied.down and self._probe is not None and self._probe.target == applied.node_id:
            self._probe = None
        if applied.output is not None:
            self._out.append(applied.output)

    # ------------------------------------------------------------ helpers

    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _piggyback(self) -> tuple[MemberUpdate, ...]:
        return self._broadcasts.take(self._members.up_count())

    def _next_probe_target(self) -> str | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                node = self._probe_order[self._probe_index]
                self._probe_index += 1
                member = self._members.get(node)
                if member is not None and member.state in UP_STATES and node != self._me:
                    return node
            # Round over: reshuffle the live members for the next one.
            self._probe_order = sorted(self._members.live_peers())
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
            if not self._probe_order:
                return None
        return None

    def _add_probe_target(self, node_id: str) -> None:
        """Insert a new member at a random place in the current round, as
        memberlist does, so newcomers are probed soon but not all at once."""
        if node_id in self._probe_order[self._probe_index :]:
            return
        position = self._rng.randint(self._probe_index, len(self._probe_order))
        self._probe_order.insert(position, node_id)


def _advance(scheduled: float, interval: float, now: float) -> float:
    """The next slot of a periodic timer: on schedule if ticks keep up, but
    never in the past if they fell behind (no burst of catch-up work)."""
    following = scheduled + interval
    return following if following > now else now + interval
