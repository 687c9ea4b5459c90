"""The finisher gathers outcomes that end close together into one Broker call.

Jobs that await I/O end a few at a time; the finisher then lingers for more
(``FINISH_LINGER``) while workers still run jobs, so a busy node makes fewer
finish calls. These tests run with time standing still (trio's MockClock
without autojump): the linger's deadline never passes, so whatever is sent is
sent because the policy says so, not because a timer fired. They pin: outcomes
ending together share a call; a lone outcome goes at once, even beside a job
still running; a graceful stop sends what a linger holds; a crash hands what
a linger holds to the next finisher, which reports it (the jobs do not run again).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from jobtrio.backends.base import Finish
from jobtrio.backends.memory import MemoryBroker
from jobtrio.jobs import Job, JobStatus
from jobtrio.processors import JobContext, Registry
from tests.test_node import running_node, terminal


class FinishCounting(MemoryBroker):
    """The memory Broker, noting the outcomes of each finish call; its next claim fails
    once ``crash_next_claim`` is set (a bug in the dispatcher's claim loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.crash_next_claim = False

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        self.calls.append([item.outcome for item in items])
        return await super().finish(items, now)

    async def claim(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.crash_next_claim:
            self.crash_next_claim = False
            raise RuntimeError("a bug in the claim loop")
        return await super().claim(*args, **kwargs)


def gated() -> tuple[Registry, list[trio.Event], list[int]]:
    """A registry whose ``gated`` job ``i`` runs until gate ``i`` is set (counting runs)."""
    registry, gates, runs = Registry(), [trio.Event() for _ in range(8)], [0] * 8

    @registry.processor("gated")
    async def wait_for_gate(ctx: JobContext) -> int:
        i = ctx.payload["i"]
        runs[i] += 1
        await gates[i].wait()
        return i

    return registry, gates, runs


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def started(node, n: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        if node.dispatcher.started >= n:
            return
        await settle()
        await trio.lowlevel.checkpoint()
    raise AssertionError(f"{n} jobs did not start")


async def test_outcomes_ending_together_share_a_finish_call(mock_clock):
    """Two jobs end together while two run on: the finisher waits for them (one call of
    four; before the linger: calls of 2, 1 and 1)."""
    registry, gates, _ = gated()
    broker = FinishCounting()
    async with running_node(registry, broker=broker, worker_count=4) as node:
        await node.submit_many([{"type": "gated", "payload": {"i": i}} for i in range(4)])
        await started(node, 4)
        gates[0].set()
        gates[1].set()
        await settle()
        assert broker.calls == []  # held: two workers still run jobs
        gates[2].set()
        await settle()
        assert broker.calls == []
        gates[3].set()
        await settle()
        assert broker.calls == [["completed"] * 4]  # the last job ended: no one to wait for
        mock_clock.autojump_threshold = 0  # let the node's stop pass


async def test_a_lone_outcome_is_sent_at_once_beside_a_running_job(mock_clock):
    registry, gates, _ = gated()
    broker = FinishCounting()
    async with running_node(registry, broker=broker, worker_count=4) as node:
        await node.submit({"type": "gated", "payload": {"i": 0}})
        await started(node, 1)
        echo = await node.submit({"type": "echo"})
        await started(node, 2)
        await settle()
        assert broker.calls == [["completed"]]
        assert (await node.get(echo.id)).status == JobStatus.COMPLETED  # type: ignore[union-attr]
        gates[0].set()
        await settle()
        assert broker.calls == [["completed"], ["completed"]]
        mock_clock.autojump_threshold = 0


async def test_a_graceful_stop_sends_what_a_linger_holds(mock_clock):
    registry, gates, _ = gated()
    broker = FinishCounting()
    async with running_node(registry, broker=broker, worker_count=4) as node:
        jobs = await node.submit_many([{"type": "gated", "payload": {"i": i}} for i in range(3)])
        await started(node, 3)
        gates[0].set()
        gates[1].set()
        await settle()
        assert broker.calls == []  # lingering for the third
        node.request_stop()
        await settle()
        assert broker.calls == [["completed"] * 2]  # the stop did not wait for it
        gates[2].set()
        await settle()
        assert broker.calls == [["completed"] * 2, ["completed"]]
        mock_clock.autojump_threshold = 0
        for job in jobs:
            assert (await node.get(job.id)).status == JobStatus.COMPLETED  # type: ignore[union-attr]


async def test_a_crash_while_lingering_reports_the_held_outcomes(mock_clock):
    """The dispatcher crashes while its finisher holds two outcomes: the restarted one sends
    them as completed (they do not run again); the job cut off by the crash runs again."""
    registry, gates, runs = gated()
    broker = FinishCounting()
    async with running_node(registry, broker=broker, worker_count=4) as node:
        jobs = await node.submit_many([{"type": "gated", "payload": {"i": i}} for i in range(3)])
        await started(node, 3)
        gates[0].set()
        gates[1].set()
        await settle()
        assert broker.calls == []  # lingering for the third
        broker.crash_next_claim = True
        mock_clock.autojump_threshold = 0  # the supervisor's restart delay passes
        node.dispatcher.wake()
        done = [await terminal(node, job.id) for job in jobs[:2]]
        assert [job.status for job in done] == [JobStatus.COMPLETED] * 2
        assert [len(job.attempts) for job in done] == [1, 1]
        gates[2].set()
        third = await terminal(node, jobs[2].id)
        assert third.status == JobStatus.COMPLETED
        assert not broker.crash_next_claim
        restarts = node.metrics.registry.get_sample_value(
            "actor_restarts_total", {"actor": "dispatcher"}
        )
        assert restarts == 1
    assert runs[:3] == [1, 1, 2]


async def test_a_linger_stops_at_the_target_number_of_outcomes(mock_clock):
    """Two jobs end (the finisher lingers), then 64 more while one runs on: the finisher
    stops gathering at ``FINISH_TARGET`` (64) outcomes and sends, without waiting for the
    last job."""
    from jobtrio.actors.dispatch.finisher import FINISH_TARGET

    registry = Registry()
    gates = {"two": trio.Event(), "many": trio.Event(), "last": trio.Event()}

    @registry.processor("wait")
    async def wait(ctx: JobContext) -> None:
        await gates[ctx.payload["gate"]].wait()

    broker = FinishCounting()
    names = ["two"] * 2 + ["many"] * FINISH_TARGET + ["last"]
    async with running_node(registry, broker=broker, worker_count=len(names)) as node:
        await node.submit_many([{"type": "wait", "payload": {"gate": g}} for g in names])
        await started(node, len(names))
        gates["two"].set()
        await settle()
        assert broker.calls == []  # lingering: the others still run
        gates["many"].set()
        await settle()
        assert broker.calls == [["completed"] * (2 + FINISH_TARGET)]
        gates["last"].set()
        await settle()
        assert broker.calls[1:] == [["completed"]]
        mock_clock.autojump_threshold = 0
