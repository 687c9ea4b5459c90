"""``Broker.enqueue_and_claim``: an enqueue and then a claim, on every Broker.

The node makes its submissions' enqueue and its dispatcher's claim in one
call when its workers are idle. The claim must be the claim that would follow
the enqueue: the queue's order decides (an older or higher job goes first),
scopes and idempotency keys hold, and the leases carry the usual tokens. On
Redis the two are one script, one round trip.
"""

from __future__ import annotations

import pytest
import redis

from jobtrio.backends.base import ClaimScope, Finish
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(**fields) -> Job:
    return validate_submission({"type": "noop", **fields}, NOW, ids=ids)


async def test_the_new_job_is_filed_and_leased_with_a_working_token(broker):
    job = make(payload={"n": 1})
    stored, leases = await broker.enqueue_and_claim([job], NOW, "n1", 5, 30)
    assert [s.id for s in stored] == [job.id]
    assert leases is not None
    [lease] = leases
    assert lease.job.id == job.id and lease.job.status is JobStatus.RUNNING
    assert lease.job.node_id == "n1" and lease.job.started_at == NOW
    assert lease.expires_at == NOW + 30
    held = await broker.get(job.id)
    assert held.status is JobStatus.RUNNING
    [stale] = await broker.finish([Finish(job.id, "not-the-token", "completed")], NOW + 1)
    assert stale is None
    [done] = await broker.finish([Finish(job.id, lease.token, "completed")], NOW + 2)
    assert done.status is JobStatus.COMPLETED


async def test_an_older_job_of_the_same_priority_is_claimed_first(broker):
    older = make(payload={"n": 0})
    await broker.enqueue([older], NOW)
    new = make(payload={"n": 1})
    stored, leases = await broker.enqueue_and_claim([new], NOW, "n1", 1, 30)
    assert [s.id for s in stored] == [new.id]
    assert leases is not None and [lease.job.id for lease in leases] == [older.id]
    assert (await broker.get(new.id)).status is JobStatus.PENDING
    [later] = await broker.claim("n2", 5, 30, NOW)
    assert later.job.id == new.id


async def test_a_higher_priority_new_job_goes_before_an_older_lower_one(broker):
    older = make(priority=1)
    await broker.enqueue([older], NOW)
    new = make(priority=10)
    _, leases = await broker.enqueue_and_claim([new], NOW, "n1", 1, 30)
    assert leases is not None and [lease.job.id for lease in leases] == [new.id]
    assert (await broker.get(older.id)).status is JobStatus.PENDING


async def test_the_claim_keeps_its_scope(broker):
    new = make(queue="render")
    scope = ClaimScope(types=None, queues=("email",), limits=())
    stored, leases = await broker.enqueue_and_claim([new], NOW, "n1", 5, 30, scope)
    assert [s.id for s in stored] == [new.id] and leases == []
    assert (await broker.get(new.id)).status is JobStatus.PENDING
    other_type = ClaimScope(types=frozenset({"email"}), queues=None, limits=())
    _, leases = await broker.enqueue_and_claim([make()], NOW, "n1", 5, 30, other_type)
    assert leases == []
    assert (await broker.depths())["pending"] == 2


async def test_a_held_idempotency_key_files_nothing_new(broker):
    first = make(idempotency_key="k-1")
    await broker.enqueue([first], NOW)
    again = make(idempotency_key="k-1")
    stored, leases = await broker.enqueue_and_claim([again], NOW, "n1", 5, 30)
    assert [s.id for s in stored] == [first.id]
    assert leases is not None and [lease.job.id for lease in leases] == [first.id]
    assert await broker.get(again.id) is None


async def test_no_claim_asked_and_jobs_not_due_lease_nothing(broker):
    [waiting], leases = await broker.enqueue_and_claim([make()], NOW, "n1", 0, 30)
    assert leases == [] and (await broker.get(waiting.id)).status is JobStatus.PENDING
    later = make(scheduled_at=NOW + 60)
    stored, leases = await broker.enqueue_and_claim([later], NOW, "n1", 5, 30)
    assert stored[0].status is JobStatus.SCHEDULED
    # the claim took what was pending, and not the job due in a minute
    assert leases is not None and [lease.job.id for lease in leases] == [waiting.id]
    assert (await broker.get(later.id)).status is JobStatus.SCHEDULED


async def test_a_batch_is_filed_whole_and_claimed_in_priority_order(broker):
    jobs = [make(priority=p, payload={"n": i}) for i, p in enumerate([1, 10, 5, 10])]
    stored, leases = await broker.enqueue_and_claim(jobs, NOW, "n1", 3, 30)
    assert [s.id for s in stored] == [j.id for j in jobs]
    assert leases is not None
    assert [lease.job.payload["n"] for lease in leases] == [1, 3, 2]
    assert len({lease.token for lease in leases}) == 3


async def test_on_redis_the_two_are_one_script_call(request, broker):
    if broker.name != "redis":
        pytest.skip("a Redis Broker's round trips")
    client = redis.Redis.from_url(request.getfixturevalue("redis_server").url)
    try:

        def script_calls() -> int:
            stats = client.info("commandstats")
            return sum(
                int(stats[f"cmdstat_{name}"]["calls"])
                for name in ("eval", "evalsha", "fcall")
                if f"cmdstat_{name}" in stats
            )

        await broker.enqueue_and_claim([make()], NOW, "n1", 5, 30)  # loads the script
        before = script_calls()
        _, leases = await broker.enqueue_and_claim([make()], NOW, "n1", 5, 30)
        assert script_calls() - before == 1
        assert leases is not None and len(leases) == 1
    finally:
        client.close()


def test_redis_claims_make_their_tokens_as_new_token_does():
    # one read of randomness for a claim's n tokens: each still 12 random bytes in hex,
    # the length and alphabet of new_token's, and no two alike
    from jobtrio.backends.redis.broker import SEP, fresh_tokens
    from jobtrio.jobs import new_token

    tokens = fresh_tokens(50).split(SEP)
    assert len(tokens) == 50 and len(set(tokens)) == 50
    assert {len(t) for t in tokens} == {len(new_token())}
    assert all(set(t) <= set("0123456789abcdef") for t in tokens)
    assert fresh_tokens(0) == ""


async def test_the_status_counts_follow_the_enqueue_and_the_claim(broker):
    # depths() reads the counts each move keeps (on Redis a hash the script updates): the
    # claim's part of the move counts its leases as running, the new jobs left as pending
    older = make(payload={"n": 0})
    await broker.enqueue([older], NOW)
    new = [make(payload={"n": n}) for n in (1, 2)]
    _, leases = await broker.enqueue_and_claim(new, NOW, "n1", 2, 30)
    assert leases is not None and len(leases) == 2
    depths = await broker.depths()
    assert (depths["pending"], depths["running"]) == (1, 2), depths
