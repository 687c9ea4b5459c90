"""SWIM's member table: one record per member, SWIM's merge rules, and suspicion.

memberlist keeps this in its ``nodeState`` map and the ``aliveNode``,
``suspectNode`` and ``deadNode`` handlers; here it is a sans-IO table the
``Swim`` machine owns, testable alone. Each record carries an address, meta,
a state (``alive``, ``suspect``, ``dead``, ``left``) and an incarnation only
the member itself raises.

Merging one record (:meth:`MemberTable.apply`) follows SWIM's precedence:
a higher incarnation wins; at equal incarnation ``dead``/``left`` beat
``suspect``, which beats ``alive``. A suspect gets ``suspicion_timeout(n)`` to
refute before :meth:`MemberTable.suspects_due` declares it dead; anything
about this node that is not its current truth is refuted by raising its own
incarnation. A merge returns an :class:`Applied` saying what changed (what to
gossip, what to announce, whether to start or stop probing the member), and
the machine acts on it: the table sends nothing and keeps no timers but the
suspects' deadlines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .messages import MemberDown, MemberState, MemberUp, MemberUpdate, MemberUpdated, Meta

UP_STATES: tuple[MemberState, ...] = ("alive", "suspect")


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
class Member:
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


@dataclass(frozen=True, slots=True)
class Applied:
    """What merging one record changed."""

    node_id: str
    #: A record to disseminate (the merged one, or this node's refutation).
    gossip: MemberUpdate | None = None
    #: What to tell the actor: the member came up, changed its address or meta, went down.
    output: MemberUp | MemberUpdated | MemberDown | None = None
    #: The member became reachable: probe it.
    up: bool = False
    #: The member died or left: stop probing it.
    down: bool = False

    @property
    def changed(self) -> bool:
        return self.gossip is not None or self.output is not None


class MemberTable:
    def __init__(
        self,
        me: str,
        address: str,
        meta: Meta,
        suspicion_timeout: Callable[[int], float],
    ) -> None:
        self.me = me
        self.incarnation = 0
        self.left = False
        self._suspicion_timeout = suspicion_timeout
        self._members: dict[str, Member] = {
            me: Member(me, address, 0, "alive", dict(meta), state_since=0.0)
        }

    # ------------------------------------------------------------ queries

    def own(self) -> Member:
        return self._members[self.me]

    def get(self, node_id: str) -> Member | None:
        return self._members.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members

    def views(self) -> list[MemberView]:
        """Every member (this node included), by id."""
        return [
            MemberView(m.node_id, m.address, m.state, m.incarnation, dict(m.meta), m.last_contact)
            for m in sorted(self._members.values(), key=lambda m: m.node_id)
        ]

    def alive_ids(self) -> frozenset[str]:
        """Members alive or suspect, this node included unless it left."""
        return frozenset(
            m.node_id
            for m in self._members.values()
            if m.state in UP_STATES and not (m.node_id == self.me and self.left)
        )

    def left_ids(self) -> frozenset[str]:
        return frozenset(m.node_id for m in self._members.values() if m.state == "left")

    def address_of(self, node_id: str) -> str | None:
        member = self._members.get(node_id)
        return member.address if member else None

    def live_peers(self) -> list[str]:
        """Other members alive or suspect, in the order they became known."""
        return [
            m.node_id
            for m in self._members.values()
            if m.state in UP_STATES and m.node_id != self.me
        ]

    def has_live_peer(self) -> bool:
        return any(m.state in UP_STATES and m.node_id != self.me for m in self._members.values())

    def up_count(self) -> int:
        """Members alive or suspect, this node included: the ``n`` of SWIM's formulas."""
        return sum(1 for m in self._members.values() if m.state in UP_STATES)

    def dead_ids(self, now: float | None = None, within: float = 0.0) -> list[str]:
        """Dead members; with ``now``, only those dead for less than ``within``."""
        return [
            m.node_id
            for m in self._members.values()
            if m.state == "dead" and (now is None or now - m.state_since < within)
        ]

    def full_state(self) -> tuple[MemberUpdate, ...]:
        return tuple(m.record() for m in self._members.values())

    def deadlines(self, retention: float) -> list[float]:
        """When suspects are due, and when the dead and departed are to be forgotten."""
        times = []
        for m in self._members.values():
            if m.suspect_deadline is not None:
                times.append(m.suspect_deadline)
            if m.state in ("dead", "left") and m.node_id != self.me:
                times.append(m.state_since + retention)
        return times

    # ------------------------------------------------------------ this node

    def start(self, now: float) -> None:
        self.own().state_since = now

    def leave(self, now: float) -> MemberUpdate:
        """Mark this node as left under a new incarnation; the record to tell everyone."""
        self.incarnation += 1
        me = self.own()
        me.incarnation = self.incarnation
        me.state = "left"
        me.state_since = now
        self.left = True
        return me.record()

    def set_meta(self, meta: Meta) -> MemberUpdate:
        """New meta under a new incarnation; the record to gossip."""
        self.incarnation += 1
        me = self.own()
        me.incarnation = self.incarnation
        me.meta = dict(meta)
        return me.record()

    # ------------------------------------------------------------ merging

    def merge(
        self, updates: Iterable[MemberUpdate], now: float, *, from_sync: bool = False
    ) -> list[Applied]:
        """Apply several records; from a full-state sync, a remote ``dead`` counts as
        ``suspect`` only (memberlist), so a node in fact alive gets to refute."""
        out = []
        for update in updates:
            if from_sync and update.state == "dead" and update.node_id != self.me:
                update = MemberUpdate(
                    update.node_id, update.address, update.incarnation, "suspect", update.meta
                )
            out.append(self.apply(update, now))
        return out

    def apply(self, u: MemberUpdate, now: float) -> Applied:
        """Merge one record by SWIM's precedence rules."""
        if u.node_id == self.me:
            return self._about_me(u)
        member = self._members.get(u.node_id)
        if member is None:
            return self._add(u, now)
        if u.state == "alive":
            if u.incarnation <= member.incarnation:
                return Applied(u.node_id)
            was_up = member.state in UP_STATES
            changed = (member.address, member.meta) != (u.address, u.meta)
            if member.state != "alive":
                member.state_since = now
            member.incarnation = u.incarnation
            member.state = "alive"
            member.address = u.address
            member.meta = dict(u.meta)
            member.suspect_deadline = None
            if not was_up:
                up = MemberUp(u.node_id, u.address, dict(u.meta))
                return Applied(u.node_id, u, up, up=True)
            if changed:
                return Applied(u.node_id, u, MemberUpdated(u.node_id, u.address, dict(u.meta)))
            return Applied(u.node_id, u)
        if u.incarnation < member.incarnation:
            return Applied(u.node_id)
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
                member.suspect_deadline = now + self._suspicion_timeout(self.up_count())
                return Applied(u.node_id, member.record())
            return Applied(u.node_id)
        # dead or left
        if member.state in ("dead", "left"):
            if member.state == "dead" and u.state == "left":
                # A graceful leave outranks a failure: stop reconnect attempts.
                member.state = "left"
                member.incarnation = u.incarnation
                return Applied(u.node_id, member.record())
            return Applied(u.node_id)
        member.incarnation = u.incarnation
        member.state = u.state
        member.state_since = now
        member.suspect_deadline = None
        down = MemberDown(u.node_id, left=u.state == "left")
        return Applied(u.node_id, member.record(), down, down=True)

    def suspects_due(self, now: float) -> list[Applied]:
        """Declare dead every suspect whose time to refute has run out."""
        out = []
        for member in list(self._members.values()):
            if member.suspect_deadline is not None and now >= member.suspect_deadline:
                out.append(
                    self.apply(
                        MemberUpdate(
                            member.node_id, member.address, member.incarnation, "dead", member.meta
                        ),
                        now,
                    )
                )
        return out

    def reap(self, now: float, retention: float) -> list[str]:
        """Forget members dead or gone for ``retention``, so the table does not grow forever."""
        gone = [
            m.node_id
            for m in self._members.values()
            if m.node_id != self.me
            and m.state in ("dead", "left")
            and now >= m.state_since + retention
        ]
        for node_id in gone:
            del self._members[node_id]
        return gone

    def _add(self, u: MemberUpdate, now: float) -> Applied:
        """First news of a node. A live or suspect one is reachable, so it is
        announced and probed; a dead or departed one is only remembered (its
        address lets a reconnect find it after a partition heals)."""
        member = Member(u.node_id, u.address, u.incarnation, u.state, dict(u.meta), state_since=now)
        self._members[u.node_id] = member
        if u.state not in UP_STATES:
            return Applied(u.node_id)
        if u.state == "suspect":
            member.suspect_deadline = now + self._suspicion_timeout(self.up_count())
        return Applied(u.node_id, u, MemberUp(u.node_id, u.address, dict(u.meta)), up=True)

    def _about_me(self, u: MemberUpdate) -> Applied:
        """Refute anything about us that is not our current truth."""
        if self.left:
            return Applied(self.me)
        me = self.own()
        if u.state == "alive":
            stale = u.incarnation < self.incarnation
            same = u.incarnation == self.incarnation and (u.address, u.meta) == (
                me.address,
                me.meta,
            )
            if stale or same:
                return Applied(self.me)
        elif u.incarnation < self.incarnation:
            return Applied(self.me)
        # A suspicion or death at our incarnation or later, or someone holding
        # an alive record of ours we did not issue (e.g. from before a restart).
        self.incarnation = max(self.incarnation, u.incarnation) + 1
        me.incarnation = self.incarnation
        return Applied(self.me, me.record())
