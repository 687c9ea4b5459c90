"""Planted bugs: known-wrong variants of the system, to show the simulator catches them.

Each plant reverts one safety mechanism to a version that was (or would be)
wrong, through a switch the simulator sets when it builds the world: a flag
on the simulated Broker or on a node's link to it, or a subclass of a state
machine. Production code has no plant branch: with no plant, the run is the
real system.

======================  ==========================================================
plant                   what it switches off
======================  ==========================================================
``fencing``             the Broker's epoch check on leader writes
``lease-tokens``        the Broker's lease-token check on finish
``raft-amnesia``        Raft's durable term and vote (wiped at every restart)
``resurrect``           the fenced insert-if-absent restore with tombstones:
                        reconciliation re-enqueues unfenced, blind to purges;
                        and the purge's recording first (a job is purged
                        whatever the Store holds of it), without which no
                        record of a purged job stays live to resurrect
``tick-at-most-once``   the one-move ``fire_tick``: the tick is claimed in one
                        round trip and its job enqueued in a second
``two-clocks``          the Broker's clock: leases expire on the worker's clock
                        and are reaped on the leader's
``raft-minority``       Raft's configured voters: the quorum is a majority of
                        the voters the failure detector shows alive
``dependencies-early``  the Broker's dependency wait: a job with ``depends_on``
                        is due at once, as if its dependencies had completed
``due-early``           the claim's due check: a claim takes scheduled and
                        retrying jobs 2 s before they are due
``no-hand-back``        the hand-back of a lent claim's leases whose answer was
                        lost: the node's look-up of its leases (``running``)
                        leaves them out, so they wait out their lease
======================  ==========================================================

The invariant each is caught by is in :data:`CAUGHT_BY`; the seeds and run
length that catch each on at least 9 of 10 seeds are in :data:`CATCH_CONFIG`
(``tests/test_sim_plants.py`` runs them).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cluster.messages import Output
from ..cluster.raft import RaftElection

PLANTS = (
    "fencing",
    "lease-tokens",
    "raft-amnesia",
    "resurrect",
    "tick-at-most-once",
    "two-clocks",
    "raft-minority",
    "dependencies-early",
    "due-early",
    "no-hand-back",
)

#: The invariants whose violation shows each plant (any one of them).
CAUGHT_BY: dict[str, frozenset[str]] = {
    "fencing": frozenset({"one_acting_leader"}),
    "lease-tokens": frozenset({"completed_once"}),
    "raft-amnesia": frozenset({"one_vote_per_term", "one_leader_per_term"}),
    "resurrect": frozenset({"completed_once"}),
    "tick-at-most-once": frozenset({"tick_fires_once"}),
    "two-clocks": frozenset({"lease_expires_on_broker_clock"}),
    "raft-minority": frozenset({"leader_has_quorum", "one_leader_per_term"}),
    "dependencies-early": frozenset({"dependent_after_parents"}),
    "due-early": frozenset({"not_before_due"}),
    "no-hand-back": frozenset({"lent_claim_handed_back"}),
}


@dataclass(frozen=True, slots=True)
class CatchConfig:
    """The runs that catch a plant: ``jobtrio sim --plant P`` with these options."""

    algorithm: str = "raft"
    nodes: int = 5
    duration: float = 30.0
    #: The nemesis's faults (``None``: the default set).
    faults: tuple[str, ...] | None = None


#: The seeds each plant is measured on (``--seeds 100000..100009``).
CATCH_SEEDS = range(100000, 100010)

#: Where each plant is caught on at least 9 of the 10 ``CATCH_SEEDS``: the faults that
#: reach its path, at a length CI affords (figures in docs/simulation.md).
CATCH_CONFIG: dict[str, CatchConfig] = {
    "fencing": CatchConfig(faults=("pause", "partition")),
    "lease-tokens": CatchConfig(faults=("pause", "reply-loss", "broker")),
    "raft-amnesia": CatchConfig(
        nodes=3, faults=("crash", "reorder", "election-restart", "candidate-restart")
    ),
    "resurrect": CatchConfig(faults=("store", "crash", "reply-loss")),
    "tick-at-most-once": CatchConfig(faults=("reply-loss", "broker")),
    "two-clocks": CatchConfig(faults=("skew", "crash", "broker")),
    "raft-minority": CatchConfig(faults=("partition", "crash")),
    "dependencies-early": CatchConfig(faults=("crash", "reply-loss")),
    "due-early": CatchConfig(faults=("crash", "reply-loss")),
    "no-hand-back": CatchConfig(),
}


class SwimQuorumRaft(RaftElection):
    """Raft whose quorum follows the failure detector's view (the ``raft-minority`` plant).

    A majority of the configured voters the node currently sees alive, as
    before the voters became ``CLUSTER_PEERS``: a node restarted while others
    were down counts a smaller cluster, and a minority elects.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._alive: frozenset[str] = frozenset({self._me})

    def membership_changed(
        self, alive_ids: frozenset[str], now: float, left: frozenset[str] = frozenset()
    ) -> list[Output]:
        self._alive = frozenset(alive_ids) | {self._me}
        return super().membership_changed(alive_ids, now, left)

    @property
    def quorum(self) -> int:
        return self._seats(self._alive) // 2 + 1
