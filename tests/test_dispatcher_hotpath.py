"""The dispatcher's fast paths keep every guarantee of the slow ones.

A worker keeps one cancel scope across attempts and takes the job dealt to it
without its inbox; the prefetch grows with the start rate. These tests pin
what must not change: a timeout or a cancel cuts off exactly the attempt it
targets and the next job still runs on that worker, a cancellation that lands
after its attempt returned hurts nothing, every job of a burst runs once, and
a node with slow jobs claims no more than its workers and the configured
prefetch.
"""

from __future__ import annotations

import trio

from jobtrio.actors.dispatch.workers import WORKER_SLICE_JOBS
from jobtrio.backends.memory import MemoryBroker
from jobtrio.jobs import JobStatus
from jobtrio.processors import JobContext, Registry
from tests.test_node import running_node, terminal
from tests.waiting import wait_until


async def test_one_worker_alternating_timeouts_and_quick_jobs(autojump_clock):
    """Each timeout cuts off its own attempt only; the job after it runs normally."""
    async with running_node(worker_count=1) as node:
        jobs = []
        for i in range(6):
            if i % 2:
                data = {"type": "sleep", "payload": {"seconds": 50}, "timeout": 1}
            else:
                data = {"type": "echo", "payload": {"i": i}}
            jobs.append(await node.submit({**data, "max_retries": 0}))
        done = [await terminal(node, j.id) for j in jobs]
    for i, job in enumerate(done):
        if i % 2:
            assert job.status == JobStatus.FAILED and job.error == "timed out after 1s"
            assert [a.outcome for a in job.attempts] == ["timeout"]
        else:
            assert job.status == JobStatus.COMPLETED and job.result == {"i": i}


async def test_a_deadline_met_does_not_follow_the_worker_to_its_next_job(autojump_clock):
    async with running_node(worker_count=1) as node:
        quick = await node.submit({"type": "echo", "timeout": 1, "max_retries": 0})
        slow = await node.submit({"type": "sleep", "payload": {"seconds": 3}, "max_retries": 0})
        assert (await terminal(node, quick.id)).status == JobStatus.COMPLETED
        done = await terminal(node, slow.id)
        assert done.status == JobStatus.COMPLETED and done.result == {"slept": 3}


async def test_cancel_running_job_then_the_same_worker_runs_the_next(autojump_clock):
    async with running_node(worker_count=1) as node:
        first = await node.submit({"type": "sleep", "payload": {"seconds": 1000}})
        queued = await node.submit({"type": "echo", "payload": {"after": "cancel"}})
        await wait_until(lambda: node.dispatcher.workers[0].job_id == first.id)
        await node.cancel(first.id)
        assert (await terminal(node, queued.id)).result == {"after": "cancel"}
        assert (await node.get(first.id)).status == JobStatus.CANCELLED  # type: ignore[union-attr]
        assert node.dispatcher.in_flight == 0


async def test_cancellation_landing_after_the_attempt_returned_loses_nothing(autojump_clock):
    """A processor that swallows its cancellation returns normally: its outcome stands,
    and the cancel still pending on the worker's scope does not cost the next job."""
    registry = Registry()

    @registry.processor("stubborn")
    async def stubborn(ctx: JobContext) -> str:
        try:
            await trio.sleep(1000)
        except trio.Cancelled:
            return "ignored the cancel"
        return "slept"

    async with running_node(registry, worker_count=1) as node:
        job = await node.submit({"type": "stubborn", "timeout": 1, "max_retries": 0})
        after = [await node.submit({"type": "echo", "payload": {"n": n}}) for n in range(3)]
        done = await terminal(node, job.id)
        assert done.status == JobStatus.COMPLETED and done.result == "ignored the cancel"
        for n, j in enumerate(after):
            assert (await terminal(node, j.id)).result == {"n": n}


async def test_a_burst_of_short_jobs_runs_each_once(autojump_clock):
    broker = MemoryBroker()
    async with running_node(broker=broker, worker_count=4) as node:
        jobs = await node.submit_many([{"type": "echo", "payload": {"n": n}} for n in range(500)])
        await wait_until(lambda: node.dispatcher.finished == 500, timeout=60)
        for n, job in enumerate(jobs):
            done = await node.get(job.id)
            assert done is not None and done.result == {"n": n}
            assert len(done.attempts) == 1 and done.attempts[0].outcome == "completed"
        assert node.dispatcher.claimed == 500


def record_claims(broker: MemoryBroker) -> list[int]:
    """Every claim's requested size, in order."""
    asked: list[int] = []
    claim = broker.claim

    async def counting(node_id: str, n: int, lease: float, now: float, scope=None):  # type: ignore[no-untyped-def]
        asked.append(n)
        return await claim(node_id, n, lease, now, scope)

    broker.claim = counting  # type: ignore[method-assign]
    return asked


async def test_slow_jobs_keep_the_plain_credit(autojump_clock):
    """With jobs that take seconds, the automatic prefetch stays WORKER_COUNT."""
    broker = MemoryBroker()
    asked = record_claims(broker)
    async with running_node(broker=broker, worker_count=2) as node:
        await node.submit_many([{"type": "sleep", "payload": {"seconds": 2}}] * 20)
        await wait_until(lambda: node.dispatcher.finished == 20, timeout=100)
        assert max(asked) <= 2 + 2  # idle workers + WORKER_COUNT
        assert node.dispatcher.prefetch_window == 2


async def test_short_jobs_grow_the_automatic_prefetch(autojump_clock):
    """The start rate is measured on trio's clock; jobs of 1 ms of virtual time on 10
    workers start 10,000 a second on any machine, however loaded or fast, past the
    DISPATCH_BATCH / PREFETCH_HORIZON = 2,500 a second that fills the window."""
    broker = MemoryBroker()
    asked = record_claims(broker)
    async with running_node(broker=broker, worker_count=10, dispatch_batch=50) as node:
        await node.submit_many([{"type": "sleep", "payload": {"seconds": 0.001}}] * 2000)
        await wait_until(lambda: node.dispatcher.finished == 2000, timeout=100)
        assert max(asked) == 50  # claims as large as DISPATCH_BATCH, not 10 + 10
        assert 10 < node.dispatcher.prefetch_window <= 100


async def test_slow_claims_grow_the_automatic_prefetch_over_their_round_trip(autojump_clock):
    """Claims that take 50 ms to come back (the Broker busy, as behind a leader's
    promotion steps) and jobs of 1 ms: a window of PREFETCH_HORIZON at the start rate
    alone kept each claim to idle workers + about 10 jobs, the workers idle most of each
    round trip, so the rate and with it the window stayed low. Covering the round
    trip, the claims grow to DISPATCH_BATCH."""
    broker = MemoryBroker()
    asked: list[int] = []
    claim = broker.claim

    async def slow(node_id: str, n: int, lease: float, now: float, scope=None):  # type: ignore[no-untyped-def]
        asked.append(n)
        await trio.sleep(0.05)
        return await claim(node_id, n, lease, now, scope)

    broker.claim = slow  # type: ignore[method-assign]
    async with running_node(broker=broker, worker_count=10, dispatch_batch=100) as node:
        await node.submit_many([{"type": "sleep", "payload": {"seconds": 0.001}}] * 3000)
        await wait_until(lambda: node.dispatcher.finished == 3000, timeout=100)
        assert max(asked) == 100


async def test_explicit_prefetch_is_never_exceeded(autojump_clock):
    """DISPATCH_PREFETCH set by hand is a hard limit, however fast jobs run."""
    broker = MemoryBroker()
    asked = record_claims(broker)
    async with running_node(broker=broker, worker_count=2, dispatch_prefetch=1) as node:
        await node.submit_many([{"type": "noop"}] * 300)
        await wait_until(lambda: node.dispatcher.finished == 300, timeout=60)
        assert max(asked) <= 2 + 1 and node.dispatcher.prefetch_window == 1


def test_batched_histogram_exposes_what_a_prometheus_histogram_does():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from jobtrio.histograms import BatchHistogram

    values = [0.0, 0.0004, 0.0005, 0.0006, 0.002, 0.7, 5.0, 31.0, 1e9, 0.001, 0.001]
    buckets = (0.0005, 0.001, 0.002, 0.5, 1, 30)
    exposed = []
    for batched in (False, True):
        registry = CollectorRegistry()
        if batched:
            h = BatchHistogram("h", "h", ["type"], registry=registry, buckets=buckets)
            h.labels("a").observe_many(values)
            h.labels("b").observe_many(values[:1])
        else:
            p = Histogram("h", "h", ["type"], registry=registry, buckets=buckets)
            for v in values:
                p.labels("a").observe(v)
            p.labels("b").observe(values[0])
        lines = generate_latest(registry).decode().splitlines()
        exposed.append([line for line in lines if "_created" not in line])
    assert exposed[0] == exposed[1]
    assert 'h_bucket{le="0.0005",type="a"} 3.0' in exposed[1]  # a bound holds values equal to it


async def test_a_crashed_dispatcher_is_restarted_and_hands_back_what_it_held(autojump_clock):
    """The supervisor restarts the dispatcher; jobs it held run again, none is lost."""

    class CrashingOnce(MemoryBroker):
        crashed = False

        async def finish(self, finishes, now):  # type: ignore[no-untyped-def]
            if not self.crashed:
                self.crashed = True
                raise RuntimeError("a bug in the finisher")
            return await super().finish(finishes, now)

    broker = CrashingOnce()
    async with running_node(broker=broker, worker_count=2) as node:
        jobs = await node.submit_many([{"type": "echo", "payload": {"i": i}} for i in range(20)])
        done = [await terminal(node, j.id) for j in jobs]
        restarts = node.metrics.registry.get_sample_value(
            "actor_restarts_total", {"actor": "dispatcher"}
        )
        assert node.dispatcher.in_flight == 0
    assert broker.crashed and restarts == 1
    assert all(job.status == JobStatus.COMPLETED for job in done)


async def test_a_worker_runs_a_few_quick_jobs_between_yields_and_no_more(autojump_clock):
    """A worker dealt its next job directly runs it without yielding first, up to
    ``WORKER_SLICE_JOBS`` jobs in a row (the clock stands still here, so the count
    decides): a worker's turn runs at most ``WORKER_SLICE_JOBS + 1`` jobs, and every job
    runs once. (trio may order two rounds' tasks so that another task sees two turns of
    the worker between two of its own: hence twice that; a yield before every job, as
    before, ran at most two jobs between its looks.)"""
    registry = Registry()
    runs: list[str] = []

    @registry.processor("quick")
    async def quick(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    async with running_node(registry, worker_count=1, dispatch_prefetch=100) as node:
        jobs = await node.submit_many([{"type": "quick"}] * 60)
        seen = [0]
        while len(runs) < len(jobs):  # another task: one look a turn
            await trio.lowlevel.checkpoint()
            seen.append(len(runs))
        steps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
        assert max(steps) <= 2 * (WORKER_SLICE_JOBS + 1)
        assert max(steps) > 2  # jobs in a row without a yield between them
        for job in jobs:
            assert (await terminal(node, job.id)).status == JobStatus.COMPLETED
    assert sorted(runs) == sorted(job.id for job in jobs)


async def test_a_worker_whose_jobs_await_does_not_yield_again_between_them(autojump_clock):
    """A job that awaited (a Redis round trip in a real body) let every other task run
    while it waited: the worker counts that as its slice's yield and runs the next job
    dealt to it without another pass through the scheduler (one a job cost the ``INCR``
    drain 4 us). Here each job awaits once: between the starts of two jobs dealt
    directly the worker's task passes through the scheduler once, the job's own wait;
    a worker that also yielded once a slice (``WORKER_SLICE_JOBS``) showed 2 there."""
    registry = Registry()
    points: list[int] = []
    steps: dict[trio.lowlevel.Task, int] = {}

    class Steps(trio.abc.Instrument):
        """Each task's steps: one a pass through the scheduler (trio's public hook)."""

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            steps[task] = steps.get(task, 0) + 1

    @registry.processor("awaits")
    async def awaits(ctx: JobContext) -> None:
        points.append(steps[trio.lowlevel.current_task()])
        await trio.lowlevel.checkpoint()

    instrument = Steps()
    trio.lowlevel.add_instrument(instrument)
    try:
        async with running_node(registry, worker_count=1, dispatch_prefetch=100) as node:
            jobs = await node.submit_many([{"type": "awaits"}] * 60)
            for job in jobs:
                assert (await terminal(node, job.id)).status == JobStatus.COMPLETED
    finally:
        trio.lowlevel.remove_instrument(instrument)
    gaps = [b - a for a, b in zip(points, points[1:], strict=False)]
    assert len(gaps) == 59
    # a job that came through the inbox (a claim's first) adds that wait: a gap or two
    assert gaps.count(1) >= 59 - 2, gaps
