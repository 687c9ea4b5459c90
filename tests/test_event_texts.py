"""A drain's job events as the log stores them, text for text, and as they are counted.

Pinned from the tree before the event path's stop 30 changes (a batch of mixed kinds,
``iso_text``'s digits, the append's take of its batch): the stored texts, their order
and the Prometheus totals are the wire format and the guarantees of
docs/observability.md, which those changes must leave as they were.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from jobtrio.eventlog import MemoryEventLog
from jobtrio.events import EventBus
from jobtrio.eventstream import READ_BATCH, EventStream
from jobtrio.jobs import Job, JobStatus, iso_text
from jobtrio.metrics import NodeMetrics
from tests.test_metrics import scrape, value
from tests.waiting import wait_until


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


STARTED = (
    '{"kind":"job.started","at":"2023-11-14T22:13:20.000123Z","node":"n1",'
    '"job_id":"J0000000000000000000000001","type":"bench.incr","status":"running",'
    '"priority":5,"retry_count":0,"max_retries":3,"attempt":1,"worker_id":"n1/w3",'
    '"error":null,"owner":"alice"}'
)
COMPLETED = (
    '{"kind":"job.completed","at":"2023-11-14T22:13:21.000000Z","node":"n1",'
    '"job_id":"J0000000000000000000000001","type":"bench.incr","status":"completed",'
    '"priority":5,"retry_count":0,"max_retries":3,"attempt":1,"worker_id":"n1/w3",'
    '"error":null,"owner":"alice"}'
)
FAILED = (
    '{"kind":"job.failed","at":"2023-11-14T22:13:21.999999Z","node":"n1",'
    '"job_id":"J0000000000000000000000002","type":"other","status":"failed",'
    '"priority":5,"retry_count":2,"max_retries":2,"attempt":0,"worker_id":null,'
    '"error":"boom: \\"q\\" \u00e9","owner":null}'
)


def _job(n: int, job_type: str = "bench.incr") -> Job:
    return Job(id=f"J{n:025d}", type=job_type, created_at=1.0)


async def _recorded(
    publish: Callable[[EventBus], None], clock: Clock, n: int
) -> tuple[list[str], dict[str, Any]]:
    """What a node's event stream stores and counts of ``n`` events ``publish`` makes."""
    bus, metrics = EventBus("n1", clock), NodeMetrics("n1")
    log = MemoryEventLog(10_000, clock)
    stream = EventStream(bus, log, metrics, clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        publish(bus)
        await wait_until(lambda: stream.recorded == n)
        nursery.cancel_scope.cancel()
    bodies = [e.body for e in await log.read_after((0, 0), 10_000)]
    return bodies, scrape(metrics.render().decode())


async def test_a_jobs_started_and_completed_are_stored_as_before() -> None:
    """A deal's ``job.started``, then the finish's ``job.completed`` and a failed job's
    ``job.failed`` (with text to escape), gathered in one batch of mixed kinds: each
    stored as ``encode(normalize(event))`` wrote it, in order, each at its own time."""
    clock = Clock(1_700_000_000.000123)
    job, other = _job(1), _job(2, "other")

    def publish(bus: EventBus) -> None:
        job.status, job.priority, job.worker_id, job.owner = JobStatus.RUNNING, 5, "n1/w3", "alice"
        job.attempts = [object()]  # type: ignore[list-item]
        bus.publish_jobs("job.started", [job])
        clock.now = 1_700_000_000.9999996  # rounds up into the next second
        job.status = JobStatus.COMPLETED
        bus.publish_jobs("job.completed", [job])
        clock.now = 1_700_000_001.9999994
        other.status, other.retry_count, other.max_retries = JobStatus.FAILED, 2, 2
        other.error = 'boom: "q" \u00e9'
        bus.publish_jobs("job.failed", [other])

    bodies, metrics = await _recorded(publish, clock, 3)
    assert bodies == [STARTED, COMPLETED, FAILED]
    assert value(metrics, "jobs_completed_total", type="bench.incr") == 1.0
    assert value(metrics, "jobs_failed_total", type="other") == 1.0
    assert value(metrics, "event_stream_events_total") == 3.0


async def test_a_drain_of_alternating_deals_and_finishes_is_stored_in_order() -> None:
    """Deals of one job and finishes of several, alternating as in a drain, more events
    than one append takes: every event stored once, in the order published, each
    counted once by its kind and job type."""
    clock = Clock(1_700_000_000.0)
    jobs = [_job(i, "a" if i % 3 else "b") for i in range(2 * READ_BATCH)]
    order: list[tuple[str, str]] = []

    def publish(bus: EventBus) -> None:
        for k in range(0, len(jobs), 4):
            for job in jobs[k : k + 4]:
                clock.now += 0.000137
                bus.publish_jobs("job.started", [job])
                order.append(("job.started", job.id))
            clock.now += 0.000211
            bus.publish_jobs("job.completed", jobs[k : k + 4])
            order.extend(("job.completed", job.id) for job in jobs[k : k + 4])

    bodies, metrics = await _recorded(publish, clock, 2 * len(jobs))
    events = [json.loads(body) for body in bodies]
    assert [(e["kind"], e["job_id"]) for e in events] == order
    assert events[0]["at"] == iso_text(1_700_000_000.000137) == "2023-11-14T22:13:20.000137Z"
    b_jobs = sum(1 for i in range(len(jobs)) if i % 3 == 0)
    assert value(metrics, "jobs_completed_total", type="b") == b_jobs
    assert value(metrics, "jobs_completed_total", type="a") == len(jobs) - b_jobs
    assert value(metrics, "event_stream_events_total") == 2 * len(jobs)
