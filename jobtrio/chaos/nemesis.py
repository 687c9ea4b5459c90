"""The nemesis: one fault at a time, always healed; every fault once per round, in an
order (and on targets) a seeded random generator chooses.

Faults (``FAULTS``):

- ``kill``: SIGKILL a node (the leader half the time), then start it again.
- ``pause``: SIGSTOP a node for longer than its leases last, then SIGCONT: it
  wakes up believing it still holds jobs the leader has handed to others.
- ``redis``: stop Redis (SIGTERM, so it writes its AOF out) and start it again.
- ``partition``: cut a node (the leader half the time) off from its peers for
  two leases, through the test-only partition file, then heal it.

The clock skew is not an event but a standing fault: ``ChaosCluster`` runs
its last node with its clock off for the whole run, restarts included.

Every fault is healed before the next starts, and ``heal_all`` (called
whatever happens) resumes paused nodes, heals partitions and restarts dead
nodes, so the checker sees a whole cluster at the end.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .cluster import ChaosCluster

FAULTS = ("kill", "pause", "redis", "partition")


@dataclass(slots=True)
class FaultRecord:
    """One fault as it happened: seconds since the run started, what, to whom."""

    at: float
    fault: str
    target: str
    healed_at: float | None = None


@dataclass(slots=True)
class Nemesis:
    cluster: ChaosCluster
    rng: random.Random
    faults: Sequence[str] = FAULTS
    #: Seconds of calm between two faults.
    interval: float = 3.0
    log: Callable[[str], None] = lambda line: None
    history: list[FaultRecord] = field(default_factory=list)
    _t0: float = field(default_factory=time.monotonic)

    def run(self, stop: threading.Event) -> None:
        """Inject faults until ``stop`` is set, healing each before the next."""
        order: list[str] = []
        while not stop.wait(self.interval):
            if not order:  # every fault once per round, in a random order
                order = list(self.faults)
                self.rng.shuffle(order)
            fault = order.pop()
            target = self._target(fault)
            record = FaultRecord(self._now(), fault, target)
            self.history.append(record)
            self.log(f"{record.at:7.1f}s nemesis: {fault} {target}")
            getattr(self, f"_{fault}")(target, stop)
            record.healed_at = self._now()
            self.log(f"{record.healed_at:7.1f}s nemesis: healed {fault} {target}")

    def heal_all(self) -> None:
        for node in self.cluster.nodes:
            self.cluster.heal(node.node_id)
            if node.process is not None and node.process.alive():
                self.cluster.resume(node.node_id)
            else:
                self.cluster.start_node(node.node_id)

    # -- faults --------------------------------------------------------------------------

    def _target(self, fault: str) -> str:
        if fault == "redis":
            return "redis"
        if fault in ("kill", "partition") and self.rng.random() < 0.5:
            leader = self.cluster.leader()
            if leader is not None:
                return leader
        return self.rng.choice([n.node_id for n in self.cluster.nodes])

    def _kill(self, node_id: str, stop: threading.Event) -> None:
        self.cluster.kill(node_id)
        stop.wait(self.rng.uniform(0.2, 2.0))  # down for a while, as a crashed host is
        self.cluster.start_node(node_id)

    def _pause(self, node_id: str, stop: threading.Event) -> None:
        self.cluster.pause(node_id)
        try:
            # past its leases (renewed every lease/3): the leader requeues its jobs
            time.sleep(self.cluster.job_lease * 1.5 + self.rng.uniform(0, 1))
        finally:
            self.cluster.resume(node_id)

    def _redis(self, target: str, stop: threading.Event) -> None:
        self.cluster.restart_redis()

    def _partition(self, node_id: str, stop: threading.Event) -> None:
        self.cluster.cut_off(node_id)
        try:
            time.sleep(self.cluster.job_lease * 2)
        finally:
            self.cluster.heal(node_id)

    def _now(self) -> float:
        return time.monotonic() - self._t0
