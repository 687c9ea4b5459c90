"""Leader housekeeping keeps its reconciliation to a bounded share of the leader's time."""

from __future__ import annotations

import trio

from jobtrio.actors.leader import LeaderDuties
from jobtrio.actors.leadership import Leadership
from jobtrio.actors.recorder import Recorder
from jobtrio.backends.base import JobQuery, Page
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.events import EventBus


class SlowStore(MemoryStore):
    """Every query page takes a (virtual) second: a Store with a huge backlog."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    async def query(self, query: JobQuery) -> Page:
        self.queries += 1
        await trio.sleep(1.0)
        return await super().query(query)


def duties(store: SlowStore, broker: MemoryBroker) -> LeaderDuties:
    settings = Settings(node_id="n1")
    return LeaderDuties(
        settings,
        broker,
        store,
        Recorder(store),
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
