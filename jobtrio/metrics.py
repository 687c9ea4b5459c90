"""Prometheus metrics of one node, under the seed README's names plus what operators alert on.

Each node owns a ``CollectorRegistry`` (not the global one), so several
nodes can live in one process (tests, the simulator) without clashing.

Where a number comes from:

- the actors set the seed's metrics where things happen (attempt durations,
  workers busy, leadership changes, lease losses);
- job totals by type (submitted, completed, failed, retried, cancelled) and
  lease expirations, requeues and poisonings are counted from the node's own
  events (``account_event``, fed by the event stream's recorder, which sees
  every event the node publishes);
- backend calls are timed by wrapping the Broker's and Store's methods on
  the instance (``instrument_backend``), peer messages by wrapping the
  transport (``instrument_transport``), API requests by the app's request
  hooks (``api/request_metrics.py``);
- ``queue_depth_gauge`` is refreshed from the Broker when ``/metrics`` is
  scraped (``api/metrics_app.py``), so it is current at every scrape.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .backends.base import Broker, FencedError, StateConflict, Store
from .histograms import BatchHistogram

#: Exceptions that are answers, not failures of the backend call.
_ANSWERS = (StateConflict, FencedError)
_CALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5)
_API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class NodeMetrics:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.registry = CollectorRegistry()
        r = self.registry
        # -- the seed's names ------------------------------------------------------------
        # observed a batch of jobs at a time by the dispatcher (see histograms.py)
        self.job_processing_duration = BatchHistogram(
            "job_processing_duration_seconds",
            "Time a job attempt ran, by type and outcome",
            ["type", "outcome"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300),
        )
        self.leader_changes = Counter(
            "election_leader_changes_total", "Leadership changes seen by this node", registry=r
        )
        self.worker_active = Gauge(
            "worker_active_gauge", "Workers running a job on this node", registry=r
        )
        self.queue_depth = Gauge(
            "queue_depth_gauge", "Jobs in each queue state", ["state"], registry=r
        )
        self.queue_depth_by_priority = Gauge(
            "queue_depth_by_priority_gauge",
            "Pending jobs (due, waiting for a worker) per priority",
            ["priority"],
            registry=r,
        )
        self.queue_pending = Gauge(
            "queue_pending_by_queue_gauge",
            "Pending jobs (due, waiting for a worker) per named queue",
            ["queue"],
            registry=r,
        )
        self.queue_paused = Gauge(
            "queue_paused_gauge", "1 for each paused named queue", ["queue"], registry=r
        )
        self.queue_unserved = Gauge(
            "queue_unserved_jobs_gauge",
            "Pending jobs of a (queue, type) no live node can take",
            ["queue", "type"],
            registry=r,
        )
        self.node_uptime = Gauge(
            "node_uptime_seconds", "Seconds since this node started", registry=r
        )
        # -- jobs --------------------------------------------------------------------------
        self.queue_wait = BatchHistogram(
            "job_queue_wait_seconds",
            "Time from a job being due to its attempt starting",
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
        )
        self.jobs_total = Counter(
            "jobs_total", "Job attempts finished on this node, by outcome", ["outcome"], registry=r
        )
        self.jobs_submitted = Counter(
            "jobs_submitted_total", "Jobs accepted by this node, by type", ["type"], registry=r
        )
        self.jobs_completed = Counter(
            "jobs_completed_total", "Jobs completed on this node, by type", ["type"], registry=r
        )
        self.jobs_failed = Counter(
            "jobs_failed_total",
            "Jobs that ended failed (retries exhausted, or poisoned), by type",
            ["type"],
            registry=r,
        )
        self.jobs_retried = Counter(
            "jobs_retried_total",
            "Jobs sent to run again (after a failed attempt, or by hand), by type",
            ["type"],
            registry=r,
        )
        self.jobs_cancelled = Counter(
            "jobs_cancelled_total",
            "Jobs cancelled through this node, by type",
            ["type"],
            registry=r,
        )
        self.workflows_submitted = Counter(
            "workflows_submitted_total",
            "Workflows (chains, groups, chords) accepted by this node",
            registry=r,
        )
        self.dependents_released = Counter(
            "jobs_dependents_released_total",
            "Jobs this node saw leave waiting: due (released) or failed by a dependency",
            ["outcome"],
            registry=r,
        )
        self.lease_lost = Counter(
            "job_leases_lost_total", "Attempts abandoned because their lease was lost", registry=r
        )
        self.lease_expirations = Counter(
            "job_lease_expirations_total",
            "Expired leases the leader found (the node running the job died or froze)",
            registry=r,
        )
        self.jobs_requeued = Counter(
            "jobs_requeued_total",
            "Jobs put back in the queue after their lease expired",
            registry=r,
        )
        self.jobs_poisoned = Counter(
            "jobs_poisoned_total",
            "Jobs failed because their lease expired POISON_LIMIT times",
            registry=r,
        )
        # -- the node and the cluster ---------------------------------------------------------
        self.is_leader = Gauge("node_is_leader", "1 while this node is the leader", registry=r)
        self.backend_up = Gauge(
            "backend_up", "1 while a backend answers, 0 while it is down", ["backend"], registry=r
        )
        self.backend_calls = Histogram(
            "backend_call_duration_seconds",
            "Time of a Broker or Store call, by backend (broker, store) and operation",
            ["backend", "operation"],
            registry=r,
            buckets=_CALL_BUCKETS,
        )
        self.backend_errors = Counter(
            "backend_call_errors_total",
            "Broker or Store calls that failed, by backend and operation",
            ["backend", "operation"],
            registry=r,
        )
        self.actor_restarts = Counter(
            "actor_restarts_total", "Actors restarted by the supervisor", ["actor"], registry=r
        )
        self.api_requests = Histogram(
            "api_request_duration_seconds",
            "Time to answer an HTTP API request, by method, route and status",
            ["method", "route", "status"],
            registry=r,
            buckets=_API_BUCKETS,
        )
        self.peer_messages = Counter(
            "cluster_messages_total",
            "Messages exchanged with peers, by direction (sent, received) and kind",
            ["direction", "kind"],
            registry=r,
        )
        # -- the event stream ------------------------------------------------------------------
        self.stream_consumers = Gauge(
            "event_stream_consumers", "Event-stream consumers connected to this node", registry=r
        )
        self.stream_dropped = Counter(
            "event_stream_consumers_dropped_total",
            "Event-stream consumers dropped for being too slow",
            registry=r,
        )
        self.stream_events = Counter(
            "event_stream_events_total", "Events this node recorded in the event log", registry=r
        )
        self.stream_lost = Counter(
            "event_stream_events_lost_total",
            "Events this node could not record (its queue to the log overflowed)",
            registry=r,
        )
        self._started = time.monotonic()
        self.node_uptime.set_function(lambda: time.monotonic() - self._started)
        self._by_type: dict[tuple[int, str], Any] = {}
        #: The kinds that count one job each in a total by job type.
        self._by_kind: dict[str, Counter] = {
            "job.submitted": self.jobs_submitted,
            "job.completed": self.jobs_completed,
            "job.failed": self.jobs_failed,
            "job.retrying": self.jobs_retried,
            "job.retried": self.jobs_retried,
            "job.cancelled": self.jobs_cancelled,
        }
        self._accounting: dict[str, Callable[[Mapping[str, Any]], None]] = {
            kind: functools.partial(self._count, counter) for kind, counter in self._by_kind.items()
        }
        self._accounting["job.lease_expired"] = self._lease_expired

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- counting from events -------------------------------------------------------------
    def account_event(self, event: Mapping[str, Any]) -> None:
        """Count one bus event (``type`` is its kind) in the totals it moves."""
        count = self._accounting.get(event.get("type"))  # type: ignore[arg-type]
        if count is not None:
            count(event)

    def account_jobs(self, kind: str, jobs: Sequence[Mapping[str, Any]]) -> None:
        """``account_event`` of each event of a ``JobEvents`` batch (``jobs``: each job's
        event fields), with one ``inc`` a job type instead of one a job."""
        counter = self._by_kind.get(kind)
        if counter is None:
            if kind in self._accounting:
                for fields in jobs:
                    self.account_event({"type": kind, "job": fields})
            return
        types: dict[Any, int] = {}
        for fields in jobs:
            job_type = fields.get("type")
            types[job_type] = types.get(job_type, 0) + 1
        for job_type, n in types.items():
            self._child(counter, str(job_type)).inc(n)

    def _count(self, counter: Counter, event: Mapping[str, Any]) -> None:
        job = event.get("job") or {}
        self._child(counter, str(job.get("type"))).inc()

    def _child(self, counter: Counter, job_type: str) -> Any:
        key = (id(counter), job_type)  # one child per metric and type
        child = self._by_type.get(key)
        if child is None:
            child = self._by_type[key] = counter.labels(job_type)
        return child

    def _lease_expired(self, event: Mapping[str, Any]) -> None:
        self.lease_expirations.inc()
        job = event.get("job") or {}
        if job.get("status") == "failed":
            self.jobs_poisoned.inc()
            self._count(self.jobs_failed, event)
        else:
            self.jobs_requeued.inc()

    # -- timing calls ------------------------------------------------------------------------
    def instrument_backend(self, backend: Broker | Store, role: str) -> None:
        """Time every Broker/Store method of ``backend`` (once per instance)."""
        if getattr(backend, "_jobtrio_metrics", None) is not None:
            return  # shared by several nodes in one process: the first one counts
        abstract = Broker if isinstance(backend, Broker) else Store
        names = sorted(abstract.__abstractmethods__ | {"ping"} | _own_moves(backend, abstract))
        try:
            for name in names:
                method = getattr(backend, name)
                setattr(backend, name, self._timed(method, role, name))
            backend._jobtrio_metrics = self  # type: ignore[union-attr]
        except AttributeError:  # a backend with __slots__: leave it untimed
            return

    def _timed(
        self, method: Callable[..., Awaitable[Any]], role: str, name: str
    ) -> Callable[..., Awaitable[Any]]:
        histogram = self.backend_calls.labels(role, name)
        errors = self.backend_errors.labels(role, name)
        clock = time.perf_counter

        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return await method(*args, **kwargs)
            except _ANSWERS:
                raise
            except Exception:  # BackendUnavailable, or a bug in the backend
                errors.inc()
                raise
            finally:
                histogram.observe(clock() - start)

        return timed

    def instrument_transport(self, transport: Any, kinds: Iterable[str]) -> None:
        """Count peer messages by kind (kinds outside ``kinds`` count as ``other``)."""
        known = frozenset(kinds)
        sent = {k: self.peer_messages.labels("sent", k) for k in (*known, "other")}
        received = {k: self.peer_messages.labels("received", k) for k in (*known, "other")}

        def kind_of(message: Any) -> str:
            kind = message.get("kind") if isinstance(message, dict) else None
            return kind if kind in known else "other"

        send, send_to_address, receive = (
            transport.send,
            transport.send_to_address,
            transport.receive,
        )

        def counted_send(node_id: str, message: dict[str, Any]) -> None:
            sent[kind_of(message)].inc()
            send(node_id, message)

        def counted_send_to_address(address: str, message: dict[str, Any]) -> None:
            sent[kind_of(message)].inc()
            send_to_address(address, message)

        async def counted_receive() -> Any:
            incoming = await receive()
            received[kind_of(getattr(incoming, "message", None))].inc()
            return incoming

        transport.send = counted_send
        transport.send_to_address = counted_send_to_address
        transport.receive = counted_receive


def peer_message_kinds() -> list[str]:
    """Every kind of message peers exchange (the labels ``cluster_messages_total`` may take)."""
    from .cluster.messages import MESSAGE_TYPES

    return sorted(MESSAGE_TYPES)


#: Broker methods with a default made of other moves. A Broker that makes one its own
#: move (Redis: ``enqueue_and_claim`` is one script) has it timed under its own name;
#: the default is not, since the moves it is made of are timed already.
_COMPOSED_MOVES = ("enqueue_and_claim",)


def _own_moves(backend: Broker | Store, abstract: type) -> set[str]:
    return {
        name
        for name in _COMPOSED_MOVES
        if getattr(abstract, name, None) is not None
        and getattr(type(backend), name) is not getattr(abstract, name)
    }
