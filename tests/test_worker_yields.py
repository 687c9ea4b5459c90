"""A worker whose job passed through trio's scheduler counts that as its slice's yield
(00c19ce; read since from trio's public ``Task.custom_sleep_data``, which trio sets to
None at every reschedule): jobs whose awaits never reach the scheduler, or that leave
something of their own in that attribute, do not buy a worker more jobs in a row."""

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


async def _leaves_sleep_data() -> None:
    """A body that leaves something of its own in its task's ``custom_sleep_data``
    without sleeping (as a sleep primitive that set it and then took a fast path would)."""
    trio.lowlevel.current_task().custom_sleep_data = "mine"


@pytest.mark.parametrize("body", [_no_scheduler_pass, _leaves_sleep_data], ids=["no-pass", "left"])
async def test_what_is_not_a_reschedule_never_skips_the_slice_yield(autojump_clock, body):
    """Only None in ``custom_sleep_data`` (trio rescheduled the task) counts as a yield;
    anything else a job left there is the safe side: the worker still yields once a
    slice, and never runs all its jobs in one turn."""
    steps = await _steps_between_looks(body)
    assert max(steps) <= 2 * (WORKER_SLICE_JOBS + 1), steps


def test_trio_clears_a_tasks_sleep_data_when_it_reschedules_it() -> None:
    """The contract the worker reads (trio's documented ``Task.custom_sleep_data``): set
    on a running task, it stays through an await that does not reschedule the task and
    is None after one that does. Fails loudly on a trio that changes it."""

    async def main() -> tuple[object, object]:
        task = trio.lowlevel.current_task()
        task.custom_sleep_data = workers._UNYIELDED
        await trio.lowlevel.checkpoint_if_cancelled()
        kept = task.custom_sleep_data
        await trio.lowlevel.checkpoint()
        return kept, task.custom_sleep_data

    assert trio.run(main) == (workers._UNYIELDED, None)
