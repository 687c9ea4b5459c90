"""Leader duties: reconciliation keeps to a bounded share of the leader's time, and a
burst of due jobs is promoted in fenced steps that keep up with the workers."""

from __future__ import annotations

import pytest
import trio

from jobtrio.actors.leader import PROMOTE_GRACE, PROMOTE_STEP, LeaderDuties
from jobtrio.actors.leadership import Leadership
from jobtrio.actors.recorder import Recorder
from jobtrio.backends.base import FencedError, JobQuery, Page
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.events import EventBus
from jobtrio.jobs import IdGenerator, Job
from jobtrio.submission import validate_submission


class SlowStore(MemoryStore):
    """Every query page takes a (virtual) second: a Store with a huge backlog."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    async def query(self, query: JobQuery) -> Page:
        self.queries += 1
        await trio.sleep(1.0)
        return await super().query(query)


def duties(store: SlowStore, broker: MemoryBroker, *, copies: bool = True) -> LeaderDuties:
    settings = Settings(node_id="n1")
    return LeaderDuties(
        settings,
        broker,
        store,
        Recorder(store, copies=copies),
        Leadership("n1", settings.election_algorithm),
        EventBus("n1", trio.current_time),
        trio.current_time,
        on_jobs_ready=lambda: None,
        housekeeping_every=30.0,
    )


async def test_a_slow_reconciliation_waits_in_proportion_before_the_next(autojump_clock):
    store, broker = SlowStore(), MemoryBroker()
    leader = duties(store, broker)
    epoch = await broker.acquire_epoch("n1", trio.current_time())
    passes = []
    for _ in range(40):  # housekeeping every 30 s for 20 minutes
        before = store.queries
        await leader.housekeeping(epoch, trio.current_time())
        if store.queries > before:
            passes.append(trio.current_time())
        await trio.sleep(30.0)
    # a pass takes 1 s, so the next may start 1 / share = 20 s later: every housekeeping
    # runs one while they take less than the share of the time
    assert len(passes) == 40
    # a pass of 3 s (three pages) may not start for 60 s: every other housekeeping
    store.queries = 0
    leader.next_reconcile = -1.0

    async def three_pages(query: JobQuery) -> Page:
        store.queries += 1
        await trio.sleep(3.0)
        return Page([], None)

    store.query = three_pages  # type: ignore[method-assign]
    for _ in range(10):
        await leader.housekeeping(epoch, trio.current_time())
        await trio.sleep(30.0)
    assert store.queries == 5


NOW = 1_700_000_000.0


#: When the leader promotes a burst due at NOW + 1: once it has been due for the grace.
PROMOTED_AT = NOW + 1 + PROMOTE_GRACE


def due_burst(n: int) -> list[Job]:
    ids = IdGenerator()
    return [
        validate_submission({"type": "noop", "scheduled_at": NOW + 1}, NOW, ids=ids)
        for _ in range(n)
    ]


async def test_the_leader_promotes_only_what_has_been_due_for_the_grace():
    """Claims take due jobs themselves: the leader leaves a job alone until it has been
    due for ``PROMOTE_GRACE`` (no promotion move for a burst the claims drain), then
    promotes what no claim took (here no claim runs), fenced as ever."""
    broker = MemoryBroker()
    leader = duties(SlowStore(), broker)
    burst = due_burst(3)
    await broker.enqueue(burst, NOW)
    epoch = await broker.acquire_epoch("n1", NOW)
    await leader.tick(epoch, NOW + 1)
    await leader.tick(epoch, PROMOTED_AT - 0.01)
    assert leader.promoted == 0 and (await broker.depths())["scheduled"] == 3
    await leader.tick(epoch, PROMOTED_AT)
    assert leader.promoted == 3 and (await broker.depths())["pending"] == 3


async def test_a_burst_is_promoted_in_steps_within_one_tick():
    broker = MemoryBroker()
    leader = duties(SlowStore(), broker)
    burst = due_burst(PROMOTE_STEP * 2 + 500)
    await broker.enqueue(burst, NOW)
    epoch = await broker.acquire_epoch("n1", NOW)
    await leader.tick(epoch, PROMOTED_AT)
    # one tick moved them all (one step a tick left 1500 scheduled for two more ticks)
    assert leader.promoted == len(burst)
    depths = await broker.depths()
    assert depths["scheduled"] == 0 and depths["pending"] == len(burst)


class DeposedAfterOneStep(MemoryBroker):
    """Another node takes the leadership while this leader's first promotion step lands."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        promoted = await super().promote_due(now, epoch, limit, grace)
        self.steps += 1
        if self.steps == 1:
            await self.acquire_epoch("n2", now)
        return promoted


@pytest.mark.parametrize("copies", [True, False], ids=["jobs", "counts"])
async def test_a_burst_meeting_a_failover_is_promoted_and_claimed_once(copies: bool):
    broker = DeposedAfterOneStep()
    first = duties(SlowStore(), broker, copies=copies)
    second = duties(SlowStore(), broker, copies=copies)
    burst = due_burst(PROMOTE_STEP * 2 + 500)
    await broker.enqueue(burst, NOW)
    e1 = await broker.acquire_epoch("n1", NOW)
    with pytest.raises(FencedError):
        await first.tick(e1, PROMOTED_AT)  # its second step is refused
    assert first.promoted == PROMOTE_STEP
    await second.tick(await broker.current_epoch(), PROMOTED_AT)
    assert first.promoted + second.promoted == len(burst)
    claimed: list[str] = []
    for _ in range(5):  # 2500 jobs: four claims, then nothing
        claimed += [lease.job.id for lease in await broker.claim("n", 700, 30, PROMOTED_AT + 1)]
    assert sorted(claimed) == sorted(job.id for job in burst)  # none lost, none twice


class CountingBroker(MemoryBroker):
    """Counts which promotion the leader asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        self.asked.append("jobs")
        return await super().promote_due(now, epoch, limit, grace)

    async def promote_due_count(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> int:
        self.asked.append("count")
        return len(await super().promote_due(now, epoch, limit, grace))


@pytest.mark.parametrize("copies", [True, False])
async def test_the_leader_asks_for_the_promoted_jobs_only_when_it_records_them(copies: bool):
    """A Broker that writes the records itself leaves the recorder nothing to keep: the
    leader asks for the count (Redis then reads and sends no bodies), and still promotes
    the whole burst in steps within the tick."""
    broker = CountingBroker()
    leader = duties(SlowStore(), broker, copies=copies)
    burst = due_burst(PROMOTE_STEP + 1)
    await broker.enqueue(burst, NOW)
    await leader.tick(await broker.acquire_epoch("n1", NOW), PROMOTED_AT)
    assert broker.asked == ["jobs" if copies else "count"] * 2
    assert leader.promoted == len(burst)
    assert (await broker.depths())["pending"] == len(burst)
