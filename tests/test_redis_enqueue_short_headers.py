"""A job of an enqueue whose header values other than its id are the job's before it
sends 0x1f and its id as its header (``codec.enqueue_args_many``), and '' for its m when
that is the job's before; the enqueue scripts take the rest from the last full header
and the last m (enqueue_one.lua). The stored jobs, their
indexes and the claim order must be what full headers gave: the MemoryBroker's.
"""

from __future__ import annotations

import pytest

from jobtrio.backends.base import Broker, ClaimScope
from jobtrio.backends.memory import MemoryBroker
from jobtrio.backends.redis import RedisBroker, codec
from jobtrio.jobs import Job, JobStatus
from tests.redis_backends import records_broker

NOW = 1_700_000_000.0
CREATED = 1_699_999_999.5


redis_broker = pytest.fixture(records_broker, name="redis_broker")


def batch() -> list[Job]:
    """Runs of jobs sharing every header value but their id, and jobs between them that
    differ in each header value in turn: queue, type, priority, scheduled_at, status,
    idempotency key, created_at (an equal float of another text: -0.0 after 0.0); and
    jobs whose header is the job's before but not their m (a retry count)."""
    out: list[Job] = []

    def run(n: int, tag: str, **fields: object) -> None:
        values: dict[str, object] = {"type": "t", "created_at": CREATED, **fields}
        for i in range(n):
            out.append(Job(id=f"{tag}{i}", **values))  # type: ignore[arg-type]

    run(5, "a")
    run(3, "q", queue="other")
    run(1, "a-again")
    run(3, "ty", type="u")
    run(3, "pr", priority=7)
    run(3, "sc", scheduled_at=NOW + 60)
    run(2, "done", status=JobStatus.COMPLETED)
    out.append(Job(id="k1", type="t", created_at=CREATED, idempotency_key="key-1"))
    out.append(Job(id="k2", type="t", created_at=CREATED, idempotency_key="key-2"))
    out.append(Job(id="zero", type="t", created_at=0.0))
    out.append(Job(id="minus-zero", type="t", created_at=-0.0))
    out.append(Job(id="one", type="t", created_at=1.0))
    out.append(Job(id="int-one", type="t", created_at=1))  # type: ignore[arg-type]
    out.append(Job(id="é-first", type="t", created_at=1))  # type: ignore[arg-type]
    out.append(Job(id="", type="t", created_at=1))  # type: ignore[arg-type]
    run(4, "tail")
    run(2, "rc", retry_count=2)  # a value of m alone: the header is the tail's
    run(2, "tail-again")
    return out


async def everything(broker: Broker, claim_first: bool) -> list[str]:
    """The batch enqueued (with a claim of 4 in the same move when ``claim_first``), then
    every job and the depths, then the pending jobs in the order claims take them."""
    jobs = batch()
    if claim_first:
        _, leases = await broker.enqueue_and_claim(jobs, NOW, "n", 4, 100.0)
        assert leases is not None
        out = ["claimed " + ",".join(le.job.id for le in leases)]
    else:
        await broker.enqueue(jobs, NOW)
        out = []
    for job in jobs:
        stored = await broker.get(job.id)
        assert stored is not None
        out.append(stored.dumps())
    out.append(repr(sorted((await broker.depths()).items())))
    for queue in ("default", "other"):
        leases = await broker.claim("n", 100, 100.0, NOW, ClaimScope(queues=(queue,)))
        out.append(queue + ": " + ",".join(le.job.id for le in leases))
    return out


@pytest.mark.parametrize("claim_first", [False, True], ids=["enqueue", "enqueue_and_claim"])
async def test_a_batch_of_shared_and_differing_headers_is_stored_as_the_reference_broker_stores_it(
    redis_broker: RedisBroker, claim_first: bool
) -> None:
    assert await everything(redis_broker, claim_first) == await everything(
        MemoryBroker(), claim_first
    )


def test_a_job_sends_its_id_alone_only_after_a_full_header_with_the_same_values() -> None:
    jobs = batch()
    encoded = codec.encode_many(jobs, [job.status for job in jobs])
    args = codec.enqueue_args_many(jobs, encoded)
    headers = args[0::3]
    assert len(headers) == len(jobs)
    full = [i for i, h in enumerate(headers) if h == codec.enqueue_arg(jobs[i], *encoded[i])[0]]
    alone = [i for i, h in enumerate(headers) if h == "\x1f" + jobs[i].id]
    assert sorted(full + alone) == list(range(len(jobs)))
    names = [jobs[i].id for i in full]
    # each run's first job, and every job whose values differ from the job's before
    assert names == [
        "a0", "q0", "a-again0", "ty0", "pr0", "sc0", "done0", "k1", "k2",
        "zero", "minus-zero", "one", "int-one", "tail0",
    ]  # fmt: skip
    assert args[1::3] == [b for b, _ in encoded]
    # m is '' where the job sends its id alone and its m is the job's before
    ms = [codec.SEP.join(values) for _, values in encoded]
    assert args[2::3] == ["" if i in alone and ms[i] == ms[i - 1] else m for i, m in enumerate(ms)]
    sent = [jobs[i].id for i in alone if args[3 * i + 2]]
    assert sent == ["rc0", "tail-again0"]


def test_a_call_starts_with_a_full_header() -> None:
    jobs = [Job(id=f"j{i}", type="t", created_at=CREATED) for i in range(3)]
    encoded = codec.encode_many(jobs, [job.status for job in jobs])
    for start in range(3):
        args = codec.enqueue_args_many(jobs[start:], encoded[start:])
        assert args[0] == codec.enqueue_arg(jobs[start], *encoded[start])[0]
        assert args[3::3] == ["\x1f" + job.id for job in jobs[start + 1 :]]


async def test_an_id_holding_the_reserved_byte_is_refused_in_either_form(
    redis_broker: RedisBroker,
) -> None:
    """The id alone is checked as the full header checked it: nothing is stored."""
    for bad in (["x\x1fy"], ["a", "x\x1fy"]):
        jobs = [Job(id=i, type="t", created_at=CREATED) for i in bad]
        with pytest.raises(ValueError, match="job id 'x\\\\x1fy' contains the byte 0x1f"):
            await redis_broker.enqueue(jobs, NOW)
        assert await redis_broker.get("a") is None


@pytest.mark.parametrize("short", ["header", "m"])
async def test_a_call_never_takes_the_header_or_m_the_call_before_it_left(
    redis_broker: RedisBroker, short: str
) -> None:
    """A library's Lua state outlives its calls (Redis Functions): a call whose first job
    sends its id alone, or '' for its m, fails as under EVALSHA instead of filing the job
    with the last call's header or m. The Broker never sends such a call; a caller of the
    function (another version, a hand-made FCALL) could."""
    await redis_broker.enqueue([Job(id="first", type="t", created_at=CREATED)], NOW)
    jobs = [Job(id="second", type="t", created_at=CREATED)]
    args = redis_broker._enqueue_args(jobs, redis_broker._encode(jobs, NOW), NOW)
    if short == "header":
        args[1] = "\x1fsecond"
    else:
        args[3] = ""
    with pytest.raises(Exception, match="before any"):
        await redis_broker._call(redis_broker._enqueue, args)
    assert await redis_broker.get("second") is None
