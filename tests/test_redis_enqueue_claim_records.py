"""The Redis enqueue-and-claim's counts and record indexes, with the records kept.

``enqueue_claim.lua`` files its jobs' pending places before its claim reads
them, but leaves their counts and their records' indexes queued
(``flush_places``): a job the claim takes at once is counted and filed as
running only, never as pending and then moved. What a reader sees afterwards
must be what an enqueue and then a claim leave: each job counted once under
its status (the Broker's counts and the Store's), its record in its status's
index alone.
"""

from __future__ import annotations

import pytest
import redis

from jobtrio.backends.base import Finish, JobQuery
from jobtrio.backends.redis import RedisStore
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission
from tests.redis_backends import records_pair

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(**fields) -> Job:
    return validate_submission({"type": "noop", **fields}, NOW, ids=ids)


pair = pytest.fixture(records_pair, name="pair")


async def indexed(store: RedisStore, status: JobStatus) -> set[str]:
    page = await store.query(JobQuery(statuses=frozenset({status})))
    return {job.id for job in page.jobs}


async def test_a_job_taken_at_once_is_counted_and_filed_as_running_only(pair, redis_server):
    broker, store = pair
    raw = redis.Redis(port=redis_server.port)
    older = make(payload={"n": 0})
    await broker.enqueue([older], NOW)
    new = [make(payload={"n": i}) for i in (1, 2, 3)]
    _, leases = await broker.enqueue_and_claim(new, NOW, "n1", 2, 30)
    assert leases is not None
    taken = [lease.job.id for lease in leases]
    assert taken == [older.id, new[0].id]  # the queue's order
    counts, depths = await store.count_by_status(), await broker.depths()
    assert counts["pending"] == depths["pending"] == 2
    assert counts["running"] == depths["running"] == 2
    assert await indexed(store, JobStatus.RUNNING) == set(taken)
    assert await indexed(store, JobStatus.PENDING) == {new[1].id, new[2].id}
    pending_key = broker._p + "rec-st:pending"
    assert {m.decode() for m in raw.zrange(pending_key, 0, -1)} == {new[1].id, new[2].id}
    # one job, taken whole: nothing of it is left in the pending index or count
    [alone] = [make(payload={"n": 9})]
    for lease in leases:
        await broker.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 1)
    await broker.claim("n2", 5, 30, NOW + 1)  # the two pending ones
    _, [lease] = await broker.enqueue_and_claim([alone], NOW + 2, "n1", 20, 30)
    assert lease.job.id == alone.id
    counts, depths = await store.count_by_status(), await broker.depths()
    assert counts["pending"] == depths["pending"] == 0
    assert counts["running"] == depths["running"] == 3
    assert counts["completed"] == depths["completed"] == 2
    assert raw.exists(pending_key) == 0
    assert alone.id in await indexed(store, JobStatus.RUNNING)
    assert await store.get(alone.id) is not None
    raw.close()


async def test_a_resent_id_taken_at_once_leaves_its_old_index(pair):
    """The same id again replaces the job (unplace flushes what is queued first); its
    record moves from the old job's status to running, counted once."""
    broker, store = pair
    job = make(payload={"n": 1})
    await broker.enqueue([job], NOW)
    again = Job.loads(job.dumps())
    _, [lease] = await broker.enqueue_and_claim([again], NOW + 1, "n1", 5, 30)
    assert lease.job.id == job.id
    counts, depths = await store.count_by_status(), await broker.depths()
    assert counts["pending"] == depths["pending"] == 0
    assert counts["running"] == depths["running"] == 1
    assert await indexed(store, JobStatus.PENDING) == set()
    assert await indexed(store, JobStatus.RUNNING) == {job.id}


# What a claim writes at the edges of its batching (claim_common.lua, records.lua's
# refile): every job it takes leased with its token past the 1,000 members its ZADD and
# HSET take at a time, and a job taken that is not its batch's first moved out of the
# pending index by refile's fast path (its queued add popped) without the adds before it.


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
