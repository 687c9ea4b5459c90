"""What a Redis claim writes, at the edges of its batching (claim_common.lua,
records.lua's ``refile``): every job it takes leased with its token even past the
1,000 members its ZADD and HSET calls take at a time, and a job an enqueue-and-claim
takes that is not the batch's first moved out of the pending index by the fast path
(the queued add popped) without taking the jobs queued before it along.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from jobtrio.backends.base import JobQuery
from jobtrio.backends.redis import RedisBroker, RedisStore
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(**fields: object) -> Job:
    return validate_submission({"type": "noop", **fields}, NOW, ids=ids)


@pytest.fixture
async def pair(redis_server) -> AsyncIterator[tuple[RedisBroker, RedisStore]]:
    prefix = "cw" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    store = await RedisStore.open(redis_server.url, prefix=prefix, connection=broker.connection)
    try:
        yield broker, store
    finally:
        await broker.close()


async def indexed(store: RedisStore, status: JobStatus) -> set[str]:
    page = await store.query(JobQuery(statuses=frozenset({status})))
    return {job.id for job in page.jobs}


async def test_a_claim_of_more_than_a_thousand_jobs_leases_each_with_its_token(
    pair, redis_server
) -> None:
    broker, _ = pair
    jobs = [make(payload={"n": i}) for i in range(2_100)]
    await broker.enqueue(jobs, NOW)
    leases = await broker.claim("n1", len(jobs), 30, NOW)
    assert len(leases) == len(jobs)
    raw = redis.Redis(port=redis_server.port)
    try:
        pipe = raw.pipeline(transaction=False)
        for lease in leases:
            pipe.zscore(broker._p + "leases", lease.job.id)
            pipe.hget(broker._p + "tokens", lease.job.id)
        replies = pipe.execute()
    finally:
        raw.close()
    unleased = [
        lease.job.id for lease, score in zip(leases, replies[::2], strict=True) if score is None
    ]
    assert unleased == []
    wrong = [
        lease.job.id
        for lease, token in zip(leases, replies[1::2], strict=True)
        if token is None or token.decode() != lease.token
    ]
    assert wrong == []


async def test_an_enqueue_and_claim_taking_its_last_job_first_leaves_the_others_pending(
    pair, redis_server
) -> None:
    """The batch's last job runs first (the highest priority): its queued add to the
    pending index is the last one there, popped and sent to running's instead; the
    two queued before it stay pending."""
    broker, store = pair
    low, mid, high = make(priority=1), make(priority=5), make(priority=10)
    _, leases = await broker.enqueue_and_claim([low, mid, high], NOW, "n1", 1, 30)
    assert leases is not None
    assert [lease.job.id for lease in leases] == [high.id]
    assert await indexed(store, JobStatus.RUNNING) == {high.id}
    assert await indexed(store, JobStatus.PENDING) == {low.id, mid.id}
    raw = redis.Redis(port=redis_server.port)
    try:
        pending = {m.decode() for m in raw.zrange(broker._p + "rec-st:pending", 0, -1)}
    finally:
        raw.close()
    assert pending == {low.id, mid.id}
    counts, depths = await store.count_by_status(), await broker.depths()
    assert counts["pending"] == depths["pending"] == 2
    assert counts["running"] == depths["running"] == 1
