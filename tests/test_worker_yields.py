"""Review of 00c19ce (a worker whose job passed through trio's scheduler counts that as
its slice's yield): jobs whose awaits never reach the scheduler do not buy a worker
more jobs in a row, and a trio without ``Task._schedule_points`` (the private count the
worker reads) falls back to a yield once a slice, as before the change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from jobtrio.actors.dispatch import workers
from jobtrio.actors.dispatch.workers import WORKER_SLICE_JOBS
from jobtrio.jobs import JobStatus
from jobtrio.processors import JobContext, Registry
from tests.test_node import running_node, terminal

JOBS = 60


async def _no_scheduler_pass() -> None:
    """Awaits that return without passing through trio's scheduler."""
    await trio.lowlevel.checkpoint_if_cancelled()  # not cancelled: no yield
    with trio.CancelScope(shield=True):
        pass


async def _set_event() -> None:
    event = trio.Event()
    event.set()
    await event.wait()  # a set Event still checkpoints: a real pass


async def _steps_between_looks(body: Callable[[], Awaitable[None]]) -> list[int]:
    """Jobs one worker ran between two turns of another task (one look a turn)."""
    registry = Registry()
    runs: list[str] = []

    @registry.processor("body")
    async def run(ctx: JobContext) -> None:
        runs.append(ctx.job_id)
        await body()

    async with running_node(registry, worker_count=1, dispatch_prefetch=100) as node:
        jobs = await node.submit_many([{"type": "body"}] * JOBS)
        seen = [0]
        with trio.fail_after(60):
            while len(runs) < len(jobs):
                await trio.lowlevel.checkpoint()
                seen.append(len(runs))
        for job in jobs:
            assert (await terminal(node, job.id)).status == JobStatus.COMPLETED
    assert sorted(runs) == sorted(job.id for job in jobs)
    return [b - a for a, b in zip(seen, seen[1:], strict=False)]


async def test_awaits_that_skip_the_scheduler_do_not_lengthen_a_workers_turn(autojump_clock):
    """A job that awaited without a pass through the scheduler (checkpoint_if_cancelled,
    a shielded no-op) is no yield: the worker still yields once ``WORKER_SLICE_JOBS``
    jobs, as with jobs that do not await (test_dispatcher_hotpath's bound)."""
    steps = await _steps_between_looks(_no_scheduler_pass)
    assert max(steps) <= 2 * (WORKER_SLICE_JOBS + 1), steps
    assert max(steps) > 2, steps  # but still runs jobs in a row


async def test_a_job_that_passes_through_the_scheduler_lets_others_run(autojump_clock):
    """A job awaiting a set Event passes through the scheduler: the other task gets a
    turn between every two such jobs (no job runs twice in one of its turns)."""
    steps = await _steps_between_looks(_set_event)
    assert max(steps) <= 2, steps


@pytest.mark.parametrize("body", [_no_scheduler_pass, _set_event], ids=["no-pass", "event"])
async def test_a_trio_without_the_schedule_count_yields_once_a_slice(
    autojump_clock, monkeypatch, body
):
    """``_schedule_points`` is trio's private count: without it (0 always) the worker
    must neither stall nor run jobs without yielding, but yield once a slice."""
    monkeypatch.setattr(workers, "_schedule_points", lambda task: 0)
    steps = await _steps_between_looks(body)
    assert max(steps) <= 2 * (WORKER_SLICE_JOBS + 1), steps


def test_the_worker_reads_a_count_trio_still_keeps() -> None:
    """The speed-up of 00c19ce silently goes if trio renames its private count (the
    worker then falls back): fail loudly here instead, on a trio upgrade."""

    async def main() -> tuple[int, int]:
        task = trio.lowlevel.current_task()
        before = workers._schedule_points(task)
        await trio.lowlevel.checkpoint_if_cancelled()
        same = workers._schedule_points(task)
        await trio.lowlevel.checkpoint()
        return same - before, workers._schedule_points(task) - before

    assert trio.run(main) == (0, 1)
