"""The leader's two writes outside the lease protocol: reconciliation and periodic ticks.

Reconciliation must never bring back a job that ended (a Store record that
missed the job's last snapshot looks live), nor overwrite a job the Broker
holds; a periodic tick must fire exactly once even when a Broker reply is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from jobtrio.actors.leader import LeaderDuties
from jobtrio.actors.leadership import Leadership
from jobtrio.actors.recorder import Recorder
from jobtrio.actors.scheduler import Scheduler
from jobtrio.backends.base import BackendUnavailable, Finish
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.events import EventBus
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.processors import Registry
from jobtrio.submission import SubmissionLimits, validate_submission

ids = IdGenerator()


def duties(broker: MemoryBroker, store: MemoryStore, **settings: object) -> LeaderDuties:
    config = Settings(node_id="n1", **settings)
    return LeaderDuties(
        config,
        broker,
        store,
        Recorder(store),
        Leadership("n1", config.election_algorithm),
        EventBus("n1", trio.current_time),
        trio.current_time,
        on_jobs_ready=lambda: None,
    )


async def test_a_purged_job_whose_last_snapshot_never_reached_the_store_stays_ended(
    autojump_clock,
):
    """The node died in its recorder's linger: the Store still shows the job running.
    After the purge, reconciliation moves the record to how the job ended instead of
    enqueueing it again (which would complete it a second time)."""
    broker, store = MemoryBroker(), MemoryStore()
    leader = duties(broker, store, finished_job_ttl=30.0)
    epoch = await broker.acquire_epoch("n1", trio.current_time())
    job = validate_submission({"type": "noop"}, trio.current_time(), ids=ids)
    await broker.enqueue([job], trio.current_time())
    [lease] = await broker.claim("n2", 1, 30, trio.current_time())
    await store.put_many([lease.job])  # the last snapshot the Store saw: running
    [done] = await broker.finish([Finish(job.id, lease.token, "completed")], trio.current_time())
    await trio.sleep(120.0)  # past the TTL and reconciliation's settle time
    async with trio.open_nursery() as nursery:
        recorder = leader._recorder
        nursery.start_soon(recorder.run)
        await leader.housekeeping(epoch, trio.current_time())
        assert leader.purged == 1
        assert await recorder.flush(10.0)
        nursery.cancel_scope.cancel()
    assert leader.reconciled == 0
    assert await broker.get(job.id) is None
    assert await broker.claim("n3", 5, 30, trio.current_time()) == []
    record = await store.get(job.id)
    assert record.status == JobStatus.COMPLETED and record.version == done.version


async def test_a_deleted_jobs_record_written_late_never_brings_the_job_back(autojump_clock):
    """DELETE ?purge=true flushes only its own node's recorder: another node's recorder
    writes the job's running snapshot after the record was deleted. The Broker's delete
    leaves a tombstone, so reconciliation never runs the deleted job again."""
    broker, store = MemoryBroker(), MemoryStore()
    leader = duties(broker, store)
    epoch = await broker.acquire_epoch("n1", trio.current_time())
    job = validate_submission({"type": "noop"}, trio.current_time(), ids=ids)
    await broker.enqueue([job], trio.current_time())
    [lease] = await broker.claim("n2", 1, 30, trio.current_time())
    # Node.purge, on n1: cancel, delete from the Broker, flush n1's recorder, delete the record
    await broker.cancel(job.id, trio.current_time())
    assert await broker.delete(job.id)
    await store.delete(job.id)
    await store.put_many([lease.job])  # n2's recorder, late: the job running
    await trio.sleep(120.0)  # past reconciliation's settle time
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader._recorder.run)
        assert await leader.reconcile(epoch, trio.current_time()) == 0
        assert await leader._recorder.flush(10.0)
        nursery.cancel_scope.cancel()
    assert await broker.get(job.id) is None
    assert await broker.claim("n3", 5, 30, trio.current_time()) == []
    record = await store.get(job.id)  # the late record, moved to how the job ended
    assert record.status == JobStatus.CANCELLED


class RacingBroker(MemoryBroker):
    """A Broker whose ``get_many`` answers before a job comes back: the job exists by the
    time the leader writes (another leader restored it, or Redis caught up)."""

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        await trio.lowlevel.checkpoint()
        return {}


async def test_reconciliation_never_overwrites_a_job_the_broker_holds(autojump_clock):
    broker, store = RacingBroker(), MemoryStore()
    leader = duties(broker, store)
    epoch = await broker.acquire_epoch("n1", trio.current_time())
    job = validate_submission({"type": "noop"}, trio.current_time(), ids=ids)
    await store.put_many([job])  # pending, as the Store saw it
    await broker.enqueue([job], trio.current_time())
    [lease] = await broker.claim("n2", 1, 300, trio.current_time())
    await trio.sleep(120.0)
    await leader.reconcile(epoch, trio.current_time())
    held = await broker.get(job.id)
    assert held.status == JobStatus.RUNNING
    [done] = await broker.finish([Finish(job.id, lease.token, "completed")], trio.current_time())
    assert done is not None and done.status == JobStatus.COMPLETED


class LostReplies(MemoryBroker):
    """The first call of each tick move fails: applied with its reply lost on the way
    back (``applied``), or never reaching the Broker (a connection refused)."""

    def __init__(self, applied: bool = True) -> None:
        super().__init__()
        self.lost: set[str] = set()
        self.applied = applied

    def _lose_once(self, what: str) -> None:
        if what not in self.lost:
            self.lost.add(what)
            raise BackendUnavailable("memory", f"{what} reply lost")

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        if not self.applied:
            self._lose_once("claim_tick")
        out = await super().claim_tick(name, tick, epoch)
        self._lose_once("claim_tick")
        return out

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        if not self.applied:
            self._lose_once("fire_tick")
        out = await super().fire_tick(name, tick, job, epoch, now)
        self._lose_once("fire_tick")
        return out


@pytest.mark.parametrize("applied", [True, False], ids=["reply-lost", "call-failed"])
async def test_a_tick_whose_move_failed_fires_exactly_once(autojump_clock, applied):
    """Whether the failed move was applied or not, the tick fires once: a tick is marked
    fired only once its move answered, and the Broker refuses a repeat."""
    broker, store = LostReplies(applied), MemoryStore()
    await store.put_schedule({"name": "every-minute", "every": 60, "job": {"type": "noop"}})
    scheduler = Scheduler(
        broker,
        store,
        Registry(),
        Recorder(store),
        EventBus("n1", trio.current_time),
        ids,
        SubmissionLimits(),
        on_jobs_ready=lambda: None,
    )
    epoch = await broker.acquire_epoch("n1", trio.current_time())
    await trio.sleep(61.0 - trio.current_time() % 60)  # just past a tick
    for _ in range(20):  # the leader's passes, 0.1 s apart; a failed pass is retried
        try:
            await scheduler(epoch, trio.current_time())
        except BackendUnavailable:
            pass
        await trio.sleep(0.1)
    counts = await broker.depths()
    assert counts["pending"] == 1
