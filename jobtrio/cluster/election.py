"""The one shape every election algorithm has, its timing, and how ranks compare.

Each algorithm (:mod:`.raft`, :mod:`.bully`, :mod:`.gossip_election`) is a
sans-IO state machine: it never reads a clock, sleeps, touches a socket or
draws from a global random source. Time arrives as ``now`` arguments (any
monotonic seconds, the actor's ``trio.current_time()`` or the simulator's
clock) and randomness from the injected ``random.Random``. So one object runs
under the real transport, under the simulator and in unit tests that script
it message by message, and it does the same thing given the same inputs and
seed.

Driving contract for the actor (see :class:`Election`):

* call ``tick(now)`` once at start, then whenever ``next_deadline()`` passes
  (or on a fixed cadence well below ``ElectionTiming.heartbeat``);
* feed every received election message to ``step(sender, msg, now)``;
* feed every membership change to ``membership_changed(alive_ids, now, left)``;
* carry out the returned outputs in order: ``Send`` to a node id,
  ``LeaderChanged`` to the bus (leadership duties start only after taking a
  fencing epoch from the Broker, which, unlike ``term``, is global).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .messages import Message, Output
from .raft_state import RaftStateStore

ALGORITHMS = ("bully", "raft", "gossip")


@dataclass(frozen=True, slots=True)
class ElectionTiming:
    """Durations (seconds) every algorithm derives its waits from.

    ``timeout`` is ELECTION_TIMEOUT (T): how long a node waits without news of
    a leader before it acts. ``heartbeat`` is how often a leader proves it is
    alive, from ELECTION_INTERVAL; :meth:`from_settings` caps it at T/2,
    because a heartbeat slower than the timeout would depose a healthy leader
    every cycle (the seed's default bully pair, T=10s with a 30s interval, is
    exactly that case and runs with a 5s heartbeat).
    """

    timeout: float = 10.0
    heartbeat: float = 5.0

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"election timeout must be positive, got {self.timeout}")
        if not 0 < self.heartbeat < self.timeout:
            raise ValueError(
                f"heartbeat interval must be positive and below the election timeout "
                f"({self.timeout}s), got {self.heartbeat}s"
            )

    @classmethod
    def from_settings(cls, election_timeout: float, election_interval: float) -> ElectionTiming:
        """Timing from the ELECTION_TIMEOUT / ELECTION_INTERVAL settings."""
        return cls(timeout=election_timeout, heartbeat=min(election_interval, election_timeout / 2))

    @property
    def answer_timeout(self) -> float:
        """Bully: how long a candidate waits for an ANSWER from a higher node
        before claiming. Short, since it only spans a round trip, and it is
        paid on every failover by the highest live node."""
        return self.timeout / 4

    @property
    def coordinator_timeout(self) -> float:
        """Bully: how long a node that got an ANSWER waits for the COORDINATOR
        before retrying; long enough for a chain of higher nodes to each wait
        out their own answer timeout."""
        return self.timeout

    @property
    def settle(self) -> float:
        """Gossip: how long the top-ranked member must stay the top of the
        SWIM view before it is adopted as leader, so a view still converging
        does not make the leadership flap."""
        return min(self.timeout / 2, 2 * self.heartbeat)


@runtime_checkable
class Election(Protocol):
    """What the elector actor needs from any algorithm."""

    @property
    def algorithm(self) -> str: ...

    @property
    def leader(self) -> str | None: ...

    @property
    def term(self) -> int: ...

    @property
    def is_leader(self) -> bool: ...

    def tick(self, now: float) -> list[Output]: ...

    def step(self, sender: str, message: Message, now: float) -> list[Output]: ...

    def membership_changed(
        self, alive_ids: frozenset[str], now: float, left: frozenset[str] = frozenset()
    ) -> list[Output]: ...

    def next_deadline(self) -> float | None: ...


_DIGITS = re.compile(r"(\d+)")


def rank_key(node_id: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key of a node's rank: the higher key wins Bully and gossip elections.

    Ids compare in natural order (digit runs as numbers), so ``node-10``
    outranks ``node-9`` as an operator would expect; the raw id breaks ties
    between spellings such as ``node-01`` and ``node-1``. Every node computes
    the same order from ids alone, which is what lets them agree without
    exchanging ranks.
    """
    parts = _DIGITS.split(node_id)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), node_id


def highest(node_ids: Iterable[str]) -> str:
    """The highest-ranked id of a non-empty collection."""
    return max(node_ids, key=rank_key)


def make_election(
    algorithm: str,
    me: str,
    peers: Iterable[str],
    timing: ElectionTiming,
    rng: random.Random,
    *,
    voting: RaftVoting | None = None,
) -> Election:
    """A fresh state machine for ``algorithm`` (``bully``, ``raft`` or ``gossip``).

    ``peers`` are the other nodes' ids known at start; more can arrive later
    through ``membership_changed``. Raft takes its voters from ``voting``
    instead when given (the configured addresses and the durable term and
    vote): its quorum must never follow the membership view.
    """
    from .bully import BullyElection
    from .gossip_election import GossipElection
    from .raft import RaftElection

    if algorithm == "raft":
        if voting is None:
            return RaftElection(me, peers, timing, rng)
        return RaftElection(
            me,
            voting.configuration,
            timing,
            rng,
            my_key=voting.my_address,
            key_of=voting.address_of,
            state=voting.state,
        )
    if algorithm == "bully":
        return BullyElection(me, peers, timing, rng)
    if algorithm == "gossip":
        return GossipElection(me, peers, timing, rng)
    raise ValueError(f"unknown election algorithm {algorithm!r}; expected one of {ALGORITHMS}")


@dataclass(frozen=True, slots=True)
class RaftVoting:
    """What Raft needs beyond the common arguments: who votes, and where its
    term and vote survive a restart.

    ``configuration`` is every voter's cluster address (``CLUSTER_PEERS``
    plus ``my_address``); ``address_of`` tells which address a node id is
    at (the membership layer knows, or ``None``); ``state`` keeps the term
    and vote (see :mod:`.raft_state`).
    """

    configuration: frozenset[str]
    my_address: str
    address_of: Callable[[str], str | None]
    state: RaftStateStore
