"""The claim's memo (``MEMO`` in broker_common.lua): a finish may take its job as the
claim left it, and must then end it exactly as a finish that parsed ``m`` would.

Each scenario runs twice on one redis-server: once with the node under test calling
the claim-and-finish library (the memo), once with it on EVALSHA (a script's memo is
new every call: every finish parses), each on a prefix of its own, with the same job
ids and clock; the jobs' documents must come out the same. Between a claim and its
finish, another node on EVALSHA (another library, whose claims the memo never sees)
and the operator move the jobs: the memo's entries are then stale by construction.
A second test bounds the Lua memory the memo keeps, which Redis's ``maxmemory``
does not count.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from jobtrio.backends.base import ClaimScope, Finish
from jobtrio.backends.redis import RedisBroker
from jobtrio.jobs import Job
from tests.servers import RedisServer

NOW = 1_700_000_000.0


def prefix() -> str:
    return "m" + uuid.uuid4().hex[:8]


async def evalsha_broker(server: RedisServer, p: str) -> RedisBroker:
    broker = await RedisBroker.open(server.url, prefix=p, records=True)
    broker.connection.functions = False  # EVALSHA: a script's memo is new every call
    return broker


async def scenario(node: RedisBroker, other: RedisBroker) -> dict[str, Any]:
    """Every way a lease the node's claim remembered can end other than as it left it;
    returns the jobs' documents at the end, by id."""
    jobs = [
        Job(id="expires", type="ty", queue="q1", created_at=NOW),
        Job(id="released", type="ty", created_at=NOW),
        Job(id="retried", type="ty", queue="q1", created_at=NOW),
        Job(id="cancelled", type="ty", created_at=NOW),
    ]
    await node.enqueue(jobs, NOW)
    [short] = await node.claim("node", 1, 1.0, NOW)  # "expires": a one-second lease
    leases = {le.job.id: le for le in await node.claim("node", 3, 1000.0, NOW)}
    assert short.job.id == "expires" and set(leases) == {"released", "retried", "cancelled"}

    # expires: reaped, then leased by the other node, which changes m (the memo's entry
    # is stale); the node's old token is refused, the other's lease finished by the node
    [reaped] = await other.requeue_expired(NOW + 10, 0, 5)
    assert reaped.id == "expires"
    [again] = await other.claim("other", 1, 1000.0, NOW + 11, ClaimScope(queues=("q1",)))
    assert again.job.id == "expires"
    stale, done = await node.finish(
        [
            Finish("expires", short.token, "completed", "w", result="old"),
            Finish("expires", again.token, "completed", "w", result="new"),
        ],
        NOW + 12,
    )
    assert stale is None and done is not None and done.result == "new"

    # released: back in its pending set, leased again by the node, then completed
    [back] = await node.finish([Finish("released", leases["released"].token, "released")], NOW)
    assert back is not None and back.status == "pending"
    [second] = await node.claim("node", 1, 1000.0, NOW + 1, ClaimScope(queues=("default",)))
    assert second.job.id == "released"
    await node.finish([Finish("released", second.token, "completed", "w", result=2)], NOW + 2)

    # retried: failed with a retry, leased again by the node as a due job (the claim
    # loads it with its type and queue), released: it must wait in q1's set of "ty"
    await node.finish(
        [Finish("retried", leases["retried"].token, "failed", "w", "", "boom", NOW + 3)], NOW + 2
    )
    [due] = await node.claim("node", 1, 1000.0, NOW + 4)
    assert due.job.id == "retried"
    await node.finish([Finish("retried", due.token, "released")], NOW + 5)
    scope = ClaimScope(types=frozenset({"ty"}), queues=("q1",))
    [third] = await other.claim("other", 1, 1000.0, NOW + 6, scope)
    assert third.job.id == "retried"
    await node.finish([Finish("retried", third.token, "completed", "w", result=3)], NOW + 7)

    # cancelled: cancelled while leased, sent again under its id, leased by the other node
    # with the very clock the node's claim had; the node finishes the other's lease
    await other.cancel("cancelled", NOW + 1)
    await other.enqueue([Job(id="cancelled", type="ty", created_at=NOW)], NOW)
    [fourth] = await other.claim("node", 1, 1000.0, NOW)
    assert fourth.job.id == "cancelled"
    [old] = await node.finish([Finish("cancelled", leases["cancelled"].token, "completed")], NOW)
    assert old is None
    await node.finish([Finish("cancelled", fourth.token, "completed", "w", result=4)], NOW + 8)

    out = {}
    for job in jobs:
        stored = await node.get(job.id)
        assert stored is not None and stored.status == "completed", stored
        out[job.id] = stored.to_dict()
    assert await node.claim("node", 10, 1000.0, NOW + 100) == []
    return out


async def test_a_remembered_lease_moved_by_others_ends_as_a_parsed_one(
    redis_server: RedisServer,
) -> None:
    ended = []
    for memo in (True, False):
        p = prefix()
        node = await RedisBroker.open(redis_server.url, prefix=p, records=True)
        if not memo:
            node.connection.functions = False
        other = await evalsha_broker(redis_server, p)
        try:
            ended.append(await scenario(node, other))
        finally:
            await node.close()
            await other.close()
            redis_server.flush_functions()
    assert ended[0] == ended[1]


async def test_a_finish_after_the_libraries_were_flushed_parses_the_job(
    redis_server: RedisServer,
) -> None:
    """FUNCTION FLUSH (or a restart, a failover) between a claim and its finish: the
    finish's library is loaded anew, with an empty memo, and ends the job as stored."""
    raw = redis.Redis.from_url(redis_server.url)
    node = await RedisBroker.open(redis_server.url, prefix=prefix(), records=True)
    try:
        await node.enqueue([Job(id="a", type="t", created_at=NOW)], NOW)
        [lease] = await node.claim("n", 1, 100.0, NOW)
        raw.function_flush()
        [done] = await node.finish([Finish("a", lease.token, "completed", "w", result=1)], NOW)
        stored = await node.get("a")
        assert done is not None and stored is not None
        assert done.to_dict() == stored.to_dict() and stored.result == 1
        assert stored.worker_id == "w" and len(stored.attempts) == 1
    finally:
        await node.close()
        raw.close()
        redis_server.flush_functions()


#: A library in the functions' Lua VM (all libraries share one) that collects its garbage
#: and says how much is left, so a test reads what the memo keeps, not when Lua's
#: incremental collector last ran (used_memory_vm_functions read 14.8 MB once for what
#: was under 12 MB live).
_COLLECT = """#!lua name=jobtrio_test_gc
redis.register_function('jobtrio_test_gc', function()
  collectgarbage('collect')
  return math.floor(collectgarbage('count') * 1024)
end)"""


def lua_bytes(raw: redis.Redis) -> int:
    """Bytes the functions' Lua VM holds live, after a full collection."""
    raw.function_load(_COLLECT, replace=True)
    return int(raw.fcall("jobtrio_test_gc", 0))


@pytest.mark.parametrize(
    ("big", "count"),
    [(400_000, 100), (50_000, 200)],
    ids=["over-the-size-of-one", "under-it-over-the-total"],
)
async def test_the_memo_keeps_a_bounded_share_of_the_leased_jobs_text(
    redis_server: RedisServer, big: int, count: int
) -> None:
    """Redis's Lua heap is outside ``maxmemory``: what the memo keeps from one call to
    the next must stay small whatever the jobs hold. Jobs of ``big`` bytes of m each
    (their dependency results, which a job may hold up to MAX_RESULT_BYTES of each),
    leased and held: unbounded, the memo kept twice their m (the values and m itself),
    80 MB for 100 of 400 KB and 20 MB for 200 of 50 KB, where a parse keeps nothing past
    the call; bounded (no m over 64 KB, at most 4 MB of m), under 12 MB."""
    raw = redis.Redis.from_url(redis_server.url)
    p = prefix()
    node = await RedisBroker.open(redis_server.url, prefix=p, records=False)
    try:
        for i in range(0, count, 10):
            jobs = [
                # distinct texts: Lua interns its strings, equal ones would be kept once
                Job(id=f"j{k}", type="t", dependency_results={"p": f"{k:08d}" * (big // 8)})
                for k in range(i, i + 10)
            ]
            await node.enqueue(jobs, NOW)
        await node.claim("n", 1, 100.0, NOW)  # the library loaded, its first garbage made
        before = lua_bytes(raw)
        leased = 1
        while batch := await node.claim("n", 10, 100.0, NOW):
            leased += len(batch)
        assert leased == count
        kept = lua_bytes(raw) - before
        assert kept < 12_000_000, f"{kept / 1e6:.1f} MB of Lua memory kept for {count} leases"
    finally:
        await node.close()
        for key in raw.scan_iter(match=f"{{{p}}}*"):
            raw.delete(key)
        raw.close()
        redis_server.flush_functions()
