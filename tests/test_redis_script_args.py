"""The values the node packs into the Redis scripts' arguments (an enqueue's header, a
finish's items: MessagePack arrays read by ``cmsgpack.unpack_limit``) come out exactly
as sent, whatever their text; and an argument the scripts cannot read writes nothing.

The reference is the MemoryBroker: the same jobs and moves must give the same
documents.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from jobtrio.backends.base import Broker, ClaimScope, Finish
from jobtrio.backends.memory import MemoryBroker
from jobtrio.backends.redis import RedisBroker, codec
from jobtrio.jobs import Job
from tests.redis_backends import records_broker

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


redis_broker = pytest.fixture(records_broker, name="redis_broker")


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


@pytest.mark.parametrize("field", ["queue", "type"])
async def test_a_batch_with_a_job_of_no_text_where_text_goes_writes_nothing(
    redis_broker: RedisBroker, field: str
) -> None:
    """A Job of the wrong shape (a queue or a type that is not a str: only a Python caller
    can make one) is refused before anything is stored: a batch is all or nothing. Joined
    by 0x1f, such a value raised TypeError on the node; packed, it went to the script as
    nil, which failed at that job's write, after the jobs before it in the batch were
    written but not filed: a job hash no claim would ever find."""
    good = Job(id="good", type="t", created_at=NOW)
    bad = Job(id="bad", type="t", created_at=NOW)
    setattr(bad, field, None)
    with pytest.raises((TypeError, ValueError, redis.ResponseError)):
        await redis_broker.enqueue([good, bad], NOW)
    assert await redis_broker.get("good") is None
    assert await redis_broker.get("bad") is None
    assert sum((await redis_broker.depths()).values()) == 0


@pytest.mark.parametrize(
    "item",
    [
        ("{id}", "{token}", "completed", None, "null", "null", ""),  # a nil where text goes
        ("{id}", "{token}", "failed", "", "null", '"e"'),  # a value short (retry_at)
        ("{id}", "{token}", "failed", "", "null", '"e"', 0.1 + 0.2),  # a number: 0.3 in m
    ],
    ids=["nil", "short", "number"],
)
async def test_a_finish_item_the_script_cannot_read_is_refused_before_any_write(
    redis_broker: RedisBroker, item: tuple[Any, ...]
) -> None:
    """Only the node writes a finish's items, 7 texts each; one that is not (a bug, a node
    of another version calling this library) must be refused whole, never half applied:
    the first item's job written as completed but left in the leases and out of the
    finished index, and its counts not moved."""
    await redis_broker.enqueue([Job(id="a", type="t"), Job(id="b", type="t")], NOW)
    leases = {le.job.id: le for le in await redis_broker.claim("n", 2, 100.0, NOW)}
    good = ("a", leases["a"].token, "completed", "", "null", "null", "")
    bad = tuple(
        v.format(id="b", token=leases["b"].token) if isinstance(v, str) else v for v in item
    )
    args = [codec.num(NOW), codec.pack_values(good), codec.pack_values(bad)]
    with pytest.raises(redis.ResponseError):
        await redis_broker._call(redis_broker._finish, args)
    stored = await redis_broker.get("a")
    assert stored is not None and stored.status == "running"
    assert (await redis_broker.depths())["running"] == 2
    done = await redis_broker.finish(
        [Finish(i, le.token, "completed") for i, le in leases.items()], NOW + 1
    )
    assert [d.status if d else None for d in done] == ["completed", "completed"]
    assert (await redis_broker.depths())["completed"] == 2
