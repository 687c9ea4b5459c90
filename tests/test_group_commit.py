"""Concurrent single submissions share Broker enqueues, each still durable before it returns;
the node's dispatcher hears of a commit before its callers go on (``on_committed``)."""

from __future__ import annotations

import trio
import trio.testing

from jobtrio.actors.submitter import GroupCommit
from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.memory import MemoryBroker
from jobtrio.jobs import IdGenerator, validate_submission
from tests.test_node import running_node


class CountingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.fail = False

    async def enqueue(self, jobs, now):
        self.calls.append(len(jobs))
        await trio.sleep(0.01)  # a round trip, during which more requests arrive
        if self.fail:
            raise BackendUnavailable("memory", "down")
        return await super().enqueue(jobs, now)


async def test_concurrent_submissions_share_enqueues(autojump_clock):
    broker = CountingBroker()
    async with running_node(broker=broker) as node:
        results = []

        async def one(i: int) -> None:
            job = await node.submit({"type": "noop", "scheduled_at": 4e9, "payload": {"i": i}})
            assert (await broker.get(job.id)) is not None  # durable before it returned
            results.append(job)

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(one, i)
    assert len({j.id for j in results}) == 100
    assert sorted(j.payload["i"] for j in results) == list(range(100))
    assert sum(broker.calls) == 100
    assert len(broker.calls) < 10  # not one round trip each


async def test_an_outage_fails_exactly_the_callers_of_that_batch(autojump_clock):
    broker = CountingBroker()
    async with running_node(broker=broker) as node:
        broker.fail = True
        errors = []

        async def one() -> None:
            try:
                await node.submit({"type": "noop"})
            except BackendUnavailable as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        assert len(errors) == 20
        broker.fail = False
        job = await node.submit({"type": "noop"})
        assert await broker.get(job.id) is not None


async def test_submit_before_the_node_runs_goes_straight_to_the_broker():
    from jobtrio.actors.node import Node
    from jobtrio.backends.memory import MemoryStore
    from jobtrio.config import Settings

    broker = MemoryBroker()
    node = Node(Settings(), broker, MemoryStore())
    job = await node.submit({"type": "noop"})
    assert await broker.get(job.id) is not None


async def test_the_hook_hears_of_each_commit_before_its_callers_go_on() -> None:
    # the node wakes its dispatcher there: the claim goes out in the callers' round
    broker = CountingBroker()
    order: list[str] = []
    commit = GroupCommit(broker, lambda: 0.0, on_committed=lambda jobs: order.append("hook"))
    ids = IdGenerator()

    async def caller(i: int) -> None:
        [stored] = await commit.enqueue([validate_submission({"type": "noop"}, 0.0, ids=ids)])
        assert await broker.get(stored.id) is not None
        order.append(f"caller {i}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.run)
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as callers:
            for i in range(20):
                callers.start_soon(caller, i)
        nursery.cancel_scope.cancel()
    assert sum(broker.calls) == 20 and len(broker.calls) < 20
    assert order.count("hook") == len(broker.calls)
    # every commit's callers come after its hook: each run of callers follows a hook
    assert order[0] == "hook"
