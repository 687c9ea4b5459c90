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

Determinism: all choices come from the injected ``rng`` and the inputs, and
iteration is over insertion-ordered dicts or sorted lists, never over sets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from .messages import (
    Ack,
    Gossip,
    Join,
    MemberDown,
    MemberState,
    MemberUp,
    MemberUpdate,
    MemberUpdated,
    Message,
    Meta,
    Output,
    Ping,
    PingReq,
    Send,
    SendToAddress,
    Sync,
)

_UP: tuple[MemberState, ...] = ("alive", "suspect")


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


@dataclass(frozen=True, slots=True)
class MemberView:
    """A read-only snapshot of one member, for APIs and dashboards."""

    node_id: str
    address: str
    state: MemberState
    incarnation: int
    meta: Meta
    last_contact: float | None


@dataclass(slots=True)
class _Member:
    node_id: str
    address: str
    incarnation: int
    state: MemberState
    meta: Meta
    state_since: float
    last_contact: float | None = None
    suspect_deadline: float | None = None

    def record(self) -> MemberUpdate:
        return MemberUpdate(self.node_id, self.address, self.incarnation, self.state, self.meta)


@dataclass(slots=True)
class _Broadcast:
    update: MemberUpdate
    transmits: int
    order: int


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
        self._incarnation = 0
        self._members: dict[str, _Member] = {
            me: _Member(me, address, 0, "alive", dict(meta), state_since=0.0)
        }
        self._broadcasts: dict[str, _Broadcast] = {}
        self._broadcast_order = 0
        self._seq = 0
        self._probe: _Probe | None = None
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._relays: dict[int, _Relay] = {}
        self._seeds: tuple[str, ...] = ()
        self._timers = _Timers()
        self._started = False
        self._left = False
        self._out: list[Output] = []
        self._queue(self._members[me].record())

    # ------------------------------------------------------------ queries

    @property
    def me(self) -> str:
        return self._me

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def has_left(self) -> bool:
        return self._left

    def members(self) -> list[MemberView]:
        """Every member this node knows of (itself included), by id."""
        return [
            MemberView(m.node_id, m.address, m.state, m.incarnation, dict(m.meta), m.last_contact)
            for m in sorted(self._members.values(), key=lambda m: m.node_id)
        ]

    def alive_ids(self) -> frozenset[str]:
        """Ids of members alive or suspect, this node included unless it left."""
        return frozenset(
            m.node_id
            for m in self._members.values()
            if m.state in _UP and not (m.node_id == self._me and self._left)
        )

    def left_ids(self) -> frozenset[str]:
        """Ids of members that announced a graceful leave."""
        return frozenset(m.node_id for m in self._members.values() if m.state == "left")

    def address_of(self, node_id: str) -> str | None:
        """Transport address of a known member (dead ones included)."""
        member = self._members.get(node_id)
        return member.address if member else None

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has work (``None`` before the first call
        or after leaving)."""
        if not self._started or self._left:
            return None
        t = self._timers
        times = [t.next_probe, t.next_push_pull, t.next_reconnect]
        if self._broadcasts:
            times.append(t.next_gossip)
        if self._seeds and not self._has_live_peer():
            times.append(t.next_join)
        if self._probe is not None:
            if not self._probe.indirect_sent:
                times.append(self._probe.indirect_at)
            times.append(self._probe.deadline)
        times.extend(r.expires for r in self._relays.values())
        for m in self._members.values():
            if m.suspect_deadline is not None:
                times.append(m.suspect_deadline)
            if m.state in ("dead", "left") and m.node_id != self._me:
                times.append(m.state_since + self._timing.dead_retention)
        return min(times)

    # ------------------------------------------------------------ inputs

    def join(self, seed_addresses: Iterable[str], now: float) -> list[Output]:
        """Introduce this node to the cluster through seed addresses.

        Seeds equal to our own address are skipped, so every node can be given
        the same seed list. Joins are retried while no live peer is known.
        """
        self._ensure_started(now)
        own = self._members[self._me].address
        self._seeds = tuple(dict.fromkeys(a for a in seed_addresses if a and a != own))
        self._send_joins(now)
        return self._flush()

    def tick(self, now: float) -> list[Output]:
        """Run whatever timers are due. Call at least as often as
        ``next_deadline`` asks (or every ~``probe_timeout / 5``)."""
        self._ensure_started(now)
        if self._left:
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
        if self._left or sender == self._me:
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
                self._out.append(Send(sender, Sync(self._full_state(), reply=False)))
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
        if self._left:
            return self._flush()
        self._incarnation += 1
        me = self._members[self._me]
        me.incarnation = self._incarnation
        me.state = "left"
        me.state_since = now
        self._left = True
        update = me.record()
        for node in self._live_peers():
            self._out.append(Send(node, Gossip((update,))))
        self._probe = None
        self._relays.clear()
        self._broadcasts.clear()
        return self._flush()

    def update_meta(self, meta: Meta, now: float) -> list[Output]:
        """Publish new meta (e.g. a changed worker count) under a new incarnation."""
        self._ensure_started(now)
        if self._left:
            return self._flush()
        self._incarnation += 1
        me = self._members[self._me]
        me.incarnation = self._incarnation
        me.meta = dict(meta)
        self._queue(me.record())
        return self._flush()

    # ------------------------------------------------------------ timers

    def _ensure_started(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        t, timing = self._timers, self._timing
        self._members[self._me].state_since = now
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
        helpers = [n for n in self._live_peers() if n != probe.target]
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
        for member in list(self._members.values()):
            if member.suspect_deadline is not None and now >= member.suspect_deadline:
                self._apply(
                    MemberUpdate(
                        member.node_id, member.address, member.incarnation, "dead", member.meta
                    ),
                    now,
                )

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
        candidates = self._live_peers() + [
            m.node_id
            for m in self._members.values()
            if m.state == "dead" and now - m.state_since < timing.gossip_to_dead
        ]
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
            peers = self._live_peers()
            if peers:
                node = self._rng.choice(peers)
                self._out.append(Send(node, Sync(self._full_state(), reply=True)))
        if now >= timers.next_reconnect:
            timers.next_reconnect = _advance(timers.next_reconnect, timing.reconnect_interval, now)
            dead = [m.node_id for m in self._members.values() if m.state == "dead"]
            if dead:
                node = self._rng.choice(dead)
                self._out.append(Send(node, Sync(self._full_state(), reply=True)))
        if now >= timers.next_join:
            timers.next_join = _advance(timers.next_join, timing.join_retry_interval, now)
            if self._seeds and not self._has_live_peer():
                self._send_joins(now)

    def _tick_reap(self, now: float) -> None:
        """Forget long-dead members so the view does not grow without bound."""
        retention = self._timing.dead_retention
        for member in list(self._members.values()):
            if (
                member.node_id != self._me
                and member.state in ("dead", "left")
                and now >= member.state_since + retention
            ):
                del self._members[member.node_id]
                self._broadcasts.pop(member.node_id, None)

    def _send_joins(self, now: float) -> None:
        self._timers.next_join = now + self._timing.join_retry_interval
        record = self._members[self._me].record()
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
        self._out.append(SendToAddress(joiner.address, Sync(self._full_state(), reply=False)))

    # ------------------------------------------------------------ state merging

    def _merge(
        self, updates: Iterable[MemberUpdate], now: float, *, from_sync: bool = False
    ) -> None:
        for update in updates:
            if from_sync and update.state == "dead" and update.node_id != self._me:
                # memberlist: a remote "dead" is only a suspicion here, so a
                # node that is in fact alive gets its chance to refute.
                update = MemberUpdate(
                    update.node_id, update.address, update.incarnation, "suspect", update.meta
                )
            self._apply(update, now)

    def _apply(self, u: MemberUpdate, now: float) -> None:
        """Merge one record using SWIM's precedence rules (incarnation first;
        at equal incarnation dead/left > suspect > alive)."""
        if u.node_id == self._me:
            self._about_me(u)
            return
        member = self._members.get(u.node_id)
        if member is None:
            self._add_member(u, now)
            return
        if u.state == "alive":
            if u.incarnation <= member.incarnation:
                return
            was_up = member.state in _UP
            changed = (member.address, member.meta) != (u.address, u.meta)
            if member.state != "alive":
                member.state_since = now
            member.incarnation = u.incarnation
            member.state = "alive"
            member.address = u.address
            member.meta = dict(u.meta)
            member.suspect_deadline = None
            self._queue(u)
            if not was_up:
                self._add_probe_target(u.node_id)
                self._out.append(MemberUp(u.node_id, u.address, dict(u.meta)))
            elif changed:
                self._out.append(MemberUpdated(u.node_id, u.address, dict(u.meta)))
            return
        if u.incarnation < member.incarnation:
            return
        if u.state == "suspect":
            if member.state == "alive" or (
                member.state == "suspect" and u.incarnation > member.incarnation
            ):
                # A fresh suspicion (or one of a newer incarnation, which the
                # node gets a full timeout to refute again).
                if member.state != "suspect":
                    member.state_since = now
                member.state = "suspect"
                member.incarnation = u.incarnation
                member.suspect_deadline = now + self._suspicion_timeout()
                self._queue(member.record())
            return
        # dead or left
        if member.state in ("dead", "left"):
            if member.state == "dead" and u.state == "left":
                # A graceful leave outranks a failure: stop reconnect attempts.
                member.state = "left"
                member.incarnation = u.incarnation
                self._queue(member.record())
            return
        member.incarnation = u.incarnation
        member.state = u.state
        member.state_since = now
        member.suspect_deadline = None
        if self._probe is not None and self._probe.target == u.node_id:
            self._probe = None
        self._queue(member.record())
        self._out.append(MemberDown(u.node_id, left=u.state == "left"))

    def _add_member(self, u: MemberUpdate, now: float) -> None:
        """First news of a node. A live or suspect one is reachable, so it is
        announced and probed; a dead or departed one is only remembered (its
        address lets a reconnect find it after a partition heals)."""
        member = _Member(
            u.node_id, u.address, u.incarnation, u.state, dict(u.meta), state_since=now
        )
        self._members[u.node_id] = member
        if u.state not in _UP:
            return
        if u.state == "suspect":
            member.suspect_deadline = now + self._suspicion_timeout()
        self._add_probe_target(u.node_id)
        self._out.append(MemberUp(u.node_id, u.address, dict(u.meta)))
        self._queue(u)

    def _suspicion_timeout(self) -> float:
        n = sum(1 for m in self._members.values() if m.state in _UP)
        return self._timing.suspicion_timeout(n)

    def _about_me(self, u: MemberUpdate) -> None:
        """Refute anything about us that is not our current truth."""
        if self._left:
            return
        me = self._members[self._me]
        if u.state == "alive":
            stale = u.incarnation < self._incarnation
            same = u.incarnation == self._incarnation and (u.address, u.meta) == (
                me.address,
                me.meta,
            )
            if stale or same:
                return
        elif u.incarnation < self._incarnation:
            return
        # A suspicion or death at our incarnation or later, or someone holding
        # an alive record of ours we did not issue (e.g. from before a restart).
        self._incarnation = max(self._incarnation, u.incarnation) + 1
        me.incarnation = self._incarnation
        self._queue(me.record())

    # ------------------------------------------------------------ helpers

    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _live_peers(self) -> list[str]:
        return [
            m.node_id for m in self._members.values() if m.state in _UP and m.node_id != self._me
        ]

    def _has_live_peer(self) -> bool:
        return any(m.state in _UP and m.node_id != self._me for m in self._members.values())

    def _full_state(self) -> tuple[MemberUpdate, ...]:
        return tuple(m.record() for m in self._members.values())

    def _queue(self, update: MemberUpdate) -> None:
        """Gossip ``update``, replacing any older pending one about the same node."""
        self._broadcast_order += 1
        self._broadcasts[update.node_id] = _Broadcast(update, 0, self._broadcast_order)

    def _piggyback(self) -> tuple[MemberUpdate, ...]:
        if not self._broadcasts:
            return ()
        n = sum(1 for m in self._members.values() if m.state in _UP)
        limit = self._timing.retransmit_limit(n)
        chosen = sorted(self._broadcasts.values(), key=lambda b: (b.transmits, -b.order))
        chosen = chosen[: self._timing.max_piggyback]
        for b in chosen:
            b.transmits += 1
            if b.transmits >= limit:
                del self._broadcasts[b.update.node_id]
        return tuple(b.update for b in chosen)

    def _next_probe_target(self) -> str | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                node = self._probe_order[self._probe_index]
                self._probe_index += 1
                member = self._members.get(node)
                if member is not None and member.state in _UP and node != self._me:
                    return node
            # Round over: reshuffle the live members for the next one.
            self._probe_order = sorted(self._live_peers())
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
