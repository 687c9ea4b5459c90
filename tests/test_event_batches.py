"""The bus's job batches (``EventBus.publish_jobs``, ``JobEvents``) and their encoding
(``eventstream.encode_jobs``) at the edges the drain's changes of stop 30 touched:
batching subscribers each hold their own batch, a batch gathers no more than
``COALESCE_MAX`` jobs, and a job's fields holding "{" in a text are written whole."""

from __future__ import annotations

import json
from typing import Any

import trio

from jobtrio.events import COALESCE_MAX, EventBus, JobEvents
from jobtrio.eventstream import encode_jobs
from jobtrio.jobs import Job


def _job(n: int, **fields: Any) -> Job:
    return Job(id=f"J{n:025d}", type="t", created_at=1.0, **fields)


def _taken(receive: trio.MemoryReceiveChannel[Any]) -> list[list[str]]:
    """Each batch's job ids, as a receiver takes them (clearing ``open``)."""
    out = []
    while True:
        try:
            item = receive.receive_nowait()
        except trio.WouldBlock:
            return out
        assert type(item) is JobEvents
        item.open = False
        out.append([event["job"]["job_id"] for event in item.events()])


def test_batching_subscribers_each_see_every_job_once() -> None:
    bus = EventBus("n1", clock=lambda: 5.0)
    jobs = [_job(i) for i in range(6)]
    with bus.subscribe(batches=True) as a, bus.subscribe(batches=True) as b:
        bus.publish_jobs("job.started", jobs[:2])  # a deal of several: a list each
        bus.publish_jobs("job.started", jobs[2:3])  # then a deal of one, appended
        bus.publish_jobs("job.started", jobs[3:4])
        bus.publish_jobs("job.started", jobs[4:])  # and one of several, appended
        ids = [job.id for job in jobs]
        assert _taken(a) == [ids]
        assert _taken(b) == [ids]


def test_a_batch_gathers_at_most_coalesce_max_jobs() -> None:
    bus = EventBus("n1", clock=lambda: 5.0)
    jobs = [_job(i) for i in range(COALESCE_MAX + 3)]
    with bus.subscribe(buffer=10, batches=True) as receive:
        for job in jobs:
            bus.publish_jobs("job.completed", [job])
        batches = _taken(receive)
    assert [len(batch) for batch in batches] == [COALESCE_MAX, 3]
    assert [i for batch in batches for i in batch] == [job.id for job in jobs]


def test_fields_holding_braces_in_a_text_are_encoded_whole() -> None:
    error = 'boom: {"a": {}} }{'
    batch = JobEvents("job.failed", "n1", [_job(1, error=error).event_fields()], [2.5])
    [text] = encode_jobs(batch)
    event = json.loads(text)
    assert event["kind"] == "job.failed" and event["node"] == "n1"
    assert event["error"] == error and event["job_id"] == f"J{1:025d}"
