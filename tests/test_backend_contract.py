"""One contract for every Broker and Store implementation.

The fixtures ``broker`` and ``store`` (tests/conftest.py) are parameterized
over every backend that can run here: memory, SQLite, Redis (a real
redis-server the session starts) and MongoDB when MONGODB_URI is set.
"""

from __future__ import annotations

import pytest

from jobtrio.backends.base import (
    FencedError,
    Finish,
    JobQuery,
    NodeRecord,
    StateConflict,
    Tombstone,
)
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(job_type: str = "noop", now: float = NOW, **fields) -> Job:
    return validate_submission({"type": job_type, **fields}, now, ids=ids)


# --------------------------------------------------------------------------- broker


async def test_claim_is_strict_priority_then_fifo(broker):
    jobs = [
        make(priority=1, payload={"n": 0}),
        make(priority=5, payload={"n": 1}),
        make(priority=10, payload={"n": 2}),
        make(priority=5, payload={"n": 3}),
        make(priority=10, payload={"n": 4}),
        make(priority=1, payload={"n": 5}),
    ]
    await broker.enqueue(jobs, NOW)
    order = []
    for _ in range(3):
        leases = await broker.claim("n1", 2, 30, NOW + 1)
        order += [lease.job.payload["n"] for lease in leases]
    assert order == [2, 4, 1, 3, 0, 5]
    assert await broker.claim("n1", 5, 30, NOW + 1) == []


async def test_enqueue_returns_jobs_and_claim_marks_running(broker):
    job = make(payload={"a": 1}, max_retries=2, timeout=5)
    [stored] = await broker.enqueue([job], NOW)
    assert stored.id == job.id and stored.status == JobStatus.PENDING
    [lease] = await broker.claim("node-a", 10, 30, NOW + 1)
    assert lease.job.id == job.id
    assert lease.job.status == JobStatus.RUNNING
    assert lease.job.payload == {"a": 1}
    assert lease.job.max_retries == 2 and lease.job.timeout == 5
    assert lease.job.node_id == "node-a"
    assert lease.job.started_at == NOW + 1
    assert lease.expires_at == NOW + 31
    assert len(lease.job.attempts) == 1 and lease.job.attempts[0].node_id == "node-a"
    got = await broker.get(job.id)
    assert got is not None and got.status == JobStatus.RUNNING
    assert got.version > stored.version


async def test_claim_respects_n(broker):
    await broker.enqueue([make() for _ in range(7)], NOW)
    assert len(await broker.claim("n", 3, 30, NOW)) == 3
    assert len(await broker.claim("n", 100, 30, NOW)) == 4


async def test_enqueue_is_idempotent_by_key(broker):
    a = make(idempotency_key="order-1")
    [first] = await broker.enqueue([a], NOW)
    b = make(idempotency_key="order-1", payload={"other": True})
    [second] = await broker.enqueue([b], NOW)
    assert second.id == first.id
    assert await broker.get(b.id) is None
    assert len(await broker.claim("n", 10, 30, NOW)) == 1
    # within one batch too
    c, d = make(idempotency_key="k2"), make(idempotency_key="k2")
    out = await broker.enqueue([c, d], NOW)
    assert out[0].id == out[1].id == c.id


async def test_complete_with_token_and_stale_token_refused(broker):
    await broker.enqueue([make()], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    [stale] = await broker.finish(
        [Finish(lease.job.id, "not-the-token", "completed", result={"x": 1})], NOW + 1
    )
    assert stale is None
    still = await broker.get(lease.job.id)
    assert still.status == JobStatus.RUNNING and still.result is None
    [done] = await broker.finish(
        [Finish(lease.job.id, lease.token, "completed", worker_id="w-1", result={"x": 1})],
        NOW + 2,
    )
    assert done.status == JobStatus.COMPLETED
    assert done.result == {"x": 1}
    assert done.completed_at == NOW + 2
    assert done.worker_id == "w-1"
    assert done.attempts[-1].outcome == "completed" and done.attempts[-1].ended_at == NOW + 2
    # finishing twice with the same token is refused: the lease is gone
    assert await broker.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 3) == [None]


async def test_a_lease_renewed_for_zero_seconds_is_reaped_next(broker):
    """How a restarted node lets its previous process's leases go (dispatcher): renewed
    with their tokens for 0 s, they are expired for the next reap; a stale token is not."""
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make(), make()], NOW)
    first, second = await broker.claim("n1", 2, 600, NOW)
    lost = await broker.renew([(first.job.id, first.token), (second.job.id, "stale")], 0, NOW)
    assert lost == [second.job.id]
    [requeued] = await broker.requeue_expired(NOW + 0.001, epoch, poison_limit=5)
    assert requeued.id == first.job.id and requeued.lease_expirations == 1
    assert (await broker.get(second.job.id)).status == JobStatus.RUNNING


async def test_a_stale_item_in_a_finish_batch_leaves_the_others_applied(broker):
    """Kills mutants found by cosmic-ray: a stale token ending the batch's loop (SQLite),
    attempts numbered other than 1, 2... and a worker not written on its attempt."""
    epoch = await broker.acquire_epoch("leader", NOW)
    a, b = make(), make()
    await broker.enqueue([a, b], NOW)
    first = {lease.job.id: lease for lease in await broker.claim("n1", 2, 10, NOW)}
    assert [x.number for x in first[a.id].job.attempts] == [1]
    await broker.requeue_expired(NOW + 11, epoch, poison_limit=5)
    again = {lease.job.id: lease for lease in await broker.claim("n2", 2, 10, NOW + 12)}
    assert [x.number for x in again[a.id].job.attempts] == [1, 2]
    stale, done = await broker.finish(
        [
            Finish(a.id, first[a.id].token, "completed"),
            Finish(b.id, again[b.id].token, "completed", worker_id="n2/w3"),
        ],
        NOW + 13,
    )
    assert stale is None
    assert done is not None and done.status == JobStatus.COMPLETED
    assert [(x.number, x.worker_id, x.outcome) for x in done.attempts] == [
        (1, None, "lost"),
        (2, "n2/w3", "completed"),
    ]
    assert (await broker.get(a.id)).status == JobStatus.RUNNING


async def test_expirations_counted_before_a_lower_poison_limit_still_count(broker):
    """POISON_LIMIT lowered between two expirations (a restart with new settings): a job
    already past it fails at its next expiry (cosmic-ray: ``>=`` mutated to ``==``)."""
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make()], NOW)
    now = NOW
    for limit in (5, 5, 2):
        await broker.claim("n", 1, 10, now)
        [expired] = await broker.requeue_expired(now + 11, epoch, poison_limit=limit)
        now += 12
    assert expired.lease_expirations == 3 and expired.status == JobStatus.FAILED


async def test_retry_forgets_lease_expirations(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    [job] = await broker.enqueue([make()], NOW)
    await broker.claim("n", 1, 10, NOW)
    await broker.requeue_expired(NOW + 11, epoch, poison_limit=1)
    failed = await broker.get(job.id)
    assert failed.status == JobStatus.FAILED and failed.lease_expirations == 1
    retried = await broker.retry(job.id, NOW + 12)
    assert retried.lease_expirations == 0 and retried.status == JobStatus.PENDING


async def test_a_job_due_now_or_earlier_is_pending(broker):
    due_now, late = make(), make()
    due_now.scheduled_at, late.scheduled_at = NOW, NOW - 5
    stored = await broker.enqueue([due_now, late], NOW)
    assert [j.status for j in stored] == [JobStatus.PENDING, JobStatus.PENDING]
    assert len(await broker.claim("n", 5, 30, NOW)) == 2


async def test_cancelling_a_finished_job_keeps_its_finish_time(broker):
    """A cancel that changes nothing must not re-file the job (its purge time stays)."""
    epoch = await broker.acquire_epoch("leader", NOW)
    [job] = await broker.enqueue([make()], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    [done] = await broker.finish([Finish(job.id, lease.token, "completed")], NOW + 1)
    same = await broker.cancel(job.id, NOW + 100)
    assert same.status == JobStatus.COMPLETED and same.version == done.version
    assert await broker.purge_finished(NOW + 2, epoch) == 1


async def test_a_renewed_lease_ends_lease_seconds_after_the_renewal(broker):
    """Neither earlier nor later (cosmic-ray: ``now + lease_seconds`` mutated to ``*``)."""
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make()], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    assert await broker.renew([(lease.job.id, lease.token)], 60, NOW + 10) == []
    assert await broker.requeue_expired(NOW + 69, epoch, poison_limit=5) == []
    [back] = await broker.requeue_expired(NOW + 71, epoch, poison_limit=5)
    assert back.id == lease.job.id


async def test_renew_refuses_stale_tokens_on_either_side_of_the_real_one(broker):
    await broker.enqueue([make(), make()], NOW)
    a, b = await broker.claim("n", 2, 30, NOW)
    lost = await broker.renew([(a.job.id, ""), (b.job.id, "~" * 40)], 300, NOW + 1)
    assert sorted(lost) == sorted([a.job.id, b.job.id])
    epoch = await broker.acquire_epoch("leader", NOW)
    assert len(await broker.requeue_expired(NOW + 31, epoch, poison_limit=5)) == 2


async def test_zombie_token_refused_after_requeue(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make()], NOW)
    [old] = await broker.claim("n1", 1, 10, NOW)
    requeued = await broker.requeue_expired(NOW + 11, epoch, poison_limit=5)
    assert [j.id for j in requeued] == [old.job.id]
    assert requeued[0].status == JobStatus.PENDING and requeued[0].lease_expirations == 1
    [new] = await broker.claim("n2", 1, 10, NOW + 12)
    assert new.job.id == old.job.id and new.token != old.token
    assert await broker.finish([Finish(old.job.id, old.token, "completed")], NOW + 13) == [None]
    assert await broker.renew([(old.job.id, old.token)], 10, NOW + 13) == [old.job.id]
    [done] = await broker.finish([Finish(new.job.id, new.token, "completed")], NOW + 13)
    assert done.status == JobStatus.COMPLETED
    assert [a.outcome for a in done.attempts] == ["lost", "completed"]


async def test_renew_extends_lease(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make(), make()], NOW)
    a, b = await broker.claim("n", 2, 10, NOW)
    assert await broker.renew([(a.job.id, a.token), (b.job.id, "bad")], 10, NOW + 8) == [b.job.id]
    expired = await broker.requeue_expired(NOW + 12, epoch, poison_limit=5)
    assert [j.id for j in expired] == [b.job.id]  # a was renewed until NOW+18
    assert (await broker.get(a.job.id)).status == JobStatus.RUNNING


async def test_poison_limit_fails_job(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make()], NOW)
    t = NOW
    for _ in range(2):
        [lease] = await broker.claim("n", 1, 1, t)
        [job] = await broker.requeue_expired(t + 2, epoch, poison_limit=3)
        assert job.status == JobStatus.PENDING
        t += 3
    [lease] = await broker.claim("n", 1, 1, t)
    [job] = await broker.requeue_expired(t + 2, epoch, poison_limit=3)
    assert job.status == JobStatus.FAILED
    assert job.lease_expirations == 3
    assert "poison limit" in job.error
    assert await broker.claim("n", 1, 1, t + 3) == []


async def test_failure_with_retry_then_promote(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make(max_retries=1)], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    [job] = await broker.finish(
        [Finish(lease.job.id, lease.token, "failed", error="boom", retry_at=NOW + 5)], NOW + 1
    )
    assert job.status == JobStatus.RETRYING and job.retry_count == 1 and job.error == "boom"
    assert await broker.claim("n", 1, 30, NOW + 2) == []
    assert await broker.promote_due(NOW + 4, epoch) == []
    [promoted] = await broker.promote_due(NOW + 5, epoch)
    assert promoted.status == JobStatus.PENDING
    [again] = await broker.claim("n", 1, 30, NOW + 6)
    assert again.job.retry_count == 1 and len(again.job.attempts) == 2
    [final] = await broker.finish(
        [Finish(again.job.id, again.token, "timeout", error="timed out after 1s")], NOW + 7
    )
    assert final.status == JobStatus.FAILED and final.error == "timed out after 1s"
    assert [a.outcome for a in final.attempts] == ["failed", "timeout"]


async def test_scheduled_job_waits_until_due(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    later = make(scheduled_at=NOW + 60)
    [stored] = await broker.enqueue([later], NOW)
    assert stored.status == JobStatus.SCHEDULED
    assert await broker.claim("n", 1, 30, NOW + 59) == []
    assert await broker.promote_due(NOW + 59, epoch) == []
    [p] = await broker.promote_due(NOW + 60, epoch)
    assert p.id == later.id
    [lease] = await broker.claim("n", 1, 30, NOW + 60)
    assert lease.job.id == later.id


async def test_release_hands_job_back_without_counting(broker):
    await broker.enqueue([make(priority=7)], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    [job] = await broker.finish([Finish(lease.job.id, lease.token, "released")], NOW + 1)
    assert job.status == JobStatus.PENDING and job.retry_count == 0 and job.attempts == []
    [again] = await broker.claim("n", 1, 30, NOW + 2)
    assert again.job.id == lease.job.id


async def test_cancel_pending_scheduled_and_running(broker):
    a, b, c = make(), make(scheduled_at=NOW + 100), make()
    await broker.enqueue([a, b], NOW)
    assert (await broker.cancel(a.id, NOW)).status == JobStatus.CANCELLED
    assert (await broker.cancel(b.id, NOW)).status == JobStatus.CANCELLED
    epoch = await broker.acquire_epoch("leader", NOW)
    assert await broker.promote_due(NOW + 200, epoch) == []
    assert await broker.claim("n", 10, 30, NOW) == []
    await broker.enqueue([c], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    cancelled = await broker.cancel(c.id, NOW + 1)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.attempts[-1].outcome == "cancelled"
    # the worker's lease is gone: renew reports it, completion is refused
    assert await broker.renew([(c.id, lease.token)], 30, NOW + 2) == [c.id]
    assert await broker.finish([Finish(c.id, lease.token, "completed")], NOW + 2) == [None]
    # cancelling a terminal job changes nothing; unknown is None
    again = await broker.cancel(c.id, NOW + 3)
    assert again.status == JobStatus.CANCELLED and again.version == cancelled.version
    assert await broker.cancel("nope", NOW) is None


async def test_retry_failed_or_cancelled(broker):
    a = make(max_retries=0)
    await broker.enqueue([a], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    await broker.finish([Finish(a.id, lease.token, "failed", error="x")], NOW)
    job = await broker.retry(a.id, NOW + 1)
    assert job.status == JobStatus.PENDING and job.retry_count == 0 and job.error is None
    [lease2] = await broker.claim("n", 1, 30, NOW + 2)
    assert lease2.job.id == a.id and len(lease2.job.attempts) == 2
    with pytest.raises(StateConflict):
        await broker.retry(a.id, NOW + 3)  # running
    assert await broker.retry("unknown", NOW) is None


async def test_depths_and_running(broker):
    await broker.enqueue([make(), make(), make(scheduled_at=NOW + 10)], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    depths = await broker.depths()
    assert depths["pending"] == 1 and depths["scheduled"] == 1 and depths["running"] == 1
    assert set(depths) >= {s.value for s in JobStatus}
    running = await broker.running()
    assert [(r.job.id, r.token) for r in running] == [(lease.job.id, lease.token)]


async def test_pending_by_priority_counts_due_jobs_waiting_for_a_worker(broker):
    assert await broker.pending_by_priority() == dict.fromkeys(range(1, 11), 0)
    jobs = [make(priority=p) for p in (1, 1, 5, 10, 10, 10)]
    later = make(priority=5, scheduled_at=NOW + 10)
    await broker.enqueue([*jobs, later], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)  # the first priority-10 job
    assert lease.job.priority == 10
    counts = await broker.pending_by_priority()
    assert counts == {**dict.fromkeys(range(1, 11), 0), 1: 2, 5: 1, 10: 2}


async def test_get_many_and_delete(broker):
    a, b = make(), make()
    await broker.enqueue([a, b], NOW)
    got = await broker.get_many([a.id, b.id, "missing"])
    assert set(got) == {a.id, b.id}
    assert await broker.delete(a.id) is True
    assert await broker.delete(a.id) is False
    assert await broker.get(a.id) is None
    [lease] = await broker.claim("n", 5, 30, NOW)
    assert lease.job.id == b.id


async def test_epochs_strictly_increase_and_fence(broker):
    e1 = await broker.acquire_epoch("a", NOW)
    e2 = await broker.acquire_epoch("b", NOW)
    assert e2 > e1 and await broker.current_epoch() == e2
    with pytest.raises(FencedError):
        await broker.promote_due(NOW, e1)
    with pytest.raises(FencedError):
        await broker.promote_due_count(NOW, e1)
    with pytest.raises(FencedError):
        await broker.requeue_expired(NOW, e1, poison_limit=3)
    with pytest.raises(FencedError):
        await broker.purge_finished(NOW, e1)
    with pytest.raises(FencedError):
        await broker.claim_tick("cron", NOW, e1)
    await broker.promote_due(NOW, e2)  # the current epoch acts


async def test_a_burst_meeting_a_failover_runs_each_job_once(broker):
    """Jobs due at one time, promoted in steps by a leader deposed mid-burst: its next
    step is refused, the new leader promotes the rest, and each job is claimed once."""
    burst = [make(scheduled_at=NOW + 10) for _ in range(25)]
    await broker.enqueue(burst, NOW)
    e1 = await broker.acquire_epoch("a", NOW)
    first = await broker.promote_due(NOW + 10, e1, limit=10)
    assert len(first) == 10 and all(j.status == JobStatus.PENDING for j in first)
    leases = await broker.claim("n1", 4, 30, NOW + 10)  # workers start on the first step
    e2 = await broker.acquire_epoch("b", NOW + 10)  # the leader changes mid-promotion
    with pytest.raises(FencedError):
        await broker.promote_due(NOW + 10, e1, limit=10)
    rest: list[Job] = []
    for _ in range(3):  # 15 left: two steps, then nothing
        rest += await broker.promote_due(NOW + 10, e2, limit=10)
    promoted = [j.id for j in first + rest]
    assert sorted(promoted) == sorted(j.id for j in burst)  # each promoted exactly once
    for _ in range(4):  # 21 left: three claims of 7, then nothing
        leases += await broker.claim("n2", 7, 30, NOW + 11)
    claimed = [lease.job.id for lease in leases]
    assert sorted(claimed) == sorted(j.id for j in burst)  # none lost, none claimed twice
    depths = await broker.depths()
    assert depths["scheduled"] == 0 and depths["pending"] == 0 and depths["running"] == 25


async def test_promote_due_count_moves_as_promote_due_and_answers_the_count(broker):
    """The leader's promotion when it records nothing: each due job moved once, in steps
    of ``limit``, fenced, answering how many moved."""
    due = [make(scheduled_at=NOW + 10) for _ in range(6)]
    urgent = make(
        "echo",
        scheduled_at=NOW + 10,
        priority=7,
        payload={"x": [1, "two"]},
        max_retries=5,
        idempotency_key="k-urgent",
    )
    due.append(urgent)
    later = make(scheduled_at=NOW + 99)
    await broker.enqueue([*due, later], NOW)
    held = {job.id: (await broker.get(job.id)).to_dict() for job in due}  # type: ignore[union-attr]
    e1 = await broker.acquire_epoch("a", NOW)
    assert await broker.promote_due_count(NOW + 9, e1) == 0
    assert await broker.promote_due_count(NOW + 10, e1, limit=5) == 5
    e2 = await broker.acquire_epoch("b", NOW + 10)
    with pytest.raises(FencedError):
        await broker.promote_due_count(NOW + 10, e1, limit=5)
    assert await broker.promote_due_count(NOW + 10, e2, limit=5) == 2
    assert await broker.promote_due_count(NOW + 10, e2, limit=5) == 0
    depths = await broker.depths()
    assert depths["pending"] == 7 and depths["scheduled"] == 1
    for job in due:
        got = await broker.get(job.id)
        assert got is not None and got.status == JobStatus.PENDING and got.version == 2
        assert got.updated_at == NOW + 10
        moved = {"status": "pending", "version": 2, "updated_at": got.to_dict()["updated_at"]}
        assert got.to_dict() == {**held[job.id], **moved}  # nothing else changed
    leases = await broker.claim("n", 10, 30, NOW + 11)
    assert leases[0].job.id == urgent.id  # filed under its priority
    assert sorted(lease.job.id for lease in leases) == sorted(job.id for job in due)


async def test_claim_tick_once(broker):
    e = await broker.acquire_epoch("a", NOW)
    assert await broker.claim_tick("nightly", 60.0, e) is True
    assert await broker.claim_tick("nightly", 60.0, e) is False
    e2 = await broker.acquire_epoch("b", NOW)
    assert await broker.claim_tick("nightly", 60.0, e2) is False  # across failover
    assert await broker.claim_tick("nightly", 120.0, e2) is True


async def test_purge_finished(broker):
    epoch = await broker.acquire_epoch("a", NOW)
    a, b = make(), make()
    await broker.enqueue([a, b], NOW)
    leases = await broker.claim("n", 2, 30, NOW)
    await broker.finish([Finish(leases[0].job.id, leases[0].token, "completed")], NOW + 1)
    assert await broker.purge_finished(NOW + 1, epoch) == 0
    assert await broker.purge_finished(NOW + 2, epoch) == 1
    assert await broker.get(leases[0].job.id) is None
    assert (await broker.get(leases[1].job.id)).status == JobStatus.RUNNING


async def test_finished_due_reads_what_a_purge_drops_next_as_it_ended(broker):
    """The leader's purge with a separate Store reads these first and writes them there:
    each as the Broker holds it (result, error, final version), in the order they finished,
    at most ``limit``; reading drops nothing."""
    a, b, c = make(), make(), make()
    await broker.enqueue([a, b, c], NOW)
    leases = {lease.job.id: lease for lease in await broker.claim("n", 3, 30, NOW)}
    [done] = await broker.finish(
        [Finish(a.id, leases[a.id].token, "completed", worker_id="w", result={"x": 1})], NOW + 1
    )
    [failed] = await broker.finish([Finish(b.id, leases[b.id].token, "failed", error="e")], NOW + 2)
    assert await broker.finished_due(NOW + 1) == []
    [first] = await broker.finished_due(NOW + 1.5)
    assert first.id == a.id and first.status == JobStatus.COMPLETED
    assert first.result == {"x": 1} and first.version == done.version
    both = await broker.finished_due(NOW + 3)
    assert [j.id for j in both] == [a.id, b.id]  # c is still running
    assert both[1].error == "e" and both[1].version == failed.version
    assert [j.id for j in await broker.finished_due(NOW + 3, limit=1)] == [a.id]
    assert (await broker.get(a.id)).status == JobStatus.COMPLETED  # nothing was dropped


async def test_finished_due_stops_once_the_documents_read_reach_max_bytes(broker):
    """A page of a thousand 100 kB results was read in one move (a second of Redis held by
    one script, 1 GB with 1 MiB results): ``max_bytes`` ends the page after the job whose
    document reaches it, always at least one job."""
    jobs = [make() for _ in range(3)]
    await broker.enqueue(jobs, NOW)
    leases = await broker.claim("n", 3, 30, NOW)
    big = "x" * 10_000
    await broker.finish(
        [Finish(lease.job.id, lease.token, "completed", result={"r": big}) for lease in leases],
        NOW + 1,
    )
    assert len(await broker.finished_due(NOW + 2)) == 3
    assert len(await broker.finished_due(NOW + 2, max_bytes=1)) == 1
    two = await broker.finished_due(NOW + 2, max_bytes=15_000)  # each document is ~10 kB
    assert len(two) == 2 and all(job.result == {"r": big} for job in two)
    assert len(await broker.finished_due(NOW + 2, limit=1, max_bytes=10**9)) == 1


async def test_finished_due_reads_past_the_jobs_it_is_told_to_skip(broker):
    """The jobs whose record the Store refused stay in the Broker; the purge reads past
    them: neither returned nor counted in ``limit`` or ``max_bytes``."""
    jobs = [make() for _ in range(4)]
    await broker.enqueue(jobs, NOW)
    leases = {lease.job.id: lease for lease in await broker.claim("n", 4, 30, NOW)}
    for i, job in enumerate(jobs):
        lease = leases[job.id]
        await broker.finish([Finish(job.id, lease.token, "completed")], NOW + 1 + i)
    ids = [job.id for job in jobs]
    skip = [ids[0], ids[2]]
    assert [j.id for j in await broker.finished_due(NOW + 9, skip=skip)] == [ids[1], ids[3]]
    assert [j.id for j in await broker.finished_due(NOW + 9, limit=1, skip=skip)] == [ids[1]]
    one = await broker.finished_due(NOW + 9, max_bytes=1, skip=skip)
    assert [j.id for j in one] == [ids[1]]
    assert await broker.finished_due(NOW + 9, skip=ids) == []


async def test_purge_only_drops_the_jobs_named_still_finished_at_their_version(broker):
    """``only``: the jobs the leader wrote to the Store, each dropped only while it is
    still finished at the version written; a job retried and finished again since, a
    live job, an unknown id and a finished job not named stay as they are. Fenced like
    every purge."""
    epoch = await broker.acquire_epoch("leader", NOW)
    a, b, c, d = make(), make(), make(), make()
    await broker.enqueue([a, b, c, d], NOW)
    leases = {lease.job.id: lease for lease in await broker.claim("n", 4, 30, NOW)}
    finished = await broker.finish(
        [
            Finish(a.id, leases[a.id].token, "completed", result={"a": 1}),
            Finish(b.id, leases[b.id].token, "failed", error="e"),
            Finish(d.id, leases[d.id].token, "completed"),
        ],
        NOW + 1,
    )
    done_a, failed_b, _ = finished
    # b moved on after the leader read it: retried, and failed again at a newer version
    assert (await broker.retry(b.id, NOW + 2)).version > failed_b.version
    [again] = await broker.claim("n", 1, 30, NOW + 2)
    [failed_again] = await broker.finish([Finish(b.id, again.token, "failed")], NOW + 3)
    assert failed_again.status == JobStatus.FAILED
    running_c = await broker.get(c.id)
    written = [(a.id, done_a.version), (b.id, failed_b.version), (c.id, running_c.version)]
    written.append(("no-such-job", 1))
    stale = await broker.acquire_epoch("other", NOW + 2)
    with pytest.raises(FencedError):
        await broker.purge_finished(NOW + 10, epoch, only=written)
    assert await broker.purge_finished(NOW + 10, stale, only=written) == 1
    assert await broker.get(a.id) is None
    [tomb] = await broker.restore([a], NOW + 11, stale)
    assert isinstance(tomb, Tombstone) and tomb.version == done_a.version
    assert tomb.status == JobStatus.COMPLETED and tomb.finished_at == NOW + 1
    assert (await broker.get(b.id)).version == failed_again.version  # kept
    assert (await broker.get(c.id)).status == JobStatus.RUNNING
    assert (await broker.get(d.id)).status == JobStatus.COMPLETED  # not named: kept
    # nothing named: nothing dropped, and old tombstones are still forgotten
    assert await broker.purge_finished(NOW + 10, stale, only=[], tombstones_before=NOW + 2) == 0
    assert (await broker.get(d.id)).status == JobStatus.COMPLETED
    [back] = await broker.restore([a], NOW + 12, stale)
    assert isinstance(back, Job) and back.status == JobStatus.PENDING


async def test_enqueue_many_is_all_visible(broker):
    jobs = [make(payload={"i": i}) for i in range(250)]
    out = await broker.enqueue(jobs, NOW)
    assert [j.id for j in out] == [j.id for j in jobs]
    seen = []
    while leases := await broker.claim("n", 100, 30, NOW):
        seen += [lease.job.payload["i"] for lease in leases]
    assert seen == list(range(250))


# --------------------------------------------------------------------------- store


async def test_store_put_get_and_version_guard(store):
    job = make(payload={"k": "v"})
    await store.put_many([job])
    got = await store.get(job.id)
    assert got.to_dict() == job.to_dict()
    newer = job.copy()
    newer.status = JobStatus.COMPLETED
    newer.version = job.version + 2
    older = job.copy()
    older.status = JobStatus.RUNNING
    older.version = job.version + 1
    await store.put_many([newer])
    await store.put_many([older])
    assert (await store.get(job.id)).status == JobStatus.COMPLETED
    assert await store.get("missing") is None


async def test_store_query_filters_and_pages(store):
    jobs = []
    for i in range(25):
        j = make("email" if i % 2 else "sms", now=NOW + i, payload={"i": i})
        j.status = [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED][i % 3]
        jobs.append(j)
    await store.put_many(jobs)
    page = await store.query(JobQuery(limit=10))
    assert [j.payload["i"] for j in page.jobs] == list(range(24, 14, -1))
    assert page.next_cursor is not None
    seen = [j.payload["i"] for j in page.jobs]
    while page.next_cursor:
        page = await store.query(JobQuery(limit=10, cursor=page.next_cursor))
        seen += [j.payload["i"] for j in page.jobs]
    assert seen == list(range(24, -1, -1))
    emails = await store.query(JobQuery(type="email", limit=100))
    assert {j.payload["i"] for j in emails.jobs} == {i for i in range(25) if i % 2}
    assert emails.next_cursor is None
    two = await store.query(
        JobQuery(statuses=frozenset({JobStatus.PENDING, JobStatus.COMPLETED}), limit=100)
    )
    assert {j.payload["i"] for j in two.jobs} == {i for i in range(25) if i % 3 != 1}
    window = await store.query(JobQuery(created_after=NOW + 5, created_before=NOW + 8, limit=100))
    assert [j.payload["i"] for j in window.jobs] == [7, 6, 5]
    exact = await store.query(JobQuery(type="sms", limit=13))
    assert len(exact.jobs) == 13 and exact.next_cursor is None
    counts = await store.count_by_status()
    assert counts["pending"] == 9 and counts["running"] == 8 and counts["completed"] == 8


def owned(owner: str | None, job_type: str = "noop", now: float = NOW, **fields) -> Job:
    job = make(job_type, now=now, **fields)
    job.owner = owner
    return job


async def test_store_query_filters_by_queue(store):
    """``GET /api/v1/jobs?queue=`` is the backend's own query, paged, on every Store.

    Payloads, owners and workflow ids spell another queue (``,"queue":"render"``): only
    the job's own field counts; a name that is a prefix of another matches only itself.
    """
    jobs = []
    for i in range(30):
        queue = ["render", "email", "default"][i % 3]
        fields = {"payload": {"i": i, "queue": "render", "note": ',"queue":"render"'}}
        if queue != "default":
            fields["queue"] = queue
        job = make("sms" if i % 2 else "mail", now=NOW + i, **fields)
        job.owner = ',"queue":"render"'
        jobs.append(job)
    await store.put_many([*jobs, make(queue="rend", now=NOW + 40, payload={"i": 40})])
    page = await store.query(JobQuery(queue="render", limit=4))
    seen = [j.payload["i"] for j in page.jobs]
    while page.next_cursor:
        page = await store.query(JobQuery(queue="render", limit=4, cursor=page.next_cursor))
        seen += [j.payload["i"] for j in page.jobs]
    assert seen == [i for i in range(29, -1, -1) if i % 3 == 0]
    email_sms = await store.query(JobQuery(queue="email", type="sms", limit=100))
    assert [j.payload["i"] for j in email_sms.jobs] == [i for i in range(29, -1, -1) if i % 6 == 1]
    default = await store.query(JobQuery(queue="default", limit=100))
    assert [j.payload["i"] for j in default.jobs] == [i for i in range(29, -1, -1) if i % 3 == 2]
    assert [j.payload["i"] for j in (await store.query(JobQuery(queue="rend"))).jobs] == [40]
    assert (await store.query(JobQuery(queue="ren"))).jobs == []
    assert (await store.query(JobQuery(queue="nosuch"))).jobs == []
    assert len((await store.query(JobQuery(limit=100))).jobs) == 31


async def test_store_query_filters_by_owner(store):
    """A user's list comes from the backend's own query, not from filtering a page after it.

    The payloads spell an owner too (bob's job says ``"owner":"alice"`` inside its
    payload): only the job's own field counts.
    """
    jobs = []
    for i in range(30):
        owner = ["alice", "bob", None][i % 3]
        payload = {"i": i, "owner": "alice", "note": ',"owner":"alice"'}
        jobs.append(owned(owner, "email" if i % 2 else "sms", now=NOW + i, payload=payload))
    quote = owned('al"ice', now=NOW + 40, payload={"i": 40})
    await store.put_many([*jobs, quote])
    page = await store.query(JobQuery(owner="alice", limit=4))
    seen = [j.payload["i"] for j in page.jobs]
    while page.next_cursor:
        page = await store.query(JobQuery(owner="alice", limit=4, cursor=page.next_cursor))
        seen += [j.payload["i"] for j in page.jobs]
    assert seen == [i for i in range(29, -1, -1) if i % 3 == 0]
    bob_sms = await store.query(JobQuery(owner="bob", type="sms", limit=100))
    assert [j.payload["i"] for j in bob_sms.jobs] == [i for i in range(29, -1, -1) if i % 6 == 4]
    assert all(j.owner == "bob" for j in bob_sms.jobs)
    assert [j.payload["i"] for j in (await store.query(JobQuery(owner='al"ice'))).jobs] == [40]
    assert (await store.query(JobQuery(owner="al"))).jobs == []
    everybody = await store.query(JobQuery(limit=100))
    assert len(everybody.jobs) == 31
    assert {j.owner for j in everybody.jobs} == {"alice", "bob", None, 'al"ice'}


async def test_broker_moves_keep_the_owner(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    [stored] = await broker.enqueue([owned("alice")], NOW)
    assert stored.owner == "alice"
    [lease] = await broker.claim("n", 1, 30, NOW)
    assert lease.job.owner == "alice"
    [failed] = await broker.finish([Finish(lease.job.id, lease.token, "failed")], NOW + 1)
    assert failed.owner == "alice"
    retried = await broker.retry(lease.job.id, NOW + 2)
    assert retried.owner == "alice" and (await broker.get(lease.job.id)).owner == "alice"
    [restored] = await broker.restore([owned("bob")], NOW + 3, epoch)
    assert restored.owner == "bob"
    [none] = await broker.enqueue([owned(None)], NOW)
    assert none.owner is None and (await broker.get(none.id)).owner is None


async def test_store_status_change_moves_indexes(store):
    job = make()
    await store.put_many([job])
    done = job.copy()
    done.status = JobStatus.COMPLETED
    done.version += 1
    await store.put_many([done])
    pending = await store.query(JobQuery(statuses=frozenset({JobStatus.PENDING})))
    completed = await store.query(JobQuery(statuses=frozenset({JobStatus.COMPLETED})))
    assert pending.jobs == [] and [j.id for j in completed.jobs] == [job.id]
    counts = await store.count_by_status()
    assert counts["pending"] == 0 and counts["completed"] == 1


async def test_store_delete(store):
    job = make()
    await store.put_many([job])
    assert await store.delete(job.id) is True
    assert await store.delete(job.id) is False
    assert (await store.query(JobQuery())).jobs == []


async def test_store_nodes_and_elections(store):
    await store.put_node(NodeRecord("n2", "127.0.0.1:2", "alive", 4, NOW, NOW + 1))
    await store.put_node(NodeRecord("n1", "127.0.0.1:1", "alive", 8, NOW, NOW + 1))
    await store.put_node(NodeRecord("n1", "127.0.0.1:1", "dead", 8, NOW, NOW + 5))
    nodes = await store.list_nodes()
    assert [(n.node_id, n.state) for n in nodes] == [("n1", "dead"), ("n2", "alive")]
    assert await store.delete_node("n2") is True
    assert [n.node_id for n in await store.list_nodes()] == ["n1"]
    for i in range(3):
        await store.add_election(
            {"leader": f"n{i}", "epoch": i, "algorithm": "raft", "at": NOW + i}
        )
    records = await store.list_elections(limit=2)
    assert [r["leader"] for r in records] == ["n2", "n1"]


async def test_store_schedules(store):
    a = {"name": "nightly", "cron": "0 3 * * *", "every": None, "job": {"type": "noop"}}
    b = {"name": "beat", "cron": None, "every": 10.0, "job": {"type": "echo", "payload": {"x": 1}}}
    await store.put_schedule(a)
    await store.put_schedule(b)
    assert [s["name"] for s in await store.list_schedules()] == ["beat", "nightly"]
    await store.put_schedule({**b, "every": 20.0})
    beat = [s for s in await store.list_schedules() if s["name"] == "beat"][0]
    assert beat["every"] == 20.0 and beat["job"] == {"type": "echo", "payload": {"x": 1}}
    assert await store.delete_schedule("nightly") is True
    assert await store.delete_schedule("nightly") is False
    assert [s["name"] for s in await store.list_schedules()] == ["beat"]


async def test_claim_tick_memory_is_bounded_but_never_refires(broker):
    e = await broker.acquire_epoch("a", NOW)
    for i in range(1005):
        assert await broker.claim_tick("fast", float(i), e) is True
    # the oldest ticks were forgotten, yet none of them can fire again
    for i in (0, 3, 4, 1004):
        assert await broker.claim_tick("fast", float(i), e) is False
    assert await broker.claim_tick("fast", 1005.0, e) is True
    assert await broker.claim_tick("other", 0.0, e) is True


# ----------------------------------------------------- reconciliation, ticks, edge moves


async def test_zombie_finish_after_requeue_before_anyone_reclaims(broker):
    """The window between a requeue and the next claim: the old token is dead already."""
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make()], NOW)
    [old] = await broker.claim("n1", 1, 10, NOW)
    await broker.requeue_expired(NOW + 11, epoch, poison_limit=5)
    assert await broker.finish([Finish(old.job.id, old.token, "completed")], NOW + 12) == [None]
    assert await broker.renew([(old.job.id, old.token)], 10, NOW + 12) == [old.job.id]
    job = await broker.get(old.job.id)
    assert job.status == JobStatus.PENDING and job.result is None
    [again] = await broker.claim("n2", 1, 10, NOW + 13)
    assert again.job.id == old.job.id


async def test_a_lease_expires_only_after_its_expiry(broker):
    """A lease is held through its expiry instant (``expires_at < now`` reaps it)."""
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.enqueue([make()], NOW)
    [lease] = await broker.claim("n1", 1, 10, NOW)
    assert lease.expires_at == NOW + 10
    assert await broker.requeue_expired(NOW + 10, epoch, poison_limit=5) == []
    assert (await broker.get(lease.job.id)).status == JobStatus.RUNNING
    [expired] = await broker.requeue_expired(NOW + 10.5, epoch, poison_limit=5)
    assert expired.id == lease.job.id and expired.status == JobStatus.PENDING


async def test_cancel_leaves_a_completed_job_as_it_ended(broker):
    await broker.enqueue([make()], NOW)
    [lease] = await broker.claim("n1", 1, 10, NOW)
    [done] = await broker.finish(
        [Finish(lease.job.id, lease.token, "completed", result={"ok": 1})], NOW + 1
    )
    after = await broker.cancel(lease.job.id, NOW + 2)
    assert after.status == JobStatus.COMPLETED and after.result == {"ok": 1}
    assert after.version == done.version
    assert (await broker.get(lease.job.id)).dumps() == done.dumps()


async def test_one_lease_finished_twice_in_one_batch_counts_once(broker):
    """The second finish of a lease in the same batch is stale: one retry, not two."""
    await broker.enqueue([make(max_retries=5)], NOW)
    [lease] = await broker.claim("n1", 1, 10, NOW)
    item = Finish(lease.job.id, lease.token, "failed", error="x", retry_at=NOW + 5)
    first, second = await broker.finish([item, item], NOW + 1)
    assert second is None
    assert first.status == JobStatus.RETRYING and first.retry_count == 1
    stored = await broker.get(lease.job.id)
    assert stored.retry_count == 1 and len(stored.attempts) == 1


async def test_restore_inserts_only_what_the_broker_does_not_hold(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    running, lost = make(), make()
    await broker.enqueue([running], NOW)
    [lease] = await broker.claim("n1", 1, 30, NOW)
    # the Store's stale view of both: the running one as pending
    answers = await broker.restore([running, lost], NOW + 1, epoch)
    assert (
        answers[0].status == JobStatus.RUNNING
        and answers[0].dumps() == (await broker.get(running.id)).dumps()
    )
    assert answers[1].id == lost.id and answers[1].status == JobStatus.PENDING
    # the running job kept its lease: its holder finishes it
    [done] = await broker.finish([Finish(running.id, lease.token, "completed")], NOW + 2)
    assert done.status == JobStatus.COMPLETED
    [claimed] = await broker.claim("n1", 5, 30, NOW + 2)
    assert claimed.job.id == lost.id


async def test_restore_answers_a_purged_job_with_its_tombstone(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    job = make()
    await broker.enqueue([job], NOW)
    [lease] = await broker.claim("n1", 1, 30, NOW)
    [done] = await broker.finish([Finish(job.id, lease.token, "completed")], NOW + 1)
    assert await broker.purge_finished(NOW + 2, epoch) == 1
    [answer] = await broker.restore([job], NOW + 3, epoch)
    assert isinstance(answer, Tombstone)
    assert answer.job_id == job.id and answer.status == JobStatus.COMPLETED
    assert answer.version == done.version and answer.finished_at == NOW + 1
    assert await broker.get(job.id) is None
    assert await broker.claim("n1", 5, 30, NOW + 3) == []
    # a tombstone is kept until tombstones_before passes its finish
    await broker.purge_finished(NOW + 4, epoch, tombstones_before=NOW + 1)
    [still] = await broker.restore([job], NOW + 5, epoch)
    assert isinstance(still, Tombstone)
    await broker.purge_finished(NOW + 4, epoch, tombstones_before=NOW + 1.5)
    [back] = await broker.restore([job], NOW + 5, epoch)
    assert isinstance(back, Job) and back.status == JobStatus.PENDING


async def purged(broker, outcome: str, **fields) -> Job:
    """A job that ended ``outcome`` (completed or failed) and was purged: its tombstone stays."""
    epoch = await broker.acquire_epoch("leader", NOW)
    job = make(**fields)
    await broker.enqueue([job], NOW)
    [lease] = await broker.claim("n1", 1, 30, NOW)
    [done] = await broker.finish([Finish(job.id, lease.token, outcome, error="x")], NOW + 1)
    assert await broker.purge_finished(NOW + 2, epoch) == 1
    return done


async def test_revive_puts_back_a_purged_failed_job_once(broker):
    """The API's retry of a purged job: insert-if-absent, so a second retry racing it gets
    the job as it is (here running) instead of resetting it."""
    failed = await purged(broker, "failed", idempotency_key="k-1")
    again = failed.copy()
    again.status, again.retry_count, again.error = JobStatus.PENDING, 0, None
    revived = await broker.revive(again, NOW + 3)
    assert isinstance(revived, Job) and revived.status == JobStatus.PENDING
    [lease] = await broker.claim("n2", 5, 30, NOW + 4)
    assert lease.job.id == failed.id
    second = await broker.revive(again, NOW + 5)
    assert isinstance(second, Job) and second.status == JobStatus.RUNNING
    assert second.version == lease.job.version
    [done] = await broker.finish([Finish(failed.id, lease.token, "completed")], NOW + 6)
    assert done.status == JobStatus.COMPLETED  # the lease survived the second retry


async def test_revive_never_runs_a_purged_completed_job_again(broker):
    """A Store record that says failed while the job went on to complete (a retry whose
    snapshots never reached the Store): the tombstone refuses, nothing is inserted."""
    done = await purged(broker, "completed")
    behind = done.copy()
    behind.status = JobStatus.PENDING
    answer = await broker.revive(behind, NOW + 3)
    assert isinstance(answer, Tombstone) and answer.status == JobStatus.COMPLETED
    assert await broker.get(done.id) is None
    assert await broker.claim("n1", 5, 30, NOW + 3) == []


async def test_revive_puts_back_a_purged_cancelled_job(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    [job] = await broker.enqueue([make()], NOW)
    cancelled = await broker.cancel(job.id, NOW + 1)
    assert await broker.purge_finished(NOW + 2, epoch) == 1
    again = cancelled.copy()
    again.status, again.error = JobStatus.PENDING, None
    revived = await broker.revive(again, NOW + 3)
    assert isinstance(revived, Job) and revived.status == JobStatus.PENDING


async def test_revive_drops_a_key_another_job_took(broker):
    failed = await purged(broker, "failed", idempotency_key="k-2")
    [other] = await broker.enqueue([make(idempotency_key="k-2")], NOW + 3)
    again = failed.copy()
    again.status = JobStatus.PENDING
    revived = await broker.revive(again, NOW + 4)
    assert isinstance(revived, Job) and revived.id == failed.id
    assert revived.idempotency_key is None and other.idempotency_key == "k-2"
    assert {lease.job.id for lease in await broker.claim("n", 5, 30, NOW + 5)} == {
        failed.id,
        other.id,
    }


async def test_delete_leaves_a_tombstone(broker):
    """A record written late after DELETE ?purge=true must not bring the job back: restore
    answers with a tombstone, cancelled (one version on) for a job deleted live."""
    epoch = await broker.acquire_epoch("leader", NOW)
    live, done = make(), make()
    await broker.enqueue([live, done], NOW)
    leases = {lease.job.id: lease for lease in await broker.claim("n1", 2, 30, NOW)}
    [finished] = await broker.finish([Finish(done.id, leases[done.id].token, "completed")], NOW + 1)
    running = leases[live.id].job
    assert await broker.delete(live.id) and await broker.delete(done.id)
    tomb_live, tomb_done = await broker.restore([running, leases[done.id].job], NOW + 2, epoch)
    assert isinstance(tomb_live, Tombstone) and tomb_live.status == JobStatus.CANCELLED
    assert tomb_live.version == running.version + 1
    assert isinstance(tomb_done, Tombstone) and tomb_done.status == JobStatus.COMPLETED
    assert tomb_done.version == finished.version and tomb_done.finished_at == NOW + 1
    assert await broker.claim("n2", 5, 30, NOW + 3) == []
    [waiting] = await broker.enqueue([make()], NOW + 4)  # odd and even versions both
    assert await broker.delete(waiting.id)
    [tomb] = await broker.restore([waiting], NOW + 5, epoch)
    assert isinstance(tomb, Tombstone) and tomb.version == waiting.version + 1


async def test_restore_drops_a_key_another_job_took(broker):
    """A lost job comes back without its idempotency key when another job holds the key now
    (cosmic-ray: the Redis Broker's second pass for such jobs could be skipped unnoticed)."""
    epoch = await broker.acquire_epoch("leader", NOW)
    lost = make(idempotency_key="k-3")
    [holder] = await broker.enqueue([make(idempotency_key="k-3")], NOW)
    plain = make()
    back, also = await broker.restore([lost, plain], NOW + 1, epoch)
    assert isinstance(back, Job) and back.id == lost.id and back.idempotency_key is None
    assert back.status == JobStatus.PENDING and also.id == plain.id
    assert (await broker.get(lost.id)).idempotency_key is None
    [again] = await broker.enqueue([make(idempotency_key="k-3")], NOW + 2)
    assert again.id == holder.id
    claimed = {lease.job.id for lease in await broker.claim("n", 5, 30, NOW + 3)}
    assert claimed == {holder.id, lost.id, plain.id}


async def test_restore_is_fenced(broker):
    old = await broker.acquire_epoch("a", NOW)
    await broker.acquire_epoch("b", NOW)
    job = make()
    with pytest.raises(FencedError):
        await broker.restore([job], NOW, old)
    assert await broker.get(job.id) is None


async def test_fire_tick_claims_and_enqueues_in_one_move(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    job = make(idempotency_key="schedule:nightly:60")
    fired = await broker.fire_tick("nightly", 60.0, job, epoch, NOW)
    assert fired is not None and fired.id == job.id and fired.status == JobStatus.PENDING
    # a repeat (say its reply was lost) fires nothing more, whatever job it carries
    assert await broker.fire_tick("nightly", 60.0, make(), epoch, NOW + 1) is None
    assert await broker.claim_tick("nightly", 60.0, epoch) is False
    [lease] = await broker.claim("n1", 5, 30, NOW + 1)
    assert lease.job.id == job.id
    assert await broker.claim("n1", 5, 30, NOW + 1) == []
    newer = await broker.acquire_epoch("other", NOW)
    with pytest.raises(FencedError):
        await broker.fire_tick("nightly", 120.0, make(), epoch, NOW + 2)
    assert await broker.fire_tick("nightly", 60.0, make(), newer, NOW + 2) is None
    assert await broker.fire_tick("nightly", 120.0, make(), newer, NOW + 2) is not None
