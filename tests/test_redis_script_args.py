"""The values the node packs into the Redis scripts' arguments (an enqueue's header, a
finish's items: MessagePack arrays read by ``cmsgpack.unpack_limit``) come out exactly
as sent, whatever their text.

The reference is the MemoryBroker: the same jobs and moves must give the same
documents.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from jobtrio.backends.base import Broker, ClaimScope, Finish
from jobtrio.backends.memory import MemoryBroker
from jobtrio.backends.redis import RedisBroker
from jobtrio.jobs import Job
from tests.servers import RedisServer

NOW = 1_700_000_000.0

#: Texts around MessagePack's string sizes (fixstr < 32 bytes, str8 < 256, str16 < 65,536,
#: str32), of one- to four-byte UTF-8 characters, empty, and with the byte 0x1f (allowed
#: in a type) and a NUL.
TEXTS = [
    "",
    "a" * 31,
    "b" * 32,
    "é" * 128,
    "c" * 256,
    "漢" * 21_845,
    "d" * 65_536,
    "x\x1fy",
    "nul\x00in",
    "😀 🎉",
]
#: Times whose shortest text is long, or an integer, or tiny.
TIMES = [NOW, 0.1 + 0.2, 1e-7, float(2**33 + 1), 1_700_000_000.123456789, 0.0]


@pytest.fixture
async def redis_broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    p = "a" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(redis_server.url, prefix=p, records=True)
    try:
        yield broker
    finally:
        await broker.close()
        raw = redis.Redis.from_url(redis_server.url)
        for key in raw.scan_iter(match=f"{{{p}}}*"):
            raw.delete(key)
        raw.close()
        redis_server.flush_functions()


def jobs() -> list[Job]:
    out = []
    for i, text in enumerate(TEXTS):
        out.append(
            Job(
                id=f"id{i}" + text.replace("\x1f", "_"),  # an id never holds 0x1f
                type=text,
                queue=text.replace("\x1f", "_") or "q",
                created_at=TIMES[i % len(TIMES)],
                payload={"t": text},
                idempotency_key=(text.replace("\x1f", "_") + str(i)) if i % 2 else None,
                scheduled_at=None,
            )
        )
    return out


async def run(broker: Broker) -> list[str]:
    """Each job enqueued, claimed (one claim by its type and queue, via enqueue_and_claim
    for half of them) and finished with texts of every size."""
    out = []
    for i, job in enumerate(jobs()):
        # a claim names no type holding 0x1f (the codec refuses it): any type then
        types = None if "\x1f" in job.type else frozenset({job.type})
        scope = ClaimScope(types=types, queues=(job.queue,))
        if i % 2:
            await broker.enqueue([job], NOW)
            leases = await broker.claim("node", 1, 100.0, NOW, scope)
        else:
            _, got = await broker.enqueue_and_claim([job], NOW, "node", 1, 100.0, scope)
            assert got is not None
            leases = got
        [lease] = leases
        assert lease.job.id == job.id and lease.job.type == job.type
        assert lease.job.created_at == job.created_at
        text = TEXTS[-1 - i]
        outcome = ("completed", "failed", "timeout")[i % 3]
        retry = TIMES[i % len(TIMES)] + NOW if outcome == "timeout" else None
        [done] = await broker.finish(
            [Finish(job.id, lease.token, outcome, text, {"r": text}, text, retry)], NOW + 1
        )
        assert done is not None
        stored = await broker.get(job.id)
        assert stored is not None and stored.dumps() == done.dumps()
        out.append(stored.dumps())  # every time as the exact float
    return out


async def test_every_text_and_time_comes_out_as_the_reference_broker_writes_it(
    redis_broker: RedisBroker,
) -> None:
    assert await run(redis_broker) == await run(MemoryBroker())
