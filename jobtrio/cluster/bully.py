"""The Bully election (Garcia-Molina, 1982) with epochs, as a sans-IO state machine.

The live node with the highest rank (:func:`.election.rank_key`: natural order
of node ids, ``node-10`` above ``node-9``) leads:

* A node that suspects the leader sends ELECTION to every higher-ranked peer.
  If none ANSWERs within ``answer_timeout`` it claims leadership and sends
  COORDINATOR to everyone. If one answers, it waits ``coordinator_timeout``
  for that COORDINATOR and otherwise starts over (retries are unbounded).
* A node receiving ELECTION from a lower node answers and runs its own
  election (a sitting leader just re-asserts itself to the asker).
* The leader repeats COORDINATOR every ``heartbeat``; a follower that hears
  nothing for ``timeout`` starts an election. A fresh node first listens for
  one ``timeout``, so joining a running cluster neither flaps leadership nor
  claims with an epoch the others have long passed.
* A higher node that hears a lower node's COORDINATOR bullies it: it runs an
  election and, finding nobody above, takes over.

Every message carries an **epoch**. Each node remembers the highest epoch it
has seen, and a claim is made with that plus one. A COORDINATOR whose epoch is
below the highest seen is stale (a deposed leader, a delayed packet) and is
ignored; the receiver ANSWERs it with the newer epoch so a live claimant
learns it is behind and re-runs the election instead of heartbeating a dead
claim forever. Two claims in the same epoch are settled by rank.

Bully has no quorum: both sides of a partition elect a leader. That is by
design of the algorithm; the fencing epoch from the shared Broker is what
keeps two leaders from both acting.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Literal

from .election import ElectionTiming, rank_key
from .messages import (
    BullyAnswer,
    BullyCoordinator,
    BullyElect,
    LeaderChanged,
    Message,
    Output,
    Send,
)

BullyState = Literal["follower", "electing", "waiting", "leader"]


class BullyElection:
    """One node's Bully election state machine."""

    algorithm = "bully"

    def __init__(
        self, me: str, peers: Iterable[str], timing: ElectionTiming, rng: random.Random
    ) -> None:
        self._me = me
        self._rank = rank_key(me)
        self._timing = timing
        self._rng = rng  # unused: Bully is deterministic, kept for a uniform factory
        self._peers: set[str] = set(peers) - {me}
        self._state: BullyState = "follower"
        self._epoch = 0  # highest epoch seen anywhere
        self._leader: str | None = None
        self._leader_epoch = 0
        self._deadline = 0.0  # follower: leader silence; electing/waiting: wait ends
        self._next_heartbeat = 0.0
        self._alive: frozenset[str] | None = None
        self._started = False
        self._reported: tuple[str | None, int] = (None, 0)
        self._out: list[Output] = []

    # ------------------------------------------------------------ properties

    @property
    def leader(self) -> str | None:
        return self._leader

    @property
    def term(self) -> int:
        """The epoch of the current leadership (0 before any)."""
        return self._leader_epoch

    @property
    def is_leader(self) -> bool:
        return self._state == "leader"

    @property
    def state(self) -> BullyState:
        return self._state

    @property
    def highest_epoch(self) -> int:
        return self._epoch

    @property
    def peers(self) -> frozenset[str]:
        return frozenset(self._peers)

    # ------------------------------------------------------------ inputs

    def tick(self, now: float) -> list[Output]:
        self._ensure_started(now)
        if self._state == "leader":
            if now >= self._next_heartbeat:
                self._broadcast_coordinator(now)
        elif now >= self._deadline:
            if self._state == "electing":
                self._become_leader(now)  # nobody higher answered
            elif self._state == "waiting":
                self._start_election(now, leader_lost=False)  # the answerer never claimed
            else:
                self._start_election(now, leader_lost=True)
        return self._flush()

    def step(self, sender: str, message: Message, now: float) -> list[Output]:
        """Handle one message from ``sender``; non-Bully messages are ignored."""
        self._ensure_started(now)
        if sender != self._me and isinstance(message, BullyElect | BullyAnswer | BullyCoordinator):
            previous = self._epoch
            self._epoch = max(self._epoch, message.epoch)
            if isinstance(message, BullyElect):
                self._on_election(sender, message, now)
            elif isinstance(message, BullyAnswer):
                self._on_answer(sender, message, now)
            else:
                self._on_coordinator(sender, message, previous, now)
        return self._flush()

    def membership_changed(
        self, alive_ids: frozenset[str], now: float, left: frozenset[str] = frozenset()
    ) -> list[Output]:
        """Learn peers from the membership view and react to it early.

        Peers only grow (a dead node that returns must still be bullied back
        in); nodes that left are dropped. A leader tells newcomers below it
        who leads, and defers to newcomers above it by running an election.
        A follower whose leader vanished from the view does not wait for the
        heartbeat timeout.
        """
        self._ensure_started(now)
        new = set(alive_ids) - self._peers - set(left) - {self._me}
        self._peers |= new
        self._peers -= set(left)
        previous, self._alive = self._alive, frozenset(alive_ids)
        if self._state == "leader":
            if any(self._outranks(node) for node in new):
                self._start_election(now, leader_lost=False)
            else:
                for node in sorted(new):
                    self._out.append(Send(node, BullyCoordinator(self._leader_epoch)))
        elif (
            self._leader is not None
            and previous is not None
            and self._leader in previous
            and (self._leader not in alive_ids or self._leader in left)
            and self._state == "follower"
        ):
            self._start_election(now, leader_lost=True)
        return self._flush()

    def next_deadline(self) -> float | None:
        if not self._started:
            return None
        if self._state == "leader":
            return self._next_heartbeat
        return self._deadline

    # ------------------------------------------------------------ internals

    def _outranks(self, node: str) -> bool:
        """True if ``node`` ranks above this node."""
        return rank_key(node) > self._rank

    def _ensure_started(self, now: float) -> None:
        if not self._started:
            self._started = True
            self._deadline = now + self._timing.timeout

    def _flush(self) -> list[Output]:
        current = (self._leader, self._leader_epoch)
        if current != self._reported and (
            self._leader is not None or self._reported[0] is not None
        ):
            self._out.append(LeaderChanged(self._leader, self._leader_epoch))
        self._reported = current
        out, self._out = self._out, []
        return out

    def _start_election(self, now: float, *, leader_lost: bool) -> None:
        if leader_lost or self._state == "leader":
            self._leader = None
        higher = sorted(p for p in self._peers if self._outranks(p))
        if not higher:
            self._become_leader(now)
            return
        self._state = "electing"
        self._deadline = now + self._timing.answer_timeout
        for node in higher:
            self._out.append(Send(node, BullyElect(self._epoch)))

    def _become_leader(self, now: float) -> None:
        self._epoch += 1
        self._leader_epoch = self._epoch
        self._leader = self._me
        self._state = "leader"
        self._broadcast_coordinator(now)

    def _broadcast_coordinator(self, now: float) -> None:
        self._next_heartbeat = now + self._timing.heartbeat
        for node in sorted(self._peers):
            self._out.append(Send(node, BullyCoordinator(self._leader_epoch)))

    def _follow(self, leader: str, epoch: int, now: float) -> None:
        self._leader = leader
        self._leader_epoch = epoch
        self._state = "follower"
        self._deadline = now + self._timing.timeout

    def _on_election(self, sender: str, msg: BullyElect, now: float) -> None:
        if self._outranks(sender):
            return  # ELECTION only goes upwards; a higher sender is confused
        self._out.append(Send(sender, BullyAnswer(self._epoch)))
        if self._state == "leader":
            if msg.epoch > self._leader_epoch:
                # Someone claimed after us: our leadership is stale.
                self._start_election(now, leader_lost=False)
            else:
                self._out.append(Send(sender, BullyCoordinator(self._leader_epoch)))
        elif self._state == "follower":
            self._start_election(now, leader_lost=False)

    def _on_answer(self, sender: str, msg: BullyAnswer, now: float) -> None:
        if self._state == "electing" and self._outranks(sender):
            self._state = "waiting"
            self._deadline = now + self._timing.coordinator_timeout
        elif self._state == "leader" and msg.epoch > self._leader_epoch:
            # Our COORDINATOR was answered as stale: re-run the election so
            # the claim, if still ours, is made above the newer epoch.
            self._start_election(now, leader_lost=False)

    def _on_coordinator(
        self, sender: str, msg: BullyCoordinator, highest_before: int, now: float
    ) -> None:
        if msg.epoch < highest_before:
            self._out.append(Send(sender, BullyAnswer(highest_before)))
            return
        if not self._outranks(sender):
            # A lower node claims while we are alive: bully it.
            if self._state in ("follower", "leader"):
                self._start_election(now, leader_lost=False)
            return
        if (
            self._leader is not None
            and self._leader != sender
            and msg.epoch == self._leader_epoch
            and rank_key(self._leader) > rank_key(sender)
        ):
            return  # same-epoch rival claim; the higher-ranked claimant stands
        self._follow(sender, msg.epoch, now)
