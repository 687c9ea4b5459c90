"""A batch on Redis: its answer is made while the Broker stores its jobs.

``Node.submit_many`` calls its ``meanwhile`` with the validated jobs while a
Broker that hands back the very jobs it stored (Redis's) runs the enqueue,
and the batch route writes its answer there. What it answers must still be
each stored job: the job holding an idempotency key in place of the one
sent, the Broker's errors as they were, nothing lost when ``meanwhile``
fails. These run on the session's redis-server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio
from quart_trio.testing import TrioClient

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.backends.redis import RedisBroker, RedisStore
from jobtrio.config import Settings
from jobtrio.jobs import Job
from tests.servers import RedisServer

pytestmark = pytest.mark.slow

#: Jobs wait an hour: none runs (and changes) while its answer is compared.
LATER = time.time() + 3600


@pytest.fixture
async def node(redis_server: RedisServer) -> AsyncIterator[Node]:
    prefix = "batch" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    store = await RedisStore.open(redis_server.url, prefix=prefix)
    node = Node(Settings(node_id="b1", worker_count=1, shutdown_grace=0.2), broker, store)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        yield node
        node.request_stop()
    await broker.close()
    await store.close()


@pytest.fixture
def client(node: Node) -> TrioClient:
    return create_app(node).test_client()  # type: ignore[no-any-return]


async def _stored(node: Node, ids: Sequence[str]) -> list[dict[str, Any]]:
    held = await node.broker.get_many(list(ids))
    return [held[job_id].to_dict() for job_id in ids]


async def test_meanwhile_runs_while_the_broker_stores(node: Node) -> None:
    returned: list[bool] = []
    seen: list[bool] = []
    enqueue = node.broker.enqueue

    async def watched(jobs: Sequence[Job], now: float) -> list[Job]:
        stored = await enqueue(jobs, now)
        returned.append(True)
        return stored

    node.broker.enqueue = watched  # type: ignore[method-assign]
    jobs = await node.submit_many(
        [{"type": "noop", "payload": {"i": i}} for i in range(50)],
        meanwhile=lambda sent: seen.append(bool(returned)),
    )
    assert seen == [False]  # called once, before the Broker's call had returned
    assert returned == [True]
    assert len(jobs) == 50


async def test_a_batch_answers_the_jobs_holding_their_keys(node: Node, client: TrioClient) -> None:
    held = {"type": "noop", "idempotency_key": "k-held", "priority": 9, "scheduled_at": LATER}
    first = await client.post("/api/v1/jobs", json=held)
    assert first.status_code == 201
    holder = await first.get_json()
    items = [
        {"type": "noop", "payload": {"i": 0}},
        {"type": "other", "idempotency_key": "k-held", "priority": 1},
        {"type": "noop", "payload": {"i": 2}, "idempotency_key": "k-new"},
        {"type": "noop", "idempotency_key": "k-new"},  # the batch's own job holds it
    ]
    items = [{**item, "scheduled_at": LATER} for item in items]
    response = await client.post("/api/v1/jobs/batch", json={"jobs": items})
    assert response.status_code == 201
    body = await response.get_json()
    answered = body["jobs"]
    assert body["count"] == 4
    assert answered[1] == holder  # the holder as it is, not the job sent
    assert answered[3]["id"] == answered[2]["id"]
    assert answered[2]["payload"] == {"i": 2}
    assert answered[0]["payload"] == {"i": 0} and answered[0]["id"] != answered[2]["id"]
    assert answered == await _stored(node, [job["id"] for job in answered])


async def test_a_batch_stored_as_sent_answers_each_stored_job(
    node: Node, client: TrioClient
) -> None:
    items = [
        {"type": "noop", "payload": {"i": i}, "priority": 1 + i % 10, "scheduled_at": LATER}
        for i in range(30)
    ]
    response = await client.post("/api/v1/jobs/batch", json={"jobs": items})
    assert response.status_code == 201
    answered = (await response.get_json())["jobs"]
    assert [job["payload"] for job in answered] == [item["payload"] for item in items]
    assert answered == await _stored(node, [job["id"] for job in answered])


async def test_a_broker_refusal_keeps_its_answer(client: TrioClient) -> None:
    """The Broker's error leaves the store task as it came (not in an exception group)."""
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    response = await client.post(
        "/api/v1/jobs/batch", json={"jobs": [{"type": "noop", "depends_on": [missing]}]}
    )
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "unknown_dependency"


async def test_a_failing_meanwhile_loses_no_job(node: Node) -> None:
    def broken(jobs: list[Job]) -> None:
        raise RuntimeError("meanwhile broke")

    accepted: list[str] = []
    publish = node.events.publish_jobs

    def record(kind: str, jobs: Sequence[Job]) -> None:
        if kind == "job.submitted":
            accepted.extend(job.id for job in jobs)
        publish(kind, jobs)

    node.events.publish_jobs = record  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="meanwhile broke"):
        await node.submit_many(
            [{"type": "noop", "scheduled_at": LATER} for _ in range(5)], meanwhile=broken
        )
    assert len(accepted) == 5  # stored and accepted (their events) before the error
    assert len(await node.broker.get_many(accepted)) == 5
