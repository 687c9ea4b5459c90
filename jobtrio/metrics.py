"""Prometheus metrics of one node, under the seed README's names.

Each node owns a ``CollectorRegistry`` (not the global one), so several
nodes can live in one process (tests, the simulator) without clashing.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class NodeMetrics:
    def __init__(self, node_id: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.job_processing_duration = Histogram(
            "job_processing_duration_seconds",
            "Time a job attempt ran, by type and outcome",
            ["type", "outcome"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300),
        )
        self.queue_wait = Histogram(
            "job_queue_wait_seconds",
            "Time from a job being due to its attempt starting",
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
        )
        self.jobs_total = Counter(
            "jobs_total", "Job attempts finished on this node, by outcome", ["outcome"], registry=r
        )
        self.jobs_submitted = Counter("jobs_submitted_total", "Jobs accepted", registry=r)
        self.leader_changes = Counter(
            "election_leader_changes_total", "Leadership changes seen by this node", registry=r
        )
        self.worker_active = Gauge(
            "worker_active_gauge", "Workers running a job on this node", registry=r
        )
        self.queue_depth = Gauge(
            "queue_depth_gauge", "Jobs in each queue state", ["state"], registry=r
        )
        self.node_uptime = Gauge(
            "node_uptime_seconds", "Seconds since this node started", registry=r
        )
        self.is_leader = Gauge("node_is_leader", "1 while this node is the leader", registry=r)
        self.backend_up = Gauge(
            "backend_up", "1 while a backend answers, 0 while it is down", ["backend"], registry=r
        )
        self.actor_restarts = Counter(
            "actor_restarts_total", "Actors restarted by the supervisor", ["actor"], registry=r
        )
        self.lease_lost = Counter(
            "job_leases_lost_total", "Attempts abandoned because their lease was lost", registry=r
        )
        self._started = time.monotonic()
        self.node_uptime.set_function(lambda: time.monotonic() - self._started)

    def render(self) -> bytes:
        return generate_latest(self.registry)
