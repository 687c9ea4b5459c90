"""What a processor hands back as text: its exception's message and its result.

Both are the processor's own, not validated input: an exception message of
megabytes, one holding a lone UTF-16 surrogate (not valid Unicode, so no
UTF-8 for Redis's wire, BSON or the event stream), an exception whose
``__str__`` itself raises, a result holding a lone surrogate. The job keeps
a cut, valid error; a result that is no valid text fails the attempt naming
why; and the node's event stream on Redis carries the job's events instead of
crashing on them at every restart (what it did before).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import uuid

import redis
import trio

from jobtrio.actors.node import Node
from jobtrio.backends import open_backends
from jobtrio.config import Settings
from jobtrio.jobs import IdGenerator, JobStatus
from jobtrio.processors import JobContext, Registry
from jobtrio.submission import validate_submission
from jobtrio.text import MAX_ERROR_CHARS, error_text
from tests.servers import RedisServer
from tests.test_node import running_node, terminal
from tests.waiting import wait_until

SURROGATE = "bad \ud800 text"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


@dataclasses.dataclass
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"n must be positive, got {self.n} {SURROGATE}")


def stream_events(url: str, prefix: str) -> list[dict[str, object]]:
    """Every event in the node's Redis Stream, as recorded."""
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange("{" + prefix + "}:events")
    finally:
        client.close()
    return [json.loads(fields[b"e"]) for _, fields in entries]


def registry() -> Registry:
    reg = Registry()

    @reg.processor("exit")
    async def exits(ctx: JobContext) -> None:
        sys.exit(3)

    @reg.processor("exit-thread", blocking="thread")
    def exits_in_a_thread(ctx: JobContext) -> None:
        sys.exit("bye")

    @reg.processor("positive", payload=Positive)
    async def positive(ctx: JobContext) -> int:
        return ctx.data.n

    @reg.processor("surrogate")
    async def surrogate(ctx: JobContext) -> None:
        raise ValueError(SURROGATE)

    @reg.processor("huge")
    async def huge(ctx: JobContext) -> None:
        raise ValueError("x" * 3_000_000)

    @reg.processor("unprintable")
    async def unprintable(ctx: JobContext) -> None:
        raise Unprintable()

    @reg.processor("surrogate-result")
    async def surrogate_result(ctx: JobContext) -> dict[str, str]:
        return {"text": SURROGATE}

    @reg.processor("short-surrogate-result")
    async def short_surrogate_result(ctx: JobContext) -> str:
        return "\udfff"

    return reg


def test_error_text_cuts_and_makes_valid_unicode() -> None:
    assert error_text("ValueError: fine") == "ValueError: fine"
    assert error_text("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"  # valid text stays
    assert error_text(SURROGATE) == "bad \ufffd text"
    for over in (1, 10, 10_000_000):
        cut = error_text("y" * (MAX_ERROR_CHARS + over))
        kept = cut.index("\u2026")
        assert cut == "y" * kept + f"\u2026 ({MAX_ERROR_CHARS + over - kept} more characters)"
        assert MAX_ERROR_CHARS - 10 <= len(cut) <= MAX_ERROR_CHARS
    assert error_text("y" * MAX_ERROR_CHARS) == "y" * MAX_ERROR_CHARS
    assert error_text(cut) == cut  # cutting twice changes nothing
    cut.encode("utf-8")


async def test_a_processor_s_error_is_kept_cut_and_valid(autojump_clock) -> None:
    async with running_node(registry()) as node:
        surrogate = await node.submit({"type": "surrogate", "max_retries": 0})
        huge = await node.submit({"type": "huge", "max_retries": 2})
        unprintable = await node.submit({"type": "unprintable", "max_retries": 0})

        job = await terminal(node, surrogate.id)
        assert job.status == JobStatus.FAILED
        assert job.error == "ValueError: bad \ufffd text"

        job = await terminal(node, huge.id)
        assert job.status == JobStatus.FAILED
        assert len(job.attempts) == 3
        for text in [job.error, *(attempt.error for attempt in job.attempts)]:
            assert text is not None
            assert text.startswith("ValueError: xxx")
            assert text.endswith(" more characters)")
            assert MAX_ERROR_CHARS - 10 <= len(text) <= MAX_ERROR_CHARS
            kept = text.index("\u2026")
            assert (
                text[kept:] == f"\u2026 ({3_000_000 + len('ValueError: ') - kept} more characters)"
            )

        job = await terminal(node, unprintable.id)
        assert job.error == "Unprintable: (its message could not be read: RuntimeError)"


async def test_a_result_that_is_no_valid_text_fails_the_attempt_naming_why(autojump_clock) -> None:
    async with running_node(registry()) as node:
        for kind in ("surrogate-result", "short-surrogate-result"):
            submitted = await node.submit({"type": kind, "max_retries": 0})
            job = await terminal(node, submitted.id)
            assert job.status == JobStatus.FAILED, kind
            assert job.result is None
            assert job.error == "result holds a lone UTF-16 surrogate, which is not valid text"


async def test_the_redis_event_stream_carries_a_failed_job_whose_error_was_no_valid_text(
    redis_server: RedisServer,
) -> None:
    prefix = "ptext" + uuid.uuid4().hex[:8]
    settings = Settings(
        node_id="n1",
        redis_url=redis_server.url,
        redis_key_prefix=prefix,
        worker_count=2,
        shutdown_grace=0.2,
    )
    broker, store = await open_backends(settings)
    node = Node(settings, broker, store, registry())

    def failed_events() -> list[dict[str, object]]:
        events = stream_events(redis_server.url, prefix)
        return [e for e in events if e.get("kind") == "job.failed"]

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            job = await node.submit({"type": "surrogate", "max_retries": 0})
            events = await wait_until(
                failed_events, timeout=20, message="the job.failed event in the Redis Stream"
            )
            node.request_stop()
        assert [e["job_id"] for e in events] == [job.id]
        assert events[0]["error"] == "ValueError: bad \ufffd text"
        restarts = node.metrics.actor_restarts.labels("event-stream")._value.get()
        assert restarts == 0
    finally:
        await broker.close()
        await store.close()


async def test_a_payload_its_own_dataclass_refuses_fails_the_job_at_once(autojump_clock) -> None:
    """A ``__post_init__`` that raises is the processor's own check of its payload: the
    job fails without retries, naming why. Before, the exception escaped the attempt
    and crashed the dispatcher, again at each lease of the job, which never ended."""
    async with running_node(registry()) as node:
        refused = await node.submit({"type": "positive", "payload": {"n": -1}, "max_retries": 3})
        fine = await node.submit({"type": "positive", "payload": {"n": 2}})
        job = await terminal(node, refused.id)
        assert job.status == JobStatus.FAILED and len(job.attempts) == 1
        assert job.error == "ValueError: n must be positive, got -1 bad \ufffd text"
        assert (await terminal(node, fine.id)).result == 2
        assert node.metrics.actor_restarts.labels("dispatcher")._value.get() == 0


async def test_the_redis_event_stream_repairs_an_event_that_is_no_valid_text(
    redis_server: RedisServer, caplog
) -> None:
    """Any publisher's text, not only a processor's: a peer's gossip names a member with
    a lone surrogate (the cluster protocol's JSON reads the escape), a job's fields hold
    one. Before, the Redis Stream refused the batch, the recorder of events crashed and
    restarted into the same batch: no event of the node was recorded again."""
    prefix = "ptext" + uuid.uuid4().hex[:8]
    settings = Settings(
        node_id="n1", redis_url=redis_server.url, redis_key_prefix=prefix, shutdown_grace=0.2
    )
    broker, store = await open_backends(settings)
    node = Node(settings, broker, store, registry())
    kinds = ("member.up", "job.failed", "schedule.deleted")

    def stream() -> list[dict[str, object]]:
        return stream_events(redis_server.url, prefix)

    def recording() -> bool:
        """Published before the event stream subscribes to the bus, an event is dropped:
        a marker published at each look until one is recorded."""
        node.events.publish("schedule.deleted", schedule="marker")
        return any(e.get("schedule") == "marker" for e in stream())

    def recorded() -> list[dict[str, object]] | None:
        events = [e for e in stream() if e.get("kind") in kinds and e.get("schedule") != "marker"]
        return events if len(events) == 3 else None

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await wait_until(recording, timeout=20, message="the node's events recorded")
            node.events.publish("member.up", member=SURROGATE, address="ws://peer")
            job = validate_submission({"type": "surrogate"}, time.time(), ids=IdGenerator())
            job.error = SURROGATE
            node.events.publish_jobs("job.failed", [job])
            node.events.publish("schedule.deleted", schedule="after them")
            events = await wait_until(
                recorded, timeout=20, message="the three events in the Redis Stream"
            )
            node.request_stop()
        assert [e["kind"] for e in events] == list(kinds)
        assert events[0]["member"] == "bad \ufffd text"
        assert events[1]["error"] == "bad \ufffd text" and events[1]["job_id"] == job.id
        assert node.metrics.actor_restarts.labels("event-stream")._value.get() == 0
        assert sum("lone UTF-16 surrogate" in r.getMessage() for r in caplog.records) == 2
    finally:
        await broker.close()
        await store.close()


def test_names_holding_a_lone_surrogate_are_refused_naming_the_field() -> None:
    """From Python (the API refuses such a body already): the type, queue and
    idempotency key went to the Broker, whose UTF-8 encoding failed on them (Redis,
    SQLite: UnicodeEncodeError) instead of a ValidationError naming the field."""
    import pytest

    from jobtrio.jobs import ValidationError
    from jobtrio.submission import validate_submission

    for field, value in (
        ("type", SURROGATE),
        ("queue", SURROGATE),
        ("idempotency_key", SURROGATE),
    ):
        data = {"type": "t", field: value}
        with pytest.raises(ValidationError) as refused:
            validate_submission(data, 1.0)
        assert refused.value.field == field
        assert "U+D800 (lone UTF-16 surrogate)" in str(refused.value)
    validate_submission({"type": "caf\u00e9 \U0001f600", "queue": "\u00e9t\u00e9"}, 1.0)


async def test_a_processor_calling_sys_exit_fails_its_attempt_and_the_node_goes_on(
    autojump_clock,
) -> None:
    """SystemExit is no Exception: it went through the attempt, the dispatcher and the
    supervisor, and stopped the node (and, once its lease expired, the next node to run
    the job). It is the processor's failure like any other."""
    async with running_node(registry()) as node:
        first = await node.submit({"type": "exit", "max_retries": 0})
        second = await node.submit({"type": "exit-thread", "max_retries": 0})
        job = await terminal(node, first.id)
        assert job.status == JobStatus.FAILED and job.error == "SystemExit: 3"
        job = await terminal(node, second.id)
        assert job.status == JobStatus.FAILED and job.error == "SystemExit: bye"
        assert node.running
