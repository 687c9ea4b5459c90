"""The duties only the leader performs, each write fenced by its epoch.

While this node leads (``Leadership.epoch`` is set), every tick it promotes
due scheduled and retrying jobs, requeues jobs whose lease expired (their
node died or froze) with the poison limit, and less often purges finished
jobs from the Broker once their final snapshot is in the Store, reconciles
the Store with the Broker and fires periodic jobs. The Broker refuses any of these writes
carrying an epoch older than the newest, so a deposed leader that has not
noticed yet cannot act: it gets ``FencedError`` and stops its duties until
it leads again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import trio

from ..backends.base import (
    TOMBSTONE_SECONDS,
    BackendUnavailable,
    Broker,
    FencedError,
    JobQuery,
    Store,
    Tombstone,
)
from ..backends.transitions import waiting_status
from ..config import Settings
from ..events import EventBus
from ..eventstream import job_fields
from ..jobs import Job, JobStatus
from .leadership import Leadership
from .recorder import Recorder, put_what_the_store_takes

log = logging.getLogger("jobtrio.leader")

LIVE_STATUSES = frozenset(
    {
        JobStatus.PENDING,
        JobStatus.SCHEDULED,
        JobStatus.RETRYING,
        JobStatus.RUNNING,
        JobStatus.WAITING,
    }
)

#: The share of the leader's time reconciliation may take: it reads every live record,
#: which on a backlog of a million jobs takes seconds, so a pass that took t seconds
#: waits at least t / RECONCILE_SHARE before the next (housekeeping runs it at most
#: every ``housekeeping_every`` seconds anyway).
RECONCILE_SHARE = 0.05

#: Jobs one promotion step moves: one fenced Broker move (one Lua script on Redis, which
#: holds the server for a few milliseconds at this size). Every claim and finish of a
#: burst waits behind the step in progress: at 1,000 a step (15-40 ms on Redis) the
#: workers drained almost nothing until the whole burst was promoted.
PROMOTE_STEP = 250
#: Most promotion steps in one tick, so requeues and the other duties still run every
#: tick under a backlog of due jobs (100,000 jobs a tick).
PROMOTE_STEPS_PER_TICK = 400

#: Seconds a job is due before the leader promotes it: the workers' claims take due jobs
#: themselves (scheduled to running in one move, in the claim's priority order), so the
#: leader moves only what no claim took by then: jobs of types or queues no node is
#: claiming now, or of a paused queue, or due while every worker is busy. A burst the
#: claims drain within it makes no promotion move at all (about 12 us of Redis a job).
PROMOTE_GRACE = 2.0

#: Finished jobs one purge step lets go of at most (one page read from the Broker and
#: written to a separate Store first, then one fenced Broker move).
PURGE_PAGE = 1000

#: Bytes of finished jobs' documents one purge step reads from the Broker at most (past
#: the job that reaches them, at least one): a page of a thousand 100 kB results held
#: Redis for a second in one script (1 GB with 1 MiB results) and the leader's memory.
PURGE_BYTES = 8 * 1024 * 1024

#: Purge steps one housekeeping takes at most, step after step while each lets go of
#: something; a backlog left after them goes on one step a tick (a step of 1,000 on Redis with
#: a separate Store took 70-85 ms: longer ticks would delay promotions). One step every 30 s
#: purged at most 33 jobs/s, far below what the workers finish: the Broker grew without
#: bound.
PURGE_STEPS = 10

#: An extra duty run every tick while leading: ``(epoch, now) -> None``.
Duty = Callable[[int, float], Awaitable[None]]


class LeaderDuties:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        store: Store,
        recorder: Recorder,
        leadership: Leadership,
        events: EventBus,
        clock: Callable[[], float],
        on_jobs_ready: Callable[[], None],
        tick: float = 0.1,
        housekeeping_every: float = 30.0,
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._store = store
        self._recorder = recorder
        self._leadership = leadership
        self._events = events
        self._clock = clock
        self._on_jobs_ready = on_jobs_ready
        self._tick = tick
        #: Seconds between purges and reconciliations (the simulator shortens it, with
        #: ``reconcile_settle``, so that a short run purges and reconciles many times).
        self.housekeeping_every = housekeeping_every
        #: Only jobs due for at least this many seconds are promoted (``PROMOTE_GRACE``).
        self.promote_grace = PROMOTE_GRACE
        #: Reconciliation leaves records touched in the last this many seconds alone.
        self.reconcile_settle = 60.0
        self.extra_duties: list[Duty] = []
        self.promoted = 0
        self.requeued = 0
        self.reconciled = 0
        self.purged = 0
        #: Finished jobs whose record the Store refused (``RecordRefused``): never purged.
        self.purge_refused: set[str] = set()
        self.fenced = 0
        #: When the next reconciliation may start (``trio.current_time()``).
        self.next_reconcile = -math.inf
        #: The last epoch whose writes the Broker refused (also told to the Leadership).
        self.last_fenced: int | None = None
        #: The last purge stopped after its last step came back full: the next tick goes on.
        self.purge_backlog = False
        #: The duties a backend outage postpones now, with the error (logged once each).
        self.postponed: dict[str, str] = {}

    async def run(self) -> None:
        while True:
            epoch = await self._leadership.wait_leader()
            log.info("leading with epoch %d: duties start", epoch)
            try:
                await self._lead(epoch)
            except* FencedError as group:
                # except*: _lead's nursery wraps the error in an ExceptionGroup
                exc: BaseException = group
                while isinstance(exc, BaseExceptionGroup):
                    exc = exc.exceptions[0]
                assert isinstance(exc, FencedError)
                self.fenced += 1
                self.last_fenced = epoch
                self._leadership.fenced(epoch)
                log.warning("duties stop: %s", exc)
                self._events.publish("leader.fenced", epoch=epoch, current=exc.current)
                # wait until the elector replaces this epoch (or takes a new one)
                while self._leadership.view.epoch == epoch:
                    await self._leadership.wait_change()

    async def _lead(self, epoch: int) -> None:
        next_housekeeping = 0.0
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_leadership, epoch, scope)
                while True:
                    now = self._clock()
                    if await self._attempt("tick", self.tick(epoch, now)):
                        if now >= next_housekeeping:
                            # a housekeeping that meets an outage waits for the next, as
                            # one that passed does: retried every tick, it read a page of
                            # finished jobs from the Broker and logged 10 times a second
                            next_housekeeping = now + self.housekeeping_every
                            await self._attempt("housekeeping", self.housekeeping(epoch, now))
                    await trio.sleep(self._tick)

    async def _attempt(self, duty: str, call: Awaitable[None]) -> bool:
        """Run one duty; a backend outage postpones it, logged when it starts and ends
        (not at every attempt in between)."""
        try:
            await call
        except BackendUnavailable as exc:
            if duty not in self.postponed:
                log.warning("leader duty postponed (%s): %s", duty, exc)
            self.postponed[duty] = str(exc)
            return False
        if self.postponed.pop(duty, None) is not None:
            log.info("leader duty resumed (%s)", duty)
        return True

    async def _watch_leadership(self, epoch: int, scope: trio.CancelScope) -> None:
        while self._leadership.view.epoch == epoch:
            await self._leadership.wait_change()
        log.info("epoch %d ended: duties stop", epoch)
        scope.cancel()

    async def tick(self, epoch: int, now: float) -> None:
        await self._promote(epoch, now)
        expired = await self._broker.requeue_expired(now, epoch, self._settings.poison_limit)
        if expired:
            self.requeued += len(expired)
            self._recorder.record(expired)
            for job in expired:
                log.warning(
                    "lease of job %s expired (%d times): %s",
                    job.id,
                    job.lease_expirations,
                    job.status,
                )
                self._events.publish("job.lease_expired", job=job_fields(job))
            self._on_jobs_ready()
        for duty in self.extra_duties:
            await duty(epoch, now)
        if self.purge_backlog and self._settings.finished_job_ttl > 0:
            await self.purge(epoch, now - self._settings.finished_job_ttl, steps=1)

    async def _promote(self, epoch: int, now: float) -> None:
        """Promote what has been due for ``promote_grace`` seconds (what no claim took) in
        fenced steps of ``PROMOTE_STEP``, step after step while they come back full,
        waking the workers after each.

        One step a tick capped promotion at 10,000 jobs/s (a step of 1000 every
        0.1 s): a burst of jobs due at one time waited for the leader's ticks
        while the workers could drain three times as fast. Each step is its own
        fenced Broker move, so a leader deposed mid-burst is refused at its next
        step and the new leader promotes the rest; a step moves each job once.
        """
        # a Broker that writes the records itself leaves the recorder nothing to do with
        # the promoted jobs: it is asked for their count alone (no bodies read or sent)
        counts_only = not self._recorder.copies
        grace = self.promote_grace
        for _ in range(PROMOTE_STEPS_PER_TICK):
            if counts_only:
                n = await self._broker.promote_due_count(now, epoch, PROMOTE_STEP, grace)
            else:
                promoted = await self._broker.promote_due(now, epoch, PROMOTE_STEP, grace)
                n = len(promoted)
                if n:
                    self._recorder.record(promoted)
            if not n:
                return
            self.promoted += n
            self._on_jobs_ready()
            if n < PROMOTE_STEP:
                return

    async def housekeeping(self, epoch: int, now: float) -> None:
        if self._settings.finished_job_ttl > 0:
            await self.purge(epoch, now - self._settings.finished_job_ttl)
        started = trio.current_time()
        if started >= self.next_reconcile:
            self.reconciled += await self.reconcile(epoch, now, self.reconcile_settle)
            spent = trio.current_time() - started
            self.next_reconcile = started + spent / RECONCILE_SHARE

    async def purge(self, epoch: int, older_than: float, steps: int = PURGE_STEPS) -> int:
        """Let go of the jobs that finished before ``older_than``, in up to ``steps``
        steps while each lets go of something (``purge_backlog``: the next tick goes on).

        A step that let go of nothing ends the purge: nothing more is due (or what
        was due changed under it), unless the Store refused a record in it (that job
        kept, the next step reads past it). Returns how many jobs were purged.
        """
        self.purge_backlog = False
        purged = 0
        for _ in range(steps):
            refused = len(self.purge_refused)
            n = await self._purge_step(epoch, older_than)
            purged += n
            self.purged += n
            if not n and len(self.purge_refused) == refused:  # a refusal: the next page
                return purged
        self.purge_backlog = True
        return purged

    async def _purge_step(self, epoch: int, older_than: float) -> int:
        """Let go of up to ``PURGE_PAGE`` jobs (``PURGE_BYTES`` of them read) that finished
        before ``older_than``; returns how many.

        When the Broker does not write the Store's records, a job's every
        snapshot may have died with its node's recorder (cut off from the
        Store, then crashed), and reconciliation only moves records the Store
        has. So the jobs due are read from the Broker as they ended, written to
        the Store (its version-guarded put never moves a record back), and only
        then purged, each only if still finished at the version written: no job
        leaves the Broker before its final snapshot is in the Store. The Store
        unreachable: ``BackendUnavailable``, nothing is purged, the next
        housekeeping tries again. When the Broker writes the records itself,
        one fenced move purges.
        """
        forget = older_than - TOMBSTONE_SECONDS
        if self._broker.writes_records_of(self._store):
            return await self._broker.purge_finished(
                older_than, epoch, PURGE_PAGE, tombstones_before=forget
            )
        # the jobs kept for a refused record are read no more: the oldest of them, over
        # PURGE_BYTES alone, was the whole page at every step, and no job after it went
        due = await self._broker.finished_due(
            older_than, PURGE_PAGE, PURGE_BYTES, skip=sorted(self.purge_refused)
        )
        refused: set[str] = set()
        if due:
            for job, why in await put_what_the_store_takes(self._store, due):
                # kept in the Broker (still readable there), reported once
                refused.add(job.id)
                if job.id not in self.purge_refused:
                    self.purge_refused.add(job.id)
                    log.error(
                        "job %s stays in the broker: the store refused its record: %s", job.id, why
                    )
        return await self._broker.purge_finished(
            older_than,
            epoch,
            PURGE_PAGE,
            tombstones_before=forget,
            only=[(job.id, job.version) for job in due if job.id not in refused],
        )

    async def reconcile(self, epoch: int, now: float, settle: float = 60.0) -> int:
        """Re-enqueue jobs the Store holds as live but the Broker lost (e.g. Redis lost data),
        and refresh live records the Broker has moved past.

        Only records untouched for ``settle`` seconds are considered, so a job
        whose newest snapshot is still on its way to the Store is left alone.
        The write is the Broker's fenced insert-if-absent ``restore``: a job the
        Broker holds again (or still) is never overwritten, and a job it purged
        answers with its tombstone, so a record that missed the job's last
        snapshot is moved forward to how the job ended instead of bringing the
        job back (which would run it a second time). Nothing to do when the
        Broker writes the records itself: they live and die with its data and
        move in the same step as its jobs. Returns how many jobs were put back.
        """
        if self._broker.writes_records_of(self._store):
            return 0
        await self._broker.current_epoch()  # fail fast when the broker is down
        missing: list[Job] = []
        cursor = None
        while True:
            page = await self._store.query(
                JobQuery(statuses=LIVE_STATUSES, limit=500, cursor=cursor)
            )
            candidates = [j for j in page.jobs if j.updated_at < now - settle]
            if candidates:
                held = await self._broker.get_many([j.id for j in candidates])
                for job in candidates:
                    if job.id not in held:
                        missing.append(job)
                    elif held[job.id].version > job.version:
                        # a node moved it, then died before its recorder wrote the
                        # snapshot: the record would stay stale forever
                        self._recorder.record_one(held[job.id])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if not missing:
            return 0
        sent = []
        for record in missing:
            job = record.copy()
            # a job with dependencies is resolved against its parents again by the Broker
            job.status = JobStatus.WAITING if job.depends_on else waiting_status(job, now)
            job.touch(now)
            sent.append(job)
        answers = await self._broker.restore(sent, now, epoch)
        restored = 0
        for record, job, answer in zip(missing, sent, answers, strict=True):
            if isinstance(answer, Tombstone):
                self._recorder.record_one(_ended(record, answer))
                continue
            if answer.version == job.version and answer.status == job.status:
                restored += 1
            if answer.version > record.version:
                self._recorder.record_one(answer)
        if restored:
            log.warning("reconciled %d jobs the broker had lost", restored)
            self._events.publish("jobs.reconciled", count=restored)
            self._on_jobs_ready()
        return restored


def _ended(record: Job, tomb: Tombstone) -> Job:
    """The record moved forward to how the job ended, as its tombstone tells.

    Its result or error never reached the Store and is gone with the job. It
    carries the tombstone's version, above any live snapshot's, so no late live
    snapshot can move it back; the real final snapshot, if it ever arrives, has
    the same version and replaces it with the result.
    """
    job = record.copy()
    job.status = tomb.status
    job.completed_at = tomb.finished_at
    job.updated_at = tomb.finished_at
    job.version = max(tomb.version, record.version)
    return job
