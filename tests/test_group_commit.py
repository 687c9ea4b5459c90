"""The group commit of single submissions (``actors/submitter.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from jobtrio.actors.submitter import GroupCommit
from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.memory import MemoryBroker
from jobtrio.jobs import IdGenerator, Job, validate_submission

NOW = 1_700_000_000.0
ids = IdGenerator()


class CountingBroker(MemoryBroker):
    """Counts enqueue calls; fails the calls while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.down = False

    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        self.calls.append(len(jobs))
        await trio.sleep(0.01)  # a round trip, during which more callers arrive
        if self.down:
            raise BackendUnavailable("memory", "down for the test")
        return await super().enqueue(jobs, now)


def job() -> Job:
    return validate_submission({"type": "noop"}, NOW, ids=ids)


async def test_concurrent_callers_share_a_commit_and_are_told_after_the_hook() -> None:
    broker = CountingBroker()
    order: list[str] = []
    commit = GroupCommit(broker, lambda: NOW, on_committed=lambda jobs: order.append("hook"))

    async def caller(i: int) -> None:
        [stored] = await commit.enqueue([job()])
        assert await broker.get(stored.id) is not None  # durable before the caller returns
        order.append(f"caller {i}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.run)
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as callers:
            for i in range(20):
                callers.start_soon(caller, i)
        nursery.cancel_scope.cancel()
    assert sum(broker.calls) == 20 and len(broker.calls) < 20  # shared commits
    # each commit's hook ran before any of its callers went on (the node wakes its
    # dispatcher there, so the claim goes out in the same round as the answers)
    assert order[0] == "hook" and order.count("hook") == len(broker.calls)
    first_callers = order.index("hook", 1) if order.count("hook") > 1 else len(order)
    assert all(o.startswith("caller") for o in order[1:first_callers])


async def test_an_outage_fails_the_callers_of_that_commit_only() -> None:
    broker = CountingBroker()
    commit = GroupCommit(broker, lambda: NOW)
    broker.down = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.run)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(BackendUnavailable):
            await commit.enqueue([job()])
        broker.down = False
        [stored] = await commit.enqueue([job()])
        assert (await broker.get(stored.id)) is not None
        nursery.cancel_scope.cancel()
    assert broker.calls == [1, 1]
