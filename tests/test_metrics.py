"""Every metric the node exports moves, read as Prometheus reads it: a scrape of /metrics.

A node (memory backends) runs a workload that touches everything an
operator alerts on: jobs that complete, fail, retry and are cancelled, a
lease lost, a lease expired until the job is poisoned, a broker outage, an
actor crash, API requests and an event-stream consumer. Then the metrics app
is scraped over HTTP and each family is checked to have moved as it should.
The few that need a cluster or a stalled consumer are checked where those
happen (named in ``ELSEWHERE``), and a last test makes sure no exported
metric is left unchecked.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import httpx
import trio
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client.parser import text_string_to_metric_families

from jobtrio.actors.node import Node
from jobtrio.api.metrics_app import create_metrics_app, refresh
from jobtrio.backends.base import BackendUnavailable, ClaimScope, Lease
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.client import AsyncClient
from jobtrio.config import Settings
from jobtrio.eventlog import MemoryEventLog
from jobtrio.events import EventBus
from jobtrio.eventstream import EventStream
from jobtrio.jobs import IdGenerator
from jobtrio.metrics import NodeMetrics
from jobtrio.submission import SubmissionLimits, validate_submission
from tests.servers import free_port
from tests.test_client import serve_node
from tests.waiting import wait_until

#: Metrics whose movement is checked by another test (where a cluster or a stalled client is).
ELSEWHERE = {
    "cluster_messages": "test_events_cluster.py::test_a_client_on_one_node_sees_the_whole_...",
    "event_stream_consumers_dropped": "test_events.py::test_a_slow_consumer_is_dropped_...",
    "workflows_submitted": "test_dependencies_node.py::test_metrics_count_workflows_and_...",
    "jobs_dependents_released": "test_dependencies_node.py::test_metrics_count_workflows_and_...",
}
#: Checked in this module by tests of their own.
OWN_TESTS = {
    "event_stream_events_lost": "test_events_lost_while_the_log_is_down_are_counted",
    "jobs_requeued": "test_an_expired_lease_is_requeued",
    "queue_depth_by_priority_gauge": "test_a_scrape_counts_pending_jobs_by_priority",
    "queue_pending_by_queue_gauge": "test_a_scrape_counts_named_queues",
    "queue_paused_gauge": "test_a_scrape_counts_named_queues",
    "queue_unserved_jobs_gauge": "test_a_scrape_counts_named_queues",
}


class ClaimFlakyBroker(MemoryBroker):
    """A memory broker whose claims fail while ``down`` (a broker outage as the node sees it)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def claim(
        self, node_id: str, n: int, lease_seconds: float, now: float, scope=None
    ) -> list[Lease]:
        if self.down:
            raise BackendUnavailable("flaky", "connection refused")
        return await super().claim(node_id, n, lease_seconds, now, scope)


def scrape(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """family -> {labels: value} for every sample (histograms keep _count and _sum)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    series = metrics.get(name, {})
    return series.get(tuple(sorted(labels.items())), 0.0)


def total(metrics: dict[str, Any], name: str) -> float:
    return sum(metrics.get(name, {}).values())


async def serve_metrics(nursery: trio.Nursery, node: Node) -> str:
    from hypercorn.config import Config

    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = 0.1
    await nursery.start(functools.partial(hypercorn_serve, create_metrics_app(node), config))
    return f"http://127.0.0.1:{port}/metrics"


async def crash_once(node: Node, state: dict[str, int] = {}) -> None:  # noqa: B006 - a counter
    state["runs"] = state.get("runs", 0) + 1
    if state["runs"] == 1:
        raise RuntimeError("boom: an actor crashing once")
    await trio.sleep_forever()


async def test_a_scrape_after_a_workload_shows_every_metric_moving() -> None:
    settings = Settings(
        node_id="m1", worker_count=3, shutdown_grace=0.2, job_lease=0.6, poison_limit=1
    )
    broker, store = ClaimFlakyBroker(), MemoryStore()
    # a job some other node claimed and then died holding: its lease will expire here
    now = time.time()
    ghost = validate_submission(
        {"type": "ghostly"}, now, SubmissionLimits(1 << 20, 3), IdGenerator()
    )
    await broker.enqueue([ghost], now)
    [lease] = await broker.claim("dead-node", 1, 0.2, now)
    node = Node(settings, broker, store, extra_actors=[("crashy", crash_once)])
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        metrics_url = await serve_metrics(nursery, node)
        async with AsyncClient(url) as client, client.events(kind="backend") as backend_events:
            done = await client.submit_many([{"type": "noop"} for _ in range(3)])
            failing = await client.submit("fail", max_retries=1)
            later = await client.submit("noop", scheduled_at=now + 3600)
            await client.submit("noop", scheduled_at=now + 3600)
            await client.cancel(later.id)
            await client.wait_many(done + [failing], timeout=20)
            await client.retry(failing.id)  # by hand
            # a running attempt whose lease the broker no longer honours
            lost = await client.submit("sleep", {"seconds": 30})
            await wait_until(lambda: node.dispatcher.in_flight >= 1)
            await node.broker.cancel(lost.id, node.clock())
            await wait_until(lambda: node.metrics.lease_lost._value.get() == 1, timeout=10)
            # the ghost's lease expired and, with POISON_LIMIT=1, it is poisoned
            await wait_until(lambda: node.metrics.jobs_poisoned._value.get() == 1, timeout=10)
            # a broker outage as the dispatcher meets it, reported as events
            broker.down = True
            kinds = []
            with trio.fail_after(10):
                kinds.append((await backend_events.receive())["kind"])
                broker.down = False
                kinds.append((await backend_events.receive())["kind"])
            await wait_until(lambda: node.metrics.actor_restarts.labels("crashy")._value.get())
            running = await client.submit("sleep", {"seconds": 3})
            await wait_until(lambda: node.dispatcher.in_flight >= 1)
            async with httpx.AsyncClient() as http:
                response = await http.get(metrics_url)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            m = scrape(response.text)
            await client.cancel(running.id)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()

    # the seed's names
    assert value(m, "job_processing_duration_seconds_count", type="noop", outcome="completed") == 3
    assert value(m, "job_processing_duration_seconds_count", type="fail", outcome="failed") >= 2
    assert value(m, "election_leader_changes_total") >= 1
    assert value(m, "worker_active_gauge") >= 1  # the sleeping job
    assert value(m, "queue_depth_gauge", state="scheduled") == 1  # the one not cancelled
    assert value(m, "queue_depth_gauge", state="running") >= 1
    assert value(m, "node_uptime_seconds") > 0
    # jobs by type
    assert value(m, "jobs_submitted_total", type="noop") == 5
    assert value(m, "jobs_submitted_total", type="fail") == 1
    assert value(m, "jobs_completed_total", type="noop") == 3
    assert value(m, "jobs_failed_total", type="fail") >= 1
    assert value(m, "jobs_failed_total", type="ghostly") == 1  # poisoned
    assert value(m, "jobs_retried_total", type="fail") >= 2  # once on failure, once by hand
    assert value(m, "jobs_cancelled_total", type="noop") == 1
    assert value(m, "jobs_total", outcome="completed") == 3
    assert value(m, "job_queue_wait_seconds_count") >= 5
    assert value(m, "job_leases_lost_total") == 1
    assert value(m, "job_lease_expirations_total") == 1
    assert value(m, "jobs_poisoned_total") == 1
    # the node
    assert value(m, "node_is_leader") == 1
    assert value(m, "backend_up", backend="broker") == 1
    assert value(m, "backend_up", backend="store") == 1
    assert kinds == ["backend.down", "backend.up"]
    assert value(m, "backend_call_errors_total", backend="broker", operation="claim") >= 1
    assert value(m, "backend_call_duration_seconds_count", backend="broker", operation="claim") > 0
    assert (
        value(m, "backend_call_duration_seconds_count", backend="store", operation="put_many") > 0
    )
    assert value(m, "actor_restarts_total", actor="crashy") == 1
    assert (
        value(
            m,
            "api_request_duration_seconds_count",
            method="POST",
            route="/api/v1/jobs",
            status="201",
        )
        >= 4
    )
    assert (
        value(
            m,
            "api_request_duration_seconds_count",
            method="DELETE",
            route="/api/v1/jobs/<job_id>",
            status="200",
        )
        == 1
    )
    # the event stream
    assert value(m, "event_stream_consumers") == 1
    assert value(m, "event_stream_events_total") > 20


#: Every family the workload test above asserts on (Prometheus family names: no _total).
ASSERTED_IN_WORKLOAD = {
    "job_processing_duration_seconds",
    "election_leader_changes",
    "worker_active_gauge",
    "queue_depth_gauge",
    "node_uptime_seconds",
    "jobs_submitted",
    "jobs_completed",
    "jobs_failed",
    "jobs_retried",
    "jobs_cancelled",
    "jobs",
    "job_queue_wait_seconds",
    "job_leases_lost",
    "job_lease_expirations",
    "jobs_poisoned",
    "node_is_leader",
    "backend_up",
    "backend_call_errors",
    "backend_call_duration_seconds",
    "actor_restarts",
    "api_request_duration_seconds",
    "event_stream_consumers",
    "event_stream_events",
}


async def test_an_expired_lease_is_requeued() -> None:
    settings = Settings(node_id="m2", worker_count=2, shutdown_grace=0.2, poison_limit=5)
    broker, store = MemoryBroker(), MemoryStore()
    now = time.time()
    job = validate_submission({"type": "noop"}, now, SubmissionLimits(1 << 20, 3), IdGenerator())
    await broker.enqueue([job], now)
    await broker.claim("dead-node", 1, 0.2, now)
    node = Node(settings, broker, store)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)

        def completed() -> bool:
            # jobs_completed_total counts the job.completed events, which reach the
            # metrics over the event bus after the finisher counted the job finished:
            # wait for the metric itself (the test failed once reading it too early)
            m = scrape(node.metrics.render().decode())
            return value(m, "jobs_completed_total", type="noop") >= 1

        await wait_until(completed, timeout=10)
        m = scrape(node.metrics.render().decode())
        node.request_stop()
    assert node.dispatcher.finished == 1
    assert value(m, "jobs_requeued_total") == 1
    assert value(m, "job_lease_expirations_total") == 1
    assert value(m, "jobs_poisoned_total") == 0
    assert value(m, "jobs_completed_total", type="noop") == 1


class DownLog(MemoryEventLog):
    """A log that refuses appends while ``down`` (Redis restarting)."""

    def __init__(self) -> None:
        super().__init__(1000, time.time)
        self.down = True

    async def append(self, bodies: Sequence[str]) -> None:
        if self.down:
            raise BackendUnavailable("redis", "connection refused")
        await super().append(bodies)


async def test_events_lost_while_the_log_is_down_are_counted() -> None:
    bus, metrics, log = EventBus("n", time.time), NodeMetrics("n"), DownLog()
    stream = EventStream(bus, log, metrics, time.time, pending_limit=10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(25):
            bus.publish("job.submitted", job={"job_id": str(i), "type": "t"})
        await wait_until(lambda: stream.lost == 15)
        log.down = False
        await wait_until(lambda: stream.recorded == 11)  # the 10 kept, and what was lost
        nursery.cancel_scope.cancel()
    entries = await log.read_after((0, 0), 100)
    assert '"kind":"stream.lost"' in entries[-1].body and '"lost":15' in entries[-1].body
    m = scrape(metrics.render().decode())
    assert value(m, "event_stream_events_lost_total") == 15
    assert value(m, "jobs_submitted_total", type="t") == 25  # counted all the same


async def test_a_scrape_counts_pending_jobs_by_priority() -> None:
    """What /metrics reads from the Broker before it renders (api/metrics_app.refresh)."""
    broker = MemoryBroker()
    node = Node(Settings(node_id="p1"), broker, MemoryStore())
    now = time.time()
    jobs = [
        validate_submission(
            {"type": "noop", "priority": p}, now, SubmissionLimits(1 << 20, 3), IdGenerator()
        )
        for p in (2, 2, 2, 9)
    ]
    await broker.enqueue(jobs, now)
    await broker.claim("p1", 1, 30, now)  # the 9: running, no longer waiting
    await refresh(node)
    m = scrape(node.metrics.render().decode())
    assert value(m, "queue_depth_by_priority_gauge", priority="2") == 3
    assert value(m, "queue_depth_by_priority_gauge", priority="9") == 0
    assert value(m, "queue_depth_by_priority_gauge", priority="10") == 0
    assert value(m, "queue_depth_gauge", state="running") == 1


async def test_a_scrape_counts_named_queues() -> None:
    broker = MemoryBroker()
    node = Node(Settings(node_id="p1"), broker, MemoryStore())
    now = time.time()
    jobs = [
        validate_submission(
            {"type": t, "queue": q}, now, SubmissionLimits(1 << 20, 3), IdGenerator()
        )
        for t, q in [("noop", "a"), ("noop", "a"), ("resize", "img"), ("noop", "gone")]
    ]
    await broker.enqueue(jobs, now)
    await broker.set_queue("a", paused=True)
    await refresh(node)
    await broker.claim("p1", 5, 30, now, ClaimScope(queues=("gone",)))
    await refresh(node)  # the emptied queue's series leaves
    m = scrape(node.metrics.render().decode())
    assert value(m, "queue_pending_by_queue_gauge", queue="a") == 2
    assert value(m, "queue_pending_by_queue_gauge", queue="img") == 1
    assert (("queue", "gone"),) not in m["queue_pending_by_queue_gauge"]
    assert value(m, "queue_paused_gauge", queue="a") == 1
    assert value(m, "queue_unserved_jobs_gauge", queue="img", type="resize") == 1
    assert list(m["queue_unserved_jobs_gauge"]) == [(("queue", "img"), ("type", "resize"))]


def test_no_exported_metric_is_left_unchecked() -> None:
    text = NodeMetrics("x").render().decode()
    families = {
        f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
    }
    checked = ASSERTED_IN_WORKLOAD | set(ELSEWHERE) | set(OWN_TESTS)
    assert families - checked == set(), "a metric no test checks"
    assert checked - families == set(), "a checked name the node does not export"


async def test_an_enqueue_and_claim_is_timed_once_as_the_moves_it_makes(broker) -> None:
    """Redis makes it one script, timed under its own name; the other Brokers make it an
    enqueue and a claim, timed as those (not twice, once more under the composite)."""
    metrics = NodeMetrics("n")
    metrics.instrument_backend(broker, "broker")
    job = validate_submission({"type": "noop"}, 1_700_000_000.0, SubmissionLimits(1 << 20, 3))
    stored, leases = await broker.enqueue_and_claim([job], 1_700_000_000.0, "n", 5, 30)
    assert [s.id for s in stored] == [job.id] and leases is not None and len(leases) == 1
    m = scrape(metrics.render().decode())
    calls = {
        op: value(m, "backend_call_duration_seconds_count", backend="broker", operation=op)
        for op in ("enqueue_and_claim", "enqueue", "claim")
    }
    if type(broker).__name__ == "RedisBroker":
        assert calls == {"enqueue_and_claim": 1, "enqueue": 0, "claim": 0}
    else:
        assert calls == {"enqueue_and_claim": 0, "enqueue": 1, "claim": 1}
