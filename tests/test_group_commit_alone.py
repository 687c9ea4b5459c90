"""A caller's own commit (``GroupCommit._commit_alone``) and the run task: callers
that come while it is in flight wait for it, and the run task's commit of them
begins as soon as it ends (woken, not left to its idle wait's timeout)."""

from __future__ import annotations

import trio
import trio.testing

from jobtrio.actors.dispatch.claims import ClaimOffer
from jobtrio.actors.submitter import GroupCommit
from jobtrio.backends.base import ClaimScope
from jobtrio.backends.memory import MemoryBroker
from jobtrio.jobs import IdGenerator, Job
from jobtrio.submission import validate_submission


class GatedBroker(MemoryBroker):
    """Logs each enqueue's jobs as it begins; the first waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: list[list[str]] = []
        self.gate = trio.Event()

    async def enqueue(self, jobs: list[Job], now: float) -> list[Job]:  # type: ignore[override]
        self.begun.append([job.id for job in jobs])
        if len(self.begun) == 1:
            await self.gate.wait()
        return await super().enqueue(jobs, now)


def _idle_node_commit(broker: GatedBroker) -> GroupCommit:
    """The group commit of an idle node: its dispatcher lends a claim at once."""
    return GroupCommit(
        broker, lambda: 0.0, lend_claim=lambda: ClaimOffer("n1", 0, 30.0, ClaimScope())
    )


async def test_callers_during_an_own_commit_wait_for_it_then_go_at_once(mock_clock) -> None:
    # mock_clock stands still: the run task's idle wait (1 s) never times out here, so
    # only the own commit's wake-up can start the run task's commit
    broker = GatedBroker()
    commit = _idle_node_commit(broker)
    ids = IdGenerator()
    done: list[str] = []

    async def caller(name: str) -> None:
        job = validate_submission({"type": "noop"}, 0.0, ids=ids)
        [stored] = await commit.enqueue([job])
        assert await broker.get(stored.id) is not None
        done.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(caller, "alone")
        await trio.testing.wait_all_tasks_blocked()
        assert len(broker.begun) == 1  # the first caller's own commit, held at the gate
        nursery.start_soon(caller, "second")
        nursery.start_soon(caller, "third")
        await trio.testing.wait_all_tasks_blocked()
        # no second commit while the first is in flight
        assert len(broker.begun) == 1 and done == []
        broker.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert done[0] == "alone" and sorted(done[1:]) == ["second", "third"]
        assert [len(b) for b in broker.begun] == [1, 2]  # the two in one run-task commit
        nursery.cancel_scope.cancel()


async def test_no_caller_commits_alone_while_the_run_task_commits(mock_clock) -> None:
    broker = GatedBroker()
    commit = _idle_node_commit(broker)
    ids = IdGenerator()
    done: list[str] = []

    async def caller(name: str, fields: dict[str, object]) -> None:
        job = validate_submission({"type": "noop", **fields}, 0.0, ids=ids)
        await commit.enqueue([job])
        done.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.run)
        await trio.testing.wait_all_tasks_blocked()
        # a job that cannot run now lends no claim: the run task commits it (gated)
        nursery.start_soon(caller, "scheduled", {"scheduled_at": 4e9})
        await trio.testing.wait_all_tasks_blocked()
        assert len(broker.begun) == 1
        nursery.start_soon(caller, "pending", {})
        await trio.testing.wait_all_tasks_blocked()
        assert len(broker.begun) == 1 and done == []  # it waits for the run task's next
        broker.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert done == ["scheduled", "pending"] and len(broker.begun) == 2
        nursery.cancel_scope.cancel()


async def test_a_caller_back_from_its_own_commit_queues_behind_the_waiting(mock_clock) -> None:
    # the first caller's task goes on without a checkpoint and submits again while the
    # caller that came during its commit still waits for the run task: that one's job
    # is committed first (its turn), the second one's after it
    broker = GatedBroker()
    commit = _idle_node_commit(broker)
    ids = IdGenerator()
    first, again, waiting = (validate_submission({"type": "noop"}, 0.0, ids=ids) for _ in "abc")

    async def twice() -> None:
        await commit.enqueue([first])
        await commit.enqueue([again])

    async def one() -> None:
        await commit.enqueue([waiting])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(twice)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        broker.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        order = [job_id for begun in broker.begun for job_id in begun]
        assert order == [first.id, waiting.id, again.id]
        nursery.cancel_scope.cancel()
