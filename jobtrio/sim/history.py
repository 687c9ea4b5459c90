"""What happened in a run, as the checker needs it, and the violations found.

The Broker, the elections, the clients and the nemesis report here while the
run goes; the invariants that can be judged on the spot (a stale leader
acting, a job completed twice, two Raft leaders in one term) are judged at
once, so the violation carries the simulated time it happened at. The rest
(lost jobs, unexpected jobs, convergence) is judged at the end by
:mod:`.checker`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .trace import Trace


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    at: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "at": round(self.at, 6), "detail": self.detail}

    def __str__(self) -> str:
        return f"[{self.invariant} @ {self.at:.3f}s] {self.detail}"


@dataclass(slots=True)
class ClientJob:
    """One job a client meant to submit, by its idempotency key."""

    key: str
    type: str
    attempts: int = 0
    #: The id the cluster acknowledged (None: every attempt failed, outcome unknown).
    acked_id: str | None = None
    cancel_requested: bool = False


@dataclass(slots=True)
class History:
    trace: Trace
    violations: list[Violation] = field(default_factory=list)
    #: Fencing epoch -> the node that took it.
    epochs: dict[int, str] = field(default_factory=dict)
    #: Raft term -> the nodes whose state machine declared itself leader in it.
    raft_leaders: dict[int, set[str]] = field(default_factory=dict)
    #: Job id -> lease tokens whose "completed" the Broker accepted.
    completions: dict[str, list[str]] = field(default_factory=dict)
    client_jobs: dict[str, ClientJob] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    #: Violations explained by a known, reported limitation (``strict`` counts them as
    #: violations): see :func:`.checker.check_end`.
    known: list[Violation] = field(default_factory=list)
    #: (time, node) of every restart after a crash.
    restarts: list[tuple[float, str]] = field(default_factory=list)
    #: Raft term -> when its first leader was declared.
    raft_term_started: dict[int, float] = field(default_factory=dict)
    #: Known limitations count as violations (``jobtrio sim --strict``).
    strict: bool = False
    #: (voter, raft term) -> the candidate it voted for (its own id for itself).
    raft_votes: dict[tuple[str, int], str] = field(default_factory=dict)
    #: Size of the Raft voting configuration (every simulated node).
    raft_voters: int = 0
    #: Told of every violation as it is found (the runner stops a ``stop_at`` run).
    on_violation: Callable[[Violation], None] | None = None

    def violate(self, invariant: str, at: float, detail: str) -> None:
        violation = Violation(invariant, at, detail)
        self.violations.append(violation)
        self.trace.record("VIOLATION", invariant, detail)
        if self.on_violation is not None:
            self.on_violation(violation)

    def known_issue(self, invariant: str, at: float, detail: str) -> None:
        """A violation of a known, reported limitation: a violation under ``strict``."""
        if self.strict:
            self.violate(invariant, at, detail)
            return
        self.known.append(Violation(invariant, at, detail))
        self.trace.record("KNOWN", invariant, detail)

    def fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def raft_leader(self, node: str, term: int, at: float) -> None:
        """Raft's election safety: one leader per term, with no exception.

        Raft's term and vote are durable (:mod:`jobtrio.cluster.raft_state`,
        the simulator keeps each node's disk across its restarts), so a voter
        restarted inside an election remembers its vote: a second leader in a
        term is a bug whatever restarted nearby.
        """
        holders = self.raft_leaders.setdefault(term, set())
        self.raft_term_started.setdefault(term, at)
        holders.add(node)
        if len(holders) == 2:
            self.violate(
                "one_leader_per_term",
                at,
                f"raft term {term} has two leaders: {', '.join(sorted(holders))}",
            )

    def raft_vote(self, voter: str, candidate: str, term: int, at: float) -> None:
        """A node voted (or voted for itself): once per term, restarts included."""
        before = self.raft_votes.setdefault((voter, term), candidate)
        if before != candidate:
            self.raft_votes[(voter, term)] = candidate
            self.violate(
                "one_vote_per_term",
                at,
                f"{voter} voted for {before} and then for {candidate} in raft term {term}",
            )

    def raft_quorum(self, leader: str, term: int, at: float) -> None:
        """A Raft leader holds the votes of a majority of the configured voters."""
        votes = sorted(v for (v, t), c in self.raft_votes.items() if t == term and c == leader)
        needed = self.raft_voters // 2 + 1
        if len(votes) < needed:
            self.violate(
                "leader_has_quorum",
                at,
                f"{leader} leads raft term {term} with the votes of {', '.join(votes) or 'nobody'}"
                f" ({len(votes)} of {self.raft_voters} voters; a majority is {needed})",
            )

    def acked(self) -> dict[str, ClientJob]:
        """Acknowledged jobs by id."""
        return {j.acked_id: j for j in self.client_jobs.values() if j.acked_id is not None}
