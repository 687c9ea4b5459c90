"""Concurrent single submissions share Broker enqueues, each still durable before it returns;
the node's dispatcher hears of a commit before its callers go on (``on_committed``)."""

from __future__ import annotations

import trio
import trio.testing

from jobtrio.actors.submitter import GroupCommit
from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.memory import MemoryBroker
from jobtrio.jobs import IdGenerator
from jobtrio.submission import validate_submission
from tests.test_node import running_node
from tests.waiting import wait_until


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
    commit = GroupCommit(
        broker, lambda: 0.0, on_committed=lambda jobs, claimed: order.append("hook")
    )
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


class ClaimLoggingBroker(MemoryBroker):
    """Logs which call leased each job: a claim alone, or a claim made with an enqueue."""

    def __init__(self) -> None:
        super().__init__()
        self.leased_by: dict[str, str] = {}
        self.lose_reply = False

    async def claim(self, node_id, n, lease_seconds, now, scope=None):
        leases = await super().claim(node_id, n, lease_seconds, now, scope)
        self.leased_by.update((lease.job.id, "claim") for lease in leases)
        return leases

    async def enqueue_and_claim(self, jobs, now, node_id, n, lease_seconds, scope=None):
        stored = await MemoryBroker.enqueue(self, jobs, now)
        leases = await MemoryBroker.claim(self, node_id, n, lease_seconds, now, scope)
        self.leased_by.update((lease.job.id, "enqueue_and_claim") for lease in leases)
        if self.lose_reply:  # applied, but the answer never came
            raise BackendUnavailable("memory", "the reply was lost")
        return stored, leases


async def test_a_caller_that_finds_the_group_commit_idle_commits_in_its_own_task(
    autojump_clock,
):
    # with the dispatcher's claim to lend (an idle node): no hand-off to the run task (a
    # scheduling round on the job's way to its worker); callers that come while its commit
    # is in flight wait for the run task's next commit
    from jobtrio.actors.dispatch.claims import ClaimOffer
    from jobtrio.backends.base import ClaimScope

    tasks: list[trio.lowlevel.Task] = []

    class TaskLogging(CountingBroker):
        async def enqueue(self, jobs, now):
            tasks.append(trio.lowlevel.current_task())
            return await super().enqueue(jobs, now)

    broker = TaskLogging()
    answers: list = []
    commit = GroupCommit(
        broker,
        lambda: 0.0,
        lend_claim=lambda: ClaimOffer("n1", 0, 30.0, ClaimScope()),
        claim_answered=lambda offer, leases: answers.append(leases),
    )
    ids = IdGenerator()
    callers: list[trio.lowlevel.Task] = []

    async def caller(**fields) -> None:  # type: ignore[no-untyped-def]
        callers.append(trio.lowlevel.current_task())
        job = validate_submission({"type": "noop", **fields}, 0.0, ids=ids)
        [stored] = await commit.enqueue([job])
        assert await broker.get(stored.id) is not None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.run)
        await trio.testing.wait_all_tasks_blocked()
        await caller()
        assert tasks == callers and len(answers) == 1
        async with trio.open_nursery() as more:
            for _ in range(5):
                more.start_soon(caller)
        # a job that cannot run now borrows no claim: the run task commits it
        await caller(scheduled_at=4e9)
        nursery.cancel_scope.cancel()
    # the first of the five alone in its task, the four that came during it in one
    # commit of the run task's
    assert broker.calls == [1, 1, 4, 1]
    assert tasks[:2] == callers[:2]
    assert tasks[2] not in callers and tasks[3] == tasks[2]


async def test_a_job_submitted_to_an_idle_node_is_leased_by_its_enqueue(autojump_clock):
    from tests.test_node import terminal

    broker = ClaimLoggingBroker()
    async with running_node(broker=broker) as node:
        for _ in range(3):
            await trio.testing.wait_all_tasks_blocked()  # the claim loop waits for work
            job = await node.submit({"type": "noop"})
            assert (await terminal(node, job.id)).status == "completed"
            assert broker.leased_by[job.id] == "enqueue_and_claim"
        assert node.dispatcher.claimed == 3


async def test_a_lent_claim_without_an_answer_hands_its_leases_back(autojump_clock):
    # the enqueue and the claim were applied but the reply was lost: the submission fails
    # as any unanswered enqueue does, and the job the claim leased is handed back at once
    # (not left to its lease's expiry, an hour away) and run
    from tests.test_node import terminal

    broker = ClaimLoggingBroker()
    broker.lose_reply = True
    async with running_node(broker=broker, job_lease=3600.0) as node:
        await trio.testing.wait_all_tasks_blocked()
        try:
            await node.submit({"type": "noop"})
        except BackendUnavailable:
            pass
        else:
            raise AssertionError("the lost reply did not fail the submission")
        broker.lose_reply = False
        [job_id] = list(broker.leased_by)
        assert (await terminal(node, job_id)).status == "completed"
        assert node.dispatcher.handed_back == 1


class ClaimTimesBroker(MemoryBroker):
    """Logs each claim: (virtual time, jobs asked, jobs leased)."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[float, int, int]] = []

    async def claim(self, node_id, n, lease_seconds, now, scope=None):
        leases = await super().claim(node_id, n, lease_seconds, now, scope)
        self.claims.append((trio.current_time(), n, len(leases)))
        return leases


async def test_a_claim_that_came_back_short_is_not_followed_by_another_at_once(autojump_clock):
    # the Broker had no more for the node: a claim at once would come back empty (at a
    # few hundred jobs/s, one empty claim a job); the loop waits its first poll instead
    from tests.test_node import terminal

    broker = ClaimTimesBroker()
    async with running_node(broker=broker) as node:
        await trio.testing.wait_all_tasks_blocked()
        [job] = await broker.enqueue([validate_submission({"type": "noop"}, 0.0)], 0.0)
        node.dispatcher.wake()  # claimed by the loop's own claim (nothing lent)
        assert (await terminal(node, job.id)).status == "completed"
        short = [i for i, (_, n, got) in enumerate(broker.claims) if 0 < got < n]
        assert short, broker.claims
        for i in short:
            if i + 1 < len(broker.claims):
                assert broker.claims[i + 1][0] > broker.claims[i][0], broker.claims


class SlowClaimBroker(MemoryBroker):
    """A claim with a round trip (as SQLite's thread or a network's), announced."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = trio.Event()

    async def claim(self, node_id, n, lease_seconds, now, scope=None):
        self.claiming.set()
        await trio.sleep(0.01)
        return await super().claim(node_id, n, lease_seconds, now, scope)


async def test_a_stop_inside_the_lent_claim_still_answers_the_filed_submission(autojump_clock):
    # the Broker's default enqueue_and_claim (memory, SQLite): the enqueue was answered, and
    # the node began to stop during the claim made after it. The caller gets its stored job
    # (not "the node is stopping" for a job that is filed and will run: a client would
    # submit it again), and the claim's lease reaches the dispatcher (not left to expire)
    from jobtrio.actors.dispatch.claims import ClaimOffer
    from jobtrio.backends.base import ClaimScope

    broker = SlowClaimBroker()
    answers: list = []
    commit = GroupCommit(
        broker,
        trio.current_time,
        lend_claim=lambda: ClaimOffer("n1", 5, 30.0, ClaimScope()),
        claim_answered=lambda offer, leases: answers.append(leases),
    )
    scope = trio.CancelScope()

    async def run_commit() -> None:
        with scope:
            await commit.run()

    async def stop_inside_the_claim() -> None:
        await broker.claiming.wait()
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_commit)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(stop_inside_the_claim)
        [stored] = await commit.enqueue([validate_submission({"type": "noop"}, 0.0)])
    assert await broker.get(stored.id) is not None
    assert [[lease.job.id for lease in leases] for leases in answers] == [[stored.id]]


async def test_a_failing_claim_answer_still_answers_the_callers(autojump_clock):
    # the callers' answers are set before the dispatcher hears of the lent claim: a bug
    # there (here claim_answered raising) crashes the group commit, but no caller of the
    # batch is left waiting for an answer that would never come
    from jobtrio.actors.dispatch.claims import ClaimOffer
    from jobtrio.backends.base import ClaimScope

    def broken(offer, leases):
        raise RuntimeError("claim_answered broke")

    broker = MemoryBroker()
    commit = GroupCommit(
        broker,
        trio.current_time,
        lend_claim=lambda: ClaimOffer("n1", 5, 30.0, ClaimScope()),
        claim_answered=broken,
    )
    crashed = []

    async def run_commit() -> None:
        try:
            await commit.run()
        except RuntimeError as exc:
            crashed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_commit)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(60):
            [stored] = await commit.enqueue([validate_submission({"type": "noop"}, 0.0)])
    assert await broker.get(stored.id) is not None
    assert len(crashed) == 1


class HeldLentClaim(MemoryBroker):
    """An enqueue_and_claim held in flight while ``hold`` is set and not yet fired, the
    claims made meanwhile counted; its next finish fails once ``crash_next_finish`` is set
    (a bug in the dispatcher's finisher)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: trio.Event | None = None
        self.in_flight = False
        self.claims_while_lent = 0
        self.crash_next_finish = False

    async def enqueue_and_claim(self, jobs, now, node_id, n, lease_seconds, scope=None):
        if self.hold is not None:
            self.in_flight = True
            await self.hold.wait()
            self.in_flight = False
        return await super().enqueue_and_claim(jobs, now, node_id, n, lease_seconds, scope)

    async def claim(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.in_flight:
            self.claims_while_lent += 1
        return await super().claim(*args, **kwargs)

    async def finish(self, items, now):
        if self.crash_next_finish:
            self.crash_next_finish = False
            raise RuntimeError("a bug in the finisher")
        return await super().finish(items, now)


async def test_a_dispatcher_restarted_while_its_claim_is_lent_waits_for_that_claim(
    autojump_clock,
):
    # the dispatcher crashes (and restarts) while the group commit makes its lent claim:
    # the new claim loop waits for that claim's answer, as the old one did, instead of
    # claiming beside it (two claims of the loop's size at once)
    from tests.test_finisher_linger import gated
    from tests.test_node import terminal, wait_until

    registry, gates, runs = gated()
    broker = HeldLentClaim()
    async with running_node(registry, broker=broker) as node:
        await trio.testing.wait_all_tasks_blocked()
        await node.submit({"type": "gated", "payload": {"i": 0}})
        await wait_until(lambda: runs[0] == 1, timeout=10, message="job 0 to start")
        broker.hold = trio.Event()
        async with trio.open_nursery() as nursery:
            second: list = []

            async def submit_second() -> None:
                second.append(await node.submit({"type": "gated", "payload": {"i": 1}}))

            nursery.start_soon(submit_second)
            await wait_until(lambda: broker.in_flight, timeout=10, message="a lent claim")
            broker.crash_next_finish = True
            gates[0].set()  # its outcome's finish fails: the dispatcher crashes, restarts

            def restarts() -> float | None:
                return node.metrics.registry.get_sample_value(
                    "actor_restarts_total", {"actor": "dispatcher"}
                )

            await wait_until(restarts, timeout=30, message="the dispatcher to restart")
            await trio.sleep(5.0)  # virtual: the new loop's polls come and go
            assert broker.claims_while_lent == 0
            broker.hold.set()
        gates[1].set()
        assert (await terminal(node, second[0].id)).status == "completed"


async def test_a_claim_is_lent_once_at_a_time_and_not_while_one_is_unanswered(
    autojump_clock, monkeypatch
):
    # lend_claim's guards, on an idle node whose claim loop waits for work: one lent claim
    # at a time; none between an unanswered one and the loop's hand-back (the loop, woken,
    # hands back first); none left lent by an error building the offer
    async with running_node() as node:
        dispatcher = node.dispatcher
        await trio.testing.wait_all_tasks_blocked()  # the claim loop waits for work
        offer = dispatcher.lend_claim()
        assert offer is not None and offer.n > 0
        assert dispatcher.lend_claim() is None  # the first is still out
        dispatcher.claim_answered(offer, [])
        offer = dispatcher.lend_claim()
        assert offer is not None
        dispatcher.claim_answered(offer, None)  # no answer came: it may have leased jobs
        assert dispatcher.lend_claim() is None  # not before the loop has handed them back
        await trio.testing.wait_all_tasks_blocked()

        def broken_types() -> list[str]:
            raise RuntimeError("building the offer broke")

        monkeypatch.setattr(node.registry, "types", broken_types)
        try:
            dispatcher.lend_claim()
        except RuntimeError:
            pass
        else:
            raise AssertionError("the broken offer was built")
        monkeypatch.undo()
        offer = dispatcher.lend_claim()
        assert offer is not None  # the failed one left no claim lent
        dispatcher.claim_answered(offer, [])


async def test_a_claim_lent_while_the_loop_is_busy_claiming_is_not_lent(autojump_clock):
    # the loop claims (its claim in flight): a lent claim now would be a second claim
    # beside it
    broker = HeldClaim()
    async with running_node(broker=broker) as node:
        await trio.testing.wait_all_tasks_blocked()
        broker.hold = trio.Event()
        node.dispatcher.wake()
        await wait_until(lambda: broker.in_flight, timeout=10, message="the loop's claim")
        assert node.dispatcher.lend_claim() is None
        broker.hold.set()


class HeldClaim(MemoryBroker):
    """A claim held in flight while ``hold`` is set and not yet fired."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: trio.Event | None = None
        self.in_flight = False

    async def claim(self, node_id, n, lease_seconds, now, scope=None):
        if self.hold is not None and not self.hold.is_set():
            self.in_flight = True
            await self.hold.wait()
            self.in_flight = False
        return await super().claim(node_id, n, lease_seconds, now, scope)


async def test_a_loop_that_waited_for_the_lent_claim_claims_again_after_its_answer(
    autojump_clock,
):
    # the loop, woken while its claim is lent, waits for that claim's answer; once it has
    # come, the loop claims again (it must not wait on for an answer already given)
    from tests.test_node import terminal

    broker = HeldLentClaim()
    async with running_node(broker=broker) as node:
        await trio.testing.wait_all_tasks_blocked()
        broker.hold = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.submit, {"type": "noop"})
            await wait_until(lambda: broker.in_flight, timeout=10, message="a lent claim")
            node.dispatcher.wake()  # the loop now waits for the lent claim's answer
            await trio.testing.wait_all_tasks_blocked()
            broker.hold.set()
        broker.hold = None
        [job] = await broker.enqueue([validate_submission({"type": "noop"}, 0.0)], 0.0)
        node.dispatcher.wake()
        assert (await terminal(node, job.id)).status == "completed"


async def test_a_lent_claim_without_an_answer_wakes_the_loop_to_hand_back(mock_clock):
    # time stands still: the hand-back comes from the answer's wake-up, not a poll
    broker = ClaimLoggingBroker()
    broker.lose_reply = True
    async with running_node(broker=broker, job_lease=3600.0) as node:
        await trio.testing.wait_all_tasks_blocked()
        try:
            await node.submit({"type": "noop"})
        except BackendUnavailable:
            pass
        else:
            raise AssertionError("the lost reply did not fail the submission")
        broker.lose_reply = False
        await trio.testing.wait_all_tasks_blocked()
        assert node.dispatcher.handed_back == 1
        mock_clock.autojump_threshold = 0  # let the node's stop pass


async def test_a_lent_claim_that_came_back_full_is_followed_by_a_claim_at_once(mock_clock):
    # the lent claim (one job: DISPATCH_BATCH=1) took all it asked for: more may be
    # waiting, and the loop claims again at once (time stands still: not at its poll)
    from tests.test_finisher_linger import gated, started

    registry, gates, _ = gated()
    broker = ClaimLoggingBroker()
    async with running_node(registry, broker=broker, dispatch_batch=1, worker_count=2) as node:
        await trio.testing.wait_all_tasks_blocked()
        # one batch of the group commit (a caller of two jobs)
        jobs = [
            validate_submission({"type": "gated", "payload": {"i": i}}, trio.current_time())
            for i in range(2)
        ]
        await node.group_commit.enqueue(jobs)
        assert node.group_commit.batches == 1
        await started(node, 2)
        # the lent claim took one job, and the loop's own claim the other
        assert sorted(broker.leased_by.values()) == ["claim", "enqueue_and_claim"]
        for gate in gates[:2]:
            gate.set()
        mock_clock.autojump_threshold = 0


async def test_leases_a_lent_claim_brings_during_a_stop_are_handed_back_at_once(mock_clock):
    # the node began to stop (a job still running, so the stop waits for it) while the
    # lent claim was in flight and the claim loop waited for work (it has left by then):
    # the claim's leases go back to the Broker at once (released), not held through the
    # stop's grace. Time stands still: nothing here waits for a timer.
    from jobtrio.jobs import JobStatus
    from tests.test_finisher_linger import gated, settle, started

    registry, gates, runs = gated()
    broker = HeldLentClaim()
    async with running_node(registry, broker=broker, shutdown_grace=600.0) as node:
        await settle()
        await node.submit({"type": "gated", "payload": {"i": 0}})
        await started(node, 1)
        broker.hold = trio.Event()
        async with trio.open_nursery() as nursery:
            submitted: list = []

            async def submit() -> None:
                submitted.append(await node.submit({"type": "gated", "payload": {"i": 1}}))

            nursery.start_soon(submit)
            await settle()
            assert broker.in_flight
            node.request_stop()
            await settle()
            assert node.stopping
            broker.hold.set()
        await settle()
        job = await broker.get(submitted[0].id)
        assert job is not None and job.status is JobStatus.PENDING
        assert runs[1] == 0
        gates[0].set()
        mock_clock.autojump_threshold = 0  # let the node's stop pass


async def test_no_claim_is_lent_once_a_stop_has_begun(autojump_clock):
    # drain() stops the claiming before the loop has run again (it still waits for work,
    # so it looks idle): a claim lent now would lease jobs for a stopping node
    async with running_node() as node:
        await trio.testing.wait_all_tasks_blocked()  # the claim loop waits for work
        await node.dispatcher.drain(0.0)  # nothing in flight: returns without a yield
        assert node.dispatcher.lend_claim() is None


async def test_no_claim_is_lent_while_the_ready_queue_is_full_enough(mock_clock):
    # one worker, a window of 4: a claim of 5 brought 4 (short, so the loop waits for
    # work; time stands still, so it stays there), one runs and 3 wait; the loop would
    # claim nothing now, nor is a claim lent
    from tests.test_finisher_linger import gated, settle

    registry, gates, runs = gated()
    broker = MemoryBroker()
    async with running_node(registry, broker=broker, worker_count=1, dispatch_prefetch=4) as node:
        await settle()
        await broker.enqueue(
            [validate_submission({"type": "gated", "payload": {"i": i}}, 0.0) for i in range(4)],
            0.0,
        )
        node.dispatcher.wake()
        await settle()
        assert runs[:4] == [1, 0, 0, 0] and node.dispatcher.claimed == 4
        assert node.dispatcher.lend_claim() is None
        for gate in gates[:4]:
            gate.set()
        await settle()
        assert runs[:4] == [1, 1, 1, 1]
        mock_clock.autojump_threshold = 0


async def test_a_hand_back_after_a_lost_lent_claim_spares_the_jobs_the_node_holds(
    autojump_clock,
):
    # job 0 runs here; a lent claim's reply is lost: only the job that claim leased goes
    # back (not job 0, leased under the same node id), and the hand-back is done once
    # (later claims do not scan the Broker's leases again)
    from tests.test_finisher_linger import gated
    from tests.test_node import terminal

    class Counting(ClaimLoggingBroker):
        def __init__(self) -> None:
            super().__init__()
            self.scans = 0

        async def running(self):  # type: ignore[no-untyped-def]
            self.scans += 1
            return await super().running()

    registry, gates, runs = gated()
    broker = Counting()
    async with running_node(registry, broker=broker, job_lease=3600.0) as node:
        await trio.testing.wait_all_tasks_blocked()
        first = await node.submit({"type": "gated", "payload": {"i": 0}})
        await wait_until(lambda: runs[0] == 1, timeout=10, message="job 0 to start")
        await trio.testing.wait_all_tasks_blocked()
        broker.lose_reply = True
        try:
            await node.submit({"type": "gated", "payload": {"i": 1}})
        except BackendUnavailable:
            pass
        else:
            raise AssertionError("the lost reply did not fail the submission")
        broker.lose_reply = False
        await wait_until(lambda: runs[1] == 1, timeout=10, message="job 1 to run, handed back")
        assert node.dispatcher.handed_back == 1
        scans = broker.scans
        gates[1].set()
        [later] = await broker.enqueue([validate_submission({"type": "noop"}, 0.0)], 0.0)
        node.dispatcher.wake()
        assert (await terminal(node, later.id)).status == "completed"
        assert broker.scans == scans
        assert runs[0] == 1
        gates[0].set()
        assert (await terminal(node, first.id)).status == "completed"
    assert runs[:2] == [1, 1]


class HeldLoggedClaim(HeldClaim, ClaimLoggingBroker):
    """Logs which call leased each job; a claim is held in flight while ``hold`` is set
    and not yet fired (held first, then logged)."""


async def test_a_submission_during_the_loops_probe_borrows_the_claim_after_it(autojump_clock):
    # the claim loop, idle, was woken and its claim (a probe) is in flight when a job is
    # submitted: the group commit waits for the probe's answer (empty: the job was not
    # filed yet) and then makes the loop's claim with its enqueue, one call, instead of
    # an enqueue alone followed by a claim of the loop's own
    from tests.test_node import terminal

    broker = HeldLoggedClaim()
    async with running_node(broker=broker) as node:
        await trio.testing.wait_all_tasks_blocked()  # the claim loop waits for work
        broker.hold = trio.Event()
        node.dispatcher.wake()
        await wait_until(lambda: broker.in_flight, timeout=10, message="the loop's probe")
        assert node.dispatcher.probe_in_flight() is not None
        async with trio.open_nursery() as nursery:
            submitted: list = []

            async def submit() -> None:
                submitted.append(await node.submit({"type": "noop"}))

            nursery.start_soon(submit)
            await trio.testing.wait_all_tasks_blocked()
            assert not submitted  # it waits for the probe's answer
            broker.hold.set()
        [job] = submitted
        assert (await terminal(node, job.id)).status == "completed"
        assert broker.leased_by[job.id] == "enqueue_and_claim"
        assert node.dispatcher.probe_in_flight() is None


async def test_a_probe_without_an_answer_lets_the_waiting_submission_enqueue_alone(
    autojump_clock,
):
    # the probe the group commit waits for fails (no answer: it may have leased jobs):
    # no claim is lent before the loop has handed those back, so the submission is filed
    # by an enqueue alone, answered, and its job run all the same
    from tests.test_node import terminal

    class FailingProbe(HeldLoggedClaim):
        async def claim(self, node_id, n, lease_seconds, now, scope=None):
            if self.hold is not None and not self.hold.is_set():
                self.in_flight = True
                await self.hold.wait()
                self.in_flight = False
                self.hold = None
                raise BackendUnavailable("memory", "the reply was lost")
            return await super().claim(node_id, n, lease_seconds, now, scope)

    broker = FailingProbe()
    async with running_node(broker=broker) as node:
        await trio.testing.wait_all_tasks_blocked()
        hold = broker.hold = trio.Event()
        node.dispatcher.wake()
        await wait_until(lambda: broker.in_flight, timeout=10, message="the loop's probe")
        async with trio.open_nursery() as nursery:
            submitted: list = []

            async def submit() -> None:
                submitted.append(await node.submit({"type": "noop"}))

            nursery.start_soon(submit)
            await trio.testing.wait_all_tasks_blocked()
            assert not submitted
            hold.set()
        [job] = submitted
        assert (await terminal(node, job.id)).status == "completed"
        assert broker.leased_by[job.id] == "claim"
        assert node.dispatcher.probe_in_flight() is None
