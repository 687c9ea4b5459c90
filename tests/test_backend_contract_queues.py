"""Named queues, pause and rate limits: one contract for every Broker (memory, SQLite, Redis).

A claim takes only from the queues its scope names and only the types it can
run; a paused queue gives nothing; a rate-limited queue gives at most N jobs
per window of the Broker's clock, across every node that claims.
"""

from __future__ import annotations

import pytest

from jobtrio.backends.base import ClaimScope, FencedError, Finish, RateLimit
from jobtrio.jobs import DEFAULT_QUEUE, IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(job_type: str = "noop", **fields) -> Job:
    return validate_submission({"type": job_type, **fields}, NOW, ids=ids)


def scope(
    *queues: str, types: set[str] | None = None, limits: dict[str, int] | None = None
) -> ClaimScope:
    return ClaimScope(
        types=None if types is None else frozenset(types),
        queues=queues if queues else None,
        limits=tuple((limits or {}).items()),
    )


async def claim_ns(broker, n: int, sc: ClaimScope | None = None, at: float = NOW + 1) -> list:
    return [lease.job.payload["n"] for lease in await broker.claim("n1", n, 30, at, sc)]


async def test_a_job_keeps_its_queue_and_defaults_to_default(broker):
    [a, b] = await broker.enqueue([make(queue="render"), make()], NOW)
    assert a.queue == "render" and b.queue == DEFAULT_QUEUE
    assert (await broker.get(a.id)).queue == "render"
    leases = await broker.claim("n1", 5, 30, NOW + 1)
    assert sorted(lease.job.queue for lease in leases) == ["default", "render"]


async def test_each_queue_has_its_own_priority_order_and_scope_order_is_strict(broker):
    jobs = [
        make(queue="email", priority=10, payload={"n": 0}),
        make(queue="render", priority=1, payload={"n": 1}),
        make(queue="render", priority=9, payload={"n": 2}),
        make(queue="email", priority=1, payload={"n": 3}),
    ]
    await broker.enqueue(jobs, NOW)
    # render first, whole, in its own priority order; then email
    assert await claim_ns(broker, 3, scope("render", "email")) == [2, 1, 0]
    assert await claim_ns(broker, 3, scope("render", "email")) == [3]


async def test_without_queues_every_queue_merges_into_one_priority_order(broker):
    jobs = [
        make(queue="a", priority=1, payload={"n": 0}),
        make(queue="b", priority=10, payload={"n": 1}),
        make(queue="a", priority=10, payload={"n": 2}),
        make(queue="c", priority=5, payload={"n": 3}),
    ]
    await broker.enqueue(jobs, NOW)
    assert await claim_ns(broker, 10) == [1, 2, 3, 0]


async def test_a_merged_claim_keeps_one_order_when_one_queue_leads_it(broker):
    # Every queue merged, the lowest entries mostly in one queue: a claim reads each of
    # the four sets a share at a time (Redis), so the leading queue's share runs out
    # mid-claim and is read further; batches of 10, 7 and the rest, with and without a
    # cap on the leading queue, give exactly the one priority order of all the jobs.
    spec = [("a", 10)] * 9 + [("b", 10), ("c", 1), ("d", 5)] + [("a", 5)] * 6
    spec += [("b", 1), ("c", 5), ("d", 10), ("d", 10)] + [("a", 1)] * 5
    jobs = [make(queue=q, priority=p, payload={"n": i}) for i, (q, p) in enumerate(spec)]
    await broker.enqueue(jobs, NOW)
    order = [i for i, _ in sorted(enumerate(spec), key=lambda e: (-e[1][1], e[0]))]
    assert await claim_ns(broker, 10) == order[:10]
    assert await claim_ns(broker, 7) == order[10:17]
    # a cap of 3 on the leading queue: its next three, then the others' in order
    capped = await claim_ns(broker, 8, scope(limits={"a": 3}))
    rest = order[17:]
    firsts = [i for i in rest if spec[i][0] == "a"][:3]
    others = [i for i in rest if spec[i][0] != "a"]
    assert capped == sorted(firsts + others[:5], key=rest.index)
    left = [i for i in rest if i not in capped]
    assert await claim_ns(broker, 100) == left
    assert await claim_ns(broker, 100) == []
    assert {q.name: q.pending for q in await broker.queues()} == {}


async def test_a_cap_bounds_a_queue_across_its_types_in_a_merged_claim(broker):
    # render's jobs of two types lead the order; a cap of 3 on render holds for both
    # types together, and the claim fills from email in order
    spec = [("render", "a", 10), ("render", "b", 10), ("render", "a", 10), ("render", "b", 9)]
    spec += [("render", "a", 9), ("email", "a", 1), ("email", "b", 1), ("email", "a", 1)]
    jobs = [make(t, queue=q, priority=p, payload={"n": i}) for i, (q, t, p) in enumerate(spec)]
    await broker.enqueue(jobs, NOW)
    assert await claim_ns(broker, 5, scope(limits={"render": 3})) == [0, 1, 2, 5, 6]
    assert await claim_ns(broker, 5, scope(limits={"render": 1})) == [3, 7]
    assert await claim_ns(broker, 5) == [4]


async def test_a_queue_outside_the_scope_is_never_claimed(broker):
    await broker.enqueue([make(queue="render", payload={"n": 0})], NOW)
    assert await claim_ns(broker, 5, scope("email")) == []
    assert await claim_ns(broker, 5, ClaimScope(queues=())) == []
    assert await claim_ns(broker, 5, scope("render")) == [0]


async def test_a_claim_takes_only_types_it_can_run_and_the_rest_stay_pending(broker):
    jobs = [
        make("render", priority=10, payload={"n": 0}),
        make("email", priority=1, payload={"n": 1}),
        make("render", priority=1, payload={"n": 2}),
    ]
    await broker.enqueue(jobs, NOW)
    assert await claim_ns(broker, 10, scope(types={"email", "other"})) == [1]
    assert await claim_ns(broker, 10, scope(types={"email"})) == []
    held = await broker.get(jobs[0].id)
    assert held.status == JobStatus.PENDING
    [state] = await broker.queues()
    assert state.name == DEFAULT_QUEUE and state.pending == {"render": 2}
    assert await claim_ns(broker, 10, scope(types={"render"})) == [0, 2]


async def test_types_and_queues_combine(broker):
    jobs = [
        make("render", queue="gpu", payload={"n": 0}),
        make("email", queue="gpu", payload={"n": 1}),
        make("render", queue="cpu", payload={"n": 2}),
    ]
    await broker.enqueue(jobs, NOW)
    assert await claim_ns(broker, 10, scope("gpu", types={"render"})) == [0]
    assert sorted(await claim_ns(broker, 10, scope("gpu", "cpu", types={"render"}))) == [2]


async def test_a_node_cap_per_queue_bounds_one_claim(broker):
    jobs = [make(queue="render", payload={"n": i}) for i in range(4)]
    jobs += [make(queue="email", payload={"n": 10 + i}) for i in range(4)]
    await broker.enqueue(jobs, NOW)
    both = scope("render", "email", limits={"render": 2})
    assert await claim_ns(broker, 5, both) == [0, 1, 10, 11, 12]
    # a cap of 0 skips the queue, the rest of the batch comes from the next
    assert await claim_ns(broker, 5, scope("render", "email", limits={"render": 0})) == [13]
    # every queue merged, with a cap: the capped queue gives at most its cap
    assert await claim_ns(broker, 5, scope(limits={"render": 1})) == [2]
    assert await claim_ns(broker, 5, scope(types={"noop"})) == [3]


async def test_released_cancelled_and_retried_jobs_keep_their_queue(broker):
    [a, b] = await broker.enqueue(
        [make(queue="render", payload={"n": 0}), make(queue="render", payload={"n": 1})], NOW
    )
    [lease] = await broker.claim("n1", 1, 30, NOW + 1, scope("render"))
    [back] = await broker.finish([Finish(lease.job.id, lease.token, "released")], NOW + 2)
    assert back.status == JobStatus.PENDING and back.queue == "render"
    await broker.cancel(b.id, NOW + 2)
    assert await claim_ns(broker, 5, scope("email")) == []
    assert await claim_ns(broker, 5, scope("render")) == [0]
    await broker.retry(b.id, NOW + 3)
    assert await claim_ns(broker, 5, scope("default")) == []
    assert await claim_ns(broker, 5, scope("render")) == [1]


async def test_a_paused_queue_gives_nothing_until_resumed(broker):
    await broker.enqueue(
        [make(queue="render", payload={"n": 0}), make(queue="email", payload={"n": 1})], NOW
    )
    state = await broker.set_queue("render", paused=True)
    assert state.paused and state.name == "render"
    assert (await broker.set_queue("render", paused=True)).paused  # absolute, not a toggle
    assert await claim_ns(broker, 5) == [1]
    assert await claim_ns(broker, 5, scope("render")) == []
    listed = {q.name: q for q in await broker.queues()}
    assert listed["render"].paused and listed["render"].pending == {"noop": 1}
    assert not (await broker.set_queue("render", paused=False)).paused
    assert await claim_ns(broker, 5) == [0]
    # a queue with no jobs and no settings left is not listed
    assert [q.name for q in await broker.queues()] == []


async def test_a_rate_limit_allows_n_jobs_per_window_across_nodes(broker):
    await broker.enqueue([make(queue="api", payload={"n": i}) for i in range(7)], NOW)
    await broker.enqueue([make(queue="free", payload={"n": 100 + i}) for i in range(2)], NOW)
    state = await broker.set_queue("api", rate_limit=RateLimit(2, 10.0))
    assert state.rate_limit == RateLimit(2, 10.0)
    start = (NOW // 10 + 1) * 10  # the start of a window
    assert await claim_ns(broker, 5, scope("api"), start) == [0, 1]
    # another node, same window: the budget is the queue's, not the node's
    leases = await broker.claim("n2", 5, 30, start + 5, scope("api", "free"))
    assert [lease.job.payload["n"] for lease in leases] == [100, 101]
    assert await claim_ns(broker, 5, None, start + 9.9) == []
    assert await claim_ns(broker, 1, scope("api"), start + 10) == [2]
    assert await claim_ns(broker, 5, scope("api"), start + 10) == [3]
    assert await claim_ns(broker, 5, scope("api"), start + 15) == []
    listed = {q.name: q for q in await broker.queues()}
    assert listed["api"].rate_limit == RateLimit(2, 10.0) and listed["api"].depth == 3
    # a new limit starts a fresh window; clearing it lifts it
    await broker.set_queue("api", rate_limit=RateLimit(1, 10.0))
    assert await claim_ns(broker, 5, scope("api"), start + 16) == [4]
    assert (await broker.set_queue("api", clear_rate_limit=True)).rate_limit is None
    assert await claim_ns(broker, 5, scope("api"), start + 17) == [5, 6]


async def test_pause_and_limit_moves_with_an_epoch_are_fenced(broker):
    old = await broker.acquire_epoch("a", NOW)
    new = await broker.acquire_epoch("b", NOW)
    with pytest.raises(FencedError):
        await broker.set_queue("render", paused=True, epoch=old)
    assert [q.name for q in await broker.queues()] == []
    assert (await broker.set_queue("render", paused=True, epoch=new)).paused
    assert (await broker.set_queue("render", paused=False)).paused is False  # an operator's


async def test_queues_list_pending_by_type(broker):
    await broker.enqueue(
        [make("a", queue="q1"), make("a", queue="q1"), make("b", queue="q1"), make("a")], NOW
    )
    listed = {q.name: q.pending for q in await broker.queues()}
    assert listed == {"q1": {"a": 2, "b": 1}, "default": {"a": 1}}
    counts = await broker.pending_by_priority()
    assert counts[5] == 4


async def test_a_job_promoted_by_count_is_claimed_from_its_own_queue(broker):
    """promote_due_count (the leader's move when the Broker keeps the records) files a
    due job in its own queue's pending set, the default queue's too."""
    epoch = await broker.acquire_epoch("n1", NOW)
    await broker.enqueue(
        [
            make(scheduled_at=NOW + 5, payload={"n": 0}),
            make(queue="render", scheduled_at=NOW + 5, payload={"n": 1}),
        ],
        NOW,
    )
    assert await broker.promote_due_count(NOW + 10, epoch) == 2
    assert await claim_ns(broker, 5, scope("default"), at=NOW + 10) == [0]
    assert await claim_ns(broker, 5, scope("render"), at=NOW + 10) == [1]


async def test_an_id_enqueued_again_into_another_queue_leaves_its_old_queue(broker):
    [first] = await broker.enqueue([make(payload={"n": 0})], NOW)
    again = make(queue="render", payload={"n": 1})
    again.id = first.id
    await broker.enqueue([again], NOW)
    assert await claim_ns(broker, 5, scope("default")) == []
    assert await claim_ns(broker, 5, scope("render")) == [1]
    assert (await broker.get(first.id)).queue == "render"


async def test_an_id_repeated_in_one_batch_is_filed_only_as_its_last_copy(broker):
    """The later copy replaces the earlier one within the batch: nothing of the earlier
    copy's filing (delayed, finished) outlives it, so neither a promotion nor a purge
    touches the job the batch left pending."""
    epoch = await broker.acquire_epoch("n1", NOW)
    scheduled = make(scheduled_at=NOW + 5, payload={"n": 0})
    ended = make(payload={"n": 1})
    ended.status = JobStatus.COMPLETED
    batch = [scheduled, ended]
    for n, earlier in enumerate(list(batch)):
        later = make(payload={"n": 10 + n})
        later.id = earlier.id
        batch.append(later)
    await broker.enqueue(batch, NOW)
    assert sorted(await claim_ns(broker, 5)) == [10, 11]
    assert await broker.promote_due(NOW + 10, epoch) == []
    assert await broker.purge_finished(NOW + 10_000, epoch) == 0
    for job in (scheduled, ended):
        assert (await broker.get(job.id)).status == JobStatus.RUNNING
