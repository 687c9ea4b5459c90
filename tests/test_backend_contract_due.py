"""A claim takes due scheduled and retrying jobs itself: one contract for every Broker.

A burst of jobs due at one time is claimed as it comes due, scheduled to
running in the claim's own move, without waiting for the leader's promotion;
in the priority order a promotion then a claim would give (a due job after
the pending jobs of its priority), within the claim's scope (types, queues,
caps, pauses, rate limits). The leader's fenced promotion still moves what no
claim took.
"""

from __future__ import annotations

import pytest

from jobtrio.backends.base import ClaimScope, FencedError, Finish, RateLimit
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(job_type: str = "noop", **fields) -> Job:
    return validate_submission({"type": job_type, **fields}, NOW, ids=ids)


async def claim_ns(broker, n: int, at: float, sc: ClaimScope | None = None) -> list:
    return [lease.job.payload["n"] for lease in await broker.claim("n1", n, 30, at, sc)]


async def test_a_due_scheduled_job_is_claimed_with_no_promotion(broker):
    job = make(scheduled_at=NOW + 10, payload={"n": 0}, max_retries=2)
    [stored] = await broker.enqueue([job], NOW)
    assert stored.status == JobStatus.SCHEDULED
    assert await broker.claim("n1", 5, 30, NOW + 9.5) == []  # not due yet: not taken
    assert (await broker.get(job.id)).status == JobStatus.SCHEDULED
    [lease] = await broker.claim("n1", 5, 30, NOW + 10)  # due: taken, no promote_due
    got = lease.job
    assert got.id == job.id and got.status == JobStatus.RUNNING
    assert got.started_at == NOW + 10 and got.node_id == "n1"
    assert got.scheduled_at == NOW + 10
    assert [a.node_id for a in got.attempts] == ["n1"] and got.version > stored.version
    held = await broker.get(job.id)
    assert held.dumps() == got.dumps()
    depths = await broker.depths()
    assert depths["scheduled"] == 0 and depths["pending"] == 0 and depths["running"] == 1
    epoch = await broker.acquire_epoch("leader", NOW + 10)
    assert await broker.promote_due(NOW + 20, epoch) == []  # nothing left to promote
    [done] = await broker.finish([Finish(job.id, lease.token, "completed")], NOW + 11)
    assert done.status == JobStatus.COMPLETED
    assert await broker.claim("n1", 5, 30, NOW + 30) == []  # taken once


async def test_a_due_retry_is_claimed_with_no_promotion(broker):
    await broker.enqueue([make(payload={"n": 0}, max_retries=3)], NOW)
    [lease] = await broker.claim("n1", 1, 30, NOW)
    [retrying] = await broker.finish(
        [Finish(lease.job.id, lease.token, "failed", error="boom", retry_at=NOW + 5)], NOW + 1
    )
    assert retrying.status == JobStatus.RETRYING
    assert await broker.claim("n1", 1, 30, NOW + 4) == []
    [again] = await broker.claim("n1", 1, 30, NOW + 5)
    assert again.job.status == JobStatus.RUNNING and again.job.retry_count == 1
    assert [a.outcome for a in again.job.attempts] == ["failed", None]


async def test_due_and_pending_jobs_are_claimed_in_one_priority_order(broker):
    """Priority first; at one priority the pending jobs, then the due ones in due order,
    as a promotion at the claim would file them; a job not yet due is left."""
    jobs = [
        make(priority=5, payload={"n": 0}),
        make(priority=10, scheduled_at=NOW + 8, payload={"n": 1}),
        make(priority=5, scheduled_at=NOW + 7, payload={"n": 2}),
        make(priority=1, payload={"n": 3}),
        make(priority=10, payload={"n": 4}),
        make(priority=5, scheduled_at=NOW + 6, payload={"n": 5}),
        make(priority=10, scheduled_at=NOW + 60, payload={"n": 6}),  # not due
        make(priority=5, payload={"n": 7}),
    ]
    await broker.enqueue(jobs, NOW)
    order = []
    for _ in range(3):
        order += await claim_ns(broker, 3, NOW + 10)
    assert order == [4, 1, 0, 7, 5, 2, 3]
    depths = await broker.depths()
    assert depths["scheduled"] == 1 and depths["running"] == 7


async def test_a_claim_takes_due_jobs_only_within_its_scope(broker):
    """Types it cannot run, queues it does not serve, a paused queue, a node cap and a
    rate limit bound what a claim takes of the due jobs as of the pending ones."""
    due = NOW + 5
    jobs = [
        make("other", scheduled_at=due, payload={"n": 0}),
        make(queue="paused", scheduled_at=due, payload={"n": 1}),
        make(queue="slow", scheduled_at=due, payload={"n": 2}),
        make(queue="slow", scheduled_at=due, payload={"n": 3}),
        make(queue="capped", scheduled_at=due, payload={"n": 4}),
        make(queue="capped", scheduled_at=due, payload={"n": 5}),
        make(queue="unserved", scheduled_at=due, payload={"n": 6}),
    ]
    await broker.enqueue(jobs, NOW)
    await broker.set_queue("paused", paused=True)
    await broker.set_queue("slow", rate_limit=RateLimit(1, 3600.0))
    sc = ClaimScope(
        types=frozenset({"noop"}), queues=("paused", "slow", "capped"), limits=(("capped", 1),)
    )
    assert sorted(await claim_ns(broker, 10, due, sc)) == [2, 4]
    assert await claim_ns(broker, 10, due + 1, ClaimScope(queues=("paused",))) == []
    held = await broker.get_many([j.id for j in jobs])
    statuses = {j.payload["n"]: j.status for j in held.values()}
    assert statuses == {
        0: JobStatus.SCHEDULED,
        1: JobStatus.SCHEDULED,
        2: JobStatus.RUNNING,
        3: JobStatus.SCHEDULED,
        4: JobStatus.RUNNING,
        5: JobStatus.SCHEDULED,
        6: JobStatus.SCHEDULED,
    }
    await broker.set_queue("paused", paused=False)
    assert await claim_ns(broker, 10, due + 2, ClaimScope(queues=("paused",))) == [1]
    assert await claim_ns(broker, 10, due + 2, ClaimScope(types=frozenset({"other"}))) == [0]


async def test_a_claim_looks_at_the_first_n_due_jobs(broker):
    """Bounded: a claim of n considers the first n due (in due order), so a due backlog
    costs it n jobs read, not the backlog; the leader promotes what it passed over."""
    early = [make("other", scheduled_at=NOW + 1, payload={"n": i}) for i in range(3)]
    late = make(scheduled_at=NOW + 2, payload={"n": 9})
    await broker.enqueue([*early, late], NOW)
    sc = ClaimScope(types=frozenset({"noop"}))
    assert await claim_ns(broker, 3, NOW + 5, sc) == []  # the first 3 due are not its type
    assert await claim_ns(broker, 4, NOW + 5, sc) == [9]


async def test_the_leader_promotes_with_a_grace_only_jobs_due_that_long(broker):
    """The leader's promotion leaves a due job to the claims for ``grace`` seconds, then
    moves it (the first ``limit`` in due order), fenced as without a grace."""
    a = make(scheduled_at=NOW + 10, payload={"n": 0})
    b = make(scheduled_at=NOW + 11, payload={"n": 1})
    await broker.enqueue([a, b], NOW)
    old = await broker.acquire_epoch("a", NOW)
    epoch = await broker.acquire_epoch("b", NOW)
    assert await broker.promote_due(NOW + 11, epoch, grace=1.5) == []
    assert await broker.promote_due_count(NOW + 11, epoch, grace=1.5) == 0
    [promoted] = await broker.promote_due(NOW + 11.5, epoch, grace=1.5)
    assert promoted.id == a.id and promoted.status == JobStatus.PENDING
    with pytest.raises(FencedError):
        await broker.promote_due_count(NOW + 20, old, grace=1.5)
    assert await broker.promote_due_count(NOW + 12.5, epoch, grace=1.5) == 1
    depths = await broker.depths()
    assert depths["scheduled"] == 0 and depths["pending"] == 2


async def test_a_scope_naming_a_queue_twice_leases_a_due_job_once(broker):
    """ClaimScope's queues are an order to serve them in: a queue named twice is served
    once (Redis took a due job once per mention: two leases of one job in one claim)."""
    a = make(scheduled_at=NOW + 1, payload={"n": 0})
    b = make(payload={"n": 1})
    await broker.enqueue([a, b], NOW)
    sc = ClaimScope(queues=("default", "default"))
    assert sorted(await claim_ns(broker, 5, NOW + 2, sc)) == [0, 1]
    held = await broker.get(a.id)
    assert held.status == JobStatus.RUNNING and len(held.attempts) == 1
