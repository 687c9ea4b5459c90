"""The leader's purge with a Store the Broker does not write: no finished job leaves the
Broker before its final snapshot is in the Store.

A job's every snapshot can die in its node's recorder (the node was cut off from
MongoDB, then crashed); reconciliation moves only records the Store has, so before
this the job had no record at all once ``FINISHED_JOB_TTL`` purged it, and its result
was gone (``store_has_every_job`` in docs/simulation.md). Every test here runs on every
Broker (``broker`` fixture: memory, SQLite, Redis, Redis keeping records of its own
Store) with a memory Store beside it, which none of them writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
import trio

from jobtrio.actors import leader as leader_module
from jobtrio.actors.leader import LeaderDuties
from jobtrio.actors.leadership import Leadership
from jobtrio.actors.node import Node
from jobtrio.actors.recorder import Recorder
from jobtrio.backends.base import (
    BackendUnavailable,
    Broker,
    Finish,
    RecordRefused,
    StateConflict,
)
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.events import EventBus
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.processors import Registry
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.0
TTL = 30.0
ids = IdGenerator()


class FlakyStore(MemoryStore):
    """A Store that can be unreachable (``down``), as MongoDB in an outage."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def put_many(self, jobs: Sequence[Job]) -> None:
        if self.down:
            raise BackendUnavailable("store", "unreachable")
        await super().put_many(jobs)


class RefusingStore(MemoryStore):
    """A Store that cannot hold some records, as MongoDB refuses a document over 16 MiB:
    a batch holding one fails whole (pymongo's DocumentTooLarge), every time."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = refuse
        self.calls = 0

    async def put_many(self, jobs: Sequence[Job]) -> None:
        self.calls += 1
        too_big = [job.id for job in jobs if job.id in self.refuse]
        if too_big:
            raise RecordRefused("store", f"document of {too_big[0]} is too large")
        await super().put_many(jobs)


def duties(broker: Broker, store: MemoryStore) -> LeaderDuties:
    settings = Settings(node_id="n1", finished_job_ttl=TTL)
    return LeaderDuties(
        settings,
        broker,
        store,
        Recorder(store),  # never run: whatever it would write is lost with the node
        Leadership("n1", settings.election_algorithm),
        EventBus("n1", trio.current_time),
        trio.current_time,
        on_jobs_ready=lambda: None,
    )


async def finished_unrecorded(broker: Broker) -> Job:
    """A job enqueued, run and completed with a result, none of whose snapshots reached
    the Store: the Broker's answers were handed to recorders that died."""
    job = validate_submission({"type": "noop"}, NOW, ids=ids)
    await broker.enqueue([job], NOW)
    [lease] = await broker.claim("n2", 1, 30, NOW)
    [done] = await broker.finish(
        [Finish(job.id, lease.token, "completed", worker_id="w-1", result={"answer": 42})],
        NOW + 1,
    )
    assert done is not None and done.status == JobStatus.COMPLETED
    return done


async def test_a_job_whose_every_snapshot_was_lost_is_recorded_before_its_purge(broker):
    store = MemoryStore()
    leader = duties(broker, store)
    assert not broker.writes_records_of(store)
    epoch = await broker.acquire_epoch("n1", NOW)
    done = await finished_unrecorded(broker)
    assert await store.get(done.id) is None
    await leader.housekeeping(epoch, NOW + 1 + TTL + 1)
    assert leader.purged == 1
    assert await broker.get(done.id) is None
    record = await store.get(done.id)
    assert record is not None, "the job was purged without a record: its result is gone"
    assert record.status == JobStatus.COMPLETED and record.result == {"answer": 42}
    assert record.version == done.version and record.worker_id == "w-1"


async def test_nothing_is_purged_while_the_store_is_unreachable(broker):
    store = FlakyStore()
    leader = duties(broker, store)
    epoch = await broker.acquire_epoch("n1", NOW)
    done = await finished_unrecorded(broker)
    store.down = True
    with pytest.raises(BackendUnavailable):  # the leader's loop postpones the duty
        await leader.housekeeping(epoch, NOW + 1 + TTL + 1)
    assert leader.purged == 0
    held = await broker.get(done.id)
    assert held is not None and held.status == JobStatus.COMPLETED
    store.down = False  # the next housekeeping records it, then purges it
    await leader.housekeeping(epoch, NOW + 1 + TTL + 2)
    assert leader.purged == 1 and await broker.get(done.id) is None
    record = await store.get(done.id)
    assert record is not None and record.result == {"answer": 42}


async def test_a_newer_record_is_never_moved_back_by_the_purge(broker):
    """The Store's put keeps the highest version: a record that is already final (the
    recorder wrote it) stays as it is, and the job is still purged."""
    store = MemoryStore()
    leader = duties(broker, store)
    epoch = await broker.acquire_epoch("n1", NOW)
    done = await finished_unrecorded(broker)
    newer = done.copy()
    newer.version += 1
    newer.result = {"answer": "newer"}
    await store.put_many([newer])
    await leader.housekeeping(epoch, NOW + 1 + TTL + 1)
    assert leader.purged == 1
    record = await store.get(done.id)
    assert record is not None and record.result == {"answer": "newer"}


async def test_a_cancel_of_a_purged_job_finds_its_record(broker):
    """Before, the job purged without any record answered a cancel with 404 (not found):
    now its record says how it ended (409 via ``StateConflict``)."""
    store = MemoryStore()
    node = Node(
        Settings(node_id="n1", finished_job_ttl=TTL),
        broker,
        store,
        Registry(),
        clock=lambda: NOW + 1 + TTL + 1,
    )
    epoch = await broker.acquire_epoch("n1", NOW)
    done = await finished_unrecorded(broker)
    await node.duties.housekeeping(epoch, NOW + 1 + TTL + 1)
    assert node.duties.purged == 1
    with pytest.raises(StateConflict, match="already completed"):
        await node.cancel(done.id)


class CountingBroker(MemoryBroker):
    """Counts the leader's reads of the jobs due for a purge."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        self.reads += 1
        return await super().finished_due(older_than, limit, max_bytes, skip)


async def test_a_store_outage_postpones_the_purge_to_the_next_housekeeping_logged_once(
    autojump_clock, caplog
):
    """The Store down, the leader's loop tries the purge again at the next housekeeping,
    not at every tick (it read a page of finished jobs from the Broker and logged a
    warning 10 times a second); the outage is logged when it starts and when it ends."""
    caplog.set_level(logging.INFO, "jobtrio.leader")
    broker, store = CountingBroker(), FlakyStore()
    settings = Settings(node_id="n1", finished_job_ttl=TTL)
    leadership = Leadership("n1", settings.election_algorithm)
    leader = LeaderDuties(
        settings,
        broker,
        store,
        Recorder(store),
        leadership,
        EventBus("n1", trio.current_time),
        lambda: NOW + 1 + TTL + 1 + trio.current_time(),
        on_jobs_ready=lambda: None,
        housekeeping_every=30.0,
    )
    epoch = await broker.acquire_epoch("n1", NOW)
    leadership.set("n1", 1, epoch, NOW)
    done = await finished_unrecorded(broker)
    store.down = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader.run)
        await trio.sleep(100.0)  # virtual: housekeeping at 0, 30, 60 and 90 s
        assert broker.reads == 4, "the purge was retried at every tick"
        assert leader.purged == 0 and await broker.get(done.id) is not None
        assert "housekeeping" in leader.postponed
        store.down = False
        while leader.purged == 0:
            await trio.sleep(1.0)
        assert not leader.postponed
        nursery.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    assert any("resumed (housekeeping)" in r.getMessage() for r in caplog.records)
    assert (await store.get(done.id)).result == {"answer": 42}


async def test_a_backlog_of_finished_jobs_is_purged_page_after_page(broker, monkeypatch):
    """One page a housekeeping (1,000 jobs every 30 s, 33 jobs/s) fell ever further
    behind the workers: a housekeeping goes on page after page while they come back
    full, up to ``PURGE_STEPS``, and the next ticks purge what is left, a page a tick,
    each recorded first."""
    monkeypatch.setattr(leader_module, "PURGE_PAGE", 10)
    store = MemoryStore()
    leader = duties(broker, store)
    epoch = await broker.acquire_epoch("n1", NOW)
    jobs = [validate_submission({"type": "noop"}, NOW, ids=ids) for _ in range(250)]
    await broker.enqueue(jobs, NOW)
    leases = await broker.claim("n2", 250, 30, NOW)
    await broker.finish([Finish(lease.job.id, lease.token, "completed") for lease in leases], NOW)
    now = NOW + TTL + 1
    await leader.housekeeping(epoch, now)
    assert leader.purged == 10 * leader_module.PURGE_STEPS == 100  # was 10: one page
    assert leader.purge_backlog
    for _ in range(14):  # then one page a tick
        await leader.tick(epoch, now)
        assert leader.purge_backlog
    assert leader.purged == 240
    await leader.tick(epoch, now)
    assert leader.purged == 250
    await leader.tick(epoch, now)  # the page was full: one more read finds nothing
    assert not leader.purge_backlog
    assert (await broker.depths())["completed"] == 0
    for job in jobs:
        record = await store.get(job.id)
        assert record is not None and record.status == JobStatus.COMPLETED
    await leader.tick(epoch, now)  # nothing left: no purge
    assert leader.purged == 250


async def purged_with_one_refused(
    broker: Broker, count: int, refused: int
) -> tuple[list[Job], Job, RefusingStore, LeaderDuties, int]:
    """``count`` finished jobs, the Store refusing the record of the ``refused``-th, and
    one housekeeping of a leader past their TTL."""
    jobs = [await finished_unrecorded(broker) for _ in range(count)]
    big = jobs[refused]
    store = RefusingStore({big.id})
    leader = duties(broker, store)
    epoch = await broker.acquire_epoch("n1", NOW)
    await leader.housekeeping(epoch, NOW + 1 + TTL + 1)
    return jobs, big, store, leader, epoch


async def test_a_record_the_store_refuses_keeps_its_job_and_lets_the_others_go(broker, caplog):
    """Before, the refusal escaped the housekeeping (not an outage), the leader's duties
    crashed and restarted into the same refusal: no purge of any job, ever."""
    caplog.set_level(logging.ERROR, "jobtrio.leader")
    jobs, big, store, leader, epoch = await purged_with_one_refused(broker, 7, 3)
    assert leader.purged == 6
    for job in jobs:
        record, held = await store.get(job.id), await broker.get(job.id)
        if job is big:
            assert record is None and held is not None and held.result == {"answer": 42}
        else:
            assert record is not None and record.result == {"answer": 42} and held is None
    refusals = [r.getMessage() for r in caplog.records if big.id in r.getMessage()]
    assert len(refusals) == 1 and "too large" in refusals[0]
    await leader.housekeeping(epoch, NOW + 1 + TTL + 60)  # the next: still kept, said once
    assert await broker.get(big.id) is not None
    assert len([r for r in caplog.records if big.id in r.getMessage()]) == 1


async def test_a_refused_record_does_not_hold_back_the_purge_of_the_jobs_after_it(
    broker, monkeypatch, caplog
):
    """A record MongoDB refuses is over 16 MiB, so over ``PURGE_BYTES`` (8 MiB) alone: the
    page of jobs due was that job and no other (``PURGE_BYTES`` set to one byte here, so
    that every page holds one job, as with it). Before, the oldest due job being one the
    Store refused, every purge step read it again and let go of nothing, and no job that
    finished after it was ever purged: the Broker grew without bound."""
    monkeypatch.setattr(leader_module, "PURGE_BYTES", 1)
    caplog.set_level(logging.ERROR, "jobtrio.leader")
    jobs, big, store, leader, epoch = await purged_with_one_refused(broker, 4, 0)
    assert leader.purged == 3
    assert await broker.get(big.id) is not None and await store.get(big.id) is None
    for job in jobs[1:]:
        assert await broker.get(job.id) is None and await store.get(job.id) is not None
    later = await finished_unrecorded(broker)  # and the next ones go too
    await leader.housekeeping(epoch, NOW + 1 + TTL + 60)
    assert leader.purged == 4 and await broker.get(later.id) is None
    assert len([r for r in caplog.records if big.id in r.getMessage()]) == 1


async def test_reconciliation_does_not_rewrite_and_relog_a_refused_snapshot_at_every_pass(
    broker, caplog
):
    """The Store keeps the refused job's last live record (running), so every
    reconciliation pass finds the Broker past it and hands the recorder the same final
    snapshot: before, each pass wrote it again (halving its batch) and logged the
    refusal again, one error line a pass for as long as the job stays in the Broker."""
    caplog.set_level(logging.ERROR, "jobtrio.recorder")
    job = validate_submission({"type": "noop"}, NOW, ids=ids)
    await broker.enqueue([job], NOW)
    [lease] = await broker.claim("n2", 1, 30, NOW)
    store = RefusingStore({job.id})
    await MemoryStore.put_many(store, [lease.job])  # its running record was written
    [done] = await broker.finish(
        [Finish(job.id, lease.token, "completed", worker_id="w-1", result={"answer": 42})],
        NOW + 1,
    )
    settings = Settings(node_id="n1", finished_job_ttl=TTL)
    recorder = Recorder(store)
    leader = LeaderDuties(
        settings,
        broker,
        store,
        recorder,
        Leadership("n1", settings.election_algorithm),
        EventBus("n1", trio.current_time),
        trio.current_time,
        on_jobs_ready=lambda: None,
    )
    epoch = await broker.acquire_epoch("n1", NOW)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        for n in range(3):
            await leader.reconcile(epoch, NOW + 100 + n)
            assert await recorder.flush(30.0)
        nursery.cancel_scope.cancel()
    assert (await store.get(job.id)).version < done.version  # the Store cannot take it
    assert recorder.refused == 1 and store.calls == 1
    assert len([r for r in caplog.records if job.id in r.getMessage()]) == 1
