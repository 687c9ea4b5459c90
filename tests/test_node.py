"""One node end to end on the memory backends: scheduling, retries, timeouts,
cancellation, graceful stop and supervision.

Most tests run under trio's MockClock with autojump (the ``autojump_clock``
fixture) and give the node a clock derived from trio's, so delays of seconds
take no wall time and the outcome does not depend on the machine's speed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from jobtrio.actors.node import Node
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.jobs import JobStatus, to_iso
from jobtrio.processors import JobContext, Registry
from jobtrio.submission import validate_submission
from tests.waiting import wait_until

EPOCH0 = 1_700_000_000.0


def trio_clock() -> float:
    return EPOCH0 + trio.current_time()


@asynccontextmanager
async def running_node(
    registry: Registry | None = None,
    clock: Callable[[], float] = trio_clock,
    broker: MemoryBroker | None = None,
    store: MemoryStore | None = None,
    **settings: object,
) -> AsyncIterator[Node]:
    base = {
        "worker_count": 2,
        "retry_base_delay": 1.0,
        "retry_max_delay": 10.0,
        "retry_jitter_factor": 0.0,
        "job_lease": 3.0,
        "shutdown_grace": 1.0,
    }
    base.update(settings)
    node = Node(
        Settings(**base),  # type: ignore[arg-type]
        broker or MemoryBroker(),
        store or MemoryStore(),
        registry or Registry(),
        clock=clock,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield node
        finally:
            node.request_stop()


async def terminal(node: Node, job_id: str, timeout: float = 60.0):
    async def done():
        job = await node.get(job_id)
        return job if job is not None and job.terminal else None

    return await wait_until(done, timeout=timeout, message=f"job {job_id} to end")


async def test_priority_order_then_fifo(autojump_clock):
    order: list[int] = []
    registry = Registry()

    @registry.processor("record")
    async def record(ctx: JobContext) -> None:
        order.append(ctx.payload["n"])

    broker = MemoryBroker()
    node = Node(Settings(worker_count=1), broker, MemoryStore(), registry, clock=trio_clock)
    # queue everything before the node runs, so priority alone decides the order
    priorities = [1, 5, 10, 5, 1, 10, 7]
    jobs = [
        await node.submit({"type": "record", "priority": p, "payload": {"n": i}})
        for i, p in enumerate(priorities)
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await terminal(node, jobs[4].id)
        await wait_until(lambda: len(order) == len(priorities))
        node.request_stop()
    assert order == [2, 5, 6, 1, 3, 0, 4]


async def test_default_priority_is_five_and_result_recorded(autojump_clock):
    async with running_node() as node:
        job = await node.submit({"type": "echo", "payload": {"hello": "world"}})
        assert job.priority == 5
        done = await terminal(node, job.id)
        assert done.status == JobStatus.COMPLETED
        assert done.result == {"hello": "world"}
        assert done.worker_id is not None and done.worker_id.startswith("node-1/w")
        stored = await wait_until(lambda: node.store.get(job.id))
        await wait_until(lambda: node.recorder.backlog == 0)
        stored = await node.store.get(job.id)
        assert stored.status == JobStatus.COMPLETED


async def test_delayed_start_waits_for_scheduled_at(autojump_clock):
    async with running_node() as node:
        at = trio_clock() + 30
        job = await node.submit({"type": "noop", "scheduled_at": to_iso(at)})
        assert job.status == JobStatus.SCHEDULED
        await trio.sleep(29)
        assert (await node.get(job.id)).status == JobStatus.SCHEDULED
        done = await terminal(node, job.id)
        assert done.status == JobStatus.COMPLETED
        assert done.started_at >= at
        assert done.started_at - at < 1.0  # claimed at the dispatcher's next poll


async def test_scheduled_jobs_start_at_their_time_on_the_node_that_took_them(autojump_clock):
    """The claim loop asks the Broker at the due time of the scheduled jobs this node
    accepted (a claim takes due jobs itself), not at its idle poll, up to 100 ms later:
    two bursts 50 ms apart both start within a millisecond of their time."""
    async with running_node() as node:
        first, second = trio_clock() + 30, trio_clock() + 30.05
        ids = [j.id for j in await node.submit_many([{"type": "noop", "scheduled_at": first}] * 2)]
        ids += [j.id for j in await node.submit_many([{"type": "noop", "scheduled_at": second}])]
        done = [await terminal(node, job_id) for job_id in ids]
        assert [j.status for j in done] == [JobStatus.COMPLETED] * 3
        starts = [j.started_at - at for j, at in zip(done, [first, first, second], strict=True)]
        assert all(0 <= s < 0.001 for s in starts), starts
        assert node.duties.promoted == 0  # taken by the claims, not promoted


async def test_retries_with_backoff_then_success(autojump_clock):
    registry = Registry()
    calls: list[float] = []

    @registry.processor("flaky")
    async def flaky(ctx: JobContext) -> str:
        calls.append(trio_clock())
        if ctx.retry_count < 2:
            raise RuntimeError(f"attempt {ctx.attempt} broke")
        return "ok"

    async with running_node(registry) as node:
        job = await node.submit({"type": "flaky", "max_retries": 3})
        done = await terminal(node, job.id)
    assert done.status == JobStatus.COMPLETED and done.result == "ok"
    assert done.retry_count == 2
    assert [a.outcome for a in done.attempts] == ["failed", "failed", "completed"]
    assert done.attempts[0].error == "RuntimeError: attempt 1 broke"
    # exponential: 1 s then 2 s (no jitter in this test)
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert 1.0 <= gaps[0] < 1.5 and 2.0 <= gaps[1] < 2.5


async def test_exhausted_retries_end_failed_with_last_error(autojump_clock):
    async with running_node() as node:
        job = await node.submit({"type": "fail", "max_retries": 2, "payload": {"message": "nope"}})
        done = await terminal(node, job.id)
    assert done.status == JobStatus.FAILED
    assert done.retry_count == 2 and len(done.attempts) == 3
    assert done.error == "ProcessorFailure: nope"


async def test_max_retries_zero_means_one_attempt(autojump_clock):
    async with running_node() as node:
        job = await node.submit({"type": "fail", "max_retries": 0})
        done = await terminal(node, job.id)
    assert done.status == JobStatus.FAILED and len(done.attempts) == 1


async def test_timeout_cancels_attempt_and_counts_as_failure(autojump_clock):
    async with running_node() as node:
        job = await node.submit(
            {"type": "sleep", "payload": {"seconds": 100}, "timeout": 2, "max_retries": 1}
        )
        done = await terminal(node, job.id)
    assert done.status == JobStatus.FAILED
    assert [a.outcome for a in done.attempts] == ["timeout", "timeout"]
    assert done.error == "timed out after 2s"
    for attempt in done.attempts:
        assert 2.0 <= attempt.ended_at - attempt.started_at < 2.5


async def test_a_job_nobody_can_run_waits_visibly_and_never_fails(autojump_clock):
    async with running_node() as node:
        job = await node.submit({"type": "no-such-type", "max_retries": 5})
        later = await node.submit({"type": "echo", "priority": 1})
        assert (await terminal(node, later.id)).status == JobStatus.COMPLETED
        await trio.sleep(5)  # virtual: many claim polls pass
        held = await node.broker.get(job.id)
        assert held.status == JobStatus.PENDING and held.attempts == []
        stats = await node.stats()
    assert stats["unserved"] == [
        {
            "queue": "default",
            "type": "no-such-type",
            "pending": 1,
            "reason": "no worker for type no-such-type",
        }
    ]
    assert stats["queues"] == {"default": {"pending": 1, "paused": False}}


async def test_a_result_over_max_result_bytes_fails_the_attempt_naming_it(autojump_clock):
    """Results had no size limit: a 2 MB result (or 200 bytes over a 100-byte limit) was
    stored whole. Now the attempt fails naming the limit and no part is stored."""
    registry = Registry()

    @registry.processor("sized")
    async def sized(ctx: JobContext) -> object:
        return {"text": "x" * ctx.payload["n"]} if ctx.payload["dict"] else "é" * ctx.payload["n"]

    @registry.processor("deep")
    async def deep(ctx: JobContext) -> object:
        value: list = []
        for _ in range(100_000):
            value = [value]
        return value

    @registry.processor("huge-int")
    async def huge_int(ctx: JobContext) -> object:
        return 10**5000  # past int's 4,300-digit limit: no JSON text can be made of it

    async with running_node(registry, max_result_bytes=100) as node:
        fits = await node.submit({"type": "sized", "payload": {"n": 89, "dict": True}})
        over = await node.submit(
            {"type": "sized", "payload": {"n": 200, "dict": True}, "max_retries": 1}
        )
        text = await node.submit({"type": "sized", "payload": {"n": 60, "dict": False}})
        deep_job = await node.submit({"type": "deep", "max_retries": 0})
        assert (await terminal(node, fits.id)).result == {"text": "x" * 89}  # 100 bytes: the limit
        failed = await terminal(node, over.id)
        assert failed.status == JobStatus.FAILED and failed.result is None
        assert failed.error == "result is 211 bytes as JSON; the limit is 100 (MAX_RESULT_BYTES)"
        assert len(failed.attempts) == 2  # the retry policy applies, as to any failed attempt
        # 60 two-byte characters: 122 bytes of JSON, though only 62 characters
        assert "result is 122 bytes" in (await terminal(node, text.id)).error
        # was a RecursionError that crashed the dispatcher again at each restart
        assert "not JSON-serialisable" in (await terminal(node, deep_job.id)).error
        big = await node.submit({"type": "huge-int", "max_retries": 0})
        assert "not JSON-serialisable: a int" in (await terminal(node, big.id)).error


async def test_processor_raising_or_returning_garbage_does_not_hurt_the_node(autojump_clock):
    registry = Registry()

    @registry.processor("bad-result")
    async def bad_result(ctx: JobContext) -> object:
        return object()

    @registry.processor("crash")
    async def crash(ctx: JobContext) -> None:
        raise SystemError("processor bug")

    async with running_node(registry) as node:
        a = await node.submit({"type": "bad-result", "max_retries": 0})
        b = await node.submit({"type": "crash", "max_retries": 0})
        c = await node.submit({"type": "echo", "payload": {"still": "alive"}})
        assert "not JSON-serialisable" in (await terminal(node, a.id)).error
        assert (await terminal(node, b.id)).error == "SystemError: processor bug"
        assert (await terminal(node, c.id)).result == {"still": "alive"}


async def test_cancel_scheduled_job_removes_it(autojump_clock):
    async with running_node() as node:
        job = await node.submit({"type": "noop", "scheduled_at": to_iso(trio_clock() + 10)})
        cancelled = await node.cancel(job.id)
        assert cancelled.status == JobStatus.CANCELLED
        await trio.sleep(20)
        after = await node.get(job.id)
        assert after.status == JobStatus.CANCELLED and after.attempts == []


async def test_cancel_running_job_interrupts_its_attempt(autojump_clock):
    async with running_node(worker_count=1) as node:
        job = await node.submit({"type": "sleep", "payload": {"seconds": 1000}})
        await wait_until(lambda: node.dispatcher.in_flight == 1)
        cancel_at = trio.current_time()
        cancelled = await node.cancel(job.id)
        assert cancelled.status == JobStatus.CANCELLED
        # the worker is free again long before the job would have ended
        await wait_until(
            lambda: node.dispatcher.idle_workers() == 1 and node.dispatcher.in_flight == 0
        )
        assert trio.current_time() - cancel_at < 1.0
        after = await node.get(job.id)
        assert after.status == JobStatus.CANCELLED
        assert after.attempts[-1].outcome == "cancelled"
        nxt = await node.submit({"type": "noop"})
        assert (await terminal(node, nxt.id)).status == JobStatus.COMPLETED


async def test_cancel_from_another_node_reaches_the_worker_through_its_lease(autojump_clock):
    """The cancel lands on the Broker only; the running node learns from its heartbeat."""
    broker = MemoryBroker()
    async with running_node(broker=broker, worker_count=1, job_lease=3.0) as node:
        job = await node.submit({"type": "sleep", "payload": {"seconds": 1000}})
        await wait_until(lambda: node.dispatcher.in_flight == 1)
        await broker.cancel(job.id, trio_clock())  # as another node's API would
        await wait_until(lambda: node.dispatcher.in_flight == 0, timeout=5)
        assert node.metrics.registry.get_sample_value("job_leases_lost_total") == 1


async def test_graceful_stop_finishes_short_jobs_and_hands_back_the_rest(autojump_clock):
    broker = MemoryBroker()
    store = MemoryStore()
    node = Node(
        Settings(worker_count=2, shutdown_grace=5.0),
        broker,
        store,
        Registry(),
        clock=trio_clock,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        short = await node.submit({"type": "sleep", "payload": {"seconds": 2}, "priority": 10})
        long = await node.submit({"type": "sleep", "payload": {"seconds": 600}, "priority": 10})
        waiting = [await node.submit({"type": "noop", "priority": 1}) for _ in range(3)]
        await wait_until(lambda: node.dispatcher.idle_workers() == 0)
        stop_at = trio.current_time()
        node.request_stop()
        await node.stopped.wait()
    assert 5.0 <= trio.current_time() - stop_at < 7.0
    assert (await broker.get(short.id)).status == JobStatus.COMPLETED
    handed_back = await broker.get(long.id)
    assert handed_back.status == JobStatus.PENDING
    assert handed_back.attempts == [] and handed_back.retry_count == 0
    for job in waiting:
        assert (await broker.get(job.id)).status == JobStatus.PENDING
    # the store saw the hand-back too
    assert (await store.get(long.id)).status == JobStatus.PENDING
    # and a new node runs them
    async with running_node(broker=broker, store=store) as node2:
        for job in [long, *waiting]:
            if job is long:
                await node2.cancel(job.id)
            else:
                assert (await terminal(node2, job.id)).status == JobStatus.COMPLETED


async def test_crashing_actor_is_restarted(autojump_clock):
    class FlakyStore(MemoryStore):
        failures = 2

        async def put_many(self, jobs):
            if self.failures:
                self.failures -= 1
                raise RuntimeError("store bug")
            await super().put_many(jobs)

    store = FlakyStore()
    async with running_node(store=store) as node:
        job = await node.submit({"type": "noop"})
        await terminal(node, job.id)
        await wait_until(lambda: store.get(job.id))
        restarts = node.metrics.registry.get_sample_value(
            "actor_restarts_total", {"actor": "recorder"}
        )
        assert restarts == 2
        assert (await store.get(job.id)).status == JobStatus.COMPLETED


async def test_many_jobs_all_complete_exactly_once(autojump_clock):
    runs: dict[int, int] = {}
    registry = Registry()

    @registry.processor("count")
    async def count(ctx: JobContext) -> None:
        runs[ctx.payload["i"]] = runs.get(ctx.payload["i"], 0) + 1
        await trio.sleep(0.01 * (ctx.payload["i"] % 3))

    async with running_node(registry, worker_count=8) as node:
        await node.submit_many([{"type": "count", "payload": {"i": i}} for i in range(500)])
        await wait_until(lambda: node.dispatcher.finished == 500, timeout=120)
    assert runs == {i: 1 for i in range(500)}


async def test_blocking_processor_does_not_starve_the_heartbeat():
    """Real clock: a thread sleeps through several lease periods; the lease holds."""
    registry = Registry()

    @registry.processor("block", blocking=True)
    def block(ctx: JobContext) -> str:
        time.sleep(1.5)
        return "done"

    async with running_node(registry, clock=time.time, job_lease=0.6) as node:
        job = await node.submit({"type": "block"})
        done = await terminal(node, job.id, timeout=20)
    assert done.status == JobStatus.COMPLETED and done.result == "done"
    assert done.lease_expirations == 0 and len(done.attempts) == 1


async def test_process_processor_runs_cpu_work_off_the_loop():
    async with running_node(clock=time.time) as node:
        job = await node.submit({"type": "spin", "payload": {"iterations": 20000}})
        done = await terminal(node, job.id, timeout=60)
    expected = sum(i * i for i in range(20000)) % 1_000_007
    assert done.status == JobStatus.COMPLETED
    assert done.result == {"iterations": 20000, "checksum": expected}


@pytest.mark.parametrize("bad", [{"type": ""}, {"priority": 5}, {"type": "x", "priority": 11}])
async def test_submit_refuses_invalid_jobs(bad):
    from jobtrio.jobs import ValidationError

    node = Node(Settings(), MemoryBroker(), MemoryStore())
    with pytest.raises(ValidationError):
        await node.submit(bad)


async def test_outcome_whose_reply_was_lost_is_still_recorded(autojump_clock):
    """The first finish call goes through but its reply is lost (an outage); the retry is
    refused as a stale token, and the node records the Broker's completed copy anyway."""
    from jobtrio.backends.base import BackendUnavailable

    class LossyBroker(MemoryBroker):
        lose_next_reply = True

        async def finish(self, items, now):
            result = await super().finish(items, now)
            if self.lose_next_reply:
                self.lose_next_reply = False
                raise BackendUnavailable("memory", "connection reset after the write")
            return result

    store = MemoryStore()
    async with running_node(broker=LossyBroker(), store=store) as node:
        job = await node.submit({"type": "echo", "payload": {"n": 1}})
        assert (await terminal(node, job.id)).status == JobStatus.COMPLETED

        async def recorded():
            record = await store.get(job.id)
            return record is not None and record.status == JobStatus.COMPLETED

        await wait_until(recorded, timeout=30, message="the completed record")


async def test_standalone_nodes_sharing_a_broker_take_turns_at_leader_duties(autojump_clock):
    """Two nodes without cluster settings on one Broker: duties never stop for good."""
    broker, store = MemoryBroker(), MemoryStore()
    settings = {"election_timeout": 2.0, "worker_count": 1}
    async with running_node(broker=broker, store=store, node_id="a", **settings) as a:
        async with running_node(broker=broker, store=store, node_id="b", **settings) as b:
            await wait_until(lambda: a.duties.fenced >= 1)  # b's newer epoch fenced a off
            await wait_until(lambda: b.duties.fenced >= 1, timeout=30)  # a retook
        # b is gone: a alone must keep promoting scheduled jobs
        job = await a.submit({"type": "noop", "scheduled_at": to_iso(trio_clock() + 5)})
        assert (await terminal(a, job.id)).status == JobStatus.COMPLETED


async def test_jobs_leased_by_a_claim_without_an_answer_go_back_uncounted(autojump_clock):
    """A claim goes through but its reply is lost (a Redis timeout): the node hands those
    jobs back at once instead of letting their leases expire, so they never count
    toward POISON_LIMIT (with a limit of 1, one expiry would fail the job as poison)."""
    from jobtrio.backends.base import BackendUnavailable

    class LostClaimReply(MemoryBroker):
        lose = 1

        async def claim(self, node_id, n, lease_seconds, now, scope=None):
            leases = await super().claim(node_id, n, lease_seconds, now, scope)
            if leases and self.lose:
                self.lose -= 1
                raise BackendUnavailable("memory", "timeout after the claim was applied")
            return leases

    broker = LostClaimReply()
    async with running_node(broker=broker, poison_limit=1) as node:
        job = await node.submit({"type": "noop"})
        done = await terminal(node, job.id)
        assert broker.lose == 0
        assert done.status == JobStatus.COMPLETED
        assert done.lease_expirations == 0
        assert [a.outcome for a in done.attempts] == ["completed"]
        assert node.dispatcher.handed_back == 1


async def test_a_restarted_node_lets_its_previous_process_leases_go_at_once(autojump_clock):
    """The process holding n1's leases died with a job running and two prefetched: the
    restarted n1 lets those leases run out before its first claim, and the leader requeues
    them at once instead of after JOB_LEASE (600 s here). They count as expirations."""
    broker = MemoryBroker()
    now = trio_clock()
    await broker.enqueue([validate_submission({"type": "noop"}, now) for _ in range(3)], now)
    held = await broker.claim("n1", 3, 600.0, now)
    await broker.enqueue([validate_submission({"type": "noop"}, now)], now)
    [elsewhere] = await broker.claim("n2", 1, 600.0, now)  # another node's: left alone
    async with running_node(broker=broker, node_id="n1", job_lease=600.0) as node:
        for lease in held:
            ended = await terminal(node, lease.job.id, timeout=60.0)
            assert ended.status == JobStatus.COMPLETED
            assert ended.completed_at < lease.expires_at - 500
            assert ended.lease_expirations == 1
            assert [a.outcome for a in ended.attempts] == ["lost", "completed"]
        assert node.dispatcher.expired_at_start == 3
        assert (await broker.get(elsewhere.job.id)).status == JobStatus.RUNNING


async def test_a_previous_incarnations_leases_are_not_handed_back_uncounted(autojump_clock):
    """Only this incarnation's unanswered claims go back uncounted: a lease the node held
    before it restarted may be the job that killed it, so it expires and counts."""
    from jobtrio.backends.base import BackendUnavailable

    class LostClaimReply(MemoryBroker):
        lose = 1

        async def claim(self, node_id, n, lease_seconds, now, scope=None):
            leases = await super().claim(node_id, n, lease_seconds, now, scope)
            if leases and self.lose and node_id == "n1":
                self.lose -= 1
                raise BackendUnavailable("memory", "timeout after the claim was applied")
            return leases

    broker = LostClaimReply()
    await broker.enqueue([validate_submission({"type": "noop"}, trio_clock())], 0)
    # the previous incarnation of n1 claimed it, then crashed
    broker.lose = 0
    [held] = await broker.claim("n1", 1, 3.0, trio_clock())
    broker.lose = 1
    await trio.sleep(1.0)
    async with running_node(broker=broker, node_id="n1", poison_limit=5) as node:
        job = await node.submit({"type": "noop"})
        assert (await terminal(node, job.id)).lease_expirations == 0
        ended = await terminal(node, held.job.id)
        assert ended.status == JobStatus.COMPLETED
        assert ended.lease_expirations == 1  # it expired and counted
        assert node.dispatcher.handed_back == 1


async def _purge_now(broker: MemoryBroker, at: float) -> None:
    """The leader's purge of finished jobs, run by hand (under the current epoch)."""
    epoch = await broker.current_epoch()
    assert await broker.purge_finished(at, epoch) >= 1


class GatedStore(MemoryStore):
    """Holds the Store reads of two racing retries: both pass the Broker's ``retry`` (the
    job is purged) before either puts it back, and the second goes on only when let."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.arrived = 0
        self.both = trio.Event()
        self.go_second = trio.Event()

    async def get(self, job_id):
        if self.armed:
            self.arrived += 1
            n = self.arrived
            if n == 2:
                self.both.set()
            await self.both.wait()
            if n == 2:
                await self.go_second.wait()
        return await super().get(job_id)


async def test_two_racing_retries_of_a_purged_job_run_it_once(autojump_clock):
    """The retry of a job the Broker purged is an insert-if-absent (``Broker.revive``): the
    second of two racing retries, arriving while the first one's attempt runs, gets the
    running job instead of resetting it for a second run (a plain enqueue overwrote it)."""
    registry = Registry()
    runs: list[int] = []
    release = trio.Event()

    @registry.processor("flaky")
    async def flaky(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        await release.wait()

    broker, store = MemoryBroker(), GatedStore()
    answers = {}
    async with running_node(registry, broker=broker, store=store) as node:
        job = await node.submit({"type": "flaky", "max_retries": 0})
        assert (await terminal(node, job.id)).status == JobStatus.FAILED
        await node.recorder.flush(5)
        await _purge_now(broker, trio_clock() + 1)
        assert await broker.get(job.id) is None

        async def retry(name: str) -> None:
            answers[name] = await node.retry(job.id)

        store.armed = True
        with trio.fail_after(60):  # virtual seconds
            async with trio.open_nursery() as nursery:
                nursery.start_soon(retry, "a")
                nursery.start_soon(retry, "b")
                await store.both.wait()
                await wait_until(lambda: len(runs) == 2, timeout=10, message="the retried run")
                store.go_second.set()
        store.armed = False
        assert sorted(str(a.status) for a in answers.values()) == ["pending", "running"]
        release.set()
        assert (await terminal(node, job.id)).status == JobStatus.COMPLETED
        await trio.sleep(5)  # virtual: time for another run, were there one
        assert len(runs) == 2


async def test_a_retry_does_not_run_a_completed_job_whose_record_is_behind(autojump_clock):
    """The Store still says failed (its later snapshots never arrived) but the Broker purged
    the job after it completed: the retry is refused by the tombstone, nothing runs."""
    from jobtrio.backends.base import StateConflict

    registry = Registry()
    runs: list[int] = []

    @registry.processor("once")
    async def once(ctx: JobContext) -> None:
        runs.append(ctx.attempt)

    broker, store = MemoryBroker(), MemoryStore()
    async with running_node(registry, broker=broker, store=store) as node:
        job = await node.submit({"type": "once"})
        done = await terminal(node, job.id)
        assert done.status == JobStatus.COMPLETED
        await node.recorder.flush(5)
        await _purge_now(broker, trio_clock() + 1)
        behind = done.copy()
        behind.status, behind.error = JobStatus.FAILED, "RuntimeError: boom"
        await store.delete(job.id)
        await store.put_many([behind])
        with pytest.raises(StateConflict, match="completed"):
            await node.retry(job.id)
        assert await broker.get(job.id) is None
        assert runs == [1]


class CountingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    async def claim(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.claims += 1
        return await super().claim(*args, **kwargs)


async def test_a_submitted_job_that_waits_for_its_time_costs_no_claim(mock_clock):
    """Only a job that can run now wakes the workers; time stands still (mock clock), so
    every claim counted here was a wake-up."""
    broker = CountingBroker()
    async with running_node(broker=broker) as node:
        await trio.testing.wait_all_tasks_blocked()
        before = broker.claims
        for _ in range(5):
            await node.submit({"type": "noop", "scheduled_at": EPOCH0 + 3600})
            await trio.testing.wait_all_tasks_blocked()
        await node.submit_many([{"type": "noop", "scheduled_at": EPOCH0 + 3600}] * 3)
        await trio.testing.wait_all_tasks_blocked()
        assert broker.claims == before
        await node.submit({"type": "noop"})  # due now: the workers are woken
        await trio.testing.wait_all_tasks_blocked()
        assert broker.claims > before
        mock_clock.autojump_threshold = 0  # let the node's stop (its grace period) pass


async def test_a_previous_incarnations_leases_stay_counted_when_its_clock_ran_ahead(
    autojump_clock,
):
    """The previous process of n1 ran on a host whose clock was ahead (a node moved to
    another machine): its lease's started_at is later than this process's start. A lost
    claim reply right after the restart must still leave that lease to expire and count
    (it may be the job that killed the process), not hand it back uncounted: the leases
    let run out at start are known by id, no clocks compared."""
    from jobtrio.backends.base import BackendUnavailable

    class LostClaimReply(MemoryBroker):
        lose = 0

        async def claim(self, node_id, n, lease_seconds, now, scope=None):
            leases = await super().claim(node_id, n, lease_seconds, now, scope)
            if leases and self.lose and node_id == "n1":
                self.lose -= 1
                raise BackendUnavailable("memory", "timeout after the claim was applied")
            return leases

    broker = LostClaimReply()
    ahead = trio_clock() + 100.0  # the previous host's clock
    await broker.enqueue([validate_submission({"type": "noop"}, ahead)], ahead)
    [held] = await broker.claim("n1", 1, 3.0, ahead)
    assert held.job.started_at is not None and held.job.started_at > trio_clock()
    broker.lose = 1
    async with running_node(broker=broker, node_id="n1", poison_limit=5) as node:
        job = await node.submit({"type": "noop"})
        assert (await terminal(node, job.id)).lease_expirations == 0
        ended = await terminal(node, held.job.id)
        assert ended.status == JobStatus.COMPLETED
        assert ended.lease_expirations == 1  # it expired and counted
        assert node.dispatcher.expired_at_start == 1
        assert node.dispatcher.handed_back == 1  # the lost claim's own job only
