"""The path of a single submission to an idle node, from the submit call to its worker."""

from __future__ import annotations

import trio
import trio.testing

from jobtrio.processors import JobContext, Registry
from tests.test_group_commit import ClaimLoggingBroker
from tests.test_node import running_node, terminal


async def test_a_job_leased_by_its_enqueue_begins_before_its_submitter_goes_on(autojump_clock):
    # The lent claim's worker and the submitter are woken in the same scheduling round,
    # which trio runs in an order it draws at random: without the submitter's yield about
    # half of these jobs would begin only after their submit call had returned.
    returned: list[str] = []
    began: dict[str, int] = {}
    registry = Registry()

    async def probe(ctx: JobContext) -> None:
        began[ctx.job_id] = len(returned)

    registry.register("probe", probe)
    broker = ClaimLoggingBroker()
    async with running_node(registry, broker=broker) as node:
        for i in range(24):
            await trio.testing.wait_all_tasks_blocked()  # the claim loop waits for work
            job = await node.submit({"type": "probe"})
            assert broker.leased_by[job.id] == "enqueue_and_claim"
            assert began.get(job.id) == i, f"job {i} had not begun when its submit returned"
            returned.append(job.id)
            assert (await terminal(node, job.id)).status == "completed"


async def test_a_submission_that_is_not_dealt_at_once_does_not_wait_for_a_worker(autojump_clock):
    # A job no worker was dealt (all busy) is answered without the yield: waits_for_worker
    # is about a job dealt this round, not any job of the node.
    registry = Registry()
    release, running = trio.Event(), trio.Event()

    async def hold(ctx: JobContext) -> None:
        running.set()
        await release.wait()

    registry.register("hold", hold)
    async with running_node(registry, worker_count=1) as node:
        first = await node.submit({"type": "hold"})
        with trio.fail_after(5):
            await running.wait()
        assert not node.dispatcher.waits_for_worker(first.id)  # begun
        second = await node.submit({"type": "hold"})
        assert not node.dispatcher.waits_for_worker(second.id)  # not dealt: no worker idle
        release.set()
        assert (await terminal(node, second.id)).status == "completed"


async def test_a_plain_plans_claim_scope_is_kept_until_the_types_change(autojump_clock):
    registry = Registry()

    async def noop(ctx: JobContext) -> None:
        return None

    registry.register("first", noop)
    async with running_node(registry) as node:
        claims = node.dispatcher._claims
        scope = claims._scope()
        assert claims._scope() is scope  # kept, not rebuilt for each claim
        registry.register("second", noop)  # a type registered while the node runs
        changed = claims._scope()
        assert changed is not scope and changed.types is not None
        assert {"first", "second"} <= changed.types
        job = await node.submit({"type": "second"})
        assert (await terminal(node, job.id)).status == "completed"


async def test_a_weighted_plans_claim_scope_is_drawn_for_each_claim(autojump_clock):
    async with running_node(queues=(("a", "b"), (1, 1))) as node:
        claims = node.dispatcher._claims
        orders = {claims._scope().queues for _ in range(64)}
        assert orders == {("a", "b"), ("b", "a")}
