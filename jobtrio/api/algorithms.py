"""What each election algorithm gives and costs, for ``/api/v1/election/algorithms``.

The seed README's advice (bully for 2-10 stable nodes, raft for 3-7 nodes
needing consistency, gossip for 10+ dynamic nodes) is kept, with the
properties stated as this implementation actually has them: every
algorithm's leader is fenced by an epoch from the shared Broker, so the
differences are about how fast and how safely a leader is chosen, not about
whether two leaders can both act.
"""

from __future__ import annotations

from typing import Any

ALGORITHMS: dict[str, dict[str, Any]] = {
    "bully": {
        "name": "bully",
        "summary": (
            "The live node with the highest id leads. A node that loses its leader asks "
            "every higher node; if none answers it claims leadership and announces it."
        ),
        "best_for": "small, stable clusters (2-10 nodes)",
        "recommended_cluster_size": {"min": 2, "max": 10},
        "properties": {
            "quorum": False,
            "consistency": "one leader per connected group; the fencing epoch stops a stale one",
            "partition_behaviour": "each side of a partition elects its own leader; only the "
            "holder of the newest epoch can act on the shared queue",
            "messages": "ELECTION, ANSWER, COORDINATOR (each with an epoch)",
            "convergence": "fast with stable membership: one round to the highest live node",
        },
        "settings": {
            "ELECTION_TIMEOUT": "how long a node waits without a COORDINATOR before it starts "
            "an election; a candidate waits a quarter of it for an ANSWER",
            "ELECTION_INTERVAL": "how often the leader repeats COORDINATOR (capped at half the "
            "timeout)",
        },
        "example": {"ELECTION_TIMEOUT": "10s", "ELECTION_INTERVAL": "30s"},
    },
    "raft": {
        "name": "raft",
        "summary": (
            "Raft's leader election (terms, randomized timeouts, majority votes) with PreVote "
            "and CheckQuorum, as in etcd; no log replication, since jobs live in the Broker."
        ),
        "best_for": "medium clusters that need strong consistency (3-7 nodes)",
        "recommended_cluster_size": {"min": 3, "max": 7},
        "properties": {
            "quorum": True,
            "consistency": "at most one leader per term; a leader needs a majority of voters",
            "partition_behaviour": "only the majority side can elect; an isolated leader steps "
            "down (CheckQuorum) and a minority never inflates its term (PreVote)",
            "messages": "RequestVote (pre-vote and vote), heartbeats",
            "convergence": "one randomized timeout in [T, 2T) after the leader is lost",
        },
        "settings": {
            "ELECTION_TIMEOUT": "T: followers that hear no heartbeat for a random time in "
            "[T, 2T) start a pre-vote; a leader checks its quorum every T",
            "ELECTION_INTERVAL": "how often the leader sends heartbeats (capped at half of T)",
        },
        "example": {"ELECTION_TIMEOUT": "5s", "ELECTION_INTERVAL": "2s"},
    },
    "gossip": {
        "name": "gossip",
        "summary": (
            "No election messages: every node picks the highest-ranked member alive in its "
            "SWIM membership view, and the views converge by gossip."
        ),
        "best_for": "large, dynamic clusters (10+ nodes)",
        "recommended_cluster_size": {"min": 10, "max": None},
        "properties": {
            "quorum": False,
            "consistency": "eventually consistent: while views differ two nodes may name "
            "different leaders; the fencing epoch lets only one act",
            "partition_behaviour": "each side follows the best member it can see",
            "messages": "none beyond SWIM membership (ping, ping-req, suspect, alive)",
            "convergence": "as fast as membership changes spread, plus a settle time",
        },
        "settings": {
            "ELECTION_TIMEOUT": "bounds the settle time: a new top member must stay on top "
            "for min(T/2, 2 x interval) before it is adopted",
            "ELECTION_INTERVAL": "the heartbeat the settle time derives from (capped at half "
            "the timeout)",
        },
        "example": {"ELECTION_TIMEOUT": "15s", "ELECTION_INTERVAL": "1s"},
    },
}


def describe(name: str, current: str) -> dict[str, Any] | None:
    info = ALGORITHMS.get(name.strip().lower())
    if info is None:
        return None
    return {**info, "current": info["name"] == current}
